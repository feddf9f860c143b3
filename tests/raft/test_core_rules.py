"""Core rules of the Raft paper (Figure 2, §5), each as set-up / act / check."""

from __future__ import annotations

import random

import pytest

from leifdb.raft.core import Config, NotLeader, PersistentState, RaftCore
from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    EntryType,
    HardState,
    RequestVote,
    RequestVoteReply,
    Role,
)
from leifdb.raft.quorum import committed_index, majority
from tests.raft.harness import Net

IDS = ["a", "b", "c"]


def test_majority_counts_strictly_more_than_half():
    assert [majority(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    assert committed_index([5, 3, 9]) == 5
    assert committed_index([1, 2, 3, 4]) == 2


def test_election_timeout_makes_follower_a_candidate_that_votes_for_itself():
    net = Net(IDS)
    for _ in range(40):
        net.tick("a")
    core = net.cores["a"]
    assert core.role is Role.CANDIDATE
    assert core.voted_for == "a" and core.term >= 1
    votes = [m for m in net.sent if isinstance(m, RequestVote)]
    assert {m.dst for m in votes} == {"b", "c"}


def test_candidate_with_majority_becomes_leader_and_appends_noop():
    net = Net(IDS)
    net.elect("a")
    assert net.leaders() == ["a"]
    assert net.cores["a"].log.entry(1).type is EntryType.NOOP
    net.tick("a")
    net.deliver_all()
    assert all(c.commit_index == 1 for c in net.cores.values())


def test_single_node_cluster_elects_itself_and_commits():
    net = Net(["solo"])
    net.elect("solo")
    index, term = net.cores["solo"].propose(b"x")
    net.deliver_all()
    assert [e.data for e in net.applied["solo"]] == [b"", b"x"]
    assert (index, term) == (2, 1)


def test_proposal_on_follower_is_rejected_with_leader_hint():
    net = Net(IDS)
    net.elect("a")
    with pytest.raises(NotLeader) as info:
        net.cores["b"].propose(b"x")
    assert info.value.leader_id == "a"


def test_committed_entries_apply_in_order_exactly_once_everywhere():
    net = Net(IDS)
    net.elect("a")
    for n in range(20):
        net.cores["a"].propose(b"%d" % n)
        if n % 3 == 0:
            net.deliver_all()
    net.deliver_all()
    for _ in range(3):
        net.tick("a")
        net.deliver_all()
    for node in IDS:
        data = [e.data for e in net.applied[node] if e.type is EntryType.NORMAL]
        assert data == [b"%d" % n for n in range(20)], node


def test_proposals_between_drains_go_out_as_one_append():
    net = Net(IDS)
    net.elect("a")
    net.sent.clear()
    for n in range(5):
        net.cores["a"].propose(b"%d" % n)
    net.drain("a")
    appends = [m for m in net.sent if isinstance(m, AppendEntries) and m.entries]
    assert len(appends) == 2
    assert all(len(m.entries) == 5 for m in appends)


def test_vote_granted_at_most_once_per_term():
    core = RaftCore(Config("a", tuple(IDS)), PersistentState(), random.Random(1))
    core.step(RequestVote("b", "a", 1, 0, 0))
    core.step(RequestVote("c", "a", 1, 0, 0))
    replies = [m for m in core.ready().messages if isinstance(m, RequestVoteReply)]
    assert [(m.dst, m.vote_granted) for m in replies] == [("b", True), ("c", False)]


def test_vote_is_in_hard_state_of_the_same_ready_as_the_reply():
    core = RaftCore(Config("a", tuple(IDS)), PersistentState(), random.Random(1))
    core.step(RequestVote("b", "a", 1, 0, 0))
    ready = core.ready()
    assert ready.hard_state == HardState(1, "b", 0)
    assert any(isinstance(m, RequestVoteReply) and m.vote_granted for m in ready.messages)


def test_election_restriction_denies_vote_to_candidate_with_older_log():
    state = PersistentState(HardState(2, None, 0), entries=[Entry(1, 1), Entry(2, 2)])
    core = RaftCore(Config("a", tuple(IDS)), state, random.Random(1))
    core.step(RequestVote("b", "a", 3, 5, 1))  # longer log, but older last term
    core.step(RequestVote("c", "a", 3, 1, 2))  # same last term, shorter log
    replies = [m for m in core.ready().messages if isinstance(m, RequestVoteReply)]
    assert [m.vote_granted for m in replies] == [False, False]


def test_append_entries_from_stale_term_is_rejected_with_current_term():
    core = RaftCore(Config("a", tuple(IDS)), PersistentState(HardState(5, None, 0)), random.Random(1))
    core.step(AppendEntries("b", "a", 4, 0, 0, (Entry(4, 1),), 1))
    ready = core.ready()
    assert ready.entries == []
    reply = ready.messages[0]
    assert isinstance(reply, AppendEntriesReply) and not reply.success and reply.term == 5


def test_higher_term_makes_leader_step_down():
    net = Net(IDS)
    net.elect("a")
    net.cores["a"].step(AppendEntriesReply("b", "a", 9, False))
    assert net.cores["a"].role is Role.FOLLOWER and net.cores["a"].term == 9


def test_consistency_check_rejects_with_conflict_hint_and_truncates_conflicts():
    entries = [Entry(1, 1), Entry(1, 2), Entry(2, 3), Entry(2, 4)]
    core = RaftCore(Config("a", tuple(IDS)), PersistentState(HardState(2, None, 0), entries=entries), random.Random(1))
    core.step(AppendEntries("b", "a", 3, 4, 3, (), 0))
    reply = core.ready().messages[0]
    assert not reply.success and reply.conflict_term == 2 and reply.conflict_index == 3
    core.step(AppendEntries("b", "a", 3, 2, 1, (Entry(3, 3),), 3))
    ready = core.ready()
    assert ready.entries == [Entry(3, 3)]
    assert ready.messages[0].success and ready.messages[0].match_index == 3
    assert core.log.last_index() == 3 and core.commit_index == 3


def test_leader_never_commits_previous_term_entry_by_counting_replicas():
    net = Net(IDS)
    net.elect("a")
    net.isolate("a")
    net.cores["a"].propose(b"old")
    net.deliver_all()
    assert net.cores["a"].commit_index == 1
    # "a" comes back after b and c moved on to a later term without learning "old".
    net.heal()
    net.isolate("a")
    net.elect("b")
    net.heal()
    assert net.cores["b"].log.last_index() == 2  # b's own no-op at index 2
    net.deliver_all()
    for _ in range(3):
        net.tick("b")
        net.deliver_all()
    assert all(c.log.entry(2).data == b"" for c in net.cores.values())


def test_read_index_needs_a_majority_heartbeat_round():
    net = Net(IDS)
    net.elect("a")
    net.isolate("a")
    net.cores["a"].read_index(7)
    net.deliver_all()
    assert net.cores["a"].ready().read_states == []
    net.heal()
    net.tick("a")
    states = []
    net.drain("a")
    for _ in range(3):
        msgs, net.inflight = net.inflight, []
        for m in msgs:
            net.cores[m.dst].step(m)
            core = net.cores[m.dst]
            ready = core.ready()
            states += ready.read_states
            net.inflight += ready.messages
            net.storage[m.dst].append(ready.entries)
            core.advance(ready)
    assert [(s.read_id, s.success) for s in states] == [(7, True)]


def test_ready_carries_the_hard_state_only_when_term_or_vote_changed():
    """The one place that decides whether the hard state must be written: a commit index
    that moves alone costs no hard-state write (it is recomputed after a restart)."""
    core = RaftCore(Config("a", ("a",), election_ticks=2, heartbeat_ticks=1),
                    PersistentState(), random.Random(1))
    for _ in range(5):
        core.tick()
    ready = core.ready()
    assert ready.hard_state is not None and ready.hard_state.voted_for == "a"
    core.advance(ready)
    while core.has_ready():
        ready = core.ready()
        core.advance(ready)
    assert core.commit_index >= 1
    core.propose(b"x")
    ready = core.ready()
    core.advance(ready)
    ready = core.ready()
    assert ready.hard_state is None
