"""HTTP clients for the fault test: one thread each, every request recorded as an ``Op``.

A client sends each operation to a random node, follows 307 redirects to the leader itself
(a bounded number of hops), and classifies what came back for the checker:

* ok: 200 (and 404 for a read: the key is absent).
* fail, not applied: 412 (an observation: the condition was false, with the current value
  the answer carries), 503 that says ``"applied": false``, a 307 left unfollowed, a refused
  or failed connect (nothing was sent), and any answer to a read other than 200/404.
* unknown, possibly applied: a timeout or lost connection after the request was sent, 504,
  and any other 5xx.

An answer no correct server gives (400, 405, 413, a 404 to a write, a 2xx without the
expected fields) is recorded as unknown and listed in ``Recorder.unexpected``: the run
fails on it, since it means a bug in the client or the server.

Standard library only (``http.client``), so the threads need no reactor.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence
from urllib.parse import quote, urlencode, urlsplit

from tests.faults.history import Condition, Op, Seen

__all__ = [
    "Answer",
    "Client",
    "ClientConfig",
    "OpSpec",
    "Recorder",
    "classify",
    "execute",
    "http_call",
]


@dataclass(frozen=True)
class Answer:
    """What one HTTP exchange produced. ``status`` None: no answer; then ``error`` is
    ``refused`` / ``connect`` (nothing was sent) or ``timeout`` / ``lost`` (the request may
    have arrived)."""

    status: int | None
    body: dict[str, Any] | None = None
    location: str | None = None
    error: str | None = None

    @property
    def sent(self) -> bool:
        return self.error not in ("refused", "connect")


def http_call(address: str, method: str, target: str, headers: dict[str, str],
              timeout: float) -> Answer:
    """One request on a fresh connection (no reuse, so a lost keep-alive connection can
    never turn a definite failure into an unknown one)."""
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        try:
            conn.connect()
        except ConnectionRefusedError:
            return Answer(None, error="refused")
        except OSError:
            return Answer(None, error="connect")
        try:
            conn.request(method, target, headers={**headers, "Connection": "close"})
            response = conn.getresponse()
            raw = response.read()
        except socket.timeout:
            return Answer(None, error="timeout")
        except (OSError, http.client.HTTPException):
            return Answer(None, error="lost")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        return Answer(response.status, body if isinstance(body, dict) else None,
                      response.getheader("Location"))
    finally:
        conn.close()


@dataclass(frozen=True)
class OpSpec:
    """An operation to perform: ``kind`` read/put/delete on ``key``; ``consistency`` is
    sent as given on reads (None: the server's default, linearizable)."""

    kind: str
    key: str
    value: str | None = None
    condition: Condition | None = None
    consistency: str | None = None

    def request(self) -> tuple[str, str, dict[str, str]]:
        """(method, target, headers) of this operation."""
        path = "/db/" + quote(self.key, safe="")
        query: dict[str, str] = {}
        headers: dict[str, str] = {}
        if self.kind == "read":
            method = "GET"
            if self.consistency is not None:
                query["consistency"] = self.consistency
        else:
            method = "PUT" if self.kind == "put" else "DELETE"
            if self.kind == "put":
                assert self.value is not None
                query["value"] = self.value
            c = self.condition
            if c is not None:
                if c.prev_value is not None:
                    query["prev"] = c.prev_value
                elif c.prev_revision is not None:
                    headers["If-Match"] = f'"{c.prev_revision}"'
                else:
                    headers["If-None-Match"] = "*"
        target = path + ("?" + urlencode(query) if query else "")
        return method, target, headers


@dataclass
class Classified:
    """The ``Op`` fields decided by the answers, and a note when no correct server would
    have answered so."""

    outcome: str
    seen: Seen | None = None
    revision: int | None = None
    condition_failed: bool = False
    unexpected: str | None = None
    why: str = ""


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def classify(spec: OpSpec, answer: Answer) -> Classified:
    """The outcome of ``spec`` given its final ``answer`` (after any redirects)."""
    read = spec.kind == "read"
    body = answer.body or {}
    status = answer.status
    if status is None:
        if not answer.sent:
            return Classified("fail", why=answer.error or "")
        return Classified("unknown", why=answer.error or "")
    if status == 307:
        return Classified("fail", why="307 not followed")
    if read:
        if status == 200:
            value, revision = body.get("value"), _int_or_none(body.get("revision"))
            if not isinstance(value, str) or revision is None:
                return Classified("unknown", unexpected=f"200 read without value/revision: {body}")
            return Classified("ok", seen=Seen(value, revision), why="200")
        if status == 404 and body.get("error") == "key not found":
            return Classified("ok", seen=Seen(None), why="404")
        if status in (503, 500, 504):
            return Classified("fail", why=str(status))
        return Classified("unknown", unexpected=f"read answered {status}: {body}")
    if status == 200:
        revision = _int_or_none(body.get("revision"))
        if revision is None:
            return Classified("unknown", unexpected=f"200 write without revision: {body}")
        return Classified("ok", revision=revision, why="200")
    if status == 412:
        if spec.condition is None:
            return Classified("unknown", unexpected=f"412 to an unconditional write: {body}")
        value = body.get("value")
        revision = _int_or_none(body.get("revision"))
        if value is None:
            seen = Seen(None)
        elif isinstance(value, str) and revision is not None:
            seen = Seen(value, revision)
        else:
            return Classified("unknown", unexpected=f"412 without a current value: {body}")
        return Classified("fail", seen=seen, condition_failed=True, why="412")
    if status == 503:
        if body.get("applied") is False:
            return Classified("fail", why="503")
        return Classified("unknown", why="503 without applied=false")
    if status >= 500:
        return Classified("unknown", why=str(status))
    return Classified("unknown", unexpected=f"write answered {status}: {body}")


def execute(spec: OpSpec, address: str, *, client: int, timeout: float,
            max_redirects: int = 3, clock: Callable[[], float] = time.monotonic
            ) -> tuple[Op, Classified, list[str]]:
    """Perform ``spec`` starting at node ``address``; returns the recorded ``Op``, its
    classification and the addresses visited."""
    method, target, headers = spec.request()
    visited = [address]
    invoke = clock()
    answer = http_call(address, method, target, headers, timeout)
    hops = 0
    while answer.status == 307 and answer.location and hops < max_redirects:
        hops += 1
        parts = urlsplit(answer.location)
        address = parts.netloc
        target = parts.path + ("?" + parts.query if parts.query else "")
        visited.append(address)
        answer = http_call(address, method, target, headers, timeout)
    complete = clock()
    c = classify(spec, answer)
    op = Op(
        client=client, key=spec.key, kind=spec.kind,  # type: ignore[arg-type]
        invoke=invoke, complete=complete, outcome=c.outcome,  # type: ignore[arg-type]
        value=spec.value, condition=spec.condition, revision=c.revision, seen=c.seen,
        condition_failed=c.condition_failed,
    )
    return op, c, visited


class Recorder:
    """The shared history: operations in the order they completed, plus counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: list[Op] = []
        self.outcomes: Counter[str] = Counter()
        self.kinds: Counter[tuple[str, str]] = Counter()
        self.reasons: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.last_ok_write: float | None = None
        self._ok_writes: list[tuple[float, float]] = []

    def add(self, op: Op, c: Classified) -> None:
        with self._lock:
            self.ops.append(op)
            self.outcomes[op.outcome] += 1
            self.kinds[(op.kind, op.outcome)] += 1
            self.reasons[f"{op.outcome}:{c.why}"] += 1
            if c.unexpected:
                self.unexpected.append(f"{op.describe()}: {c.unexpected}")
            if op.kind != "read" and op.outcome == "ok" and op.complete is not None:
                self.last_ok_write = op.complete
                self._ok_writes.append((op.invoke, op.complete))

    def first_write_acknowledged_since(self, t: float) -> float | None:
        """The completion time of the first write invoked at or after ``t`` (clock of
        the ops) that was acknowledged so far, or None."""
        with self._lock:
            done = [c for i, c in reversed(self._ok_writes[-10000:]) if i >= t]
        return min(done) if done else None

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)


@dataclass
class ClientConfig:
    """How clients behave. ``mix`` weights operation types; ``read_consistency`` is sent
    on every read (None: linearizable, the default); ``nodes`` picks the node addresses a
    client may start a request at (None: all)."""

    keys: Sequence[str] = ("k0", "k1", "k2", "k3", "k4")
    timeout: float = 2.5
    max_redirects: int = 3
    think: float = 0.01
    backoff: float = 0.1
    read_consistency: str | None = None
    mix: dict[str, float] = field(default_factory=lambda: {
        "read": 40, "put": 24, "put_prev": 10, "put_if_match": 8, "put_if_absent": 5,
        "delete": 7, "delete_prev": 3, "delete_if_match": 3,
    })


class Client(threading.Thread):
    """Performs random operations until ``stop`` is set; ``addresses()`` gives the node
    HTTP addresses to choose from at each operation."""

    def __init__(self, client_id: int, addresses: Callable[[], Sequence[str]],
                 recorder: Recorder, stop: threading.Event, config: ClientConfig,
                 seed: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name=f"client-{client_id}", daemon=True)
        self.client_id = client_id
        self.addresses = addresses
        self.recorder = recorder
        self.stop_event = stop
        self.config = config
        self.rng = random.Random(seed)
        self._seq = 0
        self._memory: dict[str, Seen] = {}
        self._written: dict[str, list[str]] = {}
        self.clock = clock
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                op, c = self.step()
                pause = self.rng.uniform(0, self.config.think)
                if op.outcome != "ok" and not op.condition_failed:
                    pause += self.rng.uniform(self.config.backoff / 2, self.config.backoff)
                if pause:
                    self.stop_event.wait(pause)
        except BaseException as e:  # reported by the runner, never swallowed
            self.error = e

    def step(self) -> tuple[Op, Classified]:
        spec = self.next_spec()
        address = self.rng.choice(list(self.addresses()))
        op, c, _ = execute(spec, address, client=self.client_id, timeout=self.config.timeout,
                           max_redirects=self.config.max_redirects, clock=self.clock)
        self.recorder.add(op, c)
        self._remember(op)
        return op, c

    def next_spec(self) -> OpSpec:
        rng = self.rng
        key = rng.choice(list(self.config.keys))
        names = list(self.config.mix)
        what = rng.choices(names, weights=[self.config.mix[n] for n in names])[0]
        if what == "read":
            return OpSpec("read", key, consistency=self.config.read_consistency)
        kind = "put" if what.startswith("put") else "delete"
        value = self._new_value() if kind == "put" else None
        known = self._memory.get(key)
        condition: Condition | None = None
        if what.endswith("_prev"):
            if known is not None and known.value is not None and rng.random() < 0.8:
                condition = Condition(prev_value=known.value)
            else:
                values = self._written.get(key) or ["never-written"]
                condition = Condition(prev_value=rng.choice(values))
        elif what.endswith("_if_match"):
            if known is not None and known.revision is not None:
                condition = Condition(prev_revision=known.revision)
            else:
                condition = Condition(must_be_absent=True)
        elif what.endswith("_if_absent"):
            condition = Condition(must_be_absent=True)
        return OpSpec(kind, key, value=value, condition=condition)

    def _new_value(self) -> str:
        self._seq += 1
        return f"c{self.client_id}-{self._seq}"

    def _remember(self, op: Op) -> None:
        """What this client last learned of the key, for its next conditions."""
        if op.seen is not None:
            self._memory[op.key] = op.seen
        elif op.outcome == "ok" and op.kind == "put":
            assert op.value is not None
            self._memory[op.key] = Seen(op.value, op.revision)
            written = self._written.setdefault(op.key, [])
            written.append(op.value)
            del written[:-5]
        elif op.outcome == "ok" and op.kind == "delete":
            self._memory[op.key] = Seen(None)
        elif op.outcome == "unknown":
            self._memory.pop(op.key, None)
