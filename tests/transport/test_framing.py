"""Framing and the bounded send queue, on an in-memory transport."""

from __future__ import annotations

from struct import pack

from twisted.internet.testing import StringTransport

from leifdb.transport.framing import FramedProtocol


class Recorder(FramedProtocol):
    def __init__(self, max_frame_bytes=1000, max_queued_bytes=100):
        super().__init__(max_frame_bytes, max_queued_bytes)
        self.frames = []

    def frame_received(self, frame):
        self.frames.append(frame)
        if frame == b"reject me":
            self.reject("asked to")


def connected(proto):
    transport = StringTransport()
    proto.makeConnection(transport)
    return transport


def framed(*frames):
    return b"".join(pack("!I", len(f)) + f for f in frames)


def test_max_length_is_set_explicitly():
    proto = Recorder(max_frame_bytes=12345)
    assert proto.MAX_LENGTH == 12345


def test_frames_split_anywhere_are_reassembled():
    frames = [b"", b"a", b"hello world" * 20, b"x" * 999]
    proto = Recorder()
    connected(proto)
    stream = framed(*frames)
    for i in range(0, len(stream), 7):
        proto.dataReceived(stream[i:i + 7])
    assert proto.frames == frames


def test_a_large_frame_in_many_reads_and_the_frames_after_it():
    big = bytes(range(256)) * 3
    proto = Recorder()
    connected(proto)
    stream = framed(big, b"next") + pack("!I", 3)
    for i in range(0, len(stream), 1):
        proto.dataReceived(stream[i:i + 1])
    proto.dataReceived(b"end")
    assert proto.frames == [big, b"next", b"end"]


def test_oversized_length_prefix_closes_with_one_warning(transport_log):
    proto = Recorder(max_frame_bytes=10)
    transport = connected(proto)

    proto.dataReceived(framed(b"ok") + pack("!I", 11) + b"x" * 11 + framed(b"late"))

    assert proto.frames == [b"ok"]
    assert transport.disconnected  # aborted
    assert len(transport_log.warnings()) == 1
    assert "11 bytes exceeds the limit of 10" in transport_log.warnings()[0]


def test_nothing_is_processed_after_a_reject(transport_log):
    proto = Recorder()
    transport = connected(proto)

    proto.dataReceived(framed(b"reject me", b"after"))
    proto.dataReceived(framed(b"later"))
    proto.reject("again")

    assert proto.frames == [b"reject me"]
    assert transport.disconnected
    assert len(transport_log.warnings()) == 1


def test_sent_frames_are_length_prefixed():
    proto = Recorder()
    transport = connected(proto)
    assert proto.send_frame(b"abc") and proto.send_frame(b"")
    assert transport.value() == framed(b"abc", b"")


def test_frames_wait_while_paused_and_drop_when_the_queue_is_full():
    proto = Recorder(max_queued_bytes=10)
    transport = connected(proto)
    assert transport.producer is proto.send_queue and transport.streaming

    transport.producer.pauseProducing()
    accepted = [proto.send_frame(f) for f in (b"12345", b"6789", b"ab", b"c")]
    assert transport.value() == b""
    assert accepted == [True, True, False, True]  # b"ab" would pass 10 queued bytes

    transport.producer.resumeProducing()
    assert transport.value() == framed(b"12345", b"6789", b"c")
    assert proto.send_queue.queued_bytes == 0


def test_one_frame_bigger_than_the_queue_goes_when_the_queue_is_empty():
    proto = Recorder(max_queued_bytes=4)
    transport = connected(proto)
    transport.producer.pauseProducing()
    assert proto.send_frame(b"123456789")
    assert not proto.send_frame(b"1")
    transport.producer.resumeProducing()
    assert transport.value() == framed(b"123456789")


def test_frames_over_the_frame_limit_are_not_sent():
    proto = Recorder(max_frame_bytes=3)
    transport = connected(proto)
    assert not proto.send_frame(b"1234")
    assert transport.value() == b""


def test_when_closed_fires_on_connection_lost():
    proto = Recorder()
    connected(proto)
    d = proto.when_closed()
    assert not d.called
    proto.connectionLost(None)
    assert d.called and proto.when_closed().called
    assert not proto.send_frame(b"x")
