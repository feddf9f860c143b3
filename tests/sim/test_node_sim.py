"""Real ``leifdb.node.Node`` objects in a simulated cluster (``tests/sim/node_sim.py``).

The doubles first (storage, snapshot store, network), then scripted scenarios (among them
watchers across leader crashes, snapshot installs, history eviction and overflow, and
transactions), then hypothesis: a ``RuleBasedStateMachine`` whose rules advance time,
submit conditional and unconditional writes, transactions and linearizable reads at random
nodes, start watchers (from now or from the past, some pushing back) and reconnect them
elsewhere, partition, drop, duplicate, crash and restart, with snapshots every few entries
so InstallSnapshot happens. Every property of ``NodeSim`` is checked after every simulated
event, and each example ends with ``settle()`` (liveness, convergence, no acknowledged write
lost, watchers caught up). Then planted bugs in the node's surroundings (and in one watch)
prove the checks can fail, and regression tests pin the node bugs this simulation found.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from twisted.internet.defer import succeed

from leifdb.errors import Compacted
from leifdb.kv.commands import (
    ApplyResult,
    Compare,
    Condition,
    Delete,
    Get,
    Item,
    Put,
    Range,
    Txn,
)
from leifdb.kv.store import KVStore
from leifdb.node import Node
from leifdb.nodeconfig import NodeConfig
from leifdb.raft.messages import (
    AppendEntries,
    Entry,
    HardState,
    InstallSnapshot,
    Member,
    ReadIndexReply,
    SnapshotMeta,
)
from leifdb.raft.storage import MemoryStorage
from leifdb.storage.checksum import crc32c
from leifdb.storage.errors import ChunkOffsetError, SnapshotNotFound
from leifdb.wire import encode_command, encode_membership
from leifdb.service.api import ServiceLimits
from leifdb.service.kvservice import KVService
from leifdb.storage.memory import MemorySnapshotStore
from tests.sim.node_sim import (
    NodeReactor,
    NodeSim,
    SimAsyncStorage,
    SimClock,
    SimDisk,
    SimOptions,
    Violation,
)
from tests.sim.profiles import scaled

# ---------------------------------------------------------------------------- the doubles


def _storage(delay: float = 0.01) -> tuple[SimClock, MemoryStorage, SimAsyncStorage, NodeReactor]:
    clock = SimClock()
    reactor = NodeReactor(clock)
    disk = MemoryStorage()
    return clock, disk, SimAsyncStorage(disk, reactor, lambda: delay), reactor


def _drain(clock: SimClock) -> None:
    while clock.step():
        pass


def test_persist_is_durable_only_when_its_deferred_fires_and_a_crash_loses_the_rest():
    clock, disk, storage, reactor = _storage()
    fired = []
    storage.persist(HardState(1, "n1"), [Entry(1, 1)]).addCallback(fired.append)
    clock.advance(0.01)
    assert fired == [None]
    storage.persist(HardState(2, "n2"), [Entry(2, 2)]).addCallback(fired.append)
    clock.advance(0.005)
    reactor.kill()
    disk.crash()
    clock.advance(1)
    state = disk.load()
    assert fired == [None]
    assert state.hard_state == HardState(1, "n1")
    assert [e.index for e in state.entries] == [1]


def test_persists_queued_behind_a_busy_worker_share_one_fsync_in_fifo_order():
    clock, disk, storage, _ = _storage()
    order = []
    storage.persist(None, [Entry(1, 1)]).addCallback(lambda _: order.append("p1"))
    storage.call(lambda: order.append("call")).addCallback(lambda _: order.append("call fired"))
    storage.persist(None, [Entry(1, 2)]).addCallback(lambda _: order.append("p2"))
    storage.persist(HardState(1), [Entry(1, 3)]).addCallback(lambda _: order.append("p3"))
    _drain(clock)
    assert order == ["p1", "call", "call fired", "p2", "p3"]
    assert disk.syncs == 2 and storage.batches == 2
    assert [e.index for e in disk.load().entries] == [1, 2, 3]


def test_a_failing_call_errbacks_and_close_drains_the_queue():
    clock, _, storage, _ = _storage()
    failures = []
    storage.call(lambda: 1 / 0).addErrback(failures.append)
    closed = []
    storage.close().addCallback(closed.append)
    _drain(clock)
    assert failures[0].check(ZeroDivisionError) and closed == [None]
    storage.persist(None, []).addErrback(failures.append)
    assert len(failures) == 2


def _snapshot(payload: bytes = b"state" * 40) -> tuple[MemorySnapshotStore, SnapshotMeta, bytes]:
    store = MemorySnapshotStore(retain=2, chunk_bytes=64)
    meta = store.save(7, 2, payload)
    return store, meta, payload


def test_snapshot_store_checksums_like_the_disk_store_and_reads_in_chunks():
    store, meta, payload = _snapshot()
    assert meta == SnapshotMeta(7, 2, crc32c(payload), len(payload))
    assert store.latest()[0] == meta
    assert store.read_chunk(meta, 0, 1 << 20) == payload[:64]
    assert store.read_chunk(meta, 192, 1 << 20) == payload[192:]
    with store.open(meta) as stream:
        assert stream.read() == payload
    with pytest.raises(SnapshotNotFound):
        store.read_chunk(SnapshotMeta(7, 2, meta.checksum + 1, meta.size), 0, 10)


def test_a_received_snapshot_is_installed_only_if_size_and_checksum_match():
    source, meta, payload = _snapshot()
    store = MemorySnapshotStore()
    assert store.write_chunk(meta, 0, payload[:100]) == 100
    with pytest.raises(ChunkOffsetError):
        store.write_chunk(meta, 150, payload[150:])
    store.write_chunk(meta, 100, payload[100:])
    assert store.finish_receive(meta) and store.latest()[0] == meta
    bad = SnapshotMeta(9, 3, crc32c(payload) ^ 1, len(payload))
    store.write_chunk(bad, 0, payload)
    assert not store.finish_receive(bad)
    assert store.latest()[0] == meta and store.rejected == 1


def test_snapshot_store_keeps_the_newest_and_skips_a_corrupt_one():
    store = MemorySnapshotStore(retain=2)
    metas = [store.save(i, 1, io.BytesIO(b"x" * i)) for i in (3, 5, 9)]
    assert [m for m, _ in store.list()] == metas[:0:-1]
    key = (9, 1)
    store._snapshots[key] = (metas[2], b"y" * 9)
    assert store.latest()[0] == metas[1]


def test_the_sim_disk_ignores_entries_its_snapshot_holds_like_the_disk_log():
    """A Ready can carry a snapshot from the leader and entries it covers: the node compacts
    to the snapshot, then persists the entries. ``DiskLog.append`` drops entries at or
    below the snapshot boundary; ``MemoryStorage`` kept them (a log starting below its
    snapshot, which no restart could load), so the simulation's disk behaves like DiskLog."""
    disk = SimDisk()
    disk.append([Entry(1, i) for i in range(1, 6)])
    disk.sync()
    disk.compact(SnapshotMeta(4, 1, 0, 0))
    disk.append([Entry(1, i) for i in range(3, 7)])
    disk.sync()
    state = disk.load()
    assert state.snapshot.last_included_index == 4
    assert [e.index for e in state.entries] == [5, 6]


