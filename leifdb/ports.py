"""The node's collaborators, one small Protocol each, with their contracts.

``leifdb.node.Node`` drives the Raft core and reaches the outside world only through these;
``leifdb.tap`` wires the real ones (a storage thread over ``leifdb.storage.DiskStorage``,
``leifdb.storage.SnapshotStore``, ``leifdb.transport.RaftTransport``, ``leifdb.service
.KVService``). In-memory doubles with the same contracts: ``leifdb.raft.storage
.MemoryStorage`` under ``leifdb.storage.threaded.StorageQueue``, ``leifdb.storage.memory
.MemorySnapshotStore``, and the simulated network of ``tests/sim/node_sim.py``.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Callable, Iterable, Protocol

from twisted.internet.defer import Deferred

from leifdb.raft.messages import (
    Entry,
    HardState,
    Message,
    ReadState,
    SnapshotMeta,
    SoftState,
)

__all__ = ["Application", "AsyncStorage", "SnapshotStore", "Transport"]


class AsyncStorage(Protocol):
    """The log storage off the reactor (``leifdb.storage.threaded.ThreadedStorage``): every call runs
    in FIFO order on a worker and fires its Deferred on the reactor thread when done;
    ``persist`` calls queued meanwhile share one fsync (group commit)."""

    def load(self) -> Deferred:
        """Fires with the durable ``PersistentState``."""
        ...

    def persist(self, hard_state: HardState | None, entries: list[Entry]) -> Deferred:
        """Stage ``entries`` (truncating a conflicting suffix) then ``hard_state``; fires
        once both are durable (fsynced). The Deferred never fires before the sync returns."""
        ...

    def compact(self, meta: SnapshotMeta) -> Deferred:
        """The snapshot ``meta`` is durable: forget the log it covers."""
        ...

    def call(self, function: Callable[..., Any], *args: Any) -> Deferred:
        """Run ``function(*args)`` on the worker, in queue order (snapshot I/O)."""
        ...

    def close(self) -> Deferred:
        ...


class SnapshotStore(Protocol):
    """Snapshots of the state machine (``leifdb.storage.SnapshotStore``). Called on the
    storage worker only (through ``AsyncStorage.call``), except ``read_chunk``. ``save`` and
    ``finish_receive`` return only once the snapshot is durable; a snapshot is identified
    by its ``SnapshotMeta`` including a CRC-32C of its bytes, verified on read."""

    def save(self, last_included_index: int, last_included_term: int,
             source: BinaryIO | bytes | Iterable[bytes]) -> SnapshotMeta: ...

    def latest(self) -> tuple[SnapshotMeta, Any] | None:
        """The newest snapshot whose checksum verifies, or None."""
        ...

    def open(self, meta: SnapshotMeta) -> BinaryIO: ...

    def read_chunk(self, meta: SnapshotMeta, offset: int, max_bytes: int) -> bytes: ...

    def write_chunk(self, meta: SnapshotMeta, offset: int, data: bytes) -> int:
        """Receive: continue the partial snapshot ``meta`` at ``offset`` (0 restarts)."""
        ...

    def finish_receive(self, meta: SnapshotMeta) -> bool:
        """Verify the received snapshot; True once it is durable and complete."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Raft messages to and from the peers (``leifdb.transport.RaftTransport``)."""

    def attach(
        self,
        on_message: Callable[[Message, str], None],
        on_peer_unreachable: Callable[[str], None],
    ) -> None:
        """Start: listen and dial as configured, then deliver every message received to
        ``on_message(msg, sender_http_address)``. May raise (a port in use), which fails
        the node's start."""
        ...

    def send(self, msg: Message) -> None:
        """Fire and forget; never raises (Raft resends what is lost)."""
        ...

    def stop(self) -> Deferred: ...


class Application(Protocol):
    """The replicated state machine and its waiters (``leifdb.service.KVService``). Called
    on the reactor thread in Ready order: ``install_snapshot`` before the entries that
    follow it, ``apply`` after the entries are durable where the rules require it."""

    @property
    def applied_index(self) -> int: ...

    def apply(self, entries: list[Entry]) -> None:
        """Committed entries in log order; those at or below ``applied_index`` are skipped."""
        ...

    def write_snapshot(self, out: BinaryIO, metadata: bytes) -> None: ...

    def capture_snapshot(self) -> Callable[[BinaryIO, bytes], None]:
        """The state now, as a function that writes it (as ``write_snapshot`` does) on
        any thread later, so the encoding can leave the reactor thread."""
        ...

    def read_snapshot(self, stream: BinaryIO) -> tuple[Any, bytes]:
        """Any thread, no side effects: a restored state and the snapshot's metadata."""
        ...

    def install_snapshot(self, restored: Any) -> None: ...

    def read_states(self, states: list[ReadState], leader_http: str | None) -> None:
        """Answers to ``Node.request_read``; ``leader_http``: where to redirect refused
        ones (None when this node leads or no leader is known)."""
        ...

    def role_changed(self, soft: SoftState) -> None: ...

    def stopped(self, write_error: Exception, read_error: Exception) -> None: ...
