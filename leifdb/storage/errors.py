"""Errors of the storage layer. A node refuses to start on any of them, printing the message."""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """Base class: the durable state cannot be used as asked."""


class StorageCorruption(StorageError):
    """Stored bytes fail a checksum or a structural check somewhere a crash cannot explain
    (not the torn tail of the newest log segment). Carries the file and byte offset so an
    operator can inspect it; the node must not start on top of it."""

    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        super().__init__(f"storage corruption in {path} at byte {offset}: {reason}")
        self.path = Path(path)
        self.offset = offset
        self.reason = reason


class StorageFailed(StorageError):
    """An earlier write or fsync failed; what reached the disk is unknown, so this storage
    accepts nothing more (retrying an fsync after a failure can silently lose data).
    Restart the node: recovery re-reads what is really there."""


class StorageClosed(StorageError):
    """The storage was closed (or never loaded) and cannot take this call."""


class DataDirError(StorageError):
    """The data directory cannot be used (it is a file, or it cannot be created)."""


class DataDirLocked(DataDirError):
    """Another process (or another open in this one) holds the data directory's lock."""


class SnapshotNotFound(StorageError):
    """No intact snapshot with this metadata is in the store."""


class ChunkOffsetError(StorageError):
    """A snapshot chunk did not start where the partial snapshot ends; ``expected`` is
    the offset to resume from (what to reply as ``next_offset``)."""

    def __init__(self, offset: int, expected: int) -> None:
        super().__init__(f"snapshot chunk at offset {offset}, expected offset {expected}")
        self.offset = offset
        self.expected = expected
