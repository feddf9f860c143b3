"""Where a node keeps its files, and the lock that gives one process exclusive use of them.

Layout of a data directory::

    LOCK                       flock'ed while a process uses the directory (holds its pid)
    hardstate                  current term and vote (replaced atomically)
    identity                   member id, cluster id, incarnation, removed (storage.identity)
    peers                      the incarnation first seen of each peer (storage.identity)
    log/000000000001.seg ...   the Raft log in segments named by their first index
    log/snapshot               the snapshot boundary: the log is compacted up to it
    snap/<index>-<term>.snap   snapshots (newest N kept)
"""

from __future__ import annotations

import os
from pathlib import Path

from leifdb.storage._files import make_dirs
from leifdb.storage.errors import DataDirError, DataDirLocked
from leifdb.storage.fs import REAL_FS, FileSystem

LOCK_NAME = "LOCK"
LOG_DIR = "log"
SNAP_DIR = "snap"
HARD_STATE_NAME = "hardstate"

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv1_32(data: bytes) -> int:
    """32-bit FNV-1 (multiply, then xor), as Go's ``hash/fnv.New32``."""
    h = _FNV32_OFFSET
    for byte in data:
        h = (h * _FNV32_PRIME) & 0xFFFFFFFF
        h ^= byte
    return h


def default_data_dir(raft_address: str) -> Path:
    """``$HOME/.leifdb/<hash>``, hash being FNV-1 of ``host:port`` in 8 hex digits: the
    original Go LeifDB's default, so one machine can run several nodes without flags."""
    return Path.home() / ".leifdb" / f"{fnv1_32(raft_address.encode('utf-8')):08x}"


def resolve_data_dir(
    data_dir: str | None, raft_address: str, *, fs: FileSystem = REAL_FS
) -> Path:
    """The node's data directory, created (with parents, durably) if missing.

    ``None`` (no ``--data-dir``) means ``default_data_dir(raft_address)``; ``~`` is
    expanded. Raises ``DataDirError`` if the path is an existing non-directory or cannot
    be created."""
    path = Path(data_dir).expanduser() if data_dir else default_data_dir(raft_address)
    if fs.exists(path) and not fs.is_dir(path):
        raise DataDirError(f"data directory {path} exists and is not a directory")
    try:
        make_dirs(fs, path)
    except OSError as exc:
        raise DataDirError(f"cannot create data directory {path}: {exc.strerror or exc}") from exc
    return path.absolute()


class DataDir:
    """An open, locked data directory. ``open`` takes the lock; ``close`` releases it.

    The lock is ``fcntl.flock`` on ``LOCK``, non-blocking: a second opener (another process,
    or a second open in the same process) gets ``DataDirLocked`` at once. The kernel drops
    the lock when the process dies, so a crash never leaves the directory locked.

    Every directory ``open`` creates (the data directory, its parents, ``log``, ``snap``)
    is made durable in its parent before it is used: a file fsynced into a directory whose
    own name is not durable is lost with it at a power cut. ``fs`` is the file system all
    storage on this directory goes through (``RealFileSystem`` by default)."""

    def __init__(self, path: Path, lock_fd: int, fs: FileSystem = REAL_FS) -> None:
        self.path = path
        self.fs = fs
        self._lock_fd: int | None = lock_fd

    @classmethod
    def open(cls, path: Path | str, *, fs: FileSystem = REAL_FS) -> DataDir:
        path = Path(path)
        if fs.exists(path) and not fs.is_dir(path):
            raise DataDirError(f"data directory {path} exists and is not a directory")
        try:
            if not make_dirs(fs, path):
                # An earlier start may have died between creating it and the fsync.
                _sync_parent(fs, path)
            for sub in (LOG_DIR, SNAP_DIR):
                if not fs.is_dir(path / sub):
                    fs.mkdir(path / sub)
            fs.fsync_dir(path)  # the names of log/ and snap/
            fd = fs.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DataDirError(f"cannot open data directory {path}: {exc}") from exc
        try:
            fs.flock(fd)
        except BlockingIOError:
            holder = _read_pid(fs, fd)
            fs.close(fd)
            by = f" by process {holder}" if holder else ""
            raise DataDirLocked(
                f"data directory {path} is in use{by}: is another node running on it?"
            ) from None
        fs.ftruncate(fd, 0)
        fs.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd, fs)

    @property
    def log_dir(self) -> Path:
        return self.path / LOG_DIR

    @property
    def snap_dir(self) -> Path:
        return self.path / SNAP_DIR

    @property
    def hard_state_path(self) -> Path:
        return self.path / HARD_STATE_NAME

    @property
    def closed(self) -> bool:
        return self._lock_fd is None

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            self.fs.close(fd)

    def __enter__(self) -> DataDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sync_parent(fs: FileSystem, path: Path) -> None:
    """Make ``path``'s name durable in its parent; a parent we may not read is left be."""
    try:
        fs.fsync_dir(path.parent)
    except PermissionError:
        pass


def _read_pid(fs: FileSystem, fd: int) -> str:
    try:
        return fs.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
