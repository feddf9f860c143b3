"""A whole Raft cluster in one process: real ``RaftCore``s, simulated time, network and disks.

Time is a ``twisted.internet.task.Clock`` that counts **milliseconds** (integers, so event
times are exact). Every node's tick and every message delivery is a ``callLater`` on it, and
``Cluster`` steps from one due call to the next, so each event runs with the clock at its own
time. All randomness (latencies, faults, every core's election jitter) flows from one seed:
the same seed and the same calls replay the same run.

Each node drives its core exactly as ``leifdb.node`` must, in ``Ready`` order: persist
(``MemoryStorage``: a crash loses what was not synced; snapshots are kept in the node's
durable snapshot slot), send into ``SimNetwork``, apply committed entries to its state machine
(the list of applied entries), then ``advance``. After every event ``SafetyChecker`` checks
the Raft properties; any failure, or any exception out of a core, raises ``Violation``.

Membership: ``Cluster.add_node`` starts a fresh server with an empty disk that waits to be
added (a joining core, no bootstrap peers); ``Cluster.change_membership`` proposes a whole
new member list at a node (a CONFIG entry). A server that applies the committed entry
removing it stops for good, as ``leifdb.node`` does. Snapshots carry the configuration in
force at their index (the state machine here is the applied entries, CONFIG ones included,
so a received snapshot's membership is its last CONFIG entry).
"""

from __future__ import annotations

import collections
import random
import zlib
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock

from leifdb.raft.core import Config, ConfigChangeRefused, NotLeader, PersistentState, RaftCore
from leifdb.raft.messages import (
    Configuration,
    Entry,
    EntryType,
    InstallSnapshot,
    Message,
    ReadState,
    Ready,
    RequestVoteReply,
    Role,
    SnapshotChunk,
    SnapshotMeta,
)
from leifdb.raft.quorum import majority
from leifdb.raft.storage import MemoryStorage
from tests.raft.harness import decode_configuration, membership
from tests.sim.invariants import SafetyChecker, Violation

__all__ = [
    "CRASH_POINTS",
    "Cluster",
    "SimNetwork",
    "SimNode",
    "SimOptions",
    "Violation",
    "decode_snapshot",
    "encode_snapshot",
    "membership_in",
]


CRASH_POINTS = ("before_sync", "after_sync", "mid_send", "after_send")


@dataclass(frozen=True)
class SimOptions:
    """Shape of one simulated cluster. Times are in simulated milliseconds.

    Ambient fault rates apply to every message sent (``drop_rate``, ``duplicate_rate``,
    ``delay_rate`` adding up to ``max_delay_ms``, ``corrupt_rate`` flipping a byte of a
    snapshot chunk, which its checksum must catch). ``snapshot_every`` (None: never) makes a
    node snapshot its state machine and compact once it has applied that many entries since
    its last snapshot; snapshots travel in ``chunk_size``-byte chunks.
    """

    nodes: int = 3
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    tick_ms: int = 100
    tick_jitter_ms: int = 10
    min_latency_ms: int = 1
    max_latency_ms: int = 20
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    delay_rate: float = 0.0
    max_delay_ms: int = 3000
    corrupt_rate: float = 0.0
    snapshot_every: int | None = None
    chunk_size: int = 64
    max_entries_per_append: int = 512
    max_inflight_appends: int = 8
    check_quorum: bool = True
    report_unreachable: bool = True
    pre_vote: bool = False
    vote_lease: bool = False
    max_promote_lag: int = 1000

    @property
    def election_timeout_ms(self) -> int:
        """The longest randomized election timeout (the core draws from [T, 2T) ticks)."""
        return 2 * self.election_ticks * (self.tick_ms + self.tick_jitter_ms)


# ---------------------------------------------------------------------- state machine


def encode_snapshot(applied: Iterable[Entry]) -> bytes:
    """The state machine (the applied entries) as bytes: one ``index term type hex`` line each."""
    return b"".join(b"%d %d %d %s\n" % (e.index, e.term, int(e.type), e.data.hex().encode()) for e in applied)


def decode_snapshot(data: bytes) -> list[Entry]:
    entries = []
    for line in data.splitlines():
        index, term, kind, payload = line.split(b" ")
        entries.append(Entry(int(term), int(index), EntryType(int(kind)), bytes.fromhex(payload.decode())))
    return entries


def membership_in(applied: Iterable[Entry]) -> bytes:
    """The configuration after applying ``applied``: its last CONFIG entry (b"": the
    bootstrap list)."""
    data = b""
    for entry in applied:
        if entry.type is EntryType.CONFIG:
            data = entry.data
    return data


# ---------------------------------------------------------------------- network


@dataclass
class _InFlight:
    msg: Message
    call: IDelayedCall


