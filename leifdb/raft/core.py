"""The pure Raft core: messages and ticks go in, a ``Ready`` comes out.

No I/O, no clock, no Twisted. The caller (``leifdb.node`` in production, the simulation in
tests) turns time into ``tick()`` calls, feeds received messages to ``step()``, and drains
``ready()``: persist, send, apply, then ``advance()``. Because nothing here blocks or reads a
clock, a hypothesis test can drive thousands of crashes and partitions in seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from leifdb.raft.messages import (
    Entry,
    HardState,
    Ready,
    Role,
    SnapshotMeta,
)


class NotLeader(Exception):
    """A proposal reached a node that is not the leader. ``leader_id`` is the hint (or None)."""

    def __init__(self, leader_id: str | None) -> None:
        super().__init__(f"not leader; leader is {leader_id!r}")
        self.leader_id = leader_id


@dataclass(frozen=True)
class Config:
    """Static configuration of one core.

    ``peers`` lists every voting member, this node included. The election timeout is drawn
    uniformly from ``[election_ticks, 2 * election_ticks)`` ticks on every reset; the leader
    sends heartbeats every ``heartbeat_ticks``.
    """

    node_id: str
    peers: tuple[str, ...]
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    check_quorum: bool = True
    max_entries_per_append: int = 512
    max_inflight_appends: int = 8


@dataclass
class PersistentState:
    """What a node recovered from its storage at start: the hard state, the newest snapshot's
    metadata (zeros if none) and the log entries after it, in index order."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: SnapshotMeta = field(default_factory=SnapshotMeta)
    entries: list[Entry] = field(default_factory=list)


@dataclass(frozen=True)
class Status:
    node_id: str
    role: Role
    term: int
    leader_id: str | None
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int


class RaftCore:
    """One Raft participant (Figure 2 of the Raft paper, plus ReadIndex and snapshots).

    Inputs: ``tick``, ``step``, ``propose``, ``read_index``, ``compact``, ``snapshot_installed``.
    Output: ``ready`` / ``advance``. All randomness comes from ``rng``.
    """

    def __init__(self, config: Config, state: PersistentState, rng: random.Random) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        """One unit of time has passed (election and heartbeat timers count ticks)."""
        raise NotImplementedError

    def step(self, msg) -> None:
        """Handle one received message. Messages from unknown nodes or for another ``dst``
        are ignored."""
        raise NotImplementedError

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a command to the leader's log; returns its ``(index, term)``.

        Raises ``NotLeader`` on a follower or candidate. Everything proposed before the next
        ``ready()`` goes out as one append. The proposal's outcome: the committed entry at
        ``index`` has ``term`` (applied), or a different term / leadership lost (unknown)."""
        raise NotImplementedError

    def read_index(self, read_id: int) -> None:
        """Ask for a linearizable read point. The answer comes back as a ``ReadState`` with
        the same ``read_id`` in a later ``Ready``: serve the read once the state machine has
        applied ``read_index``. A leader confirms it with a heartbeat round to a majority; a
        follower asks the leader. ``success=False`` when no leader can answer now."""
        raise NotImplementedError

    def compact(self, meta: SnapshotMeta) -> None:
        """The state machine's snapshot at ``meta.last_included_index`` (<= applied) is
        durable: forget the log up to it and use it to catch up lagging followers."""
        raise NotImplementedError

    def snapshot_installed(self, meta: SnapshotMeta, ok: bool) -> None:
        """The caller persisted and verified (``ok``) the snapshot whose last chunk the core
        emitted; the core now replaces its log with it (or asks the leader to start over)."""
        raise NotImplementedError

    def has_ready(self) -> bool:
        raise NotImplementedError

    def ready(self) -> Ready:
        """Drain what must be persisted, sent and applied since the last ``advance``."""
        raise NotImplementedError

    def advance(self, ready: Ready) -> None:
        """The caller has persisted, sent and applied ``ready``."""
        raise NotImplementedError

    def status(self) -> Status:
        raise NotImplementedError
