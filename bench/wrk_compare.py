"""LeifDB beside etcd 3.4 under wrk: write, linearizable read and 50/50 mix at 1, 16 and 64
connections to the leader, fresh 3-node clusters of both per repeat, one table.

    python bench/wrk_compare.py [--seconds 10] [--repeats 2] [--conns 1,16,64]
        [--workloads write,read,mix] [--systems leifdb,etcd] [--json results.json]
        [--leifdb-args="--workers 2"] [--wrk-threads N] [--interleave] [--dir /var/tmp]

Set-up. Each repeat starts a fresh 3-node LeifDB cluster (``leifdb.cluster.LocalCluster``,
``--leifdb-args`` split by shlex and given to every node) and a fresh 3-node etcd cluster
(etcd's defaults, so fsync on; its v3 JSON gateway is the HTTP interface), all on 127.0.0.1
with data under one temporary folder (``--dir``; warned about if it is in memory) that is
removed at the end. Each is preloaded with the same 10,000 keys of 256-byte values (32
keep-alive client threads, a few seconds). Every process started
here is stopped by PID at the end, on error and on Ctrl-C or SIGTERM too; so are processes
the nodes forked, found by walking the process tree.

Workloads. ``bench/wrk/kv.lua``, one script for both systems: random keys among the
10,000, 256-byte values; ``write`` is LeifDB ``PUT /db/<key>`` with ``{"value": ...}`` and
etcd ``POST /v3/kv/put``; ``read`` is LeifDB ``GET /db/<key>`` and etcd ``POST
/v3/kv/range``, both linearizable by default; ``mix`` picks either with probability 1/2.
Load goes to the leader, found before every run. Latencies are wrk's (from a request's send
to its response, per connection, so a closed loop: no coordinated-omission correction).

Fairness. Only one system runs at a time: in each repeat one cluster is started,
preloaded, measured on every cell (workload, connections) and stopped before the other
starts, so neither pays for the other's idle heartbeats (measured with ``--interleave``:
an idle LeifDB cluster with its worker processes took about 0.06 cores, an idle etcd
cluster about 0.02, so keeping both up would tilt the comparison). The first system
alternates between repeats, so neither always runs first on a cool machine. On a machine
whose load drifts (shared), ``--interleave`` keeps both clusters up and runs each cell on
one right after the other instead, and reports the idle cluster's cores during each run.

CPU per request. For each system, utime + stime from ``/proc/<pid>/stat`` of every process
in the tree under each node's PID (a process's stat covers all its threads), plus the
cutime + cstime its parent gained when a child exited during the run; the delta over the
run divided by the requests wrk completed. Followers count: it is the cluster's CPU per
request. Kernel work outside those processes (loopback softirqs, the filesystem's journal
thread) is not attributed to either system.

Why wrk (Debian's wrk 4.1) is not the limit. Every request is formatted once in the
script's init(); request() only picks one at random and there is no response() hook, so at
16 and 64 connections wrk spends 10-30 µs of CPU per request against 200-700 for either
cluster, and at most about 0.13 of a core, while each of its ``-t`` = min(connections, 2)
threads could use a whole one. (Its figures include init(), 25-100 ms per thread, which is
why they look larger at 1 connection.) Its own CPU, from wait4's rusage, is printed for
every run as µs per request and as cores used: on a 2-core machine what wrk uses is taken
from the servers, in proportion to requests, for both systems alike, so it is shown rather
than hidden. ``--wrk-threads 1`` measured the same within this machine's noise.

Errors. wrk counts responses with a status above 399 (``summary.errors.status``) and
socket errors (connect, read, write, timeout); both are shown in the table. A 3xx (a
redirect from a node that lost leadership) would not be counted by wrk, so each run also
checks that the same node led in the same term before and after it, and after a write run
that the leader's commit index (LeifDB) or revision (etcd) advanced by at least the number
of writes wrk completed; a failed check is printed under the table and marks the cell.

Missing tools: without etcd (``apt-get install etcd-server``) LeifDB runs alone; without wrk
(``apt-get install wrk``) this falls back to ``bench/cluster_bench.py --no-etcd``, which
measures LeifDB alone with a Python client.
"""

