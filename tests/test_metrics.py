"""``GET /metrics``: every family with its Prometheus type, parsed as Prometheus would; HTTP
latency by route template (never the raw key); values that move with writes; the
proposal counters, the node's fsync/batch/snapshot observations and the transport's round
trips, each where it is measured; one registry per node."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from leifdb.errors import NotLeaderError, OutcomeUnknown
from leifdb.http import make_app, make_site
from leifdb.metrics import NodeMetrics
from leifdb.node import Node
from leifdb.nodeconfig import NodeConfig
from leifdb.raft.messages import AppendEntries, Entry, EntryType, Member, Role, SoftState
from leifdb.raft.storage import MemoryStorage
from leifdb.service.api import ServiceLimits
from leifdb.service.kvservice import KVService
from leifdb.storage.memory import MemorySnapshotStore
from leifdb.transport import TransportStats
from leifdb.transport.correlation import PendingRequests
from tests.http.client import Client, MemoryAgent, _BytesProducer, raw_http
from tests.service.test_kvservice import FakeNode
from tests.sim.node_sim import SimAsyncStorage

EXPECTED_TYPES = {
    "leifdb_build_info": "gauge",  # an info metric, as the text format writes it
    "leifdb_raft_term": "gauge",
    "leifdb_raft_role": "gauge",
    "leifdb_is_leader": "gauge",
    "leifdb_has_leader": "gauge",
    "leifdb_healthy": "gauge",
    "leifdb_raft_commit_index": "gauge",
    "leifdb_raft_applied_index": "gauge",
    "leifdb_raft_last_index": "gauge",
    "leifdb_raft_snapshot_index": "gauge",
    "leifdb_compact_revision": "gauge",
    "leifdb_watchers": "gauge",
    "leifdb_leases": "gauge",
    "leifdb_cluster_members": "gauge",
    "leifdb_cluster_voters": "gauge",
    "leifdb_cluster_learners": "gauge",
    # The parser names counter families without their ``_total``.
    "leifdb_proposals_committed": "counter",
    "leifdb_proposals_failed": "counter",
    "leifdb_proposals_outcome_unknown": "counter",
    "leifdb_http_request_duration_seconds": "histogram",
    "leifdb_fsync_duration_seconds": "histogram",
    "leifdb_ready_batch_entries": "histogram",
    "leifdb_peer_round_trip_seconds": "histogram",
    "leifdb_snapshot_duration_seconds": "histogram",
    "leifdb_snapshot_size_bytes": "histogram",
    "leifdb_peer_connected": "gauge",
    "leifdb_raft_messages_sent": "counter",
    "leifdb_raft_messages_received": "counter",
    "leifdb_raft_messages_dropped": "counter",
    "leifdb_peer_connections_rejected": "counter",
    "leifdb_peer_request_timeouts": "counter",
}


class FakeTransport:
    """What the collector reads of ``RaftTransport``."""

    def __init__(self) -> None:
        self.stats = TransportStats(frames_sent=7, dropped_queue_full=2)

    def connected_peers(self) -> frozenset[str]:
        return frozenset({"n2"})


class Counts:
    committed, failed, outcome_unknown = 5, 1, 2


class MetricsClient(Client):
    """``tests.http.client.Client`` whose app and site share one ``NodeMetrics``, as
    ``leifdb.tap`` wires them."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics = NodeMetrics(self.service, leases=lambda: len(self.service.store.leases()),
                                   proposals=lambda: Counts(), process=False)
        self.metrics.attach_transport(FakeTransport())
        self.resource = make_app(self.service, version="9.9.9", metrics=self.metrics)
        self.reactor = MemoryReactorClock()
        self.agent = MemoryAgent(make_site(self.resource, reactor=self.reactor,
                                           metrics=self.metrics), self.reactor)
        self.http = HTTPClient(self.agent, data_to_body_producer=_BytesProducer)

    def scrape(self) -> dict[str, Any]:
        reply = self.get("/metrics")
        assert reply.code == 200, reply.body
        assert reply.header("Content-Type").startswith("text/plain; version=0.0.4")
        return families(reply.body.decode())


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(found: dict[str, Any], sample: str, **labels: str) -> float:
    """The value of the one sample named ``sample`` with these labels (0 if absent)."""
    family = found[_family_of(sample, found)]
    matching = [s for s in family.samples if s.name == sample
                and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matching) <= 1, matching
    return matching[0].value if matching else 0.0


