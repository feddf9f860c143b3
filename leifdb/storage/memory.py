"""``MemorySnapshotStore``: an in-memory ``leifdb.ports.SnapshotStore`` for tests and the
node-level simulation (test-only: nothing is durable past the process)."""

from __future__ import annotations

import io
from typing import BinaryIO, Iterable

from leifdb.raft.messages import SnapshotMeta
from leifdb.storage.checksum import crc32c
from leifdb.storage.errors import ChunkOffsetError, SnapshotNotFound

__all__ = ["MemorySnapshotStore"]


class MemorySnapshotStore:
    """In-memory ``leifdb.storage.SnapshotStore`` with the methods the node uses and the
    same contracts: CRC-32C checksums verified by ``latest`` and ``finish_receive``,
    chunked receive that must continue where the partial snapshot ends (offset 0 restarts),
    the newest ``retain`` snapshots kept.

    ``chunk_bytes`` caps what ``read_chunk`` returns ("up to ``max_bytes``"), so small
    simulated snapshots still travel in several ``InstallSnapshot`` chunks. Saved and
    received snapshots are durable at once; ``crash()`` forgets a partial transfer."""

    def __init__(self, retain: int = 2, chunk_bytes: int | None = None) -> None:
        self.retain = retain
        self.chunk_bytes = chunk_bytes
        self._snapshots: dict[tuple[int, int], tuple[SnapshotMeta, bytes]] = {}
        self._partial: tuple[SnapshotMeta, bytearray] | None = None
        self.saved = 0
        self.received = 0
        self.rejected = 0
        self.chunks_read = 0

    # -- local snapshots

    def save(
        self, last_included_index: int, last_included_term: int, source: BinaryIO | bytes | Iterable[bytes]
    ) -> SnapshotMeta:
        data = _read_all(source)
        meta = SnapshotMeta(last_included_index, last_included_term, crc32c(data), len(data))
        self._install(meta, data)
        self.saved += 1
        return meta

    def latest(self) -> tuple[SnapshotMeta, tuple[int, int]] | None:
        for meta, data in self.list():
            if len(data) == meta.size and crc32c(data) == meta.checksum:
                return meta, (meta.last_included_index, meta.last_included_term)
            del self._snapshots[(meta.last_included_index, meta.last_included_term)]
        return None

    def list(self) -> list[tuple[SnapshotMeta, bytes]]:
        return [self._snapshots[k] for k in sorted(self._snapshots, reverse=True)]

    def open(self, meta: SnapshotMeta) -> BinaryIO:
        return io.BytesIO(self._find(meta))

    def read_chunk(self, meta: SnapshotMeta, offset: int, max_bytes: int) -> bytes:
        if not 0 <= offset <= meta.size or max_bytes < 0:
            raise ValueError(f"offset {offset} is outside snapshot of {meta.size} bytes")
        data = self._find(meta)
        count = min(max_bytes, meta.size - offset)
        if self.chunk_bytes is not None:
            count = min(count, self.chunk_bytes)
        self.chunks_read += 1
        return data[offset : offset + count]

    # -- receiving

    def write_chunk(self, meta: SnapshotMeta, offset: int, data: bytes) -> int:
        if offset + len(data) > meta.size:
            end = offset + len(data)
            raise ValueError(f"chunk [{offset}, {end}) runs past the snapshot's {meta.size} bytes")
        if offset == 0 or self._partial is None or self._partial[0] != meta:
            if offset != 0:
                self._partial = (meta, bytearray())
                raise ChunkOffsetError(offset, 0)
            self._partial = (meta, bytearray())
        buffer = self._partial[1]
        if offset != len(buffer):
            raise ChunkOffsetError(offset, len(buffer))
        buffer += data
        return len(buffer)

    def finish_receive(self, meta: SnapshotMeta) -> bool:
        partial, self._partial = self._partial, None
        if partial is None or partial[0] != meta:
            return False
        data = bytes(partial[1])
        if len(data) != meta.size or crc32c(data) != meta.checksum:
            self.rejected += 1
            return False
        self._install(meta, data)
        self.received += 1
        return True

    def abort_receive(self) -> None:
        self._partial = None

    def close(self) -> None:
        pass

    def crash(self) -> None:
        """A partial transfer is not fsynced: gone."""
        self._partial = None

    # -- internals

    def _find(self, meta: SnapshotMeta) -> bytes:
        found = self._snapshots.get((meta.last_included_index, meta.last_included_term))
        if found is None or found[0] != meta:
            raise SnapshotNotFound(f"no snapshot {meta}")
        return found[1]

    def _install(self, meta: SnapshotMeta, data: bytes) -> None:
        self._snapshots[(meta.last_included_index, meta.last_included_term)] = (meta, data)
        for key in sorted(self._snapshots, reverse=True)[self.retain :]:
            del self._snapshots[key]
        if self._partial is not None and self._partial[0].last_included_index <= meta.last_included_index:
            self._partial = None


def _read_all(source: BinaryIO | bytes | Iterable[bytes]) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    read = getattr(source, "read", None)
    if read is not None:
        return read()
    return b"".join(bytes(chunk) for chunk in source)
