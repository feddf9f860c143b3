"""The outermost resource: CORS, preflight, ``OPTIONS``, URL and query checks and a JSON
last resort, around the Klein routes.

These live outside Klein because they must hold for every path, including paths no route
matches: a Klein catch-all ``OPTIONS`` route would turn every unknown path into 405, and
Werkzeug's own 404/405 pages are HTML without CORS headers.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from leifdb.http.errors import ApiError, respond_error
from leifdb.http.limits import HttpLimits
from leifdb.http.params import (
    body_too_large,
    decode_component,
    lenient_path,
    parse_query,
    split_uri,
)
from leifdb.http.paths import REVISION_HEADER, is_key_api
from leifdb.http.routing import declared_query, match_endpoint, methods_for
from leifdb.service.api import Service

__all__ = ["ApiRoot", "EXPOSED_HEADERS", "KEY_ROUTE", "TOKEN", "key_endpoint"]

EXPOSED_HEADERS = b"ETag, Location, Retry-After, X-LeifDB-Revision"
# An RFC 9110 token: a method, or a header field name (``ApiChannel._whole_request``).
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PREFLIGHT_VARY = [b"Origin", b"Access-Control-Request-Method", b"Access-Control-Request-Headers"]

# The key routes (``/db/<key:key>``), the API's hot path, dispatched here without
# Werkzeug's general matcher (about a third of a write's CPU went to matching the same
# path three times: query check, Klein, metrics). Their key converter takes the whole
# rest of the path, so every ``/db/...`` path is one of them; HEAD and the other methods
# still go through Klein. ``tests/http/test_dispatch.py`` checks this against the url map.
KEY_ROUTE = "/db/{key}"
_KEY_PREFIX = "/db/"
_KEY_ENDPOINTS = {b"GET": "get_key", b"PUT": "put_key", b"DELETE": "delete_key"}


def key_endpoint(path: str, method: bytes) -> str | None:
    """The key route's endpoint serving ``method path`` (a decoded path), or None when
    the request is not for one (Klein routes it)."""
    if path.startswith(_KEY_PREFIX):
        return _KEY_ENDPOINTS.get(method)
    return None


class ApiRoot(Resource):
    """Serves every path. Checks the request target (percent-encoding, UTF-8), the query
    parameters the route declares and the declared body size before handing the request
    to the Klein resource, so Klein's own plain-text 400 for bad UTF-8 never shows.

    ``limits`` and ``revision`` are also what ``make_site`` builds its channel from.
    ``handlers`` (the ``ClientApi`` behind ``routes``) serves the key routes directly
    (``key_endpoint``); without it every request goes through Klein."""

    isLeaf = True
    log = Logger()

    def __init__(self, routes: IResource, limits: HttpLimits, service: Service,
                 handlers: Any = None) -> None:
        super().__init__()
        self._routes = routes
        self.limits = limits
        self._service = service
        self._handlers = handlers

    def revision(self) -> int:
        """The node's applied revision, for ``X-LeifDB-Revision``."""
        return self._service.revision

    def render(self, request: IRequest) -> Any:
        # Bodiless answers (preflight, 405 to HEAD) must not claim to be text/html.
        request.defaultContentType = None
        try:
            if _is_preflight(request):
                return _preflight(request)
            if request.getHeader(b"origin") is not None:
                request.setHeader(b"Access-Control-Allow-Origin", b"*")
                request.setHeader(b"Access-Control-Expose-Headers", EXPOSED_HEADERS)
            if is_key_api(lenient_path(request.uri)):
                # Early errors carry it too; a route sets it again when it answers.
                request.setHeader(REVISION_HEADER, b"%d" % self.revision())
            path = self._check_target(request)
            if request.method == b"OPTIONS":
                return self._options(request, path)
            endpoint = key_endpoint(path, request.method) if self._handlers else None
            if endpoint is not None:
                parse_query(split_uri(request.uri)[1]).check_names(declared_query(endpoint))
                self._check_declared_length(request, path)
                return self._dispatch(request, endpoint, path[len(_KEY_PREFIX):])
            self._check_host(request)
            self._check_query(request, path)
            self._check_declared_length(request, path)
            return self._routes.render(request)
        except ApiError as e:
            return respond_error(request, e)
        except Exception:
            self.log.failure(
                "unexpected error answering {method} {uri}",
                method=request.method,
                uri=request.uri,
            )
            return respond_error(request, ApiError(500, "internal server error"))

    def _dispatch(self, request: IRequest, endpoint: str, key: str) -> Any:
        """Run a key route's handler as Klein would: its bytes are the answer, its
        failure goes to the same error handlers, and a client that goes away cancels it."""
        request.route = KEY_ROUTE  # the metrics' label (``route_template``)
        finished = request.notifyFinish()
        d = Deferred.fromCoroutine(getattr(self._handlers, endpoint)(request, key))
        finished.addErrback(lambda _: d.cancel())
        d.addCallbacks(_write_answer, self._failed, callbackArgs=(request,),
                       errbackArgs=(request,))
        return NOT_DONE_YET

    def _failed(self, failure: Failure, request: IRequest) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return  # cancelled by the client going away: nobody to answer
        try:
            _write_answer(self._handlers.answer_failure(request, failure), request)
        except Exception:
            self.log.failure("unexpected error answering {method} {uri}",
                             method=request.method, uri=request.uri)

    def _check_target(self, request: IRequest) -> str:
        """The decoded path, after checking what Klein would otherwise answer with a
        plain-text 400 or an exception: method, path and query encoding."""
        if not TOKEN.fullmatch(request.method):
            raise ApiError(400, "invalid request method")
        raw_path, raw_query = split_uri(request.uri)
        path = decode_component(raw_path, "path")
        parse_query(raw_query)
        return path

    @staticmethod
    def _check_host(request: IRequest) -> None:
        """Klein decodes the Host header's name as UTF-8 (a plain-text 400 otherwise);
        the key routes, dispatched here, never read it (it cost 7 % of a worker)."""
        try:
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "the Host header is not valid UTF-8") from None

    def _check_query(self, request: IRequest, path: str) -> None:
        """400 for a query parameter the route does not declare (routing errors are
        left to the routes: 404 and 405 say more)."""
        endpoint = match_endpoint(path, request.method)
        if endpoint is not None:
            parse_query(split_uri(request.uri)[1]).check_names(declared_query(endpoint))

    def _check_declared_length(self, request: IRequest, path: str) -> None:
        """413 for a body over the route's limit. ``make_site``'s channel answers before
        the body arrives; this catches the same under a plain ``Site``."""
        limit = self.limits.body_limit(path)
        too_large = getattr(request, "body_too_large", False)
        length = request.getHeader(b"content-length")
        if length is not None and length.strip().isdigit():
            too_large = too_large or int(length) > limit
        if too_large:
            raise body_too_large(limit)

    def _options(self, request: IRequest, path: str) -> bytes:
        """A plain ``OPTIONS`` (not a preflight): the allowed methods, or 404."""
        methods = set(methods_for(path))
        if not methods:
            raise ApiError(404, "no such route", path=path)
        request.setResponseCode(200)
        request.setHeader(b"Allow", ", ".join(sorted(methods | {"OPTIONS"})).encode())
        return b""


def _write_answer(body: bytes | None, request: IRequest) -> None:
    """A handler's answer, unless the client went away meanwhile."""
    if request.finished or getattr(request, "_disconnected", False):
        return
    if body:
        request.write(body)
    request.finish()


def _is_preflight(request: IRequest) -> bool:
    return (
        request.method == b"OPTIONS"
        and request.getHeader(b"access-control-request-method") is not None
    )


def _preflight(request: IRequest) -> bytes:
    """Allow whatever the browser asks, from any origin, on any path."""
    request.setResponseCode(200)
    request.setHeader(b"Access-Control-Allow-Origin", b"*")
    request.setHeader(
        b"Access-Control-Allow-Methods", request.getHeader(b"access-control-request-method")
    )
    asked = request.requestHeaders.getRawHeaders(b"access-control-request-headers")
    if asked:
        request.setHeader(b"Access-Control-Allow-Headers", b", ".join(asked))
    request.responseHeaders.setRawHeaders(b"Vary", list(_PREFLIGHT_VARY))
    return b""
