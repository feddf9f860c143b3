"""In-memory HTTP client for the API tests: no reactor, no sockets.

``MemoryAgent`` is treq's ``RequestTraversalAgent`` idea with the server side built by
``make_site``, so the API's own channel (414/431/early 413) and bounded requests are in
the path, and with the connections kept so a test can read a stream as it comes, pause
the server's transport or hang up. A request completes inside ``flush()`` unless the fake
service holds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IAgentEndpointFactory, IBodyProducer, IResponse
from twisted.web.server import Site
from zope.interface import implementer

from leifdb.http import HttpLimits, make_app, make_site
from leifdb.service.api import ServiceLimits
from tests.http.fakes import FakeService

BASE = "http://node.test"
_HTTP_OPTIONS = {"max_body_bytes", "max_request_line_bytes", "max_header_bytes", "max_headers"}
_SERVER = IPv4Address("TCP", "127.0.0.1", 80)
_CLIENT = IPv4Address("TCP", "127.0.0.1", 31337)


def result_of(d: Deferred[Any]) -> Any:
    """The result a Deferred already has; fails the test if it has none yet."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the request did not complete"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


@implementer(IBodyProducer)
class _BytesProducer:
    """Writes the whole body at once; ``chunked`` hides its length from the server."""

    def __init__(self, body: bytes | str, chunked: bool = False) -> None:
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.length = UNKNOWN_LENGTH if chunked else len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None: ...


@implementer(IAgentEndpointFactory)
class _Endpoints:
    def __init__(self, reactor: MemoryReactorClock) -> None:
        self.reactor = reactor

    def endpointForURI(self, uri: Any) -> TCP4ClientEndpoint:
        return TCP4ClientEndpoint(self.reactor, "127.0.0.1", uri.port)


@dataclass
class Connection:
    """One in-memory connection: the server's channel and the pump between the sides."""

    server: Any
    pump: iosim.IOPump


@implementer(IAgent)
class MemoryAgent:
    """An ``IAgent`` whose requests reach ``site`` over in-memory connections."""

    def __init__(self, site: Site, reactor: MemoryReactorClock) -> None:
        self.site = site
        self.reactor = reactor
        self._agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor))
        self.connections: list[Connection] = []
        self.last: Connection | None = None
        self._flushing = False

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: Any = None) -> Deferred[IResponse]:
        before = len(self.reactor.tcpClients)
        d = self._agent.request(method, uri, headers, bodyProducer)
        if len(self.reactor.tcpClients) == before:
            return d  # failed before connecting
        factory = self.reactor.tcpClients[-1][2]
        server = self.site.buildProtocol(_CLIENT)
        server_io = iosim.FakeTransport(server, isServer=True, hostAddress=_SERVER,
                                        peerAddress=_CLIENT)
        client = factory.buildProtocol(None)
        client_io = iosim.FakeTransport(client, isServer=False, hostAddress=_CLIENT,
                                        peerAddress=_SERVER)
        pump = iosim.connect(server, server_io, client, client_io)
        self.last = Connection(server, pump)
        self.connections.append(self.last)
        return d

    def flush(self) -> None:
        """Move data until nothing moves. Not reentrant: a callback run by a flush (a
        response arriving) must not pump the rest of the same buffer out of order."""
        if self._flushing:
            return
        self._flushing = True
        try:
            for connection in list(self.connections):
                connection.pump.flush()
        finally:
            self._flushing = False
        self.connections = [c for c in self.connections
                            if not (c.pump.clientIO.disconnected and c.pump.serverIO.disconnected)]


@dataclass
class Reply:
    code: int
    headers: Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.all(name)
        assert len(values) <= 1, f"{name} given {len(values)} times"
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        raw = self.headers.getRawHeaders(name.encode("latin-1"), [])
        return [v.decode("latin-1") for v in raw]


class Pending:
    """A request in flight; ``done`` once the server has answered."""

    def __init__(self, client: Client, d: Deferred[Reply]) -> None:
        self._client = client
        self._outcome: list[Any] = []
        d.addBoth(self._outcome.append)

    @property
    def done(self) -> bool:
        self._client.flush()
        return bool(self._outcome)

    def reply(self) -> Reply:
        assert self.done, "the request did not complete"
        if isinstance(self._outcome[0], Failure):
            self._outcome[0].raiseException()
        return self._outcome[0]


class _Collector(Protocol):
    """Keeps a streamed body as it arrives."""

    def __init__(self) -> None:
        self.data = b""
        self.ended: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.ended = reason


