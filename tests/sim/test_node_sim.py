"""Real ``leifdb.node.Node`` objects in a simulated cluster (``tests/sim/node_sim.py``).

The doubles first (storage, snapshot store, network), then scripted scenarios, then
hypothesis: a ``RuleBasedStateMachine`` whose rules advance time, submit conditional and
unconditional writes and linearizable reads at random nodes, partition, drop, duplicate,
crash and restart, with snapshots every few entries so InstallSnapshot happens. Every
property of ``NodeSim`` is checked after every simulated event, and each example ends with
``settle()`` (liveness, convergence, no acknowledged write lost). Then planted bugs in
the node's surroundings prove the checks can fail, and regression tests pin the node bugs
this simulation found.
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

from leifdb.kv.commands import ApplyResult, Condition, Delete, Item, Put
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
from tests.sim.node_sim import (
    MemorySnapshotStore,
    NodeReactor,
    NodeSim,
    SimAsyncStorage,
    SimClock,
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
    assert sim.slots[leader].node.kv.get("k1") is None
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
    kv = sim.slots[lagging].node.kv
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
    assert all(sim.node(i).kv.get("x").value == "kept" for i in others + [leader])


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
    assert sim.leader().kv.get("k").value == "2-n3"


# ---------------------------------------------------------------------------- hypothesis

NODE = st.integers(0, 4)
KEYS = st.sampled_from(["a", "b", "c"])
FAULTS = {"none": (0.0, 0.0), "lossy": (0.05, 0.05), "bad": (0.25, 0.1)}


class NodeSimulation(RuleBasedStateMachine):
    """One ``NodeSim`` per example; every event is checked by the harness itself."""

    size = 3

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
    )
    def boot(self, seed: int, snapshot_entries: int, chunk: int | None, fifo: bool, faults: str) -> None:
        options = SimOptions(
            nodes=self.size, snapshot_entries=snapshot_entries, snapshot_chunk_bytes=chunk, fifo=fifo
        )
        self.sim = NodeSim(options, seed=seed)
        self.sim.run_until(lambda: self.sim.leader() is not None, 10 * options.election_timeout)
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
        sim = self.sim
        known = {(n.config.node_id, n.status()["term"]) for n in sim.up() if n.status()["role"] == "leader"}

        def new_leader() -> bool:
            leader = sim.leader()
            return leader is not None and (leader.config.node_id, leader.status()["term"]) not in known

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
        received = sum(slot.snapshots.received for slot in sim.slots.values())
        event(f"snapshots installed from a leader: {'some' if received else 'none'}")
        event(f"simulated seconds: {'<1' if sim.now < 1 else '1-10' if sim.now < 10 else '10+'}")


class FiveNodeSimulation(NodeSimulation):
    size = 5


TestNodeSimThreeNodes = NodeSimulation.TestCase
TestNodeSimThreeNodes.settings = scaled(0.5)
TestNodeSimFiveNodes = FiveNodeSimulation.TestCase
TestNodeSimFiveNodes.settings = scaled(0.15)


# ---------------------------------------------------------------------------- planted bugs


def test_a_stale_read_without_a_barrier_is_caught():
    """A node that answers reads without ReadIndex (here: an isolated old leader) serves
    stale data: the read check must fire."""
    sim = NodeSim(SimOptions(), seed=17)
    old = _leader_id(sim)
    sim.submit(old, Put("x", "1"))
    sim.run_for(0.3)
    sim.isolate(old)
    sim.run_until(lambda: sim.leader() is not None and sim.leader().config.node_id != old, 5)
    sim.submit(sim.leader().config.node_id, Put("x", "2"))
    sim.run_for(0.3)
    node = sim.node(old)
    node.read_barrier = lambda: succeed(None)
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
    store = sim.node(victim).kv
    real_apply = store.apply

    def corrupt(index: int, command):
        if isinstance(command, Put):
            command = Put(command.key, command.value + "!", command.condition)
        return real_apply(index, command)

    store.apply = corrupt
    sim.submit(leader, Put("k", "v"))
    with pytest.raises(Violation, match="state machine safety"):
        sim.run_for(0.5)


# ---------------------------------------------------------------------------- regressions
# Node bugs this simulation found (details in /work/notes/node-bugs.md; fixed in db412e8).


class _Recorder:
    """A transport that only records what the node sends."""

    def __init__(self) -> None:
        self.sent: list = []

    def send(self, msg) -> None:
        self.sent.append(msg)

    def stop(self):
        return succeed(None)


def _lone_follower() -> tuple[SimClock, Node]:
    """Node n2 of a 3-node cluster whose peers are played by the test (long timeouts: it
    never campaigns during the test)."""
    members = tuple(Member(i, f"{i}:7000", f"{i}:8000") for i in ("n1", "n2", "n3"))
    config = NodeConfig(
        node_id="n2", members=members, http_address="n2:8000", http_port=8000, raft_listen_port=7000,
        data_dir=Path("/nonexistent"), election_timeout_ms=10_000, heartbeat_interval_ms=1_000,
    )
    clock = SimClock()
    node = Node(
        config,
        reactor=NodeReactor(clock),
        open_storage=lambda c, r: (SimAsyncStorage(MemoryStorage(), r, lambda: 0.01), MemorySnapshotStore()),
        make_transport=lambda n: _Recorder(),
    )
    node.start()
    _run(clock, 0.1)
    return clock, node


def _run(clock: SimClock, seconds: float) -> None:
    target = clock.seconds() + seconds
    while (when := clock.next_time()) is not None and when <= target:
        clock.step()


def test_a_snapshot_and_later_committed_entries_in_one_ready_are_all_applied():
    """Ready order is: install the snapshot, THEN apply ``committed``. Here one Ready holds
    the last chunk of snapshot 3 and committed entries 1..5; the node applies 1..5 to its
    old store, then replaces the store with the snapshot (index 3): 4 and 5 are lost from
    the state machine for good, while the core believes they are applied."""
    clock, node = _lone_follower()
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
    assert node.status()["commit_index"] == 5
    assert node.kv.applied_index == 5
    assert node.kv.get("k5") == Item("k5", "v5", 5)


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
