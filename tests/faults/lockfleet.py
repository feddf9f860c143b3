"""The runner's side of the lock clients: their processes, the nemesis that pauses or
kills lock holders, and the histories they leave.

``LockFleet`` starts ``count`` lock clients (``python -m tests.faults.lockclient``), each
writing its events to ``lockclient-N.jsonl`` in its folder, and follows those files to know
which client believes it holds a lock. ``HolderNemesis`` runs beside the node nemesis:
every few seconds it waits for a client that has just acquired a lock (so it is in the
middle of its fenced writes), or else asks the cluster who holds one (``GET /lock/NAME``:
the holder's value names its client), and either SIGSTOPs that client for longer than its
lease's TTL (its keepalives stop, the lease expires, another client gets the lock; when
the stale holder wakes up it carries on writing with its old token) or SIGKILLs it (a new
client with a new id takes its place).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import quote

from tests.faults.history import Op, Seen
from tests.faults.lockclient import call
from tests.faults.locks import LockOp, fenced_key, lock_ops_from_events

__all__ = ["KV_CLIENT_BASE", "LOCK_FAULT_KINDS", "HolderNemesis", "LockFleet", "as_kv_ops"]

ROOT = Path(__file__).resolve().parents[2]
LOCK_FAULT_KINDS: tuple[str, ...] = ("pause_holder", "kill_holder")
# Lock clients' ops in the key-value history get client ids from here on.
KV_CLIENT_BASE = 100


class _Follower:
    """Follows one client's event file as it grows: which lock the client believes it
    holds, and since when (its clock), from its own events: a lock request answered ok
    starts a hold; a release, a revoke or the next round's grant ends it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""
        self.pending: dict[int, str] = {}  # lock requests without an answer yet: their lock
        self.held: tuple[str, float] | None = None

    def update(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        *lines, self.rest = (self.rest + data).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("ev") == "invoke":
                if event.get("kind") in ("grant", "release", "revoke"):
                    self.held = None
                elif event.get("kind") == "lock":
                    self.pending[event["op"]] = event.get("lock", "")
            elif event.get("ev") == "complete":
                lock = self.pending.pop(event["op"], None)
                if lock is not None and event.get("outcome") == "ok":
                    self.held = (lock, float(event["t"]))


class LockFleet:
    """The lock client processes (see the module doc). ``stop`` ends them all and may be
    called at any point, more than once."""

    def __init__(self, folder: Path, addresses: Sequence[str], locks: Sequence[str],
                 count: int, *, seed: int, t0: float, ttl: float, timeout: float,
                 lock_wait: float, log: Callable[[str], None] = lambda line: None) -> None:
        self.folder = folder
        self.addresses = list(addresses)
        self.locks = list(locks)
        self.count = count
        self.rng = random.Random(seed)
        self.t0 = t0
        self.ttl = ttl
        self.timeout = timeout
        self.lock_wait = lock_wait
        self.log = log
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.followers: dict[int, _Follower] = {}
        self.paused: set[int] = set()
        self.ended: set[int] = set()  # killed or stopped by us: their exit is expected
        self._lock = threading.Lock()
        self._next_id = 0

    def events_path(self, client: int) -> Path:
        return self.folder / f"lockclient-{client}.jsonl"

    def errors_path(self, client: int) -> Path:
        return self.folder / f"lockclient-{client}.err"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(self.count):
            self._spawn()

    def _spawn(self) -> int:
        with self._lock:
            client = self._next_id
            self._next_id += 1
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        with open(self.errors_path(client), "ab") as errors:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.lockclient", "--id", str(client),
                 "--addresses", ",".join(self.addresses), "--locks", ",".join(self.locks),
                 "--out", str(self.events_path(client)), "--seed", str(self.rng.randrange(1 << 30)),
                 "--t0", repr(self.t0), "--ttl", f"{self.ttl:g}", "--timeout", f"{self.timeout:g}",
                 "--lock-wait", f"{self.lock_wait:g}"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, cwd=ROOT, env=env)
        self.procs[client] = proc
        self.followers[client] = _Follower(self.events_path(client))
        return client

    def holder(self, lock: str) -> int | None:
        """The running client that holds ``lock`` now, as the cluster says; None if free,
        unknown, or held by a client that is gone."""
        answer = call(self.rng.choice(self.addresses), "GET", f"/lock/{quote(lock, safe='')}",
                      None, self.timeout)
        value = (answer.body or {}).get("value") if answer.status == 200 else None
        if not isinstance(value, str) or not value.startswith("lc") or not value[2:].isdigit():
            return None
        client = int(value[2:])
        proc = self.procs.get(client)
        if proc is None or proc.poll() is not None or client in self.paused:
            return None
        return client

    def fresh_holder(self, within: float) -> tuple[int, str] | None:
        """A running, unpaused client that acquired a lock at most ``within`` seconds ago
        and still believes it holds it (by its event file), with the lock; or None."""
        now = time.monotonic() - self.t0
        for client, follower in sorted(self.followers.items()):
            proc = self.procs[client]
            if client in self.paused or client in self.ended or proc.poll() is not None:
                continue
            follower.update()
            if follower.held is not None and now - follower.held[1] <= within:
                return client, follower.held[0]
        return None

    def pid(self, client: int) -> int:
        return self.procs[client].pid

    def pause(self, client: int) -> bool:
        """SIGSTOP ``client``; False if it has exited meanwhile."""
        proc = self.procs[client]
        if proc.poll() is not None:
            return False
        os.kill(proc.pid, signal.SIGSTOP)
        self.paused.add(client)
        return True

    def resume(self, client: int) -> None:
        if client in self.paused:
            self.paused.discard(client)
            proc = self.procs[client]
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)

    def kill(self, client: int) -> int:
        """SIGKILL ``client`` and start a new one in its place; returns the new one's id."""
        proc = self.procs[client]
        self.ended.add(client)
        self.resume(client)
        proc.kill()
        proc.wait()
        return self._spawn()

    def unexpected_exits(self) -> list[str]:
        """Clients that exited by themselves (a crash of the client: a bug in the test)."""
        found = []
        for client, proc in sorted(self.procs.items()):
            if client not in self.ended and proc.poll() is not None:
                self.ended.add(client)
                tail = self.errors_path(client).read_text(errors="replace").strip()[-800:]
                found.append(f"lock client {client} exited with {proc.returncode}: {tail}")
        return found

    def stop(self, timeout: float = 10.0) -> None:
        """Resume paused clients, close every client's input (it finishes its request and
        exits), and SIGKILL those still running after ``timeout`` seconds."""
        for client in list(self.paused):
            self.resume(client)
        running = [c for c, p in self.procs.items() if c not in self.ended and p.poll() is None]
        for client in running:
            stdin = self.procs[client].stdin
            if stdin is not None:
                try:
                    stdin.close()
                except OSError:
                    pass
        for client in running:
            proc = self.procs[client]
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.log(f"lock client {client} did not stop in {timeout:g} s; SIGKILL")
                proc.kill()
                proc.wait()
            self.ended.add(client)

    def collect(self) -> tuple[list[LockOp], list[str]]:
        """Every client's operations (by invoke time) and notes (unexpected answers,
        malformed lines)."""
        ops: list[LockOp] = []
        notes: list[str] = []
        for client in sorted(self.procs):
            path = self.events_path(client)
            if not path.exists():
                continue
            with open(path, encoding="utf-8") as f:
                got, more = lock_ops_from_events(f)
            ops += got
            notes += more
        ops.sort(key=lambda op: (op.invoke, op.client))
        return ops, notes


