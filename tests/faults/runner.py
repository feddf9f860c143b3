"""The Jepsen-style fault test: real ``twistd`` nodes, concurrent HTTP clients, a nemesis,
and the linearizability checker on what the clients saw.

One run: start an N-node cluster on 127.0.0.1 whose Raft links go through ``ProxyNet``;
start the clients (``txn_share`` of their operations are transactions within the key pairs
k0+k1, k2+k3, ...) and the watchers (``tests.faults.watch``: SSE streams that resume on
random nodes); inject faults one at a time for ``duration`` seconds (in ``cover`` mode
every fault kind comes once, in random order, before random picks); heal everything;
require the cluster to accept a write again within ``recovery_timeout``; stop the clients;
read every key (recorded too); check that no acknowledged, not overwritten write is lost;
let the watchers catch up, stop them, and take the reference watch history (every node's
kept history now, merged with the ones a ``Historian`` took during the run); check that
every acknowledged write and final read is in it, and every watcher's stream against it by
the six properties (ordered, unique, atomic, reliable, resumable, bookmarkable); check the
whole history for linearizability.

With ``power_cuts`` (the default) the nodes run on the write-back file system
(``--unsafe-test-writeback-fs``: what a node has not synced lives only in its memory), so
every SIGKILL the nemesis sends is a power cut of that node, and the ``power_cut`` fault cuts
every node at the same instant (or one node). ``--no-power-cuts`` runs the nodes on the real
file system, where a SIGKILL keeps the page cache.

With ``membership`` (``--membership``) the nemesis also replaces members (remove one
through the admin API, a fresh node joins with ``--join`` and is promoted) and cuts a
follower off and back (the leader and its term must not change: PreVote); see
``tests.faults.nemesis.MEMBERSHIP_KINDS``. The lock clients keep the addresses they
started with.

With ``lock_clients`` > 0, lock clients run too (``tests.faults.lockclient``, one process
each: leases, ``POST /lock``, writes fenced by the lock's token), and a second nemesis
(``tests.faults.lockfleet.HolderNemesis``) SIGSTOPs a lock holder for longer than its
lease's TTL, or SIGKILLs it, every few seconds, while the node faults go on. Their fenced
writes and reads join the linearizability check, and the lock checker
(``tests.faults.locks.check_locks``) checks tokens and fencing against their history, the
final reads and the committed changes of the watch reference.

The run fails on any violation. On any failure the history, the watchers' streams, the
reference, the lock clients' history, the seed, the nemesis' timeline and every node's log
are kept in ``fault-runs/<timestamp>-<seed>/``.

Command line (``make chaos``)::

    python -m tests.faults.runner [--duration 10m] [--nodes 5] [--seed N] [--clients 5]
                                  [--txn-share 0.2] [--watchers 3] [--lock-clients 3]
                                  [--locks 1] [--lease-ttl 3] [--no-power-cuts]
                                  [--membership] [--faults kill,power_cut,...]

exits 0 when the run passed, 1 when it failed (the last line says why), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from tests.faults.clients import Client, ClientConfig, OpSpec, Recorder, execute
from tests.faults.cluster import ProxiedCluster
from tests.faults.history import Op, save_history
from tests.faults.linearizability import CheckResult, check
from tests.faults.lockfleet import LOCK_FAULT_KINDS, HolderNemesis, LockFleet, as_kv_ops
from tests.faults.locks import (
    FENCED_PREFIX,
    LOCK_PREFIX,
    LockCheck,
    LockOp,
    check_locks,
    dump_lock_history,
    fenced_key,
)
from tests.faults.nemesis import Fault, Nemesis, fault_kinds
from tests.faults.watch import (
    Historian,
    Reference,
    WatchResult,
    Watcher,
    check_watch,
    cross_check,
    fetch_reference,
    summarize,
)

__all__ = ["RunConfig", "RunResult", "lost_writes", "main", "parse_duration", "run"]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "fault-runs"


@dataclass
class RunConfig:
    """Everything a run depends on; the same config and seed replay the same choices
    (though real processes never replay exactly the same interleaving)."""

    seed: int
    nodes: int = 3
    duration: float = 60.0
    clients: int = 5
    keys: int = 5
    election_timeout_ms: int = 400
    heartbeat_interval_ms: int = 50
    snapshot_entries: int = 200
    client_timeout: float = 2.5
    cover: bool = True
    fault_hold: tuple[float, float] = (1.0, 4.0)
    warmup: float = 0.0  # seconds of traffic before the first fault
    quiet: tuple[float, float] = (1.0, 2.5)
    recovery_timeout: float = 20.0
    check_timeout: float = 600.0
    out_dir: Path = DEFAULT_OUT
    keep: bool = False
    # Transactions: this share of the clients' operations, on the key pairs (k0, k1),
    # (k2, k3), ... (the checker's groups); 0 for none.
    txn_share: float = 0.2
    # Watchers: how many, each on one of WATCHES in turn (key, prefix).
    watchers: int = 3
    catch_up_timeout: float = 20.0
    # Lock clients (processes) on ``locks`` locks named l0, l1, ...; 0 for none. Their
    # leases' TTL (the service's minimum is 2 s), how long the server may make a lock
    # request wait, and the holder nemesis: seconds between its actions, share of kills.
    lock_clients: int = 3
    locks: int = 1
    lease_ttl: float = 3.0
    lock_wait: float = 3.0
    holder_interval: tuple[float, float] = (2.0, 5.0)
    holder_kill_share: float = 0.25
    # Nodes on the write-back file system (SIGKILL = power cut) and the power_cut fault.
    power_cuts: bool = True
    # The membership kinds (replace_member, isolate_follower) in the default mix too.
    membership: bool = False
    # The fault kinds to inject; empty for every kind (``nemesis.fault_kinds``).
    faults: tuple[str, ...] = ()
    # A command that replaces ``twistd`` for the nodes (a planted bug's wrapper); empty
    # for twistd itself.
    launcher: tuple[str, ...] = ()

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.faults or fault_kinds(self.power_cuts, self.membership)


# What watcher i watches: everything, one key of a transaction pair, a prefix of one key.
WATCHES: tuple[tuple[str, bool], ...] = (("", True), ("k1", False), ("k2", True), ("k", True))


@dataclass
class RunResult:
    seed: int
    verdict: bool | None
    check: CheckResult | None
    ops: int
    outcomes: Counter[str]
    kinds: Counter[tuple[str, str]]
    faults: Counter[str]
    problems: list[str] = field(default_factory=list)
    recovery: float | None = None
    checker_seconds: float = 0.0
    folder: Path | None = None
    txns: int = 0
    watches: list[WatchResult] = field(default_factory=list)
    reference: Reference | None = None
    writes_cross_checked: int = 0
    locks: LockCheck | None = None
    lock_ops: list[LockOp] = field(default_factory=list)

    @property
    def watch_ok(self) -> bool:
        return all(w.ok for w in self.watches)

    @property
    def events_checked(self) -> int:
        return sum(w.checked for w in self.watches)

    @property
    def passed(self) -> bool:
        return (self.verdict is True and not self.problems and self.watch_ok
                and (self.locks is None or self.locks.ok))

    def final_line(self) -> str:
        verdict = {True: "linearizable", False: "NOT linearizable",
                   None: "undecided (checker timed out)"}[self.verdict]
        status = "PASS" if self.passed else "FAIL"
        extra = f"; {len(self.problems)} other problem(s)" if self.problems else ""
        kept = f"; evidence in {self.folder}" if self.folder else ""
        locks = ""
        if self.locks is not None:
            c = self.locks.counts
            locks = (f", locks {'ok' if self.locks.ok else 'VIOLATED'}: {c['acquired']} "
                     f"acquisitions, {c['accepted']} fenced writes accepted, {c['rejected']} "
                     "rejected")
        watch = ""
        if self.watches:
            bad = sum(not w.ok for w in self.watches)
            watch = (f", {len(self.watches)} watchers: {self.events_checked} events checked, "
                     + ("properties hold" if not bad else
                        f"{bad} violate {summarize(self.watches)}"))
        return (f"{status}: {verdict} ({self.ops} ops incl. {self.txns} txns, checker "
                f"{self.checker_seconds:.1f} s{watch}{locks}, seed {self.seed}){extra}{kept}")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``30s``, ``10m``, ``1h`` or ``1m30s``."""
    text = text.strip().lower()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"bad duration {text!r}: use e.g. 30s, 10m, 1h, 1m30s")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def lost_writes(ops: Sequence[Op], final_reads: dict[str, Op]) -> list[str]:
    """Acknowledged writes missing from the final state, judged by revision (log index).

    For each key read at the end (after every client stopped): a value at revision ``r``
    means no acknowledged write of that key may have a higher revision; an absent key
    means the acknowledged write with the highest revision is a delete, or some delete that
    may have happened (ok or unknown) came after it.
    """
    problems = []
    for key, final in sorted(final_reads.items()):
        assert final.seen is not None
        writes = [op for op in ops if op.outcome == "ok" and op.revision is not None
                  and _writes_key(op, key) is not None]
        if not writes:
            continue
        top = max(writes, key=lambda op: op.revision or 0)
        if final.seen.value is not None:
            r = final.seen.revision or 0
            later = [op for op in writes if (op.revision or 0) > r]
            if later:
                problems.append(
                    f"lost write on {key!r}: the final read saw revision {r} but an "
                    f"acknowledged write has a higher one: {later[0].describe()}")
        elif _writes_key(top, key) == "put":
            deletes = [op for op in ops if _may_delete(op, key)
                       and op.outcome in ("ok", "unknown")
                       and (op.revision is None or op.revision > (top.revision or 0))
                       and (op.complete is None or op.complete > top.invoke)]
            if not deletes:
                problems.append(
                    f"lost write on {key!r}: the key is absent at the end, but the last "
                    f"acknowledged write put it and no delete followed: {top.describe()}")
    return problems


