"""Simulation of REAL ``leifdb.node.Node`` objects: several in one process, on one
``twisted.internet.task.Clock``, with in-memory disks and network.

Where ``tests/sim/cluster.py`` drives the pure core directly, this harness runs the node as
production does (its timers, Ready loop, group commit, snapshots, Deferreds) and replaces
only what ``Node`` lets us inject: ``open_storage`` (``SimAsyncStorage`` over ``MemoryStorage``, plus
``MemorySnapshotStore``) and ``make_transport`` (``SimTransport``
over ``SimNetwork``, which round-trips every message through the protobuf wire codec).

Faults: fsyncs take simulated time and a crash (``NodeSim.crash``) loses everything not yet
synced; messages are delayed, reordered (or kept FIFO per link), dropped, duplicated and
partitioned (both ways or one way), or held back and released later (``hold_if``); they
reach whichever incarnation of their destination is up when they arrive. Everything random
comes from one seed, so a run replays exactly.

``NodeSim`` also plays the clients and checks, after EVERY simulated event:

* no node stopped on a storage failure, and no client call failed in an unexpected way;
* at most one leader per term (``Node.status()``), plus the core-level Raft properties of
  ``tests.sim.invariants.SafetyChecker`` (election safety, log matching, leader
  completeness, committed prefixes never change) on the nodes' real cores;
* state machine safety: every node's key-value contents at applied index ``i`` equal every
  other node's at ``i`` and the replay of the committed log up to ``i``;
* acknowledged writes: the acknowledged ``ApplyResult`` is what the committed log's entry
  at its revision gives, and the entry is the command submitted;
* linearizable reads: a ``read_barrier`` that succeeded lets the node read at an applied
  index >= the revision of every write acknowledged before the read began, and >= every
  index any node had applied by then;

and, in ``settle()``: with the network healed and every node up, a leader emerges and a new
write is acknowledged within ten election timeouts; then all nodes converge to the leader's
contents and every acknowledged write is reflected (no acknowledged write is lost).
"""

from __future__ import annotations

import io
import itertools
import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from leifdb.errors import NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.kv.commands import ApplyResult, Command, Delete, Item, Put
from leifdb.kv.store import KVStore, condition_holds
from leifdb.node import Node
from leifdb.nodeconfig import NodeConfig
from leifdb.raft.messages import EntryType, Member, Message, Role, SnapshotMeta
from leifdb.raft.storage import MemoryStorage
from leifdb.storage.checksum import crc32c
from leifdb.storage.errors import ChunkOffsetError, SnapshotNotFound
from leifdb.storage.threaded import StorageQueue
from leifdb.wire import decode_command, decode_frame, encode_message
from tests.sim.invariants import SafetyChecker, Violation

__all__ = [
    "MemorySnapshotStore",
    "NodeReactor",
    "NodeSim",
    "SimAsyncStorage",
    "SimClock",
    "SimNetwork",
    "SimOptions",
    "SimTransport",
    "Violation",
]

KVState = tuple[tuple[str, str, int], ...]


# ---------------------------------------------------------------------------- time


class SimClock(Clock):
    """A ``task.Clock`` that calls ``after_event()`` after every delayed call it runs, so
    invariants are checked between any two events, and runs one due time at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.after_event: Callable[[], None] | None = None
        self.events = 0

    def callLater(self, delay: float, fn: Callable[..., object], *args: object, **kw: object):  # noqa: N802
        return super().callLater(max(0.0, delay), self._run, fn, args, kw)

    def _run(self, fn: Callable[..., object], args: tuple, kw: dict) -> None:
        self.events += 1
        fn(*args, **kw)
        if self.after_event is not None:
            self.after_event()

    def next_time(self) -> float | None:
        calls = self.getDelayedCalls()
        return calls[0].getTime() if calls else None

    def step(self) -> bool:
        """Run everything due at the next scheduled time (calls scheduled for "now" while
        doing so included). False if nothing is scheduled."""
        when = self.next_time()
        if when is None:
            return False
        self.advance(max(0.0, when - self.seconds()))
        return True


class _DeadCall:
    """What a crashed node's reactor hands out: a call that never runs."""

    def active(self) -> bool:
        return False

    def cancel(self) -> None:
        pass

    def getTime(self) -> float:  # noqa: N802
        return float("inf")


