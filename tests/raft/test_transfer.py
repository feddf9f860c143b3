"""Leadership transfer (dissertation §3.10): the leader stops taking proposals, brings the
target up to date, then sends it TimeoutNow; the target campaigns at once, past the
others' vote lease. Abandoned after an election timeout."""

from __future__ import annotations

import pytest

from leifdb.raft.core import ConfigChangeRefused, NotLeader
from leifdb.raft.messages import RequestVote, Role, TimeoutNow
from tests.raft.harness import Net, membership

ABC = ["a", "b", "c"]


def transfers(net: Net) -> list[TimeoutNow]:
    return [m for m in net.sent if isinstance(m, TimeoutNow)]


def leader_net(**options: object) -> Net:
    net = Net(ABC, pre_vote=True, vote_lease=True, **options)
    net.elect("a")
    net.rounds("a", 1)
    return net


def test_a_caught_up_target_is_told_at_once_and_wins_past_the_vote_lease():
    net = leader_net()
    a, b, c = (net.cores[i] for i in ABC)
    term = a.term
    net.sent.clear()

    a.transfer_leadership("c")
    net.drain("a")
    assert [m.dst for m in transfers(net)] == ["c"]

    net.deliver_all()
    assert c.role is Role.LEADER and c.term == term + 1
    assert a.role is Role.FOLLOWER and b.leader_id == "c"
    campaign = [m for m in net.sent if isinstance(m, RequestVote) and m.src == "c"]
    assert campaign and all(m.transfer and not m.pre_vote for m in campaign)


def test_timeout_now_waits_until_the_target_caught_up():
    net = leader_net()
    a, c = net.cores["a"], net.cores["c"]
    net.cut |= {("a", "c")}
    for n in range(3):
        a.propose(b"x%d" % n)
    net.rounds("a", 2)
    net.sent.clear()

    a.transfer_leadership("c")
    net.rounds("a", 2)
    assert not transfers(net) and a.role is Role.LEADER

    net.heal()
    for _ in range(a.config.election_ticks // 2):
        net.tick("a")
        if net.deliver_until(lambda: bool(transfers(net))):
            break
    assert transfers(net) and c.log.last_index() == a.log.last_index()
    net.deliver_all()
    assert c.role is Role.LEADER


def test_proposals_and_changes_are_refused_while_transferring():
    net = leader_net()
    a = net.cores["a"]
    net.isolate("c")
    a.transfer_leadership("c")

    with pytest.raises(NotLeader) as info:
        a.propose(b"x")
    assert info.value.leader_id is None
    with pytest.raises(ConfigChangeRefused) as refused:
        a.propose_membership(membership(ABC, ("d",)))
    assert refused.value.retryable


def test_a_transfer_is_abandoned_after_an_election_timeout():
    net = leader_net()
    a = net.cores["a"]
    net.isolate("c")
    net.cut -= {("a", "b"), ("b", "a")}
    a.propose(b"c misses this")
    net.rounds("a", 1)
    a.transfer_leadership("c")
    for _ in range(a.config.election_ticks - 1):
        net.tick("a")
        net.deliver_all()
    with pytest.raises(NotLeader):
        a.propose(b"x")

    net.tick("a")
    net.deliver_all()
    assert a.role is Role.LEADER
    assert a.propose(b"x")[0] == a.log.last_index()
    assert not transfers(net)


@pytest.mark.parametrize(
    "target, unknown", [("a", False), ("d", False), ("zz", True)], ids=["self", "learner", "unknown"]
)
def test_a_transfer_goes_only_to_another_voter(target: str, unknown: bool):
    net = Net(ABC, learners=("d",))
    net.elect("a")
    with pytest.raises(ConfigChangeRefused) as info:
        net.cores["a"].transfer_leadership(target)
    assert info.value.unknown_member is unknown
    assert net.cores["a"].propose(b"still leading")


def test_only_the_leader_transfers():
    net = leader_net()
    with pytest.raises(NotLeader) as info:
        net.cores["b"].transfer_leadership("c")
    assert info.value.leader_id == "a"


def test_timeout_now_is_ignored_by_a_learner_and_by_a_stale_sender():
    net = Net(ABC, learners=("d",))
    net.elect("a")
    a, b, d = net.cores["a"], net.cores["b"], net.cores["d"]
    d.step(TimeoutNow("a", "d", a.term))
    assert d.role is Role.FOLLOWER and d.term == a.term
    b.step(TimeoutNow("c", "b", a.term - 1))
    assert b.role is Role.FOLLOWER and b.term == a.term
