"""When does a lease end, seen from outside? With a steady leader, and when the leader is
killed after the last keepalive (the failover bound of the README's expiry rule).

    python bench/lease_expiry.py                 # 5 steady runs, 8 failover runs, ttl 3 s
    python bench/lease_expiry.py --runs 10 --ttl 5

A run on a local 3-node cluster (election timeout 1000 ms): grant a lease, attach a key,
renew it once (``t_k``: when that keepalive was sent), stop renewing; in the failover case
SIGKILL the leader a random moment (0 to 1.5 checkpoint intervals) after the renewal.
Then poll the survivors with stale reads every 10 ms until the key is gone (``t_gone``).
The excess is ``t_gone - (t_k + ttl)``: never negative (the lower bound: a run that ends
early fails the bench), and at most checkpoint interval + failover time (the upper bound).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.failover import wait_caught_up  # noqa: E402
from leifdb.client import Client  # noqa: E402
from leifdb.cluster import LocalCluster, free_ports  # noqa: E402
from leifdb.nodeconfig import default_of  # noqa: E402

CHECKPOINT_INTERVAL = float(default_of("lease_checkpoint_interval"))  # type: ignore[arg-type]


def gone_at(clients: list[Client], key: str, timeout: float) -> float:
    """When the key is first seen absent on any of ``clients`` (stale reads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for client in clients:
            try:
                if client.get(key, stale=True) is None:
                    return time.monotonic()
            except Exception:  # noqa: BLE001 - a node just killed or restarting
                continue
        time.sleep(0.01)
    raise TimeoutError(f"{key} still present {timeout} s later")


def one_run(cluster: LocalCluster, run: int, ttl: float, failover: bool) -> float:
    leader = cluster.wait_for_leader()
    urls = [f"http://127.0.0.1:{n.http_port}" for n in cluster.nodes]
    client = Client(urls, timeout=5.0)
    lease = client.grant(ttl)
    key = f"expiry-{run}-{failover}"
    client.put(key, "x", lease=lease.id)
    time.sleep(random.uniform(0.2, 1.0))
    sent = time.monotonic()
    client.keepalive(lease.id)
    watched = [i for i in range(len(cluster)) if not (failover and i == leader)]
    if failover:
        time.sleep(random.uniform(0.0, 1.5 * CHECKPOINT_INTERVAL))
        cluster.kill(leader)
    gone = gone_at([Client([urls[i]], timeout=1.0) for i in watched], key, ttl + 30)
    if failover:
        cluster.start_node(leader)
        wait_caught_up(cluster, leader, cluster.wait_for_leader())
    return gone - (sent + ttl)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="steady runs")
    parser.add_argument("--failovers", type=int, default=8)
    parser.add_argument("--ttl", type=float, default=3.0)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"steady leader": [], "leader killed": []}
    with tempfile.TemporaryDirectory(prefix="leifdb-lease-expiry-") as tmp:
        ports = free_ports(6)
        cluster = LocalCluster(Path(tmp), ports[:3], ports[3:], extra_args=["--log-level", "warn"])
        try:
            cluster.start()
            cluster.wait_for_leader()
            for run in range(args.runs):
                results["steady leader"].append(one_run(cluster, run, args.ttl, False))
            for run in range(args.failovers):
                excess = one_run(cluster, run, args.ttl, True)
                results["leader killed"].append(excess)
                print(f"  failover run {run + 1}: ended {excess * 1000:.0f} ms after ttl",
                      flush=True)
        finally:
            cluster.stop()
    print(f"\nlease end after ttl (ttl {args.ttl:g} s, checkpoint interval "
          f"{CHECKPOINT_INTERVAL:g} s, election timeout 1000 ms)")
    print("case            runs  min ms  median ms  max ms")
    early = False
    for case, samples in results.items():
        if not samples:
            continue
        ms = [s * 1000 for s in samples]
        early |= min(ms) < 0
        print(f"{case:<14}  {len(ms):4d}  {min(ms):6.0f}  {statistics.median(ms):9.0f}  "
              f"{max(ms):6.0f}")
    if early:
        print("A LEASE ENDED BEFORE ITS TTL AFTER AN ACKNOWLEDGED KEEPALIVE", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
