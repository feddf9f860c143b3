"""A py-spy profile of the LeifDB leader (and any processes it forked) under wrk load.

    python bench/profile_leader.py [--workload write|read|mix] [--conns 64] [--seconds 10]
        [--rate 200] [--top 25] [--out /tmp/leifdb-profile-write-<time>]
        [--leifdb-args="--workers 2"]

A fresh 3-node cluster on 127.0.0.1 (``--leifdb-args`` go to every node, as in
``bench/wrk_compare.py``) in a temporary folder, preloaded with the same 10,000 keys of
256-byte values; then, while wrk drives ``--workload`` at ``--conns`` connections to the
leader through ``bench/wrk/kv.lua`` for ``--seconds``, this records the leader with

    py-spy record --pid <leader> --subprocesses --threads --rate 200 --nolineno \
        --format raw -o <out>.folded

and writes, from that one recording (two py-spy processes would double the sampling cost):

- ``<out>.folded``: collapsed stacks (flamegraph.pl's input; speedscope opens it too);
- ``<out>.speedscope.json``: one profile per process and thread; open it at
  https://www.speedscope.app;
- ``<out>.top.txt``: what is printed: the top ``--top`` functions by own time (samples
  whose innermost frame is that function), and the files, processes and threads those
  samples fall in (the reactor thread's share is the part the GIL serializes).

py-spy pauses the leader for each sample (its default, which keeps stacks consistent), so
the throughput wrk prints here is a little lower than without the profiler. Samples of idle
threads are left out (py-spy's default): the percentages are of busy time. Every process is
stopped by PID at the end, also on error, Ctrl-C or SIGTERM; the folder is removed.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leifdb.cluster import free_ports  # noqa: E402
from wrk_compare import (  # noqa: E402  the sibling benchmark: cluster, preload, wrk script
    KEYS,
    WORKLOADS,
    LeifSystem,
    Stopped,
    WrkRunner,
    on_sigterm,
    preload,
)

SPY_STOP_WAIT = 30.0
PROCESS_PREFIX = "process "
THREAD_FRAME = re.compile(r"thread \((0x[0-9a-f]+|\d+)\)(: (?P<name>.*))?$")


def find_py_spy() -> str | None:
    """The venv's py-spy (beside this interpreter) first, else one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


# --- collapsed stacks --------------------------------------------------------------------


