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

import itertools
import random
import time
from dataclasses import replace
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from leifdb.errors import MembershipRefused, NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.nodeconfig import NodeConfig
from leifdb.offload import thread_runner
from leifdb.ports import Application, AsyncStorage, SnapshotStore, Transport
from leifdb.raft.core import Config, NotLeader, PersistentState, RaftCore, Status
from leifdb.raft.membership import ConfigChangeRefused
from leifdb.raft.messages import (
    AppendEntries,
    Configuration,
    Entry,
    EntryType,
    InstallSnapshot,
    Member,
    Message,
    Ready,
    Role,
    SnapshotMeta,
    SoftState,
)
from leifdb.snapshot_io import encoded, filled_chunk, write_chunks
from leifdb.storage.errors import StorageClosed, StorageError
from leifdb.wire import DecodeError, decode_membership, encode_membership

log = Logger(namespace="leifdb.node")

_LEADER_MESSAGES = (AppendEntries, InstallSnapshot)

# The core counts time in ticks; ten per heartbeat interval draw election timeouts at a
# tenth of a heartbeat (10 ms by default), so two nodes rarely time out together.
TICKS_PER_HEARTBEAT = 10


class ReadyObserver(Protocol):
    """Told how long the disk work of the Ready loop takes (``leifdb.metrics.NodeMetrics``
    is one); each call must be cheap, it runs on the reactor thread."""

    def persisted(self, seconds: float, entries: int) -> None:
        """One Ready's entries and hard state became durable in ``seconds``."""

    def snapshot_taken(self, seconds: float, size: int) -> None:
        """This node saved a snapshot of ``size`` bytes in ``seconds``."""

    def snapshot_received(self, size: int) -> None:
        """A snapshot of ``size`` bytes from the leader was installed."""