class SimNetwork:
    """Messages in flight as delayed calls: delivered after a random latency, unless a fault
    drops, duplicates, delays or reorders them. Links can be cut one way or both ways.

    A message is dropped if its link is cut when it is sent or when it would arrive (a
    partition also loses what was buffered on the broken connection).
    """

    def __init__(self, cluster: "Cluster", rng: random.Random) -> None:
        self.cluster = cluster
        self.rng = rng
        self.cut: set[tuple[str, str]] = set()
        self.in_flight: dict[int, _InFlight] = {}
        self.sent_log: list[Message] | None = None
        self.history: collections.deque[Message] = collections.deque(maxlen=256)
        self._seq = 0
        opts = cluster.options
        self.drop_rate = opts.drop_rate
        self.duplicate_rate = opts.duplicate_rate
        self.delay_rate = opts.delay_rate
        self.corrupt_rate = opts.corrupt_rate

    @property
    def stats(self) -> collections.Counter[str]:
        return self.cluster.stats

    def set_fault_rates(
        self, drop: float = 0.0, duplicate: float = 0.0, delay: float = 0.0, corrupt: float = 0.0
    ) -> None:
        self.drop_rate, self.duplicate_rate, self.delay_rate, self.corrupt_rate = drop, duplicate, delay, corrupt

    def send(self, msg: Message) -> None:
        """Put ``msg`` on the wire (``sent_log``, when a list, records every send)."""
        self.stats["messages_sent"] += 1
        self.history.append(msg)
        if self.sent_log is not None:
            self.sent_log.append(msg)
        if (msg.src, msg.dst) in self.cut:
            self.stats["lost_to_partition"] += 1
            self.cluster.report_unreachable(msg.src, msg.dst)
            return
        rng = self.rng
        if self.drop_rate and rng.random() < self.drop_rate:
            self.stats["drops"] += 1
            return
        copies = 1
        if self.duplicate_rate and rng.random() < self.duplicate_rate:
            self.stats["duplicates"] += 1
            copies = 2
        for _ in range(copies):
            out = msg
            if self.corrupt_rate and isinstance(msg, InstallSnapshot) and msg.data and rng.random() < self.corrupt_rate:
                self.stats["corrupted_chunks"] += 1
                pos = rng.randrange(len(msg.data))
                data = bytearray(msg.data)
                data[pos] ^= 1 << rng.randrange(8)
                out = replace(msg, data=bytes(data))
            self._schedule(out, self._latency())

    def _latency(self) -> int:
        opts = self.cluster.options
        latency = self.rng.randint(opts.min_latency_ms, opts.max_latency_ms)
        if self.delay_rate and self.rng.random() < self.delay_rate:
            self.stats["delays"] += 1
            latency += self.rng.randint(opts.max_latency_ms, opts.max_delay_ms)
        return latency

    def _schedule(self, msg: Message, delay: int) -> int:
        self._seq += 1
        seq = self._seq
        call = self.cluster.call_later(delay, self._deliver, seq)
        self.in_flight[seq] = _InFlight(msg, call)
        return seq

    def _deliver(self, seq: int) -> None:
        item = self.in_flight.pop(seq)
        msg = item.msg
        if (msg.src, msg.dst) in self.cut:
            self.stats["lost_to_partition"] += 1
            return
        node = self.cluster.nodes.get(msg.dst)
        if node is None or node.core is None:
            self.stats["lost_to_crash"] += 1
            return
        self.stats["messages_delivered"] += 1
        node.receive(msg)

    # -- explicit faults on one in-flight message, chosen by position (oldest first)

    def _pick(self, pick: int) -> int | None:
        if not self.in_flight:
            return None
        keys = list(self.in_flight)
        return keys[pick % len(keys)]

    def deliver_now(self, pick: int) -> bool:
        """Deliver one in-flight message right away (overtaking the others)."""
        seq = self._pick(pick)
        if seq is None:
            return False
        item = self.in_flight[seq]
        item.call.cancel()
        self.stats["reorders"] += 1
        item.call = self.cluster.call_later(0, self._deliver, seq)
        return True

    def drop(self, pick: int) -> bool:
        seq = self._pick(pick)
        if seq is None:
            return False
        self.in_flight.pop(seq).call.cancel()
        self.stats["drops"] += 1
        return True

    def duplicate(self, pick: int) -> bool:
        seq = self._pick(pick)
        if seq is None:
            return False
        self.stats["duplicates"] += 1
        self._schedule(self.in_flight[seq].msg, self._latency())
        return True

    def replay(self, pick: int) -> bool:
        """Deliver again one of the last 256 messages sent, however old: a duplicate that
        was delayed for a long time (the network may do both)."""
        if not self.history:
            return False
        msg = self.history[pick % len(self.history)]
        self.stats["replays"] += 1
        self._schedule(msg, self._latency())
        return True

    def delay(self, pick: int, ms: int) -> bool:
        seq = self._pick(pick)
        if seq is None:
            return False
        item = self.in_flight[seq]
        remaining = max(0, int(item.call.getTime() - self.cluster.now))
        item.call.cancel()
        self.stats["delays"] += 1
        item.call = self.cluster.call_later(remaining + ms, self._deliver, seq)
        return True

    # -- partitions

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Cut every link between different groups (both directions); nodes in no group
        are cut off from everyone."""
        member: dict[str, int] = {}
        for n, group in enumerate(groups):
            for node_id in group:
                member[node_id] = n
        ids = list(self.cluster.nodes)
        for a in ids:
            for b in ids:
                if a != b and member.get(a, -1 - ids.index(a)) != member.get(b, -1 - ids.index(b)):
                    self.cut.add((a, b))
        self.stats["partitions"] += 1

    def isolate(self, node_id: str) -> None:
        others = [n for n in self.cluster.nodes if n != node_id]
        self.partition([[node_id], others])

    def cut_one_way(self, src: str, dst: str) -> None:
        """Messages from ``src`` to ``dst`` are lost; the other direction still works."""
        self.cut.add((src, dst))
        self.stats["one_way_cuts"] += 1

    def heal(self) -> None:
        if self.cut:
            self.stats["heals"] += 1
        self.cut.clear()


# ---------------------------------------------------------------------- node


class SimNode:
    """One server: a core, its disk (``MemoryStorage`` plus a durable snapshot slot) and its
    state machine (``applied``: the entries applied, index ``i`` at position ``i - 1``).

    A crash discards the core, the state machine and whatever the disk had not synced; a
    restart recovers from the disk alone. A ``bootstrap`` node starts with the cluster's
    initial member list; any other joins empty and waits to be added. ``removed``: it
    applied its own removal and stopped for good.
    """

    def __init__(self, cluster: "Cluster", node_id: str, storage: MemoryStorage, bootstrap: bool = True) -> None:
        self.cluster = cluster
        self.id = node_id
        self.storage = storage
        self.bootstrap = bootstrap
        self.removed = False
        self.snapshot: tuple[SnapshotMeta, bytes] | None = None
        self.snapshot_membership = b""
        self._member = bootstrap
        self._leaving = False
        self.core: RaftCore | None = None
        self.applied: list[Entry] = []
        self.incarnation = 0
        self.pending: dict[tuple[int, int], bytes] = {}
        self.frozen = False
        self.crash_point: str | None = None
        self._incoming: tuple[SnapshotMeta, bytearray] | None = None
        self._tick_call: IDelayedCall | None = None
        self._since_snapshot = 0

    # -- lifecycle

    @property
    def up(self) -> bool:
        return self.core is not None

    @property
    def applied_index(self) -> int:
        return len(self.applied)

    def core_term(self) -> int:
        if self.core is not None:
            return self.core.term
        return self.storage.load().hard_state.term

    def start(self) -> None:
        """Boot from the disk: restore the state machine from the durable snapshot, then let
        the core re-apply the committed log after it."""
        cluster = self.cluster
        state = self.storage.load()
        snap_meta = self.snapshot[0] if self.snapshot else SnapshotMeta()
        if state.snapshot != snap_meta:
            raise Violation(f"{self.id}: storage snapshot {state.snapshot} is not the stored one {snap_meta}")
        self.applied = []
        self._member = self.bootstrap
        if self.snapshot is not None:
            self._restore(self.snapshot[1])
            state.snapshot_membership = self.snapshot_membership
        self._since_snapshot = 0
        self.incarnation += 1
        opts = cluster.options
        config = Config(
            node_id=self.id,
            peers=cluster.bootstrap if self.bootstrap else (),
            election_ticks=opts.election_ticks,
            heartbeat_ticks=opts.heartbeat_ticks,
            check_quorum=opts.check_quorum,
            max_entries_per_append=opts.max_entries_per_append,
            max_inflight_appends=opts.max_inflight_appends,
            pre_vote=opts.pre_vote,
            vote_lease=opts.vote_lease,
            decode_configuration=decode_configuration,
            max_promote_lag=opts.max_promote_lag,
        )
        self.core = RaftCore(config, state, random.Random(cluster.rng.getrandbits(64)))
        self.pending = {}
        self._incoming = None
        self._schedule_tick(first=True)
        self.drain()
        if self._leaving and self.core is not None and self.core.role is not Role.LEADER:
            self.cluster.retire(self.id)

    def crash(self) -> None:
        if self.core is None:
            return
        if self._tick_call is not None and self._tick_call.active():
            self._tick_call.cancel()
        self._tick_call = None
        self.storage.crash()
        self.core = None
        self.applied = []
        self.pending = {}
        self.crash_point = None
        self._incoming = None
        self._leaving = False

    # -- inputs

    def _schedule_tick(self, first: bool = False) -> None:
        opts = self.cluster.options
        rng = self.cluster.rng
        if first:
            delay = rng.randint(1, opts.tick_ms)
        else:
            delay = max(1, opts.tick_ms + rng.randint(-opts.tick_jitter_ms, opts.tick_jitter_ms))
        self._tick_call = self.cluster.call_later(delay, self._on_tick)

    def _on_tick(self) -> None:
        self._tick_call = None
        if self.core is None:
            return
        self._schedule_tick()
        if self.frozen:
            return
        self.cluster.stats["ticks"] += 1
        self.core.tick()
        self.drain()

    def tick(self) -> None:
        """One tick right now, outside the node's timer (for scripted scenarios)."""
        self.core.tick()
        self.drain()

    def receive(self, msg: Message) -> None:
        if isinstance(msg, RequestVoteReply) and msg.vote_granted and not msg.pre_vote:
            self.cluster.checker.on_vote(msg.dst, msg.term, msg.src)
        self.core.step(msg)
        self.drain()

    def change_membership(self, data: bytes, force: bool = False) -> tuple[int, int]:
        """Propose a new member list here; raises ``NotLeader`` or ``ConfigChangeRefused``."""
        index, term = self.core.propose_membership(data, force)
        self.pending[(index, term)] = data
        self.drain()
        return index, term

    def propose(self, data: bytes) -> tuple[int, int]:
        """Propose on this node; raises ``NotLeader`` unless it leads."""
        index, term = self.core.propose(data)
        self.pending[(index, term)] = data
        self.drain()
        return index, term

    def take_snapshot(self) -> bool:
        """Snapshot the state machine at its applied index and compact log and disk."""
        done = self._snapshot_now()
        if done:
            self.drain()
        return done

    def _snapshot_now(self) -> bool:
        core = self.core
        if core is None or not self.applied or self.applied_index <= core.log.snapshot_index:
            return False
        if self.applied_index > core.applied:
            return False
        last = self.applied[-1]
        data = encode_snapshot(self.applied)
        meta = SnapshotMeta(last.index, last.term, zlib.crc32(data), len(data))
        stored = core.membership_data_at(last.index)
        if stored != membership_in(self.applied):
            raise Violation(
                f"{self.id}: the core's configuration at {last.index} is not the last CONFIG entry applied"
            )
        self.snapshot = (meta, data)
        self.snapshot_membership = stored
        self.storage.compact(meta)
        core.compact(meta)
        self._since_snapshot = 0
        self.cluster.stats["snapshots_taken"] += 1
        return True

    # -- the Ready loop

    def drain(self) -> None:
        """Handle every pending ``Ready``: persist, send, apply, advance."""
        core = self.core
        rounds = 0
        while core is not None and core.has_ready():
            rounds += 1
            if rounds > 10_000:
                raise Violation(f"{self.id}: the core keeps producing Ready without end")
            ready = core.ready()
            point = self.crash_point
            installed = self._persist(ready, sync=point != "before_sync")
            if point in ("before_sync", "after_sync"):
                return self._crash_mid_ready(point)
            messages = ready.messages
            if point == "mid_send":
                messages = messages[: len(messages) // 2]
            for msg in messages:
                self.cluster.network.send(self._fill(msg))
            if point is not None:
                return self._crash_mid_ready(point)
            for entry in ready.committed:
                self._apply(entry)
            if installed is not None:
                meta, data = installed
                if data is not None:
                    self._restore(data)
                    self.cluster.stats["snapshots_installed"] += 1
            for read in ready.read_states:
                self.cluster.on_read_state(self, read)
            if ready.soft_state is not None:
                soft = ready.soft_state
                self.cluster.trace.add(self.cluster.now, "role", self.id, soft.role.value, f"term {soft.term}")
                if soft.role is Role.LEADER:
                    self.cluster.stats["leaders_elected"] += 1
                else:
                    self.pending = {}
            core.advance(ready)
            if installed is not None:
                meta, data = installed
                core.snapshot_installed(meta, data is not None, self.snapshot_membership if data is not None else b"")
            self._maybe_snapshot()
            if self._leaving and core.role is not Role.LEADER:
                return self.cluster.retire(self.id)
            core = self.core

    def _crash_mid_ready(self, point: str) -> None:
        self.crash_point = None
        self.cluster.stats[f"crashes_{point}"] += 1
        self.cluster.crash(self.id, f"mid-Ready ({point})")

    def _persist(self, ready: Ready, sync: bool = True) -> tuple[SnapshotMeta, bytes | None] | None:
        installed = None
        for chunk in ready.snapshot_chunks:
            result = self._write_chunk(chunk)
            if result is not None:
                installed = result
        self.storage.append(ready.entries)
        if ready.hard_state is not None:
            self.storage.set_hard_state(ready.hard_state)
        if sync:
            self.storage.sync()
        return installed

    def _write_chunk(self, chunk: SnapshotChunk) -> tuple[SnapshotMeta, bytes | None] | None:
        """Receive side: returns (meta, data) once a snapshot is complete and verified,
        (meta, None) if it failed verification, None while incomplete."""
        self.cluster.stats["snapshot_chunks"] += 1
        if chunk.offset == 0 or self._incoming is None or self._incoming[0] != chunk.meta:
            if chunk.offset != 0:
                raise Violation(f"{self.id}: snapshot chunk at offset {chunk.offset} with no chunk 0 before it")
            self._incoming = (chunk.meta, bytearray())
        buf = self._incoming[1]
        if chunk.offset != len(buf):
            raise Violation(f"{self.id}: snapshot chunk at offset {chunk.offset}, expected {len(buf)}")
        buf += chunk.data
        if not chunk.done:
            return None
        self._incoming = None
        data = bytes(buf)
        meta = chunk.meta
        if zlib.crc32(data) != meta.checksum or len(data) != meta.size:
            self.cluster.stats["snapshots_rejected"] += 1
            return meta, None
        self.snapshot = (meta, data)
        self.snapshot_membership = membership_in(decode_snapshot(data))
        self.storage.compact(meta)
        return meta, data

    def _fill(self, msg: Message) -> Message:
        """Leader side of InstallSnapshot: the core leaves the chunk's bytes to us."""
        if not isinstance(msg, InstallSnapshot):
            return msg
        if self.snapshot is None or self.snapshot[0].last_included_index != msg.last_included_index:
            raise Violation(f"{self.id}: core asked to send snapshot {msg.last_included_index}, node has {self.snapshot}")
        meta, data = self.snapshot
        chunk = data[msg.offset : msg.offset + self.cluster.options.chunk_size]
        done = msg.offset + len(chunk) >= len(data)
        self.cluster.stats["snapshot_chunks_sent"] += 1
        return replace(msg, data=chunk, done=done, checksum=meta.checksum, total_size=meta.size)

    def _apply(self, entry: Entry) -> None:
        self.cluster.checker.on_apply(self, entry)
        self.applied.append(entry)
        self._since_snapshot += 1
        if entry.type is EntryType.CONFIG:
            self._track_membership(entry.data)
        data = self.pending.pop((entry.index, entry.term), None)
        if data is not None:
            if data != entry.data:
                raise Violation(f"{self.id}: proposal {data!r} came back as {entry}")
            self.cluster.checker.on_ack(self.id, entry)
            self.cluster.stats["proposals_acked"] += 1
            self.cluster.on_ack(self, entry)

    def _restore(self, data: bytes) -> None:
        entries = decode_snapshot(data)
        if len(entries) < len(self.applied):
            raise Violation(f"{self.id}: snapshot of {len(entries)} entries would roll back {len(self.applied)}")
        self.cluster.checker.on_restore(self, entries)
        self.applied = entries
        self._since_snapshot = 0
        data = membership_in(entries)
        if data:
            self._track_membership(data)

    def _track_membership(self, data: bytes) -> None:
        """A committed configuration applied: a member that is no longer in it was removed
        and leaves once this Ready is handled and it no longer leads (like the node writing
        its ``removed`` marker; a removed leader first hands over); a joining server
        becomes a member when one includes it."""
        members = decode_configuration(data).members()
        if self.id in members:
            self._member = True
        elif self._member:
            self._leaving = True

    def _maybe_snapshot(self) -> None:
        every = self.cluster.options.snapshot_every
        if every and self._since_snapshot >= every:
            self._snapshot_now()


# ---------------------------------------------------------------------- cluster


@dataclass
class _Trace:
    """The most recent events, for violation reports."""

    lines: collections.deque = field(default_factory=lambda: collections.deque(maxlen=60))

    def add(self, now: float, what: str, *details: object) -> None:
        self.lines.append((now, what, details))

    def format(self) -> str:
        return "\n".join(f"  t={int(t)}ms {what} {' '.join(map(str, d))}" for t, what, d in self.lines)


class Cluster:
    """A simulated cluster of ``options.nodes`` servers named ``n1``.. ``nN``.

    ``initial`` optionally gives a node's disk contents at boot (for paper scenarios).
    ``check`` runs the safety checker after every event (on by default).
    """

    def __init__(
        self,
        options: SimOptions | None = None,
        seed: int = 0,
        initial: dict[str, PersistentState] | None = None,
        check: bool = True,
    ) -> None:
        self.options = options or SimOptions()
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.stats: collections.Counter[str] = collections.Counter()
        self.checker = SafetyChecker()
        self.checking = check
        self.trace = _Trace()
        self.acked: list[Entry] = []
        self.read_answers: list[tuple[str, int, int]] = []
        self._max_acked = 0
        self._reads: dict[tuple[str, int, int], int] = {}
        self._read_seq = 0
        self._proposal_seq = 0
        ids = [f"n{i + 1}" for i in range(self.options.nodes)]
        self.bootstrap = tuple(ids)
        self._committed_members: tuple[int, frozenset[str]] = (-1, frozenset())
        self.nodes: dict[str, SimNode] = {}
        for node_id in ids:
            storage = MemoryStorage()
            state = (initial or {}).get(node_id)
            if state is not None:
                storage.append(state.entries)
                storage.set_hard_state(state.hard_state)
                storage.sync()
            self.nodes[node_id] = SimNode(self, node_id, storage)
        self.network = SimNetwork(self, self.rng)
        for node in self.nodes.values():
            node.start()
        self.check()

    # -- time

    @property
    def now(self) -> float:
        return self.clock.seconds()

    def call_later(self, delay: float, fn: Callable[..., None], *args: object) -> IDelayedCall:
        return self.clock.callLater(delay, self._event, fn, args)

    def _event(self, fn: Callable[..., None], args: tuple) -> None:
        self.stats["events"] += 1
        try:
            fn(*args)
        except Violation as exc:
            raise self._annotate(exc)
        except Exception as exc:
            raise self._annotate(Violation(f"exception during an event: {exc!r}")) from exc
        self.check()

    def _annotate(self, exc: Violation) -> Violation:
        if getattr(exc, "annotated", False):
            return exc
        new = Violation(f"{exc} [seed {self.seed}, t={int(self.now)}ms]\nrecent actions:\n{self.trace.format()}")
        new.annotated = True  # type: ignore[attr-defined]
        return new

    def check(self) -> None:
        if self.checking:
            try:
                self.checker.check(self.nodes.values())
            except Violation as exc:
                raise self._annotate(exc) from None

    def step(self) -> bool:
        """Run the next due event(s) (all calls due at the earliest time); False if none."""
        calls = self.clock.getDelayedCalls()
        if not calls:
            return False
        self.clock.advance(calls[0].getTime() - self.now)
        return True

    def run_for(self, ms: float) -> None:
        """Advance simulated time by ``ms``, event by event."""
        end = self.now + ms
        while True:
            calls = self.clock.getDelayedCalls()
            if not calls or calls[0].getTime() > end:
                self.clock.advance(end - self.now)
                return
            self.clock.advance(calls[0].getTime() - self.now)

    def run_until(self, predicate: Callable[[], bool], max_ms: float) -> bool:
        """Step until ``predicate()`` holds (checked after every event) or ``max_ms`` pass."""
        end = self.now + max_ms
        while not predicate():
            calls = self.clock.getDelayedCalls()
            if not calls or calls[0].getTime() > end:
                self.clock.advance(max(0, end - self.now))
                return predicate()
            self.clock.advance(calls[0].getTime() - self.now)
        return True

    # -- observation

    def up(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None]

    def leaders(self) -> list[SimNode]:
        return [n for n in self.up() if n.core.role is Role.LEADER]

    def leader(self) -> SimNode | None:
        """The live leader of the highest term, if any."""
        leaders = self.leaders()
        return max(leaders, key=lambda n: n.core.term) if leaders else None

    def majority_up(self) -> bool:
        """A majority of the voters of the newest configuration is up."""
        voters = self.configuration().voters
        return sum(self.nodes[v].up for v in voters if v in self.nodes) >= majority(len(voters))

    def configuration(self) -> Configuration:
        """The newest configuration any live node has (the leader's if there is one)."""
        leader = self.leader()
        if leader is not None:
            return leader.core.configuration()
        newest = max(self.up(), key=lambda n: (n.core.log.last_term(), n.core.log.last_index()), default=None)
        if newest is None:
            return Configuration(frozenset(self.bootstrap))
        return newest.core.configuration()

    # -- membership

    def committed_members(self) -> frozenset[str]:
        """The members of the newest configuration known committed."""
        known = len(self.checker.committed)
        if self._committed_members[0] != known:
            data = membership_in(self.checker.committed)
            members = decode_configuration(data).members() if data else frozenset(self.bootstrap)
            self._committed_members = (known, members)
        return self._committed_members[1]

    def _stop_unaware_removed_servers(self) -> None:
        """Classic Raft has no defence against a removed server that never learned that its
        removal committed (or, holding its removal, campaigns until it commits): its
        elections depose leader after leader (dissertation §4.2.3). While liveness is
        required, its operator stops it for good once the removal is known committed, and
        for now while the leader no longer counts it (the removal may yet be undone).
        With PreVote and the vote lease the others ignore it, so there it keeps running."""
        committed = self.committed_members()
        leader = self.leader()
        counted = committed if leader is None else leader.core.configuration().members()
        for node in self.up():
            if node is leader or not node.core._promotable():
                continue
            if node.id not in committed:
                self.trace.add(self.now, "operator-stops", node.id)
                self.retire(node.id)
            elif node.id not in counted:
                self.crash(node.id, "by the operator: the leader no longer counts it")

    def add_node(self) -> SimNode:
        """Start a fresh server (empty disk) that waits to be added; named n<k+1>."""
        node_id = f"n{len(self.nodes) + 1}"
        node = SimNode(self, node_id, MemoryStorage(), bootstrap=False)
        self.nodes[node_id] = node
        self.trace.add(self.now, "new-node", node_id)
        self.stats["nodes_added"] += 1
        self._guard(node.start)
        return node

    def change_membership(
        self, node_id: str, voters: Iterable[str], learners: Iterable[str] = (), force: bool = False
    ) -> tuple[int, int] | ConfigChangeRefused | None:
        """Propose the member list ``voters`` + ``learners`` at ``node_id``: its
        ``(index, term)``, the refusal, or None if the node is down or not the leader."""
        node = self.nodes[node_id]
        if node.core is None:
            return None
        voters, learners = sorted(voters), sorted(learners)
        self.stats["membership_changes"] += 1
        try:
            result = self._guard(node.change_membership, membership(voters, learners), force)
        except NotLeader:
            return None
        except ConfigChangeRefused as exc:
            self.stats["membership_refused"] += 1
            self.trace.add(self.now, "membership-refused", node_id, voters, learners, exc.reason)
            return exc
        self.trace.add(self.now, "membership", node_id, voters, learners, "force" if force else "", f"-> {result}")
        return result

    def retire(self, node_id: str) -> None:
        """``node_id`` applied its own removal: it stops and never comes back."""
        node = self.nodes[node_id]
        self.trace.add(self.now, "removed", node_id)
        self.stats["nodes_removed"] += 1
        node.crash()
        node.removed = True

    # -- actions (each recorded in the trace)

    def propose(self, node_id: str, data: bytes | None = None) -> tuple[int, int] | None:
        """Propose at ``node_id``; None if it is down or not the leader."""
        node = self.nodes[node_id]
        if node.core is None:
            return None
        if data is None:
            self._proposal_seq += 1
            data = b"p%d" % self._proposal_seq
        self.stats["proposals"] += 1
        try:
            index, term = self._guard(node.propose, data)
        except NotLeader:
            self.stats["proposals_rejected"] += 1
            return None
        self.trace.add(self.now, "propose", node_id, data, f"-> ({index}, {term})")
        return index, term

    def on_ack(self, node: SimNode, entry: Entry) -> None:
        self.acked.append(entry)
        self._max_acked = max(self._max_acked, entry.index)

    def read(self, node_id: str) -> int | None:
        """Start a linearizable read (ReadIndex) at ``node_id``; returns its read id. When
        the answer comes, its read index must cover every write acknowledged before now."""
        node = self.nodes[node_id]
        if node.core is None:
            return None
        self._read_seq += 1
        read_id = self._read_seq
        self._reads[(node_id, node.incarnation, read_id)] = self._max_acked
        self.stats["reads"] += 1
        self._guard(lambda: (node.core.read_index(read_id), node.drain()))
        return read_id

    def on_read_state(self, node: SimNode, read: ReadState) -> None:
        required = self._reads.pop((node.id, node.incarnation, read.read_id), None)
        if required is None:
            raise Violation(f"{node.id}: answer to read {read.read_id}, which it never asked (or asked before a crash)")
        if not read.success:
            self.stats["reads_failed"] += 1
            return
        self.stats["reads_ok"] += 1
        if read.read_index < required:
            raise Violation(
                f"linearizable read: {node.id} got read index {read.read_index} for read {read.read_id}, "
                f"but index {required} was acknowledged before the read began"
            )
        self.read_answers.append((node.id, read.read_id, read.read_index))

    def crash(self, node_id: str, how: str = "") -> None:
        node = self.nodes[node_id]
        if node.core is None:
            return
        self.trace.add(self.now, "crash", node_id, how, node.core.role.value, f"term {node.core.term}")
        self.stats["crashes"] += 1
        node.crash()
        self.check()

    def crash_during_next_ready(self, node_id: str, point: str) -> None:
        """Crash ``node_id`` part-way through handling its next ``Ready``: ``before_sync``
        (staged writes lost), ``after_sync`` (nothing sent), ``mid_send`` (half the
        messages sent) or ``after_send`` (sent, not applied)."""
        if point not in CRASH_POINTS:
            raise ValueError(point)
        node = self.nodes[node_id]
        if node.core is not None:
            self.trace.add(self.now, "crash-at", node_id, point)
            node.crash_point = point

    def restart(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.core is not None or node.removed:
            return
        self.trace.add(self.now, "restart", node_id)
        self.stats["restarts"] += 1
        self._guard(node.start)

    def snapshot(self, node_id: str) -> bool:
        node = self.nodes[node_id]
        if node.core is None:
            return False
        done = self._guard(node.take_snapshot)
        if done:
            self.trace.add(self.now, "snapshot", node_id, f"at {node.applied_index}")
        return done

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        groups = [list(g) for g in groups]
        self.trace.add(self.now, "partition", groups)
        self.network.partition(groups)

    def isolate(self, node_id: str) -> None:
        self.trace.add(self.now, "isolate", node_id)
        self.network.isolate(node_id)

    def cut_one_way(self, src: str, dst: str) -> None:
        self.trace.add(self.now, "cut", f"{src}->{dst}")
        self.network.cut_one_way(src, dst)

    def heal(self) -> None:
        self.trace.add(self.now, "heal")
        self.network.heal()

    def report_unreachable(self, src: str, dst: str) -> None:
        """Like a transport noticing a broken connection: tell the sender, a moment later."""
        if self.options.report_unreachable:
            self.call_later(1, self._unreachable, src, dst)

    def _unreachable(self, src: str, dst: str) -> None:
        node = self.nodes[src]
        if node.core is not None:
            node.core.report_unreachable(dst)
            node.drain()

    def _guard(self, fn: Callable[..., object], *args: object) -> object:
        """Run a direct action like an event: core exceptions become violations, then check."""
        try:
            result = fn(*args)
        except (NotLeader, ConfigChangeRefused):
            raise
        except Violation as exc:
            raise self._annotate(exc)
        except Exception as exc:
            raise self._annotate(Violation(f"exception during an action: {exc!r}")) from exc
        self.check()
        return result

    # -- scripted control

    def inject(self, msg: Message) -> None:
        """Hand ``msg`` to its destination now, as if it had just arrived."""
        self.trace.add(self.now, "inject", msg)
        self._guard(self.nodes[msg.dst].receive, msg)

    def sent(self, kind: type | None = None, src: str | None = None, dst: str | None = None) -> list[Message]:
        """Messages recorded since ``record_messages()``, filtered by type and endpoints."""
        log = self.network.sent_log or []
        return [
            m for m in log
            if (kind is None or isinstance(m, kind)) and (src is None or m.src == src) and (dst is None or m.dst == dst)
        ]

    def record_messages(self) -> None:
        self.network.sent_log = []

    def freeze(self, *node_ids: str) -> None:
        """Stop these nodes' timers (a paused process still handles messages)."""
        for node_id in node_ids:
            self.nodes[node_id].frozen = True

    def thaw(self, *node_ids: str) -> None:
        for node_id in node_ids or tuple(self.nodes):
            self.nodes[node_id].frozen = False

    def campaign(self, node_id: str) -> None:
        """Tick ``node_id`` directly until its election timer fires and it starts a new
        election (its term goes up), or it leads."""
        node = self.nodes[node_id]
        term = node.core.term
        for _ in range(4 * self.options.election_ticks):
            if node.core.term > term or node.core.role is Role.LEADER:
                return
            self._guard(node.tick)
        raise AssertionError(f"{node_id} did not campaign")

    def elect(self, node_id: str, attempts: int = 3, wait_ms: float = 500) -> SimNode:
        """Make ``node_id`` campaign now (again if it loses, up to ``attempts`` times) and
        run until it leads; fails otherwise."""
        node = self.nodes[node_id]
        for _ in range(attempts):
            self.campaign(node_id)
            if self.run_until(lambda: node.core.role is Role.LEADER, wait_ms):
                return node
        raise AssertionError(f"{node_id} was not elected: {node.core.status()}")

    # -- liveness

    def check_liveness(
        self, budget_ms: float | None = None, converge: bool = True, restart_crashed: bool = True
    ) -> float:
        """Heal the network, stop ambient faults, restart crashed nodes (but not removed
        ones; or, without ``restart_crashed``, require that a majority of the newest
        configuration's voters is up); then a leader must emerge and commit a fresh
        proposal within ``budget_ms`` (default: ten of the longest election timeouts). With
        ``converge``, every live member of the leader's configuration must then apply it
        too, and every acknowledged proposal. Returns the simulated ms it took."""
        self.stats["liveness_checks"] += 1
        self.heal()
        self.network.set_fault_rates()
        self.thaw()
        for node in self.nodes.values():
            node.crash_point = None
        if not self.options.vote_lease:
            self._stop_unaware_removed_servers()
        if restart_crashed:
            members = self.committed_members()
            for node in self.nodes.values():
                if node.core is None and (self.options.vote_lease or node.id in members):
                    self.restart(node.id)
        elif not self.majority_up():
            raise ValueError("liveness needs a majority of nodes up")
        budget = budget_ms if budget_ms is not None else 10 * self.options.election_timeout_ms
        start = self.now
        deadline = start + budget
        self._proposal_seq += 1
        data = b"live%d" % self._proposal_seq
        attempt: tuple[str, int, int] | None = None
        done: list[Entry] = []
        before = len(self.acked)

        def committed() -> bool:
            nonlocal attempt
            if not self.options.vote_lease:
                self._stop_unaware_removed_servers()
            if any(e.data == data for e in self.acked[before:]):
                return True
            leader = self.leader()
            if leader is not None and (attempt is None or attempt != (leader.id, leader.incarnation, leader.core.term)):
                attempt = (leader.id, leader.incarnation, leader.core.term)
                self.propose(leader.id, data)
            return False

        if not self.run_until(committed, deadline - self.now):
            raise self._annotate(
                Violation(
                    f"liveness: no proposal committed within {budget}ms of healing "
                    f"(leaders: {[(n.id, n.core.term) for n in self.leaders()]}, "
                    f"status: {[n.core.status() for n in self.up()]})"
                )
            )
        took = self.now - start
        if converge:
            target = max(e.index for e in self.acked if e.data == data)
            members = self.configuration().members()

            def converging() -> list[SimNode]:
                if not self.options.vote_lease:
                    self._stop_unaware_removed_servers()
                return [n for n in self.up() if n.id in members]

            if not self.run_until(lambda: all(n.applied_index >= target for n in converging()), deadline - self.now + budget):
                raise self._annotate(
                    Violation(
                        f"liveness: live nodes did not all apply index {target} "
                        f"({[(n.id, n.applied_index) for n in converging()]})"
                    )
                )
            self.checker.check_acked_applied(self.nodes.values())
            for entry in self.checker.acked.values():
                for node in converging():
                    if node.applied_index < entry.index:
                        raise self._annotate(Violation(f"acknowledged {entry} not applied on {node.id}"))
        return took
