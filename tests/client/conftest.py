"""One 3-node cluster (real twistd processes) for the client's process tests."""

from __future__ import annotations

from typing import Iterator

import pytest

from leifdb.cluster import LocalCluster
from tests.api.conftest import LEADER_TIMEOUT, STEADY, STOP_TIMEOUT, _dump_logs, timing_args
from tests.cluster.helpers import child_env, free_ports

HISTORY_EVENTS = 300  # small, so a test can push a watch's start out of the history


@pytest.fixture(scope="session")
def cluster(request, tmp_path_factory) -> Iterator[LocalCluster]:
    """Shared by every process test of tests/client; a test that stops a node restarts it."""
    ports = free_ports(6)
    cluster = LocalCluster(
        tmp_path_factory.mktemp("client"), ports[:3], ports[3:],
        extra_args=[*timing_args(STEADY), "--watch-history-events", str(HISTORY_EVENTS)],
        env=child_env())
    failed_before = request.session.testsfailed
    try:
        cluster.start()
        cluster.wait_for_leader(LEADER_TIMEOUT)
        yield cluster
    finally:
        cluster.stop(timeout=STOP_TIMEOUT)
        if request.session.testsfailed > failed_before:
            _dump_logs(cluster)


@pytest.fixture
def endpoints(cluster: LocalCluster) -> list[str]:
    return [cluster.url(i) for i in range(len(cluster))]
