"""Durable storage of a LeifDB node: the Raft log, hard state and snapshots on disk.

- ``DiskStorage``: the ``leifdb.raft.storage.LogStorage`` implementation (segmented,
  checksummed, group-committed log; atomic hard state; torn-tail recovery).
- ``SnapshotStore``: atomic, verified snapshot files and chunked transfer in and out.
- ``DataDir`` / ``resolve_data_dir``: where the files live and the lock guarding them.
- ``ThreadedStorage`` (in ``leifdb.storage.threaded``, the only module importing Twisted):
  runs the storage on a worker thread and merges concurrent persists into one fsync.
"""

from __future__ import annotations

from typing import Any

from leifdb.storage.checksum import crc32c
from leifdb.storage.datadir import DataDir, default_data_dir, fnv1_32, resolve_data_dir
from leifdb.storage.disklog import DEFAULT_SEGMENT_SIZE, DiskStorage, StorageStats
from leifdb.storage.errors import (
    ChunkOffsetError,
    DataDirError,
    DataDirLocked,
    SnapshotNotFound,
    StorageClosed,
    StorageCorruption,
    StorageError,
    StorageFailed,
)
from leifdb.storage.snapshots import SnapshotStore

__all__ = [
    "ChunkOffsetError",
    "DEFAULT_SEGMENT_SIZE",
    "DataDir",
    "DataDirError",
    "DataDirLocked",
    "DiskStorage",
    "SnapshotNotFound",
    "SnapshotStore",
    "StorageClosed",
    "StorageCorruption",
    "StorageError",
    "StorageFailed",
    "StorageStats",
    "ThreadedStorage",
    "crc32c",
    "default_data_dir",
    "fnv1_32",
    "resolve_data_dir",
]


def __getattr__(name: str) -> Any:
    """``ThreadedStorage`` is imported on first use so the rest never loads Twisted."""
    if name == "ThreadedStorage":
        from leifdb.storage.threaded import ThreadedStorage

        return ThreadedStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