class NodeReactor:
    """The reactor as one node incarnation sees it: the shared clock, except that a crash
    (``kill``) cancels every call the incarnation scheduled and ignores new ones, as if
    its process had died."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._calls: list[Any] = []
        self.dead = False

    def seconds(self) -> float:
        return self._clock.seconds()

    def callLater(self, delay: float, fn: Callable[..., object], *args: object, **kw: object):  # noqa: N802
        if self.dead:
            return _DeadCall()
        call = self._clock.callLater(delay, fn, *args, **kw)
        if len(self._calls) > 256:
            self._calls = [c for c in self._calls if c.active()]
        self._calls.append(call)
        return call

    def kill(self) -> None:
        self.dead = True
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls = []


# ---------------------------------------------------------------------------- storage


class SimAsyncStorage(StorageQueue):
    """``ThreadedStorage``'s queue and group commit (the same class), but the "worker" is
    simulated time on the node's reactor: each job (a persist batch, or a ``call``) runs
    ``fsync_delay()`` seconds after the worker takes it, when the callers' Deferreds fire.
    A crash (``NodeReactor.kill`` + ``MemoryStorage.crash``) before then loses exactly what
    was not yet synced."""

    def __init__(
        self, storage: MemoryStorage, reactor: NodeReactor, fsync_delay: Callable[[], float]
    ) -> None:
        super().__init__(storage)
        self._reactor = reactor
        self._delay = fsync_delay

    def _run(self, function: Callable[..., Any], *args: Any) -> Deferred:
        d: Deferred = Deferred()

        def work() -> None:
            try:
                result: Any = function(*args)
            except Exception:
                result = Failure()
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

        self._reactor.callLater(self._delay(), work)
        return d


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


# ---------------------------------------------------------------------------- network


class SimNetwork:
    """Carries messages between the nodes registered with ``attach``.

    Each message is encoded and decoded with the wire codec (as TCP would), delayed by a
    random latency, and delivered to whichever incarnation of its destination is up at
    delivery time, unless the link is cut then. ``fifo`` keeps each link in order (like one
    TCP connection); otherwise latency reorders. ``drop_rate``/``dup_rate`` lose or
    duplicate messages at random. A message sent over a cut link is lost and, like a
    connection failure, reported to the sender's ``peer_unreachable`` (once per cut).
    Messages for which ``hold_if(msg)`` is true wait in ``held`` until ``release_held()``.

    Unlike TCP, a message in flight to a node that restarts reaches the new incarnation
    (a harsher, UDP-like model; Raft must not care)."""

    def __init__(
        self, clock: SimClock, rng: random.Random, *, latency: tuple[float, float], fifo: bool
    ) -> None:
        self.clock = clock
        self.rng = rng
        self.latency = latency
        self.fifo = fifo
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.nodes: dict[str, Node] = {}
        self._cut: set[tuple[str, str]] = set()
        self._reported: set[tuple[str, str]] = set()
        self._link_free: dict[tuple[str, str], float] = {}
        self.hold_if: Callable[[Message], bool] | None = None
        self.held: list[tuple[tuple[str, str], bytes]] = []
        self.sent = 0
        self.delivered = 0
        self.lost = 0

    def attach(self, node: Node) -> None:
        self.nodes[node.config.node_id] = node

    def detach(self, node_id: str, node: Node | None = None) -> None:
        if node is None or self.nodes.get(node_id) is node:
            self.nodes.pop(node_id, None)

    def connected(self, src: str, dst: str) -> bool:
        return (src, dst) not in self._cut

    def partition(self, groups: Iterable[Iterable[str]], all_ids: Iterable[str]) -> None:
        """Only nodes in the same group talk; nodes in no group are isolated."""
        group_of: dict[str, int] = {}
        for n, group in enumerate(groups):
            for node_id in group:
                group_of[node_id] = n
        ids = list(all_ids)
        for a in ids:
            for b in ids:
                if a != b and (a not in group_of or group_of.get(a) != group_of.get(b)):
                    self._cut.add((a, b))

    def cut_one_way(self, src: str, dst: str) -> None:
        self._cut.add((src, dst))

    def heal(self) -> None:
        self._cut.clear()
        self._reported.clear()

    def send(self, sender: Node, msg: Message) -> None:
        self.sent += 1
        link = (msg.src, msg.dst)
        payload = encode_message(msg, src_http_address=sender.config.http_address)
        if link in self._cut:
            self.lost += 1
            if link not in self._reported:
                self._reported.add(link)
                self.clock.callLater(self._latency(), self._unreachable, sender, msg.dst)
            return
        if self.rng.random() < self.drop_rate:
            self.lost += 1
            return
        if self.hold_if is not None and self.hold_if(msg):
            self.held.append((link, payload))
            return
        copies = 2 if self.rng.random() < self.dup_rate else 1
        for _ in range(copies):
            delay = self._latency()
            if self.fifo:
                at = max(self.clock.seconds() + delay, self._link_free.get(link, 0.0))
                self._link_free[link] = at
                delay = at - self.clock.seconds()
            self.clock.callLater(delay, self._deliver, link, payload)

    def release_held(self) -> None:
        """Deliver the messages ``hold_if`` kept back, after the usual latency."""
        held, self.held = self.held, []
        for link, payload in held:
            self.clock.callLater(self._latency(), self._deliver, link, payload)

    def _latency(self) -> float:
        lo, hi = self.latency
        return self.rng.uniform(lo, hi)

    def _deliver(self, link: tuple[str, str], payload: bytes) -> None:
        node = self.nodes.get(link[1])
        if node is None or link in self._cut:
            self.lost += 1
            return
        frame = decode_frame(payload)
        self.delivered += 1
        node.receive(frame.body, frame.src_http_address)

    def _unreachable(self, sender: Node, peer: str) -> None:
        if self.nodes.get(sender.config.node_id) is sender:
            sender.peer_unreachable(peer)


class SimTransport:
    """One node incarnation's view of ``SimNetwork``; ``stop()`` silences it."""

    def __init__(self, network: SimNetwork, node: Node) -> None:
        self._network = network
        self._node = node
        self.stopped = False

    def send(self, msg: Message) -> None:
        if not self.stopped:
            self._network.send(self._node, msg)

    def stop(self) -> Deferred:
        self.stopped = True
        self._network.detach(self._node.config.node_id, self._node)
        return defer.succeed(None)


