"""The RPC between a worker and its node's consensus process: which ``Service`` methods
cross it, the shape of the frames, and the settings a worker starts with.

Frames (pickled by ``leifdb.worker.codec``), each side batching one reactor turn into one:

- worker -> node: ``(calls, cancels, note)``; ``calls``: ``[(id, method, args, kwargs)]``,
  ``cancels``: ids whose caller gave up, ``note``: None or a ``Note``.
- node -> worker: ``(revision, replies, settings)``; ``revision``: the node's applied
  revision when the frame was written (so never older than what the replies reflect),
  ``replies``: ``[(id, ok, value)]`` where ``value`` is the result or, when not ``ok``,
  an exception as ``leifdb.worker.codec.encode_exception`` encodes it; ``settings``: a
  ``WorkerSettings`` in the node's first frame, None after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from leifdb.service.api import ServiceLimits

__all__ = [
    "CALLS",
    "CANCEL_ON_DISCONNECT",
    "NODE_ONLY",
    "Note",
    "WorkerSettings",
]

#: Every ``Service`` method a worker forwards as a call: each returns a Deferred.
CALLS = frozenset({
    "get", "range", "put", "delete", "txn", "barrier", "wait",
    "grant_lease", "keepalive", "lease_info", "leases", "revoke_lease",
    "lock", "lock_holder", "campaign", "election_leader", "proclaim", "resign",
    "add_member", "promote_member", "remove_member", "transfer_leader",
})
#: ``Service`` methods that cannot cross (synchronous answers, sinks with callbacks, a
#: file, an observer): the routes using them are forwarded to the node whole
#: (``leifdb.worker.forward.FORWARDED_ENDPOINTS``).
NODE_ONLY = frozenset({"status", "members", "watch", "observe", "snapshot", "on_applied"})
#: Calls the HTTP routes leave cancellable (long poll, lock, campaign): when a worker's
#: connection to the node ends, the node cancels those still running, as a client's
#: disconnect would; the others (writes above all) run their course.
CANCEL_ON_DISCONNECT = frozenset({"wait", "lock", "campaign"})

Call = tuple[int, str, tuple[Any, ...], dict[str, Any]]
Reply = tuple[int, bool, Any]


@dataclass(frozen=True)
class Note:
    """What a worker tells its node besides calls: ``ready`` once it serves, and the
    HTTP request timings it observed since its last note (``(route, method, status,
    seconds)``), for the node's ``/metrics``."""

    ready: bool = False
    http: tuple[tuple[str, str, int, float], ...] = ()


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs from its node, sent in the node's first frame: the service's
    ``limits``, where the node serves the routes a worker forwards (``internal_port`` on
    127.0.0.1), whether to write the access log, and how to drain on SIGTERM (as
    ``ApiSite.drain``). The log level comes on the command line: it applies before the
    first frame."""

    limits: ServiceLimits = field(default_factory=ServiceLimits)
    internal_port: int = 0
    access_log: bool = False
    drain_grace: float = 1.0
    drain_deadline: float = 3.0
