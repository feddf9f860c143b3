"""A LeifDB node: drives the pure Raft core with real time, disk and sockets.

The core decides; this module only carries out its ``Ready`` in the documented order —
persist (one group-committed fsync on the storage thread), send, apply, advance — and
takes snapshots of the application when the log grows. Everything else is a collaborator
handed in (``leifdb.ports``): the log storage, the snapshot store, the transport and the
application (``leifdb.service.KVService``, which owns the waiters and the state machine).
Timers are ``callLater`` calls on the injected reactor, so tests drive a node on
``twisted.internet.task.Clock``.
"""

from __future__ import annotations

import io
import itertools
import random
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from leifdb.errors import NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.nodeconfig import NodeConfig
from leifdb.ports import Application, AsyncStorage, SnapshotStore, Transport
from leifdb.raft.core import Config, NotLeader, PersistentState, RaftCore, Status
from leifdb.raft.messages import (
    AppendEntries,
    InstallSnapshot,
    Message,
    Ready,
    Role,
    SnapshotChunk,
    SnapshotMeta,
)
from leifdb.storage.errors import StorageClosed, StorageError
from leifdb.wire import encode_membership

log = Logger(namespace="leifdb.node")

_LEADER_MESSAGES = (AppendEntries, InstallSnapshot)

SNAPSHOT_CHUNK_BYTES = 1024 * 1024


