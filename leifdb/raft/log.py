"""The in-memory view of the Raft log: a snapshot boundary and the entries after it."""

from __future__ import annotations

import bisect

from leifdb.raft.messages import Entry


class LogInvariantError(AssertionError):
    """An operation would break a Raft log invariant (a bug, never bad input)."""


class RaftLog:
    """Entries ``snapshot_index + 1 .. last_index`` in order, plus the snapshot's last term.

    Index 0 with term 0 is the empty prefix every log shares. Indexes at or below the
    snapshot boundary (except the boundary itself) have no known term: ``term_at`` returns
    None for them, as for indexes past the end.
    """

    def __init__(
        self, snapshot_index: int = 0, snapshot_term: int = 0, entries: list[Entry] | None = None
    ) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.entries: list[Entry] = []
        if entries:
            self.append(entries)

    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index():
            return None
        return self.entries[index - self.snapshot_index - 1].term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``lo .. hi`` inclusive; ``lo`` must be past the snapshot boundary."""
        if lo <= self.snapshot_index:
            raise LogInvariantError(f"entry {lo} is compacted (snapshot at {self.snapshot_index})")
        base = self.snapshot_index + 1
        return self.entries[lo - base : hi - base + 1]

    def append(self, entries: list[Entry]) -> None:
        for entry in entries:
            if entry.index != self.last_index() + 1:
                raise LogInvariantError(
                    f"entry {entry.index} does not follow last index {self.last_index()}"
                )
            if entry.term < self.last_term():
                raise LogInvariantError(
                    f"entry {entry.index} has term {entry.term} below {self.last_term()}"
                )
            self.entries.append(entry)

    def truncate_from(self, index: int) -> None:
        """Drop entries ``index ..``; the caller guarantees none of them is committed."""
        if index <= self.snapshot_index:
            raise LogInvariantError(f"cannot truncate into the snapshot at {index}")
        del self.entries[index - self.snapshot_index - 1 :]

    def compact_to(self, index: int, term: int) -> None:
        """Forget entries up to ``index``; keep later entries only if they follow ``term``
        at ``index`` (otherwise they are not known to extend the snapshot)."""
        if index <= self.snapshot_index:
            return
        if self.term_at(index) == term:
            del self.entries[: index - self.snapshot_index]
        else:
            self.entries = []
        self.snapshot_index = index
        self.snapshot_term = term

    def first_index_of_term(self, index: int) -> int:
        """The first index of the run of entries sharing ``term_at(index)`` (fast
        backtracking). Terms never decrease along the log, so a binary search finds it."""
        term = self.term_at(index)
        pos = bisect.bisect_left(self.entries, term, key=_term_of)
        return max(pos + self.snapshot_index + 1, self.snapshot_index + 1)

    def last_index_of_term(self, term: int) -> int | None:
        """The last index holding ``term``, or None when the log has no such entry."""
        pos = bisect.bisect_right(self.entries, term, key=_term_of)
        if pos > 0 and self.entries[pos - 1].term == term:
            return self.snapshot_index + pos
        if pos == 0 and self.snapshot_term == term and self.snapshot_index > 0:
            return self.snapshot_index
        return None


def _term_of(entry: Entry) -> int:
    return entry.term
