"""What a leader knows about each follower's log, and how it paces replication to it."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class ProgressState(enum.Enum):
    PROBE = "probe"          # one append at a time until the follower's log position is found
    REPLICATE = "replicate"  # several appends in flight (pipelining)
    SNAPSHOT = "snapshot"    # the follower needs entries we compacted: send the snapshot


@dataclass
class Departure:
    """A server a committed change removed, which the leader still replicates to until it
    learned that the change committed (it stops only once it applies its removal).

    ``index``: the commit index it must learn. ``seq``: the leader's round (``read_seq``)
    from which every message to it carries a commit index of at least ``index``, so an
    answer echoing a round as new as ``seq``, with a match of at least ``index``, proves it
    learned it. ``ticks``: heartbeat ticks since, to give up on a dead server."""

    index: int
    seq: int
    ticks: int = 0
    told: bool = False


@dataclass
class Progress:
    """A leader's view of one follower (``next_index``, ``match_index`` of Figure 2)."""

    next_index: int
    match_index: int = 0
    state: ProgressState = ProgressState.PROBE
    paused: bool = False
    inflight: deque[int] = field(default_factory=deque)
    recent_active: bool = False
    stalled_ticks: int = 0
    read_seq_acked: int = 0
    snapshot_index: int = 0
    snapshot_offset: int = 0
    snapshot_idle_ticks: int = 0
    contact_elapsed: int = 0  # ticks since the follower last answered
    departure: Departure | None = None  # set once a committed change removed it

    def heard_from(self) -> None:
        self.recent_active = True
        self.contact_elapsed = 0

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next_index = self.match_index + 1
        self.paused = False
        self.inflight.clear()
        self.stalled_ticks = 0

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next_index = self.match_index + 1
        self.paused = False
        self.inflight.clear()
        self.stalled_ticks = 0

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.paused = False
        self.inflight.clear()
        self.snapshot_index = snapshot_index
        self.snapshot_offset = 0
        self.snapshot_idle_ticks = 0

    def free_inflight_upto(self, index: int) -> None:
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
