"""The simulation's own parts: each fault does what it says, and each check can fail.

Checker tests tamper with a healthy cluster's state (as a buggy core would) and expect the
named property to be reported.
"""

from __future__ import annotations

import pytest

from leifdb.raft.core import PersistentState
from leifdb.raft.messages import Entry, EntryType, HardState, RequestVote, Role, SnapshotMeta
from tests.sim.cluster import Cluster, SimOptions, decode_snapshot, encode_snapshot
from tests.sim.invariants import Violation
from tests.sim.soak import main as soak_main
from tests.sim.soak import parse_duration


def running_cluster(nodes: int = 3, proposals: int = 5, **options) -> Cluster:
    cluster = Cluster(SimOptions(nodes=nodes, **options), seed=21)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    for _ in range(proposals):
        cluster.propose(cluster.leader().id)
    cluster.run_for(500)
    return cluster


def follower(cluster: Cluster):
    return next(n for n in cluster.up() if n.core.role is Role.FOLLOWER)


# ---------------------------------------------------------------------- time and network


def test_events_run_at_their_own_time_in_order():
    cluster = Cluster(SimOptions(nodes=3), seed=1)
    seen = []
    cluster.call_later(30, lambda: seen.append(cluster.now))
    cluster.call_later(10, lambda: seen.append(cluster.now))
    cluster.run_for(1000)
    assert seen == [10, 30]
    assert cluster.now == 1000


def test_same_seed_replays_the_same_run():
    def run(seed: int):
        cluster = Cluster(SimOptions(nodes=5, drop_rate=0.1, duplicate_rate=0.1), seed=seed)
        for _ in range(20):
            cluster.run_for(150)
            leader = cluster.leader()
            if leader is not None:
                cluster.propose(leader.id)
        return [tuple(n.applied) for n in cluster.nodes.values()], dict(cluster.stats)

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_partition_drops_messages_both_ways_and_heal_restores():
    cluster = running_cluster()
    cluster.record_messages()
    cluster.partition([["n1"], ["n2", "n3"]])
    delivered = cluster.stats["messages_delivered"]
    cluster.run_for(50)
    assert cluster.stats["lost_to_partition"] > 0
    cluster.heal()
    cluster.run_for(200)
    assert cluster.stats["messages_delivered"] > delivered


def test_one_way_cut_loses_only_one_direction():
    cluster = Cluster(SimOptions(nodes=3), seed=2)
    cluster.freeze("n1", "n2", "n3")
    cluster.cut_one_way("n1", "n2")
    cluster.campaign("n1")
    cluster.run_for(100)
    assert cluster.nodes["n2"].core.term < cluster.nodes["n1"].core.term  # n1's request was lost
    assert cluster.nodes["n3"].core.term == cluster.nodes["n1"].core.term  # n1->n3 still works
    cluster.inject(RequestVote("n2", "n1", 50, 0, 0))  # n2->n1 still works
    assert cluster.nodes["n1"].core.term == 50


def test_duplicate_delivers_a_message_twice_and_deliver_now_overtakes():
    cluster = Cluster(SimOptions(nodes=3, min_latency_ms=10, max_latency_ms=10), seed=3)
    cluster.freeze("n1", "n2", "n3")
    cluster.campaign("n1")
    first = next(iter(cluster.network.in_flight))
    assert cluster.network.duplicate(0)
    assert cluster.network.deliver_now(1)  # the second in-flight message jumps the queue
    before = cluster.stats["messages_delivered"]
    cluster.step()
    assert cluster.stats["messages_delivered"] == before + 1
    assert first in cluster.network.in_flight
    cluster.run_for(100)
    assert cluster.stats["duplicates"] == 1


def test_drop_and_delay_single_messages():
    cluster = Cluster(SimOptions(nodes=3, min_latency_ms=10, max_latency_ms=10), seed=4)
    cluster.freeze("n1", "n2", "n3")
    cluster.campaign("n1")
    assert len(cluster.network.in_flight) == 2
    assert cluster.network.drop(0)
    assert cluster.network.delay(0, 500)
    cluster.run_for(100)
    assert cluster.nodes["n1"].core.role is Role.CANDIDATE  # one vote dropped, one delayed
    cluster.run_for(500)
    assert cluster.nodes["n1"].core.role is Role.LEADER


