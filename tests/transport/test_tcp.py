"""Real TCP on 127.0.0.1: transports exchange every message type, survive restarts and
misbehaving clients, and stop in bounded time."""

from __future__ import annotations

import random
from struct import pack

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol

from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    EntryType,
    InstallSnapshot,
    InstallSnapshotReply,
    ReadIndexReply,
    ReadIndexRequest,
    RequestVote,
    RequestVoteReply,
    TimeoutNow,
)
from leifdb.storage.identity import PeerPins
from leifdb.transport import RaftTransport
from leifdb.wire import encode_hello, encode_message

def framed(frame: bytes) -> bytes:
    return pack("!I", len(frame)) + frame


WAIT = 10.0  # upper bound for anything to happen; tests never wait this long when passing


def reactor():
    from twisted.internet import reactor as r

    return r


async def eventually(predicate, what: str, timeout: float = WAIT) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await task.deferLater(reactor(), 0.01)
    pytest.fail(f"timed out waiting for {what}")


async def resend_until_received(sender, msg, receiver) -> None:
    """Send like Raft does: again and again until it arrives."""
    for _ in range(int(WAIT / 0.05)):
        sender.send(msg)
        await task.deferLater(reactor(), 0.05)
        if msg in receiver.inbox.bodies():
            return
    pytest.fail(f"{msg} never arrived")


class Inbox:
    def __init__(self):
        self.messages = []
        self.unreachable = []

    def __call__(self, msg, sender_http):
        self.messages.append((msg, sender_http))

    def bodies(self):
        return [m for m, _ in self.messages]


@pytest.fixture
def nodes():
    """``await nodes.start(names)`` makes listening transports that know each other; all
    are stopped after the test."""
    made: list[RaftTransport] = []

    class Nodes:
        def make(self, name, port=0, peers=None, **options):
            inbox = Inbox()
            options = {"reconnect_max_delay": 0.2, "rng": random.Random(1), **options}
            t = RaftTransport(reactor(), node_id=name, http_address=f"{name}.http:80",
                              peers=peers or {}, on_message=inbox,
                              on_peer_unreachable=inbox.unreachable.append, **options)
            made.append(t)
            t.inbox = inbox
            t.port = t.listen(port, "127.0.0.1").getHost().port
            return t

        async def start(self, names, **options):
            ts = {n: self.make(n, **options) for n in names}
            for n, t in ts.items():
                t.update_peers({m: ("127.0.0.1", o.port) for m, o in ts.items() if m != n})
            for n, t in ts.items():
                await eventually(lambda t=t, n=n: len(t.connected_peers()) == len(names) - 1,
                                 f"{n} to connect")
            return ts

    yield Nodes()
    pytest_twisted.blockon(defer.DeferredList([t.stop() for t in made]))


class RawClient(Protocol):
    """A peer that speaks bytes, not Raft."""

    def __init__(self):
        self.lost = defer.Deferred()

    def connectionLost(self, reason):
        self.lost.callback(None)


async def raw_connect(port) -> RawClient:
    endpoint = TCP4ClientEndpoint(reactor(), "127.0.0.1", port)
    return await endpoint.connect(Factory.forProtocol(RawClient))


def every_message(src, dst):
    return [
        RequestVote(src, dst, 3, 10, 2),
        RequestVoteReply(src, dst, 3, True),
        AppendEntries(src, dst, 3, 10, 2,
                      tuple(Entry(3, 11 + i, t, b"d" * i) for i, t in enumerate(EntryType)), 9,
                      read_seq=4),
        AppendEntriesReply(src, dst, 3, False, 0, 7, 2, 4),
        InstallSnapshot(src, dst, 3, 100, 2, 0, b"chunk", True, 0xDEADBEEF, 5),
        InstallSnapshotReply(src, dst, 3, 100, 5, True),
        ReadIndexRequest(src, dst, 3, 42),
        ReadIndexReply(src, dst, 3, 42, 99, True),
        TimeoutNow(src, dst, 3),
    ]


