"""The API over real TCP on 127.0.0.1: ``make_site``'s bounded requests, and the latency
script run against it (from a thread, since it blocks)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import succeed
from twisted.internet.threads import deferToThread
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from twisted.web.test.requesthelper import DummyChannel
from zope.interface import implementer

from leifdb.errors import NotLeaderError
from leifdb.http import BoundedRequest, make_app, make_site
from tests.http.fakes import FakeService

BENCH = Path(__file__).resolve().parents[2] / "bench" / "http_latency.py"
TIMEOUT = 20


def load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("http_latency", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@implementer(IBodyProducer)
class ChunkedBody:
    """A body of unknown length (sent chunked), written in several pieces."""

    length = UNKNOWN_LENGTH

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def startProducing(self, consumer):
        for piece in self.pieces:
            consumer.write(piece)
        return succeed(None)

    def pauseProducing(self): ...

    def resumeProducing(self): ...

    def stopProducing(self): ...


class Server:
    def __init__(self, service: FakeService, max_body_bytes: int = 1000) -> None:
        from twisted.internet import reactor

        self.service = service
        site = make_site(make_app(service, version="t", max_body_bytes=max_body_bytes),
                         reactor=reactor)
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        from twisted.internet import reactor

        d = treq.request(method, self.url + path, persistent=False,
                         allow_redirects=False, **kwargs)
        response = await d.addTimeout(TIMEOUT, reactor)
        body = await treq.content(response).addTimeout(TIMEOUT, reactor)
        return response.code, response.headers, body


@pytest.fixture
def server():
    """Start nodes on free ports; all are stopped after the test."""
    servers: list[Server] = []

    def start(service: FakeService | None = None, **options: Any) -> Server:
        servers.append(Server(service or FakeService(), **options))
        return servers[-1]

    yield start
    for s in servers:
        pytest_twisted.blockon(s.port.stopListening())


def test_bounded_request_stores_nothing_past_the_limit():
    request = type("R", (BoundedRequest,), {"max_body_bytes": 1000})(DummyChannel())
    request.gotLength(None)
    request.handleContentChunk(b"x" * 600)
    assert not request.body_too_large
    request.handleContentChunk(b"x" * 600)
    request.handleContentChunk(b"x" * 600)
    assert request.body_too_large
    assert isinstance(request.content, io.BytesIO) and request.content.getvalue() == b""


def test_bounded_request_refuses_a_declared_large_body_at_once():
    request = type("R", (BoundedRequest,), {"max_body_bytes": 1000})(DummyChannel())
    request.gotLength(10**12)
    assert request.body_too_large
    request.handleContentChunk(b"x" * 5000)
    assert request.content.getvalue() == b""


@pytest_twisted.ensureDeferred
async def test_over_tcp_small_bodies_work_and_large_ones_are_413(server):
    node = server(max_body_bytes=1000)
    code, _, body = await node.request("PUT", "/db/k", data=b'{"value": "small"}')
    assert code == 200 and b'"Ok"' in body
    code, headers, body = await node.request("PUT", "/db/k", data=b"x" * 100_000)
    assert code == 413 and headers.getRawHeaders("content-type") == ["application/json"]
    pieces = [b'{"value": "'] + [b"y" * 400] * 10 + [b'"}']
    code, _, body = await node.request("PUT", "/db/k", data=ChunkedBody(pieces))
    assert code == 413, body
    code, _, _ = await node.request("PUT", "/db/k", data=ChunkedBody([b'{"value": ', b'"z"}']))
    assert code == 200
    assert node.service.store.get("k").value == "z"


@pytest_twisted.ensureDeferred
async def test_latency_script_against_a_node(server, capsys):
    bench = load_bench()
    node = server()
    samples = await deferToThread(bench.measure, node.url, 20, 10, "b/")
    assert len(samples["put"]) == len(samples["get"]) == 20
    assert all(s >= 0 for s in samples["put"] + samples["get"])
    assert len(node.service.store) == 20
    assert node.service.barriers == 20
    assert await deferToThread(bench.main, [node.url, "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert "PUT  n=3  median=" in out and "GET  n=3" in out and "p99=" in out


@pytest_twisted.ensureDeferred
async def test_latency_script_follows_a_redirect_to_the_leader(server):
    bench = load_bench()
    leader = server()
    follower_service = FakeService()
    follower = server(follower_service)
    follower_service.write_error = NotLeaderError(leader.url.removeprefix("http://"))
    samples = await deferToThread(bench.measure, follower.url, 5, 10, "r/")
    assert len(samples["put"]) == 5
    assert len(leader.service.store) == 5 and not len(follower_service.store)


def test_percentile_is_nearest_rank():
    bench = load_bench()
    samples = [float(i) for i in range(1, 101)]
    assert bench.percentile(samples, 99) == 99.0
    assert bench.percentile(samples, 50) == 50.0
    assert bench.percentile([3.0], 99) == 3.0
    assert bench.percentile([5.0, 1.0], 99) == 5.0
    with pytest.raises(ValueError):
        bench.percentile([], 50)
