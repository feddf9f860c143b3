"""A node's status (``GET /health``, ``/metrics``, the client's ``status``): its Raft
state, what it applied, and whether it is ready to serve."""

from __future__ import annotations

from typing import Any

from leifdb import __version__
from leifdb.raft.core import Status
from leifdb.raft.messages import Role
from leifdb.service.api import NodeStatus
from leifdb.service.consensus import Consensus
from leifdb.service.watch import WatchHub

__all__ = ["node_status"]


def node_status(node: Consensus | None, applied_index: int, revision: int, hub: WatchHub,
                stopped: bool) -> NodeStatus:
    """The status of ``node`` (None before the service is attached to it) whose state
    machine applied up to ``applied_index`` (``revision``), with ``hub``'s history and
    watchers; ``stopped``: the node has stopped serving."""
    st = node.raft_status() if node is not None else None
    common = dict(
        applied_index=applied_index,
        version=__version__,
        revision=revision,
        compact_revision=hub.history.compact_revision,
        watchers=hub.watcher_count,
    )
    if node is None or st is None:
        return NodeStatus(
            node=node.node_id if node is not None else "", role="starting", term=0,
            leader=None, leader_http=None, commit_index=0, last_index=0,
            snapshot_index=0, cluster_id=node.cluster_id if node is not None else "",
            healthy=False, reason="the node is starting", leader_contact_seconds=None,
            **common,
        )
    age = node.leader_contact_age()
    return NodeStatus(
        node=st.node_id,
        role=_role(node, st),
        term=st.term,
        leader=st.leader_id,
        leader_http=node.http_address(st.leader_id),
        commit_index=st.commit_index,
        last_index=st.last_index,
        snapshot_index=st.snapshot_index,
        cluster_id=node.cluster_id,
        leader_contact_seconds=age,
        **_health(node, st, age, stopped),
        **common,
    )


def _role(node: Consensus, st: Status) -> str:
    """A follower that does not vote is a learner."""
    if st.role is Role.FOLLOWER and any(
        m.id == st.node_id and m.learner for m in node.members()
    ):
        return "learner"
    return st.role.value


def _health(node: Consensus, st: Status, age: float | None, stopped: bool) -> dict[str, Any]:
    """Ready to serve: not stopped, a leader known and heard from within an election
    timeout (a leader that loses its quorum steps down, so it is healthy while it
    leads)."""
    reason: str | None = None
    if stopped:
        reason = "the node has stopped serving"
    elif st.role is Role.LEADER:
        reason = None
    elif st.leader_id is None or age is None:
        reason = "no leader is known (an election is under way, or this node is cut off)"
    elif age > node.election_timeout:
        reason = (f"no word from the leader {st.leader_id} for {age:.1f} s, more than an "
                  f"election timeout ({node.election_timeout:g} s)")
    return {"healthy": reason is None, "reason": reason}
