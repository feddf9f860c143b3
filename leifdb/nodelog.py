"""What a node writes to its log: the start-up line's text and fields, one JSON object per
line for ``--log-format json``, and the observer that filters by ``--log-level``; kept out
of ``leifdb.tap`` so that the composition root stays about composition."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsJSON,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile

from leifdb import __version__
from leifdb.nodeconfig import NodeConfig
from leifdb.raft.messages import Member

__all__ = ["STARTED_FORMAT", "filtered_log_observer", "json_log_line", "started_line_fields"]

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}


def filtered_log_observer(twistd_options: Any, level: str, log_format: str = "text") -> Any:
    """The observer twistd would make by default (stdout with ``-n``, else ``--logfile`` or
    ``twistd.log``), writing ``log_format`` (``text`` or ``json``: ``json_log_line``),
    behind a ``LogLevelFilterPredicate`` at ``level``. None (twistd's own, unfiltered)
    for ``--syslog``, ``--logger`` or when not run by twistd."""
    if twistd_options is None or not hasattr(twistd_options, "get"):
        return None
    if twistd_options.get("syslog") or twistd_options.get("logger"):
        return None
    logfile = twistd_options.get("logfile") or ""
    nodaemon = twistd_options.get("nodaemon")
    if logfile == "-" and not nodaemon:
        return None  # twistd refuses this itself, with its own message
    out: IO[str] | LogFile
    if logfile == "-" or (nodaemon and not logfile):
        out = sys.stdout
    else:
        out = LogFile.fromFullPath(str(Path(logfile or "twistd.log")))
    if log_format == "json":
        inner = FileLogObserver(out, json_log_line)
    else:
        inner = textFileLogObserver(out)
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    return FilteringLogObserver(inner, [predicate])


STARTED_FORMAT = (
    "LeifDB {version} started: node {node} of cluster {cluster_id}, data directory "
    "{data_dir}, HTTP API on {http} (workers={workers}), Raft on {raft}, members {members}"
)


def started_line_fields(config: NodeConfig, members: tuple[Member, ...]) -> dict[str, Any]:
    """The fields of the start-up line (``STARTED_FORMAT``): structured too, so a JSON
    log carries each of them as its own key."""
    bind = config.listen_interface or "*"
    return {
        "version": __version__,
        "node": config.node_id,
        "cluster_id": config.cluster_id,
        "data_dir": str(config.data_dir),
        "http": f"{bind}:{config.http_port}",
        "http_address": config.http_address,
        "workers": config.workers,
        "raft": f"{bind}:{config.raft_listen_port}",
        "members": ", ".join(_describe_member(m, config.node_id) for m in members),
    }


def _describe_member(member: Member, me: str) -> str:
    text = member.raft_address if member.id == member.raft_address else (
        f"{member.id}={member.raft_address}")
    notes = [note for note, applies in (("learner", member.learner),
                                        ("this node", member.id == me)) if applies]
    return f"{text} ({', '.join(notes)})" if notes else text


def json_log_line(event: dict[str, Any]) -> str:
    """One log event as one line of JSON, for log shippers: ``time`` (ISO 8601, UTC),
    ``level``, ``namespace`` and ``message`` (the formatted text), then the event's own
    fields as ``eventAsJSON`` serializes them (what cannot be is ``{"unpersistable":
    true}``), and ``traceback`` for a failure."""
    level = event.get("log_level")
    failure = event.get("log_failure")
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", time.time()), timezone.utc)
        .isoformat(timespec="milliseconds"),
        "level": getattr(level, "name", None),
        "namespace": event.get("log_namespace"),
        "message": formatEvent(event),
    }
    for key, value in json.loads(eventAsJSON(event)).items():
        if not key.startswith("log_"):
            record.setdefault(key, value)
    if isinstance(failure, Failure):
        record["traceback"] = failure.getTraceback()
    return json.dumps(record, ensure_ascii=False) + "\n"