# ---------------------------------------------------------------------------- clients


@dataclass
class WriteOp:
    """A client ``submit``. ``outcome``: pending, ok (acknowledged), fail (surely not
    written: NotLeaderError at submit) or unknown (may or may not have been applied)."""

    op_id: int
    node: str
    command: Command
    invoked_seq: int
    outcome: str = "pending"
    result: ApplyResult | None = None
    acked_seq: int | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return self.command.key


@dataclass
class ReadOp:
    """A ``read_barrier`` + ``kv.get``. ``required`` is what it must observe: the highest
    revision acknowledged and the highest index applied anywhere when it began."""

    op_id: int
    node: str
    key: str
    invoked_seq: int
    required_acked: int
    required_applied: int
    outcome: str = "pending"
    applied_index: int | None = None
    seen: Item | None = None
    error: str | None = None


# ---------------------------------------------------------------------------- the harness


@dataclass(frozen=True)
class SimOptions:
    """Shape of one simulated cluster; times in seconds."""

    nodes: int = 3
    election_timeout_ms: int = 250
    heartbeat_interval_ms: int = 50
    snapshot_entries: int = 10
    retain_snapshots: int = 2
    snapshot_chunk_bytes: int | None = 64
    latency: tuple[float, float] = (0.001, 0.012)
    fsync: tuple[float, float] = (0.0005, 0.004)
    slow_fsync_rate: float = 0.05
    slow_fsync: float = 0.04
    fifo: bool = False
    proposal_timeout: float = 2.0
    max_events_per_run: int = 200_000

    @property
    def election_timeout(self) -> float:
        return self.election_timeout_ms / 1000.0


