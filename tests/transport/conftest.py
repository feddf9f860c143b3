"""Fixtures for transport tests: capture the transport's log events."""

from __future__ import annotations

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher


class CapturedLog(list):
    def warnings(self) -> list[str]:
        return [formatEvent(e) for e in self if e["log_level"] >= LogLevel.warn]

    def infos(self) -> list[str]:
        return [formatEvent(e) for e in self if e["log_level"] == LogLevel.info]


@pytest.fixture
def transport_log():
    """Every log event from ``leifdb.transport`` emitted during the test."""
    events = CapturedLog()

    def observe(event):
        if event.get("log_namespace", "").startswith("leifdb.transport"):
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)
