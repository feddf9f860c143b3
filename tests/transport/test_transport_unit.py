"""RaftTransport end to end on a memory reactor: no sockets, a fake clock."""

from __future__ import annotations

import random
from struct import pack, unpack

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.python.failure import Failure

from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    InstallSnapshot,
    RequestVote,
    TimeoutNow,
)
from leifdb.transport import RaftTransport, incarnation_refused
from leifdb.wire import decode_frame, encode_hello, encode_message


class FakeEndpoint:
    """Connects at once to an in-memory transport."""

    def __init__(self, net, peer):
        self.net, self.peer = net, peer

    def connect(self, factory):
        proto = factory.buildProtocol(None)
        transport = StringTransportWithDisconnection()
        transport.protocol = proto
        proto.makeConnection(transport)
        self.net.wires[self.peer] = transport
        return defer.succeed(proto)


class Net:
    def __init__(self):
        self.wires = {}

    def endpoint(self, host, port):
        return FakeEndpoint(self, host)

    def frames(self, peer):
        data, out = self.wires[peer].value(), []
        while data:
            (n,) = unpack("!I", data[:4])
            out.append(decode_frame(data[4:4 + n]))
            data = data[4 + n:]
        return out


def make(**options):
    reactor, net = MemoryReactorClock(), Net()
    received, unreachable = [], []
    t = RaftTransport(
        reactor, node_id="a", http_address="a:80", peers={"a": ("a", 1), "b": ("b", 1)},
        on_message=lambda m, http: received.append((m, http)),
        on_peer_unreachable=unreachable.append, endpoint_factory=net.endpoint,
        rng=random.Random(3), **options)
    t.listen(0)
    return reactor, net, t, received, unreachable


def accept_from(reactor, transport_hello_src="b", incarnation=""):
    """An inbound connection from peer ``b`` that has sent its Hello."""
    factory = reactor.tcpServers[0][1]
    proto = factory.buildProtocol(None)
    wire = StringTransportWithDisconnection()
    wire.protocol = proto
    proto.makeConnection(wire)
    hello = encode_hello(transport_hello_src, "a", "b:80", "leifdb", incarnation)
    proto.dataReceived(pack("!I", len(hello)) + hello)
    return proto


def feed(proto, data):
    proto.dataReceived(pack("!I", len(data)) + data)


def test_dials_only_other_peers_and_says_hello_first():
    reactor, net, t, _, _ = make()
    assert set(net.wires) == {"b"}
    assert t.connected_peers() == {"b"}
    hello = net.frames("b")[0]
    assert (hello.src, hello.dst, hello.src_http_address) == ("a", "b", "a:80")


def test_requests_get_ids_and_replies_echo_the_newest_received_request():
    reactor, net, t, received, _ = make()
    inbound = accept_from(reactor)
    for request_id in (7, 8):
        feed(inbound, encode_message(AppendEntries("b", "a", 1, 0, 0, (), 0),
                                     src_http_address="b:80", request_id=request_id))
    assert [m for m, _ in received] == [AppendEntries("b", "a", 1, 0, 0, (), 0)] * 2
    assert received[0][1] == "b:80"

    t.send(AppendEntriesReply("a", "b", 1, True, 0))
    t.send(AppendEntriesReply("a", "b", 1, True, 0))
    t.send(RequestVote("a", "b", 2, 0, 0))
    t.send(RequestVote("a", "b", 2, 0, 0))

    frames = net.frames("b")[1:]
    assert [f.in_reply_to for f in frames] == [8, 0, 0, 0]
    assert [f.request_id for f in frames][2:] == [1, 2]


def test_a_reply_answers_pending_requests_and_silence_reports_unreachable():
    reactor, net, t, _, unreachable = make(request_timeout=5.0)
    inbound = accept_from(reactor)
    t.send(RequestVote("a", "b", 1, 0, 0))
    t.send(RequestVote("a", "b", 1, 0, 0))
    t.send(AppendEntries("a", "b", 1, 0, 0, (Entry(1, 1),), 0))
    assert t.unanswered("b") == 3
    feed(inbound, encode_message(AppendEntriesReply("b", "a", 1, True, 1),
                                 src_http_address="b:80", in_reply_to=3))
    assert t.unanswered("b") == 2  # the votes are still waiting

    reactor.advance(5.0)

    assert unreachable == ["b"] and t.unanswered("b") == 0
    assert t.stats.request_timeouts == 1