class _Checked:
    """What ``SafetyChecker`` reads of a node: id, incarnation and the live core."""

    def __init__(self, node_id: str, incarnation: int, node: Node) -> None:
        self.id = node_id
        self.incarnation = incarnation
        self.node = node

    @property
    def core(self):
        node = self.node
        return None if node._stopping else node.core


@dataclass
class _Slot:
    """One member: its durable state outlives incarnations."""

    node_id: str
    disk: MemoryStorage
    snapshots: MemorySnapshotStore
    node: Node | None = None
    reactor: NodeReactor | None = None
    incarnation: int = 0
    stopping: bool = False
    last_applied: int = -1
    checked: _Checked | None = None


def kv_state(kv: KVStore) -> KVState:
    items, _more = kv.range()
    return tuple((i.key, i.value, i.revision) for i in items)


class NodeSim:
    """A cluster of real ``Node`` objects on a ``SimClock``, with clients and checkers.

    Drive it with ``run_for``/``step``/``run_until``, inject faults with ``partition``,
    ``isolate``, ``cut_one_way``, ``heal``, ``set_faults``, ``crash``, ``restart``,
    ``restart_gracefully``, act as clients with ``submit`` and ``read``, and end with
    ``settle()``. Any violated property raises ``Violation`` (an AssertionError) from the
    call that ran the offending event."""

    def __init__(self, options: SimOptions | None = None, *, seed: int = 0) -> None:
        self.options = opts = options or SimOptions()
        self.seed = seed
        self.rng = random.Random(f"net/{seed}")
        self._client_rng = random.Random(f"client/{seed}")
        self.clock = SimClock()
        self.network = SimNetwork(self.clock, self.rng, latency=self.options.latency, fifo=self.options.fifo)
        self.ids = [f"n{i + 1}" for i in range(self.options.nodes)]
        self.members = tuple(Member(i, f"{i}:7000", f"{i}:8000") for i in self.ids)
        self.slots = {
            i: _Slot(i, MemoryStorage(), MemorySnapshotStore(opts.retain_snapshots, opts.snapshot_chunk_bytes))
            for i in self.ids
        }
        self.checker = SafetyChecker()
        self.writes: list[WriteOp] = []
        self.reads: list[ReadOp] = []
        self._op_ids = itertools.count(1)
        self.seq = 0
        self.max_applied = 0
        self.max_acked = 0
        self.leader_of_term: dict[int, str] = {}
        self.states: dict[int, tuple[KVState, str]] = {}
        self._ref = KVStore()
        self._ref_results: dict[int, tuple[Command | None, ApplyResult | None]] = {}
        self._unverified_acks: list[WriteOp] = []
        self._problems: list[str] = []
        self.trace: deque[str] = deque(maxlen=60)
        self.clock.after_event = self.check
        for node_id in self.ids:
            self._start(node_id)

    # -- time

    @property
    def now(self) -> float:
        return self.clock.seconds()

    def step(self) -> bool:
        return self.clock.step()

    def run_for(self, seconds: float) -> None:
        target = self.now + seconds
        budget = self.options.max_events_per_run
        while (when := self.clock.next_time()) is not None and when <= target:
            before = self.clock.events
            self.clock.step()
            budget -= self.clock.events - before + 1
            if budget < 0:
                raise Violation(f"runaway: more than {self.options.max_events_per_run} events in {seconds}s")
        if target > self.now:
            self.clock.advance(target - self.now)

    def run_until(self, predicate: Callable[[], bool], seconds: float) -> bool:
        deadline = self.now + seconds
        events = 0
        while not predicate():
            when = self.clock.next_time()
            if when is None or when > deadline:
                return False
            self.clock.step()
            events += 1
            if events > self.options.max_events_per_run:
                raise Violation("runaway: too many events")
        return True

    # -- membership of the running cluster

    def node(self, node_id: str) -> Node | None:
        slot = self.slots[node_id]
        return None if slot.stopping else slot.node

    def up(self) -> list[Node]:
        return [n for i in self.ids if (n := self.node(i)) is not None]

    def down(self) -> list[str]:
        return [i for i in self.ids if self.slots[i].node is None and not self.slots[i].stopping]

    def leader(self) -> Node | None:
        """The live node that believes it leads in the highest term, if any."""
        best = None
        for node in self.up():
            core = node.core
            if core is not None and core.role is Role.LEADER and (best is None or core.term > best.core.term):
                best = node
        return best

    # -- faults

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        groups = [list(g) for g in groups]
        self._note("partition", groups)
        self.network.partition(groups, self.ids)

    def isolate(self, node_id: str) -> None:
        self._note("isolate", node_id)
        rest = [i for i in self.ids if i != node_id]
        self.network.partition([[node_id], rest], self.ids)

    def cut_one_way(self, src: str, dst: str) -> None:
        self._note("cut", src, "->", dst)
        self.network.cut_one_way(src, dst)

    def heal(self) -> None:
        self._note("heal")
        self.network.heal()

    def set_faults(self, drop_rate: float, dup_rate: float) -> None:
        self._note("faults", drop_rate, dup_rate)
        self.network.drop_rate = drop_rate
        self.network.dup_rate = dup_rate

    def crash(self, node_id: str) -> None:
        """The process dies: timers, in-flight fsyncs and unsynced data are gone; the
        clients' pending calls on it will never be answered (outcome unknown)."""
        slot = self.slots[node_id]
        if slot.node is None or slot.stopping:
            return
        self._note("crash", node_id)
        slot.reactor.kill()
        self.network.detach(node_id)
        slot.disk.crash()
        slot.snapshots.crash()
        self._forget(slot)
        for op in self.writes:
            if op.outcome == "pending" and op.node == node_id:
                op.outcome, op.error = "unknown", "node crashed"
        for read in self.reads:
            if read.outcome == "pending" and read.node == node_id:
                read.outcome = "lost"

    def restart(self, node_id: str) -> None:
        slot = self.slots[node_id]
        if slot.node is None and not slot.stopping:
            self._note("restart", node_id)
            self._start(node_id)

    def restart_gracefully(self, node_id: str) -> None:
        """``Node.stop()`` (transport, then storage drains and closes), then a new node."""
        slot = self.slots[node_id]
        if slot.node is None or slot.stopping:
            return
        self._note("stop", node_id)
        slot.stopping = True
        d = slot.node.stop()

        def stopped(result: object) -> None:
            if isinstance(result, Failure):
                self._problems.append(f"{node_id}.stop() failed: {result.getTraceback()}")
            slot.reactor.kill()
            self.network.detach(node_id)
            self._forget(slot)
            slot.stopping = False
            self._note("restart", node_id)
            self._start(node_id)

        d.addBoth(stopped)

    def _forget(self, slot: _Slot) -> None:
        slot.node = None
        slot.reactor = None
        slot.checked = None
        slot.last_applied = -1
        self.checker.forget_node(slot.node_id)

    def _start(self, node_id: str) -> None:
        slot = self.slots[node_id]
        slot.incarnation += 1
        reactor = NodeReactor(self.clock)
        opts = self.options
        config = NodeConfig(
            node_id=node_id,
            members=self.members,
            http_address=f"{node_id}:8000",
            http_port=8000,
            raft_listen_port=7000,
            data_dir=Path("/nonexistent/leifdb-sim") / node_id,
            election_timeout_ms=opts.election_timeout_ms,
            heartbeat_interval_ms=opts.heartbeat_interval_ms,
            snapshot_entries=opts.snapshot_entries,
            retain_snapshots=opts.retain_snapshots,
        )
        fsync_rng = random.Random(f"fsync/{self.seed}/{node_id}/{slot.incarnation}")

        def fsync_delay() -> float:
            if fsync_rng.random() < opts.slow_fsync_rate:
                return opts.slow_fsync
            return fsync_rng.uniform(*opts.fsync)

        def open_storage(_config: NodeConfig, node_reactor: Any) -> tuple[SimAsyncStorage, Any]:
            return SimAsyncStorage(slot.disk, node_reactor, fsync_delay), slot.snapshots

        def make_transport(node: Node) -> SimTransport:
            self.network.attach(node)
            return SimTransport(self.network, node)

        node = Node(
            config,
            reactor=reactor,
            rng=random.Random(f"node/{self.seed}/{node_id}/{slot.incarnation}"),
            open_storage=open_storage,
            make_transport=make_transport,
            proposal_timeout=opts.proposal_timeout,
        )
        slot.node, slot.reactor = node, reactor
        slot.checked = _Checked(node_id, slot.incarnation, node)
        d = node.start()
        d.addErrback(lambda f: self._problems.append(f"{node_id} failed to start: {f.getTraceback()}"))

    # -- clients

    def submit(self, node_id: str, command: Command) -> WriteOp:
        """``Node.submit`` at ``node_id`` (down or stopping: refused like NotLeader)."""
        op = WriteOp(next(self._op_ids), node_id, command, self.seq)
        self.writes.append(op)
        node = self.node(node_id)
        if node is None:
            op.outcome, op.error = "fail", "node down"
            return op
        try:
            d = node.submit(command)
        except NotLeaderError:
            op.outcome, op.error = "fail", "not leader"
            return op
        self._note("submit", node_id, command)
        d.addCallbacks(self._write_acked, self._write_failed, callbackArgs=(op,), errbackArgs=(op,))
        return op

    def _write_acked(self, result: ApplyResult, op: WriteOp) -> None:
        if op.outcome != "pending":
            self._problems.append(f"write {op} answered twice (now with {result})")
            return
        op.outcome, op.result, op.acked_seq = "ok", result, self.seq
        self._note("ack", op.node, op.command, result)
        command = op.command
        if not isinstance(result, ApplyResult) or result.revision <= 0:
            self._problems.append(f"write {op} acknowledged with {result!r}")
            return
        if result.ok:
            want = Item(command.key, command.value, result.revision) if isinstance(command, Put) else None
            if result.current != want:
                self._problems.append(f"acknowledged {command} reports {result.current}, expected {want}")
        elif condition_holds(command.condition, result.current):
            self._problems.append(f"{command} failed its condition, yet it holds of {result.current}")
        self.max_acked = max(self.max_acked, result.revision)
        self._unverified_acks.append(op)

    def _write_failed(self, failure: Failure, op: WriteOp) -> None:
        if op.outcome not in ("pending", "unknown"):
            self._problems.append(f"write {op} answered twice (now with {failure.value!r})")
            return
        op.outcome, op.error = "unknown", repr(failure.value)
        if not failure.check(OutcomeUnknown):
            self._problems.append(
                f"submit {op.command} at {op.node} failed unexpectedly: {failure.getTraceback()}"
            )

    def read(self, node_id: str, key: str) -> ReadOp:
        """``read_barrier()`` at ``node_id``, then ``kv.get(key)`` when it fires."""
        op = ReadOp(next(self._op_ids), node_id, key, self.seq, self.max_acked, self.max_applied)
        self.reads.append(op)
        node = self.node(node_id)
        if node is None:
            op.outcome, op.error = "fail", "node down"
            return op
        try:
            d = node.read_barrier()
        except NotLeaderError:
            op.outcome, op.error = "fail", "node starting"
            return op
        d.addCallbacks(self._read_ready, self._read_failed, callbackArgs=(op, node), errbackArgs=(op,))
        return op

    def _read_ready(self, _: object, op: ReadOp, node: Node) -> None:
        if op.outcome != "pending":
            self._problems.append(f"read {op} answered twice")
            return
        kv = node.kv
        op.outcome, op.applied_index, op.seen = "ok", kv.applied_index, kv.get(op.key)
        self._note("read", op.node, op.key, "->", op.seen, "at", op.applied_index)
        if op.applied_index < op.required_acked:
            self._problems.append(
                f"stale read: {op.node} read {op.key!r} at applied index {op.applied_index}, but a write "
                f"with revision {op.required_acked} was acknowledged before the read began"
            )
        elif op.applied_index < op.required_applied:
            self._problems.append(
                f"stale read: {op.node} read {op.key!r} at applied index {op.applied_index}, but index "
                f"{op.required_applied} was already applied (so committed) when the read began"
            )

    def _read_failed(self, failure: Failure, op: ReadOp) -> None:
        op.outcome, op.error = "fail", repr(failure.value)
        if not failure.check(NotLeaderError, Unavailable):
            self._problems.append(f"read at {op.node} failed unexpectedly: {failure.getTraceback()}")

    # -- invariants

    def check(self) -> None:
        """Every per-event property; raises ``Violation``. Runs after every event."""
        self.seq += 1
        if self._problems:
            raise self._violation(self._problems[0])
        checked = []
        for node_id in self.ids:
            slot = self.slots[node_id]
            node = slot.node
            if node is None:
                continue
            if node._failed is not None:
                trace = node._failed.getTraceback()
                raise self._violation(f"{node_id} stopped on a storage failure: {trace}")
            if node.core is None:
                continue
            checked.append(slot.checked)
            if node.core.role is Role.LEADER and not node._stopping:
                st = node.status()
                if st["role"] != "leader":
                    raise self._violation(f"{node_id} leads in its core but status() says {st}")
                owner = self.leader_of_term.setdefault(st["term"], node_id)
                if owner != node_id:
                    raise self._violation(f"two leaders in term {st['term']}: {owner} and {node_id}")
            kv = node.kv
            if kv.applied_index != slot.last_applied:
                slot.last_applied = kv.applied_index
                self.max_applied = max(self.max_applied, kv.applied_index)
                self._observe_state(kv.applied_index, kv_state(kv), node_id)
        try:
            self.checker.check(checked)
        except Violation as exc:
            raise self._violation(str(exc)) from None
        self._replay_committed()

    def _observe_state(self, index: int, state: KVState, who: str) -> None:
        known = self.states.get(index)
        if known is None:
            self.states[index] = (state, who)
        elif known[0] != state:
            raise self._violation(
                f"state machine safety: at applied index {index}, {who} holds {_fmt(state)} "
                f"but {known[1]} held {_fmt(known[0])}"
            )

    def _replay_committed(self) -> None:
        """Apply newly known committed entries to a reference store; check acks against it."""
        committed = self.checker.committed
        ref = self._ref
        while ref.applied_index < len(committed):
            entry = committed[ref.applied_index]
            if entry.type is EntryType.NORMAL:
                command = decode_command(entry.data)
                self._ref_results[entry.index] = (command, ref.apply(entry.index, command))
            else:
                ref.note_applied(entry.index)
                self._ref_results[entry.index] = (None, None)
            self._observe_state(entry.index, kv_state(ref), "the committed log")
        if self._unverified_acks:
            pending = []
            for op in self._unverified_acks:
                got = self._ref_results.get(op.result.revision)
                if got is None:
                    pending.append(op)
                elif got != (op.command, op.result):
                    raise self._violation(
                        f"acknowledged {op.command} -> {op.result} at {op.node}, but the committed log "
                        f"holds {got[0]} -> {got[1]} at index {op.result.revision}"
                    )
            self._unverified_acks = pending

    def _violation(self, message: str) -> Violation:
        trace = "\n  ".join(self.trace)
        return Violation(f"{message}\n[seed {self.seed}, t={self.now:.3f}s] recent events:\n  {trace}")

    def _note(self, *what: object) -> None:
        self.trace.append(f"{self.now:8.3f} " + " ".join(str(w) for w in what))

    # -- the end of a run

    def settle(self) -> float:
        """Heal everything, restart every node, require a leader and an acknowledged write
        within ten election timeouts (liveness), let all nodes converge, and check that
        no acknowledged write was lost. Returns how long the write took (seconds)."""
        self.heal()
        self.set_faults(0.0, 0.0)
        start = self.now
        budget = 10 * self.options.election_timeout
        self.run_until(lambda: not any(s.stopping for s in self.slots.values()), budget)
        for node_id in self.down():
            self.restart(node_id)
        probe: list[WriteOp] = []

        def acknowledged() -> bool:
            if probe and probe[-1].outcome == "ok":
                return True
            if not probe or probe[-1].outcome != "pending":
                leader = self.leader()
                if leader is not None:
                    op = self.submit(leader.config.node_id, Put("live", f"probe{len(probe)}"))
                    probe.append(op)
            return False

        if not self.run_until(acknowledged, start + budget - self.now):
            raise self._violation(
                f"liveness: no write acknowledged within {budget:.2f}s (10 election timeouts) after healing; "
                f"status: {[n.status() for n in self.up()]}"
            )
        took = self.now - start
        if not self.run_until(self._converged, 20 * self.options.election_timeout):
            raise self._violation(f"nodes did not converge: {[n.status() for n in self.up()]}")
        self.check_no_acknowledged_write_lost()
        return took

    def _converged(self) -> bool:
        leader = self.leader()
        if leader is None or len(self.up()) != len(self.ids):
            return False
        st = leader.status()
        if st["commit_index"] != st["last_index"]:
            return False
        return all(n.kv.applied_index == st["commit_index"] for n in self.up()) and not any(
            op.outcome == "pending" for op in self.writes if self.node(op.node) is not None
        )

    def check_no_acknowledged_write_lost(self) -> None:
        """On a converged cluster: every node holds the leader's contents and applied
        index; every acknowledged write is at or below it; and each key holds what its
        last write left, when that last write is known: the acknowledged write with the
        highest revision, unless a write of uncertain outcome may have followed it. A put
        of uncertain outcome is resolved through the committed log (values are unique, and
        on a converged cluster an entry the leader's log lacks can never commit); a delete
        of uncertain outcome leaves its key unchecked."""
        leader = self.leader()
        assert leader is not None
        final = kv_state(leader.kv)
        applied = leader.kv.applied_index
        for node in self.up():
            if kv_state(node.kv) != final or node.kv.applied_index != applied:
                raise self._violation(
                    f"{node.config.node_id} holds {_fmt(kv_state(node.kv))} at {node.kv.applied_index}, "
                    f"leader {leader.config.node_id} holds {_fmt(final)} at {applied}"
                )
        in_log = {
            (cmd.key, cmd.value): (index, result)
            for index, (cmd, result) in self._ref_results.items()
            if isinstance(cmd, Put)
        }
        last: dict[str, tuple[int, Item | None, WriteOp]] = {}
        uncertain: set[str] = set()
        for op in self.writes:
            if op.outcome == "ok":
                if op.result.revision > applied:
                    raise self._violation(f"acknowledged {op.command}@{op.result.revision} is past {applied}")
                index, result = op.result.revision, op.result
            elif op.outcome in ("unknown", "pending"):
                if isinstance(op.command, Delete):
                    uncertain.add(op.key)
                    continue
                found = in_log.get((op.key, op.command.value))
                if found is None:
                    continue
                index, result = found
            else:
                continue
            if result.ok and (op.key not in last or last[op.key][0] < index):
                last[op.key] = (index, result.current, op)
        for key, (index, want, op) in last.items():
            if key in uncertain:
                continue
            item = leader.kv.get(key)
            if item != want:
                raise self._violation(
                    f"acknowledged write lost: the last write of {key!r} is {op.command} at revision {index} "
                    f"({op.outcome}), leaving {want}, but the cluster holds {item}"
                )


def _fmt(state: KVState) -> str:
    return "{" + ", ".join(f"{k}={v}@{r}" for k, v, r in state) + "}"
