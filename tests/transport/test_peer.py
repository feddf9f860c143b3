"""The handshake and per-frame checks of one Raft connection, on an in-memory transport."""

from __future__ import annotations

from struct import pack

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from leifdb.raft.messages import RequestVote, RequestVoteReply
from leifdb.transport.peer import PeerProtocol
from leifdb.wire import Hello, decode_frame, encode_hello, encode_message


class FakeOwner:
    def __init__(self):
        self.node_id = "me"
        self.cluster_id = "c1"
        self.clock = Clock()
        self.hello_timeout = 5.0
        self.peers = {"a", "b"}
        self.refuse: dict[str, str] = {}  # peer -> why its Hello is not admitted
        self.admitted = []
        self.opened, self.identified, self.frames, self.closed = [], [], [], []

    def is_peer(self, node_id):
        return node_id in self.peers

    def hello_frame(self, peer):
        return encode_hello(self.node_id, peer, "me:80", self.cluster_id)

    def admit(self, conn, peer, hello):
        self.admitted.append((peer, hello))
        return self.refuse.get(peer)

    def connection_opened(self, conn):
        self.opened.append(conn)

    def peer_identified(self, conn):
        self.identified.append(conn.peer_id)

    def frame_received(self, conn, frame):
        self.frames.append(frame)

    def connection_closed(self, conn, reason):
        self.closed.append(conn)


def framed(*frames):
    return b"".join(pack("!I", len(f)) + f for f in frames)


def hello(src="a", dst="me", cluster="c1", incarnation="a1"):
    return encode_hello(src, dst, f"{src}:80", cluster, incarnation)


def vote(src="a", dst="me", **ids):
    return encode_message(RequestVote(src, dst, 1, 0, 0), src_http_address=f"{src}:80", **ids)


def accept(owner=None):
    owner = owner or FakeOwner()
    proto = PeerProtocol(owner, None, max_frame_bytes=1000, max_queued_bytes=1000)
    transport = StringTransport()
    proto.makeConnection(transport)
    return owner, proto, transport


def test_an_accepted_connection_delivers_frames_after_a_valid_hello(transport_log):
    owner, proto, transport = accept()
    proto.dataReceived(framed(hello(), vote(request_id=7)))

    assert owner.identified == ["a"]
    assert [f.body for f in owner.frames] == [RequestVote("a", "me", 1, 0, 0)]
    assert owner.frames[0].request_id == 7 and owner.frames[0].src_http_address == "a:80"
    assert not transport.disconnecting
    assert transport_log.warnings() == []


def test_a_dialed_connection_starts_with_our_hello():
    owner = FakeOwner()
    proto = PeerProtocol(owner, "b", max_frame_bytes=1000, max_queued_bytes=1000)
    transport = StringTransport()
    proto.makeConnection(transport)

    frame = decode_frame(transport.value()[4:])
    assert (frame.src, frame.dst, frame.body) == ("me", "b", Hello("c1"))
    assert owner.opened == [proto] and proto.outbound
    assert owner.clock.getDelayedCalls() == []  # no Hello timer on our own connections


BAD_OPENINGS = {
    "garbage": [b"\xff\xff\xff\xff\xff"],
    "message before hello": [vote()],
    "unknown src": [hello(src="mallory"), vote(src="mallory")],
    "hello for another node": [hello(dst="you")],
    "another cluster": [hello(cluster="c2")],
    "src changes after hello": [hello(), vote(src="b")],
    "message for another node": [hello(), vote(dst="you")],
    "second hello": [hello(), hello()],
    "garbage after hello": [hello(), b"\x08"],
}


@pytest.mark.parametrize("frames", BAD_OPENINGS.values(), ids=BAD_OPENINGS.keys())
def test_a_bad_frame_closes_the_connection_with_one_warning(frames, transport_log):
    owner, proto, transport = accept()

    proto.dataReceived(framed(*frames, vote()))

    assert transport.disconnected  # aborted, not flushed
    assert owner.frames == []
    assert len(transport_log.warnings()) == 1, transport_log.warnings()
    assert proto.rejected_for


def test_an_oversized_frame_closes_the_connection(transport_log):
    owner, proto, transport = accept()
    proto.dataReceived(framed(hello()) + pack("!I", 1001))
    assert transport.disconnected
    assert len(transport_log.warnings()) == 1


def test_a_dialed_connection_rejects_a_hello_from_someone_else(transport_log):
    owner = FakeOwner()
    proto = PeerProtocol(owner, "b", max_frame_bytes=1000, max_queued_bytes=1000)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(framed(hello(src="a")))
    assert transport.disconnected and owner.identified == []


def test_a_connection_without_hello_is_closed_after_the_hello_timeout(transport_log):
    owner, proto, transport = accept()
    owner.clock.advance(4.9)
    assert not transport.disconnected
    owner.clock.advance(0.2)
    assert transport.disconnected
    assert "no Hello in time" in transport_log.warnings()[0]


def test_the_hello_timer_stops_once_hello_arrives():
    owner, proto, transport = accept()
    proto.dataReceived(framed(hello()))
    assert owner.clock.getDelayedCalls() == []


def test_connection_lost_is_reported_and_cancels_the_hello_timer():
    owner, proto, transport = accept()
    proto.connectionLost(None)
    assert owner.closed == [proto]
    assert owner.clock.getDelayedCalls() == []


def test_replies_pass_the_checks_like_requests():
    owner, proto, _ = accept()
    reply = encode_message(RequestVoteReply("a", "me", 1, True), src_http_address="",
                           in_reply_to=3)
    proto.dataReceived(framed(hello(), reply))
    assert owner.frames[0].in_reply_to == 3


def test_the_owner_sees_the_hello_with_its_incarnation_before_identifying_the_peer():
    owner, proto, _ = accept()
    proto.dataReceived(framed(hello(incarnation="beef")))
    assert owner.admitted == [("a", Hello("c1", "beef"))]
    assert owner.identified == ["a"]


def test_a_hello_the_owner_refuses_closes_without_a_warning_of_its_own(transport_log):
    owner, proto, transport = accept()
    owner.refuse["a"] = "member a is known with another data directory"
    proto.dataReceived(framed(hello(), vote()))
    assert transport.disconnected
    assert owner.identified == [] and owner.frames == []
    assert proto.rejected_for == "member a is known with another data directory"
    assert transport_log.warnings() == []  # the owner rate-limits its own line


def test_other_checks_run_before_the_owner_is_asked():
    owner, proto, _ = accept()
    proto.dataReceived(framed(hello(src="mallory")))
    assert owner.admitted == []
