"""``twistd leifdb`` as a user runs it: the plugin is listed, every option is documented, a
bad value or a node that cannot start ends the process with one clear line and a non-zero
status, SIGTERM ends it cleanly with status 0, and the info-level log stays quiet."""

from __future__ import annotations

import signal
import socket
import subprocess

import pytest

from leifdb.cluster import http_request, twistd_command
from leifdb.config import OPTIONS
from leifdb.storage.datadir import DataDir
from tests.cluster.helpers import child_env, eventually, free_ports, twistd

pytestmark = pytest.mark.cluster

FAST = ["--election-timeout", "300", "--heartbeat-interval", "50"]


def node_args(tmp_path, http_port: int, raft_port: int, *extra: str) -> list[str]:
    return [
        "-n", "--pidfile=", "leifdb",
        "--host", "127.0.0.1", "--bind", "127.0.0.1",
        "--http-port", str(http_port), "--raft-port", str(raft_port),
        "--data-dir", str(tmp_path / "data"), *FAST, *extra,
    ]


def no_traceback(*texts: str) -> bool:
    return all("Traceback" not in text for text in texts)


def test_twistd_help_lists_leifdb(tmp_path):
    result = twistd(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line.split(None, 1) for line in result.stdout.splitlines() if line.strip()]
    assert ["leifdb", "Run a LeifDB node (Raft key-value store, HTTP API)"] in lines


def test_leifdb_help_documents_every_option_and_variable(tmp_path):
    result = twistd(["leifdb", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for spec in OPTIONS:
        assert f"--{spec.flag}=" in text
        assert spec.env in text
        if spec.default:
            assert f"default {spec.default}" in text


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--http-port", "abc"], {}, "--http-port: port must be an integer"),
        ([], {"LEIFDB_HTTP_PORT": "-3"}, "LEIFDB_HTTP_PORT: port must be an integer"),
        (["--mode", "multi", "--members", "n1=127.0.0.1:1,n2=127.0.0.1:2", "--name", "n9"], {},
         "--name 'n9' is not among the members (n1, n2)"),
        (["--heartbeat-interval", "100", "--election-timeout", "100"], {}, "heartbeat interval"),
        (["--data-dir", "FILE"], {}, "exists and is not a directory"),
        (["--no-such-option"], {}, "no-such-option"),
    ],
)
def test_bad_value_exits_with_one_line(tmp_path, args, env, message):
    (tmp_path / "FILE").write_text("not a directory")
    result = twistd(["-n", "--pidfile=", "leifdb", "--host", "127.0.0.1", *args], tmp_path, **env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("leifdb: error: ") and message in lines[0]


def critical_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "#critical]" in line]


def run_failing_node(tmp_path, *extra: str, ports: list[int] | None = None) -> str:
    http_port, raft_port = ports or free_ports(2)
    result = twistd(node_args(tmp_path, http_port, raft_port, *extra), tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert no_traceback(output), output
    assert len(critical_lines(output)) == 1, output
    return critical_lines(output)[0]


def test_locked_data_dir_stops_the_node(tmp_path):
    with DataDir.open(tmp_path / "data"):
        line = run_failing_node(tmp_path)
    assert "cannot start node 127.0.0.1:" in line and "is in use by process" in line


def test_corrupt_storage_stops_the_node(tmp_path):
    with DataDir.open(tmp_path / "data") as data_dir:
        path = data_dir.hard_state_path
    path.write_bytes(b"this is not a hard state file")
    line = run_failing_node(tmp_path)
    assert "cannot start node" in line and "hardstate" in line


@pytest.mark.parametrize("which", ["raft", "http"])
def test_port_in_use_stops_the_node(tmp_path, which):
    http_port, raft_port = free_ports(2)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", raft_port if which == "raft" else http_port))
        busy.listen()
        line = run_failing_node(tmp_path, ports=[http_port, raft_port])
    assert "Address already in use" in line
    assert ("cannot serve HTTP" in line) == (which == "http")


class Node:
    """One single-mode twistd node, logging to a file; always killed in ``close``."""

    def __init__(self, tmp_path, *extra: str) -> None:
        self.http_port, self.raft_port = free_ports(2)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.log_path = tmp_path / "node.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*twistd_command(), *node_args(tmp_path, self.http_port, self.raft_port, *extra)],
                cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def health(self):
        try:
            status, body, _ = http_request(self.url, "GET", "/health", timeout=1)
        except OSError:
            return None
        return body if status == 200 else None

    def wait_leader(self) -> None:
        eventually(lambda: (self.health() or {}).get("role") == "leader", 20,
                   f"the node to lead; log:\n{self.log()}")

    def put(self, key: str, value: str) -> int:
        return http_request(self.url, "PUT", f"/db/{key}", {"value": value})[0]

    def terminate(self, timeout: float = 15) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)


@pytest.fixture
def make_node(tmp_path):
    nodes: list[Node] = []

    def make(*extra: str) -> Node:
        nodes.append(Node(tmp_path, *extra))
        return nodes[-1]

    yield make
    for node in nodes:
        node.close()


def test_info_log_is_quiet_in_steady_state_and_sigterm_exits_0(make_node):
    node = make_node()
    node.wait_leader()
    assert node.put("k", "v") == 200
    before = node.log()
    for i in range(20):
        assert node.put(f"k{i}", "v") == 200
        assert http_request(node.url, "GET", f"/db/k{i}")[0] == 200
        # forwarded by the workers to the node's internal port: no chatter either
        assert http_request(node.url, "GET", "/health")[0] == 200
    assert node.log() == before  # no access log and no chatter at info level
    assert "HTTP API on 127.0.0.1:" in before
    assert node.terminate() == 0
    assert no_traceback(node.log()), node.log()


def test_warn_level_logs_nothing_on_a_normal_run(make_node):
    node = make_node("--log-level", "warn")
    node.wait_leader()
    assert node.put("k", "v") == 200
    assert node.terminate() == 0
    assert node.log() == ""


def test_debug_level_logs_each_request(make_node):
    node = make_node("--log-level", "debug")
    node.wait_leader()
    assert node.put("logged-key", "v") == 200
    eventually(lambda: "PUT /db/logged-key 200" in node.log(), 5, "the access log line")
    assert node.terminate() == 0