def test_a_lost_connection_reports_unreachable_and_is_redialed():
    reactor, net, t, _, unreachable = make(reconnect_initial_delay=0.1)
    first = net.wires["b"]
    t.send(RequestVote("a", "b", 1, 0, 0))
    first.loseConnection()

    assert unreachable == ["b"] and t.connected_peers() == frozenset()
    t.send(RequestVote("a", "b", 1, 0, 0))
    assert t.stats.dropped_not_connected == 1

    reactor.advance(1.0)  # past the redial delay (the first connection was not stable)
    assert net.wires["b"] is not first and t.connected_peers() == {"b"}
    assert unreachable == ["b"]  # the timed-out request was forgotten with the connection


def test_an_inbound_hello_cuts_the_redial_wait_short():
    reactor, net, t, _, _ = make(reconnect_initial_delay=3.0)
    net.wires["b"].loseConnection()
    assert t.connected_peers() == frozenset()
    accept_from(reactor)
    assert t.connected_peers() == {"b"}


def test_a_second_connection_from_a_peer_replaces_the_first():
    reactor, net, t, received, _ = make()
    first = accept_from(reactor)
    second = accept_from(reactor)
    assert first.lost and not second.lost


def test_bad_messages_are_dropped_with_an_error_and_send_never_raises(transport_log):
    reactor, net, t, _, _ = make(max_frame_bytes=1000)
    before = len(net.frames("b"))

    t.send(RequestVote("a", "zed", 1, 0, 0))  # not a peer
    t.send(RequestVote("b", "a", 1, 0, 0))  # not from us
    t.send(RequestVote("a", "b", -1, 0, 0))  # unencodable
    t.send(InstallSnapshot("a", "b", 1, 1, 1, 0, b"x" * 2000, True, 0, 2000))  # too big
    t.send(object())  # not a message at all

    assert len(net.frames("b")) == before
    assert t.stats.dropped_invalid == 5
    assert len(transport_log.warnings()) == 5


def test_stop_closes_everything_and_stops_dialing():
    reactor, net, t, _, unreachable = make()
    inbound = accept_from(reactor)
    d = t.stop()
    assert d.called
    assert inbound.lost and net.wires["b"].protocol.lost
    assert reactor.tcpServers and t.connected_peers() == frozenset()
    reactor.advance(100)
    assert len(net.wires) == 1 and unreachable == []
    t.send(RequestVote("a", "b", 1, 0, 0))  # after stop: dropped quietly


def test_update_peers_dials_new_peers_and_forgets_removed_ones():
    reactor, net, t, _, _ = make()
    t.update_peers({"c": ("c", 1)})
    assert t.connected_peers() == {"c"}
    assert net.wires["b"].protocol.lost
    assert not t.is_peer("b") and t.is_peer("c")


def test_callbacks_that_raise_are_logged_not_propagated(transport_log):
    reactor, net = MemoryReactorClock(), Net()

    def boom(*args):
        raise RuntimeError("core bug")

    t = RaftTransport(reactor, node_id="a", http_address="a:80", peers={"b": ("b", 1)},
                      on_message=boom, on_peer_unreachable=boom, endpoint_factory=net.endpoint)
    t.listen(0)
    inbound = accept_from(reactor)
    feed(inbound, encode_message(RequestVote("b", "a", 1, 0, 0), src_http_address=""))
    net.wires["b"].protocol.connectionLost(Failure(ConnectionDone()))
    assert not inbound.lost
    assert len(transport_log.warnings()) == 2


def test_a_timeout_now_waits_for_no_reply():
    """TimeoutNow is one-way: it must never count as an unanswered request."""
    reactor, net, t, _, unreachable = make(request_timeout=5.0)
    t.send(TimeoutNow("a", "b", 4))
    frame = net.frames("b")[-1]
    assert frame.body == TimeoutNow("a", "b", 4)
    assert (frame.request_id, frame.in_reply_to) == (0, 0)
    assert t.unanswered("b") == 0
    reactor.advance(60)
    assert unreachable == [] and t.stats.request_timeouts == 0


