"""Routes on keys: read, list, write, delete, and the long poll on ``GET /db/{key}``.

Each handler's docstring ends with its OpenAPI 2.0 operation in YAML after ``---``;
``leifdb.http.openapi`` builds the document from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.web.iweb import IRequest

from leifdb.http.errors import ApiError, respond_json
from leifdb.http.params import (
    Query,
    check_text,
    check_ttl,
    duration_field,
    id_field,
    parse_body,
    parse_bool,
    parse_condition,
    parse_consistency,
    parse_duration,
    parse_fence,
    parse_key,
    parse_limit,
    parse_revision,
    parse_timeout,
    read_body,
    text_field,
)
from leifdb.http.render import etag, item_json, page_json
from leifdb.http.routing import Routes, accepts, api
from leifdb.kv.commands import FAILED_FENCE, FAILED_LEASE_NOT_FOUND
from leifdb.service.api import ServiceLimits, WriteResult

__all__ = ["KeyRoutes"]


@dataclass(frozen=True, slots=True)
class _Poll:
    """A long poll's parameters (``GET /db/{key}?wait_revision=...``)."""

    wait_revision: int
    prefix: bool
    timeout: float
    start_after: str | None
    limit: int | None


_PUT_BODY = {"value": text_field, "prev": text_field, "lease": id_field, "ttl": duration_field}


@dataclass(frozen=True, slots=True)
class _Attach:
    """What a put does about leases: attach the key to ``lease`` (0: none), or grant a
    lease of ``ttl`` seconds for it alone."""

    lease: int = 0
    ttl: float | None = None


def _one_source(name: str, from_query: Any, from_body: Any) -> Any:
    if from_query is not None and from_body is not None:
        raise ApiError(400, f"{name!r} is given both in the query and in the body")
    return from_query if from_query is not None else from_body


def _parse_attach(query: Query, body: dict[str, Any], limits: ServiceLimits) -> _Attach:
    """``lease`` and ``ttl`` from the query or the body (not both places, not both)."""
    text = query.single("ttl")
    ttl = _one_source("ttl", None if text is None else parse_duration(text, "ttl"),
                      body.get("ttl"))
    lease = _one_source("lease", parse_revision(query.single("lease"), "lease"),
                        body.get("lease"))
    if lease is not None and ttl is not None:
        raise ApiError(400, "give lease (attach to a lease) or ttl (grant one for this key "
                            "alone), not both")
    if ttl is not None:
        return _Attach(ttl=check_ttl(ttl, limits))
    return _Attach(lease=lease or 0)


def _parse_poll(query: Query, limits: ServiceLimits) -> _Poll | None:
    """The long-poll parameters, or None for a plain read. ``prefix`` and ``timeout``
    need ``wait_revision``; ``limit`` and ``start_after`` need ``prefix=true``."""
    wait_revision = parse_revision(query.single("wait_revision"), "wait_revision")
    prefix = parse_bool(query, "prefix")
    timeout = query.single("timeout")
    start_after = query.single("start_after")
    limit = parse_limit(query, limits.max_page_size)
    given: dict[str, object] = {"prefix": prefix, "timeout": timeout, "limit": limit,
                                "start_after": start_after}
    if wait_revision is None:
        for name in ("prefix", "timeout"):
            if given[name] is not None:
                raise ApiError(400, f"{name} needs wait_revision (a long poll)", parameter=name)
    if not prefix:
        for name in ("limit", "start_after"):
            if given[name] is not None:
                raise ApiError(400, f"{name} needs prefix=true", parameter=name)
    if wait_revision is None:
        return None
    seconds = parse_timeout(timeout, limits.default_wait_seconds, limits.max_wait_seconds)
    return _Poll(wait_revision, bool(prefix), seconds, start_after or None, limit)