# ---------------------------------------------------------------------------- scenarios


def _leader_id(sim: NodeSim) -> str:
    assert sim.run_until(lambda: sim.leader() is not None, 10 * sim.options.election_timeout)
    return sim.leader().config.node_id


def test_writes_reads_and_a_leader_crash_on_a_three_node_cluster():
    sim = NodeSim(SimOptions(snapshot_entries=5), seed=3)
    leader = _leader_id(sim)
    writes = [sim.submit(leader, Put(f"k{i % 3}", f"v{i}")) for i in range(12)]
    writes.append(sim.submit(leader, Put("k0", "again", Condition(prev_value="nope"))))
    sim.run_for(0.5)
    assert all(op.outcome == "ok" for op in writes)
    assert not writes[-1].result.ok and writes[-1].result.current.value == "v9"
    follower = next(i for i in sim.ids if i != leader)
    read = sim.read(follower, "k1")
    sim.run_for(0.5)
    assert read.outcome == "ok" and read.seen.value == "v10"
    sim.crash(leader)
    new_leader = _leader_id(sim)
    assert new_leader != leader
    sim.submit(new_leader, Delete("k1"))
    sim.run_for(0.5)
    sim.restart(leader)
    sim.settle()
    assert sim.kv(leader).get("k1") is None
    assert sum(s.snapshots.saved for s in sim.slots.values()) >= 3


def test_a_lagging_follower_catches_up_by_installsnapshot_in_chunks():
    sim = NodeSim(SimOptions(snapshot_entries=5, snapshot_chunk_bytes=32), seed=5)
    leader = _leader_id(sim)
    lagging = next(i for i in sim.ids if i != leader)
    sim.crash(lagging)
    for i in range(30):
        sim.submit(leader, Put(f"key{i}", f"value{i}"))
        sim.run_for(0.01)
    sim.run_for(0.5)
    sim.restart(lagging)
    sim.settle()
    store = sim.slots[lagging].snapshots
    assert store.received >= 1
    assert sim.slots[leader].snapshots.chunks_read > 3
    kv = sim.kv(lagging)
    assert all(kv.get(f"key{i}").value == f"value{i}" for i in range(30))


def test_a_minority_leader_cannot_serve_reads_or_acknowledge_writes():
    sim = NodeSim(SimOptions(), seed=11)
    leader = _leader_id(sim)
    sim.isolate(leader)
    stale_write = sim.submit(leader, Put("x", "lost"))
    stale_read = sim.read(leader, "x")
    others = [i for i in sim.ids if i != leader]
    assert sim.run_until(lambda: sim.leader() is not None and sim.leader().config.node_id != leader, 5)
    fresh = sim.submit(sim.leader().config.node_id, Put("x", "kept"))
    sim.run_for(3)
    assert stale_write.outcome == "unknown" and stale_read.outcome == "fail"
    assert fresh.outcome == "ok"
    sim.settle()
    assert all(sim.kv(i).get("x").value == "kept" for i in others + [leader])


def test_graceful_restarts_of_every_node_keep_every_acknowledged_write():
    sim = NodeSim(SimOptions(snapshot_entries=7), seed=13)
    for round_ in range(3):
        for node_id in sim.ids:
            leader = _leader_id(sim)
            sim.submit(leader, Put("k", f"{round_}-{node_id}"))
            sim.run_for(0.2)
            sim.restart_gracefully(node_id)
            sim.run_for(0.3)
    sim.settle()
    assert sim.kv(sim.leader().node_id).get("k").value == "2-n3"


# ---------------------------------------------------------------------------- watchers and txns


def _follower_of(sim: NodeSim, leader: str) -> str:
    return next(i for i in sim.ids if i != leader)


def _revisions(watcher) -> list[int]:
    return [revision for revision, _ in watcher.received]


