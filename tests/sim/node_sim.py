"""Simulation of REAL ``leifdb.node.Node`` objects: several in one process, on one
``twisted.internet.task.Clock``, with in-memory disks and network.

Where ``tests/sim/cluster.py`` drives the pure core directly, this harness runs the node as
production does (its timers, Ready loop, group commit, snapshots, Deferreds) and replaces
only what ``Node`` lets us inject: ``open_storage`` (``SimAsyncStorage`` over ``SimDisk``, a
``MemoryStorage``, plus ``MemorySnapshotStore``) and ``make_transport`` (``SimTransport``
over ``SimNetwork``, which round-trips every message through the protobuf wire codec).

With ``SimOptions(storage="simfs")`` each node instead runs the real ``DiskStorage`` and
``SnapshotStore`` over its own ``leifdb.storage.simfs.SimFileSystem`` (still under
``SimAsyncStorage``): a crash keeps the page cache, and ``power_cut``/``power_cut_all`` (one
node, or every node at once) keep only what was fsynced, sometimes plus a seeded random
part of the unsynced writes, torn.

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
* transactions (``txn``): one that writes is acknowledged with the ``TxnResult`` the
  committed log's entry at its revision gives; a read-only one (served after the barrier,
  or ``stale`` at once) reads at a revision >= the above (unless stale), and its result is
  the transaction evaluated on the committed log's state at that revision;
* watches (``watch``; ``SimWatcher``): the reference change log is the events of replaying
  the committed log. Each watcher's stream, across crashes, stops, snapshot installs,
  leader changes and reconnections (resumed at a random node from its position + 1), is
  ordered (revisions increase), unique (no revision twice), atomic (one ``events()`` call
  per revision, holding all its matching changes), reliable (every matching change of the
  reference from its start to its position, with equal fields, outside recorded gaps: a
  ``compacted``/``overflow`` close or a ``Compacted`` refusal, after which it re-watches
  from the current revision), resumable (a re-attachment starts right after its position)
  and bookmarkable (a ``progress(R)`` comes after every earlier event, before every later
  one, and covers every matching reference change up to ``R``); nothing reaches a
  cancelled or dead attachment, or a sink that asked to pause;

* leases (``SimLeases``, ``NodeSim.leases``, in ``tests/sim/node_leases.py``): the state
  compared above includes the lease table with each lease's keys; every replica's applied
  changes at each index equal the committed log's (lease revocations and the keys they
  delete included); no lease is expired before ``t + ttl`` of an acknowledged grant or
  keepalive issued at ``t``; a lease's keys are deleted at the revision it ends, and every
  key on a lease is one of its keys;

and, in ``settle()``: with the network healed and every node up, a leader emerges and a new
write is acknowledged within ten election timeouts; then all nodes converge to the leader's
contents, every acknowledged write (or transaction) is reflected (no acknowledged write is
lost), and every watcher catches up with the committed log once clients stop pushing back.
"""

from __future__ import annotations

import bisect
import io
import itertools
import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from leifdb.errors import Compacted, LeaseNotFound, NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.kv import snapshot as kv_snapshot
from leifdb.kv.commands import (
    ApplyResult,
    Command,
    Delete,
    Event,
    Item,
    Lease,
    LeaseRevoke,
    Put,
    Txn,
    TxnResult,
)
from leifdb.kv.history import matches
from leifdb.kv.store import KVStore, condition_holds
from leifdb.node import Node
from leifdb.service.api import CONSISTENCY_LINEARIZABLE, ServiceLimits, WriteResult
from leifdb.service.kvservice import KVService
from leifdb.nodeconfig import NodeConfig
from leifdb.raft.messages import Entry, EntryType, Member, Message, RequestVoteReply, Role
from leifdb.raft.storage import MemoryStorage
from leifdb.storage import DiskStorage, SnapshotStore
from leifdb.storage.errors import StorageClosed
from leifdb.storage.memory import MemorySnapshotStore
from leifdb.storage.simfs import SimFileSystem
from leifdb.storage.threaded import StorageQueue
from leifdb.wire import decode_command, decode_frame, encode_message
from tests.sim.invariants import SafetyChecker, Violation
from tests.sim.node_leases import SimLeases

__all__ = [
    "MemorySnapshotStore",
    "NodeReactor",
    "NodeSim",
    "SimAsyncStorage",
    "SimClock",
    "SimDisk",
    "SimNetwork",
    "SimOptions",
    "SimTransport",
    "SimWatcher",
    "TxnCall",
    "Violation",
]

# The whole replicated state: every item in key order, and every lease (with its keys) by id.
KVState = tuple[tuple[Item, ...], tuple[Lease, ...]]


# ---------------------------------------------------------------------------- time


class SimClock(Clock):
    """A ``task.Clock`` that calls ``after_event()`` after every delayed call it runs, so
    invariants are checked between any two events, and runs one due time at a time.

    The same order as ``Clock`` (by time, then by scheduling order), without its sort of
    every pending call on every ``callLater`` and every call run: a new call is inserted
    after the last one due no later (bisect), so the list stays sorted. (``Clock`` re-sorts
    for ``DelayedCall.reset``/``delay``, which nothing scheduled here uses.)"""

    def __init__(self) -> None:
        super().__init__()
        self.after_event: Callable[[], None] | None = None
        self.events = 0

    def callLater(self, delay: float, fn: Callable[..., object], *args: object, **kw: object):  # noqa: N802
        calls = self.calls
        call = DelayedCall(
            self.rightNow + max(0.0, delay), self._run, (fn, args, kw), {}, calls.remove, _ignore, self.seconds
        )
        bisect.insort_right(calls, call, key=DelayedCall.getTime)
        return call

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        calls = self.calls
        while calls and calls[0].getTime() <= self.rightNow:
            call = calls.pop(0)
            call.called = 1
            call.func(*call.args, **call.kw)

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


