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

Why not ``leifdb.client``: the checker needs each operation's single, unretried outcome,
classified from the exact answer (a refused connect vs. a lost one, a 503 saying
``applied: false``, which hop of a redirect answered). The client library retries, follows
redirects and folds these into its errors by design, which is right for users and would
hide what the checker must see. Standard library only (``http.client``), so the threads
need no reactor.
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
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import quote, urlencode, urlsplit

from tests.faults.history import Compare, Condition, Op, Seen, Txn, TxnOp

__all__ = [
    "Answer",
    "Client",
    "ClientConfig",
    "OpSpec",
    "Recorder",
    "SseMessage",
    "SseStream",
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
    revision_header: int | None = None  # X-LeifDB-Revision

    @property
    def sent(self) -> bool:
        return self.error not in ("refused", "connect")


def http_call(address: str, method: str, target: str, headers: dict[str, str],
              timeout: float, body: bytes | None = None) -> Answer:
    """One request on a fresh connection (no reuse, so a lost keep-alive connection can
    never turn a definite failure into an unknown one). ``body`` is sent as is (with its
    Content-Length) when given."""
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
            conn.request(method, target, body=body, headers={**headers, "Connection": "close"})
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
                      response.getheader("Location"),
                      revision_header=_int_or_none(_to_int(response.getheader("X-LeifDB-Revision"))))
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
    txn: Txn | None = None  # kind "txn": POST /txn with this body (``key`` is a label)

    def body(self) -> bytes | None:
        """The request body: a transaction's JSON, else None."""
        if self.txn is None:
            return None
        return json.dumps(txn_json(self.txn)).encode("utf-8")

    def request(self) -> tuple[str, str, dict[str, str]]:
        """(method, target, headers) of this operation."""
        if self.kind == "txn":
            query = {"consistency": self.consistency} if self.consistency else {}
            return ("POST", "/txn" + ("?" + urlencode(query) if query else ""),
                    {"Content-Type": "application/json"})
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
    succeeded: bool | None = None
    results: tuple[Any, ...] | None = None


def _to_int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def txn_json(txn: Txn) -> dict[str, Any]:
    """The ``POST /txn`` body of ``txn`` (the contract's field names)."""
    def ops(branch: tuple[TxnOp, ...]) -> list[dict[str, Any]]:
        return [{"op": o.op, "key": o.key, **({"value": o.value} if o.op == "put" else {})}
                for o in branch]
    return {
        "compare": [{"key": c.key, "target": c.target, "op": c.op, "value": c.value}
                    for c in txn.compare],
        "success": ops(txn.success),
        "failure": ops(txn.failure),
    }


def _txn_results(txn: Txn, body: dict[str, Any]) -> tuple[bool, tuple[Any, ...], int | None] | str:
    """(succeeded, results, revision) of a 200 answer, or what is wrong with it."""
    succeeded = body.get("succeeded")
    results = body.get("results")
    revision = _int_or_none(body.get("revision"))
    if not isinstance(succeeded, bool) or not isinstance(results, list) or revision is None:
        return "no succeeded/results/revision"
    branch = txn.branch(succeeded)
    if len(results) != len(branch):
        return f"{len(results)} results for {len(branch)} operations"
    out: list[Any] = []
    for op, res in zip(branch, results):
        if not isinstance(res, dict) or res.get("op") != op.op or res.get("key") != op.key:
            return f"result {res!r} does not answer {op.describe()}"
        if op.op == "get":
            item = res.get("item", "missing")
            if item is None:
                out.append(Seen(None))
            elif (isinstance(item, dict) and item.get("key") == op.key
                  and isinstance(item.get("value"), str) and _int_or_none(item.get("revision"))):
                out.append(Seen(item["value"], item["revision"]))
            else:
                return f"bad get result {res!r}"
        elif op.op == "delete":
            if not isinstance(res.get("deleted"), bool) or res.get("revision") != revision:
                return f"bad delete result {res!r}"
            out.append(res["deleted"])
        else:
            if res.get("revision") != revision:
                return f"put result {res!r} not at the transaction's revision {revision}"
            out.append(None)
    return succeeded, tuple(out), revision


