"""Figure 2 rules that the simulation cannot reach or sees only slowly, each pinned down on
one core. tests/sim/test_mutants.py runs these with the rule broken (see
tests/sim/mutants.py) and requires them to fail."""

from __future__ import annotations

import random

from leifdb.raft.core import Config, PersistentState, RaftCore
from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    HardState,
    RequestVote,
    RequestVoteReply,
    Role,
)
from tests.raft.harness import Net

IDS = ("a", "b", "c")


def follower(term: int = 1, entries: list[Entry] | None = None, seed: int = 1) -> RaftCore:
    state = PersistentState(HardState(term, None, 0), entries=entries or [])
    return RaftCore(Config("a", IDS), state, random.Random(seed))


def test_follower_appends_every_new_entry_of_a_batch():
    """AppendEntries rule 4: all new entries are appended (and persisted) before the
    follower reports them as matched."""
    core = follower(entries=[Entry(1, 1)])
    batch = (Entry(1, 2), Entry(1, 3), Entry(1, 4))

    core.step(AppendEntries("b", "a", 1, 1, 1, batch, 0))
    ready = core.ready()

    assert ready.entries == list(batch)
    assert core.log.last_index() == 4
    (reply,) = ready.messages
    assert isinstance(reply, AppendEntriesReply) and reply.success and reply.match_index == 4


def test_leader_counts_itself_only_for_entries_it_has_persisted():
    """Raft §10.2.1: the leader sends its appends before its own fsync, so it counts
    itself toward a majority only for entries a Ready handed out and ``advance`` reported
    persisted. With one follower's ack and the leader's copy not yet durable, an entry is
    on one disk of three: not committed."""
    net = Net(list(IDS))
    net.elect("a")
    leader = net.cores["a"]
    index, term = leader.propose(b"x")
    ready = leader.ready()  # handed to storage; the fsync has not returned yet
    assert ready.entries[-1].index == index

    leader.step(AppendEntriesReply("b", "a", term, True, index))
    before_fsync = leader.commit_index
    leader.advance(ready)

    assert before_fsync < index
    assert leader.commit_index == index


def test_granting_a_vote_restarts_the_election_timer():
    """Followers rule 2: a follower that grants a vote waits a whole election timeout
    before campaigning itself (it would otherwise disrupt the candidate it voted for)."""
    core = follower(seed=1)  # its election timeout is 12 ticks (between 10 and 19)
    for _ in range(9):
        core.tick()
    core.step(RequestVote("b", "a", 1, 0, 0))
    (reply,) = core.ready().messages
    assert isinstance(reply, RequestVoteReply) and reply.vote_granted

    for _ in range(9):
        core.tick()

    assert core.role is Role.FOLLOWER and core.term == 1


def test_new_leader_brings_a_follower_with_a_shorter_log_up_to_date():
    """Leaders' volatile state: a new leader knows nothing of its followers' logs
    (matchIndex 0, nextIndex after its own last entry) and finds each one's match by
    probing back, so a follower that missed entries catches up."""
    net = Net(list(IDS))
    for node_id in ("a", "b"):
        store = net.storage[node_id]
        store.append([Entry(1, i, data=b"%d" % i) for i in range(1, 4)])
        store.set_hard_state(HardState(1, None, 0))
        store.sync()
        net.restart(node_id)

    net.elect("a")
    for _ in range(3):
        net.tick("a")
        net.deliver_all()

    leader_log = net.cores["a"].log.entries
    assert len(leader_log) == 4
    assert net.cores["c"].log.entries == leader_log
    assert [e.index for e in net.applied["c"]] == [1, 2, 3, 4]


def test_candidate_waits_a_whole_election_timeout_before_trying_again():
    """Candidates rule 1: starting an election restarts the election timer, so the
    candidate collects votes for at least a minimum timeout (10 ticks) before a new one."""
    core = follower(term=0)
    while core.role is Role.FOLLOWER:
        core.tick()
    assert core.role is Role.CANDIDATE and core.term == 1

    for _ in range(9):
        core.tick()

    assert core.term == 1
