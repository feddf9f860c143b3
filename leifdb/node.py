"""A LeifDB node: drives the pure Raft core with real time, disk and sockets.

The core decides; this module only carries out its ``Ready`` in the documented order —
persist (one group-committed fsync on the storage thread), send, apply, advance — and turns
applied entries and confirmed read indexes into the Deferreds the HTTP API waits on.
Timers are ``callLater`` calls on the injected reactor, so tests drive a node on
``twisted.internet.task.Clock``.
"""

from __future__ import annotations

import io
import itertools
import random
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from leifdb import __version__
from leifdb.errors import NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.kv.commands import ApplyResult, Command
from leifdb.kv.store import KVStore
from leifdb.nodeconfig import NodeConfig
from leifdb.raft.core import Config, NotLeader, RaftCore
from leifdb.storage.errors import StorageError
from leifdb.wire import DecodeError, decode_command, encode_command, encode_membership
from leifdb.raft.messages import (
    AppendEntries,
    Entry,
    EntryType,
    InstallSnapshot,
    Message,
    Ready,
    Role,
    SnapshotChunk,
    SnapshotMeta,
)

log = Logger(namespace="leifdb.node")

_LEADER_MESSAGES = (AppendEntries, InstallSnapshot)

SNAPSHOT_CHUNK_BYTES = 1024 * 1024


class AsyncStorage(Protocol):
    """The storage as the node sees it (``leifdb.storage.ThreadedStorage`` in production):
    every call runs in FIFO order off the reactor and fires a Deferred when done."""

    storage: Any

    def load(self) -> Deferred: ...
    def persist(self, hard_state: Any, entries: list[Entry]) -> Deferred: ...
    def compact(self, meta: SnapshotMeta) -> Deferred: ...
    def call(self, function: Callable[..., Any], *args: Any) -> Deferred: ...
    def close(self) -> Deferred: ...


class Transport(Protocol):
    def send(self, msg: Message) -> None: ...
    def stop(self) -> Deferred: ...


@dataclass
class _Proposal:
    term: int
    deferred: Deferred
    timeout: Any


