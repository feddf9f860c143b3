"""The values the Raft core consumes and produces.

Plain frozen dataclasses with the paper's field names, so the core needs neither protobuf nor
Twisted; ``leifdb.wire`` maps them to the protobuf schema in ``proto/leifdb.proto`` one to one.
Every message carries ``src``, ``dst`` and the sender's ``term``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Union


class EntryType(enum.IntEnum):
    NORMAL = 0
    NOOP = 1
    CONFIG = 2


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it leaves the node."""

    term: int = 0
    voted_for: str | None = None
    commit_index: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Identifies a snapshot: the state machine after applying ``last_included_index``."""

    last_included_index: int = 0
    last_included_term: int = 0
    checksum: int = 0
    size: int = 0


@dataclass(frozen=True, slots=True)
class RequestVote:
    src: str
    dst: str
    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False  # §9.6: would you vote? (term is the one we would campaign in)
    transfer: bool = False  # campaign ordered by the leader (TimeoutNow): ignore the vote lease


@dataclass(frozen=True, slots=True)
class RequestVoteReply:
    src: str
    dst: str
    term: int
    vote_granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    src: str
    dst: str
    term: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    read_seq: int = 0


@dataclass(frozen=True, slots=True)
class AppendEntriesReply:
    src: str
    dst: str
    term: int
    success: bool
    match_index: int = 0
    conflict_index: int = 0
    conflict_term: int = 0
    read_seq: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """One chunk of a snapshot. The core leaves ``data`` empty and ``done`` False on the
    leader side: the node reads the chunk at ``offset`` from its snapshot store and fills
    ``data``, ``done``, ``checksum`` and ``total_size`` before sending."""

    src: str
    dst: str
    term: int
    last_included_index: int
    last_included_term: int
    offset: int = 0
    data: bytes = b""
    done: bool = False
    checksum: int = 0
    total_size: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshotReply:
    src: str
    dst: str
    term: int
    last_included_index: int
    next_offset: int
    done: bool = False


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    src: str
    dst: str
    term: int
    read_id: int


@dataclass(frozen=True, slots=True)
class ReadIndexReply:
    src: str
    dst: str
    term: int
    read_id: int
    read_index: int
    success: bool


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer (§3.10): the leader tells a caught-up voter to campaign now."""

    src: str
    dst: str
    term: int


Message = Union[
    TimeoutNow,
    RequestVote,
    RequestVoteReply,
    AppendEntries,
    AppendEntriesReply,
    InstallSnapshot,
    InstallSnapshotReply,
    ReadIndexRequest,
    ReadIndexReply,
]


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the node reports (health, redirects); never persisted."""

    role: Role
    term: int
    leader_id: str | None


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the local state machine has applied
    ``read_index``. ``success`` False means no leader could confirm it: retry or fail."""

    read_id: int
    read_index: int
    success: bool = True


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """Follower side of InstallSnapshot: write ``data`` at ``offset`` of the incoming
    snapshot identified by ``meta``; ``done`` means the snapshot is complete and must be
    verified, then installed (state machine restored from it) before the reply is sent."""

    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@dataclass(slots=True)
class Ready:
    """Everything one drain of the core asks the caller to do, in this order:

    1. persist ``snapshot_chunks`` (and install a completed snapshot), then truncate the log
       from ``entries[0].index`` if it overlaps and append ``entries``, then write
       ``hard_state`` if not None, and fsync all of it;
    2. send ``messages``;
    3. apply ``committed`` entries to the state machine in order;
    4. call ``core.advance(ready)``.

    ``soft_state`` is set when role, term or leader changed; a node that stops being leader
    must fail its pending proposals as "unknown" (they may still commit under a new leader).
    ``read_states`` are answered read indexes (ReadIndex).
    """

    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot_chunks: list[SnapshotChunk] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    committed: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    soft_state: SoftState | None = None
    # The encoded membership (a CONFIG entry's data, or a snapshot's) the core adopted
    # since the last Ready: the node updates its transport's peers and address book.
    membership: bytes | None = None

    def is_empty(self) -> bool:
        return not (
            self.hard_state
            or self.entries
            or self.snapshot_chunks
            or self.messages
            or self.committed
            or self.read_states
            or self.soft_state
            or self.membership is not None
        )


@dataclass(frozen=True, slots=True)
class Member:
    """A cluster member: its identity and where peers and clients reach it."""

    id: str
    raft_address: str
    http_address: str = ""
    learner: bool = False  # receives the log, never votes nor counts toward a quorum


@dataclass(frozen=True, slots=True)
class Configuration:
    """Who votes and who only listens; derived from the newest CONFIG entry in the log
    (committed or not, dissertation §4.1) or from the snapshot's membership."""

    voters: frozenset[str] = frozenset()
    learners: frozenset[str] = frozenset()

    def members(self) -> frozenset[str]:
        return self.voters | self.learners

    @classmethod
    def of(cls, members: "list[Member] | tuple[Member, ...]") -> "Configuration":
        return cls(
            frozenset(m.id for m in members if not m.learner),
            frozenset(m.id for m in members if m.learner),
        )
