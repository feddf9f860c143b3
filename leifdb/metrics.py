"""One node's Prometheus metrics: ``NodeMetrics`` owns a registry of its own (tests run many
nodes in one process, so never the global one) and renders it for ``GET /metrics``.

Two kinds of metric, chosen so the hot paths stay cheap:

- State (term, role, indexes, members, watchers, leases, peer connections, and the counters
  the service and the transport already keep) is read from the node's status objects when
  Prometheus scrapes: ``NodeMetrics`` is a custom collector, nothing runs per request.
- Durations and sizes (HTTP requests, fsyncs, Ready batches, peer round trips, snapshots)
  are observed as they happen by the one call each place makes here (about a microsecond).

The node, the transport and the service never import this module: they are handed the
observing callables (``leifdb.tap`` wires them), so their import rules stay as they are.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Protocol

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from leifdb.service.api import MemberInfo, NodeStatus, Service

__all__ = [
    "FSYNC_BUCKETS",
    "NodeMetrics",
    "ProposalCounts",
    "ROLES",
    "TransportView",
]

#: Every value ``NodeStatus.role`` takes; ``leifdb_raft_role`` has one series per role.
ROLES = ("leader", "follower", "candidate", "learner", "starting")
#: 0.25 ms to 8 s, doubling (etcd's WAL fsync buckets, one step finer at the bottom).
FSYNC_BUCKETS = tuple(0.00025 * 2 ** n for n in range(16))
#: HTTP latency: 0.5 ms to about 16 s (long polls and watch streams land in +Inf).
HTTP_BUCKETS = tuple(0.0005 * 2 ** n for n in range(16))
#: Peer round trips: 0.1 ms to about 3 s.
RTT_BUCKETS = tuple(0.0001 * 2 ** n for n in range(16))
#: Entries per persisted Ready: 0 (term or vote only) up to the core's 512-entry batches.
BATCH_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
SNAPSHOT_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
#: 4 KiB to 4 GiB, by factors of 4.
SNAPSHOT_BYTES_BUCKETS = tuple(4096 * 4 ** n for n in range(11))
_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"})


class ProposalCounts(Protocol):
    """What the service counts about its proposals (``KVService.proposal_counts``)."""

    committed: int
    failed: int
    outcome_unknown: int


class _TransportStats(Protocol):
    frames_sent: int
    frames_received: int
    dropped_not_connected: int
    dropped_queue_full: int
    dropped_invalid: int
    connections_rejected: int
    request_timeouts: int


class TransportView(Protocol):
    """What the collector reads of the Raft transport (``RaftTransport``)."""

    stats: _TransportStats

    def connected_peers(self) -> frozenset[str]: ...


class NodeMetrics:
    """The metrics of one node, in ``registry``.

    ``service`` gives the status read at scrape time; ``leases`` counts the leases of the
    applied state, ``proposals`` returns the service's proposal counters. The transport
    is known only once the node starts: ``attach_transport``. Everything is optional, so
    the HTTP layer can serve metrics for a service double."""

    def __init__(
        self,
        service: Service | None = None,
        *,
        leases: Callable[[], int] | None = None,
        proposals: Callable[[], ProposalCounts] | None = None,
        process: bool = True,
    ) -> None:
        self.registry = CollectorRegistry()
        self._service = service
        self._leases = leases
        self._proposals = proposals
        self._transport: TransportView | None = None
        self._http = Histogram(
            "leifdb_http_request_duration_seconds",
            "Time to answer an HTTP request, from its request line to its last byte, by "
            "route template (never the raw path), method and status.",
            ["route", "method", "status"], buckets=HTTP_BUCKETS, registry=self.registry,
        )
        self._http_series: dict[tuple[str, str, int], Histogram] = {}
        self._fsync = Histogram(
            "leifdb_fsync_duration_seconds",
            "Time to make one Ready's entries and hard state durable (the storage "
            "thread's queue, write and fsync).",
            buckets=FSYNC_BUCKETS, registry=self.registry,
        )
        self._batch = Histogram(
            "leifdb_ready_batch_entries",
            "Log entries written per persisted Ready (one fsync each).",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self._rtt = Histogram(
            "leifdb_peer_round_trip_seconds",
            "Time from sending a Raft request to a peer to its reply, by peer and request "
            "type.",
            ["peer", "type"], buckets=RTT_BUCKETS, registry=self.registry,
        )
        self._rtt_series: dict[tuple[str, str], Histogram] = {}
        self._snapshot_seconds = Histogram(
            "leifdb_snapshot_duration_seconds",
            "Time to take a snapshot of the state machine: serialize, write and fsync.",
            buckets=SNAPSHOT_SECONDS_BUCKETS, registry=self.registry,
        )
        self._snapshot_bytes = Histogram(
            "leifdb_snapshot_size_bytes",
            "Size of snapshots taken here (source local) or received from the leader "
            "(source leader).",
            ["source"], buckets=SNAPSHOT_BYTES_BUCKETS, registry=self.registry,
        )
        self.registry.register(_StateCollector(self))
        if process:
            ProcessCollector(registry=self.registry)

    def attach_transport(self, transport: TransportView) -> None:
        """Read peer connections and message counters from ``transport`` from now on."""
        self._transport = transport

    # -- observations (called where things happen) -------------------------------------

    def http_request(self, route: str, method: bytes | str, status: int, seconds: float) -> None:
        """One answered request. ``route`` is its template (``/db/{key}``)."""
        if isinstance(method, bytes):
            method = method.decode("ascii", "replace")
        if method not in _METHODS:
            method = "other"  # a client must not create series at will
        key = (route, method, status)
        series = self._http_series.get(key)
        if series is None:
            series = self._http_series[key] = self._http.labels(route, method, str(status))
        series.observe(seconds)

    def persisted(self, seconds: float, entries: int) -> None:
        """One Ready made durable: ``entries`` log entries in ``seconds``."""
        self._fsync.observe(seconds)
        self._batch.observe(entries)

    def round_trip(self, peer: str, kind: str, seconds: float) -> None:
        """A peer answered a request of type ``kind`` ``seconds`` after it was sent."""
        key = (peer, kind)
        series = self._rtt_series.get(key)
        if series is None:
            series = self._rtt_series[key] = self._rtt.labels(peer, kind)
        series.observe(max(0.0, seconds))

    def snapshot_taken(self, seconds: float, size: int) -> None:
        self._snapshot_seconds.observe(seconds)
        self._snapshot_bytes.labels("local").observe(size)

    def snapshot_received(self, size: int) -> None:
        self._snapshot_bytes.labels("leader").observe(size)

    # -- exposition ---------------------------------------------------------------------

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry rendered for a scrape, and its content type: Prometheus text
        format, or OpenMetrics when ``accept`` (the request's Accept header) asks."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    # -- scrape-time state --------------------------------------------------------------

    def state(self) -> Iterator[Metric]:
        """The gauges and counters read from the status objects now."""
        me, members = "", ()
        if self._service is not None:
            status = self._service.status()
            me, members = status.node, _members(self._service)
            yield from _status_metrics(status)
            if members is not None:
                yield from _member_metrics(members)
        if self._leases is not None:
            yield _gauge("leifdb_leases", "Leases in this node's applied state.",
                         self._leases())
        if self._proposals is not None:
            yield from _proposal_metrics(self._proposals())
        if self._transport is not None:
            peers = {m.id for m in members or ()} - {me}
            yield from _transport_metrics(self._transport, peers)


class _StateCollector:
    """Registered in the node's registry: reads state at scrape time."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics.state())


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _status_metrics(status: NodeStatus) -> Iterator[Metric]:
    info = InfoMetricFamily("leifdb_build", "This node's version, id and cluster.")
    info.add_metric([], {"version": status.version, "node": status.node,
                         "cluster_id": status.cluster_id})
    yield info
    yield _gauge("leifdb_raft_term", "The current Raft term.", status.term)
    role = GaugeMetricFamily("leifdb_raft_role", "1 for this node's current role, else 0.",
                             labels=["role"])
    for name in ROLES:
        role.add_metric([name], 1.0 if status.role == name else 0.0)
    yield role
    yield _gauge("leifdb_is_leader", "1 if this node is the leader.",
                 1.0 if status.role == "leader" else 0.0)
    yield _gauge("leifdb_has_leader", "1 if this node knows a leader.",
                 1.0 if status.leader is not None else 0.0)
    yield _gauge("leifdb_healthy", "1 while /health answers 200.", 1.0 if status.healthy else 0.0)
    yield _gauge("leifdb_raft_commit_index", "Highest log index known to be committed.",
                 status.commit_index)
    yield _gauge("leifdb_raft_applied_index", "Highest log index applied to the state machine.",
                 status.applied_index)
    yield _gauge("leifdb_raft_last_index", "Index of the last entry in this node's log.",
                 status.last_index)
    yield _gauge("leifdb_raft_snapshot_index", "Index the newest snapshot covers.",
                 status.snapshot_index)
    yield _gauge("leifdb_compact_revision",
                 "Oldest revision watches can start from (the watch history's start).",
                 status.compact_revision)
    yield _gauge("leifdb_watchers", "Open watch streams and long polls on this node.",
                 status.watchers)