def read_folded(path: Path) -> list[tuple[list[str], int]]:
    """``frame;frame;... count`` lines: (frames outermost first, samples)."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def split_process(frames: list[str]) -> tuple[str, list[str]]:
    """Where a stack ran, from the innermost ``process <pid>:"<command>"`` frame of
    py-spy's --subprocesses (shortened to pid and program) and the ``thread (<tid>): <name>``
    frame of --threads; and the Python frames after them."""
    where, rest = [], frames
    last = max((i for i, f in enumerate(frames) if f.startswith(PROCESS_PREFIX)), default=-1)
    if last >= 0:
        pid, _, command = frames[last][len(PROCESS_PREFIX):].partition(":")
        words = command.strip('"').split()
        program = [Path(w).name for w in words[:3] if w != "-m"][:2]  # python twistd
        where.append(f"{pid} " + " ".join(program))
        rest = frames[last + 1:]
    if rest and (thread := THREAD_FRAME.match(rest[0])):
        where.append(thread.group("name") or thread.group(1))
        rest = rest[1:]
    return " / ".join(where), rest


def frame_file(frame: str) -> str:
    """``function (file.py)`` -> ``file.py``."""
    head, _, rest = frame.rpartition(" (")
    return rest.rstrip(")") if head else frame


def summarize(stacks: Iterable[tuple[list[str], int]], top: int) -> str:
    own: Counter[str] = Counter()
    files: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        process, python = split_process(frames)
        leaf = python[-1] if python else "(no Python frame)"
        own[leaf] += count
        files[frame_file(leaf)] += count
        processes[process or "(unknown)"] += count
        total += count
    if not total:
        return "py-spy recorded no samples"
    lines = [f"{total} samples of busy threads", "", f"top {top} functions by own time:"]
    for frame, count in own.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {count:>7}  {frame}")
    lines += ["", "own time by file:"]
    for name, count in files.most_common(15):
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    if processes:
        lines += ["", "samples by process / thread:"]
        for name, count in processes.most_common():
            lines.append(f"  {100 * count / total:5.1f}%  {name}")
    return "\n".join(lines)


def speedscope(stacks: Sequence[tuple[list[str], int]], name: str) -> dict[str, Any]:
    """The speedscope file format: shared frames and one sampled profile per process and
    thread."""
    frames: list[dict[str, str]] = []
    index: dict[str, int] = {}
    by_process: dict[str, tuple[list[list[int]], list[int]]] = {}
    for stack, count in stacks:
        process, python = split_process(stack)
        ids = []
        for frame in python:
            if frame not in index:
                index[frame] = len(frames)
                function, _, file = frame.rpartition(" (")
                frames.append({"name": function or frame, "file": file.rstrip(")")})
            ids.append(index[frame])
        samples, weights = by_process.setdefault(process or name, ([], []))
        samples.append(ids)
        weights.append(count)
    profiles = [
        {"type": "sampled", "name": process, "unit": "none", "startValue": 0,
         "endValue": sum(weights), "samples": samples, "weights": weights}
        for process, (samples, weights) in sorted(by_process.items(),
                                                  key=lambda item: -sum(item[1][1]))
    ]
    return {"$schema": "https://www.speedscope.app/file-format-schema.json",
            "shared": {"frames": frames}, "profiles": profiles, "name": name,
            "activeProfileIndex": 0, "exporter": "bench/profile_leader.py"}


# --- the run -----------------------------------------------------------------------------


def stop_py_spy(proc: subprocess.Popen) -> None:
    """SIGINT (py-spy writes its output on it), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(SPY_STOP_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def profile(args: argparse.Namespace, py_spy: str, wrk_binary: str, out: Path) -> int:
    folded = out.with_name(out.name + ".folded")
    with tempfile.TemporaryDirectory(prefix="leifdb-profile-", dir=args.dir,
                                     ignore_cleanup_errors=True) as tmp:
        system = LeifSystem(Path(tmp), free_ports(6), shlex.split(args.leifdb_args))
        wrk = WrkRunner(wrk_binary, Path(tmp))
        spy: subprocess.Popen | None = None
        try:
            system.start()
            leader = system.leader()
            taken = preload(system, leader.url)
            leader = system.leader()
            print(f"{KEYS:,} keys preloaded in {taken:.1f} s; profiling the leader "
                  f"(pid {leader.pid}) under {args.workload} at {args.conns} connections "
                  f"for {args.seconds} s", flush=True)
            with open(Path(tmp) / "py-spy.log", "wb") as spy_log_file:
                spy = subprocess.Popen(
                    [py_spy, "record", "--pid", str(leader.pid), "--subprocesses", "--threads", "--rate",
                     str(args.rate), "--nolineno", "--format", "raw", "-o", str(folded)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=spy_log_file)
            time.sleep(1.0)  # py-spy attaches before the load starts
            if spy.poll() is not None:
                raise RuntimeError("py-spy exited at once: "
                                   + (Path(tmp) / "py-spy.log").read_text()[-400:])
            result, wrk_cpu = wrk.run(leader.url, "leifdb", args.workload, args.conns,
                                      min(args.conns, 2), args.seconds)
            stop_py_spy(spy)
            spy_log = (Path(tmp) / "py-spy.log").read_text(errors="replace")
        finally:
            wrk.kill()
            if spy is not None:
                stop_py_spy(spy)
            system.stop()
    errors = result["status"] + sum(result[k] for k in ("connect", "read", "write", "timeout"))
    print(f"wrk: {result['requests'] / (result['duration_us'] / 1e6):,.0f} req/s, p50 "
          f"{result['p50_us'] / 1000:.2f} ms, p99 {result['p99_us'] / 1000:.1f} ms, "
          f"{errors} errors (wrk's own CPU {wrk_cpu:.2f} s)")
    if not folded.exists():
        print(f"py-spy wrote nothing: {spy_log[-400:]}", file=sys.stderr)
        return 1
    stacks = read_folded(folded)
    title = f"LeifDB leader, {args.workload} at {args.conns} connections"
    scope = out.with_name(out.name + ".speedscope.json")
    scope.write_text(json.dumps(speedscope(stacks, title)))
    text = summarize(stacks, args.top)
    out.with_name(out.name + ".top.txt").write_text(f"{title}\n{text}\n")
    print(text)
    print(f"\n{folded}\n{scope} (open at https://www.speedscope.app)\n"
          f"{out.with_name(out.name + '.top.txt')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=WORKLOADS, default="write")
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", help="output path prefix (default /tmp/leifdb-profile-...)")
    parser.add_argument("--leifdb-args", default="",
                        help='extra options for every LeifDB node, e.g. "--workers 2"')
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the cluster's temporary folder goes")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.conns < 1 or args.rate < 1:
        parser.error("--seconds, --conns and --rate must be at least 1")
    py_spy, wrk_binary = find_py_spy(), shutil.which("wrk")
    if py_spy is None:
        print("py-spy not found: .venv/bin/pip install py-spy")
    if wrk_binary is None:
        print("wrk not found: apt-get install wrk")
    if py_spy is None or wrk_binary is None:
        return 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or Path(tempfile.gettempdir()) / f"leifdb-profile-{args.workload}-{stamp}")
    out.parent.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return profile(args, py_spy, wrk_binary, out.absolute())
    except (KeyboardInterrupt, Stopped) as exc:
        print(f"interrupted ({type(exc).__name__}); every process was stopped",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
