"""Rolling restart and failover of a local 3-node cluster under a steady client load.

    python bench/membership_bench.py                       # default timeouts (1000/100 ms)
    python bench/membership_bench.py --rolling 3 --failovers 5 --rate 50

A fresh 3-node cluster on free ports under a temporary folder, default election timeout
and heartbeat unless ``--election-timeout``/``--heartbeat-interval`` say otherwise. A
background writer puts ``--rate`` keys per second through ``leifdb.client`` (which follows
redirects and retries 503s, as an application would) for the whole run.

(a) Rolling restart, ``--rolling`` times: SIGTERM each node in turn (a leader hands over
first), start it again and wait until it has applied what the leader had committed. The
time from the first SIGTERM to the last node caught up, and the background writes that
failed meanwhile (errors and outcome-unknown), are reported.

(b) Failover, ``--failovers`` times per signal: stop the leader with SIGKILL (the others
wait out an election timeout) or with SIGTERM (it hands leadership over first), then a
probe PUTs round-robin to the survivors (a 307 or 503 just moves on) until one answers
200. Failover time is from the signal to that answer. The stopped node is restarted and
caught up before the next run.

Every process is stopped at the end, also on error.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leifdb.client import Client, ClientError, OutcomeUnknown  # noqa: E402
from leifdb.client.protocol import RetryPolicy  # noqa: E402
from leifdb.cluster import LocalCluster, free_ports  # noqa: E402
from leifdb.nodeconfig import default_of  # noqa: E402

WAIT = 60.0


@dataclass
class Load:
    """The background writer's tally."""

    acked: int = 0
    unknown: int = 0
    errors: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.unknown + self.errors


class Writer(threading.Thread):
    """Puts ``load/<n>`` at ``rate`` per second through the client until stopped."""

    def __init__(self, urls: list[str], rate: float) -> None:
        super().__init__(name="bench-writer", daemon=True)
        self.client = Client(urls, timeout=5.0, policy=RetryPolicy(deadline=20.0))
        self.interval = 1.0 / rate
        self.load = Load()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self.stopping.is_set():
            n += 1
            try:
                self.client.put(f"load/{n:08d}", str(n))
            except OutcomeUnknown as e:
                with self.lock:
                    self.load.unknown += 1
                    self.load.reasons.append(f"outcome unknown: {e}")
            except ClientError as e:
                with self.lock:
                    self.load.errors += 1
                    self.load.reasons.append(f"{type(e).__name__}: {e}")
            else:
                with self.lock:
                    self.load.acked += 1
            next_at += self.interval
            self.stopping.wait(max(0.0, next_at - time.monotonic()))

    def tally(self) -> Load:
        with self.lock:
            return Load(self.load.acked, self.load.unknown, self.load.errors,
                        list(self.load.reasons))

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def restart_and_catch_up(cluster: LocalCluster, i: int) -> None:
    cluster.start_node(i)
    cluster.wait_for_health(i, WAIT)
    cluster.wait_caught_up(i, WAIT)


def rolling_restart(cluster: LocalCluster, writer: Writer) -> tuple[float, Load]:
    """Seconds from the first SIGTERM to the last node caught up, and the background
    writes that failed meanwhile."""
    before = writer.tally()
    started = time.monotonic()
    for i in range(len(cluster)):
        cluster.terminate(i)
        restart_and_catch_up(cluster, i)
    took = time.monotonic() - started
    after = writer.tally()
    return took, Load(after.acked - before.acked, after.unknown - before.unknown,
                      after.errors - before.errors, after.reasons[len(before.reasons):])


def failover(cluster: LocalCluster, sig: int, run: int) -> tuple[float, int, int]:
    """Seconds from stopping the leader with ``sig`` to a write a survivor acknowledges;
    (seconds, old leader, the node that acknowledged)."""
    old = cluster.wait_for_leader(WAIT)
    survivors = [i for i in range(len(cluster)) if i != old]
    pid = cluster.pid(old)
    assert pid is not None
    stopped_at = time.monotonic()
    if sig == signal.SIGKILL:
        cluster.signal(old, signal.SIGKILL)
    else:
        cluster.signal(old, signal.SIGTERM)
    deadline = stopped_at + WAIT
    acked: tuple[float, int] | None = None
    while acked is None and time.monotonic() < deadline:
        for i in survivors:
            try:
                status, _ = cluster.put(i, f"failover/{run}", str(run), timeout=1.0)
            except OSError:
                continue
            if status == 200:
                acked = (time.monotonic() - stopped_at, i)
                break
        else:
            time.sleep(0.002)
    if acked is None:
        raise TimeoutError(f"no write acknowledged {WAIT} s after stopping n{old + 1}")
    cluster.terminate(old)  # waits for the exit (SIGKILL already done, or the handover)
    restart_and_catch_up(cluster, old)
    return acked[0], old, acked[1]