def classify_txn(spec: OpSpec, answer: Answer) -> Classified:
    """A transaction's outcome: like a write's (like a read's when it only reads); a 200
    carries ``succeeded`` and one result per operation of the branch that ran."""
    txn = spec.txn
    assert txn is not None
    body = answer.body or {}
    status = answer.status
    if status is None:
        if not answer.sent:
            return Classified("fail", why=answer.error or "")
        return Classified("unknown", why=answer.error or "")
    if status == 307:
        return Classified("fail", why="307 not followed")
    if status == 200:
        parsed = _txn_results(txn, body)
        if isinstance(parsed, str):
            return Classified("unknown", unexpected=f"200 txn answer: {parsed}: {body}")
        succeeded, results, revision = parsed
        return Classified("ok", revision=None if txn.read_only else revision, why="200",
                          succeeded=succeeded, results=results)
    if txn.read_only:
        if status in (503, 500, 504):
            return Classified("fail", why=str(status))
        return Classified("unknown", unexpected=f"read-only txn answered {status}: {body}")
    if status == 503:
        if body.get("applied") is False:
            return Classified("fail", why="503")
        return Classified("unknown", why="503 without applied=false")
    if status >= 500:
        return Classified("unknown", why=str(status))
    return Classified("unknown", unexpected=f"txn answered {status}: {body}")


def classify(spec: OpSpec, answer: Answer) -> Classified:
    """The outcome of ``spec`` given its final ``answer`` (after any redirects)."""
    if spec.kind == "txn":
        return classify_txn(spec, answer)
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
    body = spec.body()
    visited = [address]
    invoke = clock()
    answer = http_call(address, method, target, headers, timeout, body)
    hops = 0
    while answer.status == 307 and answer.location and hops < max_redirects:
        hops += 1
        parts = urlsplit(answer.location)
        address = parts.netloc
        target = parts.path + ("?" + parts.query if parts.query else "")
        visited.append(address)
        answer = http_call(address, method, target, headers, timeout, body)
    complete = clock()
    c = classify(spec, answer)
    op = Op(
        client=client, key=spec.key, kind=spec.kind,  # type: ignore[arg-type]
        invoke=invoke, complete=complete, outcome=c.outcome,  # type: ignore[arg-type]
        value=spec.value, condition=spec.condition, revision=c.revision, seen=c.seen,
        condition_failed=c.condition_failed, txn=spec.txn, succeeded=c.succeeded,
        results=c.results,
    )
    return op, c, visited


def writes(op: Op) -> bool:
    """Whether ``op`` is a write (a transaction that may write counts)."""
    if op.kind == "txn":
        return op.txn is not None and not op.txn.read_only
    return op.kind != "read"


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
            if writes(op) and op.outcome == "ok" and op.complete is not None:
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
    # Transactions: pairs of keys they span (keep them disjoint: each pair is one group of
    # the checker) and the share of operations that are transactions.
    txn_pairs: Sequence[tuple[str, str]] = ()
    txn_share: float = 0.0
    txn_mix: dict[str, float] = field(default_factory=lambda: {
        "cas2": 3, "create2": 2, "delete2": 1, "revcas": 2, "read2": 2, "cas_other": 1,
    })
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

    def next_txn(self) -> OpSpec:
        """A transaction on a pair of keys. Each shape pins the state of the keys it
        depends on (a get before writing, or a compare on a known value or revision), which
        keeps unknown writes cheap for the checker."""
        rng = self.rng
        a, b = rng.choice(list(self.config.txn_pairs))
        if rng.random() < 0.5:
            a, b = b, a
        names = list(self.config.txn_mix)
        shape = rng.choices(names, weights=[self.config.txn_mix[n] for n in names])[0]
        get_both = (TxnOp("get", a), TxnOp("get", b))

        def value_is(key: str) -> Compare:
            known = self._memory.get(key)
            if known is not None and known.value is not None and rng.random() < 0.85:
                return Compare(key, "value", "equal", known.value)
            if known is not None and known.value is None:
                return Compare(key, "exists", "equal", False)
            values = self._written.get(key) or ["never-written"]
            return Compare(key, "value", "equal", rng.choice(values))

        if shape == "create2":
            txn = Txn((Compare(a, "exists", "equal", False), Compare(b, "exists", "equal", False)),
                      (TxnOp("put", a, self._new_value()), TxnOp("put", b, self._new_value())), get_both)
        elif shape == "cas2":
            txn = Txn((value_is(a), value_is(b)),
                      (TxnOp("put", a, self._new_value()), TxnOp("put", b, self._new_value())), get_both)
        elif shape == "delete2":
            txn = Txn((value_is(a), value_is(b)), (TxnOp("delete", a), TxnOp("delete", b)), get_both)
        elif shape == "revcas":
            known = self._memory.get(a)
            rev = 0 if known is None or known.value is None else (known.revision or 0)
            txn = Txn((Compare(a, "revision", "equal", rev),),
                      (TxnOp("get", b), TxnOp("put", a, self._new_value()), TxnOp("get", a)),
                      get_both)
        elif shape == "cas_other":
            txn = Txn((value_is(a),), (TxnOp("get", a), TxnOp("put", b, self._new_value())), get_both)
        else:
            txn = Txn((), get_both, ())
        return OpSpec("txn", ",".join(txn.keys()), txn=txn)

    def next_spec(self) -> OpSpec:
        rng = self.rng
        if self.config.txn_pairs and rng.random() < self.config.txn_share:
            return self.next_txn()
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

    def _remember_txn(self, op: Op) -> None:
        txn = op.txn
        assert txn is not None
        if op.outcome == "unknown":
            for key in txn.keys():
                self._memory.pop(key, None)
            return
        if op.outcome != "ok":
            return
        assert op.succeeded is not None and op.results is not None
        for t, res in zip(txn.branch(op.succeeded), op.results):
            if isinstance(res, Seen):
                self._memory[t.key] = res
            elif t.op == "delete":
                self._memory[t.key] = Seen(None)
            elif t.op == "put":
                assert t.value is not None
                self._memory[t.key] = Seen(t.value, op.revision)
                written = self._written.setdefault(t.key, [])
                written.append(t.value)
                del written[:-5]

    def _remember(self, op: Op) -> None:
        """What this client last learned of the key, for its next conditions."""
        if op.kind == "txn":
            self._remember_txn(op)
            return
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


