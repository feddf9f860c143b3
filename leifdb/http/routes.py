"""The client API's routes: one small handler per operation, on a class-level Klein app.

Each handler's docstring ends with its OpenAPI 2.0 operation in YAML after ``---``;
``leifdb.http.openapi`` builds the document from this url map and those docstrings, so a
route and its documentation live side by side. Handlers return bytes with the content type
set (Klein turns dicts into empty 200s) and signal every error by raising ``ApiError``.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, RequestRedirect

from leifdb.errors import NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.http.backend import Backend
from leifdb.http.errors import ApiError, respond_error, respond_json
from leifdb.http.params import (
    Limits,
    Query,
    check_text,
    parse_body,
    parse_condition,
    parse_consistency,
    parse_key,
    parse_limit,
    parse_query,
    read_body,
    split_uri,
)
from leifdb.http.swagger_ui import SwaggerUi
from leifdb.kv.commands import ApplyResult, Delete, Item, Put

__all__ = ["ClientApi", "KeyConverter", "RETRY_AFTER_SECONDS", "STATUS_FIELDS", "etag"]

RETRY_AFTER_SECONDS = 1
STATUS_FIELDS = (
    "node",
    "role",
    "term",
    "leader",
    "leader_http",
    "commit_index",
    "applied_index",
)
# RFC 3986 characters that may stay as they are in a Location path or query; "%" stays
# because the raw target is already percent-encoded.
_URI_SAFE = "/%:@!$&'()*+,;=-._~?"

T = TypeVar("T")


class KeyConverter(BaseConverter):
    """The rest of the path, slashes included, possibly empty (the handler answers 400
    for an empty key rather than a puzzling 404)."""

    part_isolating = False
    regex = r"[\s\S]*"
    weight = 200


def etag(revision: int) -> bytes:
    return b'"%d"' % revision


def _shield(d: Deferred[T]) -> Deferred[T]:
    """A Deferred that follows ``d`` but whose cancellation does not reach ``d``.

    Klein cancels a handler's Deferred when the client disconnects; a write already handed
    to the node must still run its course, and the node's own Deferred must not be
    cancelled under it.
    """
    shielded: Deferred[T] = Deferred()

    def forward(result: Any) -> None:
        if not shielded.called:
            if isinstance(result, Failure):
                shielded.errback(result)
            else:
                shielded.callback(result)

    d.addBoth(forward)
    return shielded


def _item_json(item: Item) -> dict[str, Any]:
    return {"key": item.key, "value": item.value, "revision": item.revision}


def _why(error: Exception) -> str:
    return f" ({error})" if str(error) else ""


def _one_source(name: str, from_query: str | None, from_body: str | None) -> str | None:
    if from_query is not None and from_body is not None:
        raise ApiError(400, f"{name!r} is given both in the query and in the body")
    return from_query if from_query is not None else from_body


class ClientApi:
    """The routes, bound to one backend. ``app.resource()`` on an instance serves them;
    ``ClientApi.app.url_map`` is the route table the OpenAPI document is built from."""

    app = Klein()
    app.url_map.converters["key"] = KeyConverter
    log = Logger()

    def __init__(
        self,
        backend: Backend,
        *,
        version: str,
        limits: Limits,
        document: bytes,
        swagger_ui: SwaggerUi,
    ) -> None:
        self.backend = backend
        self.version = version
        self.limits = limits
        self.document = document
        self.swagger_ui = swagger_ui

    # -- documentation ---------------------------------------------------------------

    @app.route("/", methods=["GET"], merge_slashes=False)
    def openapi(self, request: IRequest) -> bytes:
        """The API's own description, built once at start-up.

        ---
        get:
          tags: [docs]
          summary: This OpenAPI 2.0 (Swagger) document
          operationId: getOpenApiDocument
          responses:
            200:
              description: The Swagger 2.0 document, as JSON.
              schema:
                type: object
            500: InternalError
        """
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", b"%d" % len(self.document))
        return self.document

    @app.route("/swagger/", methods=["GET"], merge_slashes=False)
    def swagger_index(self, request: IRequest) -> bytes:
        """The Swagger UI page (``/swagger`` redirects here so relative asset URLs work).

        ---
        get:
          tags: [docs]
          summary: Interactive Swagger UI for this document
          operationId: getSwaggerUi
          produces: [text/html]
          responses:
            200:
              description: The Swagger UI page; it loads the document from `/`.
            500: InternalError
        """
        return self._swagger_file(request, "index.html")

    @app.route("/swagger/<name>", methods=["GET"], merge_slashes=False)
    def swagger_asset(self, request: IRequest, name: str) -> bytes:
        """One Swagger UI file, shipped with the package.

        ---
        get:
          tags: [docs]
          summary: A Swagger UI file (page, script, style sheet, icon)
          operationId: getSwaggerUiFile
          produces: [text/html, text/javascript, text/css, image/png, application/json]
          responses:
            200:
              description: The file.
            404: RouteNotFound
            500: InternalError
        """
        return self._swagger_file(request, name)

    def _swagger_file(self, request: IRequest, name: str) -> bytes:
        found = self.swagger_ui.file(name)
        if found is None:
            raise ApiError(404, f"no Swagger UI file named {name!r}")
        content, content_type = found
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Cache-Control", b"public, max-age=3600")
        request.setHeader(b"Content-Length", b"%d" % len(content))
        return content

    # -- cluster ---------------------------------------------------------------------

    @app.route("/health", methods=["GET"], merge_slashes=False)
    def health(self, request: IRequest) -> bytes:
        """Liveness and a snapshot of this node's Raft state; 200 whenever the process
        answers, even without a leader (check ``leader`` for that).

        ---
        get:
          tags: [cluster]
          summary: Node health and Raft status
          operationId: getHealth
          responses:
            200:
              description: The node is up; its view of the cluster.
              schema: Health
            500: InternalError
        """
        status = self.backend.status()
        document = {"status": "OK", "version": self.version}
        document.update({name: status.get(name) for name in STATUS_FIELDS})
        return respond_json(request, 200, document)

    # -- keys ------------------------------------------------------------------------

    @app.route("/db", methods=["GET"], merge_slashes=False)
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
        check_text(prefix, "prefix", self.limits.max_key_bytes)
        if start_after is not None:
            check_text(start_after, "start_after key", self.limits.max_key_bytes)
        limit = parse_limit(query, self.limits)
        if parse_consistency(query):
            await self._read_barrier(request)
        items, more = self.backend.kv.range(prefix, start_after, limit)
        page: list[dict[str, Any]] = []
        size = 0
        for item in items:
            size += len(item.key.encode("utf-8")) + len(item.value.encode("utf-8"))
            if page and size > self.limits.max_page_bytes:
                more = True
                break
            page.append(_item_json(item))
        return respond_json(
            request,
            200,
            {
                "prefix": prefix,
                "items": page,
                "more": more,
                "next_start_after": page[-1]["key"] if more and page else None,
            },
        )

    @app.route("/db/<key:key>", methods=["GET"], merge_slashes=False)
    async def get_key(self, request: IRequest, key: str) -> bytes:
        """Read one key, linearizably unless ``consistency=stale``.

        ---
        get:
          tags: [keys]
          summary: Read a key
          operationId: getKey
          parameters:
            - Consistency
          responses:
            200:
              description: The key's value and revision.
              schema: Item
              headers:
                ETag:
                  type: string
                  description: The key's revision, quoted (`"42"`).
            307: ReadRedirect
            400: BadRequest
            404: KeyNotFound
            413: TooLarge
            500: InternalError
            503: ReadUnavailable
        """
        key = parse_key(key, self.limits)
        if parse_consistency(self._query(request)):
            await self._read_barrier(request)
        item = self.backend.kv.get(key)
        if item is None:
            raise ApiError(404, "key not found", key=key)
        request.setHeader(b"ETag", etag(item.revision))
        return respond_json(request, 200, _item_json(item))

    @app.route("/db/<key:key>", methods=["PUT"], merge_slashes=False)
    async def put_key(self, request: IRequest, key: str) -> bytes:
        """Write one key once a majority has committed it and this node applied it.

        ---
        put:
          tags: [keys]
          summary: Write a key (optionally only if a condition holds)
          description: >-
            The value comes from the `value` query parameter or the JSON body's `value`
            field (not both). At most one condition may be given: `prev`, `If-Match`
            or `If-None-Match`.
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
            - in: body
              name: body
              required: false
              schema: PutBody
            - IfMatch
            - IfNoneMatch
          responses:
            200:
              description: Committed and applied.
              schema: WriteOk
              headers:
                ETag:
                  type: string
                  description: The key's new revision, quoted.
            307: NotLeader
            400: BadRequest
            412: ConditionFailed
            413: TooLarge
            500: InternalError
            503: NoLeader
            504: OutcomeUnknown
        """
        key = parse_key(key, self.limits)
        query = self._query(request)
        body = parse_body(read_body(request, self.limits), ("value", "prev"))
        value = _one_source("value", query.single("value"), body.get("value"))
        if value is None:
            raise ApiError(
                400, 'missing value: give ?value=... or a JSON body {"value": "..."}'
            )
        check_text(value, "value", self.limits.max_value_bytes)
        prev = _one_source("prev", query.single("prev"), body.get("prev"))
        condition = parse_condition(request, prev, self.limits)
        result = await self._submit(request, Put(key, value, condition))
        request.setHeader(b"ETag", etag(result.revision))
        return respond_json(request, 200, {"status": "Ok", "revision": result.revision})

    @app.route("/db/<key:key>", methods=["DELETE"], merge_slashes=False)
    async def delete_key(self, request: IRequest, key: str) -> bytes:
        """Delete one key; an absent key is not an error (200, nothing changes).

        ---
        delete:
          tags: [keys]
          summary: Delete a key (optionally only if a condition holds)
          operationId: deleteKey
          consumes: [application/json]
          parameters:
            - in: query
              name: prev
              type: string
              description: Delete only if the current value equals this.
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
        key = parse_key(key, self.limits)
        query = self._query(request)
        body = parse_body(read_body(request, self.limits), ("prev",))
        prev = _one_source("prev", query.single("prev"), body.get("prev"))
        condition = parse_condition(request, prev, self.limits)
        result = await self._submit(request, Delete(key, condition))
        return respond_json(request, 200, {"status": "Ok", "revision": result.revision})

    # -- talking to the node ---------------------------------------------------------

    async def _read_barrier(self, request: IRequest) -> None:
        try:
            await _shield(self.backend.read_barrier())
        except NotLeaderError as e:
            if e.leader_http:
                raise _redirect(
                    request,
                    e.leader_http,
                    "this node does not serve linearizable reads; read from the leader",
                ) from None
            raise ApiError(
                503,
                "no leader is known, so a linearizable read cannot be served; "
                "retry, or use consistency=stale",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
        except (Unavailable, OutcomeUnknown) as e:
            raise ApiError(
                503,
                f"a linearizable read cannot be served right now{_why(e)}; "
                "retry, or use consistency=stale",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None

    async def _submit(self, request: IRequest, command: Put | Delete) -> ApplyResult:
        try:
            result = await _shield(self.backend.submit(command))
        except NotLeaderError as e:
            if e.leader_http:
                raise _redirect(
                    request, e.leader_http, "this node is not the leader", applied=False
                ) from None
            raise ApiError(
                503,
                "no leader is known; the write was not applied",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                applied=False,
            ) from None
        except Unavailable:
            raise ApiError(
                503,
                "the cluster is unavailable; the write was not applied",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                applied=False,
            ) from None
        except OutcomeUnknown as e:
            raise ApiError(
                504,
                f"the write may or may not have been applied{_why(e)}; "
                "read the key before retrying",
                applied="unknown",
            ) from None
        if not result.ok:
            current = result.current
            headers = {"ETag": etag(current.revision).decode()} if current else {}
            raise ApiError(
                412,
                "condition failed; nothing was changed",
                headers=headers,
                key=command.key,
                value=current.value if current else None,
                revision=current.revision if current else None,
            )
        return result

    def _query(self, request: IRequest) -> Query:
        return parse_query(split_uri(request.uri)[1])

    # -- errors ----------------------------------------------------------------------

    @app.handle_errors(ApiError)
    def _api_error(self, request: IRequest, failure: Failure) -> bytes:
        return respond_error(request, failure.value)

    @app.handle_errors(HTTPException)
    def _routing_error(self, request: IRequest, failure: Failure) -> bytes:
        return respond_error(request, routing_error(failure.value, request.path))

    @app.handle_errors(Exception)
    def _unexpected(self, request: IRequest, failure: Failure) -> bytes | None:
        if failure.check(CancelledError):
            return None
        self.log.failure(
            "unexpected error answering {method} {path}",
            failure,
            method=request.method,
            path=request.path,
        )
        return respond_error(request, ApiError(500, "internal server error"))


def routing_error(error: HTTPException, raw_path: bytes) -> ApiError:
    """Werkzeug's routing exceptions as JSON errors (its own pages are HTML)."""
    if isinstance(error, RequestRedirect):
        # Only /swagger -> /swagger/ (strict slashes); answer with a relative path.
        target = urlsplit(error.new_url)
        location = target.path + (f"?{target.query}" if target.query else "")
        return ApiError(308, "moved", headers={"Location": location}, location=location)
    if isinstance(error, MethodNotAllowed):
        allowed = sorted(set(error.valid_methods or ()) | {"OPTIONS"})
        return ApiError(
            405, "method not allowed", headers={"Allow": ", ".join(allowed)}, allowed=allowed
        )
    if isinstance(error, NotFound):
        return ApiError(404, "no such route", path=raw_path.decode("latin-1"))
    return ApiError(error.code or 500, error.name)


def _redirect(
    request: IRequest, leader_http: str, message: str, **fields: Any
) -> ApiError:
    """307 to the same path and query on the leader, so the method and body are resent."""
    raw_path, raw_query = split_uri(request.uri)
    target = quote(raw_path, safe=_URI_SAFE)
    if raw_query is not None:
        target += "?" + quote(raw_query, safe=_URI_SAFE)
    location = f"http://{leader_http}{target}"
    return ApiError(
        307, message, headers={"Location": location}, leader=f"http://{leader_http}", **fields
    )
