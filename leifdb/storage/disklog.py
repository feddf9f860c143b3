"""``DiskStorage``: the durable ``LogStorage`` (Raft log, hard state, snapshot boundary).

Writes are staged by ``append``/``set_hard_state`` and made durable together by ``sync``:
every staged record goes out in one ``write`` and one ``fdatasync`` (group commit). A sync
costs more only when it must: a changed term or vote rewrites the hard state file (fsync the
file and the directory), a conflict truncation is fsynced before new records land on top of
it, and rolling to a new segment fsyncs the old one and the directory.

All file-system calls go through ``data_dir.fs`` (a ``leifdb.storage.fs.FileSystem``).

Not thread-safe: one caller at a time (``ThreadedStorage`` runs it on a single worker).
After any I/O error the object refuses further calls (``StorageFailed``); restart instead.
"""

from __future__ import annotations

import bisect
import os
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from leifdb.raft.core import PersistentState
from leifdb.raft.messages import Entry, HardState, SnapshotMeta
from leifdb.storage import records
from leifdb.storage._files import (
    StdlibLogger,
    StorageLogger,
    read_state_file,
    remove_stale_tmp,
    write_all,
    write_state_file,
)
from leifdb.storage.datadir import DataDir
from leifdb.storage.errors import StorageClosed, StorageCorruption, StorageFailed
from leifdb.storage.fs import REAL_FS, FileSystem

DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
SEGMENT_SUFFIX = ".seg"
BOUNDARY_NAME = "snapshot"

_HARD_STATE_MAGIC = b"LEIFHS\x00\x01"
_HARD_STATE = struct.Struct("<QB")
_BOUNDARY_MAGIC = b"LEIFSB\x00\x01"
_BOUNDARY = struct.Struct("<QQIQ")


@dataclass
class StorageStats:
    """Counters for metrics and benchmarks (monotonic over the object's life)."""

    syncs: int = 0
    fsyncs: int = 0
    entries_written: int = 0
    bytes_written: int = 0
    hard_state_writes: int = 0
    segments_created: int = 0
    segments_removed: int = 0


@dataclass
class _Segment:
    """One segment file: its first index, where each record starts and each entry's term."""

    first_index: int
    path: Path
    size: int
    offsets: array = field(default_factory=lambda: array("Q"))
    terms: array = field(default_factory=lambda: array("Q"))

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.offsets) - 1


def segment_name(first_index: int) -> str:
    return f"{first_index:012d}{SEGMENT_SUFFIX}"


