"""The fault test's link proxies: forward, cut (reset / blackhole), delay, heal."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from typing import Iterator

import pytest

from tests.faults.proxy import ProxyNet


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def net() -> Iterator[ProxyNet]:
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    port = server.server_address[1]
    proxies = ProxyNet(["a", "b", "c"], {"a": port, "b": port, "c": port}, seed=1)
    proxies.start()
    try:
        yield proxies
    finally:
        proxies.stop()
        server.shutdown()
        server.server_close()


def _connect(net: ProxyNet, src: str, dst: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", net.port(src, dst)), timeout=2)


def _echo(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def test_forwards_both_ways_on_every_link(net: ProxyNet) -> None:
    assert len(net.links()) == 6
    assert len({net.port(a, b) for a, b in net.links()}) == 6
    for a, b in net.links():
        with _connect(net, a, b) as s:
            payload = f"hello {a}->{b}".encode()
            assert _echo(s, payload) == payload


def _closed(sock: socket.socket) -> bool:
    """True once the peer closed or reset ``sock``; False if it stays silent for 2 s."""
    sock.settimeout(2)
    try:
        return sock.recv(10) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def test_reset_closes_open_connections_and_refuses_new_ones_until_healed(net: ProxyNet) -> None:
    s = _connect(net, "a", "b")
    assert _echo(s, b"x") == b"x"
    net.cut([("a", "b")], "reset")
    assert _closed(s)
    s.close()
    with _connect(net, "a", "b") as s2:
        assert _closed(s2)
    with _connect(net, "b", "a") as other:  # the other direction is untouched
        assert _echo(other, b"z") == b"z"
    net.heal()
    with _connect(net, "a", "b") as s3:
        assert _echo(s3, b"back") == b"back"


def test_blackhole_swallows_bytes_without_closing(net: ProxyNet) -> None:
    net.cut([("a", "c")], "blackhole")
    with _connect(net, "a", "c") as s:
        s.settimeout(0.3)
        s.sendall(b"lost")
        with pytest.raises(socket.timeout):
            s.recv(10)
    net.heal()
    with _connect(net, "a", "c") as s:
        assert _echo(s, b"found") == b"found"
    assert net.stats()[("a", "c")].bytes_dropped >= 4


def test_partition_cuts_only_links_between_groups(net: ProxyNet) -> None:
    cut = net.partition([["a", "b"]])  # c alone
    assert sorted(cut) == sorted([("a", "c"), ("c", "a"), ("b", "c"), ("c", "b")])
    assert net.state("a", "b") == "up" and net.state("c", "a") == "reset"
    net.heal()
    assert all(net.state(a, b) == "up" for a, b in net.links())


def test_delay_holds_bytes_back_in_order(net: ProxyNet) -> None:
    net.set_delay([("b", "c")], 0.2)
    with _connect(net, "b", "c") as s:
        start = time.monotonic()
        payload = b"".join(b"%04d" % i for i in range(200))
        assert _echo(s, payload) == payload
        assert time.monotonic() - start >= 0.2