def test_a_watcher_follows_every_change_across_leader_crashes():
    """A watcher at the leader; the leader crashes three times. Each time the watcher
    resumes at another node from its last revision + 1 and, without any gap, sees every
    change of its prefix exactly once (transactions' changes together)."""
    sim = NodeSim(SimOptions(snapshot_entries=5), seed=31)
    watcher = sim.watch(_leader_id(sim), "k", prefix=True)
    other = sim.watch(_leader_id(sim), "k1")
    expected = 0
    for round_ in range(3):
        leader = _leader_id(sim)
        for i in range(4):
            sim.submit(leader, Put(f"k{i % 2}", f"{round_}.{i}"))
        sim.txn(leader, Txn((), (Put("k0", f"t{round_}"), Put("k1", f"t{round_}"), Put("x", "y")), ()))
        sim.run_for(0.3)
        expected += 4 + 2
        sim.crash(leader)
        assert sim.run_until(lambda: sim.leader() is not None, 5)
        sim.restart(leader)
    sim.settle()
    assert watcher.attachments >= 2 and watcher.closes == [] and watcher.gap_log == []
    assert watcher.events_seen == expected
    assert [len(events) for _, events in watcher.received].count(2) == 3  # one call per txn
    assert other.events_seen == expected // 2 and other.gap_log == []
    assert _revisions(watcher) == sorted(set(_revisions(watcher)))


def test_a_watcher_resumed_from_the_past_replays_and_one_past_the_history_is_refused():
    sim = NodeSim(SimOptions(limits=ServiceLimits(progress_interval=0.25, history_events=3)), seed=41)
    leader = _leader_id(sim)
    watcher = sim.watch(leader, "a")
    first = sim.submit(leader, Put("a", "1"))
    sim.run_for(0.3)
    assert _revisions(watcher) == [first.result.revision]
    sim.disconnect(watcher)
    position = watcher.position
    for i in range(5):
        sim.submit(leader, Put("b", f"{i}"))
    last = sim.submit(leader, Put("a", "2"))
    sim.run_for(0.3)
    service = sim.services[sim.node(leader)]
    with pytest.raises(Compacted) as refused:
        service.watch(_NullSink(), "a", start_revision=position + 1)
    assert refused.value.compact_revision > position + 1
    sim.reconnect(watcher, leader)
    assert watcher.closes == ["Compacted"]
    assert watcher.gap_log == [(position + 1, service.revision, "Compacted")]
    sim.submit(leader, Put("a", "3"))
    sim.settle()
    assert last.result.revision not in _revisions(watcher)  # inside the gap
    assert len(_revisions(watcher)) == 2
    # A watch from within the window replays it, then goes live.
    replayer = sim.watch(leader, "", prefix=True, start_revision=service.revision - 1)
    sim.settle()
    assert replayer.events_seen >= 2 and replayer.gap_log == []


class _NullSink:
    def events(self, events):
        return True

    def progress(self, revision):
        pass

    def closed(self, reason, compact_revision=None):
        pass


def _lagging_follower(sim: NodeSim, writes: int) -> tuple[str, str]:
    """Crash a follower, write past two snapshots, restart it (it needs InstallSnapshot)."""
    leader = _leader_id(sim)
    follower = _follower_of(sim, leader)
    sim.crash(follower)
    for i in range(writes):
        sim.submit(leader, Put("abc"[i % 3], f"w{i}"))
        sim.run_for(0.01)
    sim.run_for(0.3)
    sim.restart(follower)
    assert sim.run_until(lambda: sim.node(follower).core is not None, 1)
    return leader, follower


def test_a_watcher_on_a_follower_that_installs_a_snapshot_is_closed_as_compacted():
    sim = NodeSim(SimOptions(snapshot_entries=5), seed=37)
    leader, follower = _lagging_follower(sim, 20)
    watcher = sim.watch(follower, "", prefix=True)  # from the follower's (old) revision
    start = watcher.start
    assert start <= 10
    assert sim.run_until(lambda: sim.slots[follower].snapshots.received >= 1, 2)
    sim.run_for(0.2)
    assert watcher.closes[0] == "compacted"
    (first, last, reason), *_ = watcher.gap_log
    assert (first, reason) == (start, "compacted") and last >= 20
    sim.submit(leader, Put("a", "after"))
    sim.settle()
    assert "after" in [e.value for _, events in watcher.received for e in events]


def test_a_watcher_already_past_the_snapshot_a_follower_installs_continues_seamlessly():
    """A client resumes at a lagging follower from a revision the follower has not
    reached: the snapshot it then installs is not past the watcher's position, so the
    watch goes on without a gap."""
    sim = NodeSim(SimOptions(snapshot_entries=5), seed=37)
    leader = _leader_id(sim)
    watcher = sim.watch(leader, "", prefix=True)
    follower = _follower_of(sim, leader)
    sim.crash(follower)
    for i in range(20):
        sim.submit(leader, Put("abc"[i % 3], f"w{i}"))
        sim.run_for(0.01)
    sim.run_for(0.3)
    position = watcher.position
    sim.restart(follower)
    assert sim.run_until(lambda: sim.node(follower).core is not None, 1)
    sim.disconnect(watcher)
    sim.reconnect(watcher, follower)
    assert watcher.node == follower and sim.services[sim.node(follower)].revision < position
    assert sim.run_until(lambda: sim.slots[follower].snapshots.received >= 1, 2)
    snapshot = sim.slots[follower].snapshots.latest()[0].last_included_index
    assert snapshot <= position
    for i in range(3):
        sim.submit(leader, Put("a", f"after{i}"))
    sim.run_for(0.5)
    assert watcher.node == follower and watcher.closes == [] and watcher.gap_log == []
    assert [e.value for _, events in watcher.received[-3:] for e in events] == ["after0", "after1", "after2"]
    sim.settle()


