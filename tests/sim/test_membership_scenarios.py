"""Membership changes on the simulated cluster, scripted: the 2015 counterexample, and the
paths the random runs take only now and then.

Ongaro's raft-dev post of July 2015 ("bug in single-server membership changes") showed
that single-server changes lose committed entries unless a new leader first commits an
entry of its own term: S1 (of S1-S4) adds S5, the entry stays on S1; S2 wins the next
term and removes S1, committed by S2 and S3 (a majority of S2-S4); S1 wins a later term
with S4 and S5 (a majority of S1-S5) and overwrites what S2 committed. Here S5 joins as a
learner first (a change is one add, promote or remove), so "adds S5" is its promotion.
The safety checker runs after every event; tests/sim/test_mutants.py runs the scenario
with the 2015 rule removed and requires the checker to fail.
"""

from __future__ import annotations

import random

from leifdb.raft.core import ConfigChangeRefused
from leifdb.raft.messages import Configuration, RequestVote, Role
from leifdb.raft.reconfig import DEPARTED_GRACE_TIMEOUTS
from tests.sim.chaos import FAULT_LEVELS, MODES
from tests.sim.cluster import Cluster, SimOptions
from tests.sim.reconfig import check_removals_learned

FOUR = ["n1", "n2", "n3", "n4"]
FIVE = FOUR + ["n5"]


def fixed_latency(nodes: int, **options: object) -> SimOptions:
    return SimOptions(nodes=nodes, min_latency_ms=10, max_latency_ms=10, **options)


def ongaro_cluster() -> Cluster:
    """n1 leads n1-n4 in term 1 and has added n5 as a learner; everything committed and
    applied everywhere. Timers are frozen: elections happen when the script says."""
    cluster = Cluster(fixed_latency(4), seed=2015)
    cluster.freeze(*cluster.nodes)
    n1 = cluster.elect("n1").core
    assert cluster.run_until(lambda: n1.commit_index == n1.log.last_index(), 1000)
    cluster.add_node()
    cluster.freeze("n5")
    added = cluster.change_membership("n1", FOUR, ["n5"])
    assert isinstance(added, tuple)
    cluster.propose("n1")
    cluster.run_for(100)
    cluster.nodes["n1"].tick()  # a heartbeat carries the commit index to the last follower
    last = n1.log.last_index()
    assert cluster.run_until(lambda: all(n.applied_index == last for n in cluster.up()), 1000)
    return cluster


def ongaro_2015(cluster: Cluster) -> tuple[int, int] | ConfigChangeRefused | None:
    """The counterexample's steps; returns what became of S2's removal of S1."""
    # S1 promotes S5; the entry reaches S5 but none of S2-S4.
    for peer in ("n2", "n3", "n4"):
        cluster.cut_one_way("n1", peer)
    promoted = cluster.change_membership("n1", FIVE)
    assert isinstance(promoted, tuple)
    cluster.run_for(100)

    # S2 wins term 2 with the votes of S3 and S4 and at once removes S1 (forced past the
    # strict quorum check: the point is the 2015 rule). Only S3 hears from S2.
    cluster.heal()
    cluster.partition([["n2", "n3", "n4"], ["n1", "n5"]])
    cluster.elect("n2")
    cluster.cut_one_way("n2", "n4")
    removal = cluster.change_membership("n2", ["n2", "n3", "n4"], ["n5"], force=True)
    cluster.run_for(200)

    # S1 restarts, wins a later term with the votes of S4 and S5 and replicates its log
    # to them.
    cluster.heal()
    cluster.partition([["n1", "n4", "n5"], ["n2", "n3"]])
    cluster.crash("n1")
    cluster.restart("n1")
    cluster.freeze("n1")
    cluster.elect("n1")
    cluster.run_for(200)
    return removal


def test_a_new_leader_changes_no_configuration_before_committing_an_entry_of_its_term():
    cluster = ongaro_cluster()

    removal = ongaro_2015(cluster)

    assert isinstance(removal, ConfigChangeRefused) and removal.retryable
    assert "committed an entry of its term" in removal.reason
    n1 = cluster.nodes["n1"]
    assert n1.core.role is Role.LEADER and n1.core.configuration() == Configuration(frozenset(FIVE))
    cluster.check_liveness()
    assert all(n.core.configuration() == Configuration(frozenset(FIVE)) for n in cluster.up())


# ---------------------------------------------------------------------- other paths


def test_a_removed_leader_hands_over_without_an_election_timeout():
    cluster = Cluster(fixed_latency(3, **MODES["available"]), seed=3)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    old = cluster.leader()
    cluster.run_for(300)
    cluster.record_messages()
    others = [i for i in cluster.nodes if i != old.id]

    result = cluster.change_membership(old.id, others)
    assert isinstance(result, tuple)
    index, _ = result

    def committed() -> bool:
        return any(n.core.commit_index >= index for n in cluster.up() if n.id in others)

    def new_leader() -> bool:
        return any(n.core.role is Role.LEADER for n in cluster.up() if n.id in others)

    assert cluster.run_until(committed, 1000)
    started = cluster.now
    assert cluster.run_until(new_leader, 1000)
    assert cluster.now - started < 100  # TimeoutNow, not an election timeout (1 s or more)
    assert cluster.run_until(lambda: old.removed, 1000)
    new = cluster.leader()
    assert new.id in others and new.core.term == result[1] + 1
    assert all(m.transfer for m in cluster.sent(RequestVote, src=new.id) if m.term == new.core.term)
    cluster.check_liveness()


