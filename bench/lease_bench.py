"""Lease keepalive throughput: how many keepalives per second one leader handles.

Starts a local 3-node cluster, grants ``--leases`` leases (TTL 60 s, so none expires during
the run), then for each concurrency C of ``--concurrency`` keeps them alive for
``--seconds``: C workers of one asyncio ``AsyncClient`` (the client library; a fresh
connection per request, as the client does), worker i renewing leases i, i + C, ... in
turn as fast as the answers come. Every keepalive goes through the Raft log (batched per
reactor turn), so this measures the leader's commit path, not a cache.

Reported per C: acknowledged keepalives per second, latency (p50, p99), errors, and the
leader's CPU over the window. The last column turns the rate into leases: a keeper renews
every TTL/3, so one leader sustains ``rate * TTL / 3`` leases of that TTL (here for 10 s).
The bench client shares the machine's cores with the three nodes: compare its CPU with the
leader's before reading a plateau as the server's limit.

    python bench/lease_bench.py [--leases 1000] [--concurrency 1,8,32] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leifdb.client import ClientError  # noqa: E402
from leifdb.client.aio import AsyncClient  # noqa: E402
from leifdb.cluster import LocalCluster, free_ports  # noqa: E402

LEASE_TTL = 60.0
EXAMPLE_TTL = 10.0


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def grant_all(client: AsyncClient, count: int, workers: int = 32) -> list[int]:
    ids: list[int] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            ids.append((await client.grant(LEASE_TTL)).id)

    share = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    await asyncio.gather(*(worker(n) for n in share if n))
    return ids


async def keep_alive_for(client: AsyncClient, ids: list[int], concurrency: int,
                         seconds: float) -> tuple[int, int, list[float]]:
    """(acknowledged, errors, latencies) of ``concurrency`` workers renewing ``ids``."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors = 0

    async def worker(mine: list[int]) -> None:
        nonlocal errors
        n = 0
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                await client.keepalive(mine[n % len(mine)])
            except ClientError:
                errors += 1
            else:
                latencies.append(time.perf_counter() - start)
            n += 1

    shares = [ids[i::concurrency] for i in range(concurrency)]
    await asyncio.gather(*(worker(mine) for mine in shares if mine))
    return len(latencies), errors, latencies


async def measure(cluster: LocalCluster, args: argparse.Namespace) -> list[list[str]]:
    leader = cluster.wait_for_leader()
    client = AsyncClient([cluster.url(i) for i in range(len(cluster))], framework="asyncio",
                         timeout=10.0)
    start = time.monotonic()
    ids = await grant_all(client, args.leases)
    print(f"granted {len(ids)} leases in {time.monotonic() - start:.1f} s; leader pid "
          f"{cluster.pid(leader)}", flush=True)
    rows = []
    for concurrency in args.concurrency:
        pid = cluster.pid(leader)
        cpu_before, own_before = cpu_seconds(pid), own_cpu_seconds()
        began = time.monotonic()
        acked, errors, latencies = await keep_alive_for(client, ids, concurrency, args.seconds)
        elapsed = time.monotonic() - began
        leader_cpu = cpu_seconds(pid) - cpu_before
        own_cpu = own_cpu_seconds() - own_before
        rate = acked / elapsed
        rows.append([
            str(concurrency), f"{rate:,.0f}",
            f"{percentile(latencies, 50) * 1e3:.1f}" if latencies else "-",
            f"{percentile(latencies, 99) * 1e3:.1f}" if latencies else "-",
            str(errors), f"{leader_cpu / elapsed * 100:.0f}%",
            f"{leader_cpu / max(1, acked) * 1e6:.0f}", f"{own_cpu / elapsed * 100:.0f}%",
            f"{rate * EXAMPLE_TTL / 3:,.0f}",
        ])
        print(f"  C={concurrency}: {rate:,.0f} keepalives/s", flush=True)
    return rows


def show(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", type=int, default=1000)
    parser.add_argument("--concurrency", default="1,8,32",
                        help="comma-separated numbers of concurrent connections")
    parser.add_argument("--seconds", type=float, default=5.0, help="per concurrency")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if args.leases < 1 or not args.concurrency or min(args.concurrency) < 1:
        parser.error("--leases and every --concurrency must be at least 1")
    ports = free_ports(6)
    with tempfile.TemporaryDirectory(prefix="leifdb-leases-") as base:
        cluster = LocalCluster(base, ports[:3], ports[3:])
        cluster.start()
        try:
            rows = asyncio.run(measure(cluster, args))
        finally:
            cluster.stop()
    print(f"lease keepalives: {args.leases} leases on a 3-node cluster, {args.seconds:g} s "
          "per row")
    show(["C", "keepalives/s", "p50 ms", "p99 ms", "errors", "leader CPU", "µs CPU/ka",
          "bench CPU", f"leases @TTL {EXAMPLE_TTL:g}s"], rows)


if __name__ == "__main__":
    main()