def test_an_overflowing_slow_watcher_is_closed_while_another_keeps_up():
    limits = ServiceLimits(progress_interval=0.25, watcher_buffer_events=4)
    sim = NodeSim(SimOptions(limits=limits), seed=43)
    leader = _leader_id(sim)
    slow = sim.watch(leader, "k", stall_rate=1.0, stall_for=(5.0, 5.0))
    fast = sim.watch(leader, "k", stall_rate=0.5, stall_for=(0.001, 0.01))
    assert sim.services[sim.node(leader)].status().watchers == 2
    writes = []
    for i in range(10):
        writes.append(sim.submit(leader, Put("k", f"v{i}")))
        sim.run_for(0.02)
    sim.run_for(0.3)
    assert all(op.outcome == "ok" for op in writes)
    # closed, re-watched from the current revision, still too slow: closed again, ...
    assert slow.closes[0] == "overflow" and set(slow.closes) == {"overflow"}
    assert slow.events_seen < 10 and slow.gap_log
    assert fast.closes == [] and fast.events_seen == 10
    slow.stall_rate = 0.0
    sim.run_for(5.5)  # a stall already begun (5 s) ends before the last write
    sim.submit(leader, Put("k", "later"))
    sim.settle()
    assert slow.gap_log and slow.gap_log[0][2] == "overflow"
    assert slow.received[-1] == fast.received[-1]
    assert sum(sim.services[node].status().watchers for node in sim.up()) == 2


def test_transactions_are_acknowledged_as_the_committed_log_applies_them():
    sim = NodeSim(SimOptions(), seed=47)
    leader = _leader_id(sim)
    follower = _follower_of(sim, leader)
    sim.submit(leader, Put("a", "1"))
    sim.run_for(0.3)
    swap = Txn(
        (Compare("a", "value", "equal", "1"), Compare("b", "exists", "equal", False)),
        (Put("b", "from-a"), Delete("a"), Get("a"), Range("")),
        (Get("a"),),
    )
    first = sim.txn(leader, swap)
    again = sim.txn(leader, swap)
    refused = sim.txn(follower, swap)
    reading = sim.txn(follower, Txn((Compare("b", "revision", "greater", 0),), (Get("b"),), (Get("a"),)))
    stale = sim.txn(follower, Txn((), (Range("", limit=1),), ()), "stale")
    sim.run_for(0.5)
    assert refused.outcome == "fail"
    assert first.result.succeeded and not again.result.succeeded
    revision = first.result.revision
    assert first.result.results[3].items == (Item("b", "from-a", revision, revision),)
    assert reading.outcome == "ok" and reading.result.results[0].item.value == "from-a"
    assert stale.outcome == "ok"
    sim.settle()


# ---------------------------------------------------------------------------- hypothesis

NODE = st.integers(0, 4)
KEYS = st.sampled_from(["a", "b", "c", "ab"])
FAULTS = {"none": (0.0, 0.0), "lossy": (0.05, 0.05), "bad": (0.25, 0.1)}
# Service limits: the defaults, or a history window and watcher buffers small enough that
# "compacted" and "overflow" happen (bookmarks every 0.25 s either way).
LIMITS = {
    "default": ServiceLimits(progress_interval=0.25),
    "tight": ServiceLimits(progress_interval=0.25, history_events=6, watcher_buffer_events=3),
}
WATCHES = st.sampled_from([("a", False), ("b", False), ("a", True), ("", True)])
MAX_WATCHERS = 4
COMPARES = st.tuples(
    KEYS,
    st.sampled_from(["value", "revision", "exists"]),
    st.sampled_from(["equal", "equal", "not_equal", "greater", "less"]),
    st.integers(0, 1000),
)
TXN_OPS = st.lists(st.tuples(st.sampled_from(["put", "put", "delete", "get", "range"]), KEYS), max_size=3)


