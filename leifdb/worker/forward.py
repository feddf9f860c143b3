"""The routes a worker does not serve itself, and the streaming proxy that forwards them
to its node.

A route is forwarded when it needs what cannot cross the RPC socket as a call:
``status()`` and ``members()`` (synchronous answers), ``watch``/``observe`` (sinks the
service calls back), ``snapshot`` (a file) and ``/metrics`` (the node's registry).
``FORWARDED_ENDPOINTS`` names them, by the endpoint ``leifdb.http.routing.match_endpoint``
gives: the one place that decides. The node serves them on its internal port (127.0.0.1,
ephemeral, never announced) with the very site it would serve publicly, so the answers
are the node's own; CORS, query and target checks run there as they would anywhere.
The worker's ``ApiSite`` has already enforced the request line, header and body limits.

The proxy streams: each piece of the node's answer is written to the client as it comes
(a watch's SSE events, a snapshot), with back-pressure from the client's connection to
the node's, and the node's connection is closed as soon as the client goes away.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import ClientFactory
from twisted.logger import Logger
from twisted.web.http import HTTPClient
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from leifdb.http.errors import ApiError, respond_error
from leifdb.http.failures import RETRY_AFTER_SECONDS
from leifdb.http.params import lenient_path
from leifdb.http.resource import ApiRoot
from leifdb.http.routing import api, match_endpoint

__all__ = ["FORWARDED_ENDPOINTS", "ForwardingRoot", "NodeProxy", "forwarded_prefixes"]

log = Logger(namespace="leifdb.worker.forward")

#: Endpoints a worker forwards to its node (see the module docstring for why each).
FORWARDED_ENDPOINTS = frozenset({
    "health",              # status()
    "list_members",        # members()
    "transfer_leader",     # status() after the transfer
    "watch",               # a sink the service calls back
    "observe",             # ditto
    "snapshot",            # a file, streamed
    "prometheus_metrics",  # the node's registry
})

# Hop-by-hop fields (RFC 9110 7.6.1) and the body framing: each connection has its own.
_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"content-length",
})
_REPLACED = frozenset({b"server", b"date", b"content-type"})


def forwarded_prefixes() -> tuple[str, ...]:
    """The static start of every forwarded route's path: a request whose path starts
    with none of them is served by the worker without asking the route table."""
    prefixes = {
        rule.rule.split("<", 1)[0]
        for rule in api.url_map.iter_rules()
        if rule.endpoint in FORWARDED_ENDPOINTS
    }
    return tuple(sorted(prefixes))


class ForwardingRoot(Resource):
    """The worker's root resource: ``app`` (the node's API over a ``RemoteService``) for
    every request but those of ``FORWARDED_ENDPOINTS``, which ``proxy`` forwards."""

    isLeaf = True

    def __init__(self, app: ApiRoot, proxy: NodeProxy) -> None:
        super().__init__()
        self._app = app
        self._proxy = proxy
        self._prefixes = forwarded_prefixes()

    def forwarded(self, request: IRequest) -> bool:
        """Whether the node answers ``request`` (a body over its limit never is: the
        worker answers 413 as the node would)."""
        if getattr(request, "body_too_large", False):
            return False
        path = lenient_path(request.uri)
        if not path.startswith(self._prefixes):
            return False
        return match_endpoint(path, request.method) in FORWARDED_ENDPOINTS

    def render(self, request: IRequest) -> Any:
        if self.forwarded(request):
            return self._proxy.render(request)
        return self._app.render(request)


class NodeProxy:
    """Forwards a request to the node's internal port, streaming the answer back."""

    def __init__(self, reactor: Any, port: int, host: str = "127.0.0.1") -> None:
        self.reactor = reactor
        self.host = host
        self.port = port

    def render(self, request: IRequest) -> Any:
        request.defaultContentType = None  # the node's answer says what it is
        request.content.seek(0)
        body = request.content.read()
        headers = [
            (name, value)
            for name, values in request.requestHeaders.getAllRawHeaders()
            if name.lower() not in _HOP_BY_HOP
            for value in values
        ]
        if body or request.getHeader(b"content-length") is not None:
            headers.append((b"Content-Length", b"%d" % len(body)))
        headers.append((b"Connection", b"close"))
        factory = _UpstreamFactory(_Forwarding(request, headers, body))
        self.reactor.connectTCP(self.host, self.port, factory)
        return NOT_DONE_YET


