"""Scenarios from the Raft paper (Ongaro & Ousterhout, 2014) on the simulated cluster.

Each test is named after the rule it checks and reads as set-up / act / check. The safety
checker runs after every event throughout, so each scenario also proves that no property
broke on the way. Scripted elections freeze the nodes' timers (``Cluster.freeze``) and make
one node campaign (``Cluster.elect``); latency is fixed where the script races messages.
"""

from __future__ import annotations

from leifdb.raft.core import PersistentState
from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    EntryType,
    HardState,
    RequestVote,
    RequestVoteReply,
    Role,
    SnapshotMeta,
)
from tests.sim.cluster import Cluster, SimNode, SimOptions


def log_of(terms: list[int]) -> list[Entry]:
    """Entries with the given terms from index 1; the data names index and term."""
    return [Entry(t, i, EntryType.NORMAL, b"%d/%d" % (i, t)) for i, t in enumerate(terms, start=1)]


def disk(terms: list[int], term: int, voted_for: str | None = None, commit: int = 0) -> PersistentState:
    return PersistentState(HardState(term, voted_for, commit), SnapshotMeta(), log_of(terms))


def terms(node: SimNode) -> list[int]:
    log = node.core.log
    return [log.term_at(i) for i in range(1, log.last_index() + 1)]


def all_ids(cluster: Cluster) -> list[str]:
    return list(cluster.nodes)


# ---------------------------------------------------------------------- Figure 7

FIGURE7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def test_figure7_new_leader_brings_every_follower_log_to_its_own():
    # Set up: the leader of term 8 (n1) and followers (a)-(f) as n2..n7.
    initial = {"n1": disk(FIGURE7_LEADER, 7)}
    followers = {}
    for n, (name, log) in enumerate(FIGURE7_FOLLOWERS.items(), start=2):
        initial[f"n{n}"] = disk(log, 7)
        followers[f"n{n}"] = name
    cluster = Cluster(SimOptions(nodes=7), seed=7, initial=initial)
    cluster.freeze(*followers)

    # Act: n1 wins term 8 (votes of a, b, e, f; c and d hold more up-to-date logs), then
    # serves one client proposal.
    leader = cluster.elect("n1")
    index, term = cluster.propose("n1")
    expected = FIGURE7_LEADER + [8, 8]
    cluster.run_until(lambda: all(terms(n) == expected and n.applied_index == index for n in cluster.up()), 5000)

    # Check: every follower holds exactly the leader's log (missing entries filled in,
    # extra and conflicting ones removed) and applied the same entries.
    assert leader.core.term == term == 8
    for node_id, name in followers.items():
        node = cluster.nodes[node_id]
        assert node.core.log.entries == leader.core.log.entries, f"follower ({name})"
        assert node.applied == leader.applied, f"follower ({name})"


# ---------------------------------------------------------------------- Figure 8


def figure8_cluster() -> Cluster:
    """Figure 8 (b): S1 led term 2 and got index 2 to S2; S5 won term 3 (votes of S3, S4)
    and wrote its own index 2. S1 has since heard of term 3. Entry 1 is committed."""
    initial = {
        "n1": disk([1, 2], term=3, commit=1),
        "n2": disk([1, 2], term=2, voted_for="n1", commit=1),
        "n3": disk([1], term=3, voted_for="n5", commit=1),
        "n4": disk([1], term=3, voted_for="n5", commit=1),
        "n5": disk([1, 3], term=3, voted_for="n5", commit=1),
    }
    options = SimOptions(
        nodes=5, max_entries_per_append=1, max_inflight_appends=1, min_latency_ms=10, max_latency_ms=10
    )
    cluster = Cluster(options, seed=8, initial=initial)
    cluster.freeze(*all_ids(cluster))
    return cluster


def has(node: SimNode, index: int, term: int) -> bool:
    return node.core.log.term_at(index) == term


