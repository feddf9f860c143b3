"""Single-server membership changes (dissertation §4.1, with the 2015 fix), on the core.

Each refusal rule of ``RaftCore.propose_membership``; the configuration a node uses (the
newest in its log, committed or not, so it moves back when the entry is truncated, and
the one a snapshot carries); learners, which receive the log but never vote nor count;
and a leader that removes itself.
"""

from __future__ import annotations

import random

import pytest

from leifdb.raft.core import Config, ConfigChangeRefused, NotLeader, PersistentState, RaftCore
from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Configuration,
    Entry,
    EntryType,
    HardState,
    InstallSnapshot,
    RequestVote,
    RequestVoteReply,
    Role,
    SnapshotMeta,
    TimeoutNow,
)
from leifdb.raft.reconfig import DEPARTED_GRACE_TIMEOUTS
from tests.raft.harness import Net, decode_configuration, membership

ABC = ("a", "b", "c")


def config(voters: tuple[str, ...] | str, learners: tuple[str, ...] = ()) -> Configuration:
    return Configuration(frozenset(voters), frozenset(learners))


def leader_net(*learners: str, **options: object) -> Net:
    """a leads a, b, c (plus ``learners``) and has committed its no-op."""
    net = Net(list(ABC), learners=learners, **options)
    net.elect("a")
    assert net.cores["a"].commit_index == 1
    return net


def refusal(core: RaftCore, data: bytes, force: bool = False) -> ConfigChangeRefused:
    try:
        core.propose_membership(data, force)
    except ConfigChangeRefused as exc:
        return exc
    raise AssertionError("the change was accepted")


def drain(core: RaftCore):
    ready = core.ready()
    core.advance(ready)
    return ready


# ---------------------------------------------------------------------- refusals


def test_a_follower_refuses_with_the_leader_hint():
    net = leader_net()
    with pytest.raises(NotLeader) as info:
        net.cores["b"].propose_membership(membership(ABC, ("d",)))
    assert info.value.leader_id == "a"


def test_a_new_leader_accepts_no_change_before_an_entry_of_its_term_committed():
    """The 2015 fix: until its no-op commits, the new leader may not know the newest
    committed configuration, and a change of an older one can make two majorities."""
    net = Net(list(ABC))
    a = net.cores["a"]
    while a.role is Role.FOLLOWER:
        net.tick("a")
    assert net.deliver_until(lambda: a.role is Role.LEADER)
    assert a.commit_index == 0

    refused = refusal(a, membership(ABC, ("d",)))
    assert refused.retryable and "committed an entry of its term" in refused.reason
    assert a.log.last_index() == 1  # nothing appended

    net.deliver_all()
    assert a.commit_index == 1
    index, term = a.propose_membership(membership(ABC, ("d",)))
    assert (index, term) == (2, a.term)


def test_one_change_at_a_time():
    net = leader_net()
    a = net.cores["a"]
    net.cut |= {("a", "b"), ("a", "c")}
    a.propose_membership(membership(ABC, ("d",)))
    net.deliver_all()

    refused = refusal(a, membership(("a", "b"), ("d",)))
    assert refused.retryable and "not yet committed" in refused.reason

    net.heal()
    net.rounds("a")
    assert a.commit_index == 2
    a.propose_membership(membership(("a", "b"), ("d",)))


@pytest.mark.parametrize(
    "voters, learners, reason",
    [
        (("a", "b", "c", "d"), (), "must join as a learner"),
        (ABC, ("d", "e"), "only one server"),
        (("a",), (), "only one server"),
        (("a", "b", "d"), (), "only one server"),
        (("a", "b"), ("c",), "only one server"),
        (ABC, (), "unchanged"),
    ],
    ids=["add-as-voter", "two-learners", "remove-two", "replace", "demote", "unchanged"],
)
def test_anything_but_one_add_promote_or_remove_is_refused(voters, learners, reason):
    net = leader_net()
    a = net.cores["a"]
    refused = refusal(a, membership(voters, learners))
    assert reason in refused.reason and not refused.retryable
    assert a.log.last_index() == 1


def test_promoting_a_server_that_is_no_learner_is_refused():
    net = leader_net("d")
    refused = refusal(net.cores["a"], membership(("a", "b", "c", "e"), ("d",)))
    assert "must join as a learner" in refused.reason