class NodeSimulation(RuleBasedStateMachine):
    """One ``NodeSim`` per example; every event is checked by the harness itself."""

    size = 3
    storage = "memory"  # SimOptions.storage (tests/sim/test_power_cut.py runs "simfs")

    def __init__(self) -> None:
        super().__init__()
        self.sim: NodeSim | None = None

    def _id(self, n: int) -> str:
        return self.sim.ids[n % self.size]

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        snapshot_entries=st.sampled_from([5, 10, 20]),
        chunk=st.sampled_from([None, 48]),
        fifo=st.booleans(),
        faults=st.sampled_from(sorted(FAULTS)),
        limits=st.sampled_from(sorted(LIMITS)),
        watchers=st.sampled_from([(), (("", True),), (("a", False), ("", True))]),
    )
    def boot(
        self, seed: int, snapshot_entries: int, chunk: int | None, fifo: bool, faults: str, limits: str,
        watchers: tuple,
    ) -> None:
        options = SimOptions(
            nodes=self.size, snapshot_entries=snapshot_entries, snapshot_chunk_bytes=chunk, fifo=fifo,
            limits=LIMITS[limits], storage=self.storage,
        )
        self.sim = NodeSim(options, seed=seed)
        self.sim.run_until(lambda: self.sim.leader() is not None, 10 * options.election_timeout)
        for n, (key, prefix) in enumerate(watchers):  # watching from the first revision
            self.sim.watch(self._id(n), key, prefix=prefix, start_revision=1)
        self.sim.set_faults(*FAULTS[faults])

    # -- time

    @rule(ms=st.one_of(st.integers(1, 50), st.integers(50, 400), st.integers(400, 1500)))
    def advance(self, ms: int) -> None:
        self.sim.run_for(ms / 1000)

    @rule(events=st.integers(1, 8))
    def step(self, events: int) -> None:
        for _ in range(events):
            self.sim.step()

    @rule(ms=st.integers(0, 40))
    def until_new_leader(self, ms: int) -> None:
        """Run until a leader of a new term (or another node) leads, for at most 3 s; at
        once when none can come: a leader is up, hears every node both ways and no
        message is dropped (waiting would only replay heartbeats)."""
        sim = self.sim
        leader = sim.leader()
        if leader is not None and sim.network.drop_rate == 0 and len(sim.up()) == self.size:
            lid = leader.config.node_id
            if all(sim.network.connected(lid, i) and sim.network.connected(i, lid) for i in sim.ids):
                sim.run_for(ms / 1000)
                return
        known = {(n.node_id, sim.services[n].status().term) for n in sim.up() if sim.services[n].status().role == "leader"}

        def new_leader() -> bool:
            leader = sim.leader()
            return leader is not None and (leader.node_id, sim.services[leader].status().term) not in known

        sim.run_until(new_leader, 3)
        sim.run_for(ms / 1000)

    # -- clients

    def _condition(self, kind: str, key: str, pick: int) -> Condition | None:
        sim = self.sim
        if kind == "value":
            values = [op.command.value for op in sim.writes if op.key == key and isinstance(op.command, Put)]
            return Condition(prev_value=values[pick % len(values)] if values else "none")
        if kind == "revision":
            revisions = [op.result.revision for op in sim.writes if op.key == key and op.outcome == "ok"]
            return Condition(prev_revision=revisions[pick % len(revisions)] if revisions else pick % 3)
        if kind == "absent":
            return Condition(must_be_absent=True)
        return None

    @rule(
        node=NODE,
        to_leader=st.booleans(),
        key=KEYS,
        delete=st.booleans(),
        condition=st.sampled_from([None, None, "value", "revision", "absent"]),
        pick=st.integers(0, 1000),
    )
    def submit(
        self, node: int, to_leader: bool, key: str, delete: bool, condition: str | None, pick: int
    ) -> None:
        sim = self.sim
        leader = sim.leader()
        target = leader.config.node_id if to_leader and leader is not None else self._id(node)
        cond = self._condition(condition, key, pick)
        command = Delete(key, cond) if delete else Put(key, f"v{len(sim.writes)}", cond)
        sim.submit(target, command)

    @rule(count=st.integers(2, 8), key=KEYS)
    def burst(self, count: int, key: str) -> None:
        """Several writes in one reactor turn: one append, one fsync."""
        leader = self.sim.leader()
        if leader is not None:
            for _ in range(count):
                self.sim.submit(leader.config.node_id, Put(key, f"v{len(self.sim.writes)}"))

    @rule(
        ops=st.lists(st.tuples(NODE, KEYS, st.sampled_from(["read", "put", "cas", "delete"])), max_size=6),
        ms=st.integers(0, 300),
    )
    def traffic(self, ops: list[tuple[int, str, str]], ms: int) -> None:
        """Several clients at once: reads anywhere, writes at the leader, then time passes."""
        sim = self.sim
        for node, key, kind in ops:
            leader = sim.leader()
            target = leader.config.node_id if leader is not None and kind != "read" else self._id(node)
            value = f"v{len(sim.writes)}"
            if kind == "read":
                sim.read(target, key)
            elif kind == "put":
                sim.submit(target, Put(key, value))
            elif kind == "cas":
                sim.submit(target, Put(key, value, self._condition("value", key, node)))
            else:
                sim.submit(target, Delete(key))
        sim.run_for(ms / 1000)

    @rule(count=st.integers(1, 25), crash=st.booleans(), pick=st.integers(0, 4))
    def lag_a_follower(self, count: int, crash: bool, pick: int) -> None:
        """Cut a follower off (or crash it), write ``count`` entries, let it back: past a
        snapshot, it must catch up by InstallSnapshot."""
        sim = self.sim
        leader = sim.leader()
        if leader is None:
            return
        followers = [n.config.node_id for n in sim.up() if n is not leader]
        if not followers:
            return
        lagging = followers[pick % len(followers)]
        if crash:
            sim.crash(lagging)
        else:
            sim.isolate(lagging)
        for n in range(count):
            sim.submit(leader.config.node_id, Put("abc"[n % 3], f"v{len(sim.writes)}"))
            sim.run_for(0.005)
        sim.run_for(0.2)
        sim.heal()
        sim.restart(lagging)

    @rule(node=NODE, key=KEYS)
    def read(self, node: int, key: str) -> None:
        self.sim.read(self._id(node), key)

    # -- transactions

    def _compare(self, key: str, target: str, op: str, pick: int) -> Compare:
        sim = self.sim
        if target == "value":
            values = [o.command.value for o in sim.writes if o.key == key and isinstance(o.command, Put)]
            return Compare(key, target, op, values[pick % len(values)] if values else "v")
        if target == "revision":
            revisions = [o.result.revision for o in sim.writes if o.key == key and o.outcome == "ok"]
            return Compare(key, target, op, revisions[pick % len(revisions)] if revisions else pick % 4)
        return Compare(key, target, "equal" if op != "not_equal" else op, pick % 2 == 0)

    def _branch(self, ops: list[tuple[str, str]], tag: str) -> tuple:
        """Operations of one branch; one write per key (the service refuses two)."""
        branch, written = [], set()
        for n, (kind, key) in enumerate(ops):
            if kind in ("put", "delete"):
                if key in written:
                    continue
                written.add(key)
                branch.append(Put(key, f"t{tag}.{n}") if kind == "put" else Delete(key))
            elif kind == "get":
                branch.append(Get(key))
            else:
                branch.append(Range(key, limit=None if n % 2 else 1))
        return tuple(branch)

    @rule(
        node=NODE,
        to_leader=st.booleans(),
        compares=st.lists(COMPARES, max_size=2),
        success=TXN_OPS,
        failure=TXN_OPS,
        stale=st.booleans(),
    )
    def txn(self, node: int, to_leader: bool, compares: list, success: list, failure: list, stale: bool) -> None:
        """A transaction: through the log if a branch writes, else served after a read
        barrier (or stale, at once, at any node)."""
        sim = self.sim
        leader = sim.leader()
        target = leader.config.node_id if to_leader and leader is not None else self._id(node)
        tag = str(len(sim.txns))
        txn = Txn(
            tuple(self._compare(*c) for c in compares),
            self._branch(success, tag + "s"),
            self._branch(failure, tag + "f"),
        )
        sim.txn(target, txn, "stale" if stale and txn.read_only else "linearizable")

    # -- watchers

    @rule(
        node=NODE,
        spec=WATCHES,
        back=st.sampled_from([None, None, 0, 3, 1000]),
        stall=st.sampled_from([0.0, 0.0, 0.3, 0.9]),
    )
    def watch(self, node: int, spec: tuple[str, bool], back: int | None, stall: float) -> None:
        """A watcher at a node, from now or from ``back`` revisions ago (possibly before
        the history kept), sometimes pushing back."""
        sim = self.sim
        if len(sim.watchers) >= MAX_WATCHERS:
            return
        node_id = self._id(node)
        start = None
        if back is not None and sim.node(node_id) is not None:
            start = max(1, sim.services[sim.node(node_id)].revision - back)
        key, prefix = spec
        sim.watch(node_id, key, prefix=prefix, start_revision=start, stall_rate=stall)

    @rule(pick=st.integers(0, MAX_WATCHERS - 1), node=NODE, ms=st.integers(0, 300))
    def reconnect_watcher(self, pick: int, node: int, ms: int) -> None:
        """A watch client drops its connection and comes back ``ms`` later at some node,
        from the last revision it saw."""
        sim = self.sim
        if not sim.watchers:
            return
        watcher = sim.watchers[pick % len(sim.watchers)]
        sim.disconnect(watcher)
        sim.run_for(ms / 1000)
        node_id = self._id(node)
        sim.reconnect(watcher, node_id if sim.node(node_id) is not None else None)

    # -- faults

    @rule(faults=st.sampled_from(sorted(FAULTS)))
    def set_faults(self, faults: str) -> None:
        self.sim.set_faults(*FAULTS[faults])

    @rule(side=st.sets(NODE, min_size=1, max_size=2))
    def partition(self, side: set[int]) -> None:
        group = sorted({self._id(n) for n in side})
        self.sim.partition([group, [i for i in self.sim.ids if i not in group]])

    @rule()
    def isolate_leader(self) -> None:
        leader = self.sim.leader()
        if leader is not None:
            self.sim.heal()
            self.sim.isolate(leader.config.node_id)

    @rule(src=NODE, dst=NODE)
    def cut_one_way(self, src: int, dst: int) -> None:
        if self._id(src) != self._id(dst):
            self.sim.cut_one_way(self._id(src), self._id(dst))

    @rule()
    def heal(self) -> None:
        self.sim.heal()

    @rule(node=NODE)
    def crash(self, node: int) -> None:
        self.sim.crash(self._id(node))

    @rule()
    def crash_leader(self) -> None:
        leader = self.sim.leader()
        if leader is not None:
            self.sim.crash(leader.config.node_id)

    @rule(pick=st.integers(0, 4))
    def restart(self, pick: int) -> None:
        down = self.sim.down()
        if down:
            self.sim.restart(down[pick % len(down)])

    @rule(node=NODE, ms=st.integers(0, 30))
    def bounce(self, node: int, ms: int) -> None:
        """Crash and restart soon after: whatever was not yet fsynced is gone."""
        node_id = self._id(node)
        if self.sim.node(node_id) is not None:
            self.sim.crash(node_id)
            self.sim.run_for(ms / 1000)
            self.sim.restart(node_id)

    @rule(node=NODE)
    def restart_gracefully(self, node: int) -> None:
        self.sim.restart_gracefully(self._id(node))

    @rule()
    def settle(self) -> None:
        """Heal, restart all; a write must be acknowledged within ten election timeouts,
        and then every node converges without losing an acknowledged write."""
        self.sim.settle()

    @invariant()
    def time_passes(self) -> None:
        """Between any two rules at least 10 ms pass (so that examples whose drawn rules
        happen not to include ``advance`` still run the cluster); the harness checks
        every event meanwhile, and here once more for what client calls reported."""
        if self.sim is not None:
            self.sim.check()
            self.sim.run_for(0.01)

    def teardown(self) -> None:
        sim = self.sim
        if sim is None:
            return
        sim.settle()
        if currently_in_test_context():  # not when a printed failing case is replayed by hand
            self._statistics(sim)

    def _statistics(self, sim: NodeSim) -> None:
        """What the example exercised (``pytest --hypothesis-show-statistics``)."""
        acked = sum(op.outcome == "ok" for op in sim.writes)
        event(f"acknowledged writes: {'0' if not acked else '1-9' if acked < 10 else '10+'}")
        event(f"read outcomes: {sorted({r.outcome for r in sim.reads})}")
        received = sum(getattr(slot.snapshots, "received", 0) for slot in sim.slots.values())
        event(f"snapshots installed from a leader: {'some' if received else 'none'}")
        event(f"simulated seconds: {'<1' if sim.now < 1 else '1-10' if sim.now < 10 else '10+'}")
        event(f"txn outcomes: {sorted({(c.writes, c.outcome) for c in sim.txns})}")
        event(f"watchers: {len(sim.watchers)}")
        event(f"watcher closes: {sorted({r for w in sim.watchers for r in w.closes})}")
        event(f"watcher gaps: {'some' if any(w.gap_log for w in sim.watchers) else 'none'}")
        event(f"watcher bookmarks: {'some' if any(w.bookmarks_seen for w in sim.watchers) else 'none'}")
        moves = sum(w.attachments for w in sim.watchers) - len(sim.watchers)
        event(f"watcher re-attachments: {'0' if moves <= 0 else '1-4' if moves < 5 else '5+'}")


