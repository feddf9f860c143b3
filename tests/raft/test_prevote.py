"""Elections with the availability rules: PreVote (dissertation §9.6), the vote lease
(§4.2.3, etcd's ``inLease``), the PreVote + check-quorum deadlock of etcd-io/etcd#8334 and
raft-rs#84, a single voter leading at once, and the granularity of election timeouts.
"""

from __future__ import annotations

import random

import pytest

from leifdb.raft.core import Config, PersistentState, RaftCore
from leifdb.raft.messages import AppendEntries, HardState, RequestVote, RequestVoteReply, Role
from tests.raft.harness import Net

ABC = ["a", "b", "c"]


def terms(net: Net) -> dict[str, int]:
    return {i: c.term for i, c in net.cores.items()}


def run(net: Net, ticks: int, *ids: str) -> None:
    """``ticks`` rounds in which every node of ``ids`` ticks, then everything is delivered."""
    for _ in range(ticks):
        for node_id in ids or net.ids:
            net.tick(node_id)
        net.deliver_all()


# ---------------------------------------------------------------------- PreVote


def back_from_a_partition(pre_vote: bool, vote_lease: bool) -> tuple[Net, int]:
    """c is cut off long enough to time out many times while a and b commit a write, then
    comes back; returns the net and the leader's term from before."""
    net = Net(ABC, pre_vote=pre_vote, vote_lease=vote_lease)
    net.elect("a")
    a, c = net.cores["a"], net.cores["c"]
    term = a.term
    net.isolate("c")
    a.propose(b"written while c is away")
    run(net, 3, "a")
    net.tick("c", 10 * c.config.election_ticks)
    net.heal()
    run(net, 3 * c.config.election_ticks)
    return net, term


def assert_leader_kept(net: Net, term: int) -> None:
    a, c = net.cores["a"], net.cores["c"]
    assert a.role is Role.LEADER and terms(net) == {"a": term, "b": term, "c": term}
    assert c.leader_id == "a" and c.log.last_index() == a.log.last_index()


def test_classic_raft_lets_a_node_back_from_a_partition_depose_the_leader():
    """The control: it comes back with a higher term, and the leader steps down."""
    net, term = back_from_a_partition(pre_vote=False, vote_lease=False)
    assert net.cores["a"].term > term


def test_pre_vote_keeps_a_partitioned_node_from_deposing_the_leader():
    """With PreVote c never raised its term (its log fell behind: nobody would vote)."""
    net, term = back_from_a_partition(pre_vote=True, vote_lease=False)
    assert_leader_kept(net, term)


def test_pre_vote_and_vote_lease_keep_a_partitioned_node_from_deposing_the_leader():
    net, term = back_from_a_partition(pre_vote=True, vote_lease=True)
    assert_leader_kept(net, term)


def test_with_the_vote_lease_a_returning_node_with_an_equal_log_is_ignored():
    """PreVote alone would grant c's pre-vote (its log is as long as anyone's); the vote
    lease makes a and b, which hear from their leader, ignore it."""
    for lease, disrupted in ((False, True), (True, False)):
        net = Net(ABC, pre_vote=True, vote_lease=lease)
        net.elect("a")
        a, c = net.cores["a"], net.cores["c"]
        term = a.term
        net.cut |= {("a", "c")}  # c hears nobody's heartbeats but can still be heard
        run(net, 3 * c.config.election_ticks, "a", "b", "c")
        assert (a.term > term) is disrupted, lease


def test_a_pre_vote_changes_no_term_and_no_vote():
    net = Net(ABC, pre_vote=True)
    a, b = net.cores["a"], net.cores["b"]
    while a.role is Role.FOLLOWER:
        net.tick("a")
    (ask, _) = [m for m in net.inflight if isinstance(m, RequestVote)]
    assert ask.pre_vote and ask.term == 1 and a.term == 0 and a.voted_for is None

    b.step(ask)
    (reply,) = b.ready().messages
    assert reply == RequestVoteReply("b", "a", 1, True, pre_vote=True)
    assert b.term == 0 and b.voted_for is None

    a.step(reply)
    assert a.term == 1 and a.voted_for == "a"  # a real campaign only now
    asks = [m for m in a.ready().messages if isinstance(m, RequestVote)]
    assert asks and not any(m.pre_vote for m in asks)


