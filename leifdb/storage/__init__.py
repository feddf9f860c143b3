"""Durable storage of a LeifDB node: the Raft log, hard state and snapshots on disk.

- ``DiskStorage``: the ``leifdb.raft.storage.LogStorage`` implementation (segmented,
  checksummed, group-committed log; atomic hard state; torn-tail recovery).
- ``SnapshotStore``: atomic, verified snapshot files and chunked transfer in and out.
- ``DataDir`` / ``resolve_data_dir``: where the files live and the lock guarding them.
- ``FileSystem`` / ``RealFileSystem`` (``leifdb.storage.fs``): every write, sync, rename and
  directory fsync goes through one injectable interface; ``RealFileSystem`` (the ``os``
  calls) is the default. ``leifdb.storage.simfs.SimFileSystem`` is its test double (durable
  vs cached state, power cuts), importable without pytest.
- ``leifdb.storage.threaded.ThreadedStorage`` (the only module importing Twisted, so it is
  not imported here): runs the storage on a worker thread and merges concurrent persists
  into one fsync.
"""

from __future__ import annotations

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
from leifdb.storage.fs import FileSystem, RealFileSystem
from leifdb.storage.snapshots import SnapshotStore

__all__ = [
    "ChunkOffsetError",
    "DEFAULT_SEGMENT_SIZE",
    "DataDir",
    "DataDirError",
    "DataDirLocked",
    "DiskStorage",
    "FileSystem",
    "RealFileSystem",
    "SnapshotNotFound",
    "SnapshotStore",
    "StorageClosed",
    "StorageCorruption",
    "StorageError",
    "StorageFailed",
    "StorageStats",
    "crc32c",
    "default_data_dir",
    "fnv1_32",
    "resolve_data_dir",
]