def test_the_last_voter_cannot_be_removed():
    net = Net(["a"], learners=("x",))
    a = net.cores["a"]
    net.deliver_all()
    assert a.role is Role.LEADER and a.commit_index == 1
    refused = refusal(a, membership((), ("x",)), force=True)
    assert "last voter" in refused.reason


def test_a_lagging_learner_is_promoted_only_once_it_caught_up():
    net = leader_net("d", max_promote_lag=2)
    a = net.cores["a"]
    net.cut |= {("a", "d")}
    for n in range(5):
        a.propose(b"x%d" % n)
    net.deliver_all()

    refused = refusal(a, membership(("a", "b", "c", "d")))
    assert refused.retryable and "lags 5 entries" in refused.reason

    net.heal()
    net.rounds("a")
    assert a.propose_membership(membership(("a", "b", "c", "d")))[0] == 7
    assert a.configuration() == config(("a", "b", "c", "d"))


def test_a_change_leaving_no_quorum_the_leader_hears_from_is_refused_unless_forced():
    """etcd's strict reconfiguration check: removing b while c is silent would leave a
    and c, of which the leader hears only from itself."""
    net = leader_net()
    a = net.cores["a"]
    net.isolate("c")
    for _ in range(a.config.election_ticks):
        net.tick("a")
        net.deliver_all()
    assert a.role is Role.LEADER

    refused = refusal(a, membership(("a", "c")))
    assert not refused.retryable and "1 of 2 voters" in refused.reason
    # Adding a learner changes no quorum: allowed.
    a.propose_membership(membership(ABC, ("d",)))
    net.deliver_all()
    assert a.commit_index == 2

    index, _ = a.propose_membership(membership(("a", "c"), ("d",)), force=True)
    assert index == 3 and a.configuration() == config(("a", "c"), ("d",))


def test_a_core_without_decoder_refuses_changes():
    core = RaftCore(Config("a", ("a",)), PersistentState(), random.Random(1))
    drain(core)
    assert core.role is Role.LEADER
    assert "decoder" in refusal(core, membership(("a",), ("b",))).reason


# ---------------------------------------------------------------------- which configuration


def follower_b(entries: list[Entry] | None = None, term: int = 1) -> RaftCore:
    state = PersistentState(HardState(term, None, 0), entries=entries or [])
    return RaftCore(Config("b", ABC, decode_configuration=decode_configuration), state, random.Random(1))


def config_entry(term: int, index: int, voters: tuple[str, ...], learners: tuple[str, ...] = ()) -> Entry:
    return Entry(term, index, EntryType.CONFIG, membership(voters, learners))


def test_a_follower_uses_a_configuration_as_soon_as_it_is_appended():
    b = follower_b()
    added = config_entry(1, 1, ABC, ("d",))

    b.step(AppendEntries("a", "b", 1, 0, 0, (added,), 0))
    ready = drain(b)

    assert b.commit_index == 0
    assert b.configuration() == config(ABC, ("d",))
    assert ready.membership == added.data
    assert b.membership_data() == added.data


def test_a_truncated_configuration_entry_gives_way_to_the_one_before():
    first = config_entry(1, 1, ABC, ("d",))
    second = config_entry(1, 2, ("a", "b", "c", "d"))
    b = follower_b([first, second])
    assert b.configuration() == config(("a", "b", "c", "d"))
    drain(b)

    # A leader of term 2 overwrites index 2: b falls back to the configuration at index 1.
    b.step(AppendEntries("c", "b", 2, 1, 1, (Entry(2, 2, EntryType.NOOP),), 0))
    ready = drain(b)
    assert b.configuration() == config(ABC, ("d",))
    assert ready.membership == first.data

    # And to the bootstrap list when index 1 goes too (encoded as b"").
    b.step(AppendEntries("a", "b", 3, 0, 0, (Entry(3, 1, EntryType.NOOP),), 0))
    ready = drain(b)
    assert b.configuration() == config(ABC)
    assert ready.membership == b""


def test_a_restarted_node_uses_the_newest_configuration_of_its_log():
    b = follower_b([Entry(1, 1), config_entry(1, 2, ABC, ("d",)), Entry(1, 3)])
    assert b.configuration() == config(ABC, ("d",))
    assert b.membership_data_at(1) == b""
    assert b.membership_data_at(2) == b.membership_data_at(3) == membership(ABC, ("d",))