def _ignore(call: object) -> None:
    pass


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


class SimDisk(MemoryStorage):
    """``MemoryStorage`` that, like ``leifdb.storage.disklog.DiskLog``, ignores appended
    entries at or below the snapshot boundary (the snapshot holds them).

    The node may persist a ``Ready``'s entries after compacting to a snapshot installed in
    the same ``Ready`` (the snapshot first, then the entries): ``MemoryStorage.append``
    keeps them, leaving a log that starts below its snapshot, and the next start fails
    with ``LogInvariantError: entry N does not follow last index S``."""

    def append(self, entries: Sequence[Entry]) -> None:
        boundary = self._durable.snapshot.last_included_index
        super().append([e for e in entries if e.index > boundary])


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
        self.on_deliver: Callable[[Message], None] = lambda msg: None
        self.held: list[tuple[tuple[str, str], bytes]] = []
        self.sent = 0
        self.delivered = 0
        self.lost = 0

    def attach(self, endpoint: SimTransport) -> None:
        self.nodes[endpoint.node_id] = endpoint

    def detach(self, node_id: str, endpoint: SimTransport | None = None) -> None:
        if endpoint is None or self.nodes.get(node_id) is endpoint:
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

    def send(self, sender: SimTransport, msg: Message) -> None:
        self.sent += 1
        link = (msg.src, msg.dst)
        payload = encode_message(msg, src_http_address=sender.http_address)
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
        self.on_deliver(frame.body)
        node.on_message(frame.body, frame.src_http_address)

    def _unreachable(self, sender: SimTransport, peer: str) -> None:
        if self.nodes.get(sender.node_id) is sender:
            sender.on_unreachable(peer)


class SimTransport:
    """One node incarnation's ``leifdb.ports.Transport`` on ``SimNetwork``; ``stop()``
    silences it."""

    def __init__(self, network: SimNetwork, node_id: str, http_address: str) -> None:
        self._network = network
        self.node_id = node_id
        self.http_address = http_address
        self.on_message: Callable[[Message, str], None] = lambda msg, http: None
        self.on_unreachable: Callable[[str], None] = lambda peer: None
        self.stopped = False
        self.peers: dict[str, tuple[str, int]] = {}

    def attach(self, on_message: Callable[[Message, str], None],
               on_peer_unreachable: Callable[[str], None]) -> None:
        self.on_message, self.on_unreachable = on_message, on_peer_unreachable
        if not self.stopped:
            self._network.attach(self)

    def send(self, msg: Message) -> None:
        if not self.stopped:
            self._network.send(self, msg)

    def update_peers(self, peers: Mapping[str, tuple[str, int]]) -> None:
        """Membership changed: the simulated network reaches every node, so only remember
        the set (a test can look at it)."""
        self.peers = dict(peers)

    def stop(self) -> Deferred:
        self.stopped = True
        self._network.detach(self.node_id, self)
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
    invoked_at: float = 0.0

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


@dataclass
class TxnCall:
    """A client ``service.txn``. A transaction that writes is checked like a ``WriteOp``
    (its ``TxnResult`` against the committed log's entry at its revision); a read-only one
    like a ``ReadOp`` (served at a revision >= ``required``) and its result against the
    committed log's state at that revision. ``outcome`` as for ``WriteOp``, plus ``fail``
    for a read-only one that was refused."""

    op_id: int
    node: str
    txn: Txn
    invoked_seq: int
    required_acked: int
    required_applied: int
    consistency: str = CONSISTENCY_LINEARIZABLE
    outcome: str = "pending"
    result: TxnResult | None = None
    error: str | None = None

    @property
    def writes(self) -> bool:
        return not self.txn.read_only


@dataclass(eq=False)
class SimWatcher:
    """A client of ``service.watch`` that outlives the nodes it watches through: when its
    node crashes or stops it is re-attached to another node from ``position + 1`` (like an
    SSE client sending Last-Event-ID); after a ``compacted`` or ``overflow`` close, or a
    ``Compacted`` refusal, it skips to the current revision, and the revisions skipped are
    a recorded gap. ``stall_rate``: how often ``events()`` answers False (back-pressure);
    it resumes after ``stall_for`` seconds.

    The stream is checked as it arrives (ordered, unique, atomic: one revision per call,
    only matching keys, nothing after a bookmark or before the attachment's start) and,
    once the committed log gets there, against the reference change log (reliable: every
    matching change of every revision from ``start`` to ``position`` outside the gaps, with
    equal fields; bookmarkable: a bookmark at R covers every change up to R)."""

    wid: int
    key: str
    prefix: bool
    stall_rate: float = 0.0
    stall_for: tuple[float, float] = (0.001, 0.2)
    node: str | None = None
    handle: Any = None
    generation: int = 0
    start: int = 0  # the first revision the stream covers
    attach_start: int = 0  # the start revision of the current attachment
    base: int = 0  # the position an attachment or skip started from
    last_event: int = 0
    bookmark: int = 0
    verified: int = 0  # checked against the reference up to here
    stalled: bool = False
    skip_to_current: bool = False
    attachments: int = 0
    events_seen: int = 0
    bookmarks_seen: int = 0
    closes: list[str] = field(default_factory=list)  # why attachments ended
    gap_log: list[tuple[int, int, str]] = field(default_factory=list)  # (first, last, why)
    received: list[tuple[int, tuple[Event, ...]]] = field(default_factory=list)  # for tests
    pending: deque = field(default_factory=deque)  # (revision, events) not yet checked
    gaps: deque = field(default_factory=deque)  # (first, last) not yet passed by the check

    @property
    def position(self) -> int:
        """Every matching change up to here was delivered (the Last-Event-ID)."""
        return max(self.base, self.last_event, self.bookmark)

    def __str__(self) -> str:
        what = f"prefix {self.key!r}" if self.prefix else f"key {self.key!r}"
        return f"watcher {self.wid} ({what} on {self.node}, at {self.position})"


