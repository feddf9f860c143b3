"""Shared by the process tests: free ports, running twistd, bounded polling."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, TypeVar

from leifdb.cluster import free_ports, twistd_command

__all__ = ["ROOT", "child_env", "eventually", "free_ports", "twistd"]

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def child_env(**extra: str) -> dict[str, str]:
    """The environment without LEIFDB_* settings, running this checkout's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEIFDB_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def twistd(
    args: list[str], cwd: Path, timeout: float = 30, **env: str
) -> subprocess.CompletedProcess:
    """Run ``twistd <args>`` to completion (bounded); text stdout and stderr."""
    return subprocess.run(
        [*twistd_command(), *args],
        cwd=cwd,
        env=child_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def eventually(
    check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``check`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
