"""``ThreadedStorage``: runs a ``LogStorage`` on one worker thread so the reactor never
waits for the disk, and merges persists that queue up meanwhile into one fsync.

The only module of ``leifdb.storage`` that imports Twisted.

Group commit: while the worker is busy (typically in an fsync), every ``persist`` call
queues. When the worker frees up, all queued persists go to it as ONE job: their appends
and hard states are staged in call order and made durable by a single ``sync()``. Each
caller's Deferred fires (on the reactor thread) once its data is durable. Other work
(``compact``, ``call``) keeps its place in the same FIFO queue, so the order of effects is
exactly the order of calls.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from leifdb.raft.messages import Entry, HardState, SnapshotMeta
from leifdb.raft.storage import LogStorage
from leifdb.storage.errors import StorageClosed


@dataclass
class _Persist:
    hard_state: HardState | None
    entries: Sequence[Entry]
    deferred: Deferred


@dataclass
class _Call:
    function: Callable[..., Any]
    args: tuple
    deferred: Deferred


class StorageQueue:
    """Asynchronous front of a ``LogStorage`` for the node (reactor thread only): the FIFO
    queue and group commit. Subclasses say where the work runs (``_run``): a worker
    thread in production, simulated time in the node-level simulation."""

    def __init__(self, storage: LogStorage) -> None:
        self.storage = storage
        self._queue: deque[_Persist | _Call] = deque()
        self._busy = False
        self._firing = False
        self._closing = False
        self._close_waiters: list[Deferred] = []
        self._close_result: Any = _PENDING
        self.batches = 0

    def _run(self, function: Callable[..., Any], *args: Any) -> Deferred:
        """Run ``function(*args)`` off the reactor; fire with its result or failure."""
        raise NotImplementedError

    def _release(self) -> None:
        """Called once after the storage closed: free the worker."""

    def load(self) -> Deferred:
        """``storage.load()`` on the worker; fires with the ``PersistentState``."""
        return self.call(self.storage.load)

    def persist(self, hard_state: HardState | None, entries: Sequence[Entry]) -> Deferred:
        """Stage ``entries`` then ``hard_state`` (either may be empty/None) and sync.
        Fires with None once durable; errbacks with the storage's error."""
        if self._closing:
            return defer.fail(StorageClosed("storage is closing"))
        d: Deferred = Deferred()
        self._queue.append(_Persist(hard_state, list(entries), d))
        self._kick()
        return d

    def compact(self, meta: SnapshotMeta) -> Deferred:
        """``storage.compact(meta)`` on the worker, after everything queued before it."""
        return self.call(self.storage.compact, meta)

    def call(self, function: Callable[..., Any], *args: Any) -> Deferred:
        """Run any blocking storage work (e.g. a ``SnapshotStore`` method) on the worker,
        in queue order; fires with its result."""
        if self._closing:
            return defer.fail(StorageClosed("storage is closing"))
        d: Deferred = Deferred()
        self._queue.append(_Call(function, args, d))
        self._kick()
        return d

    def close(self) -> Deferred:
        """Let queued work finish (including an fsync in flight), close the storage on
        the worker, stop the worker. Fires when all of that is done. Idempotent."""
        d: Deferred = Deferred()
        if self._close_result is not _PENDING:
            _fire(d, self._close_result)
            return d
        self._close_waiters.append(d)
        if not self._closing:
            self._closing = True
            done: Deferred = Deferred()
            done.addBoth(self._closed)
            self._queue.append(_Call(self.storage.close, (), done))
            self._kick()
        return d

    # ------------------------------------------------------------------ internals

    def _kick(self) -> None:
        if self._busy or self._firing or not self._queue:
            return
        self._busy = True
        head = self._queue[0]
        if isinstance(head, _Persist):
            batch: list[_Persist] = []
            while self._queue and isinstance(self._queue[0], _Persist):
                batch.append(self._queue.popleft())  # type: ignore[arg-type]
            work = self._run(self._write_batch, batch)
            waiters = [p.deferred for p in batch]
        else:
            self._queue.popleft()
            assert isinstance(head, _Call)
            work = self._run(head.function, *head.args)
            waiters = [head.deferred]
        work.addBoth(self._finished, waiters)

    def _write_batch(self, batch: list[_Persist]) -> None:
        """Worker thread: stage the whole batch in order, then one sync."""
        storage = self.storage
        for item in batch:
            if item.entries:
                storage.append(item.entries)
            if item.hard_state is not None:
                storage.set_hard_state(item.hard_state)
        storage.sync()
        self.batches += 1

    def _finished(self, result: Any, waiters: list[Deferred]) -> None:
        self._busy = False
        self._firing = True
        try:
            for d in waiters:
                _fire(d, result)
        finally:
            self._firing = False
        self._kick()

    def _closed(self, result: Any) -> None:
        self._release()
        self._close_result = result
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            _fire(d, result)


class ThreadedStorage(StorageQueue):
    """The queue on a private one-thread pool; ``reactor`` receives the results. The pool
    is stopped by ``close()`` (or at reactor shutdown)."""

    def __init__(self, storage: LogStorage, reactor: Any, name: str = "leifdb-storage") -> None:
        super().__init__(storage)
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
        self._pool.start()
        self._shutdown_trigger = reactor.addSystemEventTrigger(
            "during", "shutdown", self._pool.stop
        )

    def _run(self, function: Callable[..., Any], *args: Any) -> Deferred:
        return deferToThreadPool(self._reactor, self._pool, function, *args)

    def _release(self) -> None:
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        self._pool.stop()


_PENDING = object()


def _fire(d: Deferred, result: Any) -> None:
    if isinstance(result, Failure):
        d.errback(result)
    else:
        d.callback(result)