def _family_of(sample: str, found: dict[str, Any]) -> str:
    """The family a sample belongs to: its name, or its name less a sample suffix."""
    if sample in found:
        return sample
    for suffix in ("_bucket", "_count", "_sum", "_total"):
        if sample.endswith(suffix) and sample[: -len(suffix)] in found:
            return sample[: -len(suffix)]
    raise KeyError(sample)


def all_samples(found: dict[str, Any]) -> list[Sample]:
    return [s for family in found.values() for s in family.samples]


# -- the exposition ----------------------------------------------------------------------


def test_every_family_is_exposed_with_its_prometheus_type():
    client = MetricsClient()
    assert client.put("/db/k?value=v").code == 200
    client.metrics.persisted(0.002, 3)
    client.metrics.round_trip("n2", "AppendEntries", 0.001)
    client.metrics.snapshot_taken(0.5, 10_000)

    found = client.scrape()

    assert {name: found[name].type for name in EXPECTED_TYPES} == EXPECTED_TYPES
    assert all(name.startswith("leifdb_") for name in found)
    assert value(found, "leifdb_build_info", node="127.0.0.1:16990", version="fake") == 1
    assert value(found, "leifdb_raft_role", role="leader") == 1
    assert sum(value(found, "leifdb_raft_role", role=r)
               for r in ("follower", "candidate", "learner", "starting")) == 0
    assert value(found, "leifdb_is_leader") == 1
    assert value(found, "leifdb_cluster_members") == 3
    assert value(found, "leifdb_cluster_voters") == 3
    assert value(found, "leifdb_cluster_learners") == 0
    assert value(found, "leifdb_proposals_committed_total") == 5
    assert value(found, "leifdb_proposals_outcome_unknown_total") == 2
    assert value(found, "leifdb_peer_connected", peer="n2") == 1
    assert value(found, "leifdb_peer_connected", peer="n3") == 0
    assert value(found, "leifdb_raft_messages_dropped_total", reason="queue_full") == 2
    assert value(found, "leifdb_fsync_duration_seconds_count") == 1
    assert value(found, "leifdb_ready_batch_entries_sum") == 3
    assert value(found, "leifdb_peer_round_trip_seconds_count", peer="n2",
                 type="AppendEntries") == 1
    assert value(found, "leifdb_snapshot_size_bytes_sum", source="local") == 10_000


def test_values_move_after_writes():
    client = MetricsClient()
    before = client.scrape()
    for i in range(3):
        assert client.put(f"/db/k{i}?value=v").code == 200
    assert client.post("/lease", json={"ttl": 10}).code == 200
    after = client.scrape()

    assert value(after, "leifdb_raft_applied_index") == value(before,
                                                               "leifdb_raft_applied_index") + 4
    assert value(after, "leifdb_raft_commit_index") == value(after, "leifdb_raft_applied_index")
    assert value(after, "leifdb_leases") == value(before, "leifdb_leases") + 1
    put = {"route": "/db/{key}", "method": "PUT", "status": "200"}
    assert value(after, "leifdb_http_request_duration_seconds_count", **put) == 3
    assert value(after, "leifdb_http_request_duration_seconds_sum", **put) > 0
    # the first scrape itself is timed too, once it has finished
    assert value(after, "leifdb_http_request_duration_seconds_count", route="/metrics",
                 method="GET", status="200") == 1


