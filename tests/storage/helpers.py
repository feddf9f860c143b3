"""Shared helpers of the storage tests."""

from __future__ import annotations

from pathlib import Path

from leifdb.raft.core import PersistentState
from leifdb.raft.messages import Entry, EntryType
from leifdb.storage import DiskStorage


def entry(index: int, term: int = 1, size: int = 40) -> Entry:
    """A recognisable entry: its data names its index and term, so mix-ups show."""
    data = f"<{index}:{term}>".encode().ljust(size, b"#")
    return Entry(term, index, EntryType.NORMAL, data)


def entries(first: int, last: int, term: int = 1, size: int = 40) -> list[Entry]:
    return [entry(i, term, size) for i in range(first, last + 1)]


def reopen(path: Path, segment_size: int = 64 * 1024 * 1024) -> DiskStorage:
    storage = DiskStorage.open(path, segment_size=segment_size)
    storage.load()
    return storage


def load_state(path: Path, segment_size: int = 64 * 1024 * 1024) -> PersistentState:
    """Open, recover and close: what a restarted node would start from."""
    storage = DiskStorage.open(path, segment_size=segment_size)
    try:
        return storage.load()
    finally:
        storage.close()


def load_entries(path: Path, segment_size: int = 64 * 1024 * 1024) -> list[Entry]:
    return load_state(path, segment_size).entries


class ListLogger:
    """A StorageLogger that keeps the formatted lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, format: str, **kwargs: object) -> None:
        self.lines.append(format.format(**kwargs))

    def warn(self, format: str, **kwargs: object) -> None:
        self.lines.append(format.format(**kwargs))