def _members(service: Service) -> tuple[MemberInfo, ...] | None:
    """The members, or None while the service cannot tell (not attached yet): no member
    gauges then, rather than a failed scrape."""
    try:
        return service.members().members
    except Exception:
        return None


def _member_metrics(members: tuple[MemberInfo, ...]) -> Iterator[Metric]:
    learners = sum(1 for m in members if m.learner)
    yield _gauge("leifdb_cluster_members", "Members in this node's latest configuration.",
                 len(members))
    yield _gauge("leifdb_cluster_voters", "Voting members in this node's latest configuration.",
                 len(members) - learners)
    yield _gauge("leifdb_cluster_learners",
                 "Non-voting members (learners) in this node's latest configuration.", learners)


def _proposal_metrics(counts: ProposalCounts) -> Iterator[Metric]:
    yield _counter("leifdb_proposals_committed_total",
                   "Proposals of this node that committed and applied.", counts.committed)
    yield _counter("leifdb_proposals_failed_total",
                   "Proposals refused before entering the log (not the leader, no leader), "
                   "or failed for certain.", counts.failed)
    yield _counter("leifdb_proposals_outcome_unknown_total",
                   "Proposals whose fate is unknown (leadership lost, timeout, shutdown): "
                   "answered 504.", counts.outcome_unknown)


