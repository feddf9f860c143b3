"""``POST /txn``: the JSON body as a ``Txn``, the ``TxnResult`` as JSON, and the route.

Parsing checks shape and types only, with a 400 that says where (``success[2].key``);
what needs the service's view (operation counts, sizes of the whole, two writes to one
key) is the service's to refuse, as ``LimitExceeded`` (413) or ``InvalidRequest`` (400).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.web.iweb import IRequest

from leifdb.http.errors import ApiError, respond_json
from leifdb.http.params import check_text, load_json, parse_consistency, read_body
from leifdb.http.render import item_json
from leifdb.http.routing import Routes, accepts, api
from leifdb.kv.commands import (
    COMPARE_OPS,
    COMPARE_TARGETS,
    Compare,
    Delete,
    Get,
    OpResult,
    Put,
    Range,
    Txn,
    TxnOp,
    TxnResult,
)
from leifdb.service.api import ServiceLimits

__all__ = ["TxnRoutes", "parse_txn", "render_txn"]

_NO_VALUE = object()


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_COMPARE_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "value": (lambda v: isinstance(v, str), "a string"),
    "revision": (_is_integer, "an integer"),
    "create_revision": (_is_integer, "an integer"),
    "lease": (_is_integer, "an integer"),
    "exists": (lambda v: isinstance(v, bool), "true or false"),
}
# Targets compared as numbers: an absent key (or no lease) is 0, so none is negative.
_NUMBER_TARGETS = ("revision", "create_revision", "lease")
_MAX_INTEGER = (1 << 63) - 1


def _fields(document: Any, where: str, required: tuple[str, ...],
            optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``document`` must be an object with the ``required`` fields and no others than
    ``optional``; returns it."""
    if not isinstance(document, dict):
        raise ApiError(400, f"{where} must be a JSON object")
    missing = [name for name in required if name not in document]
    if missing:
        raise ApiError(400, f"{where} lacks the field(s) {', '.join(missing)}")
    unknown = sorted(set(document) - set(required) - set(optional))
    if unknown:
        allowed = ", ".join(required + optional)
        raise ApiError(400, f"{where} has unknown field(s) {', '.join(unknown)}; "
                            f"allowed: {allowed}")
    return document


def _string(value: Any, where: str, max_bytes: int, *, nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{where} must be a string" + (" or null" if nullable else ""))
    check_text(value, where, max_bytes)
    return value


def _key(value: Any, where: str, limits: ServiceLimits) -> str:
    key = _string(value, where, limits.max_key_bytes)
    if not key:
        raise ApiError(400, f"{where} must not be empty")
    return key


def _parse_compare(document: Any, where: str, limits: ServiceLimits) -> Compare:
    fields = _fields(document, where, ("key", "target", "op", "value"))
    key = _key(fields["key"], f"{where}.key", limits)
    target, op = fields["target"], fields["op"]
    value: Any = fields["value"]
    if target not in COMPARE_TARGETS:
        raise ApiError(400, f"{where}.target must be one of {', '.join(COMPARE_TARGETS)}, "
                            f"not {target!r}")
    if op not in COMPARE_OPS:
        raise ApiError(400, f"{where}.op must be one of {', '.join(COMPARE_OPS)}, not {op!r}")
    fits, described = _COMPARE_VALUES[target]
    if not fits(value):
        raise ApiError(400, f"{where}.value must be {described} for target {target!r}")
    if target == "value":
        check_text(value, f"{where}.value", limits.max_value_bytes)
    if target in _NUMBER_TARGETS and value < 0:
        raise ApiError(400, f"{where}.value must not be negative")
    if target in _NUMBER_TARGETS and value > _MAX_INTEGER:
        raise ApiError(400, f"{where}.value must be at most {_MAX_INTEGER}")
    return Compare(key, target, op, value)


def _parse_put(fields: dict[str, Any], where: str, limits: ServiceLimits) -> Put:
    """``lease`` (optional): attach the key to that lease; without it the key has none."""
    fields = _fields(fields, where, ("op", "key", "value"), ("lease",))
    value = _string(fields["value"], f"{where}.value", limits.max_value_bytes)
    lease = fields.get("lease")
    if lease is not None and (not _is_integer(lease) or not 1 <= lease <= _MAX_INTEGER):
        raise ApiError(400, f"{where}.lease must be a lease id (a positive integer)")
    return Put(_key(fields["key"], f"{where}.key", limits), value, lease=lease or 0)


def _parse_delete(fields: dict[str, Any], where: str, limits: ServiceLimits) -> Delete:
    fields = _fields(fields, where, ("op", "key"))
    return Delete(_key(fields["key"], f"{where}.key", limits))


def _parse_get(fields: dict[str, Any], where: str, limits: ServiceLimits) -> Get:
    fields = _fields(fields, where, ("op", "key"))
    return Get(_key(fields["key"], f"{where}.key", limits))


def _parse_range(fields: dict[str, Any], where: str, limits: ServiceLimits) -> Range:
    fields = _fields(fields, where, ("op",), ("prefix", "start_after", "limit"))
    prefix = _string(fields.get("prefix", ""), f"{where}.prefix", limits.max_key_bytes)
    start_after = _string(fields.get("start_after"), f"{where}.start_after",
                          limits.max_key_bytes, nullable=True)
    limit = fields.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                              or not 1 <= limit <= limits.max_page_size):
        raise ApiError(400, f"{where}.limit must be null or an integer from 1 to "
                            f"{limits.max_page_size}")
    return Range(prefix, start_after or None, limit)