def summary(samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (f"{statistics.median(ms):8.0f} {min(ms):8.0f} {max(ms):8.0f}"
            if ms else "       -        -        -")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rolling", type=int, default=3, help="rolling restarts")
    parser.add_argument("--failovers", type=int, default=5, help="leader stops per signal")
    parser.add_argument("--rate", type=float, default=50.0, help="background writes per second")
    parser.add_argument("--election-timeout", type=int, default=None,
                        help="ms (default: the node's)")
    parser.add_argument("--heartbeat-interval", type=int, default=None,
                        help="ms (default: the node's)")
    args = parser.parse_args()
    et = int(str(args.election_timeout or default_of("election_timeout_ms")))
    hb = int(str(args.heartbeat_interval or default_of("heartbeat_interval_ms")))
    extra = ["--log-level", "warn", "--election-timeout", str(et), "--heartbeat-interval", str(hb)]
    settle = 3 * et / 1000

    rolling: list[tuple[float, Load]] = []
    failovers: dict[str, list[float]] = {"SIGKILL": [], "SIGTERM": []}
    failed_during: dict[str, int] = {"SIGKILL": 0, "SIGTERM": 0}
    with tempfile.TemporaryDirectory(prefix="leifdb-membership-bench-") as tmp:
        ports = free_ports(6)
        cluster = LocalCluster(Path(tmp), ports[:3], ports[3:], extra_args=extra)
        writer: Writer | None = None
        try:
            cluster.start()
            cluster.wait_until_up(WAIT)
            cluster.wait_for_leader(WAIT)
            writer = Writer([cluster.url(i) for i in range(3)], args.rate)
            writer.start()
            time.sleep(settle)
            for run in range(args.rolling):
                took, load = rolling_restart(cluster, writer)
                rolling.append((took, load))
                print(f"  rolling restart {run + 1}: {took:.2f} s, {load.acked} writes "
                      f"acknowledged, {load.failed} failed", flush=True)
                for reason in load.reasons[:3]:
                    print(f"    failed: {reason}", flush=True)
                time.sleep(settle)
            for name, sig in (("SIGKILL", signal.SIGKILL), ("SIGTERM", signal.SIGTERM)):
                for run in range(args.failovers):
                    before = writer.tally().failed
                    took, old, new = failover(cluster, sig, run)
                    failovers[name].append(took)
                    failed_during[name] += writer.tally().failed - before
                    print(f"  {name} run {run + 1}: leader n{old + 1} stopped, n{new + 1} "
                          f"acknowledged a write after {took * 1000:.0f} ms", flush=True)
                    time.sleep(settle)
        finally:
            if writer is not None:
                writer.stop()
            cluster.stop()
    total = writer.tally() if writer is not None else Load()

    print(f"\n3 nodes, election timeout {et} ms, heartbeat {hb} ms, background load "
          f"{args.rate:g} writes/s through leifdb.client")
    print("\nrolling restart (SIGTERM, restart, caught up; all 3 nodes)")
    print("  run   seconds   writes acked   writes failed")
    for n, (took, load) in enumerate(rolling, 1):
        print(f"  {n:3d}   {took:7.2f}   {load.acked:12d}   {load.failed:13d}")
    print("\nfailover (leader stopped -> next acknowledged write)")
    print("  signal    runs   median ms   min ms   max ms   background writes failed")
    for name, samples in failovers.items():
        print(f"  {name:8s}  {len(samples):4d}   {summary(samples)}   {failed_during[name]:24d}")
    print(f"\nbackground writer in all: {total.acked} acknowledged, {total.unknown} outcome "
          f"unknown, {total.errors} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
