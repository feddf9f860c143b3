"""The ``Site`` the API is served with: a channel that answers oversized requests with JSON
at once, and requests that refuse to store a large body.

Twisted's own answers to these are a bare 400 (request line and headers over 16 KiB
together, too many header fields), a dropped connection (one line over 16 KiB) or, for a
large body, none at all: it spools the whole body to a temporary file first. Here a
request line over its limit gets 414, a header block over its limit 431, and a declared
``Content-Length`` over the route's body limit 413, each before the rest is read; the
connection is then closed, since what follows cannot be parsed or is not wanted.

The site also times every request: its latency goes to the node's ``NodeMetrics`` by
route template, and, at ``--log-level debug``, to one access-log line per request that
shows the query's parameter names but never their values.
"""

from __future__ import annotations

import io
import re
import time
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web import server
from twisted.web.http import HTTPChannel, _parseRequestLine

from leifdb.http.errors import ApiError, json_body
from leifdb.http.limits import HttpLimits
from leifdb.http.metrics import UNMATCHED_ROUTE, route_template, target_route
from leifdb.http.params import decode_component, split_uri
from leifdb.http.paths import REVISION_HEADER, is_key_api
from leifdb.http.resource import EXPOSED_HEADERS, TOKEN, ApiRoot
from leifdb.metrics import NodeMetrics

__all__ = ["ApiChannel", "ApiSite", "BoundedRequest", "make_site", "redacted_target"]

access_log = Logger(namespace="leifdb.http.access")

# ``_whole_request``: bytes a header value may not hold, and the fields that need
# Twisted's own parser (Content-Length is taken when given once).
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_PARSER_FIELDS = frozenset({b"content-length", b"transfer-encoding"})

