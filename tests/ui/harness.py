"""What the browser test and the screenshot script share: finding an installed Chromium
(never downloading one), launching it headless, and a real cluster on free ports.

Playwright drives the system's Chromium (Debian: ``apt-get install chromium``) through
``executable_path``; ``UI_TEST_CHROMIUM`` names another Chromium or Chrome binary.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from leifdb.cluster import LocalCluster, free_ports
from tests.cluster.helpers import child_env

try:
    from playwright import sync_api
except ImportError:  # a dev dependency: `make test` installs it
    sync_api = None

__all__ = ["BROWSER_ENV", "NO_BROWSER", "NO_PLAYWRIGHT", "find_chromium", "launch",
           "running_cluster", "sync_api"]

NO_PLAYWRIGHT = "Playwright is not installed: pip install '.[dev]' (make test does it)"

BROWSER_ENV = "UI_TEST_CHROMIUM"
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
NO_BROWSER = (
    "no Chromium found for the browser test: install it with `apt-get install chromium` "
    f"(or set {BROWSER_ENV} to a Chromium or Chrome binary); browsers are never downloaded"
)

# A leader is elected within about two seconds; Chromium sharing the CPU does not
# make the nodes time out.
ELECTION_MS = 1000
HEARTBEAT_MS = 100


def find_chromium() -> str | None:
    """The Chromium to drive: ``$UI_TEST_CHROMIUM``, else the first one on ``PATH``."""
    configured = os.environ.get(BROWSER_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def launch(playwright: Any, executable: str) -> Any:
    """A headless Chromium. ``--no-sandbox``: tests often run as root or in a container,
    where Chromium's sandbox cannot start."""
    return playwright.chromium.launch(
        executable_path=executable, headless=True, args=["--no-sandbox"]
    )


@contextmanager
def running_cluster(base_dir: Path, nodes: int = 3) -> Iterator[LocalCluster]:
    """``nodes`` nodes on free 127.0.0.1 ports, started and with a leader; stopped (by
    pid) on leaving, whatever happened."""
    ports = free_ports(2 * nodes)
    cluster = LocalCluster(
        base_dir,
        ports[:nodes],
        ports[nodes:],
        extra_args=["--election-timeout", str(ELECTION_MS),
                    "--heartbeat-interval", str(HEARTBEAT_MS)],
        env=child_env(),
    )
    try:
        cluster.start()
        cluster.wait_until_up(30)
        cluster.wait_for_leader(30)
        yield cluster
    finally:
        cluster.stop(timeout=10)
