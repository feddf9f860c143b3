"""Snapshot bytes for the node (``leifdb.node``): the chunks a leader sends, the chunks a
follower receives (written and verified on the storage thread), and a snapshot encoded
into memory (on the thread pool). Plain functions over the node's ``SnapshotStore``."""

from __future__ import annotations

import io
from typing import Any, BinaryIO, Callable

from twisted.logger import Logger

from leifdb.ports import SnapshotStore
from leifdb.raft.messages import InstallSnapshot, SnapshotChunk, SnapshotMeta

__all__ = ["SNAPSHOT_CHUNK_BYTES", "encoded", "filled_chunk", "write_chunks"]

log = Logger(namespace="leifdb.node")

SNAPSHOT_CHUNK_BYTES = 1024 * 1024


def filled_chunk(snapshots: SnapshotStore, msg: InstallSnapshot) -> InstallSnapshot | None:
    """The core's ``InstallSnapshot`` with its chunk's bytes read from the store (None,
    logged, if the snapshot cannot be read)."""
    meta = SnapshotMeta(msg.last_included_index, msg.last_included_term, msg.checksum, msg.total_size)
    try:
        data = snapshots.read_chunk(meta, msg.offset, SNAPSHOT_CHUNK_BYTES)
    except Exception:
        log.failure("Cannot read snapshot {index} for {peer}", index=meta.last_included_index, peer=msg.dst)
        return None
    return InstallSnapshot(
        msg.src, msg.dst, msg.term, msg.last_included_index, msg.last_included_term,
        offset=msg.offset, data=data, done=msg.offset + len(data) >= meta.size,
        checksum=meta.checksum, total_size=meta.size,
    )


def write_chunks(snapshots: SnapshotStore, read_snapshot: Callable[[BinaryIO], Any],
                 chunks: list[SnapshotChunk]) -> tuple | None:
    """On the storage thread: write received chunks; on the last one verify the
    snapshot and restore a state machine from it (``read_snapshot``): (meta, verified,
    restored state, membership), or None before the last chunk."""
    installed = None
    for chunk in chunks:
        snapshots.write_chunk(chunk.meta, chunk.offset, chunk.data)
        if chunk.done:
            meta = chunk.meta
            ok = snapshots.finish_receive(meta)
            restored, membership = None, b""
            if ok:
                with snapshots.open(meta) as stream:
                    restored, membership = read_snapshot(stream)
            installed = (meta, ok, restored, membership)
    return installed


def encoded(write: Callable[[BinaryIO, bytes], None], metadata: bytes) -> bytes:
    """A snapshot written into memory (``write`` is the application's captured copy)."""
    buffer = io.BytesIO()
    write(buffer, metadata)
    return buffer.getvalue()