class _Forwarding:
    """One request being forwarded: what to send, and whether its client is still
    there (``gone``: the request finished or its connection was lost)."""

    def __init__(self, father: IRequest, headers: list[tuple[bytes, bytes]], body: bytes
                 ) -> None:
        self.father = father
        self.headers = headers
        self.body = body
        self.gone = False
        self.upstream: _Upstream | None = None
        father.notifyFinish().addBoth(self._father_finished)

    def _father_finished(self, result: Any) -> None:
        """The answer is complete or the client went away: close the node's side."""
        self.gone = True
        if self.upstream is not None:
            self.upstream.stop()

    def fail(self, message: str) -> None:
        """Answer 503 (nothing of the node's answer has been written)."""
        if not self.gone:
            error = ApiError(503, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            self.father.write(respond_error(self.father, error))
            self.father.finish()


class _Upstream(HTTPClient):
    """The connection to the node for one forwarded request (HTTP/1.0, so the node's
    answer is never chunked and ends when the connection closes); the answer is written
    to the client as it arrives."""

    def __init__(self, forwarding: _Forwarding) -> None:
        self.forwarding = forwarding
        self.father = forwarding.father
        self._status_seen = False
        self._streaming = False
        self._done = False

    def connectionMade(self) -> None:
        forwarding = self.forwarding
        if forwarding.gone:
            self._done = True
            self.transport.abortConnection()
            return
        forwarding.upstream = self
        self.sendCommand(self.father.method, self.father.uri)
        for name, value in forwarding.headers:
            self.sendHeader(name, value)
        self.endHeaders()
        if forwarding.body:
            self.transport.write(forwarding.body)

    def stop(self) -> None:
        """The client's connection is gone (with it the producer registration)."""
        if not self._done:
            self._done = True
            self._streaming = False
            self.transport.abortConnection()

    def handleStatus(self, version: bytes, status: bytes, message: bytes) -> None:
        self._status_seen = True
        self.father.setResponseCode(int(status), message)

    def handleHeader(self, key: bytes, value: bytes) -> None:
        lower = key.lower()
        if lower in _REPLACED:
            self.father.responseHeaders.setRawHeaders(key, [value])
        elif lower == b"content-length" or lower not in _HOP_BY_HOP:
            self.father.responseHeaders.addRawHeader(key, value)

    def handleEndHeaders(self) -> None:
        # The client's connection paces the node's: a slow reader pauses the node's
        # writes instead of growing a buffer here.
        if not self._done:
            self.father.registerProducer(self.transport, True)
            self._streaming = True

    def handleResponsePart(self, data: bytes) -> None:
        if not self._done:
            self.father.write(data)

    def handleResponseEnd(self) -> None:
        if self._done:
            return
        self._done = True
        if self._streaming:
            self._streaming = False
            self.father.unregisterProducer()
        if not self._status_seen:
            self.forwarding.fail("the node did not answer this request; retry")
        elif not self.forwarding.gone:
            self.father.finish()
        self.transport.loseConnection()


class _UpstreamFactory(ClientFactory):
    noisy = False  # one connection per forwarded request: no "Starting factory" lines

    def __init__(self, forwarding: _Forwarding) -> None:
        self.forwarding = forwarding

    def buildProtocol(self, addr: Any) -> _Upstream:
        return _Upstream(self.forwarding)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        log.warn("cannot reach the node's internal port: {error}",
                 error=reason.getErrorMessage())
        self.forwarding.fail("the node cannot be reached right now; retry")
