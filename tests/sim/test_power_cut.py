"""Power cuts in the node-level simulation (``tests/sim/node_sim.py``, storage "simfs").

Each node runs the real ``DiskStorage`` and ``SnapshotStore`` over its own
``SimFileSystem`` (under ``SimAsyncStorage``), so a power cut keeps exactly what was made
durable (sometimes, seeded, plus a random part of the unsynced writes, torn). Scripted
seeded runs cut the power of every node at once at several moments (mid-traffic, right
after acknowledgements, during snapshots and a graceful stop), restart, and ``settle()``,
which checks that no acknowledged write was lost; a hypothesis state machine adds power
cuts to the rules of ``test_node_sim``; and a planted lying fsync proves the check fires.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from leifdb.kv.commands import Put
from leifdb.storage.simfs import SimFileSystem
from tests.sim.node_sim import NodeSim, SimOptions, Violation
from tests.sim.profiles import SIM_SETTINGS
from tests.sim.test_node_sim import NODE, NodeSimulation


def _leader_id(sim: NodeSim) -> str:
    assert sim.run_until(lambda: sim.leader() is not None, 10 * sim.options.election_timeout)
    return sim.leader().config.node_id


def _simfs(**kw) -> SimOptions:
    return SimOptions(storage="simfs", **kw)


def _acked(sim: NodeSim) -> int:
    return sum(op.outcome == "ok" for op in sim.writes)


def test_simfs_mode_runs_the_real_disk_storage():
    sim = NodeSim(_simfs(snapshot_entries=5), seed=1)
    leader = _leader_id(sim)
    ops = [sim.submit(leader, Put(f"k{i % 3}", f"v{i}")) for i in range(20)]
    sim.run_for(0.5)
    assert all(op.outcome == "ok" for op in ops)
    sim.settle()
    for slot in sim.slots.values():
        assert isinstance(slot.fs, SimFileSystem)
        tree = slot.fs.tree(durable=True)
        assert any(p.startswith(f"/data/{slot.node_id}/log/") for p in tree), sorted(tree)
        assert any(p.startswith(f"/data/{slot.node_id}/snap/") and tree[p] for p in tree), sorted(tree)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("moment", ["after_ack", "mid_traffic", "idle", "twice"])
def test_power_cut_of_every_node_loses_no_acknowledged_write(seed: int, moment: str):
    sim = NodeSim(_simfs(snapshot_entries=7), seed=seed)
    leader = _leader_id(sim)
    n = 0

    def burst(count: int) -> list:
        nonlocal n
        ops = []
        for _ in range(count):
            target = sim.leader()
            node_id = target.config.node_id if target is not None else leader
            ops.append(sim.submit(node_id, Put(f"k{n % 4}", f"v{n}")))
            n += 1
        return ops

    ops = burst(10)
    if moment == "after_ack":
        # cut the very instant the last write of the burst is acknowledged
        assert sim.run_until(lambda: all(op.outcome != "pending" for op in ops), 5)
    elif moment == "mid_traffic":
        sim.run_for(sim.rng.uniform(0.001, 0.02))
    else:
        sim.run_for(0.5)
    sim.power_cut_all()
    if moment == "twice":
        _leader_id(sim)
        ops = burst(8)
        assert sim.run_until(lambda: any(op.outcome == "ok" for op in ops), 5)
        sim.power_cut_all()
    sim.settle()
    assert _acked(sim) > 0
    burst(5)
    sim.run_for(0.1)
    sim.power_cut_all()
    sim.settle()


@pytest.mark.parametrize("seed", range(4))
def test_power_cut_during_a_graceful_stop_and_of_single_nodes(seed: int):
    sim = NodeSim(_simfs(snapshot_entries=5), seed=100 + seed)
    leader = _leader_id(sim)
    for i in range(8):
        sim.submit(leader, Put(f"k{i % 3}", f"a{i}"))
    sim.run_for(0.05)
    follower = next(i for i in sim.ids if i != leader)
    sim.restart_gracefully(follower)
    sim.run_for(0.001)
    sim.power_cut_all(restart=False)
    sim.run_for(0.2)
    for node_id in sim.ids:
        sim.restart(node_id)
    leader = _leader_id(sim)
    for i in range(8):
        sim.submit(leader, Put(f"k{i % 3}", f"b{i}"))
    sim.run_for(0.02)
    sim.power_cut(leader)  # one machine
    sim.run_for(0.3)
    sim.restart(leader)
    sim.settle()
    assert _acked(sim) >= 8


@pytest.mark.parametrize("lying", [False, True])
def test_a_lying_fsync_is_caught_after_a_cluster_wide_power_cut(lying: bool):
    """Planted bug: ``fdatasync`` (the log's group commit) does nothing, so the log's
    acknowledged records are only in the page cache; cutting the power of every node
    loses them and ``settle()`` must say so (the first check to see it is leader
    completeness: the new leader lacks the acknowledged, committed entries). The same run
    with an honest fsync settles."""
    sim = NodeSim(_simfs(snapshot_entries=1000), seed=19)
    leader = _leader_id(sim)
    if lying:
        for slot in sim.slots.values():
            slot.fs.fdatasync = lambda fd: None
    ops = [sim.submit(leader, Put("k", f"v{i}")) for i in range(3)]
    sim.run_for(0.3)
    assert all(op.outcome == "ok" for op in ops)
    sim._power_rng.random = lambda: 0.99  # keep no unsynced writeback: pure durable state
    sim.power_cut_all()
    if not lying:
        sim.settle()
        return
    with pytest.raises(Violation, match="acknowledged write lost|leader completeness|state machine safety"):
        sim.settle()


# ---------------------------------------------------------------------------- hypothesis


class PowerCutSimulation(NodeSimulation):
    """``test_node_sim``'s state machine on ``DiskStorage`` over ``SimFileSystem``, with
    power cuts of one node and of every node among its rules."""

    storage = "simfs"

    @rule(node=NODE, ms=st.integers(0, 300))
    def power_cut(self, node: int, ms: int) -> None:
        node_id = self._id(node)
        self.sim.power_cut(node_id)
        self.sim.run_for(ms / 1000)
        self.sim.restart(node_id)

    @rule(ms=st.integers(0, 300))
    def power_cut_all(self, ms: int) -> None:
        self.sim.power_cut_all(restart=False)
        self.sim.run_for(ms / 1000)
        for node_id in self.sim.ids:
            self.sim.restart(node_id)


TestPowerCutSimulation = PowerCutSimulation.TestCase
TestPowerCutSimulation.settings = settings(SIM_SETTINGS, max_examples=40, stateful_step_count=50)
