"""Watch fan-out: many SSE watchers on one node while writes flow.

Starts a local 3-node cluster, opens ``--watchers`` streams (``GET /watch/fanout/?prefix=true``)
on one follower, then writes ``--rate`` keys per second to the leader for ``--seconds``.
Every value carries the monotonic time it was sent, so a watcher that receives it knows the
delivery latency (send -> event, which includes the write's commit) and, with the time the
write was acknowledged, the latency after the acknowledgement.

One selector thread reads every stream. Parsing every event of 1,000 streams in Python would
make this client the bottleneck, so ``--sampled`` streams are parsed for latency and the others
only counted (``bytes.count``), which is cheap. Memory per watcher is the node's RSS growth
after the watchers are open, divided by their number.

    python bench/watch_fanout.py --watchers 1000 --rate 100 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import math
import selectors
import socket
import tempfile
import threading
import time
from pathlib import Path

from leifdb.cluster import LocalCluster, free_ports, http_request
from leifdb.kv.commands import Event
from leifdb.kv.history import History
from leifdb.service.api import ServiceLimits

PREFIX = "fanout/"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Streams:
    """Every watcher's socket, read by one selector loop."""

    def __init__(self, port: int, count: int, sampled: int) -> None:
        self.selector = selectors.DefaultSelector()
        self.counts = [0] * count
        self.latencies: list[float] = []
        self.received: dict[int, list[float]] = {}
        self.sampled = sampled
        self._buffers: dict[int, bytes] = {}
        self._stop = False
        request = (f"GET /watch/{PREFIX}?prefix=true&consistency=stale HTTP/1.1\r\n"
                   "Host: bench\r\nAccept: text/event-stream\r\n\r\n").encode()
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(request)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, n)

    def run(self) -> None:
        while not self._stop:
            for key, _ in self.selector.select(timeout=0.2):
                n = key.data
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    self.selector.unregister(key.fileobj)
                    continue
                now = time.monotonic()
                self.counts[n] += data.count(b"\ndata: {\"type\"") + data.startswith(b"data: {\"type\"")
                if n < self.sampled:
                    self._parse(n, data, now)

    def _parse(self, n: int, data: bytes, now: float) -> None:
        buffer = self._buffers.get(n, b"") + data
        *lines, rest = buffer.split(b"\n")
        self._buffers[n] = rest
        for line in lines:
            if line.startswith(b"data: {\"type\""):
                event = json.loads(line[6:])
                sent = float(event["value"].split("|")[0])
                self.latencies.append(now - sent)
                self.received.setdefault(int(event["value"].split("|")[1]), []).append(now)

    def stop(self) -> None:
        self._stop = True
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()


def history_window_seconds(value_bytes: int, writes_per_second: float) -> tuple[int, float]:
    """How many overwrites of 16-byte keys with ``value_bytes`` values the default
    history keeps, and how long that lasts at ``writes_per_second``: filled for real."""
    limits = ServiceLimits()
    history = History(limits.history_events, limits.history_bytes)
    value = "v" * value_bytes
    revision = 0
    while history.compact_revision == 1:
        revision += 1
        history.record(revision, [Event("put", f"config/key{revision % 1000:06d}", value,
                                        revision, value, revision - 1)])
    kept = history.event_count
    return kept, kept / writes_per_second


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--sampled", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--window-only", action="store_true",
                        help="only compute the history window (no cluster)")
    args = parser.parse_args()
    for size in (50, 256, 1024):
        kept, seconds = history_window_seconds(size, 1000.0)
        print(f"history window with default limits, {size}-byte values: {kept:,} changes = "
              f"{seconds:,.0f} s at 1,000 writes/s")
    if args.window_only:
        return

    ports = free_ports(6)
    with tempfile.TemporaryDirectory(prefix="leifdb-fanout-") as base:
        cluster = LocalCluster(base, ports[:3], ports[3:])
        cluster.start()
        try:
            leader = cluster.wait_for_leader()
            watched = next(i for i in range(3) if i != leader)
            pid = cluster.pid(watched)
            print(f"watched node pid {pid} (py-spy record -p {pid} profiles it)", flush=True)
            time.sleep(1.0)
            rss_before = rss_bytes(pid)
            streams = Streams(cluster.nodes[watched].http_port, args.watchers, args.sampled)
            reader = threading.Thread(target=streams.run, daemon=True)
            reader.start()
            time.sleep(2.0)
            rss_after = rss_bytes(pid)
            acked: dict[int, float] = {}
            writes = int(args.rate * args.seconds)
            cpu_before = cpu_seconds(pid)
            start = time.monotonic()
            for n in range(writes):
                due = start + n / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                value = f"{time.monotonic()}|{n}"
                status, _, _ = http_request(cluster.url(leader), "PUT", f"/db/{PREFIX}k{n % 100}",
                                            {"value": value}, timeout=10)
                if status == 200:
                    acked[n] = time.monotonic()
            time.sleep(2.0)
            node_cpu = cpu_seconds(pid) - cpu_before
            streams.stop()
            expected = len(acked)
            complete = sum(1 for c in streams.counts if c >= expected)
            after_ack = [t - acked[n] for n, times in streams.received.items() if n in acked
                         for t in times]
            print(f"watch fan-out: {args.watchers} watchers on one follower, {expected} writes "
                  f"at {args.rate:g}/s to the leader")
            print(f"  streams that got every write: {complete}/{args.watchers}; events delivered "
                  f"{sum(streams.counts):,}")
            if streams.latencies:
                print(f"  send -> event (incl. commit): p50 {percentile(streams.latencies, 50) * 1e3:.1f} ms"
                      f", p99 {percentile(streams.latencies, 99) * 1e3:.1f} ms "
                      f"({len(streams.latencies):,} samples on {args.sampled} parsed streams)")
            if after_ack:
                print(f"  ack -> event: p50 {percentile(after_ack, 50) * 1e3:.1f} ms, "
                      f"p99 {percentile(after_ack, 99) * 1e3:.1f} ms")
            print(f"  watched node CPU: {node_cpu:.2f} s for {sum(streams.counts):,} deliveries = "
                  f"{node_cpu / max(1, sum(streams.counts)) * 1e6:.1f} µs per delivered event")
            print(f"  node memory per watcher: {(rss_after - rss_before) / args.watchers / 1024:.1f} KiB "
                  f"(RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB)")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
