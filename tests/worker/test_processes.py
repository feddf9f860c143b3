"""``--workers`` with real processes: a 3-node cluster whose nodes serve HTTP from two
worker processes each, through the whole API (forwarded routes included); a killed
worker is restarted without touching its node; a stopped or killed node leaves no
worker behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from leifdb.cluster import LocalCluster, http_request
from tests.cluster.helpers import child_env, eventually, free_ports

pytestmark = pytest.mark.cluster

WORKERS = 2


def worker_pids(node_pid: int) -> set[int]:
    """Pids of the ``leifdb.worker`` processes whose parent is ``node_pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == node_pid and b"leifdb.worker" in cmdline:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.fixture
def cluster(tmp_path, request):
    ports = free_ports(6)
    made = LocalCluster(
        tmp_path / "cluster", ports[:3], ports[3:],
        extra_args=["--election-timeout", "300", "--heartbeat-interval", "50",
                    "--workers", str(WORKERS)],
        env=child_env(),
    )
    made.start()
    try:
        made.wait_until_up(30)
        yield made
    finally:
        made.stop(timeout=10)
        report = getattr(request.node, "report_call", None)
        if report is None or report.failed:
            for i, node in enumerate(made.nodes):
                print(f"----- {node.name} -----\n{made.log_tail(i, 40)}")