def figure8_c(cluster: Cluster) -> None:
    """(c): S5 and S2 are down; S1 wins term 4 (votes of S3, S4) and replicates its
    term-2 entry at index 2 to S3 and S4, so it is stored on a majority (S1, S3, S4); the
    term-4 entry after it does not get out."""
    n1, n3, n4 = (cluster.nodes[i] for i in ("n1", "n3", "n4"))
    cluster.crash("n5")
    cluster.crash("n2")
    cluster.elect("n1")
    assert n1.core.term == 4
    assert cluster.run_until(lambda: has(n3, 2, 2) and has(n4, 2, 2), 2000)
    cluster.cut_one_way("n1", "n3")
    cluster.cut_one_way("n1", "n4")
    cluster.run_for(200)  # the followers' acknowledgements of index 2 reach S1


def figure8_d(cluster: Cluster) -> None:
    """(d): S1 crashes; S5 (last term 3) wins term 5 with votes of S2, S3, S4 and
    overwrites index 2 everywhere with its term-3 entry."""
    cluster.crash("n1")
    cluster.heal()
    cluster.restart("n5")
    cluster.restart("n2")
    leader = cluster.elect("n5")
    others = [cluster.nodes[i] for i in ("n2", "n3", "n4")]
    assert cluster.run_until(lambda: all(has(n, 2, 3) for n in others), 3000)
    assert leader.core.term >= 5


def test_figure8_leader_does_not_commit_previous_term_entry_by_counting_replicas():
    # Set up
    cluster = figure8_cluster()
    n1, n3, n4 = (cluster.nodes[i] for i in ("n1", "n3", "n4"))
    cluster.record_messages()

    # Act: Figure 8 (c)
    figure8_c(cluster)

    # Check: the term-2 entry is on a majority, and S1 (term 4) heard so from S3 and S4
    # (their links to S1 were never cut), yet S1 has not committed it.
    assert all(has(n, 2, 2) for n in (n1, n3, n4))
    for follower in ("n3", "n4"):
        acks = cluster.sent(AppendEntriesReply, src=follower, dst="n1")
        assert any(a.success and a.match_index == 2 and a.term == 4 for a in acks)
    assert n3.core.log.last_index() == n4.core.log.last_index() == 2
    assert n1.core.commit_index == 1
    assert n1.core.role is Role.LEADER


def test_figure8_c_to_d_overwrites_only_an_uncommitted_entry():
    # Set up
    cluster = figure8_cluster()
    figure8_c(cluster)

    # Act: Figure 8 (d)
    figure8_d(cluster)

    # Check: index 2 is S5's term-3 entry everywhere; that is safe because the term-2
    # entry was never committed (the checker, run after every event, agrees), and the
    # cluster goes on to commit and apply the same log on every node.
    cluster.thaw()
    cluster.check_liveness()
    assert all(has(n, 2, 3) for n in cluster.up())
    assert len({tuple(n.applied[:3]) for n in cluster.up()}) == 1
    assert cluster.checker.committed[1].term == 3


def test_figure8_e_entry_of_current_term_commits_earlier_ones_and_blocks_stale_candidate():
    # Set up
    cluster = figure8_cluster()
    n1, n3, n4, n5 = (cluster.nodes[i] for i in ("n1", "n3", "n4", "n5"))
    cluster.crash("n5")
    cluster.crash("n2")

    # Act: S1 (term 4) gets its own term-4 entry onto a majority before crashing.
    cluster.elect("n1")
    assert cluster.run_until(lambda: has(n3, 3, 4) and has(n4, 3, 4) and n1.core.commit_index == 3, 2000)
    cluster.crash("n1")
    cluster.restart("n5")
    cluster.restart("n2")
    for _ in range(3):
        cluster.campaign("n5")
        cluster.run_for(300)

    # Check: index 2 (term 2) committed together with index 3 (term 4); S5, whose log ends
    # in term 3, can no longer win (S3 and S4 hold a term-4 entry), and every later leader
    # keeps both entries.
    assert n5.core.role is not Role.LEADER
    assert [e.term for e in cluster.checker.committed[:3]] == [1, 2, 4]
    cluster.thaw()
    cluster.check_liveness()
    assert all(has(n, 2, 2) and has(n, 3, 4) for n in cluster.up())


# ---------------------------------------------------------------------- §5.4.1


