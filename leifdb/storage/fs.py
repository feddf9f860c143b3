"""The file-system calls the storage makes, behind one small injectable interface.

Every write, sync, rename, removal and directory fsync of ``DiskStorage``, ``SnapshotStore``
and ``DataDir`` goes through a ``FileSystem``. Production uses ``RealFileSystem`` (the
default everywhere), whose calls are the ``os`` builtins themselves, so the indirection costs
one attribute lookup (``bench/storage_bench.py --fs-overhead`` measures it). Tests
use ``leifdb.storage.simfs.SimFileSystem``, which keeps what is durable apart from what is
only cached and can cut the power.

Descriptors are plain ``int``\\s, meaningful only to the ``FileSystem`` that issued them.
``open`` takes ``os.O_*`` flags (and, like ``os.open``, a mode for ``O_CREAT``); the ones the
storage uses (and a ``FileSystem`` must honour) are ``O_RDONLY``, ``O_WRONLY``, ``O_RDWR``,
``O_CREAT``, ``O_EXCL``, ``O_TRUNC``, ``O_APPEND``.
Errors are the ``OSError`` subclasses ``os`` raises (``FileNotFoundError``, ...).

What is durable after a power loss (the contract the storage relies on, and the one
``SimFileSystem`` enforces strictly):

- a file's bytes and size: after ``fsync`` or ``fdatasync`` of that file;
- a name created, renamed or removed in a directory (files and subdirectories alike): after
  ``fsync_dir`` of that directory. ``fsync`` of a file does not make its name durable.
"""

from __future__ import annotations

import fcntl
import os
from typing import Protocol, Union

__all__ = ["FileSystem", "REAL_FS", "RealFileSystem", "StatResult", "StrPath"]

StrPath = Union[str, "os.PathLike[str]"]


class StatResult(Protocol):
    """What ``FileSystem.stat`` returns (``os.stat_result`` fits)."""

    @property
    def st_size(self) -> int: ...

    @property
    def st_mtime_ns(self) -> int: ...


class FileSystem(Protocol):
    """The handful of file-system operations the storage uses."""

    # -- descriptors
    def open(self, path: StrPath, flags: int, mode: int = 0o777) -> int: ...

    def close(self, fd: int) -> None: ...

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        """Write at the position (the end with ``O_APPEND``); may write fewer bytes."""
        ...

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> int: ...

    def pread(self, fd: int, count: int, offset: int) -> bytes: ...

    def ftruncate(self, fd: int, length: int) -> None: ...

    def fdatasync(self, fd: int) -> None:
        """Make the file's bytes and size durable (not its name)."""
        ...

    def fsync(self, fd: int) -> None:
        """``fdatasync`` plus the rest of the file's metadata (still not its name)."""
        ...

    def flock(self, fd: int) -> None:
        """Take an exclusive lock, without waiting: ``BlockingIOError`` if it is held. The
        lock goes with the descriptor (``close`` or the process's death drop it)."""
        ...

    # -- paths
    def read_file(self, path: StrPath) -> bytes: ...

    def stat(self, path: StrPath) -> StatResult: ...

    def exists(self, path: StrPath) -> bool: ...

    def is_dir(self, path: StrPath) -> bool: ...

    def listdir(self, path: StrPath) -> list[str]: ...

    def mkdir(self, path: StrPath) -> None:
        """Create one directory (``FileExistsError`` if the name is taken)."""
        ...

    def replace(self, source: StrPath, target: StrPath) -> None:
        """Rename ``source`` to ``target``, atomically replacing any file there."""
        ...

    def unlink(self, path: StrPath) -> None: ...

    def fsync_dir(self, path: StrPath) -> None:
        """Make the creations, renames and removals of names in ``path`` durable."""
        ...


class RealFileSystem:
    """``FileSystem`` over the ``os`` module. The per-descriptor and per-name calls ARE the
    ``os`` builtins (bound as static methods: no Python frame between the storage and the
    system call); only the rare compound ones are methods. To intercept a call in a test,
    set it on the instance the storage uses (``storage.fs``), not on ``os``."""

    open = staticmethod(os.open)
    close = staticmethod(os.close)
    write = staticmethod(os.write)
    pwrite = staticmethod(os.pwrite)
    pread = staticmethod(os.pread)
    ftruncate = staticmethod(os.ftruncate)
    fdatasync = staticmethod(os.fdatasync)
    fsync = staticmethod(os.fsync)
    stat = staticmethod(os.stat)
    exists = staticmethod(os.path.exists)
    is_dir = staticmethod(os.path.isdir)
    listdir = staticmethod(os.listdir)
    mkdir = staticmethod(os.mkdir)
    replace = staticmethod(os.replace)
    unlink = staticmethod(os.unlink)

    def flock(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def read_file(self, path: StrPath) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def fsync_dir(self, path: StrPath) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self.fsync(fd)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return "RealFileSystem()"


REAL_FS: FileSystem = RealFileSystem()
"""The default of every ``fs=`` parameter."""

