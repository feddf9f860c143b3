"""The window of recent changes that watchers replay from.

A watcher that starts at an old revision, or falls behind, is served from here; one that
asks for revisions no longer kept is told so ("compacted") and must read again. Like the
store, this is deterministic and single-threaded; unlike the store, it is not replicated:
each node keeps its own window, bounded in events and bytes.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Iterable

from leifdb.kv.commands import Event

__all__ = ["EVENT_OVERHEAD_BYTES", "History", "event_bytes", "matches"]

# What one kept event costs beyond its strings (the object, its tuple slot, ints): a rough
# fixed figure, so that many tiny events still count against ``max_bytes``.
EVENT_OVERHEAD_BYTES = 64


def matches(event_key: str, key: str, prefix: bool) -> bool:
    """Whether a change of ``event_key`` concerns a watch of ``key`` (every key starting
    with ``key`` when ``prefix``). The one definition for replay and live delivery."""
    return event_key.startswith(key) if prefix else event_key == key


def event_bytes(event: Event) -> int:
    """The size charged for keeping ``event``: UTF-8 lengths of key, value and previous
    value, plus ``EVENT_OVERHEAD_BYTES``."""
    size = EVENT_OVERHEAD_BYTES + len(event.key.encode("utf-8"))
    if event.value is not None:
        size += len(event.value.encode("utf-8"))
    if event.prev_value is not None:
        size += len(event.prev_value.encode("utf-8"))
    return size


class History:
    """The changes of the most recent revisions, at most ``max_events`` events and
    ``max_bytes`` bytes (as ``event_bytes`` counts them).

    ``record`` is called for every applied entry in order. When a bound is exceeded, whole
    revisions are dropped, oldest first, until both hold again (so a revision larger than a
    bound on its own is not kept either). ``compact_revision`` is then the revision after
    the last one dropped: every change at or after it is still here.

    Kept revisions live in parallel lists with a head offset: dropping is O(1) amortized
    (the dead prefix is cut once it is half the list) and ``since`` bisects.
    """

    def __init__(self, max_events: int, max_bytes: int, revision: int = 0) -> None:
        if max_events < 0 or max_bytes < 0:
            raise ValueError("max_events and max_bytes must not be negative")
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._revisions: list[int] = []
        self._groups: list[tuple[Event, ...]] = []
        self._sizes: list[int] = []
        self._head = 0
        self._events = 0
        self._bytes = 0
        self._revision = 0
        self._compact_revision = 1
        self.reset(revision)

    @property
    def revision(self) -> int:
        """The last revision recorded (or given to ``reset``)."""
        return self._revision

    @property
    def compact_revision(self) -> int:
        """The smallest ``start_revision`` that ``since`` can serve without a gap."""
        return self._compact_revision

    @property
    def event_count(self) -> int:
        return self._events

    @property
    def byte_count(self) -> int:
        return self._bytes

    def reset(self, revision: int) -> None:
        """The state now starts at ``revision`` (a snapshot was installed or loaded): the
        changes before it are unknown, so forget everything; history starts after it."""
        if revision < 0:
            raise ValueError("revision must not be negative")
        self._revisions = []
        self._groups = []
        self._sizes = []
        self._head = 0
        self._events = 0
        self._bytes = 0
        self._revision = revision
        self._compact_revision = revision + 1

    def record(self, revision: int, events: Iterable[Event]) -> None:
        """The entry at ``revision`` applied with these changes (possibly none). Revisions
        must strictly increase (ValueError otherwise, nothing changes)."""
        if revision <= self._revision:
            raise ValueError(f"revision {revision} is not after {self._revision}")
        group = tuple(events)
        self._revision = revision
        if not group:
            return
        size = sum(event_bytes(event) for event in group)
        self._revisions.append(revision)
        self._groups.append(group)
        self._sizes.append(size)
        self._events += len(group)
        self._bytes += size
        while self._head < len(self._revisions) and (
            self._events > self._max_events or self._bytes > self._max_bytes
        ):
            self._evict_oldest()
        if self._head > 32 and self._head * 2 > len(self._revisions):
            del self._revisions[: self._head]
            del self._groups[: self._head]
            del self._sizes[: self._head]
            self._head = 0

    def _evict_oldest(self) -> None:
        head = self._head
        self._events -= len(self._groups[head])
        self._bytes -= self._sizes[head]
        self._compact_revision = self._revisions[head] + 1
        self._groups[head] = ()  # free the events now, not at the next cut
        self._head = head + 1

    def since(
        self, start_revision: int, key: str, prefix: bool = False
    ) -> list[tuple[int, list[Event]]] | None:
        """The changes of ``key`` (keys under it when ``prefix``) at revisions >=
        ``start_revision``, one ``(revision, events)`` group per revision that has any, in
        order; None when ``start_revision < compact_revision`` (compacted: read again).
        Revisions start at 1, so a start below 1 counts as 1; a start past ``revision``
        gives []. Costs O(log n) plus the revisions from the start on."""
        start = max(start_revision, 1)
        if start < self._compact_revision:
            return None
        found: list[tuple[int, list[Event]]] = []
        first = bisect_left(self._revisions, start, lo=self._head)
        for i in range(first, len(self._revisions)):
            chosen = [event for event in self._groups[i] if matches(event.key, key, prefix)]
            if chosen:
                found.append((self._revisions[i], chosen))
        return found
