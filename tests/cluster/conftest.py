"""Fixtures for the process tests: clusters that are always stopped, and whose node logs
are printed when a test fails (so a node bug shows with its evidence)."""

from __future__ import annotations

import pytest

from leifdb.cluster import LocalCluster
from tests.cluster.helpers import child_env, free_ports

ELECTION_MS = 300
HEARTBEAT_MS = 50


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def make_cluster(request, tmp_path):
    """``make_cluster(n)``: n nodes on free ports with a short election timeout, started.
    Every cluster is stopped (SIGTERM, then SIGKILL) by pid at teardown."""
    clusters: list[LocalCluster] = []

    def make(nodes: int, election_ms: int = ELECTION_MS, heartbeat_ms: int = HEARTBEAT_MS):
        """Started, and every node answering /health (a leader may not be elected yet)."""
        ports = free_ports(2 * nodes)
        cluster = LocalCluster(
            tmp_path / f"cluster{len(clusters)}",
            ports[:nodes],
            ports[nodes:],
            extra_args=["--election-timeout", str(election_ms),
                        "--heartbeat-interval", str(heartbeat_ms)],
            env=child_env(),
        )
        clusters.append(cluster)
        cluster.start()
        cluster.wait_until_up(30)
        return cluster

    yield make
    failed = getattr(request.node, "report_call", None)
    for cluster in clusters:
        cluster.stop(timeout=10)
        if failed is not None and failed.failed:
            for i, node in enumerate(cluster.nodes):
                print(f"----- {node.name} ({node.log_path}) -----")
                print(cluster.log_tail(i, 60))
