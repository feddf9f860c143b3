"""The client's typed results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "Item", "Page", "Status", "TxnResult", "WriteResult"]


@dataclass(frozen=True, slots=True)
class Item:
    """A key, its value and the revision that last wrote it."""

    key: str
    value: str
    revision: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        return cls(data["key"], data["value"], int(data["revision"]))

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "revision": self.revision}


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A committed put or delete: the revision (log index) it was applied at."""

    revision: int


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
    """``GET /health`` of one endpoint."""

    endpoint: str
    node: str
    role: str
    term: int
    leader: str | None
    leader_http: str | None
    commit_index: int
    applied_index: int
    version: str

    @classmethod
    def from_json(cls, endpoint: str, data: dict[str, Any]) -> Status:
        return cls(endpoint, str(data.get("node")), str(data.get("role")),
                   int(data.get("term") or 0), data.get("leader"), data.get("leader_http"),
                   int(data.get("commit_index") or 0), int(data.get("applied_index") or 0),
                   str(data.get("version")))

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "node": self.node, "role": self.role,
                "term": self.term, "leader": self.leader, "leader_http": self.leader_http,
                "commit_index": self.commit_index, "applied_index": self.applied_index,
                "version": self.version}