def test_election_restriction_denies_vote_to_candidate_with_older_last_term():
    # Set up: n1 has the longest log, but its last term (1) is older than the others' (2).
    initial = {"n1": disk([1, 1, 1], 2), "n2": disk([1, 2], 2), "n3": disk([1, 2], 2)}
    cluster = Cluster(SimOptions(nodes=3), seed=1, initial=initial)
    cluster.freeze(*all_ids(cluster))
    cluster.record_messages()

    # Act: n1 campaigns three times.
    for _ in range(3):
        cluster.campaign("n1")
        cluster.run_for(200)

    # Check: every vote was denied and n1 never led.
    replies = cluster.sent(RequestVoteReply, dst="n1")
    assert replies and not any(r.vote_granted for r in replies)
    assert {r.src for r in replies} == {"n2", "n3"}
    assert not cluster.leaders()


def test_election_restriction_denies_vote_to_candidate_with_shorter_log_of_same_last_term():
    initial = {"n1": disk([1, 1], 1), "n2": disk([1, 1, 1], 1), "n3": disk([1, 1, 1], 1)}
    cluster = Cluster(SimOptions(nodes=3), seed=2, initial=initial)
    cluster.freeze(*all_ids(cluster))
    cluster.record_messages()

    for _ in range(3):
        cluster.campaign("n1")
        cluster.run_for(200)

    replies = cluster.sent(RequestVoteReply, dst="n1")
    assert replies and not any(r.vote_granted for r in replies)
    assert not cluster.leaders()


def test_election_restriction_grants_newer_last_term_even_with_shorter_log():
    # Set up: n1's log is shorter, but ends in a newer term.
    initial = {"n1": disk([1, 2], 2), "n2": disk([1, 1, 1], 2), "n3": disk([1, 1, 1], 2)}
    cluster = Cluster(SimOptions(nodes=3), seed=3, initial=initial)
    cluster.freeze("n2", "n3")

    # Act
    leader = cluster.elect("n1")
    cluster.run_until(lambda: all(terms(n) == terms(leader) for n in cluster.up()), 2000)

    # Check: n1 won, and its log (with its no-op) replaced the followers' longer tails.
    assert terms(leader) == [1, 2, 3]
    assert all(n.core.log.entries == leader.core.log.entries for n in cluster.up())


# ---------------------------------------------------------------------- Figure 2


def test_all_servers_convert_to_follower_on_higher_term():
    cluster = Cluster(SimOptions(nodes=3), seed=4)
    cluster.freeze("n2", "n3")
    leader = cluster.elect("n1")
    cluster.record_messages()
    term = leader.core.term

    cluster.inject(RequestVote("n2", "n1", term + 5, 0, 0))

    assert leader.core.role is Role.FOLLOWER
    assert leader.core.term == term + 5
    (reply,) = cluster.sent(RequestVoteReply, src="n1")
    assert not reply.vote_granted  # n2's claimed log (empty) is behind n1's


def test_followers_start_election_when_leader_goes_silent():
    cluster = Cluster(SimOptions(nodes=3), seed=5)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    old = cluster.leader()
    old_term = old.core.term
    cluster.record_messages()

    cluster.isolate(old.id)
    others = [n for n in cluster.up() if n is not old]
    assert cluster.run_until(lambda: any(n.core.role is Role.LEADER for n in others), 3 * cluster.options.election_timeout_ms)

    new = next(n for n in others if n.core.role is Role.LEADER)
    assert new.core.term > old_term
    assert new.core.voted_for == new.id
    votes = cluster.sent(RequestVote, src=new.id)
    assert {m.dst for m in votes} == {n.id for n in cluster.nodes.values() if n is not new}


def test_leader_heartbeats_suppress_elections():
    cluster = Cluster(SimOptions(nodes=5), seed=6)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    leader, term = cluster.leader(), cluster.leader().core.term

    cluster.run_for(20 * cluster.options.election_timeout_ms)

    assert cluster.leader() is leader and leader.core.term == term
    assert all(n.core.term == term for n in cluster.up())
    assert len(cluster.checker.leader_of_term) == 1


def test_candidate_steps_down_on_append_entries_from_leader_of_its_term():
    cluster = Cluster(SimOptions(nodes=3), seed=7)
    cluster.freeze(*all_ids(cluster))
    cluster.isolate("n2")
    cluster.campaign("n2")
    candidate = cluster.nodes["n2"]
    assert candidate.core.role is Role.CANDIDATE
    term = candidate.core.term

    cluster.inject(AppendEntries("n1", "n2", term, 0, 0, (), 0))

    assert candidate.core.role is Role.FOLLOWER
    assert candidate.core.leader_id == "n1" and candidate.core.term == term