class FiveNodeSimulation(NodeSimulation):
    size = 5


TestNodeSimThreeNodes = NodeSimulation.TestCase
TestNodeSimThreeNodes.settings = scaled(0.5)
TestNodeSimFiveNodes = FiveNodeSimulation.TestCase
TestNodeSimFiveNodes.settings = scaled(0.15)


# ---------------------------------------------------------------------------- planted bugs


def _deposed_leader_behind_a_newer_write() -> tuple[NodeSim, str]:
    """An old leader, isolated, whose "x" is 1 while the new leader has written 2."""
    sim = NodeSim(SimOptions(), seed=17)
    old = _leader_id(sim)
    sim.submit(old, Put("x", "1"))
    sim.run_for(0.3)
    sim.isolate(old)
    sim.run_until(lambda: sim.leader() is not None and sim.leader().config.node_id != old, 5)
    sim.submit(sim.leader().config.node_id, Put("x", "2"))
    sim.run_for(0.3)
    return sim, old


def test_a_stale_read_without_a_barrier_is_caught():
    """A node that answers reads without ReadIndex (here: an isolated old leader) serves
    stale data: the read check must fire."""
    sim, old = _deposed_leader_behind_a_newer_write()
    service = sim.services[sim.node(old)]
    service.barrier = lambda consistency="linearizable": succeed(None)
    with pytest.raises(Violation, match="stale read"):
        sim.read(old, "x")
        sim.check()