class KeyRoutes(Routes):
    """``/db`` and ``/db/{key}``."""

    @api.route("/db", methods=["GET"], merge_slashes=False)
    @accepts("prefix", "start_after", "limit", "consistency")
    async def list_keys(self, request: IRequest) -> bytes:
        """A page of keys under a prefix, in key order.

        ---
        get:
          tags: [keys]
          summary: List keys under a prefix (paginated)
          description: >-
            Keys are ordered by Unicode code point (the same as UTF-8 byte order).
            To read the next page, pass the response's `next_start_after` as `start_after`.
            A page ends early, with `more: true`, when its keys and values pass 4 MiB.
          operationId: listKeys
          parameters:
            - in: query
              name: prefix
              type: string
              default: ""
              description: Only keys starting with this string (all keys if empty).
            - in: query
              name: start_after
              type: string
              description: Only keys strictly after this one.
            - in: query
              name: limit
              type: integer
              minimum: 1
              maximum: 1000
              default: 100
              description: At most this many items.
            - Consistency
          responses:
            200:
              description: One page of items.
              schema: Page
            307: ReadRedirect
            400: BadRequest
            413: TooLarge
            500: InternalError
            503: ReadUnavailable
        """
        query = self._query(request)
        prefix = query.single("prefix") or ""
        start_after = query.single("start_after") or None
        max_key_bytes = self.limits.service.max_key_bytes
        check_text(prefix, "prefix", max_key_bytes)
        if start_after is not None:
            check_text(start_after, "start_after key", max_key_bytes)
        limit = parse_limit(query, self.limits.service.max_page_size)
        consistency = parse_consistency(query)
        page = await self._read(
            request, self.service.range, prefix, start_after, limit, consistency
        )
        self._stamp(request, page.revision)
        return respond_json(request, 200, page_json(prefix, page))

    @api.route("/db/<key:key>", methods=["GET"], merge_slashes=False)
    @accepts("consistency", "wait_revision", "prefix", "timeout", "start_after", "limit")
    async def get_key(self, request: IRequest, key: str) -> bytes:
        """Read one key, linearizably unless ``consistency=stale``; with
        ``wait_revision``, first wait for a change (long poll).

        ---
        get:
          tags: [keys]
          summary: Read a key, or wait for a change and then read it (long poll)
          description: >-
            Without `wait_revision`: the key now. With `wait_revision=N`: waits until the
            key (or, with `prefix=true`, any key under it) changes at a revision >= N
            (history already kept counts, so it may answer at once) or until `timeout`,
            then answers the current state as a plain read would: the item (or 404), or
            with `prefix=true` a page as `GET /db?prefix=<key>` gives. Poll again with
            `wait_revision` = `X-LeifDB-Revision` + 1. `prefix` and `timeout` need
            `wait_revision`; `limit` and `start_after` need `prefix=true`.
          operationId: getKey
          parameters:
            - Consistency
            - in: query
              name: wait_revision
              type: integer
              format: int64
              minimum: 1
              description: Long poll for a change at this revision or later.
            - in: query
              name: prefix
              type: boolean
              description: >-
                Long poll only: watch every key starting with `key` and answer a page
                (default false).
            - in: query
              name: timeout
              type: string
              description: >-
                Long poll only: how long to wait before answering the current state
                anyway: `30s`, `500ms`, `2m` or seconds (default 60s, at most 600s).
            - in: query
              name: start_after
              type: string
              description: With `prefix=true`, only keys strictly after this one.
            - in: query
              name: limit
              type: integer
              minimum: 1
              maximum: 1000
              description: With `prefix=true`, at most this many items (default 100).
          responses:
            200:
              description: >-
                The key's value and revision (with `prefix=true`, a page of items).
              schema: Item
              headers:
                ETag:
                  type: string
                  description: The key's revision, quoted (`"42"`); not for a page.
            307: ReadRedirect
            400: BadRequest
            404: KeyNotFound
            410: Gone
            413: TooLarge
            500: InternalError
            503: ReadUnavailable
        """
        query = self._query(request)
        poll = _parse_poll(query, self.limits.service)
        consistency = parse_consistency(query)
        if poll is None:
            return await self._get_item(request, key, consistency)
        if poll.prefix:
            check_text(key, "prefix", self.limits.service.max_key_bytes)
        else:
            parse_key(key, self.limits.service.max_key_bytes)
        # A node that cannot serve the final read should say so now, not after the wait.
        await self._read(request, self.service.barrier, consistency)
        await self._wait(
            request,
            self.service.wait,
            key,
            prefix=poll.prefix,
            wait_revision=poll.wait_revision,
            timeout=poll.timeout,
        )
        if not poll.prefix:
            return await self._get_item(request, key, consistency)
        page = await self._read(
            request, self.service.range, key, poll.start_after, poll.limit, consistency
        )
        self._stamp(request, page.revision)
        return respond_json(request, 200, page_json(key, page))

    async def _get_item(self, request: IRequest, key: str, consistency: str) -> bytes:
        key = parse_key(key, self.limits.service.max_key_bytes)
        item = await self._read(request, self.service.get, key, consistency)
        self._stamp(request)
        if item is None:
            raise ApiError(404, "key not found", key=key)
        request.setHeader(b"ETag", etag(item.revision))
        return respond_json(request, 200, item_json(item))

    @api.route("/db/<key:key>", methods=["PUT"], merge_slashes=False)
    @accepts("value", "prev", "lease", "ttl", "fence")
    async def put_key(self, request: IRequest, key: str) -> bytes:
        """Write one key once a majority has committed it and this node applied it.

        ---
        put:
          tags: [keys]
          summary: Write a key (optionally only if a condition holds)
          description: >-
            The value comes from the `value` query parameter or the JSON body's `value`
            field (not both). At most one condition may be given: `prev`, `If-Match`
            or `If-None-Match`. `lease` attaches the key to a lease (it is deleted when
            the lease ends); `ttl` grants a new lease for this key alone (its id is the
            answer's `lease`); a put without either detaches the key from its lease.
            `fence=NAME:TOKEN` applies the write only while lock NAME is held with that
            fencing token (412 otherwise).
          operationId: putKey
          consumes: [application/json]
          parameters:
            - in: query
              name: value
              type: string
              description: >-
                The new value (form-encoded: `+` is a space, send `%2B` for a plus).
                Required unless the body has `value`.
            - in: query
              name: prev
              type: string
              description: Write only if the current value equals this.
            - LeaseQuery
            - TtlQuery
            - FenceQuery
            - in: body
              name: body
              required: false
              schema: PutBody
            - IfMatch
            - IfNoneMatch
          responses:
            200:
              description: Committed and applied.
              schema: PutOk
              headers:
                ETag:
                  type: string
                  description: The key's new revision, quoted.
            307: NotLeader
            400: BadRequest
            404: LeaseNotFound
            412: ConditionFailed
            413: TooLarge
            500: InternalError
            503: NoLeader
            504: OutcomeUnknown
        """
        service_limits = self.limits.service
        key = parse_key(key, service_limits.max_key_bytes)
        query = self._query(request)
        body = parse_body(read_body(request, self.limits.max_body_bytes), _PUT_BODY)
        value = _one_source("value", query.single("value"), body.get("value"))
        if value is None:
            raise ApiError(
                400, 'missing value: give ?value=... or a JSON body {"value": "..."}'
            )
        check_text(value, "value", service_limits.max_value_bytes)
        prev = _one_source("prev", query.single("prev"), body.get("prev"))
        condition = parse_condition(request, prev, service_limits.max_value_bytes)
        attach = _parse_attach(query, body, service_limits)
        fence_text = query.single("fence")
        fence = parse_fence(fence_text, service_limits.max_name_bytes)
        result = await self._write(
            request, self.service.put, key, value, condition,
            lease=attach.lease, ttl=attach.ttl, fence=fence,
        )
        self._check_written(request, key, result, fence_text, attach.lease)
        request.setHeader(b"ETag", etag(result.revision))
        return respond_json(
            request, 200, {"status": "Ok", "revision": result.revision, "lease": result.lease}
        )

    @api.route("/db/<key:key>", methods=["DELETE"], merge_slashes=False)
    @accepts("prev", "fence")
    async def delete_key(self, request: IRequest, key: str) -> bytes:
        """Delete one key; an absent key is not an error (200, nothing changes).

        ---
        delete:
          tags: [keys]
          summary: Delete a key (optionally only if a condition holds)
          description: >-
            Deleting a lock's key (`_lock/{name}/{lease}`) releases the lock; `fence`
            deletes only while a lock is held with that token.
          operationId: deleteKey
          consumes: [application/json]
          parameters:
            - in: query
              name: prev
              type: string
              description: Delete only if the current value equals this.
            - FenceQuery
            - in: body
              name: body
              required: false
              schema: DeleteBody
            - IfMatch
            - IfNoneMatch
          responses:
            200:
              description: >-
                Committed and applied (also when the key was absent). `revision` is the
                log index of the delete.
              schema: WriteOk
            307: NotLeader
            400: BadRequest
            412: ConditionFailed
            413: TooLarge
            500: InternalError
            503: NoLeader
            504: OutcomeUnknown
        """
        service_limits = self.limits.service
        key = parse_key(key, service_limits.max_key_bytes)
        query = self._query(request)
        body = parse_body(read_body(request, self.limits.max_body_bytes), ("prev",))
        prev = _one_source("prev", query.single("prev"), body.get("prev"))
        condition = parse_condition(request, prev, service_limits.max_value_bytes)
        fence_text = query.single("fence")
        fence = parse_fence(fence_text, service_limits.max_name_bytes)
        result = await self._write(request, self.service.delete, key, condition, fence=fence)
        self._check_written(request, key, result, fence_text)
        return respond_json(request, 200, {"status": "Ok", "revision": result.revision})

    def _check_written(
        self, request: IRequest, key: str, result: WriteResult, fence: str | None,
        lease: int = 0,
    ) -> None:
        """Stamp the answer; 412 when the fence or the condition failed (with the key as
        it is for a condition), 404 when the lease named is gone."""
        self._stamp(request)
        if result.ok:
            return
        if result.failure == FAILED_FENCE:
            name, _, token = (fence or "").rpartition(":")
            raise ApiError(
                412, f"fenced: lock {name} is no longer held with token {token}", fence=fence
            )
        if result.failure == FAILED_LEASE_NOT_FOUND:
            raise ApiError(404, f"lease {lease} not found (revoked, expired or never "
                                "granted); nothing was changed", lease=lease, key=key)
        current = result.current
        headers = {"ETag": etag(current.revision).decode()} if current else {}
        raise ApiError(
            412,
            "condition failed; nothing was changed",
            headers=headers,
            key=key,
            value=current.value if current else None,
            revision=current.revision if current else None,
        )
