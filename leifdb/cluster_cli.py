"""The command line of the local cluster (``make cluster`` / ``cluster-status`` /
``cluster-stop``), run as ``python -m leifdb.cluster``; see ``leifdb.cluster`` for the
commands and what each node keeps where."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from leifdb.cluster import LEADER_TIMEOUT, STATE_FILE, STOP_TIMEOUT, LocalCluster

__all__ = ["main"]


def _print_table(cluster: LocalCluster, *, full: bool) -> None:
    for i, node in enumerate(cluster.nodes):
        pid = cluster.pid(i)
        health = cluster.health(i) if pid is not None else None
        if pid is None:
            state = "down"
        elif health is None:
            state = f"pid {pid}, not answering"
        elif full:
            state = (
                f"pid {pid}  {health.get('role')}  term {health.get('term')}  "
                f"commit {health.get('commit_index')}  applied {health.get('applied_index')}"
            )
        else:
            state = str(health.get("role"))
        print(f"{node.name}  {node.url}  {state}")


def _cmd_start(args: argparse.Namespace, extra: list[str]) -> int:
    base = Path(args.dir)
    if (base / STATE_FILE).exists():
        old = LocalCluster.load(base)
        running = [n.name for i, n in enumerate(old.nodes) if old.is_running(i)]
        if running:
            print(
                f"a cluster is already running in {base} ({', '.join(running)}); "
                "run 'python -m leifdb.cluster stop' first",
                file=sys.stderr,
            )
            return 1
    cluster = LocalCluster.from_bases(
        base, args.nodes, args.http_base, args.raft_base, extra_args=extra, detach=True
    )
    cluster.save()
    cluster.start()
    deadline = time.monotonic() + args.timeout
    while True:
        exited = [i for i in range(len(cluster)) if not cluster.is_running(i)]
        if exited:
            for i in exited:
                print(f"{cluster.nodes[i].name} exited; the end of its log:", file=sys.stderr)
                print(cluster.log_tail(i, 5), file=sys.stderr)
            cluster.stop()
            print("start-up failed; every node was stopped", file=sys.stderr)
            return 1
        try:
            slice_ = min(0.5, max(0.0, deadline - time.monotonic()))
            cluster.wait_until_up(slice_)
            cluster.wait_for_leader(slice_)
            break
        except TimeoutError as exc:
            if time.monotonic() >= deadline:
                _print_table(cluster, full=True)
                print(
                    f"{exc}; the nodes are still running: see {base}/node*/node.log, "
                    "then 'python -m leifdb.cluster stop'",
                    file=sys.stderr,
                )
                return 1
    _print_table(cluster, full=False)
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    """One more node on the next free-by-convention ports, started with ``--join``."""
    try:
        cluster = LocalCluster.load(args.dir, detach=True)
    except OSError:
        print(f"no cluster in {args.dir}: run 'python -m leifdb.cluster start' first",
              file=sys.stderr)
        return 1
    if not any(cluster.is_running(i) for i in range(len(cluster))):
        print(f"no node of the cluster in {args.dir} runs: nothing to join", file=sys.stderr)
        return 1
    http_port = max(n.http_port for n in cluster.nodes) + 1
    raft_port = max(n.raft_port for n in cluster.nodes) + 1
    i = cluster.add_node(http_port, raft_port)
    cluster.save()
    cluster.start_node(i)
    try:
        cluster.wait_for_health(i, args.timeout)
    except TimeoutError as exc:
        print(f"{exc}; see {cluster.nodes[i].log_path}", file=sys.stderr)
        return 1
    _print_table(cluster, full=False)
    print(f"{cluster.nodes[i].name} joined as a learner; make it a voter with: "
          f"leifdb --endpoints {cluster.url(i)} member promote {cluster.nodes[i].name}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        cluster = LocalCluster.load(args.dir)
    except OSError:
        print(f"no cluster in {args.dir}", file=sys.stderr)
        return 1
    _print_table(cluster, full=True)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    try:
        cluster = LocalCluster.load(args.dir)
    except OSError:
        print(f"no cluster in {args.dir}", file=sys.stderr)
        return 0
    was = [cluster.pid(i) for i in range(len(cluster))]
    cluster.stop(args.timeout)
    for i, node in enumerate(cluster.nodes):
        print(f"{node.name}  {'stopped' if was[i] is not None else 'was not running'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m leifdb.cluster",
        description="Run a local LeifDB cluster on 127.0.0.1, one twistd process per node.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser(
        "start",
        help="start N nodes and wait for a leader",
        description="Start N nodes in the background and wait for a leader. Options not "
        "listed here (e.g. --election-timeout 300) are passed to every node.",
    )
    start.add_argument("--nodes", type=int, default=3)
    start.add_argument("--http-base", type=int, default=8080, help="HTTP port of n1 (n2: +1, ...)")
    start.add_argument("--raft-base", type=int, default=16990, help="Raft port of n1 (n2: +1, ...)")
    start.add_argument(
        "--timeout", type=float, default=LEADER_TIMEOUT, help="seconds to wait for a leader"
    )
    add = sub.add_parser(
        "add", help="start one more node on the next ports, joining with --join as a learner")
    add.add_argument(
        "--timeout", type=float, default=LEADER_TIMEOUT, help="seconds to wait for it to answer"
    )
    status = sub.add_parser("status", help="role, term, commit and applied index of each node")
    stop = sub.add_parser("stop", help="SIGTERM every node (SIGKILL after --timeout s)")
    stop.add_argument("--timeout", type=float, default=STOP_TIMEOUT)
    for p in (start, add, status, stop):
        p.add_argument("--dir", default=".cluster", help="cluster folder (default .cluster)")
    args, extra = parser.parse_known_args(argv)
    if args.command != "start" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "start":
        if args.nodes < 1:
            parser.error("--nodes must be at least 1")
        return _cmd_start(args, extra)
    if args.command == "add":
        return _cmd_add(args)
    return _cmd_status(args) if args.command == "status" else _cmd_stop(args)