def test_an_fsync_that_lies_is_caught_as_a_lost_acknowledged_write():
    """Storage that acknowledges before syncing: crashing every node loses acknowledged
    writes, and ``settle`` must notice."""
    sim = NodeSim(SimOptions(snapshot_entries=1000), seed=19)
    leader = _leader_id(sim)
    for slot in sim.slots.values():
        slot.disk.sync = lambda: None
    ops = [sim.submit(leader, Put("k", f"v{i}")) for i in range(3)]
    sim.run_for(0.3)
    assert all(op.outcome == "ok" for op in ops)
    for node_id in sim.ids:
        sim.crash(node_id)
    with pytest.raises(Violation, match="leader completeness|acknowledged|state machine safety"):
        sim.settle()


def test_the_final_check_notices_an_acknowledged_write_that_is_not_there():
    sim = NodeSim(SimOptions(), seed=29)
    leader = _leader_id(sim)
    sim.submit(leader, Put("k", "real"))
    sim.settle()
    ghost = sim.submit(leader, Put("k", "ghost"))
    sim.run_for(0.2)
    assert ghost.outcome == "ok"
    sim.writes.remove(ghost)
    rev = ghost.result.revision
    sim.writes.append(replace(ghost, result=ApplyResult(True, rev, Item("k", "other", rev))))
    with pytest.raises(Violation, match="acknowledged write lost"):
        sim.check_no_acknowledged_write_lost()


def test_diverging_state_machines_are_caught():
    """A node whose store applies a put wrongly breaks state machine safety at once."""
    sim = NodeSim(SimOptions(), seed=23)
    leader = _leader_id(sim)
    victim = next(i for i in sim.ids if i != leader)
    store = sim.kv(victim)
    real_apply = store.apply

    def corrupt(index: int, command):
        if isinstance(command, Put):
            command = Put(command.key, command.value + "!", command.condition)
        return real_apply(index, command)

    store.apply = corrupt
    sim.submit(leader, Put("k", "v"))
    with pytest.raises(Violation, match="state machine safety"):
        sim.run_for(0.5)


def _planted_watch(prefix: bool = False):
    sim = NodeSim(SimOptions(), seed=53)
    leader = _leader_id(sim)
    watcher = sim.watch(leader, "k", prefix=prefix)
    return sim, leader, watcher, watcher.handle


def _offer_wrapped(handle, change) -> None:
    """Plant a bug in one live watch: ``change(revision, events, offer)`` replaces its
    ``offer`` (what the hub calls with each matching revision)."""
    real = handle.offer
    handle.offer = lambda revision, events: change(revision, events, real)


def test_a_watch_that_skips_a_change_is_caught():
    sim, leader, watcher, handle = _planted_watch()
    _offer_wrapped(handle, lambda r, events, offer: None if events[0].value == "v1" else offer(r, events))
    for i in range(3):
        sim.submit(leader, Put("k", f"v{i}"))
    with pytest.raises(Violation, match="missed revision"):
        sim.run_for(0.5)


def test_a_bookmark_past_a_skipped_change_is_caught():
    """The last change is lost and nothing follows it: only the bookmark reveals it."""
    sim, leader, watcher, handle = _planted_watch()
    _offer_wrapped(handle, lambda r, events, offer: None if events[0].value == "v2" else offer(r, events))
    for i in range(3):
        sim.submit(leader, Put("k", f"v{i}"))
    sim.run_for(0.2)
    assert watcher.events_seen == 2
    with pytest.raises(Violation, match="missed revision .* a bookmark"):
        sim.run_for(1.0)


def test_a_watch_that_delivers_a_change_twice_is_caught():
    sim, leader, watcher, handle = _planted_watch()

    def twice(revision, events, offer):
        offer(revision, events)
        handle.sink.events(events)

    _offer_wrapped(handle, twice)
    sim.submit(leader, Put("k", "v"))
    with pytest.raises(Violation, match="revision .* delivered again"):
        sim.run_for(0.5)


def test_a_watch_that_splits_a_transaction_or_alters_a_change_is_caught():
    sim, leader, watcher, handle = _planted_watch(prefix=True)

    def split(revision, events, offer):
        for event in events:
            offer(revision, [event])

    _offer_wrapped(handle, split)
    sim.txn(leader, Txn((), (Put("k1", "a"), Put("k2", "b")), ()))
    with pytest.raises(Violation, match="more than one events\\(\\) call"):
        sim.run_for(0.5)

    sim, leader, watcher, handle = _planted_watch()
    _offer_wrapped(handle, lambda r, events, offer: offer(r, [replace(e, prev_value="forged") for e in events]))
    sim.submit(leader, Put("k", "v"))
    with pytest.raises(Violation, match="but the committed log's changes there are"):
        sim.run_for(0.5)


def test_a_stale_read_only_transaction_is_caught():
    """Served without the read barrier by an isolated old leader: the txn check fires."""
    sim, old = _deposed_leader_behind_a_newer_write()
    service = sim.services[sim.node(old)]
    service._barrier = lambda consistency: succeed(None)
    with pytest.raises(Violation, match="stale read-only txn"):
        sim.txn(old, Txn((), (Get("x"),), ()))
        sim.check()


