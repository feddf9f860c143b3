"""The lock clients, the holder nemesis and the lock checker end to end, against a small
in-process lock server that follows the HTTP contract (leases with TTLs, ``POST /lock``
waiting in create-revision order, fenced writes) with a switch that plants the bug fencing
exists to stop: fenced writes accepted whatever their token.

With the switch off the run must pass and the pauses must bite (a SIGSTOPped holder's
stale writes are refused with 412); with it on, the checker must find two holders whose
fenced writes were both accepted. Real client processes, really SIGSTOPped; no LeifDB.
The fake keeps its leases short (0.5 s), which the real service would refuse.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from tests.faults.linearizability import check
from tests.faults.lockclient import call
from tests.faults.lockfleet import HolderNemesis, LockFleet, as_kv_ops
from tests.faults.locks import LockCheck, LockOp, check_locks, fenced_key

pytestmark = pytest.mark.slow

TTL = 0.5
LOCKS = ["a"]


class FakeLockState:
    """Keys with revisions, leases with deadlines, locks as etcd's recipe has them (the
    key with the lowest create revision under ``_lock/NAME/`` holds). One mutex and one
    condition for everything; a reaper thread expires leases."""

    def __init__(self, enforce_fence: bool) -> None:
        self.enforce_fence = enforce_fence
        self.cond = threading.Condition()
        self.revision = 0
        self.keys: dict[str, tuple[str, int, int, int]] = {}  # value, revision, create, lease
        self.leases: dict[int, tuple[float, float]] = {}  # id -> (ttl, deadline)
        self.closed = False

    def _next(self) -> int:
        self.revision += 1
        return self.revision

    def reap(self) -> None:
        with self.cond:
            while not self.closed:
                now = time.monotonic()
                for lease, (_, deadline) in list(self.leases.items()):
                    if deadline < now:
                        self._revoke(lease)
                self.cond.wait(0.02)

    def _revoke(self, lease: int) -> int:
        del self.leases[lease]
        revision = self._next()
        for key, item in list(self.keys.items()):
            if item[3] == lease:
                del self.keys[key]
        self.cond.notify_all()
        return revision

    def holder(self, name: str) -> tuple[str, tuple[str, int, int, int]] | None:
        prefix = f"_lock/{name}/"
        mine = [(item[2], key) for key, item in self.keys.items() if key.startswith(prefix)]
        if not mine:
            return None
        _, key = min(mine)
        return key, self.keys[key]

    def holder_json(self, name: str, key: str, item: tuple[str, int, int, int]) -> dict[str, Any]:
        return {"name": name, "key": key, "token": item[2], "lease": item[3], "value": item[0],
                "revision": item[1]}

    # -- requests (under the condition's lock) --------------------------------------------

    def grant(self, ttl: float) -> tuple[int, dict[str, Any]]:
        lease = self._next()
        self.leases[lease] = (ttl, time.monotonic() + ttl)
        return 200, {"id": lease, "ttl": ttl, "remaining": ttl, "revision": lease}

    def keepalive(self, lease: int) -> tuple[int, dict[str, Any]]:
        if lease not in self.leases:
            return 404, {"error": f"lease {lease} not found"}
        ttl = self.leases[lease][0]
        self.leases[lease] = (ttl, time.monotonic() + ttl)
        return 200, {"id": lease, "ttl": ttl, "remaining": ttl, "revision": self.revision}

    def revoke(self, lease: int) -> tuple[int, dict[str, Any]]:
        if lease not in self.leases:
            return 404, {"error": f"lease {lease} not found"}
        return 200, {"id": lease, "revision": self._revoke(lease)}

    def lock(self, name: str, lease: int, value: str, timeout: float) -> tuple[int, dict[str, Any]]:
        if lease not in self.leases:
            return 404, {"error": f"lease {lease} not found"}
        key = f"_lock/{name}/{lease}"
        if key not in self.keys:
            r = self._next()
            self.keys[key] = (value, r, r, lease)
        deadline = time.monotonic() + timeout
        while True:
            if key not in self.keys:
                return 404, {"error": f"lease {lease} not found"}
            found = self.holder(name)
            if found is not None and found[0] == key:
                return 200, self.holder_json(name, *found)
            left = deadline - time.monotonic()
            if left <= 0:
                del self.keys[key]
                self._next()
                self.cond.notify_all()
                return 423, {"error": "timeout", "holder": found[0] if found else None}
            self.cond.wait(left)

    def put(self, key: str, value: str, fence: str | None) -> tuple[int, dict[str, Any]]:
        if fence is not None:
            name, _, token = fence.rpartition(":")
            found = self.holder(name)
            if self.enforce_fence and (found is None or found[1][2] != int(token)):
                return 412, {"error": f"fenced: lock {name} is no longer held with token {token}",
                             "fence": fence}
        r = self._next()
        old = self.keys.get(key)
        self.keys[key] = (value, r, old[2] if old else r, 0)
        return 200, {"status": "Ok", "revision": r}

    def delete(self, key: str) -> tuple[int, dict[str, Any]]:
        r = self._next()
        if self.keys.pop(key, None) is not None:
            self.cond.notify_all()
        return 200, {"status": "Ok", "revision": r}

    def get(self, key: str) -> tuple[int, dict[str, Any]]:
        item = self.keys.get(key)
        if item is None:
            return 404, {"error": "key not found"}
        return 200, {"key": key, "value": item[0], "revision": item[1]}

    def route(self, method: str, path: str, query: dict[str, list[str]],
              body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/", 1)
        rest = unquote(parts[1]) if len(parts) > 1 else ""
        with self.cond:
            if parts[0] == "lease":
                if method == "POST" and not rest:
                    return self.grant(float(body["ttl"]))
                lease, _, action = rest.partition("/")
                if method == "POST" and action == "keepalive":
                    return self.keepalive(int(lease))
                if method == "DELETE":
                    return self.revoke(int(lease))
            elif parts[0] == "lock":
                if method == "POST":
                    timeout = float(query.get("timeout", ["5s"])[0].rstrip("s"))
                    return self.lock(rest, int(body["lease"]), body.get("value", ""), timeout)
                found = self.holder(rest)
                if found is None:
                    return 404, {"error": f"lock {rest} is free"}
                return 200, self.holder_json(rest, *found)
            elif parts[0] == "db":
                if method == "PUT":
                    return self.put(rest, query["value"][0], query.get("fence", [None])[0])
                if method == "DELETE":
                    return self.delete(rest)
                return self.get(rest)
        return 400, {"error": f"no route {method} {path}"}


def _handler(state: FakeLockState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            url = urlsplit(self.path)
            status, answer = state.route(self.command, url.path, parse_qs(url.query), body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake_server() -> Iterator[Callable[[bool], str]]:
    """Starts fakes (``enforce_fence`` on or off): their addresses; stops them after."""
    servers: list[ThreadingHTTPServer] = []
    states: list[FakeLockState] = []

    def start(enforce_fence: bool) -> str:
        state = FakeLockState(enforce_fence)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        threading.Thread(target=state.reap, daemon=True).start()
        states.append(state)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for state in states:
        with state.cond:
            state.closed = True
    for server in servers:
        server.shutdown()
        server.server_close()


def _run(address: str, folder: Path, seconds: float, *, seed: int,
         until_violation: bool = False) -> tuple[LockCheck, HolderNemesis, list[LockOp]]:
    """Three lock clients and the holder nemesis (pauses only) for ``seconds`` (or until
    the checker finds a violation), then the lock check with the final read."""
    t0 = time.monotonic()
    fleet = LockFleet(folder, [address], LOCKS, 3, seed=seed, t0=t0, ttl=TTL, timeout=2.0,
                      lock_wait=1.0)
    stop = threading.Event()
    nemesis = HolderNemesis(fleet, random.Random(seed), stop, interval=(0.3, 0.6), kill_share=0.0)
    try:
        fleet.start()
        nemesis.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if until_violation and not check_locks(fleet.collect()[0]).ok:
                break
        stop.set()
        nemesis.join(10)
        assert nemesis.error is None
        assert fleet.unexpected_exits() == []
    finally:
        stop.set()
        fleet.stop(timeout=5)
    ops, notes = fleet.collect()
    assert notes == []
    final = call(address, "GET", "/db/" + quote(fenced_key("a"), safe=""), None, 2.0)
    value = (final.body or {}).get("value") if final.status == 200 else None
    revision = (final.body or {}).get("revision") if final.status == 200 else None
    return check_locks(ops, final={"a": (value, revision)}), nemesis, ops


def test_paused_holders_are_fenced_off_and_the_run_passes(
        fake_server: Callable[[bool], str], tmp_path: Path) -> None:
    result, nemesis, ops = _run(fake_server(True), tmp_path, 6.0, seed=1)
    assert result.ok, result.summary()
    c = result.counts
    assert nemesis.counts["pause_holder"] >= 1 and nemesis.longest > TTL
    assert c["acquired"] >= 3 and c["accepted"] >= 3, result.summary()
    assert c["rejected"] >= 1, result.summary()  # a woken stale holder was refused
    assert c["lease_lost"] >= 1, result.summary()  # and learned that its lease was gone
    assert all(op.key is None or op.key.startswith("_lock/a/") for op in ops)
    assert check(as_kv_ops(ops), timeout=30).ok is True


def test_without_fencing_the_checker_finds_two_holders(
        fake_server: Callable[[bool], str], tmp_path: Path) -> None:
    result, nemesis, _ = _run(fake_server(False), tmp_path, 20.0, seed=2, until_violation=True)
    assert not result.ok, result.summary()
    assert any("TWO HOLDERS" in v or "had acquired the lock" in v for v in result.violations), \
        result.summary()
    assert nemesis.counts["pause_holder"] >= 1


def test_a_killed_holder_is_replaced_and_its_history_kept(
        fake_server: Callable[[bool], str], tmp_path: Path) -> None:
    address = fake_server(True)
    fleet = LockFleet(tmp_path, [address], LOCKS, 1, seed=3, t0=time.monotonic(), ttl=TTL,
                      timeout=2.0, lock_wait=1.0)
    nemesis = HolderNemesis(fleet, random.Random(3), threading.Event(), interval=(1, 1),
                            kill_share=1.0)
    try:
        fleet.start()
        deadline = time.monotonic() + 10
        while fleet.holder("a") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        old = fleet.procs[0]
        nemesis.act()
        assert nemesis.counts["kill_holder"] == 1 and old.returncode is not None
        assert sorted(fleet.procs) == [0, 1] and fleet.procs[1].poll() is None
        time.sleep(1.5)  # the new client gets the lock once the dead one's lease expired
        assert fleet.unexpected_exits() == []
    finally:
        fleet.stop(timeout=5)
    ops, notes = fleet.collect()
    assert notes == []
    assert {op.client for op in ops} == {0, 1}
    assert any(op.client == 1 and op.kind == "lock" and op.outcome == "ok" for op in ops)
    assert check_locks(ops).ok
