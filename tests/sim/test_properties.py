"""Raft's safety properties under hypothesis-chosen faults, on simulated 3- and 5-node clusters.

Hypothesis picks every step: advance time, deliver / drop / duplicate / delay / reorder a
message, partition (both ways or one way) and heal, crash and restart, propose, snapshot,
and demand liveness. ``SafetyChecker`` checks election safety, leader append-only, log
matching, leader completeness, state machine safety, election and commit quorums and that
no acknowledged proposal is lost, after every simulated event. A failure shrinks to a
minimal list of steps.

``Membership*`` add membership changes to the steps (add a fresh learner, promote it,
remove any member, the leader included; one at a time, retried when refused), with
PreVote and the vote lease on (``available``) or off (``classic``).
"""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import random

from leifdb.raft.messages import Role
from tests.sim.chaos import FAULT_LEVELS, MODES, run_membership_seed, run_seed
from tests.sim.cluster import CRASH_POINTS, Cluster, SimOptions
from tests.sim.profiles import scaled, seeds
from tests.sim.reconfig import Reconfigurer

NODE = st.integers(0, 4)
PICK = st.integers(0, 1 << 16)


class RaftSimulation(RuleBasedStateMachine):
    """One simulated cluster per example; ``size`` is set by the subclasses."""

    size = 3

    def __init__(self) -> None:
        super().__init__()
        self.cluster: Cluster | None = None

    def _id(self, n: int) -> str:
        ids = list(self.cluster.nodes)
        return ids[n % len(ids)]

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        snapshot_every=st.sampled_from([None, 2, 5, 20]),
        batch=st.sampled_from([1, 3, 512]),
        inflight=st.sampled_from([1, 8]),
        faults=st.sampled_from(sorted(FAULT_LEVELS)),
    )
    def boot(self, seed: int, snapshot_every: int | None, batch: int, inflight: int, faults: str) -> None:
        options = SimOptions(
            nodes=self.size,
            snapshot_every=snapshot_every,
            max_entries_per_append=batch,
            max_inflight_appends=inflight,
        )
        self.cluster = Cluster(options, seed=seed)
        self.cluster.network.set_fault_rates(*FAULT_LEVELS[faults])

    # -- time

    @rule(ms=st.one_of(st.integers(1, 60), st.integers(60, 600), st.integers(600, 3000)))
    def advance(self, ms: int) -> None:
        self.cluster.run_for(ms)

    def _to_new_leader(self, ms: int) -> None:
        """Run until a new leader appears (at most 3 s), then ``ms`` more."""
        cluster = self.cluster
        known = {(n.id, n.core.term) for n in cluster.leaders()}
        cluster.run_until(lambda: any((n.id, n.core.term) not in known for n in cluster.leaders()), 3000)
        cluster.run_for(ms)

    @rule(ms=st.integers(0, 60))
    def advance_to_new_leader(self, ms: int) -> None:
        """Faults that follow land mid-handover, while the new leader replicates."""
        self._to_new_leader(ms)

    @rule(ms=st.integers(0, 60))
    def isolate_new_leader(self, ms: int) -> None:
        """Heal, then cut off the next leader moments after it appears: repeated, this
        leaves a trail of leaders whose entries reached only some nodes (Figure 8)."""
        self._to_new_leader(ms)
        leader = self.cluster.leader()
        if leader is not None:
            self.cluster.heal()
            self.cluster.isolate(leader.id)

    @rule(ms=st.integers(0, 60))
    def crash_new_leader(self, ms: int) -> None:
        self._to_new_leader(ms)
        leader = self.cluster.leader()
        if leader is not None:
            self.cluster.crash(leader.id)

    @rule(
        rounds=st.lists(
            st.tuples(st.integers(0, 60), st.sampled_from(["isolate", "crash", "propose_then_isolate"])),
            min_size=2,
            max_size=5,
        )
    )
    def leader_churn(self, rounds: list[tuple[int, str]]) -> None:
        """Several leaders in a row, each cut off or crashed moments into its term (the
        previous one rejoins): the histories of Figures 7 and 8 in one step."""
        cluster = self.cluster
        for ms, how in rounds:
            self._to_new_leader(ms)
            leader = cluster.leader()
            if leader is None:
                continue
            cluster.heal()
            for node in cluster.nodes.values():
                if not node.up and node.id != leader.id:
                    cluster.restart(node.id)
            if how == "crash":
                cluster.crash(leader.id)
                continue
            if how == "propose_then_isolate":
                cluster.propose(leader.id)
            cluster.isolate(leader.id)

    # -- single messages

    @rule(pick=PICK)
    def deliver_now(self, pick: int) -> None:
        self.cluster.network.deliver_now(pick)

    @rule(pick=PICK)
    def drop(self, pick: int) -> None:
        self.cluster.network.drop(pick)

    @rule(pick=PICK)
    def duplicate(self, pick: int) -> None:
        self.cluster.network.duplicate(pick)

    @rule(pick=PICK)
    def replay_old_message(self, pick: int) -> None:
        """An old message arrives again, long after it was sent."""
        self.cluster.network.replay(pick)

    @rule(pick=PICK, ms=st.integers(1, 3000))
    def delay(self, pick: int, ms: int) -> None:
        self.cluster.network.delay(pick, ms)

    @rule(faults=st.sampled_from(sorted(FAULT_LEVELS)))
    def set_fault_level(self, faults: str) -> None:
        self.cluster.network.set_fault_rates(*FAULT_LEVELS[faults])

    # -- partitions

    @rule(side=st.sets(NODE, min_size=1, max_size=2))
    def partition(self, side: set[int]) -> None:
        group = {self._id(n) for n in side}
        rest = [i for i in self.cluster.nodes if i not in group]
        self.cluster.partition([sorted(group), rest])

    @rule()
    def isolate_leader(self) -> None:
        leader = self.cluster.leader()
        if leader is not None:
            self.cluster.heal()
            self.cluster.isolate(leader.id)

    @rule(src=NODE, dst=NODE)
    def cut_one_way(self, src: int, dst: int) -> None:
        if self._id(src) != self._id(dst):
            self.cluster.cut_one_way(self._id(src), self._id(dst))

    @rule()
    def heal(self) -> None:
        self.cluster.heal()

    # -- crashes

    @rule(node=NODE)
    def crash(self, node: int) -> None:
        self.cluster.crash(self._id(node))

    @rule()
    def crash_leader(self) -> None:
        leader = self.cluster.leader()
        if leader is not None:
            self.cluster.crash(leader.id)

    @rule(node=NODE)
    def restart(self, node: int) -> None:
        self.cluster.restart(self._id(node))

    @rule(node=NODE, point=st.sampled_from(CRASH_POINTS))
    def crash_during_next_ready(self, node: int, point: str) -> None:
        """Crash part-way through the node's next Ready: before its fsync, after it, while
        sending, or before applying."""
        self.cluster.crash_during_next_ready(self._id(node), point)

    @rule(node=NODE, ms=st.integers(0, 30))
    def bounce(self, node: int, ms: int) -> None:
        """A quick reboot: whatever the node had not made durable is gone."""
        node_id = self._id(node)
        if self.cluster.nodes[node_id].up:
            self.cluster.crash(node_id)
            self.cluster.run_for(ms)
            self.cluster.restart(node_id)

    @rule(ms=st.integers(0, 30), pick=PICK)
    def bounce_a_voter(self, ms: int, pick: int) -> None:
        """Reboot a node right after it voted in an election: its vote must survive."""
        cluster = self.cluster
        cluster.run_until(lambda: any(n.core.role is Role.CANDIDATE for n in cluster.up()), 3000)
        cluster.run_for(ms)
        voters = [n for n in cluster.up() if n.core.role is Role.FOLLOWER and n.core.voted_for not in (None, n.id)]
        if voters:
            node = voters[pick % len(voters)]
            cluster.crash(node.id)
            cluster.restart(node.id)

    # -- clients and snapshots

    @rule(node=NODE)
    def propose(self, node: int) -> None:
        self.cluster.propose(self._id(node))

    @rule(count=st.integers(1, 4))
    def propose_at_leader(self, count: int) -> None:
        leader = self.cluster.leader()
        if leader is not None:
            for _ in range(count):
                self.cluster.propose(leader.id)

    @rule(node=NODE)
    def read(self, node: int) -> None:
        """A linearizable read: its read index must cover every write acknowledged before."""
        self.cluster.read(self._id(node))

    @rule(node=NODE)
    def snapshot(self, node: int) -> None:
        self.cluster.snapshot(self._id(node))

    # -- liveness

    @rule()
    def heal_and_require_progress(self) -> None:
        """With the network healed and every node up, a proposal commits within ten
        election timeouts and reaches every node."""
        self.cluster.check_liveness()

    @invariant()
    def safe(self) -> None:
        if self.cluster is not None:
            self.cluster.check()
            assert sum(n.core.role is Role.LEADER for n in self.cluster.up()) <= len(self.cluster.nodes)


