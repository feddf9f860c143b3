"""In-memory HTTP client for the API tests: no reactor, no sockets.

``StubTreq`` and ``RequestTraversalAgent`` run the server and client over a memory
transport; a request completes inside ``flush()`` unless the fake backend holds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import treq
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer, IResponse
from twisted.web.server import Site
from zope.interface import implementer

from leifdb.http import make_app
from tests.http.fakes import FakeBackend

BASE = "http://node.test"


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

    def __init__(self, body: bytes, chunked: bool = False) -> None:
        self.body = body
        self.length = UNKNOWN_LENGTH if chunked else len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None: ...


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
        self._client.stub.flush()
        return bool(self._outcome)

    def reply(self) -> Reply:
        assert self.done, "the request did not complete"
        if isinstance(self._outcome[0], Failure):
            self._outcome[0].raiseException()
        return self._outcome[0]


class Client:
    """A node's API over a ``FakeBackend``; ``options`` go to ``make_app``."""

    def __init__(self, backend: FakeBackend | None = None, **options: Any) -> None:
        self.backend = backend if backend is not None else FakeBackend()
        options.setdefault("version", "9.9.9")
        self.resource = make_app(self.backend, **options)
        self.stub = StubTreq(self.resource)
        self.agent = RequestTraversalAgent(self.resource)

    def start(self, method: str, path: str, **kwargs: Any) -> Pending:
        """Send, without requiring an answer yet."""
        kwargs.setdefault("allow_redirects", False)
        d = self.stub.request(method, BASE + path, **kwargs)
        self.stub.flush()

        def read(response: IResponse) -> Deferred[Reply]:
            body = self.stub.content(response)
            self.stub.flush()
            return body.addCallback(lambda data: Reply(response.code, response.headers, data))

        return Pending(self, d.addCallback(read))

    def finish(self, pending: Pending) -> Reply:
        self.stub.flush()
        return pending.reply()

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        return self.finish(self.start(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Reply:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.request("DELETE", path, **kwargs)

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
        self.agent.flush()
        response = result_of(d)
        content = treq.content(response)
        self.agent.flush()
        return Reply(response.code, response.headers, result_of(content))


def raw_http(resource: Any, data: bytes) -> bytes:
    """Feed ``data`` to a ``Site`` over a string transport; the bytes the server wrote.
    For requests no HTTP client would send."""
    site = Site(resource, reactor=MemoryReactorClock())
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 31337))
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