def test_append_entries_receiver_rejects_stale_term_and_reports_current_term():
    cluster = Cluster(SimOptions(nodes=3), seed=8)
    cluster.freeze("n2", "n3")
    leader = cluster.elect("n1")
    cluster.propose("n1")
    cluster.run_for(300)
    follower = cluster.nodes["n3"]
    before = list(follower.core.log.entries)
    cluster.record_messages()

    stale = Entry(leader.core.term - 1, follower.core.log.last_index() + 1, EntryType.NORMAL, b"stale")
    cluster.inject(AppendEntries("n2", "n3", leader.core.term - 1, follower.core.log.last_index(),
                                 follower.core.log.last_term(), (stale,), 99))

    (reply,) = cluster.sent(AppendEntriesReply, src="n3", dst="n2")
    assert not reply.success and reply.term == leader.core.term
    assert follower.core.log.entries == before
    assert follower.core.leader_id == "n1"


def test_append_entries_receiver_commits_up_to_leader_commit_bounded_by_last_new_entry():
    cluster = Cluster(SimOptions(nodes=3), seed=9)
    cluster.freeze(*all_ids(cluster))
    cluster.isolate("n2")  # the crafted leader n1 does not really exist in this test
    follower = cluster.nodes["n2"]
    entries = tuple(log_of([1, 1, 1]))

    cluster.inject(AppendEntries("n1", "n2", 1, 0, 0, entries, leader_commit=10))

    assert follower.core.commit_index == 3
    assert [e.data for e in follower.applied] == [b"1/1", b"2/1", b"3/1"]


def test_request_vote_receiver_grants_one_vote_per_term_even_across_restart():
    cluster = Cluster(SimOptions(nodes=3), seed=10)
    cluster.freeze(*all_ids(cluster))
    cluster.isolate("n3")
    cluster.record_messages()

    cluster.inject(RequestVote("n1", "n3", 5, 0, 0))
    cluster.crash("n3")
    cluster.restart("n3")
    cluster.inject(RequestVote("n2", "n3", 5, 0, 0))
    cluster.inject(RequestVote("n1", "n3", 5, 0, 0))

    granted = [(r.dst, r.vote_granted) for r in cluster.sent(RequestVoteReply, src="n3")]
    assert granted == [("n1", True), ("n2", False), ("n1", True)]


def test_leader_acknowledges_only_applied_entries_and_they_survive_its_crash():
    cluster = Cluster(SimOptions(nodes=5), seed=11)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    leader = cluster.leader()

    index, term = cluster.propose(leader.id, b"important")
    assert not cluster.acked  # not acknowledged before it is committed and applied
    assert cluster.run_until(lambda: bool(cluster.acked), 1000)
    cluster.crash(leader.id)
    cluster.check_liveness(restart_crashed=False)

    for node in cluster.up():
        assert node.applied[index - 1] == Entry(term, index, EntryType.NORMAL, b"important")


def test_committed_entries_apply_in_log_order_exactly_once_despite_reordering_and_duplicates():
    options = SimOptions(nodes=3, duplicate_rate=0.3, delay_rate=0.2, max_delay_ms=300)
    cluster = Cluster(options, seed=12)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)

    for _ in range(40):
        leader = cluster.leader()
        if leader is not None:
            cluster.propose(leader.id)
        cluster.run_for(25)
    cluster.check_liveness()

    sequences = {tuple(n.applied) for n in cluster.up()}
    assert len(sequences) == 1
    (applied,) = sequences
    assert [e.index for e in applied] == list(range(1, len(applied) + 1))
    assert len(cluster.acked) > 20


# ---------------------------------------------------------------------- §8 reads


def deposed_leader_read(cluster: Cluster) -> tuple[SimNode, int]:
    """Cut the leader off; the others elect a new one and acknowledge a write; then a
    client reads at the old leader, which (without check-quorum) still believes it leads."""
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    old = cluster.leader()
    cluster.propose(old.id)
    cluster.run_for(300)
    cluster.isolate(old.id)
    assert cluster.run_until(lambda: any(n.core.role is Role.LEADER and n is not old for n in cluster.up()), 5000)
    new = max(cluster.leaders(), key=lambda n: n.core.term)
    cluster.propose(new.id)
    assert cluster.run_until(lambda: cluster.acked[-1].term == new.core.term, 1000)
    assert old.core.role is Role.LEADER
    return old, cluster.read(old.id)


