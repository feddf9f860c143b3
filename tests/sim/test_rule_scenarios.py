"""Scripted histories that random search is unlikely to reach, each aimed at one rule.

Every script runs with the safety checker on after every event, fixed 10 ms latency and
frozen timers (elections and heartbeats happen when the script says), so the interleaving
is exact. On the real core each script ends with every acknowledged write applied on every
live node; tests/sim/test_mutants.py runs the same functions with the rule broken and
requires a violation (the mutant each script kills is named in its docstring).
"""

from __future__ import annotations

from leifdb.raft.messages import AppendEntries, AppendEntriesReply, Entry, Role
from tests.sim.cluster import Cluster, SimOptions

EXACT = dict(min_latency_ms=10, max_latency_ms=10)


def scripted(seed: int, **options: object) -> Cluster:
    """A 3-node cluster with exact latency and frozen timers, ``n1`` elected and its no-op
    committed everywhere."""
    cluster = Cluster(SimOptions(nodes=3, **EXACT, **options), seed=seed)
    cluster.freeze(*cluster.nodes)
    cluster.elect("n1")
    cluster.run_for(50)
    cluster.nodes["n1"].tick()  # a heartbeat round carries the commit index to everyone
    assert cluster.run_until(lambda: all(n.core.commit_index >= 1 for n in cluster.up()), 1000)
    return cluster


def drop_in_flight(cluster: Cluster, src: str, dst: str) -> None:
    """Lose the one AppendEntries with entries now in flight from ``src`` to ``dst``."""
    net = cluster.network
    (pos,) = [
        n for n, item in enumerate(net.in_flight.values())
        if isinstance(item.msg, AppendEntries) and item.msg.src == src and item.msg.dst == dst and item.msg.entries
    ]
    assert net.drop(pos)


def fail_over(cluster: Cluster, old: str) -> None:
    """Crash the leader ``old``, heal, restart timers: the others must elect a leader and
    apply every acknowledged write (``check_liveness`` converges and checks that)."""
    cluster.crash(old)
    cluster.heal()
    cluster.thaw()
    cluster.check_liveness(restart_crashed=False)


def applied_everywhere(cluster: Cluster, entry: Entry) -> bool:
    return all(n.applied_index >= entry.index and n.applied[entry.index - 1] == entry for n in cluster.up())


# ---------------------------------------------------------------------- ReadIndex step 1 and 2


def test_new_leader_with_lagging_commit_index_waits_for_its_own_term():
    """ReadIndex steps 1-2 (§6.4). n3 holds the write n1 acknowledged but never heard it
    was committed; n3 then wins the next term. Its commit index lags behind what its
    predecessor acknowledged, so a read it confirmed by heartbeat (n2 answers at once) may
    be served only once n3's own no-op commits, at that commit index. Kills
    ``read_before_own_term_commit`` (served at the stale commit index),
    ``read_index_from_applied`` (served at the applied index when the no-op commits) and
    ``leader_without_noop`` (nothing of n3's term ever commits: the read is never served)."""
    cluster = scripted(seed=21)
    n2, n3 = cluster.nodes["n2"], cluster.nodes["n3"]
    index, _ = cluster.propose("n1", b"acked")
    assert cluster.run_until(lambda: n3.core.log.last_index() >= index, 1000)
    cluster.cut_one_way("n1", "n3")  # n3 never learns that ``index`` committed
    assert cluster.run_until(lambda: bool(cluster.acked), 1000)
    assert n3.core.commit_index < index

    cluster.crash("n1")
    cluster.heal()
    cluster.elect("n3")
    drop_in_flight(cluster, "n3", "n2")  # n3's no-op is lost: its term has committed nothing
    cluster.read("n3")
    confirmed = lambda: n3.core._progress["n2"].read_seq_acked >= 1
    assert cluster.run_until(confirmed, 1000)

    # Check: leadership is confirmed, yet no answer until the no-op commits; then the
    # answer covers the acknowledged write (the checker compares every answer with it).
    assert cluster.stats["reads_ok"] == 0 and n3.core.commit_index < index
    assert cluster.run_until(lambda: cluster.stats["reads_ok"] == 1, 1000)
    (answer,) = cluster.read_answers
    noop = index + 1
    assert answer[2] == noop == n3.core.commit_index
    assert n2.core.log.term_at(noop) == n3.core.term


# ---------------------------------------------------------------------- persist before replying


def test_follower_crash_in_fsync_window_after_replying_loses_nothing():
    """Figure 2, persistent state: a follower's log is durable before it replies. n2 acks
    a write that only n1 and n2 hold and crashes in its next fsync window (right after
    that reply); n1 then crashes too. n2 must come back with the write and bring it to
    n3. Kills ``follower_acks_before_persist``, whose follower fsyncs the entries only in
    the Ready after the reply."""
    cluster = scripted(seed=22)
    n2 = cluster.nodes["n2"]
    cluster.cut_one_way("n1", "n3")
    cluster.record_messages()
    index, term = cluster.propose("n1", b"acked")
    replied = lambda: any(r.success and r.match_index >= index for r in cluster.sent(AppendEntriesReply, src="n2"))
    assert cluster.run_until(replied, 1000)
    cluster.crash_during_next_ready("n2", "before_sync")
    assert cluster.run_until(lambda: bool(cluster.acked) and not n2.up, 1000)

    cluster.restart("n2")
    fail_over(cluster, "n1")

    assert applied_everywhere(cluster, cluster.acked[0])
    assert cluster.acked[0].index == index and cluster.acked[0].term == term