def test_a_pre_vote_for_a_stale_log_is_refused_with_our_term():
    net = Net(ABC, pre_vote=True)
    net.elect("a")
    b = net.cores["b"]
    b.step(RequestVote("c", "b", b.term + 1, 0, 0, pre_vote=True))
    (reply,) = b.ready().messages
    assert not reply.vote_granted and reply.term == b.term and reply.pre_vote


def test_a_pre_candidate_refused_by_a_majority_goes_back_to_follower_in_its_term():
    net = Net(ABC, pre_vote=True)
    c = net.cores["c"]
    while c.role is Role.FOLLOWER:
        net.tick("c")
    c.step(RequestVoteReply("a", "c", 0, False, pre_vote=True))
    assert c.role is Role.CANDIDATE
    c.step(RequestVoteReply("b", "c", 0, False, pre_vote=True))
    assert c.role is Role.FOLLOWER and c.term == 0 and c.voted_for is None


# ---------------------------------------------------------------------- vote lease


def lease_net() -> Net:
    net = Net(ABC, pre_vote=True, vote_lease=True)
    net.elect("a")
    run(net, 1, "a")
    return net


@pytest.mark.parametrize("pre_vote", [False, True])
def test_a_follower_that_heard_from_its_leader_ignores_vote_requests(pre_vote: bool):
    net = lease_net()
    b = net.cores["b"]
    term = b.term
    b.step(RequestVote("c", "b", term + 1, 10, term, pre_vote=pre_vote))
    assert b.term == term and b.voted_for == "a" and b.leader_id == "a"
    assert not b.ready().messages


def test_a_transfer_campaign_passes_the_vote_lease():
    net = lease_net()
    b = net.cores["b"]
    term = b.term
    b.step(RequestVote("c", "b", term + 1, 10, term, transfer=True))
    assert b.term == term + 1 and b.voted_for == "c"
    (reply,) = b.ready().messages
    assert reply.vote_granted


def test_the_vote_lease_ends_an_election_timeout_after_the_leader_was_heard():
    net = lease_net()
    b = net.cores["b"]
    term = b.term
    net.tick("b", b.config.election_ticks - 1)
    b.step(RequestVote("c", "b", term + 1, 10, term))
    assert b.term == term
    net.tick("b")
    b.step(RequestVote("c", "b", term + 1, 10, term))
    assert b.term == term + 1 and b.voted_for == "c"


def test_the_leader_too_ignores_vote_requests_within_its_lease():
    net = lease_net()
    a = net.cores["a"]
    a.step(RequestVote("c", "a", a.term + 1, 10, a.term))
    assert a.role is Role.LEADER


# ---------------------------------------------------------------------- etcd#8334, raft-rs#84


def higher_term_shorter_log(net: Net, node_id: str, extra_terms: int = 2) -> None:
    """``node_id`` restarts with a term above everyone's but without the latest entries:
    what a node that campaigned alone before PreVote was enabled comes back with."""
    net.isolate(node_id)
    leader = net.cores[net.leaders()[0]]
    leader.propose(b"missed")
    run(net, 3, leader.id)
    store = net.storage[node_id]
    hs = store.load().hard_state
    store.set_hard_state(HardState(leader.term + extra_terms, None, hs.commit_index))
    store.sync()
    net.restart(node_id)
    assert net.cores[node_id].log.last_index() < leader.log.last_index()