@pytest_twisted.ensureDeferred
async def test_two_transports_exchange_every_message_type(nodes, transport_log):
    ts = await nodes.start(["a", "b"])
    a, b = ts["a"], ts["b"]

    for msg in every_message("a", "b"):
        a.send(msg)
    for msg in every_message("b", "a"):
        b.send(msg)
    await eventually(lambda: len(a.inbox.messages) == len(b.inbox.messages) == 9, "delivery")

    assert b.inbox.bodies() == every_message("a", "b")
    assert a.inbox.bodies() == every_message("b", "a")
    assert {http for _, http in b.inbox.messages} == {"a.http:80"}
    assert transport_log.warnings() == []


@pytest_twisted.ensureDeferred
async def test_replies_answer_requests_and_many_appends_are_in_flight(nodes):
    ts = await nodes.start(["a", "b"])
    a, b = ts["a"], ts["b"]

    for i in range(50):
        a.send(AppendEntries("a", "b", 1, i, 1 if i else 0, (Entry(1, i + 1),), 0))
    assert a.unanswered("b") == 50  # all sent without waiting for any reply
    await eventually(lambda: len(b.inbox.messages) == 50, "the appends")
    b.send(AppendEntriesReply("b", "a", 1, True, 50))
    await eventually(lambda: a.unanswered("b") == 0, "the reply to answer them")
    assert a.inbox.unreachable == []


@pytest_twisted.ensureDeferred
async def test_a_peer_that_does_not_reply_is_reported_unreachable(nodes):
    ts = await nodes.start(["a", "b"], request_timeout=0.2)
    a = ts["a"]

    a.send(RequestVote("a", "b", 2, 0, 0))

    await eventually(lambda: a.inbox.unreachable == ["b"], "the request to time out")
    assert a.stats.request_timeouts == 1


@pytest_twisted.ensureDeferred
async def test_reconnects_after_the_peer_restarts(nodes):
    ts = await nodes.start(["a", "b"])
    a, b = ts["a"], ts["b"]
    port = b.port

    await b.stop()
    await eventually(lambda: "b" not in a.connected_peers(), "a to see b go")
    assert "b" in a.inbox.unreachable
    a.send(RequestVote("a", "b", 5, 0, 0))  # dropped, not raised
    assert a.stats.dropped_not_connected >= 1

    b2 = nodes.make("b", port=port, peers={"a": ("127.0.0.1", a.port)})
    await eventually(lambda: "b" in a.connected_peers() and "a" in b2.connected_peers(),
                     "reconnection both ways")
    await resend_until_received(a, RequestVote("a", "b", 6, 0, 0), b2)
    await resend_until_received(b2, RequestVoteReply("b", "a", 6, True), a)


@pytest_twisted.ensureDeferred
async def test_a_wiped_peer_is_not_heard_until_its_pin_is_cleared(nodes, tmp_path):
    """b restarts on a new data directory (another incarnation) under its old id: a, which
    pinned b's first incarnation on disk, drops its connections until b was re-added."""
    pins = PeerPins.open(tmp_path)
    a = nodes.make("a", pins=pins, incarnation="aaaa0000aaaa0000")
    b = nodes.make("b", peers={"a": ("127.0.0.1", a.port)}, incarnation="b1b1b1b1b1b1b1b1")
    a.update_peers({"b": ("127.0.0.1", b.port)})
    await resend_until_received(b, RequestVote("b", "a", 2, 0, 0), a)
    assert PeerPins.open(tmp_path).pinned() == {"b": "b1b1b1b1b1b1b1b1"}
    port = b.port
    await b.stop()

    wiped = nodes.make("b", port=port, peers={"a": ("127.0.0.1", a.port)},
                       incarnation="b2b2b2b2b2b2b2b2")
    await eventually(lambda: a.stats.incarnations_refused >= 2, "a to refuse b's redials")
    for _ in range(5):
        wiped.send(RequestVote("b", "a", 3, 0, 0))
        await task.deferLater(reactor(), 0.02)
    assert RequestVote("b", "a", 3, 0, 0) not in a.inbox.bodies()

    pins.clear("b")  # b was removed and added again
    await resend_until_received(wiped, RequestVote("b", "a", 4, 0, 0), a)
    assert PeerPins.open(tmp_path).pinned() == {"b": "b2b2b2b2b2b2b2b2"}


