"""The outermost resource: CORS, preflight, ``OPTIONS``, URL checks and a JSON last resort,
around the Klein routes. Also ``BoundedRequest``, which refuses to store a large body.

These live outside Klein because they must hold for every path, including paths no route
matches: a Klein catch-all ``OPTIONS`` route would turn every unknown path into 405, and
Werkzeug's own 404/405 pages are HTML without CORS headers.
"""

from __future__ import annotations

import io
import re
from typing import Any

from twisted.logger import Logger
from twisted.web import server
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from leifdb.http.errors import ApiError, respond_error
from leifdb.http.params import Limits, decode_component, parse_query, split_uri
from leifdb.http.routes import ClientApi

__all__ = ["ApiRoot", "BoundedRequest", "EXPOSED_HEADERS", "make_site"]

EXPOSED_HEADERS = b"ETag, Location, Retry-After"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PREFLIGHT_VARY = [b"Origin", b"Access-Control-Request-Method", b"Access-Control-Request-Headers"]


class ApiRoot(Resource):
    """Serves every path. Checks the request target (percent-encoding, UTF-8) and the
    declared body size before handing the request to the Klein resource, so Klein's own
    plain-text 400 for bad UTF-8 never shows."""

    isLeaf = True
    log = Logger()

    def __init__(self, routes: IResource, limits: Limits) -> None:
        super().__init__()
        self._routes = routes
        self._limits = limits

    def render(self, request: IRequest) -> Any:
        # Bodiless answers (preflight, 405 to HEAD) must not claim to be text/html.
        request.defaultContentType = None
        try:
            if _is_preflight(request):
                return _preflight(request)
            if request.getHeader(b"origin") is not None:
                request.setHeader(b"Access-Control-Allow-Origin", b"*")
                request.setHeader(b"Access-Control-Expose-Headers", EXPOSED_HEADERS)
            path = self._check_target(request)
            if request.method == b"OPTIONS":
                return self._options(request, path)
            self._check_declared_length(request)
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

    def _check_target(self, request: IRequest) -> str:
        """The decoded path, after checking what Klein would otherwise answer with a
        plain-text 400 or an exception: method, Host, path and query encoding."""
        if not _TOKEN.fullmatch(request.method):
            raise ApiError(400, "invalid request method")
        try:
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "the Host header is not valid UTF-8") from None
        raw_path, raw_query = split_uri(request.uri)
        path = decode_component(raw_path, "path")
        parse_query(raw_query)
        return path

    def _check_declared_length(self, request: IRequest) -> None:
        too_large = getattr(request, "body_too_large", False)
        length = request.getHeader(b"content-length")
        if length is not None and length.strip().isdigit():
            too_large = too_large or int(length) > self._limits.max_body_bytes
        if too_large:
            raise ApiError(
                413,
                f"the request body is larger than {self._limits.max_body_bytes} bytes",
                limit=self._limits.max_body_bytes,
            )

    def _options(self, request: IRequest, path: str) -> bytes:
        """A plain ``OPTIONS`` (not a preflight): the allowed methods, or 404."""
        adapter = ClientApi.app.url_map.bind("localhost", path_info=path)
        methods = set(adapter.allowed_methods())
        if not methods:
            raise ApiError(404, "no such route", path=path)
        request.setResponseCode(200)
        request.setHeader(b"Allow", ", ".join(sorted(methods | {"OPTIONS"})).encode())
        return b""


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


class BoundedRequest(server.Request):
    """A request that stores at most ``max_body_bytes`` of body.

    Twisted buffers a whole body before rendering, with no limit. This request keeps
    consuming a larger body but stores none of it and sets ``body_too_large``; the API then
    answers 413 without reading anything. Use ``make_site`` to get a Site with it.
    """

    max_body_bytes: int = Limits().max_body_bytes
    body_too_large = False
    _body_received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body_bytes:
            self._refuse_body()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._body_received += len(data)
        if self._body_received > self.max_body_bytes:
            self._refuse_body()
            return
        super().handleContentChunk(data)

    def _refuse_body(self) -> None:
        self.body_too_large = True
        old = getattr(self, "content", None)
        self.content = io.BytesIO()
        if old is not None:
            old.close()


def make_site(
    resource: IResource, *, max_body_bytes: int | None = None, **site_options: Any
) -> server.Site:
    """A ``Site`` for ``resource`` whose requests store at most ``max_body_bytes`` of body
    (default: ``make_app``'s default). ``site_options`` go to ``Site`` (``reactor=``...)."""
    limit = max_body_bytes if max_body_bytes is not None else Limits.create().max_body_bytes
    request_factory = type("BoundedRequest", (BoundedRequest,), {"max_body_bytes": limit})
    return server.Site(resource, requestFactory=request_factory, **site_options)
