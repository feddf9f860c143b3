"""The validated settings of one node, produced by ``leifdb.config`` from flags and
environment, consumed by ``leifdb.node`` and ``leifdb.tap``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from leifdb.raft.messages import Member
from leifdb.service.api import ServiceLimits

#: ``--workers``' default: one HTTP worker process per core this process may run on (a
#: container's or ``taskset``'s CPU set, not every core of the machine).
DEFAULT_WORKERS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
    os.cpu_count() or 1)


@dataclass(frozen=True)
class NodeConfig:
    """``node_id`` is this node's identity (its ``name=`` in ``members``, else
    ``host:raft_port``). ``members`` lists every member, this node included; each member's
    ``raft_address`` is where peers dial it (for this node: where it is reached, while
    ``raft_listen_port`` is what it binds). ``http_address`` is the ``host:port`` clients
    (and redirects) use for this node. The defaults here and in ``ServiceLimits`` are the
    only definitions of each default: ``leifdb.config`` shows and applies them.

    ``bootstrap`` (default: ``join`` is None): the voters of ``members`` are the cluster's
    first configuration, used only while neither the log nor a snapshot holds one
    (``--members``). Not so for a node that joins a running cluster (``join``: the
    endpoints it asks, comma-separated): it starts with no configuration of its own,
    neither campaigns nor votes, and learns the cluster's configuration from the leader's
    log; its ``members`` (this node as a learner until the join fetched the list) only
    tell the transport whom to dial.

    ``workers``: processes serving the client HTTP port (``leifdb.worker``); 0: the node's
    own process serves it."""

    node_id: str
    members: tuple[Member, ...]
    http_address: str
    http_port: int
    raft_listen_port: int
    data_dir: Path
    listen_interface: str = ""
    election_timeout_ms: int = 1000
    heartbeat_interval_ms: int = 100
    snapshot_entries: int = 10_000
    retain_snapshots: int = 2
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    cluster_id: str = "leifdb"
    join: str | None = None
    bootstrap: bool = None  # type: ignore[assignment]  # set by __post_init__: not join
    # Set by ``--join``: the configuration index the cluster reported with this node in it;
    # recorded in the identity, so older removals of this id are not taken for its own.
    joined_index: int = 0
    log_level: str = "info"
    log_format: str = "text"  # or "json": one JSON object per line
    workers: int = DEFAULT_WORKERS
    # TEST ONLY (``--unsafe-test-writeback-fs``): the storage keeps what it has not synced
    # in this process's memory (``leifdb.storage.writeback``), so SIGKILL is a power cut.
    unsafe_test_writeback_fs: bool = False

    def __post_init__(self) -> None:
        if self.bootstrap is None:
            object.__setattr__(self, "bootstrap", self.join is None)
        elif self.join is not None and self.bootstrap:
            raise ValueError("a node that joins a cluster (join) cannot bootstrap one")

    def member(self, node_id: str) -> Member:
        for member in self.members:
            if member.id == node_id:
                return member
        raise KeyError(node_id)


def default_of(name: str) -> object:
    """The default of a ``NodeConfig`` field, or of a ``ServiceLimits`` field."""
    for owner in (NodeConfig, ServiceLimits):
        for f in fields(owner):
            if f.name == name:
                return f.default
    raise KeyError(name)
