"""An in-memory ``leifdb.service.api.Service`` for the HTTP tests.

The state is the real state machine (``KVStore``: pure, no I/O), so conditions and
transactions evaluate exactly as on a node; around it the fake plays the service: a
history of events, watches and long polls over it, the limits, and failures and delays
the test controls.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.task import Clock

from leifdb.errors import Compacted, InvalidRequest, LimitExceeded
from leifdb.kv.commands import Command, Condition, Delete, Event, Item, Put, Txn
from leifdb.kv.store import KVStore
from leifdb.service.api import (
    CONSISTENCY_LINEARIZABLE,
    NodeStatus,
    Page,
    ServiceLimits,
    WatchSink,
    WriteResult,
)


class FakeWatch:
    """A watch as the service keeps it: the sink, a queue for when the sink is full."""

    def __init__(self, service: FakeService, sink: WatchSink, key: str, prefix: bool,
                 start_revision: int) -> None:
        self.service = service
        self.sink = sink
        self.key = key
        self.prefix = prefix
        self._start_revision = start_revision
        self.queue: deque[list[Event]] = deque()
        self.blocked = False
        self.cancelled = False
        self.resumes = 0

    @property
    def start_revision(self) -> int:
        return self._start_revision

    def matches(self, event: Event) -> bool:
        return event.key.startswith(self.key) if self.prefix else event.key == self.key

    def offer(self, events: list[Event]) -> None:
        """One revision's events (already filtered): deliver, or queue while blocked."""
        if self.blocked or self.queue:
            self.queue.append(events)
            if sum(len(e) for e in self.queue) > self.service.limits.watcher_buffer_events:
                self.close("overflow")
            return
        if not self.sink.events(events):
            self.blocked = True

    def resume(self) -> None:
        self.resumes += 1
        self.blocked = False
        while self.queue and not self.blocked and not self.cancelled:
            if not self.sink.events(self.queue.popleft()):
                self.blocked = True

    def cancel(self) -> None:
        self.cancelled = True
        self._forget()

    def close(self, reason: str, compact_revision: int | None = None) -> None:
        self._forget()
        self.sink.closed(reason, compact_revision)

    def _forget(self) -> None:
        if self in self.service.watchers:
            self.service.watchers.remove(self)