# ---------------------------------------------------------------------- AppendEntries 3


def test_late_duplicate_append_does_not_erase_acknowledged_entries():
    """AppendEntries rule 3 truncates only on a conflict. Two pipelined appends reach n2;
    then a duplicate of the first arrives late, after n2 acknowledged both but before it
    learns they committed. Everything it holds matches, so nothing may be cut; n1 then
    crashes and n2 must still carry the second write. Kills ``truncate_without_conflict``."""
    cluster = scripted(seed=23, max_entries_per_append=1)
    n2 = cluster.nodes["n2"]
    cluster.cut_one_way("n1", "n3")
    cluster.record_messages()
    first, _ = cluster.propose("n1", b"first")
    second, _ = cluster.propose("n1", b"second")
    assert cluster.run_until(lambda: n2.core.log.last_index() >= second, 1000)
    (late,) = [m for m in cluster.sent(AppendEntries, src="n1", dst="n2") if m.entries and m.entries[0].index == first]
    assert n2.core.commit_index <= late.prev_log_index  # so n2 must check the entries

    cluster.inject(late)
    assert cluster.run_until(lambda: len(cluster.acked) == 2, 1000)
    fail_over(cluster, "n1")

    assert n2.core.role is Role.LEADER
    assert all(applied_everywhere(cluster, entry) for entry in cluster.acked)


# ---------------------------------------------------------------------- Leaders 3: matchIndex


def test_append_lost_in_flight_is_not_counted_as_replicated():
    """Leaders rule 3: matchIndex moves to what the follower acknowledged. n1's append of
    a write to n2 is lost; n2 then answers a heartbeat successfully. The write is on n1
    alone, so it must not commit; after n1 crashes the others go on without it. Kills
    ``match_index_from_next_index`` (it counts the lost append and acknowledges)."""
    cluster = scripted(seed=24)
    n1 = cluster.nodes["n1"]
    cluster.cut_one_way("n1", "n3")
    index, _ = cluster.propose("n1", b"unreplicated")
    drop_in_flight(cluster, "n1", "n2")
    n1.tick()  # a heartbeat round; n2's answer (match_index below ``index``) arrives
    cluster.run_for(50)
    committed = n1.core.commit_index

    fail_over(cluster, "n1")

    assert committed < index
    assert not any(e.data == b"unreplicated" for e in cluster.acked)


# ---------------------------------------------------------------------- persist currentTerm


def test_term_learned_from_a_leader_survives_a_crash():
    """Figure 2, persistent state: currentTerm is durable before replying, also when the
    vote did not change. Five nodes: n3 never votes but learns term 2 from its leader n2
    and acknowledges a write (``x``) that commits on n2, n3 and n4. n3 restarts; a delayed
    append from n1, deposed leader of term 1, then reaches it. Knowing term 2, n3 refuses
    it. Having forgotten it (``term_not_persisted``), n3 takes it and overwrites ``x``; n2
    and n4 crash, and n1, n3, n5 elect a leader without the committed write."""
    options = SimOptions(nodes=5, **EXACT)
    cluster = Cluster(options, seed=25)
    n1, n3 = cluster.nodes["n1"], cluster.nodes["n3"]
    cluster.freeze(*cluster.nodes)

    # Term 1: n1 leads without n3's vote; its no-op reaches everyone (n3 learns term 1).
    cluster.isolate("n3")
    cluster.elect("n1")
    cluster.heal()
    n1.tick()  # a heartbeat round resends the no-op to n3
    assert cluster.run_until(lambda: n3.core.log.last_index() == 1 and n3.core.term == 1, 1000)
    # n1, cut off, takes a write that never leaves it except as one delayed append.
    cluster.isolate("n1")
    cluster.record_messages()
    cluster.propose("n1", b"deposed")
    n1.tick()  # its heartbeat round (re)sends the entry to every follower; all are lost
    delayed = next(m for m in cluster.sent(AppendEntries, src="n1", dst="n3") if m.entries)

    # Term 2: n2 wins with n4 and n5 (n3 is cut off again), then n3 learns the term from
    # n2's appends, without voting; ``x`` commits on n2, n3, n4 while n5 lags.
    cluster.isolate("n3")
    cluster.partition([["n2", "n4", "n5"], ["n1"], ["n3"]])
    cluster.elect("n2")
    cluster.heal()
    cluster.isolate("n1")
    cluster.cut_one_way("n2", "n5")
    cluster.nodes["n2"].tick()
    assert cluster.run_until(lambda: n3.core.term == 2 and n3.core.log.last_index() == 2, 1000)
    assert n3.core.voted_for is None
    index, term = cluster.propose("n2", b"x")
    assert cluster.run_until(lambda: bool(cluster.acked), 1000)

    # n3 restarts; the delayed append of term 1 arrives.
    cluster.crash("n3")
    cluster.restart("n3")
    cluster.inject(delayed)

    # n2 and n4 crash; the rest heal and elect a leader.
    cluster.crash("n2")
    cluster.crash("n4")
    cluster.heal()
    cluster.thaw()
    cluster.check_liveness(restart_crashed=False)

    assert all(n.applied[index - 1].data == b"x" for n in cluster.up())
    assert n1.core.log.term_at(index) == term
