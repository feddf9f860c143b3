"""Fixtures for the real-cluster API tests: clusters of twistd processes on 127.0.0.1 with
short timeouts, always stopped by pid, whose node logs are printed when a test fails."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

from leifdb.cluster import LocalCluster
from tests.cluster.helpers import child_env, free_ports

# Fault tests want quick failover; tests of a healthy cluster want no spurious election
# on a loaded 2-core machine (a 300 ms timeout can lapse while processes wait for a CPU).
FAST = (300, 50)
STEADY = (1000, 100)
LEADER_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _failed(node: pytest.Item) -> bool:
    return any(
        getattr(getattr(node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


def _dump_logs(cluster: LocalCluster) -> None:
    for i, node in enumerate(cluster.nodes):
        print(f"----- {node.name} ({node.log_path}) -----")
        print(cluster.log_tail(i, 60))


def timing_args(timing: tuple[int, int]) -> list[str]:
    """``(election_ms, heartbeat_ms)`` as ``twistd leifdb`` options."""
    election_ms, heartbeat_ms = timing
    return ["--election-timeout", str(election_ms), "--heartbeat-interval", str(heartbeat_ms)]


def new_cluster(
    base_dir: Path, nodes: int, timing: tuple[int, int] = FAST, extra_args: Sequence[str] = ()
) -> LocalCluster:
    """A cluster of ``nodes`` on free ports, not started."""
    ports = free_ports(2 * nodes)
    return LocalCluster(
        base_dir, ports[:nodes], ports[nodes:], extra_args=[*timing_args(timing), *extra_args],
        env=child_env(),
    )


@contextmanager
def running(cluster: LocalCluster, request) -> Iterator[LocalCluster]:
    """Start ``cluster``, wait for a leader, and stop every node by pid afterwards; the
    node logs are printed when a test of the session failed meanwhile."""
    failed_before = request.session.testsfailed
    try:
        cluster.start()
        cluster.wait_for_leader(LEADER_TIMEOUT)
        cluster.wait_until_up(LEADER_TIMEOUT)  # every node's HTTP workers answer too
        yield cluster
    finally:
        cluster.stop(timeout=STOP_TIMEOUT)
        if request.session.testsfailed > failed_before:
            _dump_logs(cluster)


@pytest.fixture
def make_cluster(request, tmp_path) -> Iterator[Callable[..., LocalCluster]]:
    """``make_cluster(n, start=True, timing=FAST)``: n nodes, started unless
    ``start=False``. Every node is stopped (SIGCONT+SIGTERM, then SIGKILL) by pid at
    teardown."""
    clusters: list[LocalCluster] = []

    def make(nodes: int = 3, start: bool = True, timing: tuple[int, int] = FAST) -> LocalCluster:
        cluster = new_cluster(tmp_path / f"cluster{len(clusters)}", nodes, timing)
        clusters.append(cluster)
        if start:
            cluster.start()
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop(timeout=STOP_TIMEOUT)
        if _failed(request.node):
            _dump_logs(cluster)


@pytest.fixture
def make_proxied_cluster(request, tmp_path):
    """``make_proxied_cluster(n)``: n nodes that reach each other only through the
    link proxies of ``tests.faults.proxy`` (``cluster.net``), started; closed (nodes by
    pid, then the proxies) at teardown."""
    from tests.faults.cluster import ProxiedCluster

    clusters: list[ProxiedCluster] = []

    def make(nodes: int = 3) -> ProxiedCluster:
        cluster = ProxiedCluster(
            tmp_path / f"proxied{len(clusters)}", nodes, extra_args=timing_args(FAST),
            env=child_env(),
        )
        clusters.append(cluster)
        cluster.start_all()
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()
        if _failed(request.node):
            _dump_logs(cluster)


@pytest.fixture(scope="module")
def shared_cluster(request, tmp_path_factory) -> Iterator[LocalCluster]:
    """One healthy 3-node cluster (``STEADY`` timing) for a whole test module; tests
    must not fault it."""
    with running(new_cluster(tmp_path_factory.mktemp("shared"), 3, STEADY), request) as cluster:
        yield cluster
