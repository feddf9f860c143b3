"""One 3-node cluster (real twistd processes) for the client's process tests."""

from __future__ import annotations

from typing import Iterator

import pytest

from leifdb.cluster import LocalCluster
from tests.api.conftest import STEADY, new_cluster, running

HISTORY_EVENTS = 300  # small, so a test can push a watch's start out of the history


@pytest.fixture(scope="session")
def cluster(request, tmp_path_factory) -> Iterator[LocalCluster]:
    """Shared by every process test of tests/client; a test that stops a node restarts it."""
    fresh = new_cluster(tmp_path_factory.mktemp("client"), 3, STEADY,
                        ["--watch-history-events", str(HISTORY_EVENTS)])
    with running(fresh, request) as cluster:
        yield cluster


@pytest.fixture
def endpoints(cluster: LocalCluster) -> list[str]:
    return [cluster.url(i) for i in range(len(cluster))]
