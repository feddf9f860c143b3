"""Soak the Raft core: random simulated runs, back to back, for a wall-clock duration.

    python -m tests.sim.soak --duration 10m            # or 30s, 1h, 90 (seconds)
    python -m tests.sim.soak --seed 1234 --runs 1      # replay one run exactly
    python -m tests.sim.soak --membership available    # membership changes, PreVote on

Run ``i`` uses seed ``base + i``; the base seed is random unless ``--seed`` is given, and
is printed first. Every run builds a random cluster (3 or 5 nodes, with or without
snapshots, various batching) and takes ``--steps`` random actions from ``tests.sim.chaos``
with every safety property checked after every simulated event, then demands liveness.
``--membership classic|available`` runs ``tests.sim.chaos.run_membership_seed`` instead:
servers added, promoted and removed among the faults, with PreVote and the vote lease off
or on.
Progress is printed every ``--report-every``; the totals at the end. Exit status 1, with
the failing seed and the command that replays it, on any violation.
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import sys
import time
import traceback

from tests.sim.chaos import MODES, run_membership_seed, run_seed
from tests.sim.invariants import Violation

FAULT_KINDS = (
    "drops",
    "duplicates",
    "delays",
    "reorders",
    "replays",
    "corrupted_chunks",
    "lost_to_partition",
    "lost_to_crash",
    "partitions",
    "one_way_cuts",
    "heals",
    "crashes",
    "crashes_before_sync",
    "crashes_after_sync",
    "crashes_mid_send",
    "crashes_after_send",
    "restarts",
    "snapshots_taken",
    "snapshots_installed",
    "snapshots_rejected",
    "nodes_added",
    "nodes_removed",
    "membership_add",
    "membership_promote",
    "membership_remove",
    "membership_refused",
    "membership_forced",
)


def parse_duration(text: str) -> float:
    """'10m', '30s', '1h', '1h30m' or plain seconds ('90') -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (use e.g. 30s, 10m, 1h)")
    scale = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * scale[u] for n, u in parts)


class Totals:
    """Counters summed over runs, and the report lines printed from them."""

    def __init__(self) -> None:
        self.stats: collections.Counter[str] = collections.Counter()
        self.runs = 0
        self.sim_ms = 0.0
        self.started = time.monotonic()

    def add(self, stats: collections.Counter[str], sim_ms: float) -> None:
        self.stats.update(stats)
        self.sim_ms += sim_ms
        self.runs += 1

    def report(self, label: str) -> str:
        wall = max(time.monotonic() - self.started, 1e-9)
        s = self.stats
        faults = ", ".join(f"{k}={s[k]}" for k in FAULT_KINDS if s[k])
        return (
            f"[{label}] {wall:.0f}s wall, {self.runs} runs, {s['events']} simulated steps "
            f"({s['events'] / wall:,.0f} steps/s), {self.sim_ms / 1000:,.0f} simulated s, "
            f"{s['messages_delivered']} messages delivered, {s['leaders_elected']} leaders elected, "
            f"proposals {s['proposals_acked']} acked of {s['proposals']}, "
            f"reads {s['reads_ok']} answered of {s['reads']}, "
            f"liveness checks {s['liveness_checks']}\n    faults: {faults}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=parse_duration, default=parse_duration("1m"), help="e.g. 30s, 10m, 1h")
    parser.add_argument("--seed", type=int, default=None, help="base seed (default: random)")
    parser.add_argument("--runs", type=int, default=None, help="stop after this many runs")
    parser.add_argument("--steps", type=int, default=1500, help="random actions per run")
    parser.add_argument("--report-every", type=parse_duration, default=parse_duration("30s"))
    parser.add_argument("--membership", choices=sorted(MODES), default=None,
                        help="membership changes among the faults, availability rules off or on")
    args = parser.parse_args(argv)

    base = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    print(f"soak: base seed {base} (run i uses seed {base}+i), {args.steps} steps per run, "
          f"duration {args.duration:.0f}s", flush=True)
    totals = Totals()
    deadline = totals.started + args.duration
    next_report = totals.started + args.report_every
    run = 0
    while time.monotonic() < deadline and (args.runs is None or run < args.runs):
        seed = base + run
        run += 1
        try:
            if args.membership is None:
                cluster = run_seed(seed, args.steps)
            else:
                cluster = run_membership_seed(seed, args.steps, args.membership)
        except Exception as exc:  # a violation, or a crash of the harness/core
            kind = "VIOLATION" if isinstance(exc, Violation) else "ERROR"
            print(f"\n{kind} in run with seed {seed}:\n{exc}", file=sys.stderr)
            if not isinstance(exc, Violation):
                traceback.print_exc()
            mode = f" --membership {args.membership}" if args.membership else ""
            print(f"replay: python -m tests.sim.soak --seed {seed} --runs 1 --steps {args.steps}{mode}", file=sys.stderr)
            print(totals.report("at failure"), flush=True)
            return 1
        totals.add(cluster.stats, cluster.now)
        if time.monotonic() >= next_report:
            print(totals.report("progress"), flush=True)
            next_report += args.report_every
    print(totals.report("done"), flush=True)
    print(f"soak: no violation in {totals.runs} runs (seeds {base}..{base + totals.runs - 1})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