class Node:
    """One member of a LeifDB cluster; implements ``leifdb.http.backend.Backend``.

    ``open_storage(config, reactor)`` returns ``(AsyncStorage, SnapshotStore)``; ``make_transport(node)``
    returns a started transport delivering to ``node.receive``. Both default to disk and
    TCP; the simulation injects in-memory versions.
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        reactor: Any,
        rng: random.Random | None = None,
        open_storage: Callable[[NodeConfig, Any], tuple[AsyncStorage, Any]] | None = None,
        make_transport: Callable[[Node], Transport] | None = None,
        proposal_timeout: float | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self._rng = rng or random.Random()
        self._open_storage = open_storage or _open_disk_storage
        self._make_transport = make_transport or _make_tcp_transport
        self._tick_seconds = config.heartbeat_interval_ms / 1000.0
        self._proposal_timeout = proposal_timeout or max(5.0, 5 * config.election_timeout_ms / 1000.0)
        self._read_timeout = max(2.0, 3 * config.election_timeout_ms / 1000.0)
        self._kv = KVStore()
        self.core: RaftCore | None = None
        self.storage: AsyncStorage | None = None
        self.snapshots: Any = None
        self.transport: Transport | None = None
        self._http_addresses: dict[str, str] = {
            m.id: m.http_address for m in config.members if m.http_address
        }
        self._http_addresses[config.node_id] = config.http_address
        self._proposals: dict[int, _Proposal] = {}
        self._reads: dict[int, tuple[Deferred, Any]] = {}
        self._read_waiters: list[tuple[int, Deferred]] = []
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
        self._durable_vote: tuple[int, str | None] = (0, None)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Deferred:
        """Recover from disk, start the transport and the timers. Fires once serving."""
        try:
            self.storage, self.snapshots = self._open_storage(self.config, self.reactor)
        except Exception:
            return fail()
        d = self.storage.call(self._recover_blocking)
        d.addCallback(self._started)
        return d

    def _recover_blocking(self) -> tuple[Any, KVStore, SnapshotMeta]:
        """On the storage thread: newest valid snapshot, then the log after it."""
        latest = self.snapshots.latest()
        kv = KVStore()
        meta = SnapshotMeta()
        if latest is not None:
            meta = latest[0]
            with self.snapshots.open(meta) as stream:
                kv, _membership = KVStore.read_snapshot(stream)
        disk = self.storage.storage
        state = disk.load()
        if meta.last_included_index > state.snapshot.last_included_index:
            # A crash between saving a snapshot and compacting the log.
            disk.compact(meta)
            state = disk.load()
        elif meta.last_included_index < state.snapshot.last_included_index:
            raise StorageError(
                f"the log starts after snapshot {state.snapshot.last_included_index}, but no "
                f"valid snapshot that recent is in {self.config.data_dir}: restore the data "
                "directory from a backup, or empty it so the node is re-seeded by the leader"
            )
        return state, kv, meta

    def _started(self, recovered: tuple[Any, KVStore, SnapshotMeta]) -> None:
        state, kv, meta = recovered
        self._kv = kv
        self._snapshot_meta = meta
        ticks = max(2, round(self.config.election_timeout_ms / self.config.heartbeat_interval_ms))
        core_config = Config(
            node_id=self.config.node_id,
            peers=tuple(m.id for m in self.config.members),
            election_ticks=ticks,
            heartbeat_ticks=1,
        )
        self.core = RaftCore(core_config, state, self._rng)
        self._durable_vote = (state.hard_state.term, state.hard_state.voted_for)
        self.transport = self._make_transport(self)
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
        self._fail_all(OutcomeUnknown("node is shutting down"), Unavailable("node is shutting down"))
        d = self.transport.stop() if self.transport is not None else succeed(None)
        if self.storage is not None:
            storage = self.storage
            d.addBoth(lambda _: storage.close())
            if self.snapshots is not None:
                d.addBoth(lambda _: self.snapshots.close())
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

    # ------------------------------------------------------------------ Backend

    @property
    def kv(self) -> KVStore:
        return self._kv

    def submit(self, command: Command) -> Deferred:
        core = self._require_core()
        try:
            index, term = core.propose(encode_command(command))
        except NotLeader as exc:
            raise NotLeaderError(self._http_of(exc.leader_id)) from None
        d: Deferred = Deferred()
        timeout = self.reactor.callLater(self._proposal_timeout, self._proposal_timed_out, index)
        self._proposals[index] = _Proposal(term, d, timeout)
        self._schedule_drain()
        return d

    def read_barrier(self) -> Deferred:
        core = self._require_core()
        read_id = next(self._read_ids)
        d: Deferred = Deferred()
        timeout = self.reactor.callLater(self._read_timeout, self._read_timed_out, read_id)
        self._reads[read_id] = (d, timeout)
        core.read_index(read_id)
        self._schedule_drain()
        return d

    def status(self) -> dict:
        core = self.core
        if core is None:
            return {
                "node": self.config.node_id, "role": "starting", "term": 0, "leader": None,
                "leader_http": None, "commit_index": 0, "applied_index": 0, "version": __version__,
            }
        st = core.status()
        return {
            "node": self.config.node_id,
            "role": st.role.value,
            "term": st.term,
            "leader": st.leader_id,
            "leader_http": self._http_of(st.leader_id),
            "commit_index": st.commit_index,
            "applied_index": self._kv.applied_index,
            "last_index": st.last_index,
            "snapshot_index": st.snapshot_index,
            "version": __version__,
        }

    def _require_core(self) -> RaftCore:
        if self.core is None or self._stopping:
            raise NotLeaderError(None)
        return self.core

    def _http_of(self, node_id: str | None) -> str | None:
        if node_id is None:
            return None
        return self._http_addresses.get(node_id) or None

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
        d.addCallback(lambda installed: self._persist(ready, installed))
        d.addErrback(self._fatal)

    def _persist(self, ready: Ready, installed: tuple | None) -> Deferred | None:
        """Persist, then carry on. A leader's appends and heartbeats leave before its own
        fsync (Raft §10.2.1): it counts itself toward a commit only once durable, so
        nothing unsafe can be acknowledged; every other message waits for the fsync."""
        late = ready.messages
        if self.core.role is Role.LEADER:
            early: list[Message] = []
            late = []
            for msg in ready.messages:
                leader_sent = isinstance(msg, _LEADER_MESSAGES) and msg.term == self.core.term
                (early if leader_sent else late).append(msg)
            self._send_all(early)
        hs = ready.hard_state
        vote_changed = hs is not None and (hs.term, hs.voted_for) != self._durable_vote
        if not ready.entries and not vote_changed:
            self._after_persist(ready, installed, late)
            return None
        d = self.storage.persist(hs if vote_changed else None, ready.entries)
        if vote_changed:
            self._durable_vote = (hs.term, hs.voted_for)
        d.addCallback(lambda _: self._after_persist(ready, installed, late))
        return d

    def _after_persist(self, ready: Ready, installed: tuple | None, messages: list[Message]) -> None:
        if self._stopping:
            return
        self._send_all(messages)
        if installed is not None and installed[1]:
            # Ready order: a completed snapshot replaces the state machine before the
            # committed entries that follow it are applied on top.
            meta, _ok, kv = installed
            self._kv = kv
            self._snapshot_meta = meta
            log.info("Installed snapshot {index} from the leader", index=meta.last_included_index)
        self._apply(ready.committed)
        self._release_read_waiters()
        self._handle_reads(ready)
        if ready.soft_state is not None:
            self._on_soft_state(ready)
        self.core.advance(ready)
        if installed is not None:
            self.core.snapshot_installed(installed[0], installed[1])
        self._busy = False
        self._maybe_snapshot()
        self._schedule_drain()

    def _fatal(self, failure: Failure) -> None:
        """Storage failed: the node cannot promise durability any more, so it stops."""
        self._failed = failure
        log.failure("Storage failed; stopping the node", failure)
        self._busy = False
        self._stopping = True
        self._fail_all(OutcomeUnknown("storage failed"), Unavailable("storage failed"))
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
        snapshot, restore a state machine from it and reset the log to it."""
        installed = None
        for chunk in chunks:
            self.snapshots.write_chunk(chunk.meta, chunk.offset, chunk.data)
            if chunk.done:
                meta = chunk.meta
                ok = self.snapshots.finish_receive(meta)
                kv = None
                if ok:
                    with self.snapshots.open(meta) as stream:
                        kv, _membership = KVStore.read_snapshot(stream)
                    self.storage.storage.compact(meta)
                installed = (meta, ok, kv)
        return installed

    # ------------------------------------------------------------------ applying

    def _apply(self, entries: list[Entry]) -> None:
        kv = self._kv
        for entry in entries:
            if entry.index <= kv.applied_index:
                continue
            result: ApplyResult | None = None
            if entry.type is EntryType.NORMAL:
                try:
                    result = kv.apply(entry.index, decode_command(entry.data))
                except DecodeError:
                    log.error("Skipping undecodable entry {index}", index=entry.index)
                    kv.note_applied(entry.index)
            else:
                kv.note_applied(entry.index)
            proposal = self._proposals.pop(entry.index, None)
            if proposal is not None:
                proposal.timeout.cancel()
                if proposal.term == entry.term and result is not None:
                    proposal.deferred.callback(result)
                else:
                    proposal.deferred.errback(OutcomeUnknown("leadership changed before commit"))
        if entries:
            self._release_read_waiters()

    def _proposal_timed_out(self, index: int) -> None:
        proposal = self._proposals.pop(index, None)
        if proposal is not None:
            proposal.deferred.errback(OutcomeUnknown("the write did not commit in time"))

    def _on_soft_state(self, ready: Ready) -> None:
        soft = ready.soft_state
        log.info(
            "Node {node} is {role} in term {term}; leader {leader}",
            node=self.config.node_id, role=soft.role.value, term=soft.term, leader=soft.leader_id,
        )
        if soft.role is not Role.LEADER and self._proposals:
            proposals, self._proposals = self._proposals, {}
            for proposal in proposals.values():
                proposal.timeout.cancel()
                proposal.deferred.errback(OutcomeUnknown("leadership lost before commit"))

    # ------------------------------------------------------------------ reads

    def _handle_reads(self, ready: Ready) -> None:
        for state in ready.read_states:
            pending = self._reads.pop(state.read_id, None)
            if pending is None:
                continue
            d, timeout = pending
            timeout.cancel()
            if not state.success:
                leader = self._http_of(self.core.leader_id) if self.core.role is not Role.LEADER else None
                d.errback(NotLeaderError(leader) if leader else Unavailable("no leader confirmed the read"))
            elif state.read_index <= self._kv.applied_index:
                d.callback(None)
            else:
                self._read_waiters.append((state.read_index, d))

    def _release_read_waiters(self) -> None:
        if not self._read_waiters:
            return
        applied = self._kv.applied_index
        waiting = []
        for index, d in self._read_waiters:
            if index <= applied:
                d.callback(None)
            else:
                waiting.append((index, d))
        self._read_waiters = waiting

    def _read_timed_out(self, read_id: int) -> None:
        pending = self._reads.pop(read_id, None)
        if pending is not None:
            pending[0].errback(Unavailable("the read could not be confirmed in time"))

    def _fail_all(self, write_error: Exception, read_error: Exception) -> None:
        proposals, self._proposals = self._proposals, {}
        for proposal in proposals.values():
            if proposal.timeout.active():
                proposal.timeout.cancel()
            proposal.deferred.errback(write_error)
        reads, self._reads = self._reads, {}
        for d, timeout in reads.values():
            if timeout.active():
                timeout.cancel()
            d.errback(read_error)
        waiters, self._read_waiters = self._read_waiters, []
        for _index, d in waiters:
            d.errback(read_error)

    # ------------------------------------------------------------------ snapshots

    def _maybe_snapshot(self) -> None:
        """Snapshot the state machine every ``snapshot_entries`` applied entries; once the
        snapshot is durable, the core and the log forget what it covers."""
        kv = self._kv
        since = kv.applied_index - self._snapshot_meta.last_included_index
        if self._snapshotting or self._stopping or since < self.config.snapshot_entries:
            return
        index = kv.applied_index
        term = self.core.log.term_at(index)
        if term is None:
            return
        buffer = io.BytesIO()
        kv.write_snapshot(buffer, encode_membership(self.config.members))
        self._snapshotting = True
        d = self.storage.call(self.snapshots.save, index, term, buffer.getvalue())
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