def test_an_installed_snapshot_brings_its_membership():
    b = follower_b()
    data = membership(("a", "b", "d"), ("e",))
    meta = SnapshotMeta(10, 1, checksum=7, size=3)
    b.step(InstallSnapshot("a", "b", 1, 10, 1, offset=0, data=b"abc", done=True, checksum=7, total_size=3))
    drain(b)

    b.snapshot_installed(meta, True, data)
    ready = drain(b)

    assert b.configuration() == config(("a", "b", "d"), ("e",))
    assert ready.membership == data
    assert b.membership_data_at(10) == data

    restarted = RaftCore(
        Config("b", ABC, decode_configuration=decode_configuration),
        PersistentState(HardState(1, None, 10), meta, [], snapshot_membership=data),
        random.Random(2),
    )
    assert restarted.configuration() == config(("a", "b", "d"), ("e",))


def test_compaction_keeps_the_configuration_it_covers():
    net = leader_net()
    a = net.cores["a"]
    a.propose_membership(membership(ABC, ("d",)))
    a.propose(b"x")
    net.tick("a")
    net.deliver_all()
    assert a.applied == 3

    a.compact(SnapshotMeta(3, a.term))

    assert a.log.snapshot_index == 3
    assert a.configuration() == config(ABC, ("d",))
    assert a.membership_data_at(3) == membership(ABC, ("d",))


def test_the_leader_uses_the_new_configuration_at_once_and_replicates_to_the_learner():
    net = leader_net()
    a = net.cores["a"]
    d = net.join("d")
    assert d.configuration() == config(())

    a.propose_membership(membership(ABC, ("d",)))
    assert a.configuration() == config(ABC, ("d",))
    net.deliver_all()

    assert d.log.last_index() == 2 and d.commit_index == 2
    assert d.configuration() == config(ABC, ("d",))
    assert net.memberships["d"][-1] == membership(ABC, ("d",))
    assert a.peer_views()["d"].learner and a.peer_views()["d"].match_index == 2


# ---------------------------------------------------------------------- learners


def test_a_learner_never_campaigns():
    for pre_vote in (False, True):
        net = Net(list(ABC), learners=("d",), pre_vote=pre_vote)
        net.tick("d", 200)
        d = net.cores["d"]
        assert d.role is Role.FOLLOWER and d.term == 0
        assert not [m for m in net.sent if m.src == "d"]
        assert not d.status().voter


def test_a_joining_node_never_campaigns():
    net = Net(list(ABC))
    d = net.join("d")
    net.tick("d", 200)
    assert d.role is Role.FOLLOWER and d.term == 0 and not net.sent


def test_a_learners_vote_does_not_count():
    net = Net(list(ABC), learners=("d",))
    a = net.cores["a"]
    while a.role is Role.FOLLOWER:
        net.tick("a")
    asked = {m.dst for m in net.inflight if isinstance(m, RequestVote)}
    assert asked == {"b", "c"}

    a.step(RequestVoteReply("d", "a", a.term, True))
    assert a.role is Role.CANDIDATE
    a.step(RequestVoteReply("b", "a", a.term, True))
    assert a.role is Role.LEADER


def test_a_learners_acknowledgement_does_not_count_toward_commit():
    """a, d and e are 3 of the 5 members, but a is 1 of the 3 voters."""
    net = leader_net("d", "e")
    a = net.cores["a"]
    net.cut |= {("a", "b"), ("a", "c")}
    index, _ = a.propose(b"x")
    net.deliver_all()

    assert net.cores["d"].log.last_index() == index
    assert a.peer_views()["d"].match_index == a.peer_views()["e"].match_index == index
    assert a.commit_index == index - 1

    net.heal()
    net.rounds("a")
    assert a.commit_index == index


def test_a_leader_without_a_quorum_of_voters_steps_down_even_if_learners_answer():
    net = leader_net("d")
    a = net.cores["a"]
    net.cut |= {("a", "b"), ("b", "a"), ("a", "c"), ("c", "a")}
    for _ in range(2 * a.config.election_ticks):
        net.tick("a")
        net.deliver_all()
    assert a.role is Role.FOLLOWER


# ---------------------------------------------------------------------- removals