def _writes_key(op: Op, key: str) -> str | None:
    """"put" or "delete" when the acknowledged ``op`` wrote ``key``, else None."""
    if op.kind == "txn":
        if op.outcome != "ok" or op.txn is None or op.succeeded is None:
            return None
        for t in op.txn.branch(op.succeeded):
            if t.key == key and t.op != "get":
                return t.op
        return None
    if op.key != key or op.kind == "read" or op.condition_failed:
        return None
    return op.kind


def _may_delete(op: Op, key: str) -> bool:
    if op.kind == "txn":
        assert op.txn is not None
        return any(t.key == key and t.op == "delete" for t in op.txn.success + op.txn.failure)
    return op.key == key and op.kind == "delete"


class _Run:
    """One run's state; ``execute`` returns the result. Every process and proxy it
    starts is stopped in ``finally``."""

    def __init__(self, config: RunConfig, out: Callable[[str], None]) -> None:
        self.config = config
        self.out = out
        self.t0 = time.monotonic()
        self.rng = random.Random(config.seed)
        self.timeline: list[str] = []
        self.problems: list[str] = []
        self.recorder = Recorder()
        self.keys = [f"k{i}" for i in range(config.keys)]
        self.node_errors: list[str] = []
        self.watchers: list[Watcher] = []
        self.node_events: Counter[str] = Counter()

    def clock(self) -> float:
        return round(time.monotonic() - self.t0, 6)

    def log(self, line: str) -> None:
        stamped = f"[{self.clock():8.2f}] {line}"
        self.timeline.append(stamped)
        self.out(stamped)

    def execute(self) -> RunResult:
        cfg = self.config
        work = Path(tempfile.mkdtemp(prefix=f"leifdb-faults-{cfg.seed}-"))
        cluster = ProxiedCluster(
            work, cfg.nodes, seed=self.rng.randrange(1 << 30),
            extra_args=[
                "--election-timeout", str(cfg.election_timeout_ms),
                "--heartbeat-interval", str(cfg.heartbeat_interval_ms),
                "--snapshot-entries", str(cfg.snapshot_entries),
            ],
            writeback=cfg.power_cuts, launcher=cfg.launcher,
        )
        logs = {node.name: node.log_path for node in cluster.nodes}
        nemesis = Nemesis(cluster, random.Random(self.rng.randrange(1 << 30)), log=self.log,
                          election_timeout=cfg.election_timeout_ms / 1000.0)
        stop = threading.Event()
        stop_watching = threading.Event()
        clients: list[Client] = []
        watchers: list[Watcher] = []
        final_reads: dict[str, Op] = {}
        recovery: float | None = None
        reference: Reference | None = None
        historian: Historian | None = None
        fleet: LockFleet | None = None
        holder_nemesis: HolderNemesis | None = None
        stop_holders = threading.Event()
        lock_names = [f"l{i}" for i in range(cfg.locks)] if cfg.lock_clients else []
        try:
            cluster.start_all()
            leader = cluster.wait_for_leader(30)
            pairs = [(self.keys[i], self.keys[i + 1]) for i in range(0, len(self.keys) - 1, 2)]
            txn_share = cfg.txn_share if pairs else 0.0
            self.log(f"{cfg.nodes} nodes up, leader {cluster.names[leader]}; "
                     f"{cfg.clients} clients on keys {', '.join(self.keys)}"
                     + (f", {txn_share:.0%} transactions on pairs "
                        + ", ".join("+".join(p) for p in pairs) if txn_share else "")
                     + f"; {cfg.watchers} watchers")
            client_config = ClientConfig(keys=self.keys, timeout=cfg.client_timeout,
                                         txn_pairs=pairs, txn_share=txn_share)
            clients = [
                Client(i, cluster.http_addresses, self.recorder, stop, client_config,
                       seed=self.rng.randrange(1 << 30), clock=self.clock)
                for i in range(cfg.clients)
            ]
            watchers = [
                Watcher(i, *WATCHES[i % len(WATCHES)], cluster.http_addresses, stop_watching,
                        seed=self.rng.randrange(1 << 30), clock=self.clock)
                for i in range(cfg.watchers)
            ]
            self.watchers = watchers
            for client in clients:
                client.start()
            for watcher in watchers:
                watcher.start()
            if watchers:
                historian = Historian(
                    lambda: {cluster.names[i]: cluster.http_address(i) for i in cluster.live},
                    stop_watching, seed=self.rng.randrange(1 << 30))
                historian.start()
            if lock_names:
                fleet = LockFleet(work / "locks", cluster.http_addresses(), lock_names,
                                  cfg.lock_clients, seed=self.rng.randrange(1 << 30), t0=self.t0,
                                  ttl=cfg.lease_ttl, timeout=cfg.client_timeout,
                                  lock_wait=cfg.lock_wait, log=self.log)
                fleet.start()
                self.log(f"{cfg.lock_clients} lock clients on locks {', '.join(lock_names)}, "
                         f"lease TTL {cfg.lease_ttl:g} s")
                holder_nemesis = HolderNemesis(
                    fleet, random.Random(self.rng.randrange(1 << 30)), stop_holders,
                    interval=cfg.holder_interval, kill_share=cfg.holder_kill_share, log=self.log)
                holder_nemesis.start()
            self._faults(nemesis)
            if holder_nemesis is not None:
                stop_holders.set()
                holder_nemesis.join(timeout=4 * cfg.lease_ttl + 10)
                if holder_nemesis.error is not None:
                    self.problems.append(f"holder nemesis failed: {holder_nemesis.error!r}")
            nemesis.heal_everything()
            healed = time.monotonic()
            self.log("all faults healed")
            recovery = self._recover(cluster, healed)
            stop.set()
            for client in clients:
                client.join(timeout=cfg.client_timeout * 5 + 10)
                if client.is_alive():
                    self.problems.append(f"client {client.client_id} did not stop")
                if client.error is not None:
                    self.problems.append(f"client {client.client_id} failed: {client.error!r}")
            self.problems.extend(nemesis.unexpected_exits())
            if fleet is not None:
                self.problems.extend(fleet.unexpected_exits())
                fleet.stop()
            final_reads = self._final_reads(
                cluster, self.keys + [fenced_key(n) for n in lock_names])
            if watchers:
                self._catch_up(watchers)
                stop_watching.set()
                self._stop_watchers(watchers)
                earlier: list = []
                if historian is not None:
                    historian.join(timeout=10)
                    earlier = historian.histories
                    if historian.error is not None:
                        self.problems.append(f"historian failed: {historian.error!r}")
                reference = fetch_reference(
                    {cluster.names[i]: cluster.http_address(i) for i in cluster.live},
                    earlier=earlier)
                self.log(f"watch reference: {reference.describe()}")
        except Exception as e:  # the run itself broke: keep the evidence
            self.problems.append(f"run aborted: {e!r}")
            self.log(f"run aborted: {e!r}")
        finally:
            stop.set()
            stop_watching.set()
            stop_holders.set()
            if fleet is not None:
                fleet.stop()
            self._stop_watchers(watchers)
            cluster.close()
            self.problems.extend(nemesis.problems)
            logs.update({node.name: node.log_path for node in cluster.nodes})
        self.problems.extend(f"unexpected answer: {u}" for u in self.recorder.unexpected[:20])
        self.node_errors, self.node_events = _scan_logs(logs)
        ops = self.recorder.snapshot()
        lock_ops: list[LockOp] = []
        lock_check: LockCheck | None = None
        if fleet is not None:
            lock_ops, notes = fleet.collect()
            self.problems.extend(f"lock client: {n}" for n in notes[:20])
            ops += as_kv_ops(lock_ops)
            lock_check = self._check_locks(lock_ops, lock_names, final_reads, reference)
        self.problems.extend(lost_writes(ops, final_reads))
        watch_results: list[WatchResult] = []
        cross_checked = 0
        if reference is not None:
            self.problems.extend(reference.problems[:20])
            crossed, cross_checked = cross_check(reference, ops, final_reads)
            self.problems.extend(crossed[:20])
            for w in watchers:
                watch_results.append(check_watch(w.log, reference,
                                                 f"watcher {w.watcher_id} ({w.log.describe()})"))
        elif watchers:
            self.problems.append("no watch reference was taken")
        self.log(f"checking {len(ops)} operations")
        result = check(ops, timeout=cfg.check_timeout)
        run = RunResult(
            seed=cfg.seed, verdict=result.ok, check=result, ops=len(ops),
            outcomes=Counter(self.recorder.outcomes), kinds=Counter(self.recorder.kinds),
            faults=Counter(nemesis.counts), problems=self.problems, recovery=recovery,
            checker_seconds=result.elapsed, txns=sum(1 for op in ops if op.kind == "txn"),
            watches=watch_results, reference=reference, writes_cross_checked=cross_checked,
            locks=lock_check, lock_ops=lock_ops,
        )
        if holder_nemesis is not None:
            run.faults.update(holder_nemesis.counts)
        self._report(run, nemesis, ops)
        if not run.passed or cfg.keep:
            run.folder = self._keep(run, ops, logs, nemesis)
        shutil.rmtree(work, ignore_errors=True)
        self.out(run.final_line())
        return run

    def _save_watches(self, folder: Path, run: RunResult) -> None:
        """watchers.jsonl: one line per watcher (what it watched and everything it got);
        reference.json: the merged watch history of the nodes."""
        with open(folder / "watchers.jsonl", "w", encoding="utf-8") as f:
            for w in self.watchers:
                f.write(json.dumps({"watcher": w.watcher_id, "key": w.log.key,
                                    "prefix": w.log.prefix, "entries": w.log.entries}) + "\n")
        ref = run.reference
        if ref is not None:
            (folder / "reference.json").write_text(json.dumps({
                "spans": ref.spans, "sources": ref.sources,
                "changes": {str(r): c for r, c in sorted(ref.changes.items())},
            }) + "\n")

    def _catch_up(self, watchers: list[Watcher]) -> None:
        """Give the watchers time to receive everything up to the last revision the
        clients learned of (the final reads')."""
        ops = self.recorder.snapshot()
        final = max([op.revision or 0 for op in ops]
                    + [op.seen.revision or 0 for op in ops if op.seen is not None] + [0])
        deadline = time.monotonic() + self.config.catch_up_timeout
        while time.monotonic() < deadline and any(w.confirmed < final for w in watchers):
            time.sleep(0.1)
        late = [f"watcher {w.watcher_id} at {w.confirmed}" for w in watchers if w.confirmed < final]
        if late:
            self.log(f"watchers not caught up to revision {final}: {', '.join(late)}")

    def _stop_watchers(self, watchers: list[Watcher]) -> None:
        for w in watchers:
            w.interrupt()
        for w in watchers:
            w.join(timeout=15)
            if w.is_alive():
                self.problems.append(f"watcher {w.watcher_id} did not stop")
            if w.error is not None:
                self.problems.append(f"watcher {w.watcher_id} failed: {w.error!r}")
                w.error = None

    def _faults(self, nemesis: Nemesis) -> None:
        cfg = self.config
        rng = self.rng
        pending = list(cfg.kinds) if cfg.cover else []
        rng.shuffle(pending)
        time.sleep(cfg.warmup)
        end = time.monotonic() + cfg.duration
        min_pause = 2.5 * cfg.election_timeout_ms / 1000.0
        while True:
            self.problems.extend(nemesis.unexpected_exits())
            kind = pending.pop() if pending else rng.choice(cfg.kinds)
            hold = rng.uniform(*cfg.fault_hold)
            if kind == "pause":
                hold = max(hold, min_pause)
            elif kind == "isolate_follower":  # several election timeouts
                hold = max(hold, 2 * min_pause)
            nemesis.inject(kind)
            time.sleep(hold)
            self.problems.extend(nemesis.unexpected_exits())
            fault = nemesis.heal()
            if time.monotonic() >= end and not pending:
                return  # the final recovery is measured from this heal
            self._await_recovery(fault)
            time.sleep(rng.uniform(*cfg.quiet))

    def _await_recovery(self, fault: Fault | None) -> None:
        """Wait until the clients get a write acknowledged that they sent after ``fault``
        was healed; a problem if that takes longer than ``recovery_timeout``."""
        if fault is None or fault.healed is None:
            return
        healed = fault.healed - self.t0
        deadline = fault.healed + self.config.recovery_timeout
        while time.monotonic() < deadline:
            done = self.recorder.first_write_acknowledged_since(healed)
            if done is not None:
                fault.recovered = done - healed
                return
            time.sleep(0.05)
        self.problems.append(
            f"no write was acknowledged within {self.config.recovery_timeout:.0f} s of "
            f"healing {fault.kind} ({fault.description})")

    def _recover(self, cluster: ProxiedCluster, healed: float) -> float | None:
        """Write until one write is acknowledged; None (a problem) if none is within
        ``recovery_timeout`` of healing."""
        cfg = self.config
        deadline = healed + cfg.recovery_timeout
        n = 0
        while time.monotonic() < deadline:
            n += 1
            spec = OpSpec("put", self.keys[0], value=f"probe-{n}")
            op, c, _ = execute(spec, self.rng.choice(cluster.http_addresses()),
                               client=cfg.clients, timeout=cfg.client_timeout, clock=self.clock)
            self.recorder.add(op, c)
            if op.outcome == "ok":
                took = time.monotonic() - healed
                self.log(f"the cluster accepted a write {took:.2f} s after healing")
                return took
            time.sleep(0.1)
        self.problems.append(
            f"no write was acknowledged within {cfg.recovery_timeout:.0f} s of healing")
        return None

    def _check_locks(self, lock_ops: list[LockOp], lock_names: list[str],
                     final_reads: dict[str, Op], reference: Reference | None) -> LockCheck:
        """The lock checker on the lock clients' history, the fenced keys' final reads and
        (when there is a watch reference) their committed changes."""
        final = {}
        for name in lock_names:
            read = final_reads.get(fenced_key(name))
            if read is not None and read.seen is not None:
                final[name] = (read.seen.value, read.seen.revision)
        if reference is None:
            return check_locks(lock_ops, final=final)
        committed = [(r, c[0], c[1], c[2]) for r, cs in sorted(reference.changes.items())
                     for c in cs if c[1].startswith((FENCED_PREFIX, LOCK_PREFIX))]
        complete_to = reference.spans[0][1] if reference.spans and reference.lo == 1 else 0
        return check_locks(lock_ops, final=final, committed=committed, complete_to=complete_to)

    def _final_reads(self, cluster: ProxiedCluster, keys: Sequence[str]) -> dict[str, Op]:
        cfg = self.config
        reads: dict[str, Op] = {}
        deadline = time.monotonic() + cfg.recovery_timeout
        for key in keys:
            while time.monotonic() < deadline:
                op, c, _ = execute(OpSpec("read", key), self.rng.choice(cluster.http_addresses()),
                                   client=cfg.clients + 1, timeout=cfg.client_timeout,
                                   clock=self.clock)
                self.recorder.add(op, c)
                if op.outcome == "ok":
                    reads[key] = op
                    break
                time.sleep(0.1)
            else:
                self.problems.append(f"no final read of {key!r} succeeded")
        return reads

    def _report(self, run: RunResult, nemesis: Nemesis, ops: list[Op]) -> None:
        o = run.outcomes
        self.out(f"operations: {run.ops} (ok {o['ok']}, failed {o['fail']}, "
                 f"unknown {o['unknown']})")
        for kind in ("read", "put", "delete", "txn"):
            k = run.kinds
            self.out(f"  {kind:6}: ok {k[(kind, 'ok')]}, failed {k[(kind, 'fail')]}, "
                     f"unknown {k[(kind, 'unknown')]}")
        for outcome, label in (("fail", "failed"), ("unknown", "unknown")):
            reasons = sorted(((n, r.partition(":")[2] or "?")
                              for r, n in self.recorder.reasons.items()
                              if r.startswith(outcome + ":")), reverse=True)
            listed = ", ".join(f"{why} {n}" for n, why in reasons) or "none"
            self.out(f"  {label} by reason: {listed}")
        kinds = self.config.kinds
        self.out("faults: " + ", ".join(f"{k} {run.faults[k]}" for k in kinds)
                 + f" (total {sum(run.faults[k] for k in kinds)})")
        if run.locks is not None:
            self.out("lock faults: " + ", ".join(f"{k} {run.faults[k]}" for k in LOCK_FAULT_KINDS))
            self.out(run.locks.summary())
        worst = self._recoveries(nemesis)
        if worst:
            self.out("slowest recovery (heal to first acknowledged write) by kind: "
                     + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(worst.items())))
        self.out("node logs: " + ", ".join(f"{k} {self.node_events[k]}" for k in _LOG_EVENTS))
        if self.node_errors:
            self.out(f"warning: {len(self.node_errors)} traceback(s) or critical lines in "
                     f"node logs, first: {self.node_errors[0]}")
        if run.recovery is not None:
            self.out(f"writes accepted again {run.recovery:.2f} s after the final heal "
                     f"(bound {self.config.recovery_timeout:.0f} s)")
        if run.reference is not None:
            ref = run.reference
            self.out(f"watch reference: {ref.describe()}; {run.writes_cross_checked} "
                     f"acknowledged writes found in it")
        for w in run.watches:
            self.out(w.summary())
        for problem in run.problems:
            self.out(f"PROBLEM: {problem}")
        if run.check is not None and run.verdict is not True:
            self.out(run.check.summary())

    def _recoveries(self, nemesis: Nemesis) -> dict[str, float]:
        """Per fault kind, the longest time from healing to the first acknowledged write
        sent after healing."""
        worst: dict[str, float] = {}
        for fault in nemesis.history:
            if fault.recovered is not None:
                worst[fault.kind] = max(worst.get(fault.kind, 0.0), fault.recovered)
        return worst

    def _keep(self, run: RunResult, ops: list[Op], logs: dict[str, Path], nemesis: Nemesis) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = self.config.out_dir / f"{stamp}-{self.config.seed}"
        folder.mkdir(parents=True, exist_ok=True)
        save_history(ops, str(folder / "history.jsonl"))
        if run.lock_ops:
            with open(folder / "locks.jsonl", "w", encoding="utf-8") as f:
                dump_lock_history(run.lock_ops, f)
        if run.watches or run.reference is not None:
            self._save_watches(folder, run)
        (folder / "seed").write_text(f"{self.config.seed}\n")
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.config).items()}
        lines = [
            f"replay: python -m tests.faults.runner --seed {self.config.seed} "
            f"--nodes {self.config.nodes} --duration {self.config.duration:g}s "
            f"--txn-share {self.config.txn_share:g} --watchers {self.config.watchers} "
            f"--lock-clients {self.config.lock_clients} --locks {self.config.locks} "
            f"--lease-ttl {self.config.lease_ttl:g}"
            + ("" if self.config.power_cuts else " --no-power-cuts")
            + (" --membership" if self.config.membership else "")
            + (f" --faults {','.join(self.config.faults)}" if self.config.faults else ""),
            f"config: {config}",
            "",
            *self.timeline,
            "",
            *[f"PROBLEM: {p}" for p in run.problems],
        ]
        lines += ["", *[w.summary() for w in run.watches]]
        if run.check is not None:
            lines += ["", run.check.summary()]
        if run.locks is not None:
            lines += ["", run.locks.summary()]
        (folder / "run.txt").write_text("\n".join(lines) + "\n")
        for name, path in logs.items():
            if path.exists():
                shutil.copy(path, folder / f"{name}.log")
        return folder


