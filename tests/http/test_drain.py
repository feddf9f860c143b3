"""``ApiSite.drain``: a stopping node lets requests in progress finish and closes client
connections only between requests (so a rolling restart cuts no request short)."""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from leifdb.http import make_app, make_site
from tests.http.fakes import FakeService

TIMEOUT = 5.0


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return sock


def _request(sock: socket.socket, path: str) -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def _read_response(sock: socket.socket) -> bytes:
    """One response (headers and a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest_twisted.ensureDeferred
async def test_drain_finishes_requests_in_progress_and_closes_connections_between_requests():
    service = FakeService()
    site = make_site(make_app(service, version="t"), reactor=reactor)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    number = port.getHost().port
    try:
        busy, reused, idle = [await deferToThread(_connect, number) for _ in range(3)]
        await deferToThread(_request, reused, "/health")
        assert b"connection: close" not in (await deferToThread(_read_response, reused)).lower()
        service.hold = True  # the next linearizable read waits for its barrier
        await deferToThread(_request, busy, "/db/k")
        while not service.pending:
            await deferLater(reactor, 0.01, lambda: None)
        assert len(site.channels) == 3

        drained = site.drain(reactor, grace=0.3, deadline=3.0)
        # a client that sends its next request within the grace gets it answered, last
        await deferToThread(_request, reused, "/health")
        head = await deferToThread(_read_response, reused)
        assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
        assert await deferToThread(_closed_by_peer, reused)
        # the request in progress is answered, not cut short, and its connection closed
        service.pending.pop(0).callback(None)
        head = await deferToThread(_read_response, busy)
        assert head.startswith(b"HTTP/1.1 404") and b"connection: close" in head.lower()
        assert await deferToThread(_closed_by_peer, busy)
        # the idle connection is closed once the grace is over
        assert await deferToThread(_closed_by_peer, idle)
        await drained
        assert site.channels == set()
    finally:
        for sock in (busy, reused, idle):
            sock.close()
        await port.stopListening()
