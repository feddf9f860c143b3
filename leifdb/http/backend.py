"""What the HTTP API needs from a node: the contract ``leifdb.node`` implements.

The HTTP layer never touches Raft, storage or the network; it talks to one object with the
methods below. Tests use an in-memory fake with the same shape.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred

from leifdb.kv.commands import ApplyResult, Delete, Item, Put

__all__ = ["Backend", "KVReader"]


class KVReader(Protocol):
    """Read-only view of the applied key-value state (``leifdb.kv.store.KVStore``).

    Called from the reactor thread only; both calls return at once.
    """

    def get(self, key: str) -> Item | None:
        """The key's item, or None when absent."""
        ...

    def range(
        self, prefix: str = "", start_after: str | None = None, limit: int | None = None
    ) -> tuple[list[Item], bool]:
        """Items whose key starts with ``prefix``, in code point order, after
        ``start_after`` if given, at most ``limit`` (>= 1). ``more`` is True when further
        matching keys follow the last one returned."""
        ...


class Backend(Protocol):
    """A node as seen by the client API.

    ``kv`` is the node's applied state. It may be behind the leader; call
    ``read_barrier`` first for a linearizable read.
    """

    @property
    def kv(self) -> KVReader: ...

    def submit(self, command: Put | Delete) -> Deferred[ApplyResult]:
        """Replicate ``command``; fires with its ``ApplyResult`` once it is committed and
        applied on this node.

        Errbacks: ``leifdb.errors.NotLeaderError`` (nothing was proposed; ``leader_http``
        is the leader's ``host:port`` or None when no leader is known) and
        ``leifdb.errors.OutcomeUnknown`` (proposed, but the outcome is not known).
        """
        ...

    def read_barrier(self) -> Deferred[None]:
        """Fires once this node's applied state includes every write committed before
        the call (a linearizable read point).

        Errbacks: ``leifdb.errors.Unavailable`` (no leader, or no majority confirmed it)
        or ``leifdb.errors.NotLeaderError`` (this node does not serve such reads).
        """
        ...

    def status(self) -> dict[str, Any]:
        """A snapshot of the node's state with the keys ``node``, ``role``, ``term``,
        ``leader``, ``leader_http``, ``commit_index`` and ``applied_index``."""
        ...