def test_read_index_needs_a_majority_so_a_deposed_leader_cannot_serve_stale_reads():
    # Set up and act
    cluster = Cluster(SimOptions(nodes=3, check_quorum=False), seed=16)
    old, read_id = deposed_leader_read(cluster)
    cluster.run_for(1000)

    # Check: no answer while cut off (a majority must confirm leadership first) ...
    assert cluster.stats["reads_ok"] == 0 and cluster.stats["reads_failed"] == 0
    # ... and once it hears of the new term, the read fails instead of returning stale data.
    cluster.heal()
    cluster.run_for(1000)
    assert old.core.role is Role.FOLLOWER
    assert cluster.stats["reads_failed"] == 1 and cluster.stats["reads_ok"] == 0


def test_read_index_on_healthy_cluster_covers_every_acknowledged_write():
    cluster = Cluster(SimOptions(nodes=5), seed=17)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    for n in range(10):
        cluster.propose(cluster.leader().id)
        cluster.run_for(30)
        for node_id in cluster.nodes:
            cluster.read(node_id)
    cluster.run_for(1000)

    assert cluster.stats["reads_ok"] == 50  # each checked against the acknowledged writes
    assert max(index for _, _, index in cluster.read_answers) >= cluster.acked[-1].index - 1


# ---------------------------------------------------------------------- §7 snapshots


def test_lagging_follower_catches_up_through_multi_chunk_snapshot():
    cluster = Cluster(SimOptions(nodes=3, snapshot_every=5, chunk_size=64), seed=13)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    lagging = next(n for n in cluster.up() if n is not cluster.leader())
    cluster.crash(lagging.id)

    for _ in range(40):
        cluster.propose(cluster.leader().id)
        cluster.run_for(20)
    cluster.restart(lagging.id)
    cluster.check_liveness()

    leader = cluster.leader()
    assert cluster.stats["snapshots_installed"] >= 1
    assert cluster.stats["snapshot_chunks"] > 1
    assert lagging.snapshot is not None and lagging.snapshot[0].size > 64
    assert lagging.applied == leader.applied[: lagging.applied_index]
    assert lagging.applied_index == leader.applied_index


def test_corrupted_snapshot_chunk_is_rejected_then_sent_again():
    options = SimOptions(nodes=3, snapshot_every=5, chunk_size=64, corrupt_rate=0.5)
    cluster = Cluster(options, seed=14)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    lagging = next(n for n in cluster.up() if n is not cluster.leader())
    cluster.crash(lagging.id)
    for _ in range(30):
        cluster.propose(cluster.leader().id)
        cluster.run_for(20)

    cluster.restart(lagging.id)
    cluster.network.corrupt_rate = 0.5
    cluster.run_until(lambda: cluster.stats["snapshots_rejected"] >= 1, 20_000)
    cluster.check_liveness()

    assert cluster.stats["snapshots_rejected"] >= 1
    assert lagging.applied == cluster.leader().applied[: lagging.applied_index]
    assert lagging.applied_index == cluster.leader().applied_index


def test_restart_restores_state_machine_from_snapshot_then_log():
    cluster = Cluster(SimOptions(nodes=3), seed=15)
    assert cluster.run_until(lambda: cluster.leader() is not None, 5000)
    for _ in range(10):
        cluster.propose(cluster.leader().id)
    cluster.run_for(500)
    node = next(n for n in cluster.up() if n is not cluster.leader())
    assert cluster.snapshot(node.id)
    for _ in range(5):
        cluster.propose(cluster.leader().id)
    cluster.run_for(500)
    before = list(node.applied)

    cluster.crash(node.id)
    cluster.restart(node.id)

    assert node.core.log.snapshot_index == node.snapshot[0].last_included_index > 0
    # The commit index is not stored (only term and vote are), so the entries after the
    # snapshot are applied again once the leader tells the node how far it committed.
    assert node.applied == before[: node.snapshot[0].last_included_index]
    cluster.run_for(500)
    assert node.applied == before
