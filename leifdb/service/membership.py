"""Membership changes and leadership transfer, as the service serves them.

Raft changes the member list one server at a time through CONFIG entries that carry the
whole new list (``leifdb.wire.encode_membership``). This module computes that list from
the node's latest configuration, checks what the service can tell by itself (a taken id
or address, an unknown member, promoting a voter), hands the change to the node, whose
core refuses what Raft must (another change in flight, a lagging learner, a lost quorum),
and answers once the entry is applied here, through the same waiter as a key write: a
change whose leader lost office first ends in ``OutcomeUnknown``.

Order of checks, the same as for writes: the request's shape (400), then leadership
(``NotLeaderError``: 307 to the leader, 503 without one), then the member list as the
leader knows it (404, 409).
"""

from __future__ import annotations

from typing import Callable, Protocol

from twisted.internet.defer import Deferred, fail, succeed

from leifdb.errors import MembershipRefused, NotLeaderError
from leifdb.kv.commands import ApplyResult
from leifdb.raft.core import Status
from leifdb.raft.messages import Member, Role
from leifdb.service.api import ClusterMembers, MemberInfo, check_address, check_member_id
from leifdb.wire import encode_membership

__all__ = ["Membership", "Reconfigurable"]


class Reconfigurable(Protocol):
    """What membership needs of the node (``leifdb.node.Node``; part of ``Consensus``)."""

    node_id: str
    cluster_id: str
    election_timeout: float  # seconds: the shortest a follower waits before campaigning

    def raft_status(self) -> Status | None:
        ...

    def http_address(self, node_id: str | None) -> str | None:
        ...

    def change_membership(self, data: bytes, force: bool) -> tuple[int, int]:
        """Propose a CONFIG entry holding the whole new member list; ``(index, term)``.
        Raises ``NotLeaderError``, ``MembershipRefused`` (409/404) or ``Unavailable`` (a
        refusal a retry may cure: another change is still uncommitted...)."""
        ...

    def config_index(self) -> int:
        """Log index of the latest configuration's entry (0: the bootstrap list)."""
        ...

    def members(self) -> list[Member]:
        """The latest configuration (committed or not), with addresses."""
        ...

    def member_views(self) -> dict[str, tuple[int, float]]:
        """On the leader: member id -> (match index, seconds since last heard from)."""
        ...

    def transfer_leadership(self, to: str) -> Deferred[object]:
        """Fires once another node leads; ``Unavailable`` after an election timeout."""
        ...


