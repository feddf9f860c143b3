"""A worker's log events reach the node's log: the worker writes each event (LeifDB's at
or above the node's level, Twisted's own from warn up: its start and stop chatter would
repeat for every worker) as one JSON line on its stdout, a pipe to the node; the node
re-emits it to its own observers with its level and namespace, prefixed ``worker N:``. So
a worker's lines land where the node's do, in the node's format (text or JSON), whatever
twistd was told (a file, stdout, syslog)."""

from __future__ import annotations

from typing import IO, Any, Callable

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsJSON,
    eventFromJSON,
    formatEvent,
)

__all__ = ["LEVELS", "LogRelay", "worker_log_observer"]

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}
#: A line longer than this is cut (a worker never writes one; garbage might).
MAX_LINE_BYTES = 1 << 20


def worker_log_observer(out: IO[str], level: str) -> FilteringLogObserver:
    """The worker side: LeifDB's events at ``level`` or above, and any other at warn or
    above, as JSON lines on ``out``."""
    inner = FileLogObserver(out, lambda event: eventAsJSON(event) + "\n")
    predicate = LogLevelFilterPredicate(defaultLogLevel=max(LEVELS[level], LogLevel.warn))
    predicate.setLogLevelForNamespace("leifdb", LEVELS[level])
    return FilteringLogObserver(inner, [predicate])


class LogRelay:
    """The node side, one per worker process: bytes of its stdout in, events out to
    ``publish`` (a line that is not an event becomes a warning quoting it)."""

    def __init__(self, index: int, publish: Callable[[dict[str, Any]], None]) -> None:
        self.index = index
        self._publish = publish
        self._partial = b""

    def feed(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE_BYTES:
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            if line.strip():
                self._publish(self._event(line))

    def _event(self, line: bytes) -> dict[str, Any]:
        text = line.decode("utf-8", "replace")
        try:
            event = eventFromJSON(text)
            if not isinstance(event, dict):
                raise ValueError("not an event")
        except ValueError:
            event = {
                "log_level": LogLevel.warn,
                "log_namespace": "leifdb.worker",
                "log_format": "{leifdb_worker_output}",
                "leifdb_worker_output": text,
            }
        # The event's fields were flattened for its own format; format it now and say
        # which worker it came from around that text.
        event["leifdb_worker_text"] = formatEvent(event)
        event.pop("log_flattened", None)
        event["leifdb_worker"] = self.index
        event["log_format"] = "worker {leifdb_worker}: {leifdb_worker_text}"
        return event