def _open_disk_storage(config: NodeConfig, reactor: Any) -> tuple[AsyncStorage, Any]:
    """The data directory (locked), its log on a storage thread, and its snapshot store."""
    from leifdb.storage import DiskStorage, SnapshotStore
    from leifdb.storage.threaded import ThreadedStorage

    storage_log = Logger(namespace="leifdb.storage")
    disk = DiskStorage.open(config.data_dir, logger=storage_log)
    snapshots = SnapshotStore(
        disk.data_dir.snap_dir, retain=config.retain_snapshots, logger=storage_log
    )
    return ThreadedStorage(disk, reactor), snapshots


def _make_tcp_transport(node: Node) -> Transport:
    from leifdb.transport import RaftTransport

    peers = {}
    for member in node.config.members:
        if member.id == node.config.node_id:
            continue
        host, _, port = member.raft_address.rpartition(":")
        peers[member.id] = (host, int(port))
    transport = RaftTransport(
        node.reactor,
        node_id=node.config.node_id,
        http_address=node.config.http_address,
        peers=peers,
        on_message=node.receive,
        on_peer_unreachable=node.peer_unreachable,
        cluster_id=node.config.cluster_id,
    )
    transport.listen(node.config.raft_listen_port, node.config.listen_interface)
    return transport
