"""Failover time of a local 3-node cluster: from SIGKILL of the leader to the first write
a new leader acknowledges, as a client sees it.

    python bench/failover.py                  # 5 runs with 1000/100 ms and 5 with 300/50 ms
    python bench/failover.py --runs 9 --settings 1000/100

Each setting gets a fresh cluster on free ports under a temporary folder. A run: wait for a
steady leader, SIGKILL it, then PUT round-robin to the survivors (following nothing: a 307
or 503 just moves on) until one answers 200. The killed node is restarted and caught up
before the next run. Every process is stopped at the end, also on error.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leifdb.cluster import LocalCluster, free_ports  # noqa: E402


def wait_caught_up(cluster: LocalCluster, node: int, leader: int, timeout: float = 30) -> None:
    commit = (cluster.health(leader) or {}).get("commit_index", 0)
    deadline = time.monotonic() + timeout
    while (cluster.health(node) or {}).get("applied_index", -1) < commit:
        if time.monotonic() > deadline:
            raise TimeoutError(f"n{node + 1} did not catch up to {commit}")
        time.sleep(0.05)


def one_failover(cluster: LocalCluster, run: int, timeout: float = 30) -> tuple[float, int, int]:
    """Seconds from SIGKILL of the leader to an acknowledged write; (seconds, old, new)."""
    old = cluster.wait_for_leader()
    survivors = [i for i in range(len(cluster)) if i != old]
    assert cluster.put(old, f"warm-{run}", "x")[0] == 200
    killed_at = time.monotonic()
    cluster.kill(old)
    deadline = killed_at + timeout
    while time.monotonic() < deadline:
        for i in survivors:
            try:
                status, _ = cluster.put(i, f"failover-{run}", str(run), timeout=1.0)
            except OSError:
                continue
            if status == 200:
                elapsed = time.monotonic() - killed_at
                cluster.start_node(old)
                wait_caught_up(cluster, old, i)
                return elapsed, old, i
        time.sleep(0.005)
    raise TimeoutError(f"no write acknowledged {timeout} s after killing n{old + 1}")


def measure(setting: str, runs: int, base: Path) -> list[float]:
    election, heartbeat = (int(x) for x in setting.split("/"))
    ports = free_ports(6)
    cluster = LocalCluster(
        base / f"et{election}",
        ports[:3],
        ports[3:],
        extra_args=["--election-timeout", str(election), "--heartbeat-interval", str(heartbeat),
                    "--log-level", "warn"],
    )
    samples = []
    try:
        cluster.start()
        cluster.wait_for_leader()
        for run in range(runs):
            time.sleep(3 * election / 1000)  # a steady state: heartbeats flowing again
            elapsed, old, new = one_failover(cluster, run)
            samples.append(elapsed)
            print(f"  {setting} run {run + 1}: n{old + 1} killed, n{new + 1} acknowledged "
                  f"a write after {elapsed * 1000:.0f} ms", flush=True)
    finally:
        cluster.stop()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settings", default="1000/100,300/50",
                        help="comma-separated election-timeout/heartbeat pairs in ms")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="leifdb-failover-") as tmp:
        for setting in args.settings.split(","):
            results[setting] = measure(setting, args.runs, Path(tmp))
    print("\nelection/heartbeat ms  runs  median ms  min ms  max ms")
    for setting, samples in results.items():
        ms = [s * 1000 for s in samples]
        print(f"{setting:>21}  {len(ms):4d}  {statistics.median(ms):9.0f}  "
              f"{min(ms):6.0f}  {max(ms):6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