def _sse_events(url_port: int, path: str, count: int, box: list, ready: threading.Event) -> None:
    """Read ``count`` data events of an SSE stream into ``box``."""
    with socket.create_connection(("127.0.0.1", url_port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n"
                     .encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        box.append(data.split(b"\r\n", 1)[0])
        ready.set()
        while data.count(b"data: {\"type\"") < count:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        box.append(data)


def test_a_cluster_of_nodes_with_workers_serves_the_whole_api(cluster):
    leader = cluster.wait_for_leader()
    follower = next(i for i in range(3) if i != leader)
    url = cluster.url(leader)
    for i in range(3):
        assert len(worker_pids(cluster.pid(i))) == WORKERS

    # writes, linearizable reads, a redirect from a follower
    status, body, _ = http_request(url, "PUT", "/db/k", {"value": "v1"})
    assert status == 200 and body["status"] == "Ok"
    status, body, headers = http_request(url, "GET", "/db/k")
    assert status == 200 and body["value"] == "v1"
    assert int(headers["x-leifdb-revision"]) >= body["revision"]
    status, body, headers = http_request(cluster.url(follower), "PUT", "/db/k", {"value": "x"})
    assert status == 307 and headers["location"] == f"{url}/db/k"
    assert body["applied"] is False

    # forwarded: /health, /cluster/members, /metrics
    status, health, _ = http_request(url, "GET", "/health")
    assert status == 200 and health["role"] == "leader"
    status, members, _ = http_request(url, "GET", "/cluster/members")
    assert status == 200 and len(members["members"]) == 3

    # a long poll woken by a write
    revision = int(http_request(url, "GET", "/db/k")[2]["x-leifdb-revision"])
    polled: list = []
    poller = threading.Thread(target=lambda: polled.append(http_request(
        url, "GET", f"/db/k?wait_revision={revision + 1}&timeout=20", timeout=25)))
    poller.start()
    time.sleep(0.3)
    assert polled == []
    assert http_request(url, "PUT", "/db/k", {"value": "v2"})[0] == 200
    poller.join(10)
    assert polled and polled[0][0] == 200 and polled[0][1]["value"] == "v2"

    # a watch over SSE (forwarded to the node, streamed back)
    box: list = []
    ready = threading.Event()
    watcher = threading.Thread(target=_sse_events, args=(
        cluster.nodes[follower].http_port, "/watch/w/?prefix=true", 2, box, ready))
    watcher.start()
    assert ready.wait(10) and box[0] == b"HTTP/1.1 200 OK"
    for n in range(2):
        assert http_request(url, "PUT", f"/db/w/{n}", {"value": str(n)})[0] == 200
    watcher.join(10)
    stream = box[-1].decode()
    assert '"key":"w/0"' in stream and '"key":"w/1"' in stream
    # the client went away: the proxy closed its stream to the node, which dropped the watch
    eventually(lambda: "\nleifdb_watchers 0.0" in _raw(cluster.url(follower), "/metrics"), 5,
               "the watch to end on the node")

    # a lease and a lock
    status, lease, _ = http_request(url, "POST", "/lease", {"ttl": 10})
    assert status == 200
    status, held, _ = http_request(url, "POST", "/lock/job?timeout=5s", {"lease": lease["id"]})
    assert status == 200 and held["lease"] == lease["id"]
    status, holder, _ = http_request(url, "GET", "/lock/job")
    assert status == 200 and holder["token"] == held["token"]
    # a lock wait whose client goes away is cancelled on the node: its key is removed
    status, other, _ = http_request(url, "POST", "/lease", {"ttl": 10})
    body = json.dumps({"lease": other["id"]}).encode()
    with socket.create_connection(("127.0.0.1", cluster.nodes[leader].http_port)) as sock:
        sock.sendall(b"POST /lock/job?timeout=60s HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        eventually(lambda: _lock_keys(url) == 2, 5, "the second contender's key")
    eventually(lambda: _lock_keys(url) == 1, 5, "the abandoned contender's key to go")

    # the workers' request timings reach the node's /metrics (sent at least every second)
    eventually(lambda: 'route="/db/{key}"' in _raw(url, "/metrics"), 5, "relayed timings")

    # SIGKILL a worker of the leader: it is restarted; the node is untouched
    node_pid = cluster.pid(leader)
    term = health["term"]
    victim = sorted(worker_pids(node_pid))[0]
    os.kill(victim, signal.SIGKILL)
    eventually(lambda: len(worker_pids(node_pid)) == WORKERS and victim not in worker_pids(
        node_pid), 10, "a new worker")
    for n in range(20):
        assert http_request(url, "PUT", f"/db/after/{n}", {"value": "x"})[0] == 200
    status, health, _ = http_request(url, "GET", "/health")
    assert health["role"] == "leader" and health["term"] == term
    assert cluster.pid(leader) == node_pid
    log = cluster.log_tail(leader, 200)
    assert sum("exited" in line or "died of signal" in line for line in log.splitlines()
               if "worker" in line) == 1
    assert "died of signal 9; restarting it in 0.1 s" in log

    # SIGTERM every node: the workers drain and exit, the nodes exit 0, nothing is left
    pids = {i: (cluster.pid(i), worker_pids(cluster.pid(i))) for i in range(3)}
    for i in range(3):
        assert cluster.terminate(i, timeout=15) == 0
    for node_pid, workers in pids.values():
        assert not alive(node_pid) and not any(alive(pid) for pid in workers)
    for i in range(3):
        log = cluster.nodes[i].log_path.read_text()
        for bad in ("Traceback", "Unhandled", "#error]", "#critical]"):
            assert bad not in log, log


def _lock_keys(url: str) -> int:
    status, page, _ = http_request(url, "GET", "/db?prefix=_lock/job/")
    assert status == 200
    return len(page["items"])


def _raw(url: str, path: str) -> str:
    host, port = url.rpartition("/")[2].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: t\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode()


def test_a_killed_node_leaves_no_worker_behind(tmp_path):
    http_port, raft_port = free_ports(2)
    made = LocalCluster(tmp_path / "one", [http_port], [raft_port],
                        extra_args=["--election-timeout", "300", "--heartbeat-interval", "50",
                                    "--workers", str(WORKERS)],
                        env=child_env())
    made.start()
    try:
        made.wait_for_leader(30)
        node_pid = made.pid(0)
        workers = worker_pids(node_pid)
        assert len(workers) == WORKERS
        made.kill(0)
        eventually(lambda: not any(alive(pid) for pid in workers), 5, "the workers to exit")
        # the port is free again: a node restarted at once can bind it
        made.start_node(0)
        made.wait_for_leader(30)
        assert json.loads(json.dumps(made.health(0)))["role"] == "leader"
    finally:
        made.stop(timeout=10)


def test_workers_0_serves_from_the_node_itself(tmp_path):
    http_port, raft_port = free_ports(2)
    made = LocalCluster(tmp_path / "zero", [http_port], [raft_port],
                        extra_args=["--election-timeout", "300", "--heartbeat-interval", "50",
                                    "--workers", "0"],
                        env=child_env())
    made.start()
    try:
        made.wait_for_leader(30)
        assert worker_pids(made.pid(0)) == set()
        assert made.put(0, "k", "v")[0] == 200
        assert "(workers=0)" in made.log_tail(0, 40)
    finally:
        made.stop(timeout=10)