class Node:
    """One member of a LeifDB cluster: the Ready driver (``leifdb.service.Consensus``)."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        reactor: Any,
        storage: AsyncStorage,
        snapshots: SnapshotStore,
        transport: Transport,
        application: Application,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.reactor = reactor
        self.storage = storage
        self.snapshots = snapshots
        self.transport = transport
        self.application = application
        self._rng = rng or random.Random()
        self._tick_seconds = config.heartbeat_interval_ms / 1000.0
        self.core: RaftCore | None = None
        self._http_addresses: dict[str, str] = {
            m.id: m.http_address for m in config.members if m.http_address
        }
        self._http_addresses[config.node_id] = config.http_address
        # Read ids start at a random point in every incarnation, so a reply meant for a
        # read of a previous incarnation of this node can never answer a new one.
        self._read_ids = itertools.count((self._rng.getrandbits(40) << 16) + 1)
        self._tick_call: Any = None
        self._drain_call: Any = None
        self._busy = False
        self._snapshotting = False
        self._snapshot_meta = SnapshotMeta()
        self._stopping = False
        self._failed: Failure | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Deferred:
        """Recover from disk, start the transport and the timers. Fires once serving."""
        d = self.storage.call(self._latest_snapshot_blocking)
        d.addCallback(self._recover)
        d.addCallback(self._started)
        return d

    def _latest_snapshot_blocking(self) -> tuple[SnapshotMeta, Any]:
        """On the storage thread: the newest valid snapshot, restored (or nothing)."""
        latest = self.snapshots.latest()
        if latest is None:
            return SnapshotMeta(), None
        meta = latest[0]
        with self.snapshots.open(meta) as stream:
            restored, _membership = self.application.read_snapshot(stream)
        return meta, restored

    @inlineCallbacks
    def _recover(self, found: tuple[SnapshotMeta, Any]):
        meta, restored = found
        state: PersistentState = yield self.storage.load()
        if meta.last_included_index > state.snapshot.last_included_index:
            # A crash between saving a snapshot and compacting the log.
            yield self.storage.compact(meta)
            state = yield self.storage.load()
        elif meta.last_included_index < state.snapshot.last_included_index:
            raise StorageError(
                f"the log starts after snapshot {state.snapshot.last_included_index}, but no "
                f"valid snapshot that recent is in {self.config.data_dir}: restore the data "
                "directory from a backup, or empty it so the node is re-seeded by the leader"
            )
        return state, meta, restored

    def _started(self, recovered: tuple[PersistentState, SnapshotMeta, Any]) -> None:
        state, meta, restored = recovered
        if restored is not None:
            self.application.install_snapshot(restored)
        self._snapshot_meta = meta
        ticks = max(2, round(self.config.election_timeout_ms / self.config.heartbeat_interval_ms))
        core_config = Config(
            node_id=self.config.node_id,
            peers=tuple(m.id for m in self.config.members),
            election_ticks=ticks,
            heartbeat_ticks=1,
        )
        self.core = RaftCore(core_config, state, self._rng)
        self.transport.attach(self.receive, self.peer_unreachable)
        log.info(
            "Node {node} started: term {term}, {entries} log entries after snapshot {snap}",
            node=self.config.node_id,
            term=state.hard_state.term,
            entries=len(state.entries),
            snap=meta.last_included_index,
        )
        self._schedule_tick()
        self._schedule_drain()

    def stop(self) -> Deferred:
        """Stop timers and transport, let an in-flight fsync finish, close files."""
        self._stopping = True
        for call in (self._tick_call, self._drain_call):
            if call is not None and call.active():
                call.cancel()
        self.application.stopped(
            OutcomeUnknown("node is shutting down"), Unavailable("node is shutting down")
        )
        d = self.transport.stop()
        storage, snapshots = self.storage, self.snapshots
        d.addBoth(lambda _: storage.close())
        d.addBoth(lambda _: snapshots.close())
        return d

    # ------------------------------------------------------------------ inputs

    def receive(self, msg: Message, sender_http: str) -> None:
        """A Raft message arrived from a peer (called by the transport)."""
        if sender_http:
            self._http_addresses[msg.src] = sender_http
        if self.core is None or self._stopping:
            return
        self.core.step(msg)
        self._schedule_drain()

    def peer_unreachable(self, peer: str) -> None:
        if self.core is not None:
            self.core.report_unreachable(peer)
            self._schedule_drain()

    def _schedule_tick(self) -> None:
        self._tick_call = self.reactor.callLater(self._tick_seconds, self._on_tick)

    def _on_tick(self) -> None:
        self._tick_call = None
        if self._stopping:
            return
        self.core.tick()
        self._schedule_tick()
        self._schedule_drain()

    # ------------------------------------------------------------------ Consensus

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append ``data`` to the leader's log; ``(index, term)``. NotLeaderError otherwise."""
        core = self._require_core()
        try:
            index_term = core.propose(data)
        except NotLeader as exc:
            raise NotLeaderError(self.http_address(exc.leader_id)) from None
        self._schedule_drain()
        return index_term

    def request_read(self) -> int:
        """Ask the core for a read index; the answer reaches ``application.read_states``."""
        core = self._require_core()
        read_id = next(self._read_ids)
        core.read_index(read_id)
        self._schedule_drain()
        return read_id

    def raft_status(self) -> Status | None:
        return self.core.status() if self.core is not None else None

    def http_address(self, node_id: str | None) -> str | None:
        if node_id is None:
            return None
        return self._http_addresses.get(node_id) or None

    def _require_core(self) -> RaftCore:
        if self.core is None or self._stopping:
            raise NotLeaderError(None)
        return self.core

    # ------------------------------------------------------------------ the Ready loop

    def _schedule_drain(self) -> None:
        """Drain once per reactor turn, so everything proposed meanwhile is one batch."""
        if self._drain_call is None and not self._stopping:
            self._drain_call = self.reactor.callLater(0, self._drain)

    def _drain(self) -> None:
        self._drain_call = None
        if self._busy or self._stopping or self.core is None or not self.core.has_ready():
            return
        self._busy = True
        ready = self.core.ready()
        d = succeed(None)
        if ready.snapshot_chunks:
            d = self.storage.call(self._write_chunks_blocking, ready.snapshot_chunks)
            d.addCallback(self._compact_installed)
        d.addCallback(lambda installed: self._persist(ready, installed))
        d.addErrback(self._fatal)

    def _persist(self, ready: Ready, installed: tuple | None) -> Deferred | None:
        """Persist, then carry on. A leader's appends and heartbeats leave before its own
        fsync (Raft §10.2.1): it counts itself toward a commit only once durable, so
        nothing unsafe can be acknowledged; every other message waits for the fsync.
        The core sets ``ready.hard_state`` only when term or vote changed."""
        late = ready.messages
        if self.core.role is Role.LEADER:
            early: list[Message] = []
            late = []
            for msg in ready.messages:
                leader_sent = isinstance(msg, _LEADER_MESSAGES) and msg.term == self.core.term
                (early if leader_sent else late).append(msg)
            self._send_all(early)
        if not ready.entries and ready.hard_state is None:
            self._after_persist(ready, installed, late)
            return None
        d = self.storage.persist(ready.hard_state, ready.entries)
        d.addCallback(lambda _: self._after_persist(ready, installed, late))
        return d

    def _after_persist(self, ready: Ready, installed: tuple | None, messages: list[Message]) -> None:
        if self._stopping:
            return
        self._send_all(messages)
        if installed is not None and installed[1]:
            # Ready order: a completed snapshot replaces the state machine before the
            # committed entries that follow it are applied on top.
            meta, _ok, restored = installed
            self.application.install_snapshot(restored)
            self._snapshot_meta = meta
            log.info("Installed snapshot {index} from the leader", index=meta.last_included_index)
        self.application.apply(ready.committed)
        if ready.read_states:
            leader = None
            if self.core.role is not Role.LEADER:
                leader = self.http_address(self.core.leader_id)
            self.application.read_states(ready.read_states, leader)
        if ready.soft_state is not None:
            soft = ready.soft_state
            log.info(
                "Node {node} is {role} in term {term}; leader {leader}",
                node=self.config.node_id, role=soft.role.value, term=soft.term,
                leader=soft.leader_id,
            )
            self.application.role_changed(soft)
        self.core.advance(ready)
        if installed is not None:
            self.core.snapshot_installed(installed[0], installed[1])
        self._busy = False
        self._maybe_snapshot()
        self._schedule_drain()

    def _fatal(self, failure: Failure) -> None:
        """Storage failed: the node cannot promise durability any more, so it stops. A
        storage closed under a Ready by a graceful ``stop()`` is not a failure (the next
        start finishes what was cut short, e.g. a compaction)."""
        if self._stopping and failure.check(StorageClosed):
            self._busy = False
            return
        self._failed = failure
        log.failure("Storage failed; stopping the node", failure)
        self._busy = False
        self._stopping = True
        self.application.stopped(OutcomeUnknown("storage failed"), Unavailable("storage failed"))
        if hasattr(self.reactor, "stop") and getattr(self.reactor, "running", False):
            self.reactor.stop()

    def _send_all(self, messages: list[Message]) -> None:
        transport = self.transport
        for msg in messages:
            if isinstance(msg, InstallSnapshot):
                msg = self._fill_snapshot_chunk(msg)
                if msg is None:
                    continue
            transport.send(msg)

    def _fill_snapshot_chunk(self, msg: InstallSnapshot) -> InstallSnapshot | None:
        meta = SnapshotMeta(msg.last_included_index, msg.last_included_term, msg.checksum, msg.total_size)
        try:
            data = self.snapshots.read_chunk(meta, msg.offset, SNAPSHOT_CHUNK_BYTES)
        except Exception:
            log.failure("Cannot read snapshot {index} for {peer}", index=meta.last_included_index, peer=msg.dst)
            return None
        return InstallSnapshot(
            msg.src, msg.dst, msg.term, msg.last_included_index, msg.last_included_term,
            offset=msg.offset, data=data, done=msg.offset + len(data) >= meta.size,
            checksum=meta.checksum, total_size=meta.size,
        )

    def _write_chunks_blocking(self, chunks: list[SnapshotChunk]) -> tuple | None:
        """On the storage thread: write received chunks; on the last one verify the
        snapshot and restore a state machine from it."""
        installed = None
        for chunk in chunks:
            self.snapshots.write_chunk(chunk.meta, chunk.offset, chunk.data)
            if chunk.done:
                meta = chunk.meta
                ok = self.snapshots.finish_receive(meta)
                restored = None
                if ok:
                    with self.snapshots.open(meta) as stream:
                        restored, _membership = self.application.read_snapshot(stream)
                installed = (meta, ok, restored)
        return installed

    def _compact_installed(self, installed: tuple | None) -> Deferred | tuple | None:
        """A verified snapshot from the leader replaces the log before anything after it
        is persisted (the storage queue keeps this order)."""
        if installed is None or not installed[1]:
            return installed
        return self.storage.compact(installed[0]).addCallback(lambda _: installed)

    # ------------------------------------------------------------------ snapshots

    def _maybe_snapshot(self) -> None:
        """Snapshot the state machine every ``snapshot_entries`` applied entries; once the
        snapshot is durable, the core and the log forget what it covers."""
        applied = self.application.applied_index
        since = applied - self._snapshot_meta.last_included_index
        if self._snapshotting or self._stopping or since < self.config.snapshot_entries:
            return
        term = self.core.log.term_at(applied)
        if term is None:
            return
        buffer = io.BytesIO()
        self.application.write_snapshot(buffer, encode_membership(self.config.members))
        self._snapshotting = True
        d = self.storage.call(self.snapshots.save, applied, term, buffer.getvalue())
        d.addCallback(self._snapshot_saved)
        d.addErrback(self._fatal)

    def _snapshot_saved(self, meta: SnapshotMeta) -> Deferred:
        self._snapshotting = False
        if self._stopping or self.core is None:
            return succeed(None)
        if meta.last_included_index > self._snapshot_meta.last_included_index:
            self._snapshot_meta = meta
            if meta.last_included_index > self.core.log.snapshot_index:
                self.core.compact(meta)
            log.info("Snapshot at index {index} saved; log compacted", index=meta.last_included_index)
        return self.storage.compact(meta)