class DiskStorage:
    """The Raft log in segment files under ``<data dir>/log``, the hard state in
    ``<data dir>/hardstate`` and the compaction boundary in ``<data dir>/log/snapshot``.

    ``load()`` must be called first; it recovers (truncating a torn tail, raising
    ``StorageCorruption`` on anything else) and returns what the core starts from."""

    def __init__(
        self,
        data_dir: DataDir,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        logger: StorageLogger | None = None,
        owns_data_dir: bool = False,
    ) -> None:
        if segment_size < 4096:
            raise ValueError("segment_size must be at least 4096 bytes")
        self.data_dir = data_dir
        self.fs: FileSystem = data_dir.fs
        self.segment_size = segment_size
        self.stats = StorageStats()
        self._log = logger or StdlibLogger()
        self._owns_data_dir = owns_data_dir
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []
        self._active_fd: int | None = None
        self._snapshot = SnapshotMeta()
        self._hard = HardState()
        self._staged: list[Entry] = []
        self._truncate_from: int | None = None
        self._staged_hard: HardState | None = None
        self._loaded = False
        self._closed = False
        self._failed: BaseException | None = None

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        logger: StorageLogger | None = None,
        fs: FileSystem | None = None,
    ) -> DiskStorage:
        """Lock the data directory at ``path`` (``DataDirLocked`` if in use) and return a
        storage owning it: ``close()`` releases the lock. ``fs``: the file system to go
        through (``RealFileSystem`` by default; tests pass a ``SimFileSystem``)."""
        return cls(
            DataDir.open(path, fs=fs or REAL_FS),
            segment_size=segment_size,
            logger=logger,
            owns_data_dir=True,
        )

    # ------------------------------------------------------------------ LogStorage

    def load(self) -> PersistentState:
        """Recover the durable state. Anything staged and not synced is forgotten.

        What recovery reads may be only in the page cache (the previous process was killed
        between a write and its sync, or between a rename and the directory's fsync), so
        before returning it makes everything it read durable: the node acts on this state
        (answers votes, acknowledges entries) as if it had always been on disk."""
        self._check_open()
        self._close_active()
        self._segments, self._firsts = [], []
        self._staged, self._truncate_from, self._staged_hard = [], None, None
        self._loaded = False
        fs = self.fs
        log_dir = self.data_dir.log_dir
        remove_stale_tmp(fs, self.data_dir.path)
        remove_stale_tmp(fs, log_dir)
        self._hard = self._read_hard_state()
        self._snapshot = self._read_boundary()
        entries = self._recover_segments()
        try:
            for seg in self._segments[:-1]:
                fd = fs.open(seg.path, os.O_RDONLY)
                try:
                    fs.fdatasync(fd)
                finally:
                    fs.close(fd)
            if self._segments:
                self._open_active()
                fs.fdatasync(self._active_fd)
            fs.fsync_dir(log_dir)  # segment names, the boundary's rename
            fs.fsync_dir(self.data_dir.path)  # the hard state's rename
        except OSError as exc:
            self._fail(exc)
        self.stats.fsyncs += len(self._segments) + 2
        self._loaded = True
        return PersistentState(self._hard, self._snapshot, entries)

    def append(self, entries: Sequence[Entry]) -> None:
        """Stage ``entries`` (consecutive indexes, non-decreasing terms). If the first index
        is not past the last stored or staged one, the suffix from it is dropped first
        (conflict truncation, durable at the next ``sync``). Entries at or below the
        snapshot boundary are ignored: the snapshot already holds them."""
        self._check_usable()
        boundary = self._snapshot.last_included_index
        entries = [e for e in entries if e.index > boundary]
        if not entries:
            return
        for before, after in zip(entries, entries[1:]):
            if after.index != before.index + 1 or after.term < before.term:
                raise ValueError(f"entries {before.index} and {after.index} do not follow on")
        first = entries[0]
        last = self._staged[-1].index if self._staged else self._effective_last()
        if first.index > last + 1:
            raise ValueError(f"append at {first.index} leaves a gap after index {last}")
        previous_term = self._term_at(first.index - 1)
        if previous_term is not None and first.term < previous_term:
            raise ValueError(
                f"entry {first.index} has term {first.term}, below its predecessor's "
                f"{previous_term}"
            )
        if self._staged and first.index > self._staged[0].index:
            del self._staged[first.index - self._staged[0].index :]
        else:
            self._staged = []
            if first.index <= self._effective_last():
                self._truncate_from = first.index
        self._staged.extend(entries)

    def set_hard_state(self, hard_state: HardState) -> None:
        """Stage term and vote (``commit_index`` is not stored: the core recomputes it)."""
        self._check_usable()
        self._staged_hard = hard_state

    def sync(self) -> None:
        """Make everything staged durable: the hard state (the core stages it only when term
        or vote changed),
        then any truncation, then all staged records with one write and one fdatasync."""
        self._check_usable()
        try:
            if self._staged_hard is not None:
                hard, self._staged_hard = self._staged_hard, None
                self._write_hard_state(hard)
            if self._truncate_from is not None:
                self._truncate(self._truncate_from)
                self._truncate_from = None
            if self._staged:
                staged, self._staged = self._staged, []
                self._write(staged)
        except OSError as exc:
            self._fail(exc)
        self.stats.syncs += 1

    def compact(self, meta: SnapshotMeta) -> None:
        """Record that the snapshot ``meta`` is durable and delete log segments it covers
        entirely. Staged writes are synced first. The log after the snapshot is kept only
        if the stored entry at ``meta.last_included_index`` has ``meta``'s term; otherwise
        the whole log is dropped (Raft's InstallSnapshot rule). Older snapshots are ignored."""
        self._check_usable()
        self.sync()
        current = self._snapshot
        index = meta.last_included_index
        if index < current.last_included_index or meta == current:
            return
        try:
            if self._term_at(index) != meta.last_included_term:
                self._remove_segments_from_end(0)
            write_state_file(
                self.fs, self._boundary_path, _BOUNDARY_MAGIC, _encode_boundary(meta)
            )
            self.stats.fsyncs += 2
            self._snapshot = meta
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
                self.stats.fsyncs += 1
                self.stats.segments_removed += removed
        except OSError as exc:
            self._fail(exc)

    def close(self) -> None:
        """Close files and release the data directory if this object owns it. Staged
        writes that were not synced are dropped. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close_active()
        if self._owns_data_dir:
            self.data_dir.close()

    # ------------------------------------------------------------------ introspection

    @property
    def snapshot(self) -> SnapshotMeta:
        return self._snapshot

    @property
    def first_index(self) -> int:
        """The first index after the snapshot boundary (may be past ``last_index``)."""
        return self._snapshot.last_included_index + 1

    @property
    def last_index(self) -> int:
        """The last durable index (the boundary when the log is empty)."""
        return self._durable_last()

    def segment_paths(self) -> list[Path]:
        return [seg.path for seg in self._segments]

    def log_bytes(self) -> int:
        """Bytes of log on disk (segment files)."""
        return sum(seg.size for seg in self._segments)

    # ------------------------------------------------------------------ recovery

    def _read_hard_state(self) -> HardState:
        path = self.data_dir.hard_state_path
        payload = read_state_file(self.fs, path, _HARD_STATE_MAGIC)
        if payload is None:
            return HardState()
        try:
            term, has_vote = _HARD_STATE.unpack_from(payload)
            vote = payload[_HARD_STATE.size :].decode("utf-8") if has_vote else None
        except (struct.error, UnicodeDecodeError) as exc:
            raise StorageCorruption(path, 16, f"undecodable hard state: {exc}") from exc
        return HardState(term, vote)

    def _read_boundary(self) -> SnapshotMeta:
        payload = read_state_file(self.fs, self._boundary_path, _BOUNDARY_MAGIC)
        if payload is None:
            return SnapshotMeta()
        if len(payload) != _BOUNDARY.size:
            raise StorageCorruption(self._boundary_path, 16, "snapshot boundary has a bad size")
        return SnapshotMeta(*_BOUNDARY.unpack(payload))

    def _recover_segments(self) -> list[Entry]:
        """Scan every segment, check it, repair a torn tail; return entries after the
        boundary. Segments the boundary covers entirely are deleted unread."""
        fs = self.fs
        log_dir = self.data_dir.log_dir
        found = sorted(_list_segments(fs, log_dir))
        boundary = self._snapshot.last_included_index
        covered = []
        while len(found) > 1 and found[1][0] <= boundary + 1:
            covered.append(found.pop(0)[1])
        entries: list[Entry] = []
        expected_index: int | None = None
        last_term = 0
        for position, (first_index, path) in enumerate(found):
            is_last = position == len(found) - 1
            raw = fs.read_file(path)
            result = records.scan(raw)
            if result.problem is not None:
                if not (is_last and result.torn):
                    raise StorageCorruption(path, result.end, result.problem)
                self._repair_torn_tail(path, raw, result)
            if not result.entries:
                if not is_last:
                    raise StorageCorruption(path, 0, "segment holds no records")
                fs.unlink(path)
                fs.fsync_dir(log_dir)
                continue
            if expected_index is None:
                if first_index > boundary + 1:
                    raise StorageCorruption(
                        path, 0, f"log starts at index {first_index}, after the snapshot "
                        f"boundary {boundary} (entries missing)"
                    )
            elif first_index != expected_index:
                raise StorageCorruption(
                    path, 0, f"segment starts at index {first_index}, expected {expected_index}"
                )
            seg = _Segment(first_index, path, result.end, result.offsets)
            for entry, offset in zip(result.entries, result.offsets):
                if entry.index != first_index + len(seg.terms):
                    raise StorageCorruption(
                        path, offset, f"entry index {entry.index}, expected "
                        f"{first_index + len(seg.terms)}"
                    )
                if entry.term < last_term:
                    raise StorageCorruption(
                        path, offset, f"entry {entry.index} has term {entry.term} after term "
                        f"{last_term}"
                    )
                if entry.index == boundary and entry.term != self._snapshot.last_included_term:
                    raise StorageCorruption(
                        path, offset, f"entry {entry.index} has term {entry.term}, the snapshot "
                        f"boundary says {self._snapshot.last_included_term}"
                    )
                last_term = entry.term
                seg.terms.append(entry.term)
                if entry.index > boundary:
                    entries.append(entry)
            expected_index = seg.last_index + 1
            self._segments.append(seg)
        while self._segments and self._segments[0].last_index <= boundary:
            covered.append(self._segments.pop(0).path)
        for path in covered:
            fs.unlink(path)
        if covered:
            fs.fsync_dir(log_dir)
        self._firsts = [seg.first_index for seg in self._segments]
        return entries

    def _repair_torn_tail(self, path: Path, raw: bytes, result: records.Scan) -> None:
        """Cut the newest segment back to its last intact record (a crash mid-write)."""
        keep = result.end if result.entries else 0
        self._log.warn(
            "Truncating torn tail of {path} at byte {offset} ({dropped} bytes dropped: {problem})",
            path=str(path),
            offset=keep,
            dropped=len(raw) - keep,
            problem=result.problem,
        )
        fd = self.fs.open(path, os.O_WRONLY)
        try:
            self.fs.ftruncate(fd, keep)
            self.fs.fsync(fd)
        finally:
            self.fs.close(fd)
        result.end = keep

    # ------------------------------------------------------------------ writing

    def _write(self, entries: list[Entry]) -> None:
        """Append records to the active segment, rolling to new ones at ``segment_size``."""
        created = False
        buffer = bytearray()
        seg = self._segments[-1] if self._segments else None
        for entry in entries:
            record = records.encode(entry)
            if seg is None or (
                seg.offsets and seg.size + len(record) > self.segment_size
            ):
                if seg is not None:
                    self._flush(buffer, durable=True)
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
            self.stats.fsyncs += 1
        self.stats.entries_written += len(entries)

    def _flush(self, buffer: bytearray, *, durable: bool) -> None:
        assert self._active_fd is not None
        if buffer:
            write_all(self.fs, self._active_fd, buffer)
            self.stats.bytes_written += len(buffer)
            buffer.clear()
            if durable:
                self.fs.fdatasync(self._active_fd)
                self.stats.fsyncs += 1

    def _create_segment(self, first_index: int) -> _Segment:
        self._close_active()
        path = self.data_dir.log_dir / segment_name(first_index)
        self._active_fd = self.fs.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644
        )
        seg = _Segment(first_index, path, 0)
        self._segments.append(seg)
        self._firsts.append(first_index)
        self.stats.segments_created += 1
        return seg

    def _truncate(self, index: int) -> None:
        """Durably drop entries from ``index`` on, before anything is written over them."""
        self._remove_segments_from_end(index)
        if self._segments and self._segments[-1].last_index >= index:
            seg = self._segments[-1]
            keep = index - seg.first_index
            offset = seg.offsets[keep]
            assert self._active_fd is not None
            self.fs.ftruncate(self._active_fd, offset)
            self.fs.fdatasync(self._active_fd)
            self.stats.fsyncs += 1
            del seg.offsets[keep:]
            del seg.terms[keep:]
            seg.size = offset

    def _remove_segments_from_end(self, index: int) -> None:
        """Delete segments whose first index is ``>= index``, newest first, each removal
        durable before the next, so a crash leaves a gap-free prefix."""
        while self._segments and self._segments[-1].first_index >= index:
            self._close_active()
            seg = self._segments.pop()
            self._firsts.pop()
            self.fs.unlink(seg.path)
            self.fs.fsync_dir(self.data_dir.log_dir)
            self.stats.fsyncs += 1
            self.stats.segments_removed += 1
        if self._segments and self._active_fd is None:
            self._open_active()

    def _write_hard_state(self, hard: HardState) -> None:
        vote = b"" if hard.voted_for is None else hard.voted_for.encode("utf-8")
        payload = _HARD_STATE.pack(hard.term, hard.voted_for is not None) + vote
        write_state_file(self.fs, self.data_dir.hard_state_path, _HARD_STATE_MAGIC, payload)
        self.stats.fsyncs += 2
        self.stats.hard_state_writes += 1
        self._hard = HardState(hard.term, hard.voted_for)

    # ------------------------------------------------------------------ helpers

    @property
    def _boundary_path(self) -> Path:
        return self.data_dir.log_dir / BOUNDARY_NAME

    def _durable_last(self) -> int:
        if self._segments:
            return self._segments[-1].last_index
        return self._snapshot.last_included_index

    def _effective_last(self) -> int:
        """The last stored index once the pending truncation (if any) is applied."""
        last = self._durable_last()
        if self._truncate_from is not None:
            last = min(last, self._truncate_from - 1)
        return last

    def _term_at(self, index: int) -> int | None:
        """The term of entry ``index`` as staged or stored, None if unknown."""
        if self._staged and index >= self._staged[0].index:
            position = index - self._staged[0].index
            return self._staged[position].term if position < len(self._staged) else None
        if self._truncate_from is not None and index >= self._truncate_from:
            return None
        if index == self._snapshot.last_included_index:
            return self._snapshot.last_included_term
        position = bisect.bisect_right(self._firsts, index) - 1
        if position < 0:
            return None
        seg = self._segments[position]
        offset = index - seg.first_index
        return seg.terms[offset] if offset < len(seg.terms) else None

    def _open_active(self) -> None:
        self._active_fd = self.fs.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)

    def _close_active(self) -> None:
        if self._active_fd is not None:
            fd, self._active_fd = self._active_fd, None
            self.fs.close(fd)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosed("storage is closed")
        if self._failed is not None:
            raise StorageFailed(f"an earlier write failed: {self._failed}")

    def _check_usable(self) -> None:
        self._check_open()
        if not self._loaded:
            raise StorageClosed("call load() before writing")

    def _fail(self, exc: OSError) -> None:
        self._failed = exc
        self._close_active()
        raise StorageFailed(f"log write failed, storage is now read-only: {exc}") from exc


def _encode_boundary(meta: SnapshotMeta) -> bytes:
    return _BOUNDARY.pack(
        meta.last_included_index, meta.last_included_term, meta.checksum, meta.size
    )


def _list_segments(fs: FileSystem, log_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for name in fs.listdir(log_dir):
        if name.endswith(SEGMENT_SUFFIX) and name[: -len(SEGMENT_SUFFIX)].isdigit():
            found.append((int(name[: -len(SEGMENT_SUFFIX)]), log_dir / name))
    return found