def decode_configuration(data: bytes) -> Configuration:
    """A CONFIG entry's data -> who votes and who listens (the decoder the core is given)."""
    return Configuration.of(decode_membership(data))


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
        identity: Any = None,
        pins: Any = None,
        observer: ReadyObserver | None = None,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.reactor = reactor
        self.storage = storage
        self.snapshots = snapshots
        self.transport = transport
        self.application = application
        self._offload = thread_runner(reactor)
        self._rng = rng or random.Random()
        self.identity = identity  # leifdb.storage.identity.Identity, or None in tests
        self.pins = pins  # leifdb.storage.identity.PeerPins, or None in tests
        self._observer = observer
        self._tick_seconds = config.heartbeat_interval_ms / 1000.0 / TICKS_PER_HEARTBEAT
        self.core: RaftCore | None = None
        self._http_addresses: dict[str, str] = {
            m.id: m.http_address for m in config.members if m.http_address
        }
        self._http_addresses[config.node_id] = config.http_address
        self._members: list[Member] = list(config.members)
        self._committed_member_ids: set[str] = {m.id for m in config.members}
        # A joining node replays configurations from before it was added: only a
        # configuration without it that follows one with it is its removal.
        self._been_member = config.bootstrap and config.node_id in self._committed_member_ids
        self._raft_addresses: dict[str, str] = {m.id: m.raft_address for m in config.members}
        self._leader_waiters: list[tuple[Deferred, Any]] = []
        self.removed = False
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

    def _latest_snapshot_blocking(self) -> tuple[SnapshotMeta, Any, bytes]:
        """On the storage thread: the newest valid snapshot, restored, and the membership
        stored with it (or nothing)."""
        latest = self.snapshots.latest()
        if latest is None:
            return SnapshotMeta(), None, b""
        meta = latest[0]
        with self.snapshots.open(meta) as stream:
            restored, membership = self.application.read_snapshot(stream)
        return meta, restored, membership

    @inlineCallbacks
    def _recover(self, found: tuple[SnapshotMeta, Any, bytes]):
        meta, restored, membership = found
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
        if meta.last_included_index == state.snapshot.last_included_index:
            state.snapshot_membership = membership
        return state, meta, restored

    def _started(self, recovered: tuple[PersistentState, SnapshotMeta, Any]) -> None:
        state, meta, restored = recovered
        if restored is not None:
            self.application.install_snapshot(restored)
        self._snapshot_meta = meta
        heartbeats = max(2, round(self.config.election_timeout_ms / self.config.heartbeat_interval_ms))
        bootstrap = self.config.bootstrap
        core_config = Config(
            node_id=self.config.node_id,
            peers=tuple(m.id for m in self.config.members if not m.learner) if bootstrap else (),
            learners=tuple(m.id for m in self.config.members if m.learner) if bootstrap else (),
            election_ticks=heartbeats * TICKS_PER_HEARTBEAT,
            heartbeat_ticks=TICKS_PER_HEARTBEAT,
            pre_vote=True,
            vote_lease=True,
            decode_configuration=decode_configuration,
        )
        self.core = RaftCore(core_config, state, self._rng)
        at_snapshot = self.core.membership_data_at(self.core.log.snapshot_index)
        if at_snapshot:
            self._committed_member_ids = {m.id for m in decode_membership(at_snapshot)}
            self._been_member = self.node_id in self._committed_member_ids
        self._adopt_membership(self.core.membership_data())
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
        waiters, self._leader_waiters = self._leader_waiters, []
        for waiter, call in waiters:
            if call.active():
                call.cancel()
            waiter.errback(Unavailable("node is shutting down"))
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

    @property
    def cluster_id(self) -> str:
        return self.config.cluster_id

    @property
    def election_timeout(self) -> float:
        """The minimum election timeout, in seconds."""
        return self.config.election_timeout_ms / 1000.0

    def leader_contact_age(self) -> float | None:
        """Seconds since this node last heard from its leader (0 on the leader, None
        when it knows no leader): ``/health`` turns a stale answer into 503."""
        if self.core is None or self._stopping:
            return None
        ticks = self.core.leader_contact_ticks()
        return None if ticks is None else ticks * self._tick_seconds

    # ------------------------------------------------------------------ membership

    def members(self) -> list[Member]:
        """The newest configuration in this node's log, with addresses (a client address
        the configuration lacks, as in a ``--members`` list, as learned from the peer)."""
        return [
            m if m.http_address else replace(m, http_address=self._http_addresses.get(m.id, ""))
            for m in self._members
        ]

    def member_views(self) -> dict[str, tuple[int, float]]:
        """On the leader: member id -> (match index, seconds since it last answered)."""
        if self.core is None:
            return {}
        return {
            peer: (view.match_index, view.ticks_since_contact * self._tick_seconds)
            for peer, view in self.core.peer_views().items()
        }

    def change_membership(self, data: bytes, force: bool = False) -> tuple[int, int]:
        """Propose the member list ``data`` (one server added, promoted or removed).
        ``(index, term)`` of its CONFIG entry; the service waits for it to apply."""
        core = self._require_core()
        try:
            index_term = core.propose_membership(data, force)
        except NotLeader as exc:
            raise NotLeaderError(self.http_address(exc.leader_id)) from None
        except ConfigChangeRefused as exc:
            raise _refusal(exc) from None
        self._schedule_drain()
        return index_term

    def transfer_leadership(self, to: str) -> Deferred:
        """Hand leadership to ``to`` (§3.10). Fires with the new leader's id once this
        node has stepped down and a leader is known; ``Unavailable`` after two election
        timeouts without one."""
        core = self._require_core()
        try:
            core.transfer_leadership(to)
        except NotLeader as exc:
            return fail(NotLeaderError(self.http_address(exc.leader_id)))
        except ConfigChangeRefused as exc:
            return fail(_refusal(exc))
        self._schedule_drain()
        return self._wait_for_other_leader(2 * self.config.election_timeout_ms / 1000.0)

    def transfer_leadership_before_stop(self) -> Deferred:
        """On SIGTERM: a leader hands over to its most caught-up voter so the cluster
        does not wait out an election timeout. Fires (never fails) once another node
        leads, after one election timeout, or at once when there is nobody to hand to."""
        core = self.core
        if core is None or self._stopping or core.role is not Role.LEADER:
            return succeed(None)
        target = core.transfer_target()
        if target is None:
            return succeed(None)
        log.info("Handing leadership to {target} before stopping", target=target)
        d = self.transfer_leadership(target)
        d.addErrback(lambda _: None)
        return d

    def _wait_for_other_leader(self, timeout: float) -> Deferred:
        d: Deferred = Deferred()
        call = self.reactor.callLater(timeout, self._leader_wait_expired, d)
        self._leader_waiters.append((d, call))
        return d

    def _leader_wait_expired(self, d: Deferred) -> None:
        self._leader_waiters = [(w, c) for w, c in self._leader_waiters if w is not d]
        d.errback(Unavailable("leadership did not move within two election timeouts"))

    def _leadership_moved(self, soft: SoftState) -> None:
        if not self._leader_waiters or soft.leader_id in (None, self.node_id):
            return
        waiters, self._leader_waiters = self._leader_waiters, []
        for d, call in waiters:
            if call.active():
                call.cancel()
            d.callback(soft.leader_id)

    def _adopt_membership(self, data: bytes) -> None:
        """The core's newest configuration changed (or a removed server stopped being
        replicated to): refresh the address books and the transport's peer set."""
        if data:
            try:
                members = decode_membership(data)
            except DecodeError:
                log.error("Ignoring an undecodable membership")
                return
            self._members = members
            for m in members:
                self._raft_addresses[m.id] = m.raft_address
                if m.http_address:
                    self._http_addresses[m.id] = m.http_address
        wanted = {m.id for m in self._members}
        if self.core is not None:
            wanted |= self.core.replicating_to()
            joined = self.identity.joined_index if self.identity is not None else 0
            if self.core.configuration_index() < joined:
                # A node that joined replays older configurations first, which may lack
                # today's leader: keep the members it joined with until it is past them.
                wanted |= {m.id for m in self.config.members}
        peers = {}
        for pid in wanted - {self.node_id}:
            address = self._raft_addresses.get(pid)
            if address:
                host, _, port = address.rpartition(":")
                peers[pid] = (host.strip("[]"), int(port))
        self.transport.update_peers(peers)

    def config_index(self) -> int:
        """Log index of the newest configuration (0: still the bootstrap list). A joining
        node records the one it joined at: older removals of its id are not its own."""
        return self.core.configuration_index() if self.core is not None else 0

    def _committed_configs(self, committed: list[Entry]) -> None:
        """Committed CONFIG entries: a server added again (as a learner) may come with a
        new data directory, so its old incarnation pin goes; one without this node (newer
        than the one that made it a member, ``identity.joined_index``) means this node
        was removed: it remembers that in its data directory and stops, so it can never
        rejoin with this state."""
        for entry in committed:
            if entry.type is EntryType.CONFIG:
                self._config_committed(entry.index, entry.data)

    def _config_committed(self, index: int, data: bytes) -> None:
        """The membership ``data`` is committed at ``index``: from a CONFIG entry, or from
        a snapshot installed from the leader (a removed node that catches up that way
        never applies the entry that removed it)."""
        try:
            members = decode_membership(data)
        except DecodeError:
            return
        ids = {m.id for m in members}
        if self.pins is not None:
            for added in ids - self._committed_member_ids:
                self.pins.clear(added)
        self._committed_member_ids = ids
        if index <= (self.identity.joined_index if self.identity is not None else 0):
            return
        if self.node_id in ids:
            self._been_member = True
        elif self._been_member and not self.removed:
            self.removed = True
            log.error(
                "Node {node} was removed from the cluster (entry {index}); stopping. "
                "To bring it back: wipe its data directory and add it again",
                node=self.node_id, index=index,
            )
            if self.identity is not None:
                self.identity.mark_removed()
            self.reactor.callLater(0, self._leave)

    def _leave(self) -> None:
        """Stop after our removal. A removed leader first finishes handing over (the
        core does it once the removal commits), so none of its writes is cut short."""
        if self.core is not None and self.core.role is Role.LEADER and not self._stopping:
            waited = self._wait_for_other_leader(2 * self.election_timeout)
            waited.addBoth(lambda _: self._leave_now())
            return
        self._leave_now()

    def _leave_now(self) -> None:
        if hasattr(self.reactor, "stop") and getattr(self.reactor, "running", False):
            self.reactor.stop()  # the process's orderly stop: drain clients, then stop()
            return
        self._stopping = True
        self.application.stopped(
            OutcomeUnknown("node was removed from the cluster"),
            Unavailable("node was removed from the cluster"),
        )

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
            d = self.storage.call(write_chunks, self.snapshots, self.application.read_snapshot,
                                  ready.snapshot_chunks)
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
        if self._observer is not None:
            d.addCallback(self._observe_persist, time.perf_counter(), len(ready.entries))
        d.addCallback(lambda _: self._after_persist(ready, installed, late))
        return d

    def _observe_persist(self, result: object, started: float, entries: int) -> object:
        self._observer.persisted(time.perf_counter() - started, entries)
        return result

    def _after_persist(self, ready: Ready, installed: tuple | None, messages: list[Message]) -> None:
        if self._stopping:
            return
        self._send_all(messages)
        if installed is not None and installed[1]:
            # Ready order: a completed snapshot replaces the state machine before the
            # committed entries that follow it are applied on top.
            meta, _ok, restored, membership = installed
            self.application.install_snapshot(restored)
            self._snapshot_meta = meta
            if membership:
                self._config_committed(meta.last_included_index, membership)
            log.info("Installed snapshot {index} from the leader", index=meta.last_included_index)
            if self._observer is not None:
                self._observer.snapshot_received(meta.size)
        self.application.apply(ready.committed)
        self._committed_configs(ready.committed)
        if ready.membership is not None:
            self._adopt_membership(ready.membership)
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
            self._leadership_moved(soft)
        self.core.advance(ready)
        if installed is not None:
            self.core.snapshot_installed(installed[0], installed[1], installed[3])
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
                msg = filled_chunk(self.snapshots, msg)
                if msg is None:
                    continue
            transport.send(msg)

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
        started = time.perf_counter()
        membership = self.core.membership_data_at(applied) or encode_membership(self._members)
        write = self.application.capture_snapshot()
        self._snapshotting = True
        # Encoded off the reactor (it held every request for its length), saved in order
        # on the storage thread.
        d = self._offload(encoded, write, membership)
        d.addCallback(lambda data: self.storage.call(self.snapshots.save, applied, term, data))
        if self._observer is not None:
            d.addCallback(self._observe_snapshot, started)
        d.addCallback(self._snapshot_saved)
        d.addErrback(self._fatal)

    def _observe_snapshot(self, meta: SnapshotMeta, started: float) -> SnapshotMeta:
        self._observer.snapshot_taken(time.perf_counter() - started, meta.size)
        return meta

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


def _refusal(exc: ConfigChangeRefused) -> Exception:
    """The core's refusal as the error clients see: retryable ones as 503."""
    if exc.retryable:
        return Unavailable(exc.reason)
    return MembershipRefused(exc.reason, 404 if exc.unknown_member else 409)