class ThreeNodes(RaftSimulation):
    size = 3


class FiveNodes(RaftSimulation):
    size = 5


class MembershipSimulation(RaftSimulation):
    """Starts with ``size`` voters; servers come and go through membership changes."""

    size = 3
    mode = "available"

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        snapshot_every=st.sampled_from([None, 3, 10]),
        batch=st.sampled_from([1, 512]),
        promote_lag=st.sampled_from([2, 50]),
        faults=st.sampled_from(sorted(FAULT_LEVELS)),
    )
    def boot(self, seed: int, snapshot_every: int | None, batch: int, promote_lag: int, faults: str) -> None:
        options = SimOptions(
            nodes=self.size,
            snapshot_every=snapshot_every,
            max_entries_per_append=batch,
            max_promote_lag=promote_lag,
            **MODES[self.mode],
        )
        self.cluster = Cluster(options, seed=seed)
        self.cluster.network.set_fault_rates(*FAULT_LEVELS[faults])
        self.reconfigurer = Reconfigurer(self.cluster, random.Random(seed))

    @rule(attempts=st.integers(1, 3), ms=st.integers(0, 300))
    def reconfigure(self, attempts: int, ms: int) -> None:
        """Membership change attempts at the leader, ``ms`` apart (a refused one is
        retried)."""
        for _ in range(attempts):
            self.reconfigurer.step()
            self.cluster.run_for(ms)

    @rule()
    def remove_the_leader(self) -> None:
        leader = self.cluster.leader()
        if leader is None:
            return
        current = leader.core.configuration()
        voters = current.voters - {leader.id}
        if voters:
            self.cluster.change_membership(leader.id, voters, current.learners)