_LOG_EVENTS = {
    "leaders elected": "is leader in term",
    "node starts": "] Node n",
    "snapshots saved": "Snapshot at index",
    "snapshots installed": "Installed snapshot",
}


def _scan_logs(logs: dict[str, Path]) -> tuple[list[str], Counter[str]]:
    """Lines of node logs that show an unhandled error (for a warning, not a verdict),
    and counts of notable events."""
    found = []
    events: Counter[str] = Counter()
    for name, path in sorted(logs.items()):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if "Traceback" in line or "#critical]" in line or "Unhandled" in line:
                found.append(f"{name}: {line.strip()[:200]}")
            for event, marker in _LOG_EVENTS.items():
                if marker in line and (event != "node starts" or " started: term" in line):
                    events[event] += 1
    return found, events


def run(config: RunConfig, out: Callable[[str], None] = print) -> RunResult:
    """Run one fault test; never raises for a failing cluster (see ``RunResult``)."""
    out(f"fault run: seed {config.seed}, {config.nodes} nodes, {config.duration:g} s of faults, "
        f"{config.clients} clients, election timeout {config.election_timeout_ms} ms, "
        + ("power cuts (nodes on the write-back fs)" if config.power_cuts
           else "no power cuts (nodes on the real fs)")
        + (f", launcher {' '.join(config.launcher)}" if config.launcher else ""))
    return _Run(config, out).execute()


