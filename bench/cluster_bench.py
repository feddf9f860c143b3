"""LeifDB beside etcd: the same HTTP workload against a local 3-node cluster of each.

Timings on a shared 2-core machine are noisy, so both systems run in the same invocation and
the report gives ratios as well as absolute figures. etcd is used only if an `etcd` binary is
on PATH (Debian: `apt-get install etcd-server`); its v3 JSON gateway is the HTTP interface.

    python bench/cluster_bench.py [--ops 500] [--clients 16] [--seconds 5] [--no-etcd]

Measured per system: one client's sequential write and linearizable read latency (median,
p99), then the throughput of ``--clients`` concurrent keep-alive clients writing, and reading,
for ``--seconds`` each. Everything runs on 127.0.0.1 with ports picked free, and every process
started here is stopped by PID before the script exits.

Plain ``http.client`` rather than ``leifdb.client``: the same minimal client drives both
systems (etcd has its own JSON gateway), so neither is timed with the other's client.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leifdb.cluster import LocalCluster  # noqa: E402


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Client:
    """One keep-alive HTTP connection; ``put``/``get`` raise on an unexpected status."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return data


class LeifClient(Client):
    def put(self, key: str, value: str) -> None:
        self.call("PUT", f"/db/{key}", json.dumps({"value": value}).encode())

    def get(self, key: str) -> None:
        self.call("GET", f"/db/{key}")


class EtcdClient(Client):
    @staticmethod
    def _b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    def put(self, key: str, value: str) -> None:
        body = {"key": self._b64(key), "value": self._b64(value)}
        self.call("POST", "/v3/kv/put", json.dumps(body).encode())

    def get(self, key: str) -> None:
        self.call("POST", "/v3/kv/range", json.dumps({"key": self._b64(key)}).encode())


def latency(client: Client, ops: int) -> dict[str, float]:
    writes, reads = [], []
    for n in range(ops):
        start = time.perf_counter()
        client.put(f"lat/{n % 50}", f"value-{n}")
        writes.append(time.perf_counter() - start)
    for n in range(ops):
        start = time.perf_counter()
        client.get(f"lat/{n % 50}")
        reads.append(time.perf_counter() - start)
    ms = 1000.0
    return {
        "write_p50_ms": statistics.median(writes) * ms,
        "write_p99_ms": percentile(writes, 99) * ms,
        "read_p50_ms": statistics.median(reads) * ms,
        "read_p99_ms": percentile(reads, 99) * ms,
    }


def throughput(make_client: Callable[[], Client], clients: int, seconds: float, op: str) -> float:
    """Operations per second of ``clients`` threads, each on its own connection."""
    counts = [0] * clients
    errors: list[BaseException] = []
    deadline = time.monotonic() + seconds

    def worker(slot: int) -> None:
        client = make_client()
        n = 0
        try:
            while time.monotonic() < deadline:
                key = f"tp/{slot}/{n % 20}"
                if op == "put":
                    client.put(key, f"v{n}")
                else:
                    client.get(key)
                n += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        counts[slot] = n

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    elapsed = time.monotonic() - start
    if errors:
        print(f"  {len(errors)} client errors, first: {errors[0]}", file=sys.stderr)
    return sum(counts) / elapsed


def run_workload(name: str, make_client: Callable[[], Client], args: argparse.Namespace) -> dict:
    result = latency(make_client(), args.ops)
    result["put_ops_s"] = throughput(make_client, args.clients, args.seconds, "put")
    result["get_ops_s"] = throughput(make_client, args.clients, args.seconds, "get")
    print(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()), flush=True)
    return result


def bench_leifdb(args: argparse.Namespace, workdir: Path) -> dict:
    ports = free_ports(6)
    cluster = LocalCluster(workdir / "leifdb", ports[:3], ports[3:])
    try:
        cluster.start()
        leader = cluster.wait_for_leader(timeout=30)
        port = cluster.nodes[leader].http_port
        return run_workload("leifdb", lambda: LeifClient(port), args)
    finally:
        cluster.stop()


def bench_etcd(args: argparse.Namespace, workdir: Path) -> dict | None:
    etcd = shutil.which("etcd")
    if etcd is None or args.no_etcd:
        print("etcd: not installed (apt-get install etcd-server); skipped")
        return None
    client_ports, peer_ports = free_ports(3), free_ports(3)
    initial = ",".join(f"e{i}=http://127.0.0.1:{peer_ports[i]}" for i in range(3))
    procs = []
    try:
        for i in range(3):
            log = open(workdir / f"etcd{i}.log", "wb")
            procs.append(
                subprocess.Popen(
                    [
                        etcd, "--name", f"e{i}", "--data-dir", str(workdir / f"etcd{i}"),
                        "--listen-client-urls", f"http://127.0.0.1:{client_ports[i]}",
                        "--advertise-client-urls", f"http://127.0.0.1:{client_ports[i]}",
                        "--listen-peer-urls", f"http://127.0.0.1:{peer_ports[i]}",
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_ports[i]}",
                        "--initial-cluster", initial, "--initial-cluster-state", "new",
                        "--initial-cluster-token", "leifdb-bench",
                    ],
                    stdout=log, stderr=subprocess.STDOUT,
                )
            )
        port = _etcd_leader_port(client_ports)
        return run_workload("etcd", lambda: EtcdClient(port), args)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _etcd_leader_port(client_ports: list[int]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for port in client_ports:
            try:
                status = json.loads(Client(port).call("POST", "/v3/maintenance/status", b"{}"))
            except (OSError, RuntimeError, http.client.HTTPException):
                continue
            if status.get("leader") and status["leader"] == status["header"]["member_id"]:
                return port
        time.sleep(0.2)
    raise RuntimeError("etcd elected no leader in 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-etcd", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leifdb-bench-") as tmp:
        workdir = Path(tmp)
        leif = bench_leifdb(args, workdir)
        etcd = bench_etcd(args, workdir)
    if etcd:
        print("leifdb/etcd ratios (throughput: higher is better for leifdb; latency: lower is):")
        for key in leif:
            print(f"  {key}: {leif[key] / etcd[key]:.2f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
