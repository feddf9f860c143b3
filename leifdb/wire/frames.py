"""Raft messages <-> ``Envelope`` frames (proto/leifdb.proto).

One frame is one serialized ``Envelope``: the sender and receiver ids, the sender's client
address, request/reply correlation ids and exactly one body (a ``Hello`` or a Raft message).
The mapping is one to one with ``leifdb.raft.messages``; a message's ``src`` travels in the
envelope (and again as ``candidate_id`` / ``leader_id`` where the schema has them, which must
agree). Both directions check the same invariants, so whatever encodes decodes to an equal
value and a peer sending nonsense is told apart from one sending data.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping, Union

from google.protobuf import message as _pb_message

from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    EntryType,
    InstallSnapshot,
    InstallSnapshotReply,
    Message,
    ReadIndexReply,
    ReadIndexRequest,
    RequestVote,
    RequestVoteReply,
    TimeoutNow,
)
from leifdb.wire import leifdb_pb2 as pb
from leifdb.wire._checks import UINT32_MAX, Invalid, require
from leifdb.wire.errors import DecodeError, EncodeError


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame on every connection: names the cluster the sender belongs to and the
    incarnation of its data directory (``leifdb.storage.identity``), so a peer that was
    wiped and restarted under its old id is told apart from the one its peers knew.
    Empty ``incarnation``: a sender older than incarnations."""

    cluster_id: str
    incarnation: str = ""