def test_a_learner_far_behind_catches_up_by_snapshot_and_is_promoted():
    cluster = Cluster(fixed_latency(3, snapshot_every=5, max_promote_lag=3), seed=5)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    leader = cluster.leader()
    for _ in range(30):
        cluster.propose(leader.id)
    cluster.run_for(500)
    new = cluster.add_node()
    voters = sorted(leader.core.configuration().voters)

    assert isinstance(cluster.change_membership(leader.id, voters, [new.id]), tuple)
    def promote() -> tuple[int, int] | ConfigChangeRefused | None:
        return cluster.change_membership(leader.id, voters + [new.id])

    def caught_up() -> bool:
        return leader.core.peer_views()[new.id].match_index == leader.core.log.last_index()

    assert isinstance(promote(), ConfigChangeRefused)  # the add is not committed yet
    assert cluster.run_until(caught_up, 3000)
    assert cluster.stats["snapshots_installed"] >= 1
    assert isinstance(promote(), tuple)
    assert cluster.run_until(lambda: new.core.status().voter and new.applied_index == leader.applied_index, 2000)
    cluster.crash(voters[0] if voters[0] != leader.id else voters[1])
    cluster.check_liveness(restart_crashed=False)


def grace_ms(options: SimOptions) -> int:
    """Longer than the leader keeps replicating to a silent removed server."""
    return (DEPARTED_GRACE_TIMEOUTS + 2) * options.election_ticks * (options.tick_ms + options.tick_jitter_ms)


def test_a_removed_server_that_missed_its_removal_does_not_disturb_the_others():
    """c is removed while cut off, and comes back without the entry after the leader gave
    it up: with PreVote and the vote lease its campaigns change nobody's term."""
    cluster = Cluster(fixed_latency(3, **MODES["available"]), seed=11)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    leader = cluster.leader()
    cluster.run_for(300)
    gone = next(i for i in cluster.nodes if i != leader.id)
    cluster.isolate(gone)
    stay = sorted(i for i in cluster.nodes if i != gone)
    assert isinstance(cluster.change_membership(leader.id, stay, force=True), tuple)
    cluster.run_for(grace_ms(cluster.options))
    term = leader.core.term
    assert leader.core.role is Role.LEADER and gone not in leader.core.replicating_to()

    cluster.heal()
    cluster.run_for(5 * cluster.options.election_timeout_ms)

    assert leader.core.role is Role.LEADER and leader.core.term == term
    assert cluster.nodes[gone].core.role is not Role.LEADER
    cluster.check_liveness()


def test_a_removed_server_learns_that_its_removal_committed_when_that_news_is_lost():
    """The removed follower acknowledges the CONFIG entry, then everything the leader sends
    it is lost for a few heartbeats (the commit index that covers the removal among it).
    When the network heals it still learns that its removal committed, and stops: the
    leader replicates to it until it answered a message carrying that commit index."""
    cluster = Cluster(fixed_latency(3, **MODES["available"]), seed=13)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    leader = cluster.leader()
    cluster.run_for(300)
    gone = cluster.nodes[next(i for i in sorted(cluster.nodes) if i != leader.id)]
    stay = sorted(i for i in cluster.nodes if i != gone.id)

    result = cluster.change_membership(leader.id, stay)
    assert isinstance(result, tuple)
    index, _ = result
    assert cluster.run_until(lambda: gone.core.log.last_index() >= index, 1000)
    cluster.cut_one_way(leader.id, gone.id)
    assert cluster.run_until(lambda: leader.core.commit_index >= index, 1000)
    cluster.run_for(5 * cluster.options.tick_ms)
    assert gone.up and gone.core.commit_index < index

    check_removals_learned(cluster)
    assert gone.removed
    assert cluster.run_until(lambda: gone.id not in leader.core.replicating_to(), 3 * cluster.options.tick_ms)
    cluster.check_liveness()


def test_removed_servers_learn_of_their_removal_among_message_faults():
    """Followers removed one after another on a lossy network (drops, duplicates, delays;
    no partition, so none is silent for the leader's grace period) all learn that their
    removal committed once the network heals."""
    for seed in range(4):
        rng = random.Random(seed)
        cluster = Cluster(SimOptions(nodes=5, **MODES["available"]), seed=seed)
        cluster.network.set_fault_rates(*FAULT_LEVELS["chaos"])
        for _ in range(3):
            assert cluster.run_until(lambda: cluster.leader() is not None, 20_000), seed
            leader = cluster.leader()
            voters = sorted(leader.core.configuration().voters)
            gone = rng.choice([v for v in voters if v != leader.id])
            stay = [v for v in voters if v != gone]
            assert cluster.run_until(lambda: isinstance(cluster.change_membership(leader.id, stay), tuple), 5000)
            cluster.run_for(rng.randrange(100, 2000))
        cluster.check_liveness()  # the last removal commits too
        assert cluster.committed_members() == set(stay), seed
        check_removals_learned(cluster)