BAD_CLIENTS = {
    "garbage": b"\x00\x00\x00\x05\xff\xff\xff\xff\xff",
    "oversized length": pack("!I", 2_000_000),
    "unknown src": framed(encode_hello("mallory", "b", "m:80", "leifdb")),
    "no hello": b"\x00\x00\x00\x01",  # half a frame, then silence: the Hello timer closes it
}


@pytest_twisted.ensureDeferred
async def test_misbehaving_connections_are_closed_and_the_rest_keep_working(nodes,
                                                                          transport_log):
    ts = await nodes.start(["a", "b"], max_frame_bytes=1_000_000, request_timeout=0.5)
    a, b = ts["a"], ts["b"]

    clients = []
    for data in BAD_CLIENTS.values():
        client = await raw_connect(b.port)
        client.transport.write(data)
        clients.append(client)
    await defer.DeferredList([c.lost for c in clients]).addTimeout(WAIT, reactor())

    assert all(c.lost.called for c in clients)
    warnings = transport_log.warnings()
    assert len(warnings) == len(BAD_CLIENTS), warnings
    assert b.stats.connections_rejected == len(BAD_CLIENTS)
    await resend_until_received(a, RequestVote("a", "b", 1, 0, 0), b)


@pytest_twisted.ensureDeferred
async def test_a_frame_from_another_src_after_a_valid_hello_closes_only_that_connection(
        nodes, transport_log):
    ts = await nodes.start(["a", "b", "c"])
    a, b = ts["a"], ts["b"]
    client = await raw_connect(b.port)
    for frame in (encode_hello("a", "b", "x:1", "leifdb"),
                  encode_message(RequestVote("c", "b", 1, 0, 0), src_http_address="x:1")):
        client.transport.write(framed(frame))
    await client.lost.addTimeout(WAIT, reactor())

    assert b.inbox.messages == []
    assert len(transport_log.warnings()) == 1
    # The impostor's Hello displaced a's connection (there is no authentication: keep the
    # Raft port on a trusted network); a redials and its messages flow again.
    await resend_until_received(a, RequestVote("a", "b", 1, 0, 0), b)


class Sink(Protocol):
    """Accepts a connection and never reads from it."""

    def connectionMade(self):
        self.transport.pauseProducing()
        self.lost = defer.Deferred()
        Sink.instances.append(self)

    def connectionLost(self, reason):
        self.lost.callback(None)


@pytest_twisted.ensureDeferred
async def test_a_slow_peer_bounds_the_queue_and_stop_still_finishes(nodes):
    Sink.instances = []
    sink_port = reactor().listenTCP(0, Factory.forProtocol(Sink), interface="127.0.0.1")
    try:
        a = nodes.make("a", peers={"b": ("127.0.0.1", sink_port.getHost().port)},
                       max_queued_bytes=1_000_000, close_timeout=0.2)
        await eventually(lambda: "b" in a.connected_peers(), "a to connect to the sink")
        chunk = b"x" * 100_000
        for i in range(400):  # 40 MB, far more than socket buffers plus the queue
            a.send(InstallSnapshot("a", "b", 1, 1, 1, i * len(chunk), chunk, False, 0, 10**9))
        assert a.stats.dropped_queue_full > 0
        assert a._outbound["b"].send_queue.queued_bytes <= 1_000_000

        await a.stop().addTimeout(WAIT, reactor())

        assert a.connected_peers() == frozenset()
        sink = Sink.instances[0]
        sink.transport.resumeProducing()  # reading again, the sink sees the connection closed
        await sink.lost.addTimeout(WAIT, reactor())
    finally:
        await sink_port.stopListening()


@pytest_twisted.ensureDeferred
async def test_stop_while_a_peer_is_unreachable_is_bounded_and_final(nodes):
    closed = reactor().listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    port = closed.getHost().port
    await closed.stopListening()  # nothing listens there now: every dial fails
    a = nodes.make("a", peers={"b": ("127.0.0.1", port)})
    await task.deferLater(reactor(), 0.3)  # a few failed dials
    a.send(RequestVote("a", "b", 1, 0, 0))

    await a.stop().addTimeout(WAIT, reactor())

    assert a.stats.dropped_not_connected == 1
    assert not [c for c in reactor().getDelayedCalls() if c.active()
                and "leifdb" in repr(getattr(c.func, "__module__", ""))]