def test_crash_before_sync_loses_the_staged_writes():
    cluster = running_cluster()
    leader = cluster.leader()
    before = leader.core.log.last_index()
    cluster.crash_during_next_ready(leader.id, "before_sync")
    cluster.propose(leader.id)
    assert leader.core is None
    cluster.restart(leader.id)
    assert leader.core.log.last_index() == before


def test_crash_after_sync_keeps_writes_but_sends_nothing():
    cluster = running_cluster()
    leader = cluster.leader()
    before = leader.core.log.last_index()
    sent = cluster.stats["messages_sent"]
    cluster.crash_during_next_ready(leader.id, "after_sync")
    cluster.propose(leader.id)
    assert cluster.stats["messages_sent"] == sent
    cluster.restart(leader.id)
    assert leader.core.log.last_index() == before + 1


def test_snapshot_encoding_round_trips():
    entries = [Entry(1, 1, EntryType.NOOP, b""), Entry(2, 2, EntryType.NORMAL, b"\x00 \n\xff")]
    assert decode_snapshot(encode_snapshot(entries)) == entries


def test_liveness_check_fails_without_a_majority():
    cluster = running_cluster()
    for node_id in ("n1", "n2"):
        cluster.crash(node_id)
    with pytest.raises(ValueError):
        cluster.check_liveness(restart_crashed=False)


def test_liveness_check_reports_a_cluster_that_cannot_elect():
    cluster = Cluster(SimOptions(nodes=3), seed=5)
    cluster.freeze("n1", "n2", "n3")
    cluster.thaw = lambda *ids: None  # keep every timer stopped: nobody ever campaigns
    with pytest.raises(Violation, match="liveness"):
        cluster.check_liveness(budget_ms=5000)


# ---------------------------------------------------------------------- membership


def test_a_new_node_waits_to_be_added_and_a_removed_one_stops_for_good():
    cluster = running_cluster()
    leader = cluster.leader()
    new = cluster.add_node()
    cluster.run_for(3000)
    assert new.id == "n4" and new.core.term == 0 and new.applied_index == 0  # never campaigns

    voters = sorted(leader.core.configuration().voters)
    assert isinstance(cluster.change_membership(leader.id, voters, [new.id]), tuple)
    cluster.run_for(500)
    assert new.applied == leader.applied and not new.core.status().voter

    gone = follower(cluster)
    assert isinstance(cluster.change_membership(leader.id, [v for v in voters if v != gone.id], [new.id]), tuple)
    assert cluster.run_until(lambda: gone.removed, 1000)
    cluster.restart(gone.id)
    assert gone.core is None
    cluster.check_liveness()
    assert gone.core is None and new.applied_index == leader.applied_index


def test_snapshots_carry_the_configuration_at_their_index():
    cluster = running_cluster(snapshot_every=2)
    leader = cluster.leader()
    new = cluster.add_node()
    voters = sorted(leader.core.configuration().voters)
    added, _ = cluster.change_membership(leader.id, voters, [new.id])
    for _ in range(4):
        cluster.propose(leader.id)
    cluster.run_for(1000)
    assert leader.core.log.snapshot_index > added  # the CONFIG entry is compacted away
    assert leader.snapshot_membership == leader.core.membership_data()
    cluster.crash(leader.id)
    cluster.restart(leader.id)
    assert leader.core.configuration().learners == {new.id}


# ---------------------------------------------------------------------- each check can fail


def test_checker_reports_two_leaders_in_one_term():
    cluster = running_cluster()
    other = follower(cluster)
    other.core.role = Role.LEADER
    with pytest.raises(Violation, match="election safety"):
        cluster.check()


def test_checker_reports_leader_overwriting_its_log():
    cluster = running_cluster()
    leader = cluster.leader()
    cluster.isolate(leader.id)
    cluster.propose(leader.id)  # stays uncommitted: only the leader has it
    log = leader.core.log
    last = log.entries[-1]
    log.entries[-1] = Entry(last.term, last.index, last.type, b"rewritten")
    with pytest.raises(Violation, match="leader append-only"):
        cluster.check()