# --- Server-Sent Events -----------------------------------------------------------------


@dataclass(frozen=True)
class SseMessage:
    """One dispatched SSE message: ``event`` ("message" when the server named none),
    ``id`` (the last ``id:`` field seen in it, or None), ``data`` (lines joined by \\n)."""

    event: str
    id: str | None
    data: str

    def json(self) -> Any:
        try:
            return json.loads(self.data)
        except ValueError:
            return None


class SseStream:
    """A ``GET`` whose answer is an ``text/event-stream``, read message by message on a
    plain ``http.client`` connection (no reuse, no reactor).

    ``open()`` sends the request and returns the status; a non-200 answer's JSON body is in
    ``body`` and the stream is closed. Then ``messages()`` yields ``SseMessage``s as they
    arrive, and ends when the server closes the stream. A read that waits longer than
    ``read_timeout`` raises ``socket.timeout``; a lost connection raises ``OSError`` or
    ``http.client.HTTPException``. Parsing follows the SSE rules: ``field: value`` lines
    (one leading space dropped), ``:`` comments, a blank line dispatches the message if it
    has data; ``retry:`` is kept in ``retry``.
    """

    def __init__(self, address: str, target: str, headers: dict[str, str] | None = None, *,
                 connect_timeout: float = 2.5, read_timeout: float = 10.0) -> None:
        self.address = address
        self.target = target
        self.headers = dict(headers or {})
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.status: int | None = None
        self.body: dict[str, Any] | None = None
        self.location: str | None = None
        self.revision_header: int | None = None
        self.retry: int | None = None
        self.error: str | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._response: http.client.HTTPResponse | None = None

    def open(self) -> int | None:
        """Send the request; the status, or None with ``error`` set (refused, connect,
        timeout, lost)."""
        host, _, port = self.address.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=self.connect_timeout)
        self._conn = conn
        try:
            conn.connect()
        except ConnectionRefusedError:
            self.error = "refused"
            self.close()
            return None
        except OSError:
            self.error = "connect"
            self.close()
            return None
        try:
            conn.request("GET", self.target, headers={**self.headers, "Accept": "text/event-stream"})
            assert conn.sock is not None
            conn.sock.settimeout(self.read_timeout)
            response = conn.getresponse()
        except socket.timeout:
            self.error = "timeout"
            self.close()
            return None
        except (OSError, http.client.HTTPException):
            self.error = "lost"
            self.close()
            return None
        self.status = response.status
        self.location = response.getheader("Location")
        self.revision_header = _int_or_none(_to_int(response.getheader("X-LeifDB-Revision")))
        if response.status != 200:
            try:
                raw = response.read()
                body = json.loads(raw) if raw else None
                self.body = body if isinstance(body, dict) else None
            except (OSError, ValueError, http.client.HTTPException):
                pass
            self.close()
            return self.status
        self._response = response
        return self.status

    def messages(self) -> Iterator[SseMessage]:
        response = self._response
        if response is None:
            return
        event, data, last_id = "", [], None
        while True:
            raw = response.readline(1 << 20)
            if not raw:
                return  # the server ended the stream
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                if data:
                    yield SseMessage(event or "message", last_id, "\n".join(data))
                event, data = "", []
                continue
            if line.startswith(":"):
                continue
            name, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                last_id = value
            elif name == "retry" and value.isdigit():
                self.retry = int(value)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._response = None
