"""A consistent copy of the state machine for ``GET /snapshot`` (backups).

The bytes are those of ``KVStore.write_snapshot`` (``leifdb.kv.snapshot``, the format the
node's own snapshots use) for the state at one applied index, written to a temporary
file together with their CRC-32C (the storage's checksum) and size, so the HTTP answer
can state both in its headers before the first byte of the body.

Where the time goes (measured on this machine with 300 000 keys): items are immutable
values, so a list of them is a consistent copy. Taking that list is the only part on the
reactor thread: 0.2 s here (0.4 to 0.7 microseconds per key), during which the node
neither applies nor answers. Encoding it (UTF-8, struct packing, CRC-32C, file writes),
0.3 s here (about 1.1 microseconds per key), runs on a worker thread while the node goes
on (sharing the GIL with it). Encoding on the reactor would hold every other request for
the whole encoding. Memory: one reference per key for the copy; disk: one temporary file
the size of the snapshot (in ``$TMPDIR``), deleted when it is closed. Snapshots are taken
one at a time; at most ``MAX_WAITING`` more wait their turn, and further requests are
refused (``Unavailable``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable

from crc32c import crc32c
from twisted.internet.defer import Deferred, DeferredLock, fail

from leifdb.errors import Unavailable
from leifdb.kv import snapshot
from leifdb.kv.commands import Item
from leifdb.kv.store import KVStore
from leifdb.offload import Runner, thread_runner
from leifdb.raft.messages import Member
from leifdb.wire import EncodeError, encode_membership

__all__ = ["Backup", "MAX_WAITING", "SnapshotFile", "membership_metadata"]

MAX_WAITING = 4

@dataclass(frozen=True, slots=True)
class SnapshotFile:
    """A snapshot of the state machine at ``revision`` (its applied index), in ``file``
    (an unnamed temporary file, positioned at its start: closing it deletes it). The
    receiver must close it. ``crc32c`` and ``size`` cover every byte of the file."""

    file: BinaryIO
    size: int
    crc32c: int
    revision: int
    keys: int
    leases: int

    def close(self) -> None:
        self.file.close()


class _Checksummed:
    """A write-only file wrapper that keeps the CRC-32C and size of what went through."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.crc = 0
        self.size = 0

    def write(self, data: bytes) -> int:
        self.crc = crc32c(data, self.crc)
        self.size += len(data)
        return self._out.write(data)


def membership_metadata(members: Iterable[Member]) -> bytes:
    """The snapshot's metadata: the member list the node knows, as a CONFIG entry holds
    it (b"" when it has none). Informative in a backup: a restore replaces it."""
    try:
        return encode_membership(list(members))
    except EncodeError:
        return b""


class Backup:
    """Takes snapshots of the store ``current()`` returns (it changes when a snapshot is
    installed), one at a time. ``run`` encodes on a worker thread (default: the reactor's
    thread pool); ``temp_dir`` is where the temporary files go (default: ``$TMPDIR``)."""

    def __init__(self, reactor: Any, *, run: Runner | None = None,
                 temp_dir: str | None = None) -> None:
        self._run = run or thread_runner(reactor)
        self._temp_dir = temp_dir
        self._lock = DeferredLock()
        self._waiting = 0

    def take(self, current: Callable[[], KVStore], metadata: Callable[[], bytes]
             ) -> Deferred[SnapshotFile]:
        """A snapshot of ``current()`` as it is when this snapshot's turn comes (at once
        unless another is being taken: never earlier than the call). ``Unavailable`` when
        ``MAX_WAITING`` snapshots already wait."""
        if self._lock.locked and self._waiting >= MAX_WAITING:
            return fail(Unavailable(
                f"{MAX_WAITING + 1} snapshots are already being taken on this node"))
        self._waiting += 1

        def turn() -> Deferred[SnapshotFile]:
            self._waiting -= 1
            kv = current()
            items, _ = kv.range("")  # the copy: the only O(n) work on this thread
            leases = [(lease.id, lease.ttl_ms, lease.remaining_ms, lease.renewed_index)
                      for lease in kv.leases()]
            return self._run(self._encode, kv.applied_index, items, leases, metadata())

        return self._lock.run(turn)

    def _encode(self, applied_index: int, items: list[Item],
                leases: list[snapshot.LeaseRecord], metadata: bytes) -> SnapshotFile:
        """On a worker thread: the copy as snapshot bytes in a temporary file."""
        file = tempfile.TemporaryFile(prefix="leifdb-snapshot-", dir=self._temp_dir)
        try:
            out = _Checksummed(file)
            snapshot.dump(out, applied_index, len(items), items, metadata, leases)
            file.flush()
            file.seek(0)
        except BaseException:
            file.close()
            raise
        return SnapshotFile(file, out.size, out.crc, applied_index, len(items), len(leases))