_OPS: dict[str, Callable[[dict[str, Any], str, ServiceLimits], TxnOp]] = {
    "put": _parse_put,
    "delete": _parse_delete,
    "get": _parse_get,
    "range": _parse_range,
}


def _parse_op(document: Any, where: str, limits: ServiceLimits) -> TxnOp:
    if not isinstance(document, dict):
        raise ApiError(400, f"{where} must be a JSON object")
    name = document.get("op", _NO_VALUE)
    parse = _OPS.get(name) if isinstance(name, str) else None
    if parse is None:
        shown = "missing" if name is _NO_VALUE else repr(name)
        raise ApiError(400, f"{where}.op must be one of {', '.join(_OPS)}, not {shown}")
    return parse(document, where, limits)


def _list(document: dict[str, Any], name: str) -> list[Any]:
    value = document.get(name, [])
    if not isinstance(value, list):
        raise ApiError(400, f"{name} must be a JSON array")
    return value


def parse_txn(raw: bytes, limits: ServiceLimits) -> Txn:
    """The body of ``POST /txn`` as a ``Txn``. A missing body is a 400 (a curl user who
    forgot ``-d`` should hear so, not get an empty transaction); ``{}`` is an empty one."""
    if not raw.strip():
        raise ApiError(400, 'missing body: POST /txn takes JSON {"compare": [...], '
                            '"success": [...], "failure": [...]}')
    document = load_json(raw)
    document = _fields(document, "the request body", (), ("compare", "success", "failure"))
    compare = tuple(_parse_compare(c, f"compare[{i}]", limits)
                    for i, c in enumerate(_list(document, "compare")))
    success = tuple(_parse_op(op, f"success[{i}]", limits)
                    for i, op in enumerate(_list(document, "success")))
    failure = tuple(_parse_op(op, f"failure[{i}]", limits)
                    for i, op in enumerate(_list(document, "failure")))
    return Txn(compare, success, failure)


def _render_op(op: TxnOp, result: OpResult, revision: int) -> dict[str, Any]:
    if isinstance(op, Put):
        written = result.item.revision if result.item is not None else revision
        return {"op": "put", "key": op.key, "revision": written}
    if isinstance(op, Delete):
        return {"op": "delete", "key": op.key, "deleted": result.item is not None,
                "revision": revision}
    if isinstance(op, Get):
        item = item_json(result.item) if result.item is not None else None
        return {"op": "get", "key": op.key, "item": item}
    return {"op": "range", "prefix": op.prefix,
            "items": [item_json(item) for item in result.items], "more": result.more}


def render_txn(txn: Txn, result: TxnResult, revision: int) -> dict[str, Any]:
    """The answer: ``revision`` is the transaction's (or, read-only, the one it read at);
    one result per operation of the branch that ran, in order."""
    branch = txn.success if result.succeeded else txn.failure
    return {
        "succeeded": result.succeeded,
        "revision": revision,
        "results": [
            _render_op(op, r, revision)
            for op, r in zip(branch, result.results, strict=True)
        ],
    }


class TxnRoutes(Routes):
    """``POST /txn``."""

    @api.route("/txn", methods=["POST"], merge_slashes=False)
    @accepts("consistency")
    async def txn(self, request: IRequest) -> bytes:
        """Run a transaction: compares, then the success or the failure branch.

        ---
        post:
          tags: [keys]
          summary: Compare and then write or read several keys at one revision
          description: >-
            If every compare holds, the `success` operations run, else the `failure`
            ones, in order, all at one revision (a write is one log entry; its changes
            reach watchers together). A transaction that only reads is served without
            the log, after a read barrier unless `consistency=stale`. Writes on a
            follower get 307 to the leader. At most 1024 operations and compares,
            at most 8 MiB of body; two writes to one key in a branch are 400. A put may
            attach its key to a lease (`"lease": id`); one naming a lease that does not
            exist fails the whole transaction with 404, nothing applied.
          operationId: txn
          consumes: [application/json]
          parameters:
            - Consistency
            - in: body
              name: body
              required: true
              schema: TxnBody
          responses:
            200:
              description: >-
                The branch ran (`succeeded` false: the failure branch; not an error).
              schema: TxnAnswer
            307: NotLeader
            400: BadRequest
            404: LeaseNotFound
            413: TooLarge
            500: InternalError
            503: NoLeader
            504: OutcomeUnknown
        """
        consistency = parse_consistency(self._query(request))
        raw = read_body(request, self.limits.max_txn_body_bytes)
        txn = parse_txn(raw, self.limits.service)
        call = self._read if txn.read_only else self._write
        result = await call(request, self.service.txn, txn, consistency)
        revision = result.revision or self.service.revision
        self._stamp(request)
        return respond_json(request, 200, render_txn(txn, result, revision))