def test_a_removed_leader_leads_until_the_change_commits_then_hands_over():
    net = leader_net()
    a = net.cores["a"]
    a.propose(b"x")
    net.deliver_all()
    net.sent.clear()

    index, term = a.propose_membership(membership(("b", "c")))
    assert a.role is Role.LEADER and a.configuration() == config(("b", "c"))
    a.propose(b"still leading")  # proposals are taken until the change commits

    assert net.deliver_until(lambda: a.role is not Role.LEADER)
    assert a.commit_index >= index
    (handover,) = [m for m in net.sent if isinstance(m, TimeoutNow)]
    assert handover.src == "a" and handover.dst in ("b", "c") and handover.term == term

    net.deliver_all()
    new = net.cores[handover.dst]
    assert new.role is Role.LEADER and new.term == term + 1
    assert [e.data for e in net.applied[new.id] if e.data][-1:] == [b"still leading"]
    # The removed server never campaigns again.
    net.tick("a", 100)
    assert a.role is Role.FOLLOWER and not [m for m in net.sent if isinstance(m, RequestVote) and m.src == "a"]


def test_a_removed_server_gets_appends_until_it_has_its_removal():
    net = leader_net()
    a = net.cores["a"]
    net.cut |= {("a", "c")}
    index, _ = a.propose_membership(membership(("a", "b")))
    net.tick("a")
    net.deliver_all()
    assert a.commit_index == index
    assert "c" in a.replicating_to()
    assert "c" not in a.peer_views()

    net.heal()
    net.rounds("a")
    c = net.cores["c"]
    assert c.log.last_index() >= index and c.commit_index >= index
    assert c.configuration() == config(("a", "b"))
    net.tick("a")
    assert a.replicating_to() == frozenset({"b"})


def lost_commit_net() -> tuple[Net, int]:
    """a removes c; c receives the CONFIG entry and acknowledges it, but every message from
    a after that is lost: c holds its removal without knowing that it committed."""
    net = leader_net()
    a, c = net.cores["a"], net.cores["c"]
    index, _ = a.propose_membership(membership(("a", "b")))
    assert net.deliver_until(lambda: c.log.last_index() >= index)
    net.cut |= {("a", "c")}
    net.deliver_all()
    assert a.commit_index == index and "c" not in a.peer_views()
    assert c_acknowledged(net, index) and c.commit_index < index
    return net, index


def c_acknowledged(net: Net, index: int) -> AppendEntriesReply:
    """c's successful answer to the append that brought it entry ``index``."""
    return next(
        m for m in net.sent
        if isinstance(m, AppendEntriesReply) and m.src == "c" and m.success and m.match_index >= index
    )


def test_a_removed_server_gets_appends_until_it_learns_its_removal_committed():
    """Holding the entry is not enough: a removed server stops only once it applies its
    removal, so the leader replicates to it until it answered a message whose commit
    index covers the removal (the commit index it was last sent may have been lost)."""
    net, index = lost_commit_net()
    a, c = net.cores["a"], net.cores["c"]
    net.rounds("a", 3)
    assert "c" in a.replicating_to() and c.commit_index < index

    net.heal()
    net.rounds("a", 2)
    assert c.commit_index >= index
    assert [e.index for e in net.applied["c"] if e.type is EntryType.CONFIG][-1] == index
    net.rounds("a", 1)
    assert a.replicating_to() == frozenset({"b"})


def test_an_answer_to_a_message_sent_before_the_commit_does_not_tell_the_leader_it_was_learned():
    """A late answer of c to an append that carried an older commit index (here: its reply
    to the CONFIG entry, delivered again) says nothing of what c knows now."""
    net, index = lost_commit_net()
    a, c = net.cores["a"], net.cores["c"]
    ack = c_acknowledged(net, index)
    net.rounds("a", 1)  # the round that would tell c, lost
    a.step(ack)
    net.rounds("a", 1)
    assert "c" in a.replicating_to() and c.commit_index < index


def test_a_new_leader_tells_a_removed_server_what_the_old_leader_did_not():
    """a commits the removal of d, which has the entry but never hears that it committed;
    a goes away. The next leader replicates to d too, so d still learns it is out."""
    net = Net(["a", "b", "c", "d"])
    net.elect("a")
    a, b, d = net.cores["a"], net.cores["b"], net.cores["d"]
    index, _ = a.propose_membership(membership(("a", "b", "c")))
    assert net.deliver_until(lambda: d.log.last_index() >= index)
    net.cut |= {("a", "d")}
    net.deliver_all()
    net.rounds("a", 1)
    assert a.commit_index >= index and b.commit_index >= index and d.commit_index < index
    net.isolate("a")
    net.elect("b")
    assert "d" in b.replicating_to()
    net.rounds("b", 3)
    assert d.commit_index >= index
    assert b.replicating_to() == frozenset({"a", "c"})


