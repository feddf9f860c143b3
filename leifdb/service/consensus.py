"""What the service needs of the node (``leifdb.node.Node``): ``Consensus``, the calls
``KVService`` makes to propose, read and report, with the membership calls of
``Reconfigurable``."""

from __future__ import annotations

from typing import Protocol

from leifdb.raft.core import Status
from leifdb.service.membership import Reconfigurable

__all__ = ["Consensus"]


class Consensus(Reconfigurable, Protocol):
    """The node as the service drives it (``leifdb.node.Node``); the membership calls
    are those of ``Reconfigurable``."""

    node_id: str

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append ``data`` as a command; ``(index, term)``. Raises ``NotLeaderError``."""
        ...

    def request_read(self) -> int:
        """Ask for a read index; the answer reaches ``Application.read_states`` with the
        returned read id. Raises ``NotLeaderError`` when the node cannot ask."""
        ...

    def raft_status(self) -> Status | None:
        """The core's status, None before the node has started."""
        ...

    def http_address(self, node_id: str | None) -> str | None:
        ...

    def leader_contact_age(self) -> float | None:
        """Seconds since this node last heard from the leader it knows (0 on the leader);
        None when it knows no leader."""
        ...