class Pins:
    """In memory, as ``leifdb.storage.identity.PeerPins`` behaves."""

    def __init__(self, pinned=None, broken=False):
        self.pinned = dict(pinned or {})
        self.broken = broken

    def check(self, peer_id, incarnation):
        if self.broken:
            raise OSError("disk full")
        return self.pinned.setdefault(peer_id, incarnation) == incarnation

    def clear(self, peer_id):
        self.pinned.pop(peer_id, None)


def test_our_hello_carries_our_incarnation():
    reactor, net, t, _, _ = make(incarnation="00ff00ff00ff00ff")
    hello = net.frames("b")[0].body
    assert hello.incarnation == "00ff00ff00ff00ff"


def test_the_first_incarnation_seen_is_pinned_and_another_one_refused(transport_log):
    pins = Pins()
    reactor, net, t, received, _ = make(pins=pins)
    first = accept_from(reactor, incarnation="aaaa")
    assert pins.pinned == {"b": "aaaa"} and not first.lost
    first.transport.loseConnection()

    wiped = accept_from(reactor, incarnation="bbbb")
    feed(wiped, encode_message(RequestVote("b", "a", 9, 0, 0), src_http_address="b:80",
                               request_id=1))
    assert wiped.lost and received == []  # its vote request never reaches the core
    assert wiped.rejected_for == incarnation_refused("b") == (
        "member b is known with another data directory: it was wiped or replaced; "
        "remove and re-add it")
    assert t.stats.incarnations_refused == 1
    assert len(transport_log.warnings()) == 1
    assert pins.pinned == {"b": "aaaa"}


def test_refusals_are_logged_at_most_once_a_minute_per_peer(transport_log):
    reactor, net, t, _, _ = make(pins=Pins({"b": "aaaa"}))
    for _ in range(5):
        assert accept_from(reactor, incarnation="bbbb").lost
        reactor.advance(10)
    assert len(transport_log.warnings()) == 1
    reactor.advance(20)
    assert accept_from(reactor, incarnation="bbbb").lost
    assert len(transport_log.warnings()) == 2
    assert t.stats.incarnations_refused == 6


def test_a_cleared_pin_admits_the_new_incarnation():
    pins = Pins({"b": "aaaa"})
    reactor, net, t, _, _ = make(pins=pins)
    assert accept_from(reactor, incarnation="bbbb").lost
    t.pins.clear("b")  # the node applied the entry re-adding b
    assert not accept_from(reactor, incarnation="bbbb").lost
    assert pins.pinned == {"b": "bbbb"}


def test_a_hello_without_incarnation_is_admitted_and_pins_nothing():
    pins = Pins({"b": "aaaa"})
    reactor, net, t, _, _ = make(pins=pins)
    assert not accept_from(reactor, incarnation="").lost
    assert pins.pinned == {"b": "aaaa"}


def test_a_pin_that_cannot_be_stored_refuses_the_peer(transport_log):
    reactor, net, t, received, _ = make(pins=Pins(broken=True))
    conn = accept_from(reactor, incarnation="aaaa")
    assert conn.lost
    assert "cannot record the incarnation of b: disk full" in transport_log.warnings()[0]


def test_a_peer_added_later_is_dialed_and_admitted_inbound():
    reactor, net, t, received, _ = make()
    assert accept_from(reactor, transport_hello_src="c").lost  # not a member yet
    t.update_peers({"b": ("b", 1), "c": ("c", 1)})
    assert t.connected_peers() == {"b", "c"}
    inbound = accept_from(reactor, transport_hello_src="c")
    assert not inbound.lost
    feed(inbound, encode_message(AppendEntriesReply("c", "a", 1, True, 0),
                                 src_http_address="c:80"))
    assert [m for m, _ in received] == [AppendEntriesReply("c", "a", 1, True, 0)]
    t.send(AppendEntries("a", "c", 1, 0, 0, (), 0))
    assert net.frames("c")[-1].body == AppendEntries("a", "c", 1, 0, 0, (), 0)


def test_a_removed_peer_is_disconnected_both_ways_and_not_redialed():
    reactor, net, t, received, unreachable = make()
    inbound = accept_from(reactor)
    outbound = net.wires["b"]
    t.update_peers({})
    assert inbound.lost and outbound.protocol.lost
    assert t.connected_peers() == frozenset()
    reactor.advance(100)
    assert net.wires["b"] is outbound  # no new dial
    assert accept_from(reactor).lost
    t.send(RequestVote("a", "b", 1, 0, 0))
    assert t.stats.dropped_invalid == 1
    assert unreachable == []
