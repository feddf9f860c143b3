"""Fixtures for the browser tests: one real 3-node cluster and one headless Chromium per
module, a fresh page per test (loaded from a follower, so writes go through the 307 to
the leader and the cluster panel calls the other nodes across origins), and a client to
make the changes "another user" makes.

Skips, saying what to install, when Playwright or a Chromium is missing; never downloads
a browser."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from leifdb.client import Client
from leifdb.cluster import LocalCluster
from tests.ui.harness import (
    NO_BROWSER, NO_PLAYWRIGHT, find_chromium, launch, running_cluster, sync_api,
)

EXPECT_TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def chromium() -> str:
    if sync_api is None:
        pytest.skip(NO_PLAYWRIGHT)
    found = find_chromium()
    if found is None:
        pytest.skip(NO_BROWSER)
    return found


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    sync_api.expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        launched = launch(playwright, chromium)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("ui-cluster")) as started:
        yield started


@pytest.fixture
def db(cluster: LocalCluster) -> Client:
    """The other client: blocking, knowing every node."""
    return Client([cluster.url(i) for i in range(len(cluster))], timeout=5)


@pytest.fixture
def ui_url(cluster: LocalCluster) -> str:
    """The UI on a follower."""
    leader = cluster.wait_for_leader(10)
    follower = next(i for i in range(len(cluster)) if i != leader)
    return cluster.url(follower) + "/ui/"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; the test fails if the page's script threw."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"the page's script failed: {errors}"
