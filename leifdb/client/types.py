"""The client's typed results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "Holder", "Item", "LeaderChange", "Lease", "Member", "Members", "Page",
           "Status", "TxnResult", "WriteResult"]


@dataclass(frozen=True, slots=True)
class Item:
    """A key, its value and the revision that last wrote it; ``create_revision``: of the
    write that created it (a lock's fencing token for a lock key); ``lease``: the lease it
    is attached to, 0 for none."""

    key: str
    value: str
    revision: int
    create_revision: int = 0
    lease: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        return cls(data["key"], data["value"], int(data["revision"]),
                   int(data.get("create_revision") or 0), int(data.get("lease") or 0))

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "revision": self.revision,
                "create_revision": self.create_revision, "lease": self.lease}


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A committed write: the revision (log index) it was applied at; for a put, the lease
    the key is attached to (the new lease's id for ``ttl=``; 0 for none)."""

    revision: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as the leader sees it: ``ttl`` granted and ``remaining`` seconds before the
    leader expires it; ``keys`` attached (filled by ``lease_info`` only); ``revision``: the
    store revision of the answer."""

    id: int
    ttl: float
    remaining: float
    keys: tuple[str, ...] = ()
    revision: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lease:
        revision = data.get("revision")
        return cls(int(data["id"]), float(data["ttl"]), float(data["remaining"]),
                   tuple(str(k) for k in data.get("keys") or ()),
                   None if revision is None else int(revision))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "ttl": self.ttl, "remaining": self.remaining}
        if self.keys:
            out["keys"] = list(self.keys)
        return out


@dataclass(frozen=True, slots=True)
class Holder:
    """A lock's holder or an election's leader. ``key``: its key under ``_lock/`` or
    ``_election/``; ``token``: the key's create revision, strictly increasing with every
    acquisition (the fencing token); ``lease``: the owning lease; ``revision``: the key's
    current revision (a proclaim changes it, never the token)."""

    name: str
    key: str
    token: int
    lease: int
    value: str
    revision: int

    @property
    def fence(self) -> str:
        """``NAME:TOKEN``, as ``put(..., fence=)`` and ``?fence=`` take it (locks)."""
        return f"{self.name}:{self.token}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Holder:
        return cls(str(data["name"]), str(data["key"]), int(data["token"]),
                   int(data["lease"]), str(data.get("value") or ""), int(data["revision"]))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "token": self.token, "lease": self.lease,
                "value": self.value, "revision": self.revision}


@dataclass(frozen=True, slots=True)
class LeaderChange:
    """One message of an election's observe stream: its leader (None: no leader) at
    ``revision``."""

    leader: Holder | None
    revision: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LeaderChange:
        leader = data.get("leader")
        return cls(Holder.from_json(leader) if isinstance(leader, dict) else None,
                   int(data["revision"]))

    def to_json(self) -> dict[str, Any]:
        return {"leader": None if self.leader is None else self.leader.to_json(),
                "revision": self.revision}


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; ``revision`` is the node's revision when it answered
    (watch from ``revision + 1`` to miss nothing)."""

    prefix: str
    items: list[Item]
    more: bool
    next_start_after: str | None
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``succeeded`` says which branch ran; ``results`` has one dict per operation as the
    server answered it, with ``item``/``items`` turned into ``Item``."""

    succeeded: bool
    revision: int
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Event:
    """One change seen by a watch."""

    type: str  # "put" or "delete"
    key: str
    value: str | None
    revision: int
    prev_value: str | None = None
    prev_revision: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            data["type"], data["key"], data.get("value"), int(data["revision"]),
            data.get("prev_value"), data.get("prev_revision"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "key": self.key, "value": self.value,
                               "revision": self.revision}
        if self.prev_revision is not None:
            out["prev_value"] = self.prev_value
            out["prev_revision"] = self.prev_revision
        return out


@dataclass(frozen=True, slots=True)
class Status:
    """``GET /health`` of one endpoint. ``role``: leader, follower, learner (a follower
    without a vote), candidate or starting. ``healthy`` False (the node answered 503):
    it knows no leader or has not heard from it lately; ``reason`` says which."""

    endpoint: str
    node: str
    role: str
    term: int
    leader: str | None
    leader_http: str | None
    commit_index: int
    applied_index: int
    version: str
    healthy: bool = True
    reason: str | None = None
    cluster_id: str = ""

    @classmethod
    def from_json(cls, endpoint: str, data: dict[str, Any]) -> Status:
        return cls(endpoint, str(data.get("node")), str(data.get("role")),
                   int(data.get("term") or 0), data.get("leader"), data.get("leader_http"),
                   int(data.get("commit_index") or 0), int(data.get("applied_index") or 0),
                   str(data.get("version")), bool(data.get("healthy", True)),
                   data.get("reason"), str(data.get("cluster_id") or ""))

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "node": self.node, "role": self.role,
                "term": self.term, "leader": self.leader, "leader_http": self.leader_http,
                "commit_index": self.commit_index, "applied_index": self.applied_index,
                "version": self.version, "healthy": self.healthy, "reason": self.reason,
                "cluster_id": self.cluster_id}


@dataclass(frozen=True, slots=True)
class Member:
    """One member of the cluster. ``role``: ``voter`` or ``learner`` (receives the log,
    does not vote). ``match_index`` and ``last_contact_seconds`` are the leader's view
    (None when another node answered)."""

    id: str
    raft_address: str
    http_address: str
    role: str
    match_index: int | None = None
    last_contact_seconds: float | None = None
    is_leader: bool = False

    @property
    def learner(self) -> bool:
        return self.role == "learner"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Member:
        match, contact = data.get("match_index"), data.get("last_contact_seconds")
        return cls(str(data["id"]), str(data["raft_address"]),
                   str(data.get("http_address") or ""), str(data["role"]),
                   None if match is None else int(match),
                   None if contact is None else float(contact), bool(data.get("is_leader")))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "raft_address": self.raft_address,
                "http_address": self.http_address, "role": self.role,
                "match_index": self.match_index,
                "last_contact_seconds": self.last_contact_seconds,
                "is_leader": self.is_leader}


@dataclass(frozen=True, slots=True)
class Members:
    """The member list as ``node`` knows it; ``leader``: the leader's id (None: none
    known)."""

    cluster_id: str
    node: str
    leader: str | None
    members: list[Member]

    def get(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Members:
        return cls(str(data.get("cluster_id") or ""), str(data.get("node") or ""),
                   data.get("leader"), [Member.from_json(m) for m in data["members"]])

    def to_json(self) -> dict[str, Any]:
        return {"cluster_id": self.cluster_id, "node": self.node, "leader": self.leader,
                "members": [m.to_json() for m in self.members]}