Body = Union[Message, Hello]


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded envelope. For a Raft message, ``src``/``dst`` equal the body's.

    ``request_id`` is non-zero only on requests, ``in_reply_to`` only on replies."""

    src: str
    dst: str
    src_http_address: str
    request_id: int
    in_reply_to: int
    body: Body


#: Messages that expect a reply. The others (replies, and the one-way ``TimeoutNow``) carry
#: no ``request_id``, so the transport never waits for, or times out, an answer to them.
REQUEST_TYPES: tuple[type, ...] = (RequestVote, AppendEntries, InstallSnapshot, ReadIndexRequest)
#: Each reply type and the request type it answers.
REQUEST_OF_REPLY: Mapping[type, type] = {
    RequestVoteReply: RequestVote,
    AppendEntriesReply: AppendEntries,
    InstallSnapshotReply: InstallSnapshot,
    ReadIndexReply: ReadIndexRequest,
}


@dataclass(frozen=True)
class _Spec:
    oneof: str  # the Envelope body field
    src_alias: str | None  # a proto field that repeats ``src``
    fields: tuple[str, ...]  # dataclass fields copied as they are


def _spec(cls: type, oneof: str, src_alias: str | None = None) -> _Spec:
    names = tuple(
        f.name for f in dataclasses.fields(cls) if f.name not in ("src", "dst", "entries")
    )
    return _Spec(oneof, src_alias, names)


_SPECS: dict[type, _Spec] = {
    RequestVote: _spec(RequestVote, "request_vote", "candidate_id"),
    RequestVoteReply: _spec(RequestVoteReply, "request_vote_reply"),
    AppendEntries: _spec(AppendEntries, "append_entries", "leader_id"),
    AppendEntriesReply: _spec(AppendEntriesReply, "append_entries_reply"),
    InstallSnapshot: _spec(InstallSnapshot, "install_snapshot", "leader_id"),
    InstallSnapshotReply: _spec(InstallSnapshotReply, "install_snapshot_reply"),
    ReadIndexRequest: _spec(ReadIndexRequest, "read_index_request"),
    ReadIndexReply: _spec(ReadIndexReply, "read_index_reply"),
    TimeoutNow: _spec(TimeoutNow, "timeout_now"),
}
_TYPE_OF_ONEOF: dict[str, type] = {spec.oneof: cls for cls, spec in _SPECS.items()}

# An incarnation: up to 128 bits in lower-case hex (``leifdb.storage.identity`` makes 64).
_INCARNATION = re.compile(r"[0-9a-f]{1,32}")

# Python-level errors protobuf raises for values it cannot hold (range, type, bad UTF-8).
_PB_VALUE_ERRORS = (ValueError, TypeError, OverflowError)


def encode_message(
    msg: Message, *, src_http_address: str, request_id: int = 0, in_reply_to: int = 0
) -> bytes:
    """Serialize a Raft message as an ``Envelope``. Raises ``EncodeError`` for a value that
    ``decode_frame`` would reject (e.g. an entry at index 0, ``in_reply_to`` on a request)."""
    spec = _SPECS.get(type(msg))
    if spec is None:
        raise EncodeError(f"not a Raft message: {type(msg).__name__}")
    try:
        _check_frame(msg.src, msg.dst, request_id, in_reply_to, msg)
        env = pb.Envelope(
            request_id=request_id,
            in_reply_to=in_reply_to,
            src=msg.src,
            dst=msg.dst,
            src_http_address=src_http_address,
        )
        body = getattr(env, spec.oneof)
        body.SetInParent()
        for name in spec.fields:
            setattr(body, name, getattr(msg, name))
        if spec.src_alias is not None:
            setattr(body, spec.src_alias, msg.src)
        if isinstance(msg, AppendEntries):
            body.entries.extend(
                pb.Entry(term=e.term, index=e.index, type=int(e.type), data=e.data)
                for e in msg.entries
            )
        return env.SerializeToString()
    except Invalid as e:
        raise EncodeError(f"{type(msg).__name__}: {e}") from None
    except _PB_VALUE_ERRORS as e:
        raise EncodeError(f"{type(msg).__name__}: {e}") from None


def encode_hello(
    src: str, dst: str, src_http_address: str, cluster_id: str, incarnation: str = ""
) -> bytes:
    """The first frame a node sends on a connection it opened to ``dst``."""
    hello = Hello(cluster_id, incarnation)
    try:
        _check_frame(src, dst, 0, 0, hello)
        env = pb.Envelope(
            src=src,
            dst=dst,
            src_http_address=src_http_address,
            hello=pb.Hello(cluster_id=cluster_id, incarnation=incarnation),
        )
        return env.SerializeToString()
    except (Invalid, *_PB_VALUE_ERRORS) as e:
        raise EncodeError(f"Hello: {e}") from None


def decode_frame(data: bytes) -> Frame:
    """Parse one frame. Raises ``DecodeError`` (and nothing else) for any bad input."""
    env = pb.Envelope()
    try:
        env.ParseFromString(data)
    except _pb_message.DecodeError as e:
        raise DecodeError(f"not an Envelope: {e}") from None
    kind = env.WhichOneof("body")
    if kind is None:
        raise DecodeError("frame has no body")
    try:
        if kind == "hello":
            body: Body = Hello(env.hello.cluster_id, env.hello.incarnation)
        else:
            body = _decode_body(_TYPE_OF_ONEOF[kind], getattr(env, kind), env.src, env.dst)
        _check_frame(env.src, env.dst, env.request_id, env.in_reply_to, body)
    except Invalid as e:
        raise DecodeError(f"{kind}: {e}") from None
    return Frame(env.src, env.dst, env.src_http_address, env.request_id, env.in_reply_to, body)


def _decode_body(cls: type, body: Any, src: str, dst: str) -> Message:
    spec = _SPECS[cls]
    kwargs = {name: getattr(body, name) for name in spec.fields}
    if spec.src_alias is not None:
        require(getattr(body, spec.src_alias) == src, f"{spec.src_alias} differs from src")
    if cls is AppendEntries:
        kwargs["entries"] = tuple(_decode_entry(e) for e in body.entries)
    return cls(src=src, dst=dst, **kwargs)


def _decode_entry(e: Any) -> Entry:
    try:
        entry_type = EntryType(e.type)
    except ValueError:
        raise Invalid(f"unknown entry type {e.type}") from None
    return Entry(term=e.term, index=e.index, type=entry_type, data=e.data)


def _check_frame(src: str, dst: str, request_id: int, in_reply_to: int, body: Body) -> None:
    require(src != "", "empty src")
    require(dst != "", "empty dst")
    require(src != dst, "src equals dst")
    is_request = isinstance(body, REQUEST_TYPES)
    is_reply = type(body) in REQUEST_OF_REPLY
    require(is_request or request_id == 0, "request_id on a frame that is not a request")
    require(is_reply or in_reply_to == 0, "in_reply_to on a frame that is not a reply")
    if isinstance(body, Hello):
        require(body.cluster_id != "", "empty cluster_id")
        require(body.incarnation == "" or _INCARNATION.fullmatch(body.incarnation) is not None,
                "incarnation is not lower-case hex of at most 32 digits")
    else:
        _check_message(body)


def _check_message(msg: Message) -> None:
    """Invariants every message a correct node sends satisfies (Raft paper, Figure 2)."""
    if isinstance(msg, RequestVote):
        _check_log_position(msg.last_log_index, msg.last_log_term, msg.term, "last_log")
    elif isinstance(msg, AppendEntries):
        _check_log_position(msg.prev_log_index, msg.prev_log_term, msg.term, "prev_log")
        index, term = msg.prev_log_index, msg.prev_log_term
        for e in msg.entries:
            require(isinstance(e, Entry), "entries must be Entry values")
            require(e.index == index + 1, f"entry index {e.index} does not follow {index}")
            require(e.term >= 1, f"entry {e.index} has term 0")
            require(term <= e.term <= msg.term, f"entry {e.index} has term out of order")
            require(isinstance(e.type, EntryType), f"entry {e.index} has a bad type")
            index, term = e.index, e.term
    elif isinstance(msg, InstallSnapshot):
        require(msg.last_included_index >= 1, "snapshot at index 0")
        require(1 <= msg.last_included_term <= msg.term, "snapshot term out of range")
        end = msg.offset + len(msg.data)
        require(end <= msg.total_size, "chunk ends past total_size")
        require(not msg.done or end == msg.total_size, "last chunk does not end at total_size")
        require(0 <= msg.checksum <= UINT32_MAX, "checksum is not 32 bits")
    elif isinstance(msg, TimeoutNow):
        require(msg.term >= 1, "TimeoutNow in term 0")


def _check_log_position(index: int, term: int, msg_term: int, what: str) -> None:
    require((index == 0) == (term == 0), f"{what}_index and {what}_term disagree about 0")
    require(term <= msg_term, f"{what}_term is newer than the message term")