def as_kv_ops(ops: Sequence[LockOp]) -> list[Op]:
    """The fenced writes and reads as key-value operations for the linearizability
    checker: an accepted write is a put at its revision, a rejected one never happened, an
    unknown one may have (sound: a fenced put is a put whose condition the checker does
    not model, so only its recorded outcome counts)."""
    out = []
    for op in ops:
        client = KV_CLIENT_BASE + op.client
        key = fenced_key(op.lock)
        if op.kind == "write":
            out.append(Op(client=client, key=key, kind="put", invoke=op.invoke,
                          complete=op.complete, outcome=op.outcome,  # type: ignore[arg-type]
                          value=op.value, revision=op.revision if op.outcome == "ok" else None))
        elif op.kind == "read" and op.outcome == "ok":
            seen = Seen(op.value, op.revision if op.value is not None else None)
            out.append(Op(client=client, key=key, kind="read", invoke=op.invoke,
                          complete=op.complete, outcome="ok", seen=seen))
    return out


class HolderNemesis(threading.Thread):
    """Every ``interval`` seconds until ``stop`` is set: waits up to ``aim`` seconds for a
    client that has just acquired a lock (within ``fresh`` seconds), else takes the holder
    of a random lock as the cluster says, and pauses it (SIGSTOP for ``ttl + 1`` to
    ``2 ttl + 1`` seconds) or kills it (with ``kill_share`` probability). ``counts`` by kind
    (``LOCK_FAULT_KINDS``), ``longest`` pause."""

    def __init__(self, fleet: LockFleet, rng: random.Random, stop: threading.Event, *,
                 interval: tuple[float, float], kill_share: float, aim: float = 3.0,
                 fresh: float = 0.3, log: Callable[[str], None] = lambda line: None) -> None:
        super().__init__(name="holder-nemesis", daemon=True)
        self.fleet = fleet
        self.rng = rng
        self.stop_event = stop
        self.interval = interval
        self.kill_share = kill_share
        self.aim = aim
        self.fresh = fresh
        self.log = log
        self.counts: Counter[str] = Counter()
        self.longest = 0.0
        self.misses = 0  # no running holder found when one was looked for
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.wait(self.rng.uniform(*self.interval)):
                self.act()
        except BaseException as e:  # reported by the runner
            self.error = e

    def _choose(self) -> tuple[int, str, str] | None:
        """(client, lock, how it was found) of the holder to strike, or None."""
        fleet = self.fleet
        deadline = time.monotonic() + self.aim
        while time.monotonic() < deadline and not self.stop_event.is_set():
            found = fleet.fresh_holder(self.fresh)
            if found is not None:
                return found[0], found[1], "just acquired"
            self.stop_event.wait(0.02)
        lock = self.rng.choice(fleet.locks)
        client = fleet.holder(lock)
        return None if client is None else (client, lock, "as the cluster says")

    def act(self) -> None:
        fleet = self.fleet
        target = self._choose()
        if target is None or self.stop_event.is_set():
            self.misses += 1
            return
        client, lock, how = target
        if self.rng.random() < self.kill_share:
            pid = fleet.pid(client)
            new = fleet.kill(client)
            self.counts["kill_holder"] += 1
            self.log(f"lock fault kill_holder: SIGKILL lock client {client} (pid {pid}), holder "
                     f"of {lock!r} ({how}); client {new} starts")
            return
        seconds = self.rng.uniform(fleet.ttl + 1.0, 2 * fleet.ttl + 1.0)
        if not fleet.pause(client):
            self.misses += 1
            return
        self.counts["pause_holder"] += 1
        self.log(f"lock fault pause_holder: SIGSTOP lock client {client} (pid "
                 f"{fleet.pid(client)}), holder of {lock!r} ({how}), for {seconds:.1f} s "
                 f"(lease TTL {fleet.ttl:g} s)")
        interrupted = self.stop_event.wait(seconds)
        fleet.resume(client)
        if not interrupted:
            self.longest = max(self.longest, seconds)
        self.log(f"lock client {client} resumed")
