"""Errors a node reports to its clients. Shared by ``node`` and ``http``; imports nothing."""

from __future__ import annotations


class NotLeaderError(Exception):
    """This node cannot accept writes. ``leader_http`` is the leader's client address
    (``host:port``) when one is known, else None (no leader right now)."""

    def __init__(self, leader_http: str | None) -> None:
        super().__init__("not the leader" if leader_http else "no leader is known")
        self.leader_http = leader_http


class OutcomeUnknown(Exception):
    """The write may or may not have been applied: leadership was lost before it committed,
    or it did not commit in time. Clients must read before retrying a non-idempotent write."""


class Unavailable(Exception):
    """A linearizable read could not be confirmed (no leader, or no majority reachable)."""


class Compacted(Exception):
    """A watch or long poll asked for history older than the node keeps.
    ``compact_revision`` is the oldest revision it can still start from: re-read the
    state, then watch from the revision that read returned."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(
            f"revisions before {compact_revision} are no longer kept; read again and "
            f"watch from the revision of that read"
        )
        self.compact_revision = compact_revision


class LimitExceeded(Exception):
    """A request is over one of the documented limits (HTTP 413); the message names it."""


class InvalidRequest(Exception):
    """A request is well-formed but makes no sense (HTTP 400); the message says why."""


class LeaseNotFound(Exception):
    """The lease does not exist (never granted, revoked or expired) (HTTP 404)."""

    def __init__(self, lease_id: int) -> None:
        super().__init__(f"lease {lease_id} not found (revoked, expired or never granted)")
        self.lease_id = lease_id


class NotHolder(Exception):
    """A proclaim or resign named a token that is not the election's current leader
    (HTTP 412)."""


class LockTimeout(Exception):
    """A lock or campaign was not acquired within its timeout; the waiter's key was
    removed (HTTP 423). ``holder`` is the key holding it when the wait ended (or None)."""

    def __init__(self, name: str, holder: str | None) -> None:
        super().__init__(f"{name!r} is still held by another owner; gave up waiting")
        self.holder = holder


class MembershipRefused(Exception):
    """A membership change or leadership transfer was refused and nothing changed.
    ``status`` tells why as HTTP does: 409 (not allowed now or at all: one change at a
    time, a lagging learner, a lost quorum without ``force``...), 404 (no such member).
    A refusal that a retry may cure is raised as ``Unavailable`` instead."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status
