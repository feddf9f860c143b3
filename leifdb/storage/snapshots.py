"""``SnapshotStore``: snapshots on disk, written atomically, verified before use.

A snapshot file ``<snap dir>/<index>-<term>.snap`` is a 40-byte header and the payload::

    8s  magic b"LEIFSNP\\x01"
    u64 last_included_index   u64 last_included_term
    u32 checksum (CRC-32C of the payload)   u64 size (of the payload)
    u32 CRC-32C of the 36 bytes above

A snapshot becomes visible only by ``rename`` after its bytes are fsynced, so a crash leaves
either no file or a complete one; bit rot is caught by the checksum when ``latest()`` first
reads it. Transfers from a leader arrive in chunks into ``<index>-<term>-<crc>-<size>.part``
(header already in place), which survives restarts so a transfer can resume; it is renamed
into place by ``finish_receive`` once size and checksum match.

Memory stays bounded by one chunk (``read_chunk``, ``write_chunk``, verification all stream).
Not thread-safe: use it from one thread at a time (``ThreadedStorage.call``). All
file-system calls go through ``fs`` (a ``leifdb.storage.fs.FileSystem``).
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from leifdb.raft.messages import SnapshotMeta
from leifdb.storage._files import (
    TMP_SUFFIX,
    StdlibLogger,
    StorageLogger,
    make_dirs,
    names_ending,
    remove_stale_tmp,
    write_all,
)
from leifdb.storage.checksum import crc32c
from leifdb.storage.errors import ChunkOffsetError, SnapshotNotFound
from leifdb.storage.fs import REAL_FS, FileSystem

SNAPSHOT_MAGIC = b"LEIFSNP\x01"
_FIELDS = struct.Struct("<8sQQIQ")
HEADER_SIZE = _FIELDS.size + 4
SNAPSHOT_SUFFIX = ".snap"
PARTIAL_SUFFIX = ".part"
CORRUPT_SUFFIX = ".corrupt"
COPY_CHUNK = 1024 * 1024
DEFAULT_RETAIN = 2


def snapshot_name(meta: SnapshotMeta) -> str:
    return f"{meta.last_included_index:020d}-{meta.last_included_term:020d}{SNAPSHOT_SUFFIX}"


def partial_name(meta: SnapshotMeta) -> str:
    return (
        f"{meta.last_included_index:020d}-{meta.last_included_term:020d}-"
        f"{meta.checksum:08x}-{meta.size}{PARTIAL_SUFFIX}"
    )


def encode_header(meta: SnapshotMeta) -> bytes:
    fields = _FIELDS.pack(
        SNAPSHOT_MAGIC,
        meta.last_included_index,
        meta.last_included_term,
        meta.checksum,
        meta.size,
    )
    return fields + crc32c(fields).to_bytes(4, "little")


def decode_header(raw: bytes) -> SnapshotMeta | None:
    """The metadata in a snapshot header, or None if it is not an intact header."""
    if len(raw) < HEADER_SIZE:
        return None
    fields = raw[: _FIELDS.size]
    if crc32c(fields) != int.from_bytes(raw[_FIELDS.size : HEADER_SIZE], "little"):
        return None
    magic, index, term, checksum, size = _FIELDS.unpack(fields)
    if magic != SNAPSHOT_MAGIC:
        return None
    return SnapshotMeta(index, term, checksum, size)


class SnapshotStore:
    """Snapshots in one directory; keeps the newest ``retain`` complete ones.

    The directory is created (durably) if missing, and fsynced on start: a snapshot a
    killed process renamed into place may not be durable yet, and ``latest()`` must
    only return one that will outlive a power cut."""

    def __init__(
        self,
        directory: Path | str,
        *,
        retain: int = DEFAULT_RETAIN,
        logger: StorageLogger | None = None,
        fs: FileSystem | None = None,
    ) -> None:
        if retain < 1:
            raise ValueError("retain must be at least 1")
        self.fs: FileSystem = fs or REAL_FS
        self.directory = Path(directory)
        make_dirs(self.fs, self.directory)
        self.retain = retain
        self._log = logger or StdlibLogger()
        self._verified: dict[Path, tuple[int, int]] = {}
        self._receiving: SnapshotMeta | None = None
        self._receive_fd: int | None = None
        self._receive_offset = 0
        remove_stale_tmp(self.fs, self.directory)
        self.fs.fsync_dir(self.directory)

    # ------------------------------------------------------------------ local snapshots

    def save(
        self,
        last_included_index: int,
        last_included_term: int,
        source: BinaryIO | bytes | Iterable[bytes],
    ) -> SnapshotMeta:
        """Write a snapshot from ``source`` (a readable binary file, bytes, or an iterable
        of byte chunks) and return its metadata (checksum and size computed here). The
        snapshot is durable and the newest when this returns; older ones beyond
        ``retain`` are deleted."""
        placeholder = SnapshotMeta(last_included_index, last_included_term)
        final = self.directory / snapshot_name(placeholder)
        tmp = final.with_name(final.name + TMP_SUFFIX)
        fs = self.fs
        fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fs, fd, bytes(HEADER_SIZE))
            checksum = size = 0
            for chunk in _chunks(source):
                write_all(fs, fd, chunk)
                checksum = crc32c(chunk, checksum)
                size += len(chunk)
            meta = SnapshotMeta(last_included_index, last_included_term, checksum, size)
            header = encode_header(meta)
            if fs.pwrite(fd, header, 0) != len(header):
                raise OSError(f"short write of the header of {tmp}")
            fs.fsync(fd)
        except BaseException:
            fs.close(fd)
            _unlink_missing_ok(fs, tmp)
            raise
        fs.close(fd)
        self._install(tmp, final)
        return meta

    def latest(self) -> tuple[SnapshotMeta, Path] | None:
        """The newest snapshot whose checksum verifies, with its path; None if there is
        none. A snapshot that fails is logged and renamed ``*.corrupt`` (kept for
        inspection, never used or counted again)."""
        for meta, path in self.list():
            if self._verify(meta, path):
                return meta, path
        return None

    def list(self) -> list[tuple[SnapshotMeta, Path]]:
        """Snapshots with an intact header, newest first (payloads not verified here)."""
        found = []
        for path in names_ending(self.fs, self.directory, SNAPSHOT_SUFFIX):
            try:
                meta = decode_header(self._read_at(path, HEADER_SIZE, 0))
            except FileNotFoundError:
                continue
            if meta is None:
                self._quarantine(path, "bad header")
                continue
            found.append((meta, path))
        found.sort(key=lambda item: (item[0].last_included_index, item[0].last_included_term))
        found.reverse()
        return found

    def open(self, meta: SnapshotMeta) -> BinaryIO:
        """A reader of the payload of snapshot ``meta`` (positions count from the payload's
        first byte). Raises ``SnapshotNotFound``."""
        path = self._find(meta)
        return io.BufferedReader(
            _PayloadReader(self.fs, path, meta.size), buffer_size=64 * 1024
        )

    def read_chunk(self, meta: SnapshotMeta, offset: int, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of the payload from ``offset`` (empty at the end): one
        ``InstallSnapshot`` chunk. Raises ``SnapshotNotFound`` or ``ValueError``."""
        if not 0 <= offset <= meta.size or max_bytes < 0:
            raise ValueError(f"offset {offset} is outside snapshot of {meta.size} bytes")
        path = self._find(meta)
        count = min(max_bytes, meta.size - offset)
        data = self._read_at(path, count, HEADER_SIZE + offset)
        if len(data) != count:
            raise SnapshotNotFound(f"snapshot {path} is shorter than its header says")
        return data

    # ------------------------------------------------------------------ receiving

    def begin_receive(self, meta: SnapshotMeta) -> int:
        """Prepare to receive snapshot ``meta``; returns the offset to continue from (0,
        or how much of it an earlier, interrupted transfer left). Partial transfers of
        any other snapshot are discarded."""
        return self._begin(meta, restart=False)

    def received_offset(self, meta: SnapshotMeta) -> int:
        """How many payload bytes of ``meta`` are already here (where to resume)."""
        if self._receiving == meta:
            return self._receive_offset
        try:
            size = self.fs.stat(self.directory / partial_name(meta)).st_size
        except FileNotFoundError:
            return 0
        return max(0, min(size - HEADER_SIZE, meta.size))

    def write_chunk(self, meta: SnapshotMeta, offset: int, data: bytes) -> int:
        """Write a chunk of snapshot ``meta``; returns the next expected offset.

        ``offset`` must be where the partial snapshot ends (``ChunkOffsetError`` with the
        expected offset otherwise), except 0, which restarts the transfer from scratch.
        Chunks are not fsynced one by one: ``finish_receive`` makes the result durable."""
        if offset + len(data) > meta.size:
            raise ValueError(
                f"chunk [{offset}, {offset + len(data)}) runs past the snapshot's {meta.size} bytes"
            )
        if offset == 0:
            self._begin(meta, restart=True)
        else:
            expected = self._begin(meta, restart=False)
            if offset != expected:
                raise ChunkOffsetError(offset, expected)
        assert self._receive_fd is not None
        write_all(self.fs, self._receive_fd, data)
        self._receive_offset += len(data)
        return self._receive_offset

    def finish_receive(self, meta: SnapshotMeta) -> bool:
        """Verify the received snapshot (size and checksum); if it matches, make it
        durable and the newest snapshot and return True. Otherwise delete it and return
        False (the transfer must start over)."""
        path = self.directory / partial_name(meta)
        if self._receiving != meta and not self.fs.exists(path):
            return False
        self._close_receive()
        if not self._payload_matches(path, meta):
            self._log.warn(
                "Discarding received snapshot {index}/{term}: size or checksum mismatch",
                index=meta.last_included_index,
                term=meta.last_included_term,
            )
            _unlink_missing_ok(self.fs, path)
            return False
        fd = self.fs.open(path, os.O_RDONLY)
        try:
            self.fs.fsync(fd)
        finally:
            self.fs.close(fd)
        self._install(path, self.directory / snapshot_name(meta))
        return True

    def abort_receive(self) -> None:
        """Drop any partial transfer."""
        self._close_receive()
        for path in names_ending(self.fs, self.directory, PARTIAL_SUFFIX):
            _unlink_missing_ok(self.fs, path)

    def close(self) -> None:
        """Close the file of an ongoing transfer (its bytes stay for a later resume)."""
        self._close_receive()

    # ------------------------------------------------------------------ internals

    def _begin(self, meta: SnapshotMeta, *, restart: bool) -> int:
        if self._receiving == meta and not (restart and self._receive_offset):
            return self._receive_offset
        self._close_receive()
        path = self.directory / partial_name(meta)
        for other in names_ending(self.fs, self.directory, PARTIAL_SUFFIX):
            if other != path:
                _unlink_missing_ok(self.fs, other)
        try:
            size = self.fs.stat(path).st_size
        except FileNotFoundError:
            size = -1
        if restart or size < HEADER_SIZE:
            self._start_partial(path, meta)
        else:
            self._receive_fd = self.fs.open(path, os.O_WRONLY | os.O_APPEND)
            self._receive_offset = min(size - HEADER_SIZE, meta.size)
        self._receiving = meta
        return self._receive_offset

    def _start_partial(self, path: Path, meta: SnapshotMeta) -> None:
        self._receive_fd = self.fs.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644
        )
        write_all(self.fs, self._receive_fd, encode_header(meta))
        self._receive_offset = 0

    def _close_receive(self) -> None:
        self._receiving = None
        self._receive_offset = 0
        if self._receive_fd is not None:
            fd, self._receive_fd = self._receive_fd, None
            self.fs.close(fd)

    def _install(self, source: Path, final: Path) -> None:
        """Rename a complete, fsynced snapshot into place and prune older ones."""
        self.fs.replace(source, final)
        self.fs.fsync_dir(self.directory)
        st = self.fs.stat(final)
        self._verified[final] = (st.st_size, st.st_mtime_ns)
        self._prune()

    def _prune(self) -> None:
        snapshots = self.list()
        removed = False
        for _, path in snapshots[self.retain :]:
            _unlink_missing_ok(self.fs, path)
            self._verified.pop(path, None)
            removed = True
        if snapshots:
            newest = snapshots[0][0].last_included_index
            for path in names_ending(self.fs, self.directory, PARTIAL_SUFFIX):
                if _leading_int(path.name) <= newest:
                    _unlink_missing_ok(self.fs, path)
                    removed = True
        if removed:
            self.fs.fsync_dir(self.directory)

    def _find(self, meta: SnapshotMeta) -> Path:
        path = self.directory / snapshot_name(meta)
        try:
            found = decode_header(self._read_at(path, HEADER_SIZE, 0))
        except FileNotFoundError:
            raise SnapshotNotFound(f"no snapshot {meta} in {self.directory}") from None
        if found != meta:
            raise SnapshotNotFound(f"snapshot {path} holds {found}, not {meta}")
        return path

    def _verify(self, meta: SnapshotMeta, path: Path) -> bool:
        try:
            st = self.fs.stat(path)
        except FileNotFoundError:
            return False
        if self._verified.get(path) == (st.st_size, st.st_mtime_ns):
            return True
        if not self._payload_matches(path, meta):
            self._quarantine(path, "size or checksum mismatch")
            return False
        self._verified[path] = (st.st_size, st.st_mtime_ns)
        return True

    def _payload_matches(self, path: Path, meta: SnapshotMeta) -> bool:
        """Does the file hold exactly ``meta.size`` payload bytes with ``meta.checksum``?"""
        fs = self.fs
        try:
            fd = fs.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            if decode_header(fs.pread(fd, HEADER_SIZE, 0)) != meta:
                return False
            checksum = size = 0
            while chunk := fs.pread(fd, COPY_CHUNK, HEADER_SIZE + size):
                checksum = crc32c(chunk, checksum)
                size += len(chunk)
        finally:
            fs.close(fd)
        return size == meta.size and checksum == meta.checksum

    def _read_at(self, path: Path, count: int, offset: int) -> bytes:
        """Up to ``count`` bytes of ``path`` from ``offset`` (``FileNotFoundError``)."""
        fd = self.fs.open(path, os.O_RDONLY)
        try:
            return self.fs.pread(fd, count, offset)
        finally:
            self.fs.close(fd)

    def _quarantine(self, path: Path, reason: str) -> None:
        target = path.with_name(path.name + CORRUPT_SUFFIX)
        self._log.warn(
            "Skipping corrupt snapshot {path} ({reason}); renamed to {target}",
            path=str(path),
            reason=reason,
            target=target.name,
        )
        self._verified.pop(path, None)
        try:
            self.fs.replace(path, target)
            self.fs.fsync_dir(self.directory)
        except OSError:
            pass


class _PayloadReader(io.RawIOBase):
    """Raw reader of a snapshot file's payload: offsets skip the header."""

    def __init__(self, fs: FileSystem, path: Path, size: int) -> None:
        super().__init__()
        self._fs = fs
        self._fd = fs.open(path, os.O_RDONLY)
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        count = min(len(buffer), self._size - self._pos)
        if count <= 0:
            return 0
        data = self._fs.pread(self._fd, count, HEADER_SIZE + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._fs.close(self._fd)
        super().close()


def _chunks(source: BinaryIO | bytes | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        for start in range(0, len(view), COPY_CHUNK):
            yield bytes(view[start : start + COPY_CHUNK])
        return
    read = getattr(source, "read", None)
    if read is not None:
        while chunk := read(COPY_CHUNK):
            yield chunk
        return
    for chunk in source:
        if chunk:
            yield bytes(chunk)


def _unlink_missing_ok(fs: FileSystem, path: Path) -> None:
    try:
        fs.unlink(path)
    except FileNotFoundError:
        pass


def _leading_int(name: str) -> int:
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else -1
