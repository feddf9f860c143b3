"""Watchers and long polls, fed by the applied stream (etcd's ``watchable_store``).

Every applied entry reaches ``WatchHub.applied`` in log order, so a watcher sees only
committed changes, in order, each revision once. The recent past is kept in a bounded
``History``; a watch that starts before it is refused with ``Compacted`` (never a silent
gap). A slow watcher's queue is bounded too: past it the watch ends with ``overflow``,
and nobody else is held up.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, succeed

from leifdb.errors import Compacted, LimitExceeded
from leifdb.kv.commands import Event
from leifdb.kv.history import History, event_bytes, matches
from leifdb.service.api import ServiceLimits, WatchSink

__all__ = ["WatchHub", "Watcher"]


class Watcher:
    """One watch: a key or prefix, a sink, and what is queued while the sink is full."""

    def __init__(self, hub: WatchHub, sink: WatchSink, key: str, prefix: bool, start: int) -> None:
        self._hub = hub
        self.sink = sink
        self.key = key
        self.prefix = prefix
        self._start = start
        self._queue: deque[list[Event]] = deque()
        self._queued_events = 0
        self._queued_bytes = 0
        self._paused = False
        self.delivered = start - 1  # every matching change up to here went to the sink
        self.active = True

    @property
    def start_revision(self) -> int:
        return self._start

    def offer(self, revision: int, events: list[Event]) -> None:
        """Changes of one revision that match this watch."""
        if not self.active or revision < self._start:
            return
        if self._paused or self._queue:
            self._queue.append(events)
            self._queued_events += len(events)
            self._queued_bytes += sum(event_bytes(e) for e in events)
            limits = self._hub.limits
            if (self._queued_events > limits.watcher_buffer_events
                    or self._queued_bytes > limits.watcher_buffer_bytes):
                self._hub.close(self, "overflow")
            return
        self._send(revision, events)

    def _send(self, revision: int, events: list[Event]) -> None:
        self.delivered = revision
        if not self.sink.events(events):
            self._paused = True

    def progress(self, revision: int) -> None:
        """A bookmark, only when nothing is queued (it promises all up to ``revision``)."""
        if self.active and not self._paused and not self._queue and revision >= self._start - 1:
            self.delivered = max(self.delivered, revision)
            self.sink.progress(revision)

    def resume(self) -> None:
        """The sink can take more: drain the queue until it is full again."""
        self._paused = False
        while self.active and self._queue and not self._paused:
            events = self._queue.popleft()
            self._queued_events -= len(events)
            self._queued_bytes -= sum(event_bytes(e) for e in events)
            self._send(events[0].revision, events)

    def cancel(self) -> None:
        self._hub.remove(self)


class _LongPoll:
    def __init__(self, key: str, prefix: bool, wait_revision: int, deferred: Deferred, timer: Any):
        self.key = key
        self.prefix = prefix
        self.wait_revision = wait_revision
        self.deferred = deferred
        self.timer = timer


class WatchHub:
    """The history window plus every live watcher and long poll of one node."""

    def __init__(self, reactor: Any, limits: ServiceLimits) -> None:
        self.reactor = reactor
        self.limits = limits
        self.history = History(limits.history_events, limits.history_bytes)
        self._watchers: set[Watcher] = set()
        self._polls: set[_LongPoll] = set()
        self._progress_call: Any = None

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    # -- the applied stream ------------------------------------------------------------

    def applied(self, revision: int, events: tuple[Event, ...]) -> None:
        """Entry ``revision`` applied with these changes (called for every entry)."""
        group = list(events)
        self.history.record(revision, group)
        if not group:
            return
        for watcher in list(self._watchers):
            chosen = [e for e in group if matches(e.key, watcher.key, watcher.prefix)]
            if chosen:
                # The same list for every watcher that wants all of it, so front ends can
                # encode it once (see leifdb.http.watch.format_events).
                watcher.offer(revision, group if len(chosen) == len(group) else chosen)
        for poll in list(self._polls):
            chosen = [e for e in events if matches(e.key, poll.key, poll.prefix)]
            if chosen and revision >= poll.wait_revision:
                self._answer(poll, chosen)

    def reset(self, revision: int) -> None:
        """The state jumped to a snapshot at ``revision``: history before it is gone, and a
        watcher that had not reached it cannot be served without a gap."""
        self.history.reset(revision)
        for watcher in list(self._watchers):
            if watcher.delivered < revision:
                self.close(watcher, "compacted")
        for poll in list(self._polls):
            poll.timer.cancel()
            self._polls.discard(poll)
            poll.deferred.errback(Compacted(self.history.compact_revision))

    # -- watches -----------------------------------------------------------------------

    def watch(self, sink: WatchSink, key: str, prefix: bool, start_revision: int | None) -> Watcher:
        if len(self._watchers) >= self.limits.max_watchers:
            raise LimitExceeded(f"this node already serves {self.limits.max_watchers} watchers")
        current = self.history.revision
        start = current + 1 if start_revision is None else start_revision
        replay: list[tuple[int, list[Event]]] = []
        if start <= current:
            found = self.history.since(start, key, prefix)
            if found is None:
                raise Compacted(self.history.compact_revision)
            replay = found
        watcher = Watcher(self, sink, key, prefix, start)
        self._watchers.add(watcher)
        for revision, events in replay:
            watcher.offer(revision, events)
        watcher.progress(current)
        self._arm_progress()
        return watcher

    def remove(self, watcher: Watcher) -> None:
        watcher.active = False
        self._watchers.discard(watcher)

    def close(self, watcher: Watcher, reason: str) -> None:
        """End a watch, telling its sink why."""
        if not watcher.active:
            return
        self.remove(watcher)
        compact = self.history.compact_revision if reason == "compacted" else None
        watcher.sink.closed(reason, compact)

    def _arm_progress(self) -> None:
        if self._progress_call is None and self._watchers:
            self._progress_call = self.reactor.callLater(
                self.limits.progress_interval, self._send_progress
            )

    def _send_progress(self) -> None:
        self._progress_call = None
        revision = self.history.revision
        for watcher in list(self._watchers):
            watcher.progress(revision)
        self._arm_progress()

    # -- long polls --------------------------------------------------------------------

    def wait(self, key: str, prefix: bool, wait_revision: int, timeout: float) -> Deferred[list[Event]]:
        if wait_revision <= self.history.revision:
            found = self.history.since(wait_revision, key, prefix)
            if found is None:
                raise Compacted(self.history.compact_revision)
            if found:
                return succeed(found[0][1])
        poll = _LongPoll(key, prefix, wait_revision, None, None)
        d: Deferred[list[Event]] = Deferred(canceller=lambda _: self._cancel_poll(poll))
        poll.deferred = d
        poll.timer = self.reactor.callLater(timeout, self._timed_out, poll)
        self._polls.add(poll)
        return d

    def _answer(self, poll: _LongPoll, events: list[Event]) -> None:
        self._polls.discard(poll)
        if poll.timer.active():
            poll.timer.cancel()
        poll.deferred.callback(events)

    def _cancel_poll(self, poll: _LongPoll) -> None:
        """The client went away: forget the poll (the Deferred errbacks CancelledError)."""
        self._polls.discard(poll)
        if poll.timer is not None and poll.timer.active():
            poll.timer.cancel()

    def _timed_out(self, poll: _LongPoll) -> None:
        if poll in self._polls:
            self._polls.discard(poll)
            poll.deferred.callback([])

    # -- shutdown ----------------------------------------------------------------------

    def shutdown(self) -> None:
        for watcher in list(self._watchers):
            self.close(watcher, "shutdown")
        for poll in list(self._polls):
            self._answer(poll, [])
        if self._progress_call is not None and self._progress_call.active():
            self._progress_call.cancel()
        self._progress_call = None