class FakeService:
    """Applies writes at once (revision = the store's applied index + 1) unless told
    otherwise.

    ``read_error`` / ``write_error``: fail linearizable reads / writes with it. ``hold``:
    keep the Deferreds of linearizable reads and of writes in ``pending`` for the test to
    fire. ``writes`` lists the commands asked for, ``barriers`` counts linearizable reads,
    ``waits`` the long polls' arguments. ``clock`` times the long polls.
    """

    def __init__(self, limits: ServiceLimits | None = None, clock: Clock | None = None) -> None:
        self.limits = limits if limits is not None else ServiceLimits()
        self.clock = clock if clock is not None else Clock()
        self.store: Any = KVStore()
        self.history: list[Event] = []
        self.compact_revision = 1
        self.writes: list[Command] = []
        self.barriers = 0
        self.read_error: Exception | None = None
        self.write_error: Exception | None = None
        self.hold = False
        self.pending: list[Deferred[Any]] = []
        self.watchers: list[FakeWatch] = []
        self.waits: list[dict[str, Any]] = []
        self._waiters: list[tuple[Callable[[Event], bool], int, Deferred[list[Event]]]] = []
        self._observers: list[Callable[[int, tuple[Event, ...]], None]] = []
        self.status_fields: dict[str, Any] = {
            "node": "127.0.0.1:16990", "role": "leader", "term": 3,
            "leader": "127.0.0.1:16990", "leader_http": "127.0.0.1:8080",
        }

    # -- test controls ---------------------------------------------------------------

    def set(self, key: str, value: str) -> Item:
        """Write a key at once, as if replicated earlier (not recorded in ``writes``)."""
        item = self.apply(Put(key, value)).current
        assert item is not None
        return item

    def remove(self, key: str) -> None:
        self.apply(Delete(key))

    def apply(self, command: Command) -> Any:
        """Apply ``command`` at the next revision and tell watchers, waiters, observers."""
        index = self.store.applied_index + 1
        result = self.store.apply(index, command)
        self.history.extend(result.events)
        self._publish(index, result.events)
        return result

    def compact(self, revision: int) -> None:
        """Keep history from ``revision`` on only."""
        self.compact_revision = revision
        self.history = [e for e in self.history if e.revision >= revision]

    def send_progress(self) -> None:
        for watch in list(self.watchers):
            if not watch.blocked and not watch.queue:
                watch.sink.progress(self.revision)

    def close_watchers(self, reason: str, compact_revision: int | None = None) -> None:
        for watch in list(self.watchers):
            watch.close(reason, compact_revision)

    # -- Service ---------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self.store.applied_index

    def get(self, key: str, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Any]:
        return self._read(consistency, lambda: self.store.get(key))

    def range(self, prefix: str, start_after: str | None = None, limit: int | None = None,
              consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Page]:
        return self._read(consistency, lambda: self._page(prefix, start_after, limit))

    def put(self, key: str, value: str, condition: Condition | None = None
            ) -> Deferred[WriteResult]:
        return self._write(Put(key, value, condition))

    def delete(self, key: str, condition: Condition | None = None) -> Deferred[WriteResult]:
        return self._write(Delete(key, condition))

    def barrier(self, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Any]:
        return self._read(consistency, lambda: None)

    def txn(self, txn: Txn, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Any]:
        self._check_txn(txn)
        if txn.read_only:
            return self._read(consistency, lambda: self.store.evaluate_txn(txn))
        return self._write(txn)

    def watch(self, sink: WatchSink, key: str, *, prefix: bool = False,
              start_revision: int | None = None) -> FakeWatch:
        if len(self.watchers) >= self.limits.max_watchers:
            raise LimitExceeded(f"at most {self.limits.max_watchers} watchers")
        if start_revision is not None and start_revision < self.compact_revision:
            raise Compacted(self.compact_revision)
        start = start_revision if start_revision is not None else self.revision + 1
        watch = FakeWatch(self, sink, key, prefix, start)
        for _, events in self._revisions(watch.matches, start):
            watch.offer(events)
        self.watchers.append(watch)
        return watch

    def wait(self, key: str, *, prefix: bool, wait_revision: int, timeout: float
             ) -> Deferred[list[Event]]:
        self.waits.append({"key": key, "prefix": prefix, "wait_revision": wait_revision,
                           "timeout": timeout})
        if wait_revision < self.compact_revision:
            return fail(Compacted(self.compact_revision))

        def matches(event: Event) -> bool:
            return event.key.startswith(key) if prefix else event.key == key

        for _, events in self._revisions(matches, wait_revision):
            d: Deferred[list[Event]] = Deferred()
            d.callback(events)
            return d
        waiter: tuple[Any, int, Deferred[list[Event]]]

        def cancel(_: Deferred[list[Event]]) -> None:
            self._waiters.remove(waiter)
            timer.cancel()

        result: Deferred[list[Event]] = Deferred(cancel)
        waiter = (matches, wait_revision, result)
        self._waiters.append(waiter)

        def expire() -> None:
            self._waiters.remove(waiter)
            result.callback([])

        timer = self.clock.callLater(timeout, expire)
        result.addBoth(lambda r: (timer.cancel() if timer.active() else None, r)[1])
        return result

    @property
    def pending_waits(self) -> int:
        return len(self._waiters)

    def status(self) -> NodeStatus:
        applied = self.store.applied_index
        return NodeStatus(
            commit_index=applied, applied_index=applied, last_index=applied,
            snapshot_index=0, version="fake", revision=applied,
            compact_revision=self.compact_revision, watchers=len(self.watchers),
            **self.status_fields,
        )

    def on_applied(self, observer: Callable[[int, tuple[Event, ...]], None]
                   ) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    # -- inside ----------------------------------------------------------------------

    def _read(self, consistency: str, read: Callable[[], Any]) -> Deferred[Any]:
        if consistency == CONSISTENCY_LINEARIZABLE:
            self.barriers += 1
            if self.read_error is not None:
                return fail(self.read_error)
            if self.hold:
                d: Deferred[Any] = Deferred()
                d.addCallback(lambda _: read())
                self.pending.append(d)
                return d
        return maybeDeferred(read)

    def _write(self, command: Command) -> Deferred[Any]:
        self.writes.append(command)
        if self.write_error is not None:
            return fail(self.write_error)
        if self.hold:
            d: Deferred[Any] = Deferred()
            d.addCallback(lambda _: self._commit(command))
            self.pending.append(d)
            return d
        return maybeDeferred(self._commit, command)

    def _commit(self, command: Command) -> Any:
        result = self.apply(command)
        if isinstance(command, Txn):
            return result.txn
        current = result.current if not result.ok or isinstance(command, Put) else None
        return WriteResult(ok=result.ok, revision=result.revision, current=current)

    def _page(self, prefix: str, start_after: str | None, limit: int | None) -> Page:
        limit = min(limit or self.limits.default_page_size, self.limits.max_page_size)
        items, more = self.store.range(prefix, start_after, limit)
        page: list[Item] = []
        size = 0
        for item in items:
            size += len(item.key.encode()) + len(item.value.encode())
            if page and size > self.limits.max_page_bytes:
                more = True
                break
            page.append(item)
        return Page(tuple(page), more, self.revision)

    def _check_txn(self, txn: Txn) -> None:
        ops = len(txn.compare) + len(txn.success) + len(txn.failure)
        if ops > self.limits.max_txn_ops:
            raise LimitExceeded(f"{ops} operations and compares; the limit is "
                                f"{self.limits.max_txn_ops}")
        for branch in (txn.success, txn.failure):
            written = [op.key for op in branch if isinstance(op, (Put, Delete))]
            if len(written) != len(set(written)):
                raise InvalidRequest("two writes to one key in one branch")

    def _revisions(self, matches: Callable[[Event], bool], start: int
                   ) -> list[tuple[int, list[Event]]]:
        """Kept history from ``start`` on, filtered, grouped by revision."""
        grouped: dict[int, list[Event]] = {}
        for event in self.history:
            if event.revision >= start and matches(event):
                grouped.setdefault(event.revision, []).append(event)
        return sorted(grouped.items())

    def _publish(self, revision: int, events: tuple[Event, ...]) -> None:
        for watch in list(self.watchers):
            chosen = [e for e in events if watch.matches(e)]
            if chosen and revision >= watch.start_revision:
                watch.offer(chosen)
        for matches, wait_revision, d in list(self._waiters):
            chosen = [e for e in events if matches(e)]
            if chosen and revision >= wait_revision:
                self._waiters.remove((matches, wait_revision, d))
                d.callback(chosen)
        for observer in list(self._observers):
            observer(revision, events)
