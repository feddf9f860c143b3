"""Every error the LeifDB client raises, in one module.

``ClientError`` is the base. A caller who must know whether a write happened looks for
``OutcomeUnknown``: it is raised instead of retrying a write that may or may not have been
applied (504, a timeout or a lost connection after the request was sent).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest", "ClientError", "Compacted", "ConditionFailed", "Gone", "NotFound",
    "NotLeader", "OutcomeUnknown", "ServerError", "TooLarge", "Unavailable", "WatchOverflow",
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
