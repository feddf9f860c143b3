"""Membership changes, leadership transfer and health through ``KVService`` against a fake
node: the member list each change proposes, the checks made before proposing, the answer
once the CONFIG entry applies (or ``OutcomeUnknown``), and the ``/health`` verdict."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from leifdb.errors import (
    InvalidRequest,
    MembershipRefused,
    NotLeaderError,
    OutcomeUnknown,
    Unavailable,
)
from leifdb.raft.core import Status
from leifdb.raft.messages import Entry, EntryType, Member, Role, SoftState
from leifdb.service.api import ClusterMembers, MemberInfo
from leifdb.service.kvservice import KVService
from leifdb.wire import decode_membership

VOTERS = [Member("n1", "h1:7001", "h1:8001"), Member("n2", "h2:7002", ""),
          Member("n3", "h3:7003", "h3:8003")]


class FakeConsensus:
    """The node as the service sees it, leading by default in term 2: records membership
    proposals and transfers; the test plays Raft by applying entries."""

    node_id = "n1"
    cluster_id = "c-42"
    election_timeout = 1.0

    def __init__(self) -> None:
        self.configuration: list[Member] = list(VOTERS)
        self.changes: list[tuple[list[Member], bool]] = []
        self.transfers: list[tuple[str, Deferred[object]]] = []
        self.refusal: Exception | None = None
        self.role = Role.LEADER
        self.leader: str | None = "n1"
        self.term = 2
        self.last_index = 10
        self.contact_age: float | None = 0.0
        self.started = True
        self.views: dict[str, tuple[int, float]] = {"n2": (9, 0.05), "n3": (7, 1.5)}
        self.config_at = 4

    def raft_status(self) -> Status | None:
        if not self.started:
            return None
        return Status(self.node_id, self.role, self.term, self.leader, 9, 9,
                      self.last_index, 0)

    def http_address(self, node_id: str | None) -> str | None:
        return {"n1": "h1:8001", "n2": "h2:8002", "n3": "h3:8003"}.get(node_id or "")

    def propose(self, data: bytes) -> tuple[int, int]:
        raise AssertionError("membership must not propose commands")

    def request_read(self) -> int:
        raise AssertionError("membership must not read")

    def change_membership(self, data: bytes, force: bool) -> tuple[int, int]:
        if self.refusal is not None:
            raise self.refusal
        self.configuration = decode_membership(data)
        self.changes.append((self.configuration, force))
        self.last_index += 1
        return self.last_index, self.term

    def members(self) -> list[Member]:
        return list(self.configuration)

    def config_index(self) -> int:
        return self.config_at

    def member_views(self) -> dict[str, tuple[int, float]]:
        assert self.role is Role.LEADER, "only the leader has views"
        return {k: v for k, v in self.views.items() if any(m.id == k for m in self.configuration)}

    def transfer_leadership(self, to: str) -> Deferred[object]:
        d: Deferred[object] = Deferred()
        self.transfers.append((to, d))
        return d

    def leader_contact_age(self) -> float | None:
        return self.contact_age


def _service() -> tuple[FakeConsensus, KVService]:
    service = KVService(Clock(), proposal_timeout=5, read_timeout=3)
    node = FakeConsensus()
    service.attach(node)
    return node, service


def _result(d: Deferred):
    assert d.called, "the Deferred has not fired"
    result = d.result
    if isinstance(result, Failure):
        d.addErrback(lambda _: None)
        return result.value
    return result


def _apply_config(service: KVService, node: FakeConsensus, term: int | None = None) -> None:
    service.apply([Entry(term or node.term, node.last_index, EntryType.CONFIG, b"")])


def _follow(node: FakeConsensus, leader: str | None = "n2") -> None:
    node.role, node.leader = Role.FOLLOWER, leader


# -- the member list


def test_the_leader_lists_members_with_match_index_and_last_contact():
    node, service = _service()
    members = service.members()
    assert (members.cluster_id, members.node, members.leader) == ("c-42", "n1", "n1")
    assert members.members == (
        MemberInfo("n1", "h1:7001", "h1:8001", False, 10, 0.0, True),
        MemberInfo("n2", "h2:7002", "h2:8002", False, 9, 0.05, False),  # http from the node
        MemberInfo("n3", "h3:7003", "h3:8003", False, 7, 1.5, False),
    )


def test_a_follower_lists_its_view_without_what_only_the_leader_knows():
    node, service = _service()
    _follow(node)
    node.configuration.append(Member("n4", "h4:7004", "", learner=True))
    members = service.members()
    assert members.leader == "n2"
    assert [(m.id, m.learner, m.match_index, m.last_contact_seconds, m.is_leader)
            for m in members.members] == [
        ("n1", False, None, None, False), ("n2", False, None, None, True),
        ("n3", False, None, None, False), ("n4", True, None, None, False)]


def test_a_stopped_node_still_tells_its_view_and_one_not_attached_is_unavailable():
    node, service = _service()
    service.stopped(Unavailable("stopped"), Unavailable("stopped"))
    assert [m.id for m in service.members().members] == ["n1", "n2", "n3"]
    with pytest.raises(Unavailable):
        KVService(Clock()).members()


# -- adding, promoting, removing


def test_add_proposes_the_whole_list_with_a_learner_and_answers_once_applied():
    node, service = _service()
    d = service.add_member("n4", "h4:7004", "h4:8004")
    assert node.changes == [([*VOTERS, Member("n4", "h4:7004", "h4:8004", learner=True)], False)]
    assert not d.called
    _apply_config(service, node)
    members = _result(d)
    assert isinstance(members, ClusterMembers)
    assert members.members[-1] == MemberInfo("n4", "h4:7004", "h4:8004", True, None, None, False)


def test_promote_turns_the_learner_into_a_voter():
    node, service = _service()
    node.configuration.append(Member("n4", "h4:7004", "", learner=True))
    node.views["n4"] = (9, 0.1)
    d = service.promote_member("n4")
    assert node.changes == [([*VOTERS, Member("n4", "h4:7004", "")], False)]
    _apply_config(service, node)
    assert not _result(d).members[-1].learner


@pytest.mark.parametrize("view, words", [(None, "has never answered"),
                                         ((9, 1.2), "has not for 1.2 s answered")])
def test_a_learner_the_leader_has_not_heard_from_lately_is_not_promoted(view, words):
    node, service = _service()
    node.configuration.append(Member("n4", "h4:7004", "", learner=True))
    if view is not None:
        node.views["n4"] = view
    error = _result(service.promote_member("n4"))
    assert isinstance(error, MembershipRefused) and error.status == 409
    assert words in str(error) and node.changes == []


@pytest.mark.parametrize("force", [False, True])
def test_remove_proposes_the_list_without_the_member_and_passes_force(force):
    node, service = _service()
    d = service.remove_member("n3", force=force)
    assert node.changes == [(VOTERS[:2], force)]
    _apply_config(service, node)
    assert [m.id for m in _result(d).members] == ["n1", "n2"]


@pytest.mark.parametrize("call, message", [
    (lambda s: s.add_member("", "h:1"), "non-empty"),
    (lambda s: s.add_member("n/4", "h:1"), "is not a name"),
    (lambda s: s.add_member("n4 ", "h:1"), "is not a name"),
    (lambda s: s.add_member("x" * 257, "h:1"), "longer than 256"),
    (lambda s: s.add_member("n4", "h4"), "host:port"),
    (lambda s: s.add_member("n4", "h4:0"), "outside 1..65535"),
    (lambda s: s.add_member("n4", "h4:65536"), "outside 1..65535"),
    (lambda s: s.add_member("n4", "h 4:7004"), "host:port"),
    (lambda s: s.add_member("n4", "h4:7004", "http://h4:8004"), "http_address"),
    (lambda s: s.promote_member(""), "non-empty"),
    (lambda s: s.remove_member("a b"), "is not a name"),
    (lambda s: s.transfer_leader(""), "target member id"),
])
def test_malformed_ids_and_addresses_are_refused_before_anything_is_proposed(call, message):
    node, service = _service()
    _follow(node)  # the shape is checked before leadership, as for writes
    error = _result(call(service))
    assert isinstance(error, InvalidRequest) and message in str(error)
    assert node.changes == [] and node.transfers == []


def test_ids_in_host_port_form_and_ipv6_addresses_are_accepted():
    node, service = _service()
    d = service.add_member("10.0.0.4:7004", "[::1]:7004")
    assert node.changes[-1][0][-1] == Member("10.0.0.4:7004", "[::1]:7004", "", learner=True)
    _apply_config(service, node)
    assert _result(d).members[-1].id == "10.0.0.4:7004"


@pytest.mark.parametrize("call, status, message", [
    (lambda s: s.add_member("n2", "h9:7009"), 409, "n2 is already a member (voter)"),
    (lambda s: s.add_member("n9", "h2:7002"), 409, "member n2 already has the Raft address"),
    (lambda s: s.promote_member("n9"), 404, "no member n9"),
    (lambda s: s.promote_member("n2"), 409, "n2 is already a voter"),
    (lambda s: s.remove_member("n9"), 404, "no member n9"),
    (lambda s: s.transfer_leader("n9"), 404, "no member n9"),
])
def test_changes_the_member_list_rules_out_are_refused_by_the_service(call, status, message):
    node, service = _service()
    error = _result(call(service))
    assert isinstance(error, MembershipRefused) and error.status == status
    assert message in str(error)
    assert node.changes == [] and node.transfers == []


def test_removing_the_last_voter_is_refused():
    node, service = _service()
    node.configuration = [VOTERS[0], Member("n4", "h4:7004", "", learner=True)]
    error = _result(service.remove_member("n1"))
    assert isinstance(error, MembershipRefused) and error.status == 409
    assert "last voter" in str(error) and node.changes == []


def test_a_follower_refuses_with_the_leaders_address_and_without_a_leader_none():
    node, service = _service()
    _follow(node, "n2")
    for call in (lambda: service.add_member("n4", "h4:7004"),
                 lambda: service.promote_member("n2"), lambda: service.remove_member("n3"),
                 lambda: service.transfer_leader("n3")):
        error = _result(call())
        assert isinstance(error, NotLeaderError) and error.leader_http == "h2:8002"
    _follow(node, None)
    error = _result(service.remove_member("n3"))
    assert isinstance(error, NotLeaderError) and error.leader_http is None
    node.started = False
    assert _result(service.remove_member("n3")).leader_http is None
    assert node.changes == []


@pytest.mark.parametrize("refusal", [MembershipRefused("learner n4 lags 5000 entries", 409),
                                     Unavailable("a configuration change is uncommitted")])
def test_the_nodes_refusal_reaches_the_caller(refusal):
    node, service = _service()
    node.configuration.append(Member("n4", "h4:7004", "", learner=True))
    node.views["n4"] = (9, 0.1)
    node.refusal = refusal
    assert _result(service.promote_member("n4")) is refusal


def test_a_change_overwritten_by_another_term_or_cut_short_by_lost_leadership_is_unknown():
    node, service = _service()
    d = service.add_member("n4", "h4:7004")
    _apply_config(service, node, term=node.term + 1)
    assert isinstance(_result(d), OutcomeUnknown)
    d = service.remove_member("n3")
    service.role_changed(SoftState(Role.FOLLOWER, node.term + 1, "n2"))
    assert isinstance(_result(d), OutcomeUnknown)


def test_a_change_that_does_not_apply_in_time_is_unknown():
    clock = Clock()
    service = KVService(clock, proposal_timeout=5, read_timeout=3)
    node = FakeConsensus()
    service.attach(node)
    d = service.add_member("n4", "h4:7004")
    clock.advance(5)
    assert isinstance(_result(d), OutcomeUnknown)


# -- leadership transfer


def test_transfer_waits_for_the_node_and_answers_the_new_leader():
    node, service = _service()
    d = service.transfer_leader("n3")
    assert [to for to, _ in node.transfers] == ["n3"] and not d.called
    _follow(node, "n3")
    node.transfers[0][1].callback(None)
    assert _result(d) == "n3"


def test_transfer_to_the_leader_itself_answers_at_once_and_a_learner_is_refused():
    node, service = _service()
    assert _result(service.transfer_leader("n1")) == "n1"
    node.configuration.append(Member("n4", "h4:7004", "", learner=True))
    error = _result(service.transfer_leader("n4"))
    assert isinstance(error, MembershipRefused) and error.status == 409
    assert "learner" in str(error) and node.transfers == []


def test_a_transfer_that_times_out_is_unavailable():
    node, service = _service()
    d = service.transfer_leader("n2")
    node.transfers[0][1].errback(Unavailable("leadership did not move within 1 s"))
    assert isinstance(_result(d), Unavailable)


# -- status and health


def test_status_reports_a_learner_and_the_cluster_id():
    node, service = _service()
    node.node_id = "n4"
    node.configuration.append(Member("n4", "h4:7004", "", learner=True))
    _follow(node)
    node.contact_age = 0.2
    st = service.status()
    assert (st.role, st.cluster_id, st.healthy, st.reason) == ("learner", "c-42", True, None)
    assert st.leader_contact_seconds == 0.2


@pytest.mark.parametrize("role, leader, age, healthy, reason", [
    (Role.LEADER, "n1", 0.0, True, None),
    (Role.FOLLOWER, "n2", 0.99, True, None),
    (Role.FOLLOWER, "n2", 1.5, False, "no word from the leader n2 for 1.5 s"),
    (Role.FOLLOWER, None, None, False, "no leader is known"),
    (Role.CANDIDATE, None, None, False, "no leader is known"),
    (Role.FOLLOWER, "n2", None, False, "no leader is known"),
])
def test_health_needs_a_leader_heard_from_within_an_election_timeout(
        role, leader, age, healthy, reason):
    node, service = _service()
    node.role, node.leader, node.contact_age = role, leader, age
    st = service.status()
    assert st.healthy is healthy and st.leader_contact_seconds == age
    assert (st.reason is None) if reason is None else (reason in st.reason)


def test_a_starting_or_stopped_node_is_not_healthy():
    node, service = _service()
    node.started = False
    st = service.status()
    assert (st.role, st.healthy, st.reason) == ("starting", False, "the node is starting")
    node.started = True
    service.stopped(Unavailable("stopped"), Unavailable("stopped"))
    st = service.status()
    assert not st.healthy and st.reason == "the node has stopped serving"
