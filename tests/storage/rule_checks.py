"""Checks of the storage rules, each a function that raises ``AssertionError`` when the
rule is broken (``tests.storage.mutants`` names which check catches which mutant;
tests/storage/test_storage_mutants.py runs them, with and without the mutants).

Everything runs on ``SimFileSystem``: "durable" means what a power cut would keep.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from pathlib import PurePosixPath
from typing import Any, Callable

from twisted.internet.defer import Deferred

from leifdb.raft.core import PersistentState
from leifdb.raft.messages import Entry, HardState, SnapshotMeta
from leifdb.storage import DiskStorage, SnapshotStore, StorageCorruption, crc32c
from leifdb.storage.errors import StorageFailed
from leifdb.storage.simfs import SimFileSystem
from leifdb.storage.threaded import StorageQueue

from tests.storage.helpers import entries
from tests.storage.power_harness import Append, Fault, Install, Restart, Snapshot, Vote, calls_of, run_history

__all__ = ["CHECKS", "ManualQueue", "clone_durable"]

ROOT = PurePosixPath("/srv/node")
SEGMENT = 4096
RECORD_HEADER = 12 + 17  # framing header, then u64 index, u64 term, u8 type
SECTOR = 512


# ---------------------------------------------------------------- helpers


def clone_durable(fs: SimFileSystem) -> SimFileSystem:
    """A new file system holding exactly what a power cut of ``fs`` would keep now (``fs``
    itself is untouched, so a history can go on after the look)."""
    clone = SimFileSystem()
    for path, content in sorted(fs.tree(durable=True).items()):
        if content is None:
            clone.mkdir(path)
        else:
            fd = clone.open(path, os.O_WRONLY | os.O_CREAT)
            clone.write(fd, content)
            clone.fsync(fd)
            clone.close(fd)
    for path, content in fs.tree(durable=True).items():
        if content is None:
            clone.fsync_dir(path)
    clone.fsync_dir("/")
    return clone


def recover(fs: SimFileSystem) -> PersistentState:
    disk = DiskStorage.open(ROOT, segment_size=SEGMENT, fs=fs)
    try:
        return disk.load()
    finally:
        disk.close()


def _fresh(count: int = 40, size: int = 200) -> tuple[SimFileSystem, DiskStorage]:
    """A log of ``count`` entries over several segments, synced."""
    fs = SimFileSystem()
    disk = DiskStorage.open(ROOT, segment_size=SEGMENT, fs=fs)
    disk.load()
    disk.append(entries(1, count, size=size))
    disk.sync()
    return fs, disk


def _overwrite(fs: SimFileSystem, path: Any, offset: int, data: bytes) -> None:
    fd = fs.open(path, os.O_WRONLY)
    try:
        fs.pwrite(fd, data, offset)
        fs.fsync(fd)
    finally:
        fs.close(fd)


def _flip(fs: SimFileSystem, path: Any, offset: int) -> None:
    byte = fs.read_file(path)[offset]
    _overwrite(fs, path, offset, bytes([byte ^ 0x20]))


class ManualQueue(StorageQueue):
    """The storage thread's queue with a worker the check runs by hand, one job per
    ``step()``, so it can look at the disk between any two events."""

    def __init__(self, storage: Any) -> None:
        super().__init__(storage)
        self.jobs: deque[tuple[Callable[..., Any], tuple, Deferred]] = deque()

    def _run(self, function: Callable[..., Any], *args: Any) -> Deferred:
        d: Deferred = Deferred()
        self.jobs.append((function, args, d))
        return d

    def step(self) -> bool:
        if not self.jobs:
            return False
        function, args, d = self.jobs.popleft()
        try:
            result = function(*args)
        except Exception as exc:  # the storage's error goes to the waiters
            d.errback(exc)
        else:
            d.callback(result)
        return True


# ---------------------------------------------------------------- the checks


def queue_acknowledges_only_durable_state() -> None:
    """Through ``StorageQueue`` over ``DiskStorage``: persists issued while the worker is
    busy and while it is idle, with and without hard states. After every event (a call,
    a worker step) every persist whose Deferred has fired must be durable: a power cut
    then recovers each of its entries, and its hard state or one staged after it."""
    fs = SimFileSystem()
    disk = DiskStorage.open(ROOT, segment_size=SEGMENT, fs=fs)
    disk.load()
    queue = ManualQueue(disk)
    promised_entries: dict[int, Entry] = {}
    staged_hard: list[HardState] = []
    promised_hard: list[int] = []  # positions in staged_hard

    def persist(hard: HardState | None, new: list[Entry]) -> None:
        if hard is not None:
            staged_hard.append(hard)
        position = len(staged_hard) - 1 if hard is not None else None
        if new:  # a conflicting suffix may go from now on (it was never committed)
            for index in [i for i in promised_entries if i >= new[0].index]:
                del promised_entries[index]

        def fired(_: object) -> None:
            promised_entries.update((e.index, e) for e in new)
            if position is not None:
                promised_hard.append(position)

        queue.persist(hard, new).addCallback(fired)
        look(f"after persist({hard}, {len(new)} entries)")

    def look(when: str) -> None:
        state = recover(clone_durable(fs))
        durable = {e.index: e for e in state.entries}
        for index, want in sorted(promised_entries.items()):
            if durable.get(index) != want:
                raise AssertionError(f"{when}: entry {index} was reported durable, a power cut loses it")
        if promised_hard:
            found = [n for n, hs in enumerate(staged_hard) if hs == state.hard_state]
            if not found or max(found) < max(promised_hard):
                raise AssertionError(
                    f"{when}: hard state {staged_hard[max(promised_hard)]} was reported durable, "
                    f"a power cut leaves {state.hard_state}"
                )

    def work(steps: int = 1) -> None:
        for _ in range(steps):
            queue.step()
            look("after a worker step")

    persist(HardState(1, "n1"), entries(1, 8, term=1, size=300))
    persist(None, entries(9, 12, term=1, size=300))  # queued behind the first batch
    persist(HardState(2, None), [])
    work()
    persist(None, entries(13, 20, term=2, size=300))
    work(2)
    persist(HardState(3, "n3"), entries(10, 14, term=3, size=120))  # conflict truncation
    persist(None, entries(15, 16, term=3))
    persist(HardState(4, None), [])
    work(3)
    if queue.jobs or sorted(promised_entries) != list(range(1, 17)) or max(promised_hard) != len(staged_hard) - 1:
        raise AssertionError("not every persist fired: the check itself went wrong")


def queue_keeps_call_order() -> None:
    """Persists, a blocking call and a compaction queued while the worker is busy run in
    the order they were asked for: the call sees every entry persisted before it, the
    compaction keeps those persisted after it."""
    fs = SimFileSystem()
    disk = DiskStorage.open(ROOT, segment_size=SEGMENT, fs=fs)
    disk.load()
    queue = ManualQueue(disk)
    queue.persist(HardState(1, None), entries(1, 5))
    queue.persist(None, entries(6, 10))
    seen: list[int] = []
    queue.call(lambda: seen.append(disk.last_index))
    queue.compact(SnapshotMeta(8, 1))
    queue.persist(None, entries(11, 12))
    while queue.step():
        pass
    if seen != [10]:
        raise AssertionError(f"a call queued after entries 1..10 ran when the log ended at {seen}")
    state = recover(clone_durable(fs))
    if state.snapshot.last_included_index != 8 or [e.index for e in state.entries] != [9, 10, 11, 12]:
        raise AssertionError(f"compaction to 8 between persists left {state.snapshot} and {len(state.entries)} entries")


# A history that fills a segment, truncates a conflicting suffix inside it in a new term
# with records too large for what is left of it (they roll to a new segment), votes,
# compacts whole segments away after a snapshot, installs a leader's snapshot that drops
# the log and one that keeps it, and is killed once.
EVERY_CALL_HISTORY = (
    Append(0, 9, 380, False),
    Append(2, 2, 1300, False),
    Vote(True, "n2"),
    Append(3, 10, 300, False),
    Snapshot(14, 200),
    Append(0, 10, 350, False),
    Install(0, 2, False, 150),
    Append(0, 6, 120, True),
    Restart(kill=True),
    Install(3, 0, True, 90),
)


def power_cut_at_every_call() -> None:
    """``EVERY_CALL_HISTORY`` cut by a power failure before each of its mutating file-system
    calls (keeping nothing unsynced, or a torn prefix of it), then by a kill before each
    sync: recovery must keep everything reported durable (the order of writes, syncs,
    renames and removals, one call at a time)."""
    history = list(EVERY_CALL_HISTORY)
    mutations, syncs = calls_of(history)
    for at in range(mutations + 1):
        for keep in (False, True):
            run_history(history, [Fault(at, keep_unsynced=keep, seed=at)], SimFileSystem())
    for at in range(syncs + 1):
        run_history(history, [Fault(at, on_sync=True, power=False)], SimFileSystem())


def failed_storage_stays_failed() -> None:
    """An fdatasync fails (EIO): that sync and every later call raise ``StorageFailed``."""

    class FailingOnce(SimFileSystem):
        armed = False

        def fdatasync(self, fd: int) -> None:
            if self.armed:
                self.armed = False
                raise OSError(errno.EIO, "simulated I/O error")
            super().fdatasync(fd)

    fs = FailingOnce()
    disk = DiskStorage.open(ROOT, segment_size=SEGMENT, fs=fs)
    disk.load()
    disk.append(entries(1, 3))
    disk.sync()
    fs.armed = True
    disk.append(entries(4, 6))
    try:
        disk.sync()
    except StorageFailed:
        pass
    else:
        raise AssertionError("a failed fdatasync was not reported")
    for call in (lambda: disk.append(entries(4, 6)), disk.sync):
        try:
            call()
        except StorageFailed:
            continue
        raise AssertionError("the storage accepted work after a failed fdatasync")


def damage_is_refused() -> None:
    """One changed byte in an entry's data, in an older segment or before the tail of the
    newest one, is corruption (``StorageCorruption`` naming the file), never a shorter or
    different log."""
    for where in ("older segment", "newest segment"):
        fs, disk = _fresh()
        segments = disk._segments
        seg = segments[0] if where == "older segment" else segments[-1]
        assert len(segments) >= 3 and len(seg.offsets) >= 3
        _flip(fs, seg.path, seg.offsets[1] + RECORD_HEADER + 5)
        disk.close()
        try:
            state = recover(fs)
        except StorageCorruption as exc:
            if str(seg.path) not in str(exc):
                raise AssertionError(f"the corruption report does not name {seg.path}: {exc}") from None
            continue
        raise AssertionError(
            f"a damaged record in the {where} was accepted: recovery gave entries "
            f"{state.entries[0].index if state.entries else '-'}..{state.entries[-1].index if state.entries else '-'}"
        )


def torn_tail_is_cut() -> None:
    """A crash mid-write leaves the newest segment ending in part of a record, or in
    zeroed sectors past its end: recovery cuts it off and keeps every intact record."""
    written = entries(1, 40, size=200) + entries(41, 41, size=1500)
    for tear in ("cut inside the last record", "zeroed sectors", "partial header"):
        fs, disk = _fresh()
        disk.append(written[-1:])  # a record spanning several sectors
        disk.sync()
        seg = disk._segments[-1]
        path, size = seg.path, seg.size
        disk.close()
        fd = fs.open(path, os.O_WRONLY)
        try:
            if tear == "cut inside the last record":
                fs.ftruncate(fd, seg.offsets[-1] + 20)
                keep = written[:-1]
            elif tear == "zeroed sectors":
                # the last record's sectors after its first one never reached the disk
                # (the file's size did): they read as zeros
                boundary = (seg.offsets[-1] // SECTOR + 1) * SECTOR
                fs.pwrite(fd, bytes(size - boundary), boundary)
                keep = written[:-1]
            else:
                fs.pwrite(fd, b"\x07\x00\x00", size)
                keep = written
            fs.fsync(fd)
        finally:
            fs.close(fd)
        try:
            state = recover(fs)
        except StorageCorruption as exc:
            raise AssertionError(f"a torn tail ({tear}) was refused: {exc}") from None
        if state.entries != keep:
            raise AssertionError(f"a torn tail ({tear}): recovered {len(state.entries)} entries, not {len(keep)}")
        if recover(fs).entries != keep:
            raise AssertionError(f"the repair of a torn tail ({tear}) did not last")


def damaged_hard_state_is_refused() -> None:
    """A changed byte in the hard state file is corruption, never another term or vote."""
    fs, disk = _fresh(3)
    disk.set_hard_state(HardState(5, "n2"))
    disk.sync()
    disk.close()
    path = ROOT / "hardstate"
    raw = fs.read_file(path)
    _flip(fs, path, len(raw) - 1)  # the vote's last character
    try:
        state = recover(fs)
    except StorageCorruption:
        return
    raise AssertionError(f"a damaged hard state was read as {state.hard_state}")


def damaged_snapshots_are_refused() -> None:
    """A saved snapshot whose payload changed is skipped for an older intact one, and a
    received one whose bytes do not match its checksum is refused."""
    fs = SimFileSystem()
    store = SnapshotStore(ROOT / "snap", fs=fs)
    store.save(10, 1, b"a" * 500)
    newest = store.save(20, 2, b"b" * 500)
    store.close()
    path = ROOT / "snap" / f"{20:020d}-{2:020d}.snap"
    _flip(fs, path, len(fs.read_file(path)) - 100)
    found = SnapshotStore(ROOT / "snap", fs=fs).latest()
    if found is None or found[0].last_included_index != 10:
        raise AssertionError(f"a damaged snapshot {newest} was used: latest() gave {found}")
    data = b"c" * 300
    meta = SnapshotMeta(30, 3, crc32c(data), len(data))
    receiver = SnapshotStore(ROOT / "recv", fs=fs)
    receiver.write_chunk(meta, 0, data[:150])
    receiver.write_chunk(meta, 150, b"C" + data[151:])
    if receiver.finish_receive(meta):
        raise AssertionError("a received snapshot that fails its checksum was accepted")


CHECKS: dict[str, Callable[[], None]] = {
    check.__name__: check
    for check in (
        queue_acknowledges_only_durable_state,
        queue_keeps_call_order,
        power_cut_at_every_call,
        failed_storage_stays_failed,
        damage_is_refused,
        torn_tail_is_cut,
        damaged_hard_state_is_refused,
        damaged_snapshots_are_refused,
    )
}
