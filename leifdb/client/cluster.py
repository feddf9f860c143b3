"""Cluster membership and leadership transfer, without I/O: the requests, run by both
clients through the policy of ``leifdb.client.protocol``.

Changes are served by the leader (a follower redirects) and are writes: never resent once
their outcome is unknown (list the members to find out), except a transfer, which asking
again cannot make worse. The member list is any node's view, but only the leader knows
how far each member's log matches: ``members_steps`` asks the leader when the node it
reached is not.
"""

from __future__ import annotations

from urllib.parse import quote

from leifdb.client.errors import ClientError
from leifdb.client.protocol import (
    JSON_HEADERS, Endpoints, Request, RetryPolicy, Step, execute, json_body,
    normalize_endpoint, with_query,
)
from leifdb.client.types import Members

__all__ = [
    "add_member_request", "members_request", "members_steps",
    "promote_member_request", "remove_member_request", "transfer_leader_request",
]

def _member_path(member_id: str, suffix: str = "") -> str:
    if not member_id:
        raise ValueError("a member id must not be empty")
    return "/cluster/members/" + quote(member_id, safe="") + suffix


def members_request() -> Request:
    return Request("members", "GET", "/cluster/members")


def add_member_request(member_id: str, raft_address: str, http_address: str = "") -> Request:
    """Add ``member_id`` as a learner; ``http_address`` (``host:port`` or an
    ``http://`` URL) is optional: the cluster learns it when the member connects."""
    if not member_id:
        raise ValueError("a member id must not be empty")
    body = {"id": member_id, "raft_address": raft_address}
    if http_address:
        body["http_address"] = normalize_endpoint(http_address).removeprefix("http://")
    return Request("add_member", "POST", "/cluster/members", json_body(body), JSON_HEADERS,
                   idempotent=False, key=member_id)


def promote_member_request(member_id: str) -> Request:
    return Request("promote_member", "POST", _member_path(member_id, "/promote"),
                   idempotent=False, key=member_id)


def remove_member_request(member_id: str, *, force: bool = False) -> Request:
    target = with_query(_member_path(member_id), {"force": "true" if force else None})
    return Request("remove_member", "DELETE", target, idempotent=False, key=member_id)


def transfer_leader_request(to: str) -> Request:
    if not to:
        raise ValueError("a member id must not be empty")
    return Request("transfer_leader", "POST", "/cluster/leader", json_body({"to": to}),
                   JSON_HEADERS, key=to)


def members_steps(endpoints: Endpoints, policy: RetryPolicy, timeout: float = 10.0) -> Step:
    """The member list, from the leader when the node first reached knows which one it
    is and where: only its answer has ``match_index`` and ``last_contact_seconds``. If the
    leader does not answer, the first answer stands."""
    first: Members = yield from execute(members_request(), endpoints, policy, timeout)
    if first.leader is None or first.leader == first.node:
        return first
    leader = first.get(first.leader)
    if leader is None or not leader.http_address:
        return first
    try:
        url = normalize_endpoint(leader.http_address)
        better: Members = yield from execute(members_request(), endpoints, policy, timeout,
                                             url)
    except (ClientError, ValueError):
        return first
    endpoints.leader = url
    return better
