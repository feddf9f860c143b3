"""``KVService.snapshot`` and ``leifdb.service.backup``: the bytes are the store's own
snapshot at one applied index, taken after the read barrier, encoded off the reactor
thread from a copy that later writes do not change, one at a time."""

from __future__ import annotations

import io
import threading

import pytest
import pytest_twisted
from crc32c import crc32c
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from leifdb.errors import NotLeaderError, Unavailable
from leifdb.kv import snapshot
from leifdb.kv.commands import LeaseGrant, Put
from leifdb.kv.store import KVStore
from leifdb.raft.messages import Entry, EntryType, Member, ReadState
from leifdb.service.api import CONSISTENCY_STALE
from leifdb.service.backup import MAX_WAITING, Backup, SnapshotFile, membership_metadata
from leifdb.wire import decode_membership
from tests.service.test_kvservice import _commit, _pending, _result, _service


def _store(puts: int) -> KVStore:
    kv = KVStore()
    kv.apply(1, LeaseGrant(5000))
    for i in range(2, puts + 2):
        kv.apply(i, Put(f"k{i % 7}", f"v{i}", lease=1 if i % 3 == 0 else 0))
    return kv


def _bytes(taken: SnapshotFile) -> bytes:
    data = taken.file.read()
    taken.close()
    return data


class ManualRunner:
    """Runs the encoding only when the test says so (a worker thread that is slow)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Deferred, tuple]] = []

    def __call__(self, function, *args) -> Deferred:
        d: Deferred = Deferred()
        self.calls.append((d, (function, *args)))
        return d

    def run_next(self) -> None:
        d, (function, *args) = self.calls.pop(0)
        d.callback(function(*args))


def test_the_bytes_are_the_stores_own_snapshot_with_their_crc32c_and_size():
    kv = _store(40)
    metadata = membership_metadata([Member("n1", "h:1", "h:2"), Member("n2", "h:3")])
    expected = io.BytesIO()
    kv.write_snapshot(expected, metadata)

    taken = _result(Backup(Clock()).take(lambda: kv, lambda: metadata))

    data = _bytes(taken)
    assert data == expected.getvalue()
    assert (taken.size, taken.crc32c) == (len(data), crc32c(data))
    assert (taken.revision, taken.keys, taken.leases) == (41, 7, 1)
    restored, meta = KVStore.read_snapshot(io.BytesIO(data))
    assert restored.range("") == kv.range("") and restored.leases() == kv.leases()
    assert [m.id for m in decode_membership(meta)] == ["n1", "n2"]


def test_writes_applied_while_the_copy_is_encoded_are_not_in_it():
    kv = _store(10)
    runner = ManualRunner()
    d = Backup(Clock(), run=runner).take(lambda: kv, lambda: b"")
    kv.apply(100, Put("k1", "later"))
    kv.apply(101, Put("new", "later"))
    runner.run_next()

    restored, _ = KVStore.read_snapshot(io.BytesIO(_bytes(_result(d))))
    assert restored.applied_index == 11
    assert restored.get("new") is None and restored.get("k1").value != "later"


def test_snapshots_are_taken_one_at_a_time_and_a_crowd_is_refused():
    kv = _store(3)
    runner = ManualRunner()
    backup = Backup(Clock(), run=runner)
    first = backup.take(lambda: kv, lambda: b"")
    waiting = [backup.take(lambda: kv, lambda: b"") for _ in range(MAX_WAITING)]
    refused = backup.take(lambda: kv, lambda: b"")
    assert isinstance(_result(refused), Unavailable)
    assert len(runner.calls) == 1  # the others wait for the first
    kv.apply(50, Put("k", "after the first copy"))
    runner.run_next()
    assert _result(first).revision == 4
    assert len(runner.calls) == 1  # the next one's copy is taken only at its turn
    runner.run_next()
    assert _result(waiting[0]).revision == 50
    while runner.calls:
        runner.run_next()
    assert all(_result(d).revision == 50 for d in waiting)


def test_a_failed_encoding_frees_the_turn(tmp_path):
    kv = _store(3)
    where = tmp_path / "tmp"
    backup = Backup(Clock(), temp_dir=str(where))
    assert isinstance(_result(backup.take(lambda: kv, lambda: b"")), OSError)  # no such dir
    where.mkdir()
    assert _result(backup.take(lambda: kv, lambda: b"")).revision == 4


@pytest_twisted.ensureDeferred
async def test_the_encoding_runs_on_a_worker_thread_of_the_reactor(monkeypatch):
    from twisted.internet import reactor

    kv = _store(3)
    threads: list[threading.Thread] = []
    dump = snapshot.dump

    def metadata() -> bytes:
        threads.append(threading.current_thread())  # called with the copy, on the reactor
        return b""

    def watched_dump(*args, **kwargs):
        threads.append(threading.current_thread())
        return dump(*args, **kwargs)

    monkeypatch.setattr(snapshot, "dump", watched_dump)
    taken = await Backup(reactor).take(lambda: kv, metadata)
    taken.close()
    assert threads[0] is threading.main_thread() and threads[1] is not threading.main_thread()


# -- KVService.snapshot


def test_a_snapshot_waits_for_the_read_barrier_like_a_linearizable_read():
    _, node, service = _service()
    for i in range(3):
        service.put(f"k{i}", "v")
    _commit(service, node)
    service.put("late", "v")  # proposed, not yet applied
    d = service.snapshot()
    assert node.reads == 1 and _pending(d)
    service.read_states([ReadState(1, 4)], None)
    assert _pending(d)  # confirmed at 4, applied is 3
    _commit(service, node)
    taken = _result(d)
    restored, meta = KVStore.read_snapshot(io.BytesIO(_bytes(taken)))
    assert taken.revision == restored.applied_index == 4 and restored.get("late") is not None
    assert [m.id for m in decode_membership(meta)] == ["n1"]


def test_a_stale_snapshot_is_taken_at_once_and_a_refused_barrier_refuses_it():
    _, node, service = _service()
    service.apply([Entry(1, 1, EntryType.NOOP, b"")])
    assert _result(service.snapshot(CONSISTENCY_STALE)).revision == 1
    assert node.reads == 0
    node.leading = False
    assert isinstance(_result(service.snapshot()), NotLeaderError)


def test_a_snapshot_after_an_installed_snapshot_copies_the_installed_state():
    _, _, service = _service()
    service.install_snapshot(_store(5))
    assert _result(service.snapshot(CONSISTENCY_STALE)).revision == 6


@pytest.mark.parametrize("members", [[], [Member("", "bad")]])
def test_a_membership_that_cannot_be_encoded_is_left_out(members):
    assert membership_metadata(members) == b""
