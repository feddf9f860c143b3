"""The storage contract the node drives with each ``Ready``, and an in-memory double.

The core never calls storage itself (it stays pure); the node does, in ``Ready`` order:
``append`` and ``set_hard_state`` stage changes, ``sync`` makes everything staged durable
with one fsync (group commit). Only after ``sync`` returns may messages that depend on it be
sent or proposals be acknowledged.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from leifdb.raft.core import PersistentState
from leifdb.raft.messages import Entry, HardState, SnapshotMeta


class LogStorage(Protocol):
    def load(self) -> PersistentState:
        """Recover hard state, newest snapshot metadata and the entries after it."""

    def append(self, entries: Sequence[Entry]) -> None:
        """Stage ``entries``; if ``entries[0].index`` is not past the last stored index, the
        stored suffix from that index on is discarded first (conflict truncation)."""

    def set_hard_state(self, hard_state: HardState) -> None:
        """Stage the term and vote (``commit_index`` may be ignored: it is recomputed)."""

    def sync(self) -> None:
        """Make everything staged durable, with one fsync for the whole batch."""

    def compact(self, meta: SnapshotMeta) -> None:
        """A snapshot through ``meta.last_included_index`` is durable: entries up to it may go.
        A snapshot older than the current one is ignored (compactions may finish out of order).
        Later entries stay only if the stored entry at that index has ``meta``'s term;
        otherwise (a follower that installed a leader's snapshot over a divergent log) they
        are dropped too, since they are not known to follow the snapshot."""

    def close(self) -> None:
        """Release files and locks."""


class MemoryStorage:
    """Test double: durable is what ``sync`` saw; ``crash()`` forgets the rest."""

    def __init__(self) -> None:
        self._durable = PersistentState()
        self._staged_entries: list[Entry] = []
        self._staged_hard_state: HardState | None = None
        self.syncs = 0

    def load(self) -> PersistentState:
        d = self._durable
        return PersistentState(d.hard_state, d.snapshot, list(d.entries))

    def append(self, entries: Sequence[Entry]) -> None:
        # Entries the snapshot already covers are dropped, as DiskStorage does (one Ready
        # may carry a leader's snapshot and entries it includes).
        boundary = self._durable.snapshot.last_included_index
        entries = [e for e in entries if e.index > boundary]
        if not entries:
            return
        base = self._staged_entries or self._durable.entries
        first = entries[0].index
        kept = [e for e in base if e.index < first]
        self._staged_entries = kept + list(entries)

    def set_hard_state(self, hard_state: HardState) -> None:
        self._staged_hard_state = hard_state

    def sync(self) -> None:
        self.syncs += 1
        if self._staged_entries:
            self._durable.entries = self._staged_entries
            self._staged_entries = []
        if self._staged_hard_state is not None:
            self._durable.hard_state = self._staged_hard_state
            self._staged_hard_state = None

    def compact(self, meta: SnapshotMeta) -> None:
        index, term = meta.last_included_index, meta.last_included_term
        if index <= self._durable.snapshot.last_included_index:
            return
        entries = self._durable.entries
        follows = any(e.index == index and e.term == term for e in entries)
        self._durable.snapshot = meta
        self._durable.entries = [e for e in entries if e.index > index] if follows else []

    def crash(self) -> None:
        """Lose everything not yet synced."""
        self._staged_entries = []
        self._staged_hard_state = None

    def close(self) -> None:
        pass