def _transport_metrics(transport: TransportView, members: set[str]) -> Iterator[Metric]:
    """``members``: the other members, listed even while not connected."""
    stats = transport.stats
    connected = transport.connected_peers()
    peers = GaugeMetricFamily("leifdb_peer_connected",
                              "1 while this node holds a connection to the peer.",
                              labels=["peer"])
    for peer in sorted(members | connected):
        peers.add_metric([peer], 1.0 if peer in connected else 0.0)
    yield peers
    yield _counter("leifdb_raft_messages_sent_total", "Raft messages sent to peers.",
                   stats.frames_sent)
    yield _counter("leifdb_raft_messages_received_total", "Raft messages received from peers.",
                   stats.frames_received)
    dropped = CounterMetricFamily(
        "leifdb_raft_messages_dropped_total",
        "Raft messages not sent (Raft resends), by reason.", labels=["reason"])
    dropped.add_metric(["not_connected"], stats.dropped_not_connected)
    dropped.add_metric(["queue_full"], stats.dropped_queue_full)
    dropped.add_metric(["invalid"], stats.dropped_invalid)
    yield dropped
    yield _counter("leifdb_peer_connections_rejected_total",
                   "Peer connections closed for misbehaving (bad Hello, garbage, size...).",
                   stats.connections_rejected)
    yield _counter("leifdb_peer_request_timeouts_total",
                   "Raft requests a peer did not answer in time.", stats.request_timeouts)
