"""Every error the LeifDB client raises, in one module.

``ClientError`` is the base. A caller who must know whether a write happened looks for
``OutcomeUnknown``: it is raised instead of retrying a write that may or may not have been
applied (504, a timeout or a lost connection after the request was sent).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest", "ClientError", "Compacted", "ConditionFailed", "Fenced", "Gone",
    "LeaseExpired", "LeaseNotFound", "LockTimeout", "MemberNotFound", "MembershipRefused",
    "NotFound", "NotHolder", "NotLeader", "OutcomeUnknown", "ServerError", "TooLarge",
    "Unavailable", "WatchOverflow",
]


class ClientError(Exception):
    """Base of the client's errors. ``status`` is the HTTP status when there was one."""

    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.body = body


class Unavailable(ClientError):
    """No endpoint could serve the request within the retry budget (503s, refused or
    dropped connections, no leader). Nothing was written."""


class NotLeader(Unavailable):
    """A redirect to the leader could not be followed (no ``Location``, or too many hops)."""


class OutcomeUnknown(ClientError):
    """The write may or may not have been applied: read before retrying it."""


class ConditionFailed(ClientError):
    """A conditional write (``prev``, ``if_match``, ``create``) found the key otherwise;
    nothing changed. ``current`` is the key as it is (None if absent)."""

    status = 412

    def __init__(self, message: str, *, key: str, current: Any, body: Any = None) -> None:
        super().__init__(message, status=412, body=body)
        self.key = key
        self.current = current


class Compacted(ClientError):
    """The requested revision is older than the history the node keeps (410 Gone, or a
    watch's final ``compacted`` event). Read again, then watch from that read's revision + 1.
    ``compact_revision`` is where the node's history starts."""

    status = 410

    def __init__(self, message: str, *, compact_revision: int | None, body: Any = None) -> None:
        super().__init__(message, status=410, body=body)
        self.compact_revision = compact_revision


Gone = Compacted


class WatchOverflow(ClientError):
    """The node ended the watch because the watcher fell too far behind; read again."""


class BadRequest(ClientError):
    """400: the request is invalid (the message says why)."""

    status = 400


class NotFound(ClientError):
    """404 for something other than a key read (a key read returns None)."""

    status = 404


class TooLarge(ClientError):
    """413: a key, value, body or transaction is over a limit."""

    status = 413


class ServerError(ClientError):
    """Any other unexpected answer (500, an unparseable body)."""


class LeaseNotFound(NotFound):
    """404 from a lease operation (keepalive, info, revoke, a put, lock or campaign naming
    the lease): the lease was never granted, was revoked or has expired, and its keys are
    gone with it."""

    def __init__(self, message: str, *, lease_id: int, status: int | None = 404,
                 body: Any = None) -> None:
        super().__init__(message, status=status, body=body)
        self.lease_id = lease_id


class LeaseExpired(LeaseNotFound):
    """A ``keep_alive`` helper got no acknowledged keepalive within the lease's TTL of the
    last one that was acknowledged: the lease may have expired (and a lock it held may have
    passed to someone else). ``cause`` is the last error. Treat it as lost."""

    def __init__(self, message: str, *, lease_id: int, cause: BaseException | None) -> None:
        super().__init__(message, lease_id=lease_id, status=None)
        self.cause = cause


class NotHolder(ClientError):
    """412 from a proclaim or resign whose token is not the election's leader (any more),
    or from a fenced write (``Fenced``). Nothing changed."""

    status = 412


class Fenced(NotHolder):
    """A write with ``fence=NAME:TOKEN`` was refused: lock NAME is no longer held with that
    token (someone else holds it, or nobody). Nothing changed. ``fence`` is ``NAME:TOKEN``."""

    def __init__(self, message: str, *, fence: str, body: Any = None) -> None:
        super().__init__(message, status=412, body=body)
        self.fence = fence


class LockTimeout(ClientError):
    """423: a lock or campaign was not acquired within its timeout; the waiter's key was
    removed, so nothing is left behind. ``holder`` is the key that held it (or None)."""

    status = 423

    def __init__(self, message: str, *, holder: str | None, body: Any = None) -> None:
        super().__init__(message, status=423, body=body)
        self.holder = holder


class MembershipRefused(ClientError):
    """409: a membership change or leadership transfer was refused and nothing changed;
    the message says why (another change in progress, the id or address taken, a learner
    lagging behind, too few reachable voters left without ``force``...)."""

    status = 409


class MemberNotFound(NotFound):
    """404 from a membership change or transfer: no member has this id."""

    def __init__(self, message: str, *, member_id: str, body: Any = None) -> None:
        super().__init__(message, status=404, body=body)
        self.member_id = member_id
