"""Raft frames: exact round trips for every message type, and one error for all bad input."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    EntryType,
    InstallSnapshot,
    ReadIndexReply,
    RequestVote,
    RequestVoteReply,
    TimeoutNow,
)
from leifdb.wire import (
    REQUEST_OF_REPLY,
    REQUEST_TYPES,
    DecodeError,
    EncodeError,
    Frame,
    Hello,
    decode_frame,
    encode_hello,
    encode_message,
)
from leifdb.wire import frames as frames_module
from leifdb.wire import leifdb_pb2 as pb
from tests.wire import strategies as s

DETERMINISTIC = settings(derandomize=True, deadline=None)


def frame_of(msg, **ids) -> Frame:
    return decode_frame(encode_message(msg, src_http_address="10.0.0.1:8080", **ids))


def _round_trip_test(strategy):
    @given(msg=strategy, http=s.text, corr=s.u64)
    @DETERMINISTIC
    def test(msg, http, corr):
        ids = ({"request_id": corr} if isinstance(msg, REQUEST_TYPES)
               else {"in_reply_to": corr} if type(msg) in REQUEST_OF_REPLY else {})

        frame = decode_frame(encode_message(msg, src_http_address=http, **ids))

        assert frame == Frame(msg.src, msg.dst, http, ids.get("request_id", 0),
                              ids.get("in_reply_to", 0), msg)
        assert type(frame.body) is type(msg)

    return test


# One hypothesis test per message type (pytest-twisted breaks @given under parametrize).
for _kind, _strategy in s.MESSAGES.items():
    globals()[f"test_{_kind}_round_trips_exactly"] = _round_trip_test(_strategy)


@given(st.integers(0, 5).flatmap(lambda n: s.append_entries(max_entries=n)))
@DETERMINISTIC
def test_append_entries_keeps_entries_of_every_type_in_order(msg):
    body = frame_of(msg).body
    assert body.entries == msg.entries
    assert all(isinstance(e.type, EntryType) for e in body.entries)


def test_entries_of_all_entry_types_round_trip():
    entries = tuple(Entry(2, 5 + i, t, bytes([i]) * i) for i, t in enumerate(EntryType))
    msg = AppendEntries("a", "b", 2, 4, 1, entries, 3)
    assert frame_of(msg, request_id=1).body == msg


@given(s.src_dst(), s.text, s.node_ids, st.just("") | s.incarnations)
@DETERMINISTIC
def test_hello_round_trips(ends, http, cluster_id, incarnation):
    src, dst = ends
    assert decode_frame(encode_hello(src, dst, http, cluster_id, incarnation)) == Frame(
        src, dst, http, 0, 0, Hello(cluster_id, incarnation))


def test_a_hello_from_a_node_older_than_incarnations_decodes_with_none():
    old = envelope(hello=pb.Hello(cluster_id="c"))
    assert decode_frame(old).body == Hello("c", "")


def test_new_vote_fields_default_to_off_for_older_senders():
    """A RequestVote without pre_vote/transfer (an older node) is an ordinary vote."""
    frame = decode_frame(envelope(request_id=1, request_vote=pb.RequestVote(
        term=2, candidate_id="a", last_log_index=1, last_log_term=1)))
    assert frame.body == RequestVote("a", "b", 2, 1, 1, pre_vote=False, transfer=False)
    reply = decode_frame(envelope(request_vote_reply=pb.RequestVoteReply(term=2)))
    assert reply.body == RequestVoteReply("a", "b", 2, False, pre_vote=False)


def test_pre_vote_and_transfer_survive_the_wire():
    vote = RequestVote("a", "b", 5, 3, 2, pre_vote=True, transfer=True)
    assert frame_of(vote, request_id=9).body == vote
    reply = RequestVoteReply("b", "a", 4, True, pre_vote=True)
    assert frame_of(reply, in_reply_to=9).body == reply


def test_timeout_now_is_one_way():
    """No reply ever answers it, so it must carry no request id: the transport would
    otherwise wait for an answer and report the peer unreachable."""
    assert not isinstance(TimeoutNow("a", "b", 3), REQUEST_TYPES)
    assert TimeoutNow not in REQUEST_OF_REPLY
    assert frame_of(TimeoutNow("a", "b", 3)) == Frame("a", "b", "10.0.0.1:8080", 0, 0,
                                                      TimeoutNow("a", "b", 3))
    with pytest.raises(EncodeError):
        encode_message(TimeoutNow("a", "b", 3), src_http_address="", request_id=1)
    with pytest.raises(EncodeError):
        encode_message(TimeoutNow("a", "b", 3), src_http_address="", in_reply_to=1)


def test_every_schema_field_is_mapped():
    """A field added to the .proto or to a dataclass without the other fails here."""
    for cls, spec in frames_module._SPECS.items():
        proto_fields = {f.name for f in getattr(pb.Envelope(), spec.oneof).DESCRIPTOR.fields}
        ours = {f.name for f in dataclasses.fields(cls)} - {"src", "dst"}
        if spec.src_alias:
            ours.add(spec.src_alias)
        assert proto_fields == ours, cls.__name__
    oneofs = {f.name for f in pb.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields}
    assert oneofs == {spec.oneof for spec in frames_module._SPECS.values()} | {"hello"}


def test_reply_types_pair_with_request_types():
    assert set(REQUEST_OF_REPLY.values()) == set(REQUEST_TYPES)


# --- bad input ---------------------------------------------------------------------------

@given(st.binary(max_size=200))
@settings(derandomize=True, max_examples=500)
def test_arbitrary_bytes_decode_or_raise_decode_error(data):
    try:
        frame = decode_frame(data)
    except DecodeError:
        return
    assert isinstance(frame, Frame)


@given(s.messages, st.data())
@DETERMINISTIC
def test_corrupted_frames_decode_or_raise_decode_error(msg, data):
    raw = bytearray(encode_message(msg, src_http_address="h:1"))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decode_frame(bytes(raw[:cut]))
    except DecodeError:
        pass


def envelope(**fields) -> bytes:
    base = dict(src="a", dst="b", src_http_address="h:1")
    base.update(fields)
    return pb.Envelope(**base).SerializeToString()


def ae(**fields) -> pb.AppendEntries:
    base = dict(term=3, leader_id="a", prev_log_index=1, prev_log_term=1)
    base.update(fields)
    return pb.AppendEntries(**base)


BAD_FRAMES = {
    "garbage": b"\xff\xff\xff\xff",
    "no body": envelope(),
    "empty src": envelope(src="", hello=pb.Hello(cluster_id="c")),
    "empty dst": envelope(dst="", hello=pb.Hello(cluster_id="c")),
    "src is dst": envelope(dst="a", hello=pb.Hello(cluster_id="c")),
    "empty cluster id": envelope(hello=pb.Hello()),
    "bad utf-8": b"\x1a\x02\xff\xfe",
    "entry index 0": envelope(append_entries=ae(
        prev_log_index=0, prev_log_term=0, entries=[pb.Entry(term=1, index=0)])),
    "entry term 0": envelope(append_entries=ae(entries=[pb.Entry(term=0, index=2)])),
    "entry gap": envelope(append_entries=ae(entries=[pb.Entry(term=1, index=3)])),
    "entry terms decrease": envelope(append_entries=ae(
        entries=[pb.Entry(term=2, index=2), pb.Entry(term=1, index=3)])),
    "entry term above message term": envelope(append_entries=ae(
        entries=[pb.Entry(term=4, index=2)])),
    "unknown entry type": envelope(append_entries=ae(entries=[pb.Entry(term=1, index=2,
                                                                       type=9)])),
    "prev index without term": envelope(append_entries=ae(prev_log_term=0)),
    "leader_id is not src": envelope(append_entries=ae(leader_id="z")),
    "candidate_id is not src": envelope(request_vote=pb.RequestVote(term=1, candidate_id="z")),
    "last log term above term": envelope(request_vote=pb.RequestVote(
        term=1, candidate_id="a", last_log_index=1, last_log_term=2)),
    "in_reply_to on a request": envelope(in_reply_to=4, request_vote=pb.RequestVote(
        term=1, candidate_id="a")),
    "request_id on a reply": envelope(request_id=4, request_vote_reply=pb.RequestVoteReply()),
    "request_id on hello": envelope(request_id=4, hello=pb.Hello(cluster_id="c")),
    "incarnation not hex": envelope(hello=pb.Hello(cluster_id="c", incarnation="xyz")),
    "incarnation upper case": envelope(hello=pb.Hello(cluster_id="c", incarnation="ABC")),
    "incarnation too long": envelope(hello=pb.Hello(cluster_id="c", incarnation="a" * 33)),
    "request_id on timeout_now": envelope(request_id=4, timeout_now=pb.TimeoutNow(term=1)),
    "timeout_now in term 0": envelope(timeout_now=pb.TimeoutNow()),
    "snapshot at index 0": envelope(install_snapshot=pb.InstallSnapshot(
        term=1, leader_id="a", last_included_term=1)),
    "chunk past total size": envelope(install_snapshot=pb.InstallSnapshot(
        term=1, leader_id="a", last_included_index=1, last_included_term=1, data=b"xy",
        total_size=1)),
    "done before the end": envelope(install_snapshot=pb.InstallSnapshot(
        term=1, leader_id="a", last_included_index=1, last_included_term=1, data=b"xy",
        total_size=5, done=True)),
}


@pytest.mark.parametrize("data", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_nonsense_raises_decode_error(data):
    with pytest.raises(DecodeError):
        decode_frame(data)


def test_a_minimal_valid_frame_decodes():
    """The bad frames above differ from this one in the one way their name says."""
    frame = decode_frame(envelope(append_entries=ae(entries=[pb.Entry(term=1, index=2)])))
    assert frame.body == AppendEntries("a", "b", 3, 1, 1, (Entry(1, 2),), 0)


BAD_VALUES = {
    "negative term": RequestVote("a", "b", -1, 0, 0),
    "term too big": RequestVote("a", "b", 2**64, 0, 0),
    "empty src": RequestVote("", "b", 1, 0, 0),
    "src is dst": RequestVote("a", "a", 1, 0, 0),
    "entry index 0": AppendEntries("a", "b", 1, 0, 0, (Entry(1, 0),), 0),
    "entry term above term": AppendEntries("a", "b", 1, 0, 0, (Entry(2, 1),), 0),
    "wrong field type": AppendEntriesReply("a", "b", "1", True),
    "checksum too big": InstallSnapshot("a", "b", 1, 1, 1, checksum=2**32),
    "chunk past total size": InstallSnapshot("a", "b", 1, 1, 1, data=b"x"),
    "not a message": Hello("c"),
    "timeout_now in term 0": TimeoutNow("a", "b", 0),
    "pre_vote not a bool": RequestVote("a", "b", 1, 0, 0, pre_vote="yes"),
}


@pytest.mark.parametrize("msg", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_values_that_would_not_decode_raise_encode_error(msg):
    with pytest.raises(EncodeError):
        encode_message(msg, src_http_address="h:1")


def test_correlation_ids_belong_to_their_kind_of_message():
    with pytest.raises(EncodeError):
        encode_message(ReadIndexReply("a", "b", 1, 1, 1, True), src_http_address="",
                       request_id=3)
    with pytest.raises(EncodeError):
        encode_message(RequestVote("a", "b", 1, 0, 0), src_http_address="", in_reply_to=3)
    with pytest.raises(EncodeError):
        encode_hello("a", "b", "h:1", "")
    with pytest.raises(EncodeError):
        encode_hello("a", "b", "h:1", "c", "not hex")
