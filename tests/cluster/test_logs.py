"""Operable logs: one start-up line saying what runs where, one line at shutdown,
``--log-format json`` as one JSON object per line, an access log that shows latency and
status but never a value, and a lost peer reported as lost (Twisted calls a FIN "closed
cleanly", which a crashed peer sends too). In one process where it can be, then with real
nodes."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from treq.client import HTTPClient
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, capturedLogs, formatEvent
from twisted.python.failure import Failure

from leifdb import __version__
from leifdb.cluster import http_request, twistd_command
from leifdb.http import make_app, make_site
from leifdb.http.site import redacted_target
from leifdb.nodeconfig import NodeConfig
from leifdb.raft.messages import Member
from leifdb.nodelog import (
    STARTED_FORMAT,
    filtered_log_observer,
    json_log_line,
    started_line_fields,
)
from leifdb.tap import NodeService
from leifdb.transport.connector import Reconnector, describe_loss
from tests.cluster.helpers import child_env, eventually, free_ports
from tests.http.client import Client, MemoryAgent, _BytesProducer

FAST = ["--election-timeout", "300", "--heartbeat-interval", "50"]


# -- the access log ----------------------------------------------------------------------


class AccessLogged(Client):
    """The API over ``make_site(..., access_log=True)``, as ``--log-level debug`` runs it."""

    def __init__(self, access_log: bool = True) -> None:
        super().__init__()
        self.reactor = MemoryReactorClock()
        site = make_site(make_app(self.service, version="t"), reactor=self.reactor,
                         access_log=access_log)
        self.agent = MemoryAgent(site, self.reactor)
        self.http = HTTPClient(self.agent, data_to_body_producer=_BytesProducer)


def access_lines(events: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_namespace") == "leifdb.http.access"]


def test_the_access_log_keeps_parameter_names_but_never_values():
    client = AccessLogged()
    with capturedLogs() as events:
        assert client.put("/db/k?value=topsecret&ttl=30s").code == 200
        assert client.put("/db/j", json={"value": "bodysecret"}).code == 200
        assert client.get("/db/k?consistency=stale").code == 200

    lines = access_lines(events)
    assert len(lines) == 3, lines
    assert "PUT /db/k?value&ttl 200 " in lines[0]
    assert "PUT /db/j 200 " in lines[1]
    assert "GET /db/k?consistency 200 " in lines[2]
    assert all(line.endswith(" ms") for line in lines)
    everything = repr(events)
    assert "topsecret" not in everything and "bodysecret" not in everything
    assert "stale" not in everything


def test_the_access_log_has_the_status_and_the_latency_in_milliseconds():
    client = AccessLogged()
    with capturedLogs() as events:
        assert client.get("/db/missing").code == 404
    (event,) = [e for e in events if e.get("log_namespace") == "leifdb.http.access"]
    assert event["code"] == 404 and event["method"] == "GET" and event["target"] == "/db/missing"
    assert 0 <= event["ms"] < 10_000
    assert formatEvent(event).endswith(f"{event['ms']:.1f} ms")


def test_no_access_log_unless_asked():
    client = AccessLogged(access_log=False)
    with capturedLogs() as events:
        assert client.put("/db/k?value=v").code == 200
    assert access_lines(events) == []


@pytest.mark.parametrize("target, shown", [
    (b"/db/k", "/db/k"),
    (b"/db/k?", "/db/k"),
    (b"/db/k?value=a%20b&prev=12", "/db/k?value&prev"),
    (b"/db/k?value", "/db/k?value"),
    (b"/db/a%2Fb?value==x&&ttl=1", "/db/a%2Fb?value&ttl"),
    (b"http://host/db/k?value=v", "/db/k?value"),
])
def test_the_target_keeps_the_path_and_the_parameter_names(target, shown):
    assert redacted_target(target) == shown


# -- --log-format json -------------------------------------------------------------------


def test_json_format_writes_one_parseable_object_per_line(capsys):
    observer = filtered_log_observer({"nodaemon": True, "logfile": None}, "info", "json")
    log = Logger(namespace="leifdb.test", observer=observer)
    log.info("node {node} says {what!r}\non two lines", node="n1", what={"a": 1})
    log.debug("below the level")
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("it failed for {node}", node="n1")

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "info" and first["namespace"] == "leifdb.test"
    assert first["message"] == "node n1 says {'a': 1}\non two lines"
    assert first["node"] == "n1" and first["what"] == {"a": 1}
    assert first["time"].endswith("+00:00")
    assert second["level"] == "critical" and "ValueError: boom" in second["traceback"]


def test_a_field_json_cannot_hold_does_not_break_the_line():
    event = {"log_format": "{thing}", "thing": object(), "log_level": None, "log_time": 0.0}
    record = json.loads(json_log_line(event))
    assert record["message"].startswith("<object object")
    assert record["thing"] == {"unpersistable": True}


# -- the start-up and shutdown lines -----------------------------------------------------


def test_the_start_line_says_version_node_cluster_data_directory_ports_and_members():
    config = NodeConfig(
        node_id="n1",
        members=(Member("n1", "10.0.0.1:7001", "10.0.0.1:8001"),
                 Member("n2", "10.0.0.2:7001", "10.0.0.2:8001"),
                 Member("10.0.0.3:7001", "10.0.0.3:7001", "", learner=True)),
        http_address="10.0.0.1:8001", http_port=8001, raft_listen_port=7001,
        data_dir=Path("/var/lib/leifdb/n1"), listen_interface="10.0.0.1", cluster_id="prod",
        workers=2,
    )
    fields = started_line_fields(config, config.members)
    line = STARTED_FORMAT.format(**fields)
    assert line == (
        f"LeifDB {__version__} started: node n1 of cluster prod, data directory "
        "/var/lib/leifdb/n1, HTTP API on 10.0.0.1:8001 (workers=2), Raft on 10.0.0.1:7001, members "
        "n1=10.0.0.1:7001 (this node), n2=10.0.0.2:7001, 10.0.0.3:7001 (learner)"
    )
    assert "\n" not in line


class StoppingNode:
    config = type("Config", (), {"node_id": "n1"})()

    def start(self):
        return succeed(None)

    def transfer_leadership_before_stop(self):
        return succeed(None)

    def stop(self):
        return succeed(None)


def test_a_clean_shutdown_logs_one_line():
    node_service = NodeService(StoppingNode(), reactor=Clock(), on_fatal=lambda m: None)
    node_service.startService()
    with capturedLogs() as events:
        node_service.stopService()
    lines = [formatEvent(e) for e in events if e.get("log_namespace") == "leifdb.tap"]
    assert len(lines) == 1 and lines[0].startswith("LeifDB node n1 stopped cleanly in ")


# -- a lost peer -------------------------------------------------------------------------


class Connection:
    closed_here = False
    rejected_for = None
    closing = False

    def close(self, abort=False):
        self.closing = True


def loss_logged(reason: Failure, connection: Connection) -> str:
    """What the redialer logs when an established connection to a peer ends."""
    endpoint = type("Endpoint", (), {"connect": lambda self, f: succeed(connection)})()
    dialer = Reconnector(Clock(), "n2", endpoint, object(), initial_delay=0.1, max_delay=1.0,
                         describe=lambda: "at 10.0.0.2:7001")
    dialer.start()
    with capturedLogs() as events:
        dialer.connection_lost(reason)
    dialer.stop()
    (line,) = [formatEvent(e) for e in events]
    return line


def test_a_peer_that_went_away_is_a_lost_connection_not_a_clean_close():
    line = loss_logged(Failure(ConnectionDone()), Connection())
    assert "cleanly" not in line
    assert line == ("peer n2 at 10.0.0.2:7001 unreachable (connection lost: the peer closed it "
                    "(stopped, restarted or crashed)); redialing with backoff")


def test_a_reset_connection_is_lost_and_one_this_node_closed_says_why():
    assert "connection lost: reset or broken" in loss_logged(Failure(ConnectionLost()),
                                                             Connection())
    rejected = Connection()
    rejected.closed_here, rejected.rejected_for = True, "a second Hello"
    assert describe_loss(Failure(ConnectionDone()), rejected) == (
        "connection closed by this node: a second Hello")


# -- real nodes ----------------------------------------------------------------------------


class JsonNode:
    """One single-mode twistd node logging JSON at debug level to a file; always killed
    in ``close``."""

    def __init__(self, tmp_path: Path) -> None:
        self.http_port, self.raft_port = free_ports(2)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.data_dir = tmp_path / "data"
        self.log_path = tmp_path / "node.log"
        args = ["-n", "--pidfile=", "leifdb", "--host", "127.0.0.1", "--bind", "127.0.0.1",
                "--http-port", str(self.http_port), "--raft-port", str(self.raft_port),
                "--data-dir", str(self.data_dir), "--log-level", "debug", *FAST]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*twistd_command(), *args], cwd=tmp_path,
                env=child_env(LEIFDB_LOG_FORMAT="json"), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)


@pytest.fixture
def json_node(tmp_path):
    node = JsonNode(tmp_path)
    yield node
    node.close()


@pytest.mark.cluster
def test_a_real_node_logs_json_lines_a_start_line_a_clean_access_log_and_a_stop_line(
        json_node):
    node = json_node

    def started() -> dict[str, Any] | None:
        return next((r for r in node.records() if r["message"].startswith("LeifDB ")), None)

    start = eventually(started, 20, "the start line")
    assert start["level"] == "info" and start["namespace"] == "leifdb.tap"
    assert start["version"] == __version__ and start["cluster_id"] == "leifdb"
    assert start["node"] == f"127.0.0.1:{node.raft_port}"
    assert start["data_dir"] == str(node.data_dir)
    assert start["http"] == f"127.0.0.1:{node.http_port}"
    assert start["raft"] == f"127.0.0.1:{node.raft_port}"
    assert start["members"] == f"127.0.0.1:{node.raft_port} (this node)"
    eventually(lambda: http_request(node.url, "GET", "/health", timeout=1)[0] == 200, 20,
               "a leader")

    assert http_request(node.url, "PUT", "/db/k?value=topsecret")[0] == 200
    access = eventually(lambda: [r for r in node.records()
                                 if r["namespace"] == "leifdb.http.access"
                                 and r["method"] == "PUT"], 5, "the access log line")
    assert access[0]["target"] == "/db/k?value" and access[0]["code"] == 200
    assert access[0]["ms"] > 0
    assert "topsecret" not in node.log_path.read_text()

    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(15) == 0
    stops = [r for r in node.records() if "stopped cleanly" in r["message"]]
    assert len(stops) == 1 and stops[0]["node"] == start["node"]


@pytest.mark.cluster
def test_a_killed_peer_is_reported_lost_and_round_trips_were_measured(make_cluster):
    cluster = make_cluster(2)
    leader = cluster.wait_for_leader()
    follower = 1 - leader
    name = cluster.nodes[follower].name
    eventually(lambda: f"connected to peer {name}" in cluster.log_tail(leader, 200), 10,
               "a stable connection to the follower")
    assert cluster.put(leader, "k", "v")[0] == 200

    with urllib.request.urlopen(cluster.url(leader) + "/metrics", timeout=2) as reply:
        text = reply.read().decode()
    assert f'leifdb_peer_round_trip_seconds_count{{peer="{name}",type="AppendEntries"}}' in text
    assert f'leifdb_peer_connected{{peer="{name}"}} 1.0' in text

    cluster.kill(follower)
    # SIGKILL closes the follower's sockets with a FIN, or with a RST when a heartbeat was
    # still unread in its receive buffer (a race): either wording, never "cleanly".
    lost = f"peer {name} at 127.0.0.1:{cluster.nodes[follower].raft_port} unreachable " \
           "(connection lost: "
    reasons = ("the peer closed it", "reset or broken")
    eventually(lambda: any(lost + reason in cluster.log_tail(leader, 200) for reason in reasons),
               10, "the lost-peer line")
    assert "cleanly" not in cluster.log_tail(leader, 200)