class _WatchSink:
    """One attachment of a ``SimWatcher`` (a ``WatchSink``): calls are forwarded with the
    attachment's generation, so anything a dead or cancelled attachment delivers is noticed."""

    def __init__(self, sim: NodeSim, watcher: SimWatcher, generation: int) -> None:
        self._sim, self._watcher, self._generation = sim, watcher, generation

    def events(self, events: list[Event]) -> bool:
        return self._sim._watch_events(self._watcher, self._generation, events)

    def progress(self, revision: int) -> None:
        self._sim._watch_progress(self._watcher, self._generation, revision)

    def closed(self, reason: str, compact_revision: int | None = None) -> None:
        self._sim._watch_closed(self._watcher, self._generation, reason, compact_revision)


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
    limits: ServiceLimits = ServiceLimits(progress_interval=0.25)
    # "memory": ``SimDisk`` + ``MemorySnapshotStore`` per node; "simfs": the real
    # ``DiskStorage`` + ``SnapshotStore`` over a ``SimFileSystem`` per node (what a power
    # cut keeps is what was fsynced; see ``NodeSim.power_cut``).
    storage: str = "memory"
    segment_size: int = 16384  # simfs: small, so segments roll over

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
    disk: MemoryStorage | DiskStorage | None
    snapshots: MemorySnapshotStore | SnapshotStore | None
    fs: SimFileSystem | None = None  # simfs mode: the node's disk (disk/snapshots per incarnation)
    node: Node | None = None
    reactor: NodeReactor | None = None
    incarnation: int = 0
    stopping: bool = False
    last_applied: int = -1
    checked: _Checked | None = None
    led_term: int | None = None


def kv_state(kv: KVStore) -> KVState:
    items, _more = kv.range()
    return tuple(items), tuple(kv.lease(lease.id) for lease in kv.leases())


