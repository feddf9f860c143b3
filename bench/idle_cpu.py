"""Idle CPU of a local 3-node cluster: utime + stime from /proc/<pid>/stat over a quiet
interval, per node (all its threads), after a leader is elected and one write is applied.

    python bench/idle_cpu.py                     # 20 s, default timings (1000/100 ms)
    python bench/idle_cpu.py --seconds 20 -- --election-timeout 300 --heartbeat-interval 50

Options after ``--`` go to every node. Linux only. Every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leifdb.cluster import LocalCluster, free_ports  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the whole process (every thread), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # stat fields 14 and 15


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds to wait after the write before measuring")
    parser.add_argument("node_args", nargs="*", help="extra options for every node (after --)")
    args = parser.parse_args()
    ports = free_ports(6)
    with tempfile.TemporaryDirectory(prefix="leifdb-idle-") as tmp:
        cluster = LocalCluster(tmp, ports[:3], ports[3:], extra_args=args.node_args)
        try:
            cluster.start()
            leader = cluster.wait_for_leader()
            assert cluster.put(leader, "idle", "1")[0] == 200
            time.sleep(args.settle)
            pids = [cluster.pid(i) for i in range(3)]
            before = [cpu_seconds(pid) for pid in pids]
            started = time.monotonic()
            time.sleep(args.seconds)
            after = [cpu_seconds(pid) for pid in pids]
            wall = time.monotonic() - started
            roles = [(cluster.health(i) or {}).get("role", "?") for i in range(3)]
        finally:
            cluster.stop()
    print(f"idle {wall:.1f} s, node options: {' '.join(args.node_args) or '(defaults)'}")
    total = 0.0
    for i, (b, a) in enumerate(zip(before, after)):
        used = a - b
        total += used
        print(f"  n{i + 1} {roles[i]:9s} {used:6.2f} s CPU = {100 * used / wall:5.2f} % of a core")
    print(f"  all       {total:6.2f} s CPU = {100 * total / wall:5.2f} % of a core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