def test_checker_reports_logs_that_match_late_but_differ_early():
    a = [Entry(1, 1, EntryType.NORMAL, b"a"), Entry(1, 2, EntryType.NORMAL, b"x")]
    b = [Entry(1, 1, EntryType.NORMAL, b"b"), Entry(1, 2, EntryType.NORMAL, b"x")]
    initial = {"n1": PersistentState(HardState(1), SnapshotMeta(), a),
               "n2": PersistentState(HardState(1), SnapshotMeta(), b)}
    with pytest.raises(Violation, match="log matching"):
        Cluster(SimOptions(nodes=3), seed=6, initial=initial)


def test_checker_reports_leader_missing_a_committed_entry():
    cluster = running_cluster(proposals=1)
    lagging = follower(cluster)
    cluster.isolate(lagging.id)
    cluster.propose(cluster.leader().id)
    cluster.run_for(300)  # committed by the other two
    lagging.core.role = Role.LEADER  # as if it had won an election it must not win
    lagging.core.term += 10
    for voter in cluster.nodes:
        cluster.checker.on_vote(lagging.id, lagging.core.term, voter)
    with pytest.raises(Violation, match="leader completeness"):
        cluster.check()


def test_checker_reports_a_leader_elected_without_a_majority_of_its_voters():
    cluster = running_cluster()
    node = follower(cluster)
    node.core.role = Role.LEADER
    node.core.term += 1
    cluster.checker.on_vote(node.id, node.core.term, "n9")  # no voter of its configuration
    with pytest.raises(Violation, match="election quorum"):
        cluster.check()


def test_checker_reports_a_commit_without_a_majority_of_voters_holding_the_entry():
    cluster = running_cluster()
    leader = cluster.leader()
    cluster.isolate(leader.id)
    cluster.propose(leader.id)  # only the leader holds it
    leader.core.commit_index = leader.core.log.last_index()
    with pytest.raises(Violation, match="commit quorum"):
        cluster.check()


def test_checker_reports_a_different_entry_applied_at_the_same_index():
    cluster = running_cluster()
    node = follower(cluster)
    node.applied.pop()
    forged = Entry(99, node.applied_index + 1, EntryType.NORMAL, b"forged")
    with pytest.raises(Violation, match="state machine safety"):
        cluster.checker.on_apply(node, forged)


def test_checker_reports_an_entry_applied_twice():
    cluster = running_cluster()
    node = follower(cluster)
    with pytest.raises(Violation, match="applied twice"):
        cluster.checker.on_apply(node, node.applied[-1])


def test_checker_reports_commit_index_going_back():
    cluster = running_cluster()
    node = follower(cluster)
    node.core.commit_index -= 1
    with pytest.raises(Violation, match="commit index went back"):
        cluster.check()


def test_checker_reports_a_lost_acknowledged_write():
    cluster = running_cluster()
    node = follower(cluster)
    acked = cluster.acked[-1]
    node.applied[acked.index - 1] = Entry(acked.term, acked.index, EntryType.NORMAL, b"lost")
    with pytest.raises(Violation, match="acknowledged"):
        cluster.checker.check_acked_applied(cluster.nodes.values())


def test_core_exceptions_become_violations_with_the_seed():
    cluster = running_cluster()
    node = follower(cluster)
    with pytest.raises(Violation, match=r"exception during an action.*seed 21"):
        cluster._guard(node.core.compact, SnapshotMeta(node.applied_index + 5, 1))


# ---------------------------------------------------------------------- soak entry point


def test_parse_duration():
    assert parse_duration("30s") == 30
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90


def test_soak_runs_and_reports(capsys):
    assert soak_main(["--duration", "20s", "--seed", "7", "--runs", "2", "--steps", "60"]) == 0
    out = capsys.readouterr().out
    assert "base seed 7" in out and "simulated steps" in out and "steps/s" in out and "faults:" in out