def _span(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition("-")
    try:
        span = (float(lo), float(hi if sep else lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LO-HI seconds") from None
    if not 0 <= span[0] <= span[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= LO <= HI")
    return span


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.runner",
        description="Jepsen-style fault test of a real local LeifDB cluster.",
    )
    parser.add_argument("--duration", default="10m",
                        help="how long to inject faults (30s, 10m, 1h)")
    parser.add_argument("--nodes", type=int, default=5, help="cluster size (3 or more)")
    parser.add_argument("--seed", type=int, default=None, help="replay this seed (default: random)")
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--election-timeout", type=int, default=400, help="milliseconds")
    parser.add_argument("--heartbeat-interval", type=int, default=50, help="milliseconds")
    parser.add_argument("--snapshot-entries", type=int, default=1000)
    parser.add_argument("--hold", type=_span, default=(1.0, 4.0),
                        help="seconds each fault lasts, LO-HI (default 1-4)")
    parser.add_argument("--quiet", type=_span, default=(1.0, 2.5),
                        help="seconds without faults after each recovery, LO-HI (default 1-2.5)")
    parser.add_argument("--recovery-timeout", type=float, default=30.0,
                        help="seconds within which writes must succeed again after each heal")
    parser.add_argument("--check-timeout", type=float, default=900.0, help="seconds")
    parser.add_argument("--txn-share", type=float, default=0.2,
                        help="share of operations that are transactions (default 0.2)")
    parser.add_argument("--watchers", type=int, default=3, help="watcher clients (default 3)")
    parser.add_argument("--lock-clients", type=int, default=3,
                        help="lock client processes (default 3; 0 for none)")
    parser.add_argument("--locks", type=int, default=1, help="locks they share (default 1)")
    parser.add_argument("--lease-ttl", type=float, default=3.0,
                        help="the lock clients' lease TTL, seconds (default 3; at least 2)")
    parser.add_argument("--no-power-cuts", dest="power_cuts", action="store_false",
                        help="nodes on the real file system (a SIGKILL keeps the page cache); "
                        "no power_cut fault")
    parser.add_argument("--membership", action="store_true",
                        help="add the membership kinds (replace_member, isolate_follower) to "
                        "the mix")
    parser.add_argument("--faults", default="",
                        help="comma-separated fault kinds to inject (default: all of them)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where failed runs are kept")
    parser.add_argument("--keep", action="store_true",
                        help="keep the evidence even if the run passes")
    args = parser.parse_args(argv)
    try:
        duration = parse_duration(args.duration)
    except ValueError as e:
        parser.error(str(e))
    if args.nodes < 3:
        parser.error("--nodes must be at least 3")
    faults = tuple(k for k in args.faults.split(",") if k)
    known = fault_kinds(args.power_cuts, membership=True)
    unknown = sorted(set(faults) - set(known))
    if unknown:
        parser.error(f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(known)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    config = RunConfig(
        seed=seed, nodes=args.nodes, duration=duration, clients=args.clients, keys=args.keys,
        election_timeout_ms=args.election_timeout, heartbeat_interval_ms=args.heartbeat_interval,
        snapshot_entries=args.snapshot_entries, check_timeout=args.check_timeout,
        recovery_timeout=args.recovery_timeout, cover=True, out_dir=args.out, keep=args.keep,
        fault_hold=args.hold, quiet=args.quiet, txn_share=args.txn_share, watchers=args.watchers,
        lock_clients=args.lock_clients, locks=max(1, args.locks), lease_ttl=args.lease_ttl,
        power_cuts=args.power_cuts, membership=args.membership, faults=faults,
    )
    result = run(config, out=lambda line: print(line, flush=True))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