def test_http_latency_is_labelled_by_route_template_never_by_the_raw_path():
    client = MetricsClient()
    assert client.put("/db/users/alice?value=secret").code == 200
    assert client.get("/no-such/thing").code == 404
    assert client.post("/db/users/alice").code == 405
    assert client.get("/db/users/alice?bogus=1").code == 400

    found = client.scrape()

    routes = {(s.labels["route"], s.labels["method"], s.labels["status"])
              for s in found["leifdb_http_request_duration_seconds"].samples}
    assert routes == {("/db/{key}", "PUT", "200"), ("unmatched", "GET", "404"),
                      ("unmatched", "POST", "405"), ("/db/{key}", "GET", "400")}
    text = client.get("/metrics").body.decode()
    assert "alice" not in text and "secret" not in text and "no-such" not in text


def test_a_request_refused_before_its_body_is_counted_under_its_route():
    client = MetricsClient()
    site = make_site(client.resource, reactor=MemoryReactorClock(), metrics=client.metrics)
    answer = raw_http(client.resource, b"PUT /db/k HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 999999999\r\n\r\n", site=site)
    assert answer.startswith(b"HTTP/1.1 413 ")
    found = client.scrape()
    assert value(found, "leifdb_http_request_duration_seconds_count", route="/db/{key}",
                 method="PUT", status="413") == 1


def test_a_method_a_client_makes_up_does_not_become_a_label():
    client = MetricsClient()
    assert client.raw(b"BREW", b"/db/k").code == 405
    found = client.scrape()
    methods = {s.labels["method"] for s in found["leifdb_http_request_duration_seconds"].samples}
    assert methods == {"other"}


def test_metrics_answers_openmetrics_when_asked_and_refuses_unknown_parameters():
    client = MetricsClient()
    reply = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert reply.code == 200
    assert reply.header("Content-Type").startswith("application/openmetrics-text")
    assert reply.body.rstrip().endswith(b"# EOF")
    assert client.get("/metrics?debug=1").code == 400
    head = client.request("HEAD", "/metrics")
    assert head.code == 200 and head.body == b""


def test_make_app_alone_serves_the_status_metrics():
    """Without a ``NodeMetrics`` of the caller's, ``/metrics`` still reads the service."""
    client = Client()
    reply = client.get("/metrics")
    assert reply.code == 200
    assert value(families(reply.body.decode()), "leifdb_raft_term") == client.service.status().term


def test_each_node_has_its_own_registry():
    one, two = NodeMetrics(process=False), NodeMetrics(process=False)
    one.persisted(0.01, 4)
    assert value(families(one.exposition()[0].decode()),
                 "leifdb_fsync_duration_seconds_count") == 1
    assert value(families(two.exposition()[0].decode()),
                 "leifdb_fsync_duration_seconds_count") == 0
    assert not [m for m in REGISTRY.collect() if m.name.startswith("leifdb_")]


# -- where the numbers come from ---------------------------------------------------------


def test_proposals_are_counted_as_committed_failed_or_unknown():
    clock = Clock()
    service = KVService(clock, limits=ServiceLimits(), proposal_timeout=5, read_timeout=3)
    node = FakeNode()
    service.attach(node)
    counts = service.proposal_counts

    d = service.put("a", "1")
    service.apply([_entry(node, 1)])
    assert d.called and (counts.committed, counts.failed, counts.outcome_unknown) == (1, 0, 0)

    lost = service.put("b", "2")
    service.role_changed(_soft(Role.FOLLOWER))  # leadership lost before it committed
    assert isinstance(lost.result.value, OutcomeUnknown)
    lost.addErrback(lambda _: None)

    node.leading = False
    refused = service.put("c", "3")
    assert isinstance(refused.result.value, NotLeaderError)
    refused.addErrback(lambda _: None)

    node.leading = True
    late = service.put("d", "4")
    clock.advance(6)  # past the proposal timeout
    late.addErrback(lambda _: None)
    assert (counts.committed, counts.failed, counts.outcome_unknown) == (1, 1, 2)


