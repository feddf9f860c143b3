"""``WorkerPool`` in this process with real child processes that cannot serve: a crash
loop backs off and, before any worker served, becomes one fatal line."""

from __future__ import annotations

import shutil

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.logger import capturedLogs, formatEvent
from twisted.web.server import Site
from twisted.web.resource import Resource

from leifdb.service.api import ServiceLimits
from leifdb.worker.calls import WorkerSettings
from leifdb.worker.pool import MAX_START_FAILURES, WorkerPool
from tests.cluster.helpers import free_ports
from tests.worker.conftest import _until


class StartedNode:
    def when_started(self):
        return succeed(None)

    def when_drained(self):
        return succeed(None)


class NoService:
    revision = 0
    limits = ServiceLimits()


@pytest_twisted.ensureDeferred
async def test_workers_that_cannot_start_back_off_then_are_fatal():
    fatal: list[str] = []
    announced: list[bool] = []
    pool = WorkerPool(StartedNode(), NoService(), Site(Resource()), workers=1,
                      port=free_ports(1)[0], interface="127.0.0.1", reactor=reactor,
                      on_fatal=fatal.append, settings=WorkerSettings(),
                      announce=lambda: announced.append(True), python=shutil.which("false"))
    with capturedLogs() as events:
        pool.startService()
        await _until(lambda: fatal, timeout=10)
    await pool.stopService()
    warnings = [formatEvent(e) for e in events if e.get("log_namespace") == "leifdb.worker.pool"]
    assert announced == []  # no worker ever listened: no start line, only the fatal one
    assert len(warnings) == MAX_START_FAILURES - 1
    assert [w.rpartition(" in ")[2] for w in warnings] == ["0.1 s", "0.2 s", "0.4 s", "0.8 s"]
    assert all("exited with status 1; restarting it" in w for w in warnings)
    assert fatal == [fatal[0]] and fatal[0].startswith("cannot start HTTP workers: worker 0 (pid ")
    assert fatal[0].endswith("exited with status 1")
    assert pool.pids == []