class MembershipAvailable(MembershipSimulation):
    mode = "available"


class MembershipClassic(MembershipSimulation):
    mode = "classic"


TestThreeNodeCluster = ThreeNodes.TestCase
TestThreeNodeCluster.settings = scaled(1.0)
TestFiveNodeCluster = FiveNodes.TestCase
TestFiveNodeCluster.settings = scaled(0.5)
TestMembershipAvailable = MembershipAvailable.TestCase
TestMembershipAvailable.settings = scaled(0.5)
TestMembershipClassic = MembershipClassic.TestCase
TestMembershipClassic.settings = scaled(0.25)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_membership_changes_among_faults_keep_raft_safe_and_live(mode: str):
    """Seeded runs of ``run_membership_seed``: 1 to 5 voters at the start, servers added,
    promoted and removed (the leader too) among crashes, partitions, message faults and
    snapshots; every property checked after every event, then liveness with everything
    healed, and again with a minority of the final voters (the leader first) crashed."""
    for seed in seeds(8, base=1000):
        run_membership_seed(seed, 300, mode)


def test_liveness_after_every_fault_heals():
    """After a storm of faults, healing with a majority up lets a leader emerge and commit
    within ten election timeouts (asserted by ``check_liveness``), for many seeds."""
    for seed in range(20):
        cluster = run_seed(seed, steps=150, final_liveness=False)
        took = cluster.check_liveness()
        assert took <= 10 * cluster.options.election_timeout_ms


@pytest.mark.parametrize("size", [3, 5])
def test_liveness_with_a_minority_down(size: int):
    """A connected majority is enough: the leader and others of a minority stay crashed."""
    cluster = Cluster(SimOptions(nodes=size), seed=size)
    assert cluster.run_until(lambda: cluster.leader() is not None, 10 * cluster.options.election_timeout_ms)
    down = [cluster.leader().id] + [n for n in cluster.nodes if n != cluster.leader().id][: (size - 3) // 2]
    for node_id in down:
        cluster.crash(node_id)
    took = cluster.check_liveness(restart_crashed=False)
    assert took <= 10 * cluster.options.election_timeout_ms
    assert all(cluster.nodes[n].core is None for n in down)