_REASONS = {
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


class BoundedRequest(server.Request):
    """A request that stores at most ``max_body_bytes`` of body.

    Twisted buffers a whole body before rendering, with no limit. This request keeps
    consuming a larger body (sent chunked: its length was not declared) but stores none
    of it and sets ``body_too_large``; the API then answers 413 without reading anything.
    ``ApiChannel`` sets the limit of each request's route before its body arrives.
    """

    max_body_bytes: int = HttpLimits.derive().max_body_bytes
    body_too_large = False
    _body_received = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = time.perf_counter()  # its request line has just arrived

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


def _decoded_path(target: bytes) -> str | None:
    try:
        return decode_component(split_uri(target)[0], "path")
    except ApiError:
        return None


class ApiChannel(HTTPChannel):
    """An ``HTTPChannel`` with the API's request line, header and body limits, answering
    past them with a JSON 414, 431 or 413 instead of a bare 400 or a dropped connection.

    Its site (``ApiSite``) holds the limits and the revision for ``X-LeifDB-Revision``."""

    log = Logger()
    site: ApiSite
    _reading_request_line = True
    _header_bytes = 0
    _method = b""
    _target = b""
    _refused = False

    def connectionMade(self) -> None:
        limits = self.site.http_limits
        # Lines may be as long as the longer limit; lineReceived applies the right one.
        self.MAX_LENGTH = max(limits.max_request_line_bytes, limits.max_header_bytes)
        # Twisted's own checks stay as a backstop that our checks always precede.
        self.totalHeadersSize = limits.max_request_line_bytes + limits.max_header_bytes
        self.maxHeaders = limits.max_headers
        super().connectionMade()
        self.site.channels.add(self)

    def connectionLost(self, reason: Any) -> None:
        self.site.channels.discard(self)
        super().connectionLost(reason)

    _host: Any = None

    def getHost(self) -> Any:
        """The local address, asked of the kernel once per connection: every request
        asks for it (``Request.__init__``), a ``getsockname`` call each time otherwise."""
        if self._host is None:
            self._host = self.transport.getHost()
        return self._host

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        """While the node shuts down (``ApiSite.drain``), every response says
        ``Connection: close``, so clients take their next request elsewhere."""
        if self.site.draining:
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        return super().checkPersistence(request, version)

    def close_after_response(self) -> None:
        """The response in progress is this connection's last (said in its headers when
        they are not sent yet)."""
        if not self._handlingRequest:
            return
        self.persistent = False
        for request in self.requests:
            if not request.startedWriting:
                request.setHeader(b"Connection", b"close")

    def idle(self) -> bool:
        """No request in progress and nothing of a next one received: closing now
        cannot cut a request short."""
        return not self._handlingRequest and self._reading_request_line and not self._buffer

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._at_request_boundary() and self._whole_request(data):
            return
        super().dataReceived(data)

    def _at_request_boundary(self) -> bool:
        """Between requests, with nothing buffered: where a segment holding one whole
        request can be taken in one piece."""
        return (self._reading_request_line and self.line_mode and not self._buffer
                and not self._busyReceiving and not self._handlingRequest
                and not self.paused and self.persistent)

    def _whole_request(self, data: bytes) -> bool:
        """Take ``data`` as one request when it is exactly one plain request (request
        line, header fields, a body of its ``Content-Length``): a client that waits for
        each answer sends each request in one segment, and Twisted's line-at-a-time
        parse was an eighth of a key request's CPU in the HTTP layer (a PUT: 118 -> 103
        us). Returns False, having consumed nothing, for anything else (a partial or
        pipelined request, a chunked body, folded or invalid header lines, any limit
        reached): Twisted's parser then takes it, with the checks and answers above.
        What is taken goes through the same steps that parser drives
        (``allHeadersReceived``, the body, ``allContentReceived``)."""
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        lines = data[:head_end].split(b"\r\n")
        limits = self.site.http_limits
        line = lines[0]
        if len(line) > limits.max_request_line_bytes or b"\n" in line:
            return False
        try:
            command, target, version = _parseRequestLine(line)
        except ValueError:
            return False
        if len(lines) - 1 > limits.max_headers:
            return False
        fields = []
        length: int | None = None
        header_bytes = 0
        for line in lines[1:]:
            header_bytes += len(line)
            name, colon, value = line.partition(b":")
            if not colon or not TOKEN.fullmatch(name):
                return False  # also a folded line (leading space) or a bare CR/LF in it
            value = value.strip(b" \t")
            if _BAD_VALUE.search(value):
                return False
            lower = name.lower()
            if lower in _PARSER_FIELDS:
                if lower != b"content-length" or length is not None or not value.isdigit():
                    return False
                length = int(value)
            fields.append((name, value))
        body_start = head_end + 4
        length = length or 0
        if header_bytes > limits.max_header_bytes or len(data) - body_start != length:
            return False
        self.resetTimeout()
        request = self.requestFactory(self, len(self.requests))
        self.requests.append(request)
        headers = request.requestHeaders
        for name, value in fields:
            headers.addRawHeader(name, value)
        self._command, self._path, self._version = command, target, version
        self._method, self._target = command, target
        self._reading_request_line = False
        self.length = length
        self.allHeadersReceived()
        if self._refused:
            return True
        if length:
            request.handleContentChunk(data[body_start:])
        self.allContentReceived()
        return True

    def lineReceived(self, line: bytes) -> None:
        limits = self.site.http_limits
        if self._reading_request_line:
            if line:  # Twisted tolerates one blank line before a request
                if len(line) > limits.max_request_line_bytes:
                    return self._refuse_request_line()
                self._reading_request_line = False
                self._header_bytes = 0
                parts = line.split(b" ")
                self._method = parts[0]
                self._target = parts[1] if len(parts) == 3 else b""
        else:
            self._header_bytes += len(line)
            if self._header_bytes > limits.max_header_bytes:
                return self._refuse_headers()
        return super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._reading_request_line:
            self._refuse_request_line()
        else:
            self._refuse_headers()

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.site.http_limits.max_headers:
            self._refuse(
                431,
                f"more than {self.site.http_limits.max_headers} header fields",
                limit=self.site.http_limits.max_headers,
            )
            return False
        return bool(super().headerReceived(line))

    def allHeadersReceived(self) -> None:
        """Before the body: 413 when its declared length is over the route's limit (so an
        ``Expect: 100-continue`` client never sends it), else set the route's limit on
        the request for a body sent chunked."""
        path = _decoded_path(self._target)
        limit = self.site.http_limits.body_limit(path)
        request = self.requests[-1]
        if isinstance(request, BoundedRequest):
            request.max_body_bytes = limit
        if self.length is not None and self.length > limit:
            revision = self.site.revision() if path is not None and is_key_api(path) else None
            self._refuse(
                413,
                f"the request body is larger than {limit} bytes",
                revision=revision,
                limit=limit,
            )
            return
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        self._reading_request_line = True
        super().allContentReceived()

    def _refuse_request_line(self) -> None:
        limit = self.site.http_limits.max_request_line_bytes
        self._refuse(
            414,
            f"the request line is longer than {limit} bytes; put large values in the body",
            limit=limit,
        )

    def _refuse_headers(self) -> None:
        limit = self.site.http_limits.max_header_bytes
        self._refuse(431, f"the request's header fields are larger than {limit} bytes",
                     limit=limit)

    def _refuse(self, status: int, message: str, *, revision: int | None = None,
                **fields: Any) -> None:
        """Answer with a JSON error and close: the rest of the request is not read."""
        if self._refused:
            return
        self._refused = True
        body = json_body({"error": message, **fields})
        head = [
            b"HTTP/1.1 %d %s" % (status, _REASONS[status]),
            b"Content-Type: application/json",
            b"Content-Length: %d" % len(body),
            b"Connection: close",
            b"Access-Control-Allow-Origin: *",
            b"Access-Control-Expose-Headers: " + EXPOSED_HEADERS,
        ]
        if revision is not None:
            head.append(REVISION_HEADER + b": %d" % revision)
        assert self.transport is not None
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.log.info("refused a request: {status} {message}", status=status, message=message)
        self.site.refused(self._method, self._target, status)
        self.loseConnection()


class ApiSite(server.Site):
    """A ``Site`` whose connections are ``ApiChannel`` s with these limits, and whose
    requests are ``BoundedRequest`` s."""

    protocol = ApiChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: Any,
        *,
        limits: HttpLimits,
        revision: Callable[[], int],
        metrics: NodeMetrics | None = None,
        access_log: bool = False,
        **site_options: Any,
    ) -> None:
        site_options.setdefault("requestFactory", BoundedRequest)
        super().__init__(resource, **site_options)
        self.http_limits = limits
        self.revision = revision
        self.metrics = metrics
        self.access_log = access_log
        self.channels: set[ApiChannel] = set()
        self.draining = False

    def drain(self, clock: Any, grace: float = 1.0, deadline: float = 3.0) -> Deferred:
        """Close every client connection without cutting a request short (a stopping
        node calls it after handing leadership over, before the node stops): from now on
        each response says ``Connection: close``; connections idle after ``grace``
        seconds (a busy client has sent its next request by then) are closed; fires once
        none is left and ``grace`` has passed (the port stays open that long, so clients
        still sent here are redirected, not refused mid-handshake), or at ``deadline``,
        aborting the rest."""
        self.draining = True
        done: Deferred = Deferred()
        started = clock.seconds()
        for channel in self.channels:
            channel.close_after_response()

        def check() -> None:
            waited = clock.seconds() - started
            for channel in list(self.channels):
                if waited >= deadline:
                    channel.transport.abortConnection()
                elif waited >= grace and channel.idle():
                    channel.transport.loseConnection()
            if (not self.channels and waited >= grace) or waited >= deadline:
                done.callback(None)
            else:
                clock.callLater(0.05, check)

        check()
        return done

    def log(self, request: Any) -> None:
        """A request finished: its latency to the metrics, and with ``access_log`` one
        debug line (Twisted's own access log is replaced, it prints query values)."""
        started = getattr(request, "started", None)
        seconds = time.perf_counter() - started if started is not None else 0.0
        if self.metrics is not None:
            self.metrics.http_request(route_template(request), request.method, request.code,
                                      seconds)
        if self.access_log:
            access_log.debug(
                "{client} {method} {target} {code} {length} bytes {ms:.1f} ms",
                client=getattr(request.getClientAddress(), "host", "-"),
                method=request.method.decode("ascii", "replace"),
                target=redacted_target(request.uri),
                code=request.code,
                length=request.sentLength,
                ms=round(seconds * 1000.0, 3),
            )

    def refused(self, method: bytes, target: bytes, status: int) -> None:
        """The channel refused a request before it was parsed (414, 431, 413)."""
        if self.metrics is not None:
            route = target_route(target, method) if target else UNMATCHED_ROUTE
            self.metrics.http_request(route, method, status, 0.0)
        if self.access_log:
            access_log.debug("{method} {target} {code} refused before its body",
                             method=method.decode("ascii", "replace"),
                             target=redacted_target(target), code=status)


def redacted_target(uri: bytes) -> str:
    """The request target for a log line: the path as sent, and of the query only the
    parameter names (``/db/k?value&ttl``), since values (``?value=``) are user data."""
    try:
        path, query = split_uri(uri)
    except ValueError:  # not even a URL: say nothing of it
        return "<malformed target>"
    text = path.decode("ascii", "replace")
    if query:
        names = [field.split(b"=", 1)[0] for field in query.split(b"&") if field]
        text += "?" + "&".join(name.decode("ascii", "replace") for name in names)
    return text


def make_site(app: ApiRoot, *, metrics: NodeMetrics | None = None, access_log: bool = False,
              **site_options: Any) -> ApiSite:
    """The ``Site`` to serve ``make_app``'s resource with: its limits come from the app
    (so from the service's). ``metrics``: where request latencies go (the ``NodeMetrics``
    given to ``make_app``); ``access_log``: one debug line per request. ``site_options``
    go to ``Site`` (``reactor=``...)."""
    return ApiSite(app, limits=app.limits, revision=app.revision, metrics=metrics,
                   access_log=access_log, **site_options)
