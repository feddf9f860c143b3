"""The JSON shapes of items, pages, leases, lock holders and members, shared by the
routes."""

from __future__ import annotations

from typing import Any

from leifdb.kv.commands import Item
from leifdb.service.api import ClusterMembers, Holder, LeaseInfo, MemberInfo, Page

__all__ = ["etag", "holder_json", "item_json", "lease_json", "member_json", "members_json",
           "page_json"]


def etag(revision: int) -> bytes:
    return b'"%d"' % revision


def item_json(item: Item) -> dict[str, Any]:
    """``create_revision``: the write that created the key (a lock key's fencing token);
    ``lease``: the lease it is attached to, 0 for none."""
    return {
        "key": item.key,
        "value": item.value,
        "revision": item.revision,
        "create_revision": item.create_revision,
        "lease": item.lease,
    }


def page_json(prefix: str, page: Page) -> dict[str, Any]:
    """A range page as ``GET /db`` answers it; ``next_start_after`` is the last key when
    more follow (pass it as ``start_after``)."""
    items = [item_json(item) for item in page.items]
    return {
        "prefix": prefix,
        "items": items,
        "more": page.more,
        "next_start_after": items[-1]["key"] if page.more and items else None,
    }


def lease_json(lease: LeaseInfo) -> dict[str, Any]:
    """A lease without its keys (``GET /lease`` lists these)."""
    return {"id": lease.id, "ttl": lease.ttl, "remaining": lease.remaining}


def holder_json(holder: Holder) -> dict[str, Any]:
    """A lock's holder or an election's leader; ``token`` is the fencing token."""
    return {
        "name": holder.name,
        "key": holder.key,
        "token": holder.token,
        "lease": holder.lease,
        "value": holder.value,
        "revision": holder.revision,
    }


def member_json(member: MemberInfo) -> dict[str, Any]:
    """One member; ``match_index`` and ``last_contact_seconds`` are null unless the
    answering node leads."""
    return {
        "id": member.id,
        "raft_address": member.raft_address,
        "http_address": member.http_address,
        "role": "learner" if member.learner else "voter",
        "match_index": member.match_index,
        "last_contact_seconds": member.last_contact_seconds,
        "is_leader": member.is_leader,
    }


def members_json(members: ClusterMembers) -> dict[str, Any]:
    """``GET /cluster/members`` and the answer to every membership change."""
    return {
        "cluster_id": members.cluster_id,
        "node": members.node,
        "leader": members.leader,
        "members": [member_json(m) for m in members.members],
        "config_index": members.config_index,
    }
