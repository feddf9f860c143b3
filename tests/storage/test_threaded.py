"""ThreadedStorage: persists run off the reactor thread, queue up, and share one fsync."""

from __future__ import annotations

import threading

import pytest
import pytest_twisted
from twisted.internet import defer

from leifdb.raft.messages import HardState, SnapshotMeta
from leifdb.raft.storage import MemoryStorage
from leifdb.storage import DiskStorage, StorageClosed
from leifdb.storage.threaded import ThreadedStorage

from tests.storage.helpers import entries, entry, load_state

TIMEOUT = 10


def get_reactor():
    from twisted.internet import reactor

    return reactor


class GatedStorage(MemoryStorage):
    """MemoryStorage whose ``sync`` waits for ``gate`` and records what happened where."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.threads: set[str] = set()
        self.batches: list[int] = []
        self._pending = 0
        self.fail_next = False

    def append(self, entries):
        self.threads.add(threading.current_thread().name)
        self._pending += len(entries)
        super().append(entries)

    def sync(self):
        assert self.gate.wait(TIMEOUT), "test never opened the gate"
        if self.fail_next:
            self.fail_next = False
            self._pending = 0
            raise OSError(5, "simulated EIO")
        self.batches.append(self._pending)
        self._pending = 0
        super().sync()

    def durable_last(self) -> int:
        return self._durable.entries[-1].index if self._durable.entries else 0


def wait(d):
    return d.addTimeout(TIMEOUT, get_reactor())


@pytest_twisted.inlineCallbacks
def test_persist_is_durable_when_it_fires(tmp_path):
    storage = DiskStorage.open(tmp_path)
    threaded = ThreadedStorage(storage, get_reactor())
    state = yield wait(threaded.load())
    assert state.entries == []

    yield wait(threaded.persist(HardState(2, "n1"), entries(1, 10)))
    yield wait(threaded.close())

    state = load_state(tmp_path)
    assert state.entries == entries(1, 10)
    assert state.hard_state == HardState(2, "n1")


@pytest_twisted.inlineCallbacks
def test_persists_queued_behind_an_fsync_share_the_next_one():
    fake = GatedStorage()
    threaded = ThreadedStorage(fake, get_reactor())
    fake.gate.clear()
    first = threaded.persist(None, [entry(1)])
    rest = [threaded.persist(None, [entry(i)]) for i in range(2, 101)]
    fired_early = [d.called for d in rest]

    fake.gate.set()
    yield wait(defer.gatherResults([first] + rest))
    yield wait(threaded.close())

    assert not any(fired_early)
    assert fake.batches == [1, 99]
    assert fake.syncs == 2
    assert [e.index for e in fake.load().entries] == list(range(1, 101))
    assert threading.current_thread().name not in fake.threads


@pytest_twisted.inlineCallbacks
def test_each_deferred_fires_only_after_its_entries_are_durable():
    fake = GatedStorage()
    threaded = ThreadedStorage(fake, get_reactor())
    seen = []

    def record(_, index):
        seen.append((index, fake.durable_last()))

    ds = []
    for i in range(1, 30):
        d = threaded.persist(None, [entry(i)])
        d.addCallback(record, i)
        ds.append(d)
    yield wait(defer.gatherResults(ds))
    yield wait(threaded.close())

    assert [index for index, _ in seen] == list(range(1, 30))
    assert all(durable >= index for index, durable in seen)


@pytest_twisted.inlineCallbacks
def test_a_failed_sync_fails_every_persist_of_its_batch():
    fake = GatedStorage()
    threaded = ThreadedStorage(fake, get_reactor())
    fake.gate.clear()
    fake.fail_next = True
    first = threaded.persist(None, [entry(1)])
    fake.gate.set()

    with pytest.raises(OSError, match="simulated"):
        yield wait(first)
    yield wait(threaded.close())


@pytest_twisted.inlineCallbacks
def test_close_waits_for_the_fsync_in_flight_then_refuses_work():
    fake = GatedStorage()
    threaded = ThreadedStorage(fake, get_reactor())
    fake.gate.clear()
    pending = threaded.persist(HardState(1, None), [entry(1)])
    closing = threaded.close()
    assert not closing.called

    fake.gate.set()
    yield wait(closing)

    assert pending.called
    assert fake.durable_last() == 1
    with pytest.raises(StorageClosed):
        yield threaded.persist(None, [entry(2)])
    yield wait(threaded.close())  # idempotent


@pytest_twisted.inlineCallbacks
def test_calls_and_compaction_keep_queue_order_on_the_worker(tmp_path):
    storage = DiskStorage.open(tmp_path)
    threaded = ThreadedStorage(storage, get_reactor())
    yield wait(threaded.load())
    threaded.persist(None, entries(1, 20))
    compacted = threaded.compact(SnapshotMeta(10, 1))
    last = threaded.call(lambda: (storage.last_index, threading.current_thread().name))

    index, thread = yield wait(last)
    yield wait(compacted)
    yield wait(threaded.close())

    assert index == 20
    assert thread != threading.current_thread().name
    assert load_state(tmp_path).entries == entries(11, 20)


def test_a_twisted_logger_can_be_the_storage_logger(tmp_path):
    from twisted.logger import Logger

    events = []
    log = Logger(namespace="leifdb.storage", observer=events.append)
    storage = DiskStorage.open(tmp_path, logger=log)
    storage.load()
    storage.append(entries(1, 3))
    storage.sync()
    segment = storage.segment_paths()[-1]
    storage.close()
    with open(segment, "ab") as f:
        f.write(b"\x01\x02")

    reopened = DiskStorage.open(tmp_path, logger=log)
    reopened.load()
    reopened.close()

    assert len(events) == 1
    assert events[0]["path"] == str(segment)
    assert events[0]["log_level"].name == "warn"