def test_the_node_reports_each_persist_with_its_batch_and_each_snapshot():
    recorded: dict[str, list[tuple[float, int]]] = {"persisted": [], "taken": []}

    class Recorder:
        def persisted(self, seconds: float, entries: int) -> None:
            recorded["persisted"].append((seconds, entries))

        def snapshot_taken(self, seconds: float, size: int) -> None:
            recorded["taken"].append((seconds, size))

        def snapshot_received(self, size: int) -> None:
            raise AssertionError("a single node receives no snapshot")

    clock, node, service = _single_node(Recorder(), snapshot_entries=5)
    writes = [service.put(f"k{i}", "v") for i in range(3)]  # one reactor turn: one batch
    _run(clock, 0.1)
    assert all(d.called for d in writes)
    for i in range(4):
        service.put(f"more{i}", "v")
        _run(clock, 0.1)

    batches = [entries for _, entries in recorded["persisted"]]
    assert 3 in batches  # the three writes proposed together went to disk together
    assert sum(batches) == node.core.log.last_index()  # every entry, counted once
    assert all(seconds >= 0 for seconds, _ in recorded["persisted"])
    assert len(recorded["taken"]) == 1
    assert recorded["taken"][0][1] == node._snapshot_meta.size > 0


def test_the_node_runs_the_same_without_an_observer():
    clock, node, service = _single_node(None, snapshot_entries=5)
    writes = [service.put(f"k{i}", "v") for i in range(8)]
    _run(clock, 0.2)
    assert all(d.called for d in writes) and service.applied_index == node.core.log.last_index()


def test_a_round_trip_is_timed_from_the_request_to_the_reply_that_answers_it():
    clock = Clock()
    pending = PendingRequests(clock, timeout=5.0, on_timeout=lambda peer: None)
    pending.sent("n2", AppendEntries, 1)
    clock.advance(0.25)
    pending.sent("n2", AppendEntries, 2)
    clock.advance(0.5)
    assert pending.answered("n2", AppendEntries, 2) == pytest.approx(0.5)  # answers 1 too
    assert pending.answered("n2", AppendEntries, 1) is None  # nothing pending any more
    assert pending.count("n2") == 0


# -- helpers -----------------------------------------------------------------------------


def _entry(node: FakeNode, index: int) -> Entry:
    """The entry of ``node``'s proposal ``index``, as Raft would commit it."""
    return Entry(node.term, index, EntryType.NORMAL, node.proposed[index - 1])


def _soft(role: Role) -> SoftState:
    return SoftState(role=role, term=2, leader_id=None)


class NoPeersTransport:
    """A single node sends nothing."""

    def attach(self, on_message: Any, on_unreachable: Any) -> None: ...

    def send(self, msg: Any) -> None:
        raise AssertionError(f"a single node sent {msg!r}")

    def update_peers(self, peers: Any) -> None: ...

    def stop(self) -> Deferred:
        return succeed(None)


def _single_node(observer: Any, *, snapshot_entries: int) -> tuple[Clock, Node, KVService]:
    clock = Clock()
    config = NodeConfig(
        node_id="n1", members=(Member("n1", "127.0.0.1:1", "127.0.0.1:2"),),
        http_address="127.0.0.1:2", http_port=2, raft_listen_port=1, data_dir=None,
        snapshot_entries=snapshot_entries,
    )
    service = KVService(clock)
    storage = SimAsyncStorage(MemoryStorage(), clock, lambda: 0.001)
    node = Node(config, reactor=clock, storage=storage, snapshots=MemorySnapshotStore(),
                transport=NoPeersTransport(), application=service, observer=observer)
    service.attach(node)
    node.start()
    _run(clock, 3.0)
    assert node.raft_status().role is Role.LEADER
    return clock, node, service


def _run(clock: Clock, seconds: float, step: float = 0.001) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)