def _written(item: Item | None) -> tuple[str, str, int] | None:
    """What a write decides of an item, and all that the acknowledgement checks track."""
    return None if item is None else (item.key, item.value, item.revision)


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
        self.network.on_deliver = self._on_deliver
        self.ids = [f"n{i + 1}" for i in range(self.options.nodes)]
        self.members = tuple(Member(i, f"{i}:7000", f"{i}:8000") for i in self.ids)
        if opts.storage == "memory":
            self.slots = {
                i: _Slot(i, SimDisk(), MemorySnapshotStore(opts.retain_snapshots, opts.snapshot_chunk_bytes))
                for i in self.ids
            }
        elif opts.storage == "simfs":
            self.slots = {i: _Slot(i, None, None, fs=SimFileSystem()) for i in self.ids}
        else:
            raise ValueError(f"unknown storage mode {opts.storage!r}")
        self._power_rng = random.Random(f"power/{seed}")
        self.power_cuts = 0
        self.checker = SafetyChecker()
        self.services: dict[Node, KVService] = {}
        self.writes: list[WriteOp] = []
        self.reads: list[ReadOp] = []
        self.txns: list[TxnCall] = []
        self.watchers: list[SimWatcher] = []
        self._detached: list[SimWatcher] = []
        self._watch_rng = random.Random(f"watch/{seed}")
        self._unverified_txn_acks: list[TxnCall] = []
        self._unverified_txn_reads: list[TxnCall] = []
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
        self.leases = SimLeases(self)
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

    def kv(self, node_id: str) -> KVStore:
        """The applied state of the node up as ``node_id``."""
        return self.services[self.slots[node_id].node].kv

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
        self._kill(node_id)
        if slot.fs is not None:
            slot.fs.crash()  # descriptors and the lock go; the page cache stays
        else:
            slot.disk.crash()
            slot.snapshots.crash()

    def power_cut(self, node_id: str) -> None:
        """The machine loses power: the process dies as in ``crash`` (also while it was
        stopping gracefully) and, in simfs mode, its file system keeps only what was made
        durable, sometimes (seeded) plus a random part of the unsynced writes and renames,
        the next write possibly torn. In memory mode it is ``crash`` (the same loss).
        The node stays down until ``restart`` (or ``settle``)."""
        slot = self.slots[node_id]
        if slot.node is None:
            if slot.fs is not None:  # already down: its cache was flushed or lost on the cut before
                self._cut_power(slot)
            return
        self._note("power cut", node_id)
        self._kill(node_id)
        if slot.fs is not None:
            self._cut_power(slot)
        else:
            slot.disk.crash()
            slot.snapshots.crash()

    def power_cut_all(self, *, restart: bool = True) -> None:
        """A cluster-wide power cut: every node at once (``power_cut``), then, if
        ``restart``, every node boots again."""
        self._note("power cut of every node")
        self.power_cuts += 1
        for node_id in self.ids:
            self.power_cut(node_id)
        if restart:
            for node_id in self.ids:
                self.restart(node_id)

    def _cut_power(self, slot: _Slot) -> None:
        rng = self._power_rng
        keep = rng.random() < 0.5
        slot.fs.power_cut(rng, keep_unsynced=keep, zero_fill=keep and rng.random() < 0.5)

    def _kill(self, node_id: str) -> None:
        """The incarnation's process is gone: timers, in-flight fsyncs, connections; the
        clients' pending calls on it are never answered (outcome unknown)."""
        slot = self.slots[node_id]
        slot.reactor.kill()
        self.network.detach(node_id)
        slot.stopping = False  # a graceful stop in progress never finishes (its callback is ignored)
        self._forget(slot)
        for op in self.writes:
            if op.outcome == "pending" and op.node == node_id:
                op.outcome, op.error = "unknown", "node crashed"
        for read in self.reads:
            if read.outcome == "pending" and read.node == node_id:
                read.outcome = "lost"
        for call in self.txns:
            if call.outcome == "pending" and call.node == node_id:
                call.outcome, call.error = ("unknown" if call.writes else "lost"), "node crashed"
        for watcher in self.watchers:
            if watcher.node == node_id:
                self._detach(watcher, "crash")

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
        incarnation = slot.incarnation
        d = slot.node.stop()

        def stopped(result: object) -> None:
            if slot.incarnation != incarnation or not slot.stopping:
                return  # the power was cut while it stopped (``power_cut``)
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
        self.services.pop(slot.node, None)
        slot.node = None
        slot.reactor = None
        slot.checked = None
        slot.last_applied = -1
        slot.led_term = None
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
        if slot.fs is not None:
            # A new process opens the data directory (the dead one's lock went with it).
            try:
                disk = DiskStorage.open(Path("/data") / node_id, fs=slot.fs, segment_size=opts.segment_size)
                snapshots = SnapshotStore(disk.data_dir.snap_dir, retain=opts.retain_snapshots, fs=slot.fs)
            except Exception:
                self._problems.append(f"{node_id} failed to open its storage: {Failure().getTraceback()}")
                return
            slot.disk, slot.snapshots = disk, snapshots

        def fsync_delay() -> float:
            if fsync_rng.random() < opts.slow_fsync_rate:
                return opts.slow_fsync
            return fsync_rng.uniform(*opts.fsync)

        service = KVService(
            reactor,
            limits=opts.limits,
            proposal_timeout=opts.proposal_timeout,
            read_timeout=max(2.0, 3 * opts.election_timeout),
        )
        node = Node(
            config,
            reactor=reactor,
            rng=random.Random(f"node/{self.seed}/{node_id}/{slot.incarnation}"),
            storage=SimAsyncStorage(slot.disk, reactor, fsync_delay),
            snapshots=slot.snapshots,
            transport=SimTransport(self.network, node_id, config.http_address),
            application=service,
        )
        service.attach(self.leases.attach_node(node, service))
        self.services[node] = service
        slot.node, slot.reactor = node, reactor
        slot.checked = _Checked(node_id, slot.incarnation, node)
        d = node.start()
        d.addErrback(self._start_failed, node_id, node)

    def _start_failed(self, failure: Failure, node_id: str, node: Node) -> None:
        if node._stopping and failure.check(StorageClosed):
            return  # stopped (restart_gracefully) before it finished starting
        self._problems.append(f"{node_id} failed to start: {failure.getTraceback()}")

    # -- clients

    def submit(self, node_id: str, command: Command) -> WriteOp:
        """``Node.submit`` at ``node_id`` (down or stopping: refused like NotLeader)."""
        op = WriteOp(next(self._op_ids), node_id, command, self.seq, invoked_at=self.now)
        self.writes.append(op)
        node = self.node(node_id)
        if node is None:
            op.outcome, op.error = "fail", "node down"
            return op
        service = self.services[node]
        if isinstance(command, Put):
            ttl = command.grant_ttl_ms / 1000.0 if command.grant_ttl_ms else None
            d = service.put(command.key, command.value, command.condition, lease=command.lease, ttl=ttl)
        else:
            d = service.delete(command.key, command.condition)
        if d.called and isinstance(d.result, Failure) and d.result.check(NotLeaderError):
            d.addErrback(lambda _: None)
            op.outcome, op.error = "fail", "not leader"
            return op
        self._note("submit", node_id, command)
        d.addCallbacks(self._write_acked, self._write_failed, callbackArgs=(op,), errbackArgs=(op,))
        return op

    def _write_acked(self, result: WriteResult, op: WriteOp) -> None:
        if op.outcome != "pending":
            self._problems.append(f"write {op} answered twice (now with {result})")
            return
        op.outcome, op.result, op.acked_seq = "ok", result, self.seq
        self._note("ack", op.node, op.command, result)
        command = op.command
        if not isinstance(result, WriteResult) or result.revision <= 0:
            self._problems.append(f"write {op} acknowledged with {result!r}")
            return
        if result.ok:
            want = None
            if isinstance(command, Put):
                # (its create revision is checked against the committed log's replay)
                lease = result.revision if command.grant_ttl_ms else command.lease
                created = result.current.create_revision if result.current is not None else 0
                want = Item(command.key, command.value, result.revision, created, lease)
                if result.lease != lease or not 0 < created <= result.revision:
                    self._problems.append(f"acknowledged {command} reports {result}")
            if result.current != want:
                self._problems.append(f"acknowledged {command} reports {result.current}, expected {want}")
            if isinstance(command, Put) and command.grant_ttl_ms:
                self.leases.put_granted(op)
        elif condition_holds(command.condition, result.current):
            self._problems.append(f"{command} failed its condition, yet it holds of {result.current}")
        self.max_acked = max(self.max_acked, result.revision)
        self._unverified_acks.append(op)

    def _write_failed(self, failure: Failure, op: WriteOp) -> None:
        if op.outcome not in ("pending", "unknown"):
            self._problems.append(f"write {op} answered twice (now with {failure.value!r})")
            return
        if failure.check(LeaseNotFound) and isinstance(op.command, Put) and op.command.lease:
            # refused, or applied without effect: the lease was gone (surely not written)
            op.outcome, op.error = "fail", repr(failure.value)
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
        d = self.services[node].barrier()
        if d.called and isinstance(d.result, Failure) and d.result.check(NotLeaderError):
            d.addErrback(lambda _: None)
            op.outcome, op.error = "fail", "node starting"
            return op
        d.addCallbacks(self._read_ready, self._read_failed, callbackArgs=(op, node), errbackArgs=(op,))
        return op

    def _read_ready(self, _: object, op: ReadOp, node: Node) -> None:
        if op.outcome != "pending":
            self._problems.append(f"read {op} answered twice")
            return
        kv = self.services[node].kv
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

    # -- transactions

    def txn(self, node_id: str, txn: Txn, consistency: str = CONSISTENCY_LINEARIZABLE) -> TxnCall:
        """``service.txn`` at ``node_id``: through the log if it writes, else after a read
        barrier (or at once, ``stale``)."""
        call = TxnCall(next(self._op_ids), node_id, txn, self.seq, self.max_acked, self.max_applied, consistency)
        self.txns.append(call)
        node = self.node(node_id)
        if node is None:
            call.outcome, call.error = "fail", "node down"
            return call
        d = self.services[node].txn(txn, consistency)
        if d.called and isinstance(d.result, Failure) and d.result.check(NotLeaderError):
            d.addErrback(lambda _: None)
            call.outcome, call.error = "fail", "not leader"
            return call
        self._note("txn", node_id, txn)
        d.addCallbacks(self._txn_answered, self._txn_failed, callbackArgs=(call,), errbackArgs=(call,))
        return call

    def _txn_answered(self, result: TxnResult, call: TxnCall) -> None:
        if call.outcome != "pending":
            self._problems.append(f"txn {call} answered twice (now with {result})")
            return
        call.outcome, call.result = "ok", result
        self._note("txn ack", call.node, result)
        if not isinstance(result, TxnResult) or result.revision < 0:
            self._problems.append(f"txn {call} answered with {result!r}")
            return
        if call.writes:
            if result.revision <= 0:
                self._problems.append(f"txn {call} acknowledged at revision {result.revision}")
                return
            self.max_acked = max(self.max_acked, result.revision)
            self._unverified_txn_acks.append(call)
            return
        if call.consistency == CONSISTENCY_LINEARIZABLE:
            required = max(call.required_acked, call.required_applied)
            if result.revision < required:
                self._problems.append(
                    f"stale read-only txn: {call.node} served {call.txn} at revision {result.revision}, but "
                    f"revision {required} was acknowledged or applied before it began"
                )
        self._unverified_txn_reads.append(call)

    def _txn_failed(self, failure: Failure, call: TxnCall) -> None:
        if call.outcome not in ("pending", "unknown"):
            self._problems.append(f"txn {call} answered twice (now with {failure.value!r})")
            return
        call.error = repr(failure.value)
        if call.writes:
            call.outcome = "unknown"
            expected = failure.check(OutcomeUnknown)
        else:
            call.outcome = "fail"
            expected = failure.check(NotLeaderError, Unavailable)
        if not expected:
            self._problems.append(f"txn {call.txn} at {call.node} failed unexpectedly: {failure.getTraceback()}")

    def _verify_txns(self) -> None:
        """Acknowledged transactions against the reference, once it has their revision."""
        top = self._ref.applied_index
        if self._unverified_txn_acks:
            pending = []
            for call in self._unverified_txn_acks:
                got = self._ref_results.get(call.result.revision)
                if got is None:
                    pending.append(call)
                elif got[0] != call.txn or got[1].txn != call.result:
                    raise self._violation(
                        f"acknowledged {call.txn} -> {call.result} at {call.node}, but the committed log "
                        f"holds {got[0]} -> {got[1] and got[1].txn} at index {call.result.revision}"
                    )
            self._unverified_txn_acks = pending
        if self._unverified_txn_reads:
            pending = []
            for call in self._unverified_txn_reads:
                revision = call.result.revision
                if revision > top:
                    pending.append(call)
                    continue
                want = self._store_at(revision).evaluate_txn(call.txn)
                if want != call.result:
                    raise self._violation(
                        f"read-only {call.txn} at {call.node} gave {call.result}, but the committed "
                        f"state at revision {revision} gives {want}"
                    )
            self._unverified_txn_reads = pending

    def _store_at(self, index: int) -> KVStore:
        """The reference state at ``index`` (at most the replayed committed log)."""
        if index == 0:
            return KVStore()
        items, leases = self.states[index][0]
        out = io.BytesIO()
        records = [(lease.id, lease.ttl_ms, lease.remaining_ms, lease.renewed_index) for lease in leases]
        kv_snapshot.dump(out, index, len(items), items, b"", records)
        out.seek(0)
        return KVStore.read_snapshot(out)[0]

    # -- watchers

    def watch(
        self,
        node_id: str,
        key: str,
        *,
        prefix: bool = False,
        start_revision: int | None = None,
        stall_rate: float = 0.0,
        stall_for: tuple[float, float] = (0.001, 0.2),
    ) -> SimWatcher:
        """A watcher of ``key`` (or the keys under it) at ``node_id`` from
        ``start_revision`` (None: after the node's current revision; one the node no longer
        keeps: after its current revision too). ``node_id`` down: at the first node up."""
        watcher = SimWatcher(len(self.watchers) + 1, key, prefix, stall_rate, stall_for)
        self.watchers.append(watcher)
        node = self.node(node_id)
        if node is None or node.core is None:
            watcher.skip_to_current = True
            watcher.base = -1
            self._detached.append(watcher)
            return watcher
        self._attach(watcher, node_id, start_revision, first=True)
        return watcher

    def disconnect(self, watcher: SimWatcher) -> None:
        """The client goes away (``WatchHandle.cancel``): nothing more may be delivered."""
        if watcher.handle is not None:
            watcher.handle.cancel()
        if watcher.node is not None:
            self._detach(watcher, "disconnect", reattach=False)

    def reconnect(self, watcher: SimWatcher, node_id: str | None = None) -> None:
        """Resume a disconnected (or detached) watcher at ``node_id`` (None: at random)
        from its position + 1."""
        if watcher.node is not None:
            self.disconnect(watcher)
        if watcher in self._detached:
            self._detached.remove(watcher)
        candidates = self._watchable() if node_id is None else [node_id]
        if not candidates or self.node(candidates[0]) is None:
            self._detached.append(watcher)
            return
        self._attach(watcher, self._watch_rng.choice(candidates))

    def _watchable(self) -> list[str]:
        return [i for i in self.ids if (n := self.node(i)) is not None and n.core is not None]

    def _attach(
        self, watcher: SimWatcher, node_id: str, start_revision: int | None = None, *, first: bool = False
    ) -> None:
        service = self.services[self.node(node_id)]
        for attempt in range(2):
            watcher.generation += 1
            generation = watcher.generation
            current = service.revision
            if first:
                start = start_revision
            elif watcher.skip_to_current and current >= watcher.position:
                start = None if self._watch_rng.random() < 0.5 else current + 1
            else:
                start = watcher.position + 1
            want = current + 1 if start is None else start
            position = watcher.position
            watcher.node, watcher.attach_start = node_id, want
            watcher.stalled = False
            sink = _WatchSink(self, watcher, generation)
            try:
                handle = service.watch(sink, watcher.key, prefix=watcher.prefix, start_revision=start)
            except Compacted as exc:
                watcher.node = None
                if not want < exc.compact_revision <= current + 1:
                    self._problems.append(
                        f"{watcher}: {node_id} refused start {want} as compacted at {exc.compact_revision} "
                        f"(its revision is {current})"
                    )
                self._note("watch", watcher.wid, node_id, "from", want, "compacted at", exc.compact_revision)
                if not first:
                    watcher.closes.append("Compacted")
                first, watcher.skip_to_current = False, True
                if attempt == 0:
                    continue
                self._problems.append(f"{watcher}: watching from {node_id}'s current revision failed")
                return
            break
        watcher.attachments += 1
        self._note("watch", watcher.wid, watcher.key + ("*" if watcher.prefix else ""), node_id, "from", want)
        if handle.start_revision != want:
            self._problems.append(f"{watcher}: asked to start at {want}, the watch starts at {handle.start_revision}")
        # (replayed changes may have arrived already: ``position`` is from before the call)
        if watcher.attachments == 1:
            watcher.start = want
            watcher.verified = watcher.base = want - 1
        elif want > position + 1:
            self._record_gap(watcher, position + 1, want - 1)
            watcher.base = max(watcher.base, want - 1)
        elif want != position + 1:
            self._problems.append(f"{watcher}: resumed at {want}, not right after its position {position}")
        watcher.skip_to_current = False
        if watcher.generation == generation:
            watcher.handle = handle

    def _record_gap(self, watcher: SimWatcher, first: int, last: int) -> None:
        reason = watcher.closes[-1] if watcher.closes else "?"
        watcher.gaps.append((first, last))
        watcher.gap_log.append((first, last, reason))
        self._note("watch gap", watcher.wid, first, "..", last, reason)

    def _detach(self, watcher: SimWatcher, why: str, *, reattach: bool = True) -> None:
        watcher.generation += 1
        watcher.node, watcher.handle, watcher.stalled = None, None, False
        self._note("watch detached", watcher.wid, why)
        if reattach:
            self._detached.append(watcher)

    def _reattach_detached(self) -> None:
        candidates = self._watchable()
        if not candidates:
            return
        detached, self._detached = self._detached, []
        for watcher in detached:
            if watcher.base < 0:  # created while its node was down
                watcher.base = 0
                self._attach(watcher, self._watch_rng.choice(candidates), None, first=True)
            else:
                self._attach(watcher, self._watch_rng.choice(candidates))

    def _watch_events(self, watcher: SimWatcher, generation: int, events: list[Event]) -> bool:
        if generation != watcher.generation:
            self._problems.append(f"{watcher}: events {events} delivered to a cancelled or dead attachment")
            return True
        if watcher.stalled:
            self._problems.append(f"{watcher}: events {events} delivered while the sink was full")
        if not events:
            self._problems.append(f"{watcher}: an empty events() call")
            return True
        revision = events[0].revision
        if any(e.revision != revision for e in events):
            self._problems.append(f"{watcher}: one events() call mixes revisions: {events}")
        if revision == watcher.last_event:
            self._problems.append(
                f"{watcher}: revision {revision} delivered again: a duplicate, or one revision's changes "
                f"split over more than one events() call (unique, atomic)"
            )
        elif revision < watcher.last_event:
            self._problems.append(f"{watcher}: revision {revision} delivered after {watcher.last_event} (order)")
        if revision <= watcher.bookmark:
            self._problems.append(f"{watcher}: revision {revision} delivered after a bookmark at {watcher.bookmark}")
        if revision < watcher.attach_start:
            self._problems.append(f"{watcher}: revision {revision} is before the watch's start {watcher.attach_start}")
        stray = [e for e in events if not matches(e.key, watcher.key, watcher.prefix)]
        if stray:
            self._problems.append(f"{watcher}: got changes of other keys: {stray}")
        watcher.last_event = revision
        watcher.events_seen += len(events)
        watcher.pending.append((revision, tuple(events)))
        watcher.received.append(watcher.pending[-1])
        if watcher.stall_rate and self._watch_rng.random() < watcher.stall_rate:
            watcher.stalled = True
            self.clock.callLater(self._watch_rng.uniform(*watcher.stall_for), self._watch_resume, watcher, generation)
            return False
        return True

    def _watch_resume(self, watcher: SimWatcher, generation: int) -> None:
        if generation == watcher.generation and watcher.stalled:
            watcher.stalled = False
            if watcher.handle is not None:
                watcher.handle.resume()

    def _watch_progress(self, watcher: SimWatcher, generation: int, revision: int) -> None:
        if generation != watcher.generation:
            self._problems.append(f"{watcher}: a bookmark at {revision} sent to a cancelled or dead attachment")
            return
        if revision < watcher.last_event or revision < watcher.bookmark:
            self._problems.append(
                f"{watcher}: a bookmark at {revision} after revision {max(watcher.last_event, watcher.bookmark)}"
            )
        watcher.bookmark = max(watcher.bookmark, revision)
        watcher.bookmarks_seen += 1

    def _watch_closed(self, watcher: SimWatcher, generation: int, reason: str, compact: int | None) -> None:
        if generation != watcher.generation:
            self._problems.append(f"{watcher}: closed ({reason}) sent to a cancelled or dead attachment")
            return
        self._note("watch closed", watcher.wid, reason, compact)
        watcher.closes.append(reason)
        if reason == "compacted":
            if compact is None or compact <= watcher.position + 1:
                self._problems.append(
                    f"{watcher}: closed as compacted at {compact}, but nothing after {watcher.position} is missing"
                )
            watcher.skip_to_current = True
        elif reason == "overflow":
            watcher.skip_to_current = True
        elif reason != "shutdown":
            self._problems.append(f"{watcher}: closed for an unexpected reason {reason!r}")
        self._detach(watcher, reason)

    def _check_watchers(self) -> None:
        """Each watcher's stream against the reference change log, as far as both go."""
        top = self._ref.applied_index
        for watcher in self.watchers:
            limit = min(top, watcher.position)
            if limit > watcher.verified:
                self._verify_watcher(watcher, limit)

    def _verify_watcher(self, watcher: SimWatcher, limit: int) -> None:
        pending, gaps, results = watcher.pending, watcher.gaps, self._ref_results
        revision = watcher.verified + 1
        while revision <= limit:
            if gaps and gaps[0][0] <= revision:
                revision = max(revision, gaps.popleft()[1] + 1)
                continue
            result = results[revision][1]
            expected = ()
            if result is not None and result.events:
                expected = tuple(e for e in result.events if matches(e.key, watcher.key, watcher.prefix))
            head = pending[0] if pending else None
            if expected:
                if head is None or head[0] != revision:
                    promise = (f"a bookmark at {watcher.bookmark}" if watcher.bookmark >= revision
                               else f"revision {watcher.last_event} delivered")
                    raise self._violation(
                        f"{watcher} missed revision {revision}: the committed log changed {expected} there; "
                        f"next delivered: {head}; yet {promise} (reliable/bookmarkable; gaps: {watcher.gap_log})"
                    )
                if head[1] != expected:
                    raise self._violation(
                        f"{watcher} got {head[1]} at revision {revision}, but the committed log's changes "
                        f"there are {expected}"
                    )
                pending.popleft()
            elif head is not None and head[0] == revision:
                raise self._violation(
                    f"{watcher} got {head[1]} at revision {revision}, where the committed log changed "
                    f"nothing it watches ({result and result.events})"
                )
            revision += 1
        watcher.verified = revision - 1
        if pending and pending[0][0] <= watcher.verified:
            raise self._violation(f"{watcher} got {pending[0]} inside a gap {watcher.gap_log}")

    def watcher_lagging(self, watcher: SimWatcher) -> bool:
        """Whether the reference holds a change ``watcher`` should have by now (when its node
        has applied everything): one after its position, up to the replayed log."""
        if watcher.node is None or watcher.stalled:
            return True
        for revision in range(watcher.position + 1, self._ref.applied_index + 1):
            result = self._ref_results[revision][1]
            if result is not None and any(matches(e.key, watcher.key, watcher.prefix) for e in result.events):
                return True
        return False

    # -- invariants

    def check(self) -> None:
        """Every per-event property; raises ``Violation``. Runs after every event."""
        self.seq += 1
        if self._detached:
            self._reattach_detached()
        if self._problems:
            raise self._violation(self._problems[0])
        checked = []
        for node_id in self.ids:
            slot = self.slots[node_id]
            node = slot.node
            if node is None:
                continue
            if node._failed is not None and not (slot.stopping and node._failed.check(StorageClosed)):
                # (StorageClosed during restart_gracefully: Node.stop() closed the storage
                # while a Ready's chained storage calls were in flight, e.g. the compaction
                # after a received snapshot; the next start compacts instead.)
                trace = node._failed.getTraceback()
                raise self._violation(f"{node_id} stopped on a storage failure: {trace}")
            if node.core is None:
                continue
            checked.append(slot.checked)
            core = node.core
            if core.role is Role.LEADER and not node._stopping and slot.led_term != core.term:
                # once per term led: status() agrees, and no one else led that term
                slot.led_term = core.term
                st = self.services[node].status()
                if st.role != "leader":
                    raise self._violation(f"{node_id} leads in its core but status() says {st}")
                owner = self.leader_of_term.setdefault(st.term, node_id)
                if owner != node_id:
                    raise self._violation(f"two leaders in term {st.term}: {owner} and {node_id}")
            kv = self.services[node].kv
            if kv.applied_index != slot.last_applied:
                slot.last_applied = kv.applied_index
                self.max_applied = max(self.max_applied, kv.applied_index)
                self._observe_state(kv.applied_index, kv_state(kv), node_id)
        try:
            self.checker.check(checked)
        except Violation as exc:
            raise self._violation(str(exc)) from None
        self._replay_committed()
        if self._unverified_txn_acks or self._unverified_txn_reads:
            self._verify_txns()
        if self.watchers:
            self._check_watchers()
        self.leases.check()

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
                before = ref.lease(command.lease_id) if isinstance(command, LeaseRevoke) else None
                result = ref.apply(entry.index, command)
                self._ref_results[entry.index] = (command, result)
                self.leases.replayed(entry, command, result, before)
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
                elif got[0] != op.command or (got[1].ok, got[1].revision, got[1].current) != (
                    op.result.ok, op.result.revision, op.result.current
                ):
                    raise self._violation(
                        f"acknowledged {op.command} -> {op.result} at {op.node}, but the committed log "
                        f"holds {got[0]} -> {got[1]} at index {op.result.revision}"
                    )
            self._unverified_acks = pending

    def _on_deliver(self, msg: Message) -> None:
        """The checker counts the votes each leader won (election quorum)."""
        if isinstance(msg, RequestVoteReply) and msg.vote_granted and not msg.pre_vote:
            self.checker.on_vote(msg.dst, msg.term, msg.src)

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
                f"status: {[self.services[n].status() for n in self.up()]}"
            )
        took = self.now - start
        if not self.run_until(self._converged, 20 * self.options.election_timeout):
            raise self._violation(f"nodes did not converge: {[self.services[n].status() for n in self.up()]}")
        self.check_no_acknowledged_write_lost()
        self._settle_watchers()
        return took

    def _settle_watchers(self) -> None:
        """Liveness of watches: once the cluster converged and the clients stop pushing
        back, every watcher receives every change of the committed log it watches."""
        if not self.watchers:
            return
        for watcher in self.watchers:
            watcher.stall_rate = 0.0
        budget = max(w.stall_for[1] for w in self.watchers) + 1.0
        if not self.run_until(lambda: not any(map(self.watcher_lagging, self.watchers)), budget):
            lagging = [str(w) for w in self.watchers if self.watcher_lagging(w)]
            raise self._violation(f"watchers did not catch up with the committed log: {lagging}")

    def _last_txn_writes(self, last: dict, uncertain: set[str]) -> None:
        """Add what transactions that committed (acknowledged, or found in the committed
        log when their outcome is unknown) left in their keys to ``last``; a transaction of
        unknown outcome whose command is in the log more than once makes its keys
        uncertain."""
        calls = [c for c in self.txns if c.writes and c.outcome in ("ok", "unknown", "pending")]
        if not calls:
            return
        found: dict[Txn, list[int]] = {}
        for index, (cmd, _result) in self._ref_results.items():
            if isinstance(cmd, Txn):
                found.setdefault(cmd, []).append(index)
        for call in calls:
            if call.outcome == "ok":
                indexes = [call.result.revision]
            else:
                indexes = found.get(call.txn, [])
                if len(indexes) > 1:
                    uncertain.update(op.key for op in call.txn.success + call.txn.failure
                                     if isinstance(op, (Put, Delete)))
                    continue
            for index in indexes:
                for e in self._ref_results[index][1].events:
                    item = Item(e.key, e.value, index) if e.type == "put" else None
                    if e.key not in last or last[e.key][0] < index:
                        last[e.key] = (index, item, call)

    def _converged(self) -> bool:
        leader = self.leader()
        if leader is None or len(self.up()) != len(self.ids):
            return False
        st = self.services[leader].status()
        if st.commit_index != st.last_index:
            return False
        return all(self.services[n].kv.applied_index == st.commit_index for n in self.up()) and not any(
            op.outcome == "pending"
            for op in itertools.chain(self.writes, self.txns)
            if self.node(op.node) is not None
        )

    def check_no_acknowledged_write_lost(self) -> None:
        """On a converged cluster: every node holds the leader's contents and applied
        index; every acknowledged write is at or below it; and each key holds what its
        last write left, when that last write is known: the acknowledged write with the
        highest revision, unless a write of uncertain outcome may have followed it. A put
        of uncertain outcome is resolved through the committed log (values are unique, and
        on a converged cluster an entry the leader's log lacks can never commit); a delete
        of uncertain outcome leaves its key unchecked. The end of a lease (a committed
        ``LeaseRevoke``) is a delete of each of its keys."""
        leader = self.leader()
        assert leader is not None
        final = kv_state(self.services[leader].kv)
        applied = self.services[leader].kv.applied_index
        for node in self.up():
            kv = self.services[node].kv
            if kv_state(kv) != final or kv.applied_index != applied:
                raise self._violation(
                    f"{node.config.node_id} holds {_fmt(kv_state(kv))} at {kv.applied_index}, "
                    f"leader {leader.config.node_id} holds {_fmt(final)} at {applied}"
                )
        in_log = {
            (cmd.key, cmd.value): (index, result)
            for index, (cmd, result) in self._ref_results.items()
            if isinstance(cmd, Put)
        }
        last: dict[str, tuple[int, Item | None, Any]] = {}
        uncertain: set[str] = set()
        self._last_txn_writes(last, uncertain)
        self._last_lease_deletions(last)
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
            item = self.services[leader].kv.get(key)
            if _written(item) != _written(want):
                what = op if isinstance(op, LeaseRevoke) else getattr(op, "command", None) or op.txn
                outcome = "committed" if isinstance(op, LeaseRevoke) else op.outcome
                raise self._violation(
                    f"acknowledged write lost: the last write of {key!r} is {what} at revision {index} "
                    f"({outcome}), leaving {want}, but the cluster holds {item}"
                )

    def _last_lease_deletions(self, last: dict) -> None:
        """Add the keys the end of a lease deleted (a committed ``LeaseRevoke``, by expiry
        or by a client) to ``last``: certain writes, found in the committed log."""
        for index, (cmd, result) in self._ref_results.items():
            if isinstance(cmd, LeaseRevoke) and result.ok:
                for e in result.events:
                    if e.key not in last or last[e.key][0] < index:
                        last[e.key] = (index, None, cmd)


def _fmt(state: KVState) -> str:
    items, leases = state
    text = ", ".join(f"{i.key}={i.value}@{i.revision}" + (f"/lease {i.lease}" if i.lease else "") for i in items)
    if leases:
        text += "; leases " + ", ".join(
            f"{lease.id}(ttl {lease.ttl_ms}, left {lease.remaining_ms}, renewed@{lease.renewed_index}, "
            f"keys {list(lease.keys)})"
            for lease in leases
        )
    return "{" + text + "}"