def test_a_removed_server_cut_off_for_several_election_timeouts_still_learns_its_removal():
    """A removed server that is slow, restarting or cut off for a while when its removal
    commits is not given up after one election timeout of silence: it hears of it later."""
    net = leader_net()
    a, c = net.cores["a"], net.cores["c"]
    net.isolate("c")
    index, _ = a.propose_membership(membership(("a", "b")))
    net.rounds("a", 3 * a.config.election_ticks)
    assert a.commit_index == index and "c" in a.replicating_to()

    net.heal()
    net.rounds("a", 3)
    assert c.commit_index >= index and a.replicating_to() == frozenset({"b"})


def test_a_removed_server_silent_for_the_grace_period_is_given_up():
    """A dead removed server is not replicated to for ever: once the removal has been
    committed for ``DEPARTED_GRACE_TIMEOUTS`` election timeouts and it has been silent
    for one, the leader lets it go."""
    net = leader_net()
    a = net.cores["a"]
    net.isolate("c")
    index, _ = a.propose_membership(membership(("a", "b")))
    net.tick("a")
    net.deliver_all()
    assert a.commit_index == index and "c" in a.replicating_to()
    grace = DEPARTED_GRACE_TIMEOUTS * a.config.election_ticks // a.config.heartbeat_ticks
    net.rounds("a", grace - 1)
    assert "c" in a.replicating_to()
    net.rounds("a", 1)
    assert a.replicating_to() == frozenset({"b"})


def test_removing_a_learner_and_promoting_one():
    net = leader_net("d", "e")
    a = net.cores["a"]
    a.propose_membership(membership(ABC, ("e",)))
    net.tick("a")
    net.deliver_all()
    a.propose_membership(membership(("a", "b", "c", "e")))
    net.tick("a")
    net.deliver_all()
    assert a.configuration() == config(("a", "b", "c", "e"))
    assert net.cores["e"].status().voter
    # e counts now: with b and c cut off, a and e are not 3 of 4.
    net.cut |= {("a", "b"), ("a", "c")}
    index, _ = a.propose(b"x")
    net.deliver_all()
    assert a.commit_index == index - 1


def test_a_learner_the_leader_never_heard_from_does_not_count_as_reachable():
    """The strict check counts a server as reachable only once it answered: promoting a
    learner that never did (dead, or not started) would leave {a, d} without a quorum."""
    net = Net(["a"], max_promote_lag=50)
    a = net.cores["a"]
    net.deliver_all()
    a.propose_membership(membership(("a",), ("d",)))
    net.deliver_all()
    assert a.commit_index == 2 and a.peer_views()["d"].match_index == 0

    refused = refusal(a, membership(("a", "d")))
    assert "1 of 2 voters" in refused.reason
    assert a.peer_views()["d"].ticks_since_contact >= a.config.election_ticks


@pytest.mark.parametrize("pre_vote", [False, True])
def test_a_leader_that_removed_itself_and_restarted_before_the_change_committed_can_finish_it(pre_vote: bool):
    """{a, b}: a removes itself, the entry reaches nobody, a restarts. a's newest
    configuration is {b}, b's is still {a, b}: b needs a's vote and a's log is longer, so
    only a can lead, outside its configuration (§4.2.2), until the change commits; then it
    hands over to b. (Found by the membership simulation: the cluster stayed leaderless.)"""
    net = Net(["a", "b"], pre_vote=pre_vote)
    net.elect("a")
    a, b = net.cores["a"], net.cores["b"]
    net.rounds("a", 1)
    net.isolate("a")
    index, _ = a.propose_membership(membership(("b",)))
    net.deliver_all()
    net.restart("a")
    net.heal()
    a = net.cores["a"]
    assert a.configuration() == config("b") and b.configuration() == config(("a", "b"))

    for _ in range(10 * a.config.election_ticks):
        if b.role is Role.LEADER and b.commit_index >= index:
            break
        net.tick("a")
        net.tick("b")
        net.deliver_all()

    assert b.role is Role.LEADER and b.commit_index >= index
    assert b.configuration() == config("b") and a.role is Role.FOLLOWER
