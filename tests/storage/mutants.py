"""Rules the storage relies on, each broken on purpose by one mutant, for proving the
storage tests catch every one of them (tests/storage/test_storage_mutants.py).

A mutant is a deliberately broken copy of one storage function or method (or a checksum
switched off), installed with ``monkeypatch.setattr(target, attribute, replacement)``;
``check`` names the check in ``tests.storage.rule_checks`` that must fail with it.
Missing fsyncs of files and directories are planted elsewhere, through the file system
(``PLANTED`` in tests/storage/test_power_loss.py); the mutants here break what a file
system cannot: the storage thread's acknowledgements, the order of writes, the torn-tail
rule and the checksums.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from leifdb.raft.messages import SnapshotMeta
from leifdb.storage import _files, disklog, records, snapshots
from leifdb.storage._files import write_all
from leifdb.storage.disklog import DiskStorage, _encode_boundary
from leifdb.storage.fs import FileSystem
from leifdb.storage.threaded import StorageQueue, _Call, _Persist

__all__ = ["STORAGE_MUTANTS", "StorageMutant"]


# ---------------------------------------------------------------- the storage thread


def _write_batch_without_sync(self: StorageQueue, batch: list[_Persist]) -> None:
    """The batch is staged and reported durable without the sync."""
    for item in batch:
        if item.entries:
            self.storage.append(item.entries)
        if item.hard_state is not None:
            self.storage.set_hard_state(item.hard_state)
    self.batches += 1


def _write_batch_hard_state_after_sync(self: StorageQueue, batch: list[_Persist]) -> None:
    """Entries are synced, but the hard states are staged after the sync (so they become
    durable only with the next batch), and the batch is reported durable."""
    for item in batch:
        if item.entries:
            self.storage.append(item.entries)
    self.storage.sync()
    for item in batch:
        if item.hard_state is not None:
            self.storage.set_hard_state(item.hard_state)
    self.batches += 1


def _kick_acknowledging_first(self: StorageQueue) -> None:
    """A persist batch is reported durable as soon as it is handed to the worker."""
    if self._busy or self._firing or not self._queue:
        return
    self._busy = True
    head = self._queue[0]
    if isinstance(head, _Persist):
        batch: list[_Persist] = []
        while self._queue and isinstance(self._queue[0], _Persist):
            batch.append(self._queue.popleft())  # type: ignore[arg-type]
        work = self._run(self._write_batch, batch)
        for item in batch:
            item.deferred.callback(None)
        work.addBoth(self._finished, [])
    else:
        self._queue.popleft()
        work = self._run(head.function, *head.args)
        work.addBoth(self._finished, [head.deferred])


_REAL_FINISHED = StorageQueue._finished


def _finished_acknowledging_the_queue(self: StorageQueue, result: Any, waiters: list) -> None:
    """Persists that queued while the worker was busy are reported durable with the
    batch in flight, as if its sync had covered them."""
    waiters = list(waiters)
    while self._queue and isinstance(self._queue[0], _Persist):
        waiters.append(self._queue.popleft().deferred)  # type: ignore[union-attr]
    _REAL_FINISHED(self, result, waiters)


def _call_jumping_the_queue(self: StorageQueue, function: Callable[..., Any], *args: Any) -> Any:
    """Blocking work (a compaction, a snapshot write) goes ahead of the persists already
    queued, so it sees (and may act on) a log that lacks them."""
    d = _REAL_CALL(self, function, *args)
    if self._queue and isinstance(self._queue[-1], _Call) and self._queue[-1].deferred is d:
        self._queue.appendleft(self._queue.pop())
    return d


_REAL_CALL = StorageQueue.call


# ---------------------------------------------------------------- the log's writes


def _write_rolling_without_fsync(self: DiskStorage, entries: list) -> None:
    """``DiskStorage._write`` that rolls to a new segment without syncing the old one."""
    created = False
    buffer = bytearray()
    seg = self._segments[-1] if self._segments else None
    for entry in entries:
        record = records.encode(entry)
        if seg is None or (seg.offsets and seg.size + len(record) > self.segment_size):
            if seg is not None:
                self._flush(buffer, durable=False)
            seg = self._create_segment(entry.index)
            buffer += records.SEGMENT_MAGIC
            seg.size = len(records.SEGMENT_MAGIC)
            created = True
        seg.offsets.append(seg.size)
        seg.terms.append(entry.term)
        seg.size += len(record)
        buffer += record
    self._flush(buffer, durable=True)
    if created:
        self.fs.fsync_dir(self.data_dir.log_dir)
    self.stats.entries_written += len(entries)


def _compact_deleting_first(self: DiskStorage, meta: SnapshotMeta) -> None:
    """``DiskStorage.compact`` that deletes the covered segments before the new boundary
    is durable."""
    self._check_usable()
    self.sync()
    current = self._snapshot
    index = meta.last_included_index
    if index < current.last_included_index or meta == current:
        return
    if self._term_at(index) != meta.last_included_term:
        self._remove_segments_from_end(0)
    removed = 0
    while self._segments and self._segments[0].last_index <= index:
        if len(self._segments) == 1:
            self._close_active()
        seg = self._segments.pop(0)
        self._firsts.pop(0)
        self.fs.unlink(seg.path)
        removed += 1
    if removed:
        self.fs.fsync_dir(self.data_dir.log_dir)
    disklog.write_state_file(self.fs, self._boundary_path, disklog._BOUNDARY_MAGIC, _encode_boundary(meta))
    self._snapshot = meta


def _truncate_without_fsync(self: DiskStorage, index: int) -> None:
    """``DiskStorage._truncate`` whose truncation is not synced before new records land."""
    self._remove_segments_from_end(index)
    if self._segments and self._segments[-1].last_index >= index:
        seg = self._segments[-1]
        keep = index - seg.first_index
        offset = seg.offsets[keep]
        self.fs.ftruncate(self._active_fd, offset)
        del seg.offsets[keep:]
        del seg.terms[keep:]
        seg.size = offset


def _write_state_file_in_place(fs: FileSystem, path: Any, magic: bytes, payload: bytes) -> None:
    """The hard state and the snapshot boundary overwritten in place (truncate, write,
    fsync) instead of written to a temporary file and renamed over the old one."""
    fd = fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fs, fd, _files._ENVELOPE.pack(magic, len(payload), _files.crc32c(payload)) + payload)
        fs.fsync(fd)
    finally:
        fs.close(fd)
    fs.fsync_dir(path.parent)


def _fail_forgetting(self: DiskStorage, exc: OSError) -> None:
    """An I/O error is raised but not remembered: the next call may sync again (and a
    retried fsync can report success for data the kernel already dropped)."""
    self._close_active()
    raise disklog.StorageFailed(f"log write failed: {exc}") from exc


# ---------------------------------------------------------------- reading back


def _scan_calling_all_damage_torn(raw: bytes) -> records.Scan:
    """Every defect counts as a torn write, so damage before the tail is silently cut."""
    result = _REAL_SCAN(raw)
    if result.problem is not None:
        result.torn = True
    return result


def _scan_calling_nothing_torn(raw: bytes) -> records.Scan:
    """No defect counts as a torn write, so the tail of a crash mid-write is refused."""
    result = _REAL_SCAN(raw)
    result.torn = False
    return result


_REAL_SCAN = records.scan


def _no_checksum(data: Any, crc: int = 0) -> int:
    """A checksum that is the same for every input: nothing is really verified."""
    return 0


def _payload_always_matches(self: snapshots.SnapshotStore, path: Any, meta: SnapshotMeta) -> bool:
    """A snapshot file is trusted without reading its payload back."""
    return self.fs.exists(path)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class StorageMutant:
    """``setattr(target, attribute, replacement)`` breaks ``rule`` (enforced at
    ``where``); ``check`` (a function of ``tests.storage.rule_checks``) must fail."""

    name: str
    rule: str
    where: str
    target: Any
    attribute: str
    replacement: Callable[..., Any]
    check: str


STORAGE_MUTANTS = (
    StorageMutant(
        "persist_acknowledged_without_sync",
        "a persist is reported durable only after the sync of its batch returned",
        "threaded.py: StorageQueue._write_batch",
        StorageQueue, "_write_batch", _write_batch_without_sync, "queue_acknowledges_only_durable_state",
    ),
    StorageMutant(
        "hard_state_staged_after_sync",
        "a persist's hard state is part of the sync that reports it durable",
        "threaded.py: StorageQueue._write_batch",
        StorageQueue, "_write_batch", _write_batch_hard_state_after_sync,
        "queue_acknowledges_only_durable_state",
    ),
    StorageMutant(
        "persist_acknowledged_before_the_worker_ran",
        "a persist's Deferred fires only after the worker's sync, never on hand-off",
        "threaded.py: StorageQueue._kick/_finished",
        StorageQueue, "_kick", _kick_acknowledging_first, "queue_acknowledges_only_durable_state",
    ),
    StorageMutant(
        "queued_persists_acknowledged_with_the_batch_in_flight",
        "persists queued during an fsync wait for the next sync (group commit)",
        "threaded.py: StorageQueue._finished/_kick",
        StorageQueue, "_finished", _finished_acknowledging_the_queue,
        "queue_acknowledges_only_durable_state",
    ),
    StorageMutant(
        "call_jumps_the_queue",
        "storage work keeps its place in one FIFO queue (a compaction runs after the persists before it)",
        "threaded.py: StorageQueue.call/_kick",
        StorageQueue, "call", _call_jumping_the_queue, "queue_keeps_call_order",
    ),
    StorageMutant(
        "segment_rolled_without_fsync",
        "a full segment is fdatasynced before the next one is created",
        "disklog.py: DiskStorage._write (_flush(durable=True) before _create_segment)",
        DiskStorage, "_write", _write_rolling_without_fsync, "power_cut_at_every_call",
    ),
    StorageMutant(
        "segments_deleted_before_boundary_durable",
        "compaction makes the new boundary durable before it deletes the segments it covers",
        "disklog.py: DiskStorage.compact",
        DiskStorage, "compact", _compact_deleting_first, "power_cut_at_every_call",
    ),
    StorageMutant(
        "truncation_not_synced",
        "a conflict truncation is fdatasynced before new records are written (they may go to a new segment)",
        "disklog.py: DiskStorage._truncate",
        DiskStorage, "_truncate", _truncate_without_fsync, "power_cut_at_every_call",
    ),
    StorageMutant(
        "state_file_overwritten_in_place",
        "the hard state and the boundary are replaced atomically (temp file, fsync, rename, dir fsync)",
        "_files.py: atomic_write via write_state_file",
        disklog, "write_state_file", _write_state_file_in_place, "power_cut_at_every_call",
    ),
    StorageMutant(
        "io_error_not_remembered",
        "after an I/O error the storage refuses every further call",
        "disklog.py: DiskStorage._fail/_check_open",
        DiskStorage, "_fail", _fail_forgetting, "failed_storage_stays_failed",
    ),
    StorageMutant(
        "damage_anywhere_repaired_as_torn",
        "only a torn tail of the newest segment is cut; any other damage is refused",
        "records.py: scan (torn); disklog.py: DiskStorage._recover_segments",
        records, "scan", _scan_calling_all_damage_torn, "damage_is_refused",
    ),
    StorageMutant(
        "torn_tail_refused",
        "a torn tail (a crash mid-write) is cut, not refused",
        "records.py: scan (torn); disklog.py: DiskStorage._repair_torn_tail",
        records, "scan", _scan_calling_nothing_torn, "torn_tail_is_cut",
    ),
    StorageMutant(
        "log_record_checksums_off",
        "every log record's header and payload checksums are verified on read",
        "records.py: encode/scan (crc32c)",
        records, "crc32c", _no_checksum, "damage_is_refused",
    ),
    StorageMutant(
        "state_file_checksum_off",
        "the hard state's and the boundary's checksums are verified on read",
        "_files.py: read_state_file (crc32c)",
        _files, "crc32c", _no_checksum, "damaged_hard_state_is_refused",
    ),
    StorageMutant(
        "snapshot_payload_not_verified",
        "a snapshot (saved or received) is used only if its size and checksum verify",
        "snapshots.py: SnapshotStore._payload_matches (latest, finish_receive)",
        snapshots.SnapshotStore, "_payload_matches", _payload_always_matches,
        "damaged_snapshots_are_refused",
    ),
)