# ---------------------------------------------------------------------------- regressions
# Node bugs this simulation found (details in /work/notes/node-bugs.md; fixed in db412e8).


class _Recorder:
    """A transport that only records what the node sends."""

    def __init__(self) -> None:
        self.sent: list = []

    def attach(self, on_message, on_peer_unreachable) -> None:
        pass

    def send(self, msg) -> None:
        self.sent.append(msg)

    def update_peers(self, peers) -> None:
        pass

    def stop(self):
        return succeed(None)


def _lone_follower() -> tuple[SimClock, Node, KVService]:
    """Node n2 of a 3-node cluster whose peers are played by the test (long timeouts: it
    never campaigns during the test)."""
    members = tuple(Member(i, f"{i}:7000", f"{i}:8000") for i in ("n1", "n2", "n3"))
    config = NodeConfig(
        node_id="n2", members=members, http_address="n2:8000", http_port=8000, raft_listen_port=7000,
        data_dir=Path("/nonexistent"), election_timeout_ms=10_000, heartbeat_interval_ms=1_000,
    )
    clock = SimClock()
    reactor = NodeReactor(clock)
    service = KVService(reactor)
    node = Node(
        config,
        reactor=reactor,
        storage=SimAsyncStorage(MemoryStorage(), reactor, lambda: 0.01),
        snapshots=MemorySnapshotStore(),
        transport=_Recorder(),
        application=service,
    )
    service.attach(node)
    node.start()
    _run(clock, 0.1)
    return clock, node, service


def _run(clock: SimClock, seconds: float) -> None:
    target = clock.seconds() + seconds
    while (when := clock.next_time()) is not None and when <= target:
        clock.step()


def test_a_snapshot_and_later_committed_entries_in_one_ready_are_all_applied():
    """Ready order is: install the snapshot, THEN apply ``committed``. Here one Ready holds
    the last chunk of snapshot 3 and committed entries 1..5; the node applies 1..5 to its
    old store, then replaces the store with the snapshot (index 3): 4 and 5 are lost from
    the state machine for good, while the core believes they are applied."""
    clock, node, service = _lone_follower()
    cmds = [Put(f"k{i}", f"v{i}") for i in range(1, 6)]
    entries = [Entry(1, i, data=encode_command(c)) for i, c in enumerate(cmds, 1)]
    snapshot = KVStore()
    for entry, cmd in zip(entries[:3], cmds[:3]):
        snapshot.apply(entry.index, cmd)
    buffer = io.BytesIO()
    snapshot.write_snapshot(buffer, encode_membership(node.config.members))
    data = buffer.getvalue()
    node.receive(AppendEntries("n1", "n2", 1, 0, 0, tuple(entries[:3]), 0), "n1:8000")
    node.receive(InstallSnapshot("n1", "n2", 1, 3, 1, 0, data, True, crc32c(data), len(data)), "n1:8000")
    node.receive(AppendEntries("n1", "n2", 1, 3, 1, tuple(entries[3:]), 5), "n1:8000")
    _run(clock, 1.0)
    assert service.status().commit_index == 5
    assert service.kv.applied_index == 5
    assert service.kv.get("k5") == Item("k5", "v5", 5, 5)


def _install_snapshot_of(node: Node, members: tuple[Member, ...]) -> None:
    """The leader n1 sends n2 a snapshot at index 3 whose membership is ``members``."""
    snapshot = KVStore()
    for i in range(1, 4):
        snapshot.apply(i, Put(f"k{i}", "v"))
    buffer = io.BytesIO()
    snapshot.write_snapshot(buffer, encode_membership(members))
    data = buffer.getvalue()
    node.receive(InstallSnapshot("n1", "n2", 1, 3, 1, 0, data, True, crc32c(data), len(data)), "n1:8000")


@pytest.mark.parametrize("kept", [False, True])
def test_a_node_that_catches_up_by_a_snapshot_without_itself_knows_it_was_removed(kept):
    """A removed node that was behind gets the leader's snapshot, taken after its removal,
    and never applies the CONFIG entry that removed it: the snapshot's membership tells it."""
    clock, node, service = _lone_follower()
    members = node.config.members if kept else tuple(m for m in node.config.members if m.id != "n2")
    _install_snapshot_of(node, members)
    _run(clock, 1.0)
    assert service.kv.applied_index == 3
    assert node.removed is not kept


def test_a_read_index_reply_meant_for_a_previous_incarnation_is_not_taken():
    """Read ids restart at 1 when a node restarts, so a ReadIndexReply computed for the
    previous incarnation's read 1 answers the new incarnation's read 1: the read is served
    at an index older than a write acknowledged before it began (stale read)."""
    sim = NodeSim(SimOptions(), seed=7)
    leader = _leader_id(sim)
    follower = next(i for i in sim.ids if i != leader)
    sim.submit(leader, Put("k", "old"))
    sim.run_for(0.3)
    sim.network.hold_if = lambda m: isinstance(m, ReadIndexReply)
    sim.read(follower, "k")
    sim.run_for(0.1)
    (old_reply,) = sim.network.held
    sim.network.held = []
    sim.network.hold_if = lambda m: isinstance(m, AppendEntries) and m.dst == follower and bool(m.entries)
    write = sim.submit(leader, Put("k", "new"))
    assert sim.run_until(lambda: write.outcome == "ok", 1)
    sim.crash(follower)
    sim.restart(follower)
    assert sim.run_until(lambda: getattr(sim.node(follower).core, "leader_id", None) == leader, 1)
    sim.read(follower, "k")
    sim.clock.callLater(0.0001, sim.network._deliver, *old_reply)
    sim.run_for(0.2)