from __future__ import annotations

import abc
import argparse
import base64
import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Iterable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leifdb.cluster import LocalCluster, free_ports, http_request  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "wrk" / "kv.lua"
KEYS = 10_000
VALUE_BYTES = 256
PRELOAD_THREADS = 32
WAIT = 30.0
STOP_WAIT = 10.0
LEFTOVER_GRACE = 2.0
SETTLE = 0.5
CLK_TCK = os.sysconf("SC_CLK_TCK")
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
SYSTEMS = ("leifdb", "etcd")
WORKLOADS = ("write", "read", "mix")
LABELS = {"leifdb": "LeifDB", "etcd": "etcd"}


# --- keys and values: the same ones bench/wrk/kv.lua writes --------------------------------


def key_of(i: int) -> str:
    return f"k{i:05d}"


def value_of(i: int, size: int = VALUE_BYTES) -> str:
    """The key, then filler ``i % 62`` (kv.lua: base64 of the value is then base64 of the
    6-byte key followed by the filler's, so wrk encodes each filler once)."""
    key = key_of(i)
    v = i % len(ALNUM)
    return key + "".join(ALNUM[(v + j * 13) % len(ALNUM)] for j in range(size - len(key)))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- process CPU accounting -------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` this script needs, in clock ticks."""

    pid: int
    ppid: int
    state: str  # "Z": a zombie, gone but for its exit status
    start: int
    own: int  # utime + stime: this process, all its threads
    reaped: int  # cutime + cstime: its children that exited and were waited for


def read_stat(pid: int) -> ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    rest = text.rpartition(")")[2].split()  # rest[0] is field 3 (state)
    return ProcStat(
        pid=pid,
        ppid=int(rest[1]),
        state=rest[0],
        start=int(rest[19]),
        own=int(rest[11]) + int(rest[12]),
        reaped=int(rest[13]) + int(rest[14]),
    )


def all_stats() -> dict[int, ProcStat]:
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def process_tree(roots: Iterable[int], stats: dict[int, ProcStat]) -> dict[int, ProcStat]:
    """``roots`` and all their descendants that are alive (or zombies) now."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: dict[int, ProcStat] = {}
    todo = [pid for pid in roots if pid in stats]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = stats[pid]
            todo.extend(children.get(pid, ()))
    return found


def tree_ticks(tree: dict[int, ProcStat]) -> int:
    """CPU of the tree so far: its processes' own time plus what their exited children
    left in cutime/cstime. A child that exits between two samples moves from the first
    term to its parent's second, so deltas count it exactly once."""
    return sum(s.own + s.reaped for s in tree.values())


# --- the systems under test ---------------------------------------------------------------


@dataclass
class Leader:
    url: str
    pid: int
    marker: tuple[Any, ...]  # who leads, in which term: unchanged over a clean run
    writes: int  # a counter every acknowledged write advances (commit index, revision)


class System(abc.ABC):
    """A 3-node cluster of one kind on 127.0.0.1; started, observed and stopped by PID."""

    name = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.seen: dict[int, int] = {}  # pid -> start time of every process observed

    @abc.abstractmethod
    def start(self) -> None:
        """Start the three nodes and wait for a leader."""

    @abc.abstractmethod
    def root_pids(self) -> list[int]:
        """The node processes that are running."""

    @abc.abstractmethod
    def leader(self) -> Leader:
        """The current leader (waits for one, bounded)."""

    @abc.abstractmethod
    def preload_request(self, i: int) -> tuple[str, str, bytes]:
        """Method, path and body writing key ``i``."""

    def tree(self, stats: dict[int, ProcStat]) -> dict[int, ProcStat]:
        tree = process_tree(self.root_pids(), stats)
        for stat in tree.values():
            self.seen[stat.pid] = stat.start
        return tree

    def stop(self) -> None:
        """Stop the nodes, then any process they forked that outlived them."""
        self.tree(all_stats())
        self.stop_nodes()
        self.kill_leftovers()

    @abc.abstractmethod
    def stop_nodes(self) -> None:
        """Stop the node processes, by PID."""

    def kill_leftovers(self) -> None:
        """SIGKILL any process once seen in this system's tree that is still alive a
        moment after its node stopped (a forked worker whose node was killed), by PID and
        only if its start time shows it is the same process."""
        def alive() -> list[int]:
            return [pid for pid, started in self.seen.items()
                    if (stat := read_stat(pid)) is not None and stat.start == started
                    and stat.state != "Z"]

        deadline = time.monotonic() + LEFTOVER_GRACE
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in alive():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class LeifSystem(System):
    name = "leifdb"

    def __init__(self, workdir: Path, ports: Sequence[int], extra_args: Sequence[str]) -> None:
        super().__init__(workdir)
        self.cluster = LocalCluster(workdir / "leifdb", ports[:3], ports[3:],
                                    extra_args=extra_args)

    def start(self) -> None:
        self.cluster.start()
        self.cluster.wait_for_leader(WAIT)

    def stop_nodes(self) -> None:
        self.cluster.stop()

    def root_pids(self) -> list[int]:
        return [pid for i in range(len(self.cluster)) if (pid := self.cluster.pid(i))]

    def leader(self) -> Leader:
        i = self.cluster.wait_for_leader(WAIT)
        health = self.cluster.health(i) or {}
        pid = self.cluster.pid(i)
        if pid is None or health.get("role") != "leader":
            raise RuntimeError(f"LeifDB leader n{i + 1} stopped leading or exited")
        return Leader(self.cluster.url(i), pid, (health.get("node"), health.get("term")),
                      int(health.get("commit_index") or 0))

    def preload_request(self, i: int) -> tuple[str, str, bytes]:
        return "PUT", f"/db/{key_of(i)}", json.dumps({"value": value_of(i)}).encode()


class EtcdSystem(System):
    name = "etcd"

    def __init__(self, workdir: Path, ports: Sequence[int], binary: str) -> None:
        super().__init__(workdir)
        self.binary = binary
        self.client_ports, self.peer_ports = ports[:3], ports[3:]
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        initial = ",".join(f"e{i}=http://127.0.0.1:{p}" for i, p in enumerate(self.peer_ports))
        base = self.workdir / "etcd"
        base.mkdir(parents=True, exist_ok=True)
        for i in range(3):
            client = f"http://127.0.0.1:{self.client_ports[i]}"
            peer = f"http://127.0.0.1:{self.peer_ports[i]}"
            with open(base / f"e{i}.log", "wb") as log:
                self.procs.append(subprocess.Popen(
                    [self.binary, "--name", f"e{i}", "--data-dir", str(base / f"e{i}"),
                     "--listen-client-urls", client, "--advertise-client-urls", client,
                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                     "--initial-cluster", initial, "--initial-cluster-state", "new",
                     "--initial-cluster-token", "leifdb-bench"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
        self.leader()

    def stop_nodes(self) -> None:
        stop_children(self.procs)

    def root_pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def _status(self, port: int) -> dict[str, Any] | None:
        try:
            code, body, _ = http_request(f"http://127.0.0.1:{port}", "POST",
                                         "/v3/maintenance/status", {}, timeout=2.0)
        except OSError:
            return None
        return body if code == 200 and isinstance(body, dict) else None

    def leader(self) -> Leader:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for i, port in enumerate(self.client_ports):
                status = self._status(port)
                if status and status.get("leader") == status["header"]["member_id"]:
                    return Leader(f"http://127.0.0.1:{port}", self.procs[i].pid,
                                  (status["leader"], status.get("raftTerm")),
                                  int(status["header"].get("revision") or 0))
            time.sleep(0.2)
        raise RuntimeError(f"etcd elected no leader in {WAIT:.0f} s; see {self.workdir}/etcd")

    def preload_request(self, i: int) -> tuple[str, str, bytes]:
        body = {"key": b64(key_of(i)), "value": b64(value_of(i))}
        return "POST", "/v3/kv/put", json.dumps(body).encode()


def stop_children(procs: Sequence[subprocess.Popen]) -> None:
    """SIGTERM each, wait, SIGKILL what is left: by PID, children of this process only."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def preload(system: System, url: str, keys: int = KEYS) -> float:
    """Write keys 0..keys-1 through PRELOAD_THREADS keep-alive connections; seconds taken.
    Any status but 200 aborts: the read workloads need every key."""
    host_port = url.removeprefix("http://")
    errors: list[str] = []

    def worker(first: int) -> None:
        conn = http.client.HTTPConnection(host_port, timeout=30)
        try:
            for i in range(first, keys, PRELOAD_THREADS):
                method, path, body = system.preload_request(i)
                conn.request(method, path, body, {"Content-Type": "application/json"})
                reply = conn.getresponse()
                data = reply.read()
                if reply.status != 200:
                    errors.append(f"{method} {path}: {reply.status} {data[:120]!r}")
                    return
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(PRELOAD_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{system.name} preload failed ({len(errors)} errors), first: "
                           f"{errors[0]}")
    return time.monotonic() - started


# --- wrk ------------------------------------------------------------------------------


class WrkRunner:
    """Runs wrk and reports its JSON line and its own CPU (from wait4's rusage)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def run(self, url: str, system: str, workload: str, conns: int, threads: int,
            seconds: int) -> tuple[dict[str, Any], float]:
        out_path = self.workdir / "wrk.out"
        command = [self.binary, f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout",
                   "5s", "-s", str(WRK_SCRIPT), url, "--", system, workload, str(KEYS),
                   str(VALUE_BYTES)]
        with open(out_path, "wb") as out:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.proc = None
        text = out_path.read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.startswith("WRK_RESULT ")]
        if not lines:
            raise RuntimeError(f"wrk printed no result (exit {status}): {text[-500:]}")
        return json.loads(lines[-1].removeprefix("WRK_RESULT ")), usage.ru_utime + usage.ru_stime

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- one run --------------------------------------------------------------------------------


@dataclass
class Run:
    repeat: int
    system: str
    workload: str
    conns: int
    wrk_threads: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_s: float
    cpu_us_per_req: float
    leader_cpu_s: float
    leader_children_cpu_s: float  # the leader's forked processes (LeifDB's HTTP workers)
    processes: int
    wrk_cpu_s: float
    wrk_cpu_us_per_req: float
    wrk_cores: float
    other_cores: float | None  # the idle other cluster, for the record
    non_2xx: int
    socket_errors: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def measure(system: System, others: Sequence[System], wrk: WrkRunner, workload: str,
            conns: int, threads: int, seconds: int, repeat: int) -> Run:
    leader = system.leader()
    stats = all_stats()
    before = system.tree(stats)
    others_before = [o.tree(stats) for o in others]
    started = time.monotonic()
    result, wrk_cpu = wrk.run(leader.url, system.name, workload, conns, threads, seconds)
    elapsed = time.monotonic() - started
    stats = all_stats()
    after = system.tree(stats)
    others_after = [o.tree(stats) for o in others]
    after_leader = system.leader()

    cpu = (tree_ticks(after) - tree_ticks(before)) / CLK_TCK
    leader_cpu = leader_children_cpu = 0.0
    if leader.pid in before and leader.pid in after:
        leader_cpu = (tree_ticks({leader.pid: after[leader.pid]})
                      - tree_ticks({leader.pid: before[leader.pid]})) / CLK_TCK
        leader_tree = (tree_ticks(process_tree([leader.pid], after))
                       - tree_ticks(process_tree([leader.pid], before))) / CLK_TCK
        leader_children_cpu = leader_tree - leader_cpu
    requests = int(result["requests"])
    duration = result["duration_us"] / 1e6
    problems = []
    if after_leader.marker != leader.marker:
        problems.append(f"leader/term changed during the run: {leader.marker} -> "
                        f"{after_leader.marker} (wrk does not count 3xx redirects)")
    if workload == "write" and after_leader.writes - leader.writes < requests - int(
            result["status"]):
        problems.append(f"{requests} writes answered but the leader's counter advanced by "
                        f"{after_leader.writes - leader.writes}")
    other_cores = None
    if others:
        other_cores = sum(tree_ticks(a) - tree_ticks(b)
                          for a, b in zip(others_after, others_before)) / CLK_TCK / elapsed
    per_req = 1e6 / requests if requests else float("nan")
    return Run(
        repeat=repeat, system=system.name, workload=workload, conns=conns,
        wrk_threads=threads, requests=requests, seconds=duration,
        rps=requests / duration if duration else 0.0,
        p50_ms=result["p50_us"] / 1000, p90_ms=result["p90_us"] / 1000,
        p99_ms=result["p99_us"] / 1000, max_ms=result["max_us"] / 1000,
        cpu_s=cpu, cpu_us_per_req=cpu * per_req, leader_cpu_s=leader_cpu,
        leader_children_cpu_s=leader_children_cpu,
        processes=len(after), wrk_cpu_s=wrk_cpu, wrk_cpu_us_per_req=wrk_cpu * per_req,
        wrk_cores=wrk_cpu / elapsed, other_cores=other_cores,
        non_2xx=int(result["status"]),
        socket_errors={k: int(result[k]) for k in ("connect", "read", "write", "timeout")},
        problems=problems,
    )


def cpu_split(run: Run) -> str:
    """Where the cluster's CPU per request went: the leader's process, the processes it
    forked (LeifDB's HTTP workers), and the rest (the followers and theirs)."""
    per_req = 1e6 / run.requests if run.requests else float("nan")
    own = run.leader_cpu_s * per_req
    forked = run.leader_children_cpu_s * per_req
    rest = run.cpu_us_per_req - own - forked
    workers = f" + its workers {forked:.0f}" if run.leader_children_cpu_s else ""
    return f"leader {own:.0f}{workers} + others {rest:.0f}"


def describe(run: Run) -> str:
    errors = f", {run.errors} errors" if run.errors else ""
    flag = f"  !! {'; '.join(run.problems)}" if run.problems else ""
    return (f"  r{run.repeat} {run.system:<6} {run.workload:<5} c={run.conns:<3} "
            f"{run.rps:>8,.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.1f} ms  "
            f"CPU {run.cpu_us_per_req:5.0f} us/req ({run.processes} procs: {cpu_split(run)})  "
            f"wrk {run.wrk_cpu_us_per_req:4.1f} us/req {run.wrk_cores:.2f} cores{errors}{flag}")


# --- the table ---------------------------------------------------------------------------


def span(values: Sequence[float], fmt: str) -> str:
    """``min-max`` (one value if they round alike); ``-`` for none."""
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return "-"
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low}-{high}"


def table(runs: Sequence[Run], systems: Sequence[str], workloads: Sequence[str],
          conns: Sequence[int]) -> str:
    header = ["workload", "conns"]
    for s in systems:
        label = LABELS[s]
        header += [f"{label} req/s", "p50 ms", "p99 ms", "CPU µs/req", "errors"]
    both = len(systems) == 2
    if both:
        header += ["req/s ratio", "CPU ratio", "p50 ratio", "p99 ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for workload in workloads:
        for c in conns:
            cell = {s: [r for r in runs if (r.system, r.workload, r.conns) == (s, workload, c)]
                    for s in systems}
            if not any(cell.values()):
                continue
            row = [workload, str(c)]
            for s in systems:
                rs = cell[s]
                errors = sum(r.errors for r in rs)
                mark = "!" if any(r.problems for r in rs) else ""
                row += [span([r.rps for r in rs], "{:,.0f}"),
                        span([r.p50_ms for r in rs], "{:.2f}"),
                        span([r.p99_ms for r in rs], "{:.1f}"),
                        span([r.cpu_us_per_req for r in rs], "{:.0f}"), f"{errors}{mark}"]
            if both:
                pairs = [(a, b) for a in cell[systems[0]] for b in cell[systems[1]]
                         if a.repeat == b.repeat]
                for attr in ("rps", "cpu_us_per_req", "p50_ms", "p99_ms"):
                    row.append(span([getattr(a, attr) / getattr(b, attr) for a, b in pairs
                                     if getattr(b, attr)], "{:.2f}"))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def footnotes(runs: Sequence[Run]) -> list[str]:
    notes = []
    if runs:
        worst = max(runs, key=lambda r: r.wrk_cores)
        notes.append(
            f"wrk's own CPU: {span([r.wrk_cpu_us_per_req for r in runs], '{:.1f}')} µs/req, "
            f"at most {worst.wrk_cores:.2f} cores (-t{worst.wrk_threads} -c{worst.conns}, "
            f"{worst.system} {worst.workload}); machine: {os.cpu_count()} cores.")
        idle = [r.other_cores for r in runs if r.other_cores is not None]
        if idle:
            notes.append(f"The other, idle cluster used at most {max(idle):.3f} cores during "
                         "a run.")
    for r in runs:
        if r.errors:
            socket = ", ".join(f"{k} {v}" for k, v in r.socket_errors.items() if v)
            notes.append(f"r{r.repeat} {r.system} {r.workload} c={r.conns}: {r.non_2xx} "
                         "responses with status >= 400"
                         + (f"; socket errors: {socket}" if socket else ""))
        for problem in r.problems:
            notes.append(f"! r{r.repeat} {r.system} {r.workload} c={r.conns}: {problem}")
    return notes


# --- the whole run -----------------------------------------------------------------------


class Stopped(Exception):
    """SIGTERM: unwind so every process is stopped in the ``finally`` blocks."""


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stopped(f"signal {signum}")


def filesystem_type(path: Path) -> str:
    """The type of the mount holding ``path`` (from /proc/mounts), '' if unknown."""
    best, kind = "", ""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and (resolved == parts[1] or resolved.startswith(
                parts[1].rstrip("/") + "/")) and len(parts[1]) >= len(best):
            best, kind = parts[1], parts[2]
    return kind


def make_systems(names: Sequence[str], workdir: Path, args: argparse.Namespace,
                 etcd_binary: str | None) -> list[System]:
    """The systems named, on ports picked in one go so that no two of them collide."""
    ports = free_ports(6 * len(names))
    systems: list[System] = []
    for n, name in enumerate(names):
        mine = ports[6 * n: 6 * n + 6]
        if name == "leifdb":
            systems.append(LeifSystem(workdir, mine, shlex.split(args.leifdb_args)))
        elif etcd_binary is not None:
            systems.append(EtcdSystem(workdir, mine, etcd_binary))
    return systems


def run_repeat(repeat: int, names: Sequence[str], base: Path, wrk: WrkRunner,
               args: argparse.Namespace, etcd_binary: str | None, runs: list[Run]) -> None:
    """One repeat on fresh clusters; each run is appended to ``runs`` as it ends, so an
    interrupted benchmark still reports what it measured. Odd repeats start with the
    first system named, even ones with the last."""
    order = list(names) if repeat % 2 else list(reversed(names))
    groups = [order] if args.interleave else [[name] for name in order]
    for group in groups:
        systems = make_systems(group, base / f"r{repeat}", args, etcd_binary)
        try:
            for system in systems:
                system.start()
                taken = preload(system, system.leader().url)
                print(f"  r{repeat} {system.name}: started, {KEYS:,} keys preloaded in "
                      f"{taken:.1f} s", flush=True)
            for workload in args.workloads:
                for conns in args.conns:
                    threads = min(args.wrk_threads or 2, conns)  # wrk needs -c >= -t
                    for system in systems:
                        time.sleep(SETTLE)
                        others = [o for o in systems if o is not system]
                        run = measure(system, others, wrk, workload, conns, threads,
                                      args.seconds, repeat)
                        print(describe(run), flush=True)
                        runs.append(run)
        finally:
            wrk.kill()
            for system in systems:
                system.stop()


def fallback_without_wrk(args: argparse.Namespace) -> int:
    print("wrk not found: apt-get install wrk")
    print("nothing measured with wrk; running bench/cluster_bench.py --no-etcd "
          "(LeifDB alone, Python client) instead", flush=True)
    command = [sys.executable, str(BENCH_DIR / "cluster_bench.py"), "--no-etcd",
               "--seconds", str(args.seconds)]
    return subprocess.call(command)


def comma_list(text: str, allowed: Sequence[str]) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    wrong = [t for t in items if t not in allowed]
    if wrong or not items:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}; got {text!r}")
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="per run (wrk takes whole s)")
    parser.add_argument("--repeats", type=int, default=2, help="fresh clusters each time")
    parser.add_argument("--conns", default="1,16,64",
                        type=lambda t: [int(c) for c in t.split(",") if c.strip()])
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        type=lambda t: comma_list(t, WORKLOADS))
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        type=lambda t: comma_list(t, SYSTEMS))
    parser.add_argument("--leifdb-args", default="",
                        help='extra options for every LeifDB node, e.g. "--workers 2"')
    parser.add_argument("--wrk-threads", type=int, default=0,
                        help="wrk -t (default: min(connections, 2))")
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the temporary data folders go (a real disk: fsync)")
    parser.add_argument("--interleave", action="store_true",
                        help="keep both clusters up and run each cell on one right after "
                             "the other (for a machine whose load drifts)")
    parser.add_argument("--json", help="also write every run's figures here")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.repeats < 1 or not args.conns or min(args.conns) < 1:
        parser.error("--seconds, --repeats and --conns must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = list(args.systems)
    etcd_binary = shutil.which("etcd")
    if "etcd" in names and etcd_binary is None:
        print("etcd not found: apt-get install etcd-server")
        print("running LeifDB alone")
        names.remove("etcd")
    wrk_binary = shutil.which("wrk")
    if wrk_binary is None:
        return fallback_without_wrk(args) if "leifdb" in names else 0
    if not names:
        print("nothing to measure")
        return 0
    signal.signal(signal.SIGTERM, on_sigterm)
    base_dir = Path(args.dir)
    if filesystem_type(base_dir) in ("tmpfs", "ramfs"):
        print(f"warning: {base_dir} is in memory, so fsync costs nothing there; "
              "use --dir on a disk", file=sys.stderr)
    print(f"{' and '.join(LABELS[n] for n in names)}: 3 nodes; {KEYS:,} keys, "
          f"{VALUE_BYTES}-byte values; {args.seconds} s per run; {args.repeats} repeats; "
          f"wrk {wrk_binary}" + (f"; LeifDB args: {args.leifdb_args}" if args.leifdb_args
                                 else ""), flush=True)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="leifdb-wrk-", dir=base_dir,
                                     ignore_cleanup_errors=True) as tmp:
        wrk = WrkRunner(wrk_binary, Path(tmp))
        try:
            for repeat in range(1, args.repeats + 1):
                run_repeat(repeat, names, Path(tmp), wrk, args, etcd_binary, runs)
        except (KeyboardInterrupt, Stopped) as exc:
            print(f"interrupted ({type(exc).__name__}); every process was stopped",
                  file=sys.stderr)
            if not runs:
                return 130
    print()
    print(table(runs, names, args.workloads, args.conns))
    print()
    for note in footnotes(runs):
        print(note)
    if args.json:
        document = {"keys": KEYS, "value_bytes": VALUE_BYTES, "seconds": args.seconds,
                    "leifdb_args": args.leifdb_args, "cpu_count": os.cpu_count(),
                    "runs": [asdict(r) for r in runs]}
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n")
        print(f"raw results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