def test_a_stuck_pre_candidate_with_a_higher_term_is_freed():
    """etcd's TestPreVoteMigrationWithFreeStuckPreCandidate: c (higher term, shorter log)
    rejects the leader's appends; its pre-votes are ignored. Answering the stale appends
    with its term makes the leader step down, and a new election at a higher term brings
    c back."""
    net = Net(ABC, pre_vote=True, vote_lease=True)
    net.elect("a")
    higher_term_shorter_log(net, "c")
    c = net.cores["c"]
    high = c.term
    net.heal()

    run(net, 20 * c.config.election_ticks)

    (leader,) = net.leaders()
    assert leader in ("a", "b")
    assert net.cores[leader].term > high
    assert c.leader_id == leader and c.log.last_index() == net.cores[leader].log.last_index()


def test_pre_vote_migration_can_complete_an_election():
    """etcd's TestPreVoteMigrationCanCompleteElection: the leader goes down; b (longest log,
    lower term) and c (higher term, shorter log) both time out. b must win."""
    net = Net(ABC, pre_vote=True, vote_lease=True)
    net.elect("a")
    higher_term_shorter_log(net, "c")
    high = net.cores["c"].term
    net.heal()
    net.isolate("a")

    run(net, 20 * net.cores["b"].config.election_ticks, "b", "c")

    b = net.cores["b"]
    assert b.role is Role.LEADER and b.term > high
    assert net.cores["c"].leader_id == "b"


def test_a_node_with_a_smaller_term_can_complete_an_election():
    """etcd's TestNodeWithSmallerTermCanCompleteElection: c was cut off and fell behind while
    b took over from a; then b is lost just as c returns. a and c must elect a leader."""
    net = Net(ABC, pre_vote=True, vote_lease=True)
    net.elect("a")
    net.isolate("c")
    a, b, c = (net.cores[i] for i in ABC)
    a.transfer_leadership("b")
    net.deliver_all()
    assert b.role is Role.LEADER and b.term == 2
    b.propose(b"c misses this")
    run(net, 3, "b")
    assert (a.term, c.term) == (2, 1) and a.log.last_index() > c.log.last_index()

    net.heal()
    net.isolate("b")
    run(net, 20 * a.config.election_ticks, "a", "c")

    assert a.role is Role.LEADER and a.term > 2
    assert c.leader_id == "a" and c.log.last_index() == a.log.last_index()


# ---------------------------------------------------------------------- one voter, timeouts


def test_a_single_voter_leads_at_once_and_after_a_restart():
    core = RaftCore(Config("solo", ("solo",), learners=("x",)), PersistentState(), random.Random(1))
    assert core.role is Role.LEADER and core.term == 1
    ready = core.ready()
    assert [e.index for e in ready.entries] == [1]
    core.advance(ready)
    assert core.commit_index == 1

    again = RaftCore(Config("solo", ("solo",)), PersistentState(ready.hard_state, entries=ready.entries), random.Random(2))
    assert again.role is Role.LEADER and again.term == 2


def test_a_voter_among_others_waits_for_its_election_timeout():
    core = RaftCore(Config("a", ("a", "b")), PersistentState(), random.Random(1))
    assert core.role is Role.FOLLOWER and core.term == 0


def ticks_to_campaign(seed: int, election_ticks: int) -> int:
    core = RaftCore(Config("a", ("a", "b", "c"), election_ticks=election_ticks), PersistentState(), random.Random(seed))
    for ticks in range(1, 3 * election_ticks):
        core.tick()
        if core.role is Role.CANDIDATE:
            return ticks
    raise AssertionError("never campaigned")


def test_election_timeouts_take_every_tick_of_their_range():
    """Timeouts are drawn uniformly from [T, 2T) ticks, so with the node's ten ticks per
    heartbeat two nodes rarely time out in the same tick (split votes stay rare)."""
    drawn = [ticks_to_campaign(seed, 100) for seed in range(400)]
    assert min(drawn) >= 100 and max(drawn) < 200
    assert len(set(drawn)) >= 90
    # The node's setting (10 ticks per heartbeat interval, 10 heartbeats) gives timeouts
    # from 100 values: two nodes collide about 1% of the time, not 10%.
    collisions = sum(x == y for x, y in zip(drawn[::2], drawn[1::2]))
    assert collisions <= 10