class Stream:
    """A streamed response (SSE) read as it comes."""

    def __init__(self, client: Client, response: IResponse, connection: Connection) -> None:
        self._client = client
        self.code = response.code
        self.headers = response.headers
        self.connection = connection
        self._body = _Collector()
        response.deliverBody(self._body)
        client.flush()

    def header(self, name: str) -> str | None:
        return Reply(self.code, self.headers, b"").header(name)

    @property
    def raw(self) -> bytes:
        self._client.flush()
        return self._body.data

    @property
    def ended(self) -> bool:
        self._client.flush()
        return self._body.ended is not None

    def messages(self) -> list[dict[str, Any]]:
        """The SSE messages so far: ``{"id", "event", "data" (parsed JSON), "retry"}``
        with only the fields present."""
        found = []
        for block in self.raw.decode("utf-8").split("\n\n")[:-1]:
            message: dict[str, Any] = {}
            for line in block.split("\n"):
                name, _, value = line.partition(": ")
                message[name] = json.loads(value) if name == "data" else value
            found.append(message)
        return found

    def events(self) -> list[dict[str, Any]]:
        """The change messages' data only."""
        return [m["data"] for m in self.messages() if "data" in m and "event" not in m]

    def hang_up(self) -> None:
        self.connection.pump.clientIO.loseConnection()
        self._client.flush()


class Client:
    """A node's API over a ``FakeService``. Options named like ``ServiceLimits`` fields
    set the service's limits; ``max_body_bytes`` and the other ``HttpLimits`` fields go
    to ``make_app``. ``plain_site``: serve with Twisted's own ``Site`` (no early checks)."""

    def __init__(self, service: FakeService | None = None, *, version: str = "9.9.9",
                 plain_site: bool = False, **options: Any) -> None:
        http = {k: v for k, v in options.items() if k in _HTTP_OPTIONS}
        service_limits = {k: v for k, v in options.items() if k not in _HTTP_OPTIONS}
        if service is None:
            service = FakeService(ServiceLimits(**service_limits))
        self.service = service
        self.resource = make_app(service, version=version, **http)
        self.reactor = MemoryReactorClock()
        site = (Site(self.resource, reactor=self.reactor) if plain_site
                else make_site(self.resource, reactor=self.reactor))
        self.agent = MemoryAgent(site, self.reactor)
        self.http = HTTPClient(self.agent, data_to_body_producer=_BytesProducer)

    @property
    def limits(self) -> HttpLimits:
        return self.resource.limits

    def flush(self) -> None:
        self.agent.flush()

    def start(self, method: str, path: str, **kwargs: Any) -> Pending:
        """Send, without requiring an answer yet."""
        kwargs.setdefault("allow_redirects", False)
        d = self.http.request(method, BASE + path, **kwargs)
        self.flush()

        def read(response: IResponse) -> Deferred[Reply]:
            body = treq.content(response)
            self.flush()
            return body.addCallback(lambda data: Reply(response.code, response.headers, data))

        return Pending(self, d.addCallback(read))

    def finish(self, pending: Pending) -> Reply:
        self.flush()
        return pending.reply()

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        return self.finish(self.start(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Reply:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.request("DELETE", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Reply:
        return self.request("POST", path, **kwargs)

    def stream(self, path: str, headers: dict[str, str] | None = None) -> Stream:
        """Open ``GET path`` and read it as a stream; the status and headers must have
        arrived (for an error answer, the whole body too)."""
        d = self.http.request("GET", BASE + path, headers=headers, unbuffered=True,
                              allow_redirects=False)
        connection = self.agent.last
        assert connection is not None
        self.flush()
        return Stream(self, result_of(d), connection)

    def raw(
        self,
        method: bytes,
        target: bytes,
        headers: dict[bytes, list[bytes]] | None = None,
        body: bytes | None = None,
        chunked: bool = False,
    ) -> Reply:
        """Send ``target`` exactly as given (treq would normalise a malformed URL)."""
        producer = _BytesProducer(body, chunked) if body is not None else None
        d = self.agent.request(method, BASE.encode() + target, Headers(headers or {}), producer)
        self.flush()
        response = result_of(d)
        content = treq.content(response)
        self.flush()
        return Reply(response.code, response.headers, result_of(content))


def raw_http(resource: Any, data: bytes, *, site: Site | None = None) -> bytes:
    """Feed ``data`` to a site (default: a plain ``Site``) over a string transport; the
    bytes the server wrote. For requests no HTTP client would send."""
    site = site if site is not None else Site(resource, reactor=MemoryReactorClock())
    protocol = site.buildProtocol(_CLIENT)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(data)
    return transport.value()


def assert_json_error(reply: Reply, code: int) -> dict[str, Any]:
    """The reply has this status and a JSON error body; returns the body."""
    assert reply.code == code, (reply.code, reply.body)
    assert reply.header("Content-Type") == "application/json"
    document = reply.json()
    assert isinstance(document.get("error"), str) and document["error"]
    return document