class Membership:
    """The membership half of ``KVService``. ``node()`` is the node, if it serves changes
    (else it raises ``NotLeaderError``); ``wait_applied(index, term)`` fires once the entry
    at ``index`` applied with ``term`` (``Waits.proposed``)."""

    def __init__(
        self,
        node: Callable[[], Reconfigurable],
        wait_applied: Callable[[int, int], Deferred[ApplyResult]],
    ) -> None:
        self._node = node
        self._wait_applied = wait_applied

    @staticmethod
    def members(node: Reconfigurable) -> ClusterMembers:
        """``node``'s view (a stopped node's too: it tells what it last knew)."""
        st = node.raft_status()
        leader = st.leader_id if st is not None else None
        leading = st is not None and st.role is Role.LEADER
        views = node.member_views() if leading else {}
        infos = []
        for member in node.members():
            view = views.get(member.id)
            if view is None and leading and member.id == node.node_id:
                view = (st.last_index, 0.0)  # the leader's own log, heard from now
            infos.append(MemberInfo(
                id=member.id,
                raft_address=member.raft_address,
                http_address=member.http_address or node.http_address(member.id) or "",
                learner=member.learner,
                match_index=view[0] if view is not None else None,
                last_contact_seconds=view[1] if view is not None else None,
                is_leader=member.id == leader,
            ))
        return ClusterMembers(node.cluster_id, node.node_id, leader, tuple(infos),
                              node.config_index())

    def add(self, member_id: str, raft_address: str, http_address: str = ""
            ) -> Deferred[ClusterMembers]:
        try:
            check_member_id(member_id)
            check_address(raft_address, "raft_address")
            if http_address:
                check_address(http_address, "http_address")
            node, current = self._leader_members()
            for member in current:
                if member.id == member_id:
                    raise MembershipRefused(
                        f"{member_id} is already a member ({_role(member)})", 409)
                if member.raft_address == raft_address:
                    raise MembershipRefused(
                        f"member {member.id} already has the Raft address {raft_address}", 409)
            new = Member(member_id, raft_address, http_address, learner=True)
            return self._change(node, [*current, new], force=False)
        except Exception:
            return fail()

    def promote(self, member_id: str) -> Deferred[ClusterMembers]:
        try:
            check_member_id(member_id)
            node, current = self._leader_members()
            member = _find(current, member_id)
            if not member.learner:
                raise MembershipRefused(f"{member_id} is already a voter", 409)
            self._check_heard_from(node, member_id)
            changed = [
                Member(m.id, m.raft_address, m.http_address) if m.id == member_id else m
                for m in current
            ]
            return self._change(node, changed, force=False)
        except Exception:
            return fail()

    def remove(self, member_id: str, force: bool = False) -> Deferred[ClusterMembers]:
        try:
            check_member_id(member_id)
            node, current = self._leader_members()
            _find(current, member_id)
            remaining = [m for m in current if m.id != member_id]
            if all(m.learner for m in remaining):
                raise MembershipRefused(
                    f"{member_id} is the last voter; promote a learner before removing it", 409)
            return self._change(node, remaining, force=force)
        except Exception:
            return fail()

    def transfer(self, to: str) -> Deferred[str]:
        try:
            check_member_id(to, "target member id")
            node, current = self._leader_members()
            target = _find(current, to)
            if target.learner:
                raise MembershipRefused(
                    f"{to} is a learner and cannot lead; promote it to voter first", 409)
            if to == node.node_id:
                return succeed(to)  # it leads already
            d = node.transfer_leadership(to)
        except Exception:
            return fail()
        return d.addCallback(lambda _: self._leader_after_transfer(node, to))

    # -- helpers -----------------------------------------------------------------------

    def _leader_members(self) -> tuple[Reconfigurable, list[Member]]:
        """The node and its latest member list, if it leads; ``NotLeaderError`` (with the
        leader's address when known) otherwise: only the leader's list counts."""
        node = self._node()
        st = node.raft_status()
        if st is None or st.role is not Role.LEADER:
            raise NotLeaderError(node.http_address(st.leader_id) if st is not None else None)
        return node, list(node.members())

    @staticmethod
    def _check_heard_from(node: Reconfigurable, member_id: str) -> None:
        """A voter the leader cannot reach weakens the quorum from the start: promote only
        a learner that answered within an election timeout (its lag the core checks)."""
        view = node.member_views().get(member_id)
        if view is None or view[1] > node.election_timeout:
            since = "never" if view is None else f"not for {view[1]:.1f} s"
            raise MembershipRefused(
                f"learner {member_id} has {since} answered the leader; start it (or check "
                f"its address), then promote it once it has caught up", 409)

    def _change(self, node: Reconfigurable, members: list[Member], force: bool
                ) -> Deferred[ClusterMembers]:
        index, term = node.change_membership(encode_membership(members), force)
        return self._wait_applied(index, term).addCallback(lambda _: self.members(node))

    @staticmethod
    def _leader_after_transfer(node: Reconfigurable, to: str) -> str:
        st = node.raft_status()
        return st.leader_id if st is not None and st.leader_id else to


def _find(members: list[Member], member_id: str) -> Member:
    for member in members:
        if member.id == member_id:
            return member
    raise MembershipRefused(f"no member {member_id} in the cluster", 404)


def _role(member: Member) -> str:
    return "learner" if member.learner else "voter"
