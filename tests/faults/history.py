"""Client-side histories of key-value operations, and their JSON-lines form.

A history is what clients saw, not what the servers did: each ``Op`` has the time its
request was sent, the time its answer arrived (None if none ever did), and what the answer
said. The checker in ``tests.faults.linearizability`` decides whether some single order of
the operations explains every answer.

A transaction (``kind`` "txn", ``POST /txn``) carries its ``Txn`` (compares, success and
failure branches of put/delete/get on single keys) and, when ok, its ``succeeded`` flag and
one result per operation of the branch that ran; its ``key`` is only a label (the keys
joined by commas): ``Op.keys()`` names the keys it touches.

The types mirror ``leifdb.kv.commands`` on purpose instead of importing it: the checker is
a specification of the key-value model and must not change when the code under test does.
Standard library only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import IO, Any, Iterable, Iterator, Literal

Kind = Literal["read", "put", "delete", "txn"]
Outcome = Literal["ok", "fail", "unknown"]

KINDS: tuple[str, ...] = ("read", "put", "delete", "txn")
COMPARE_TARGETS: tuple[str, ...] = ("value", "revision", "exists")
COMPARE_OPS: tuple[str, ...] = ("equal", "not_equal", "greater", "less")
TXN_OPS: tuple[str, ...] = ("put", "delete", "get")
OUTCOMES: tuple[str, ...] = ("ok", "fail", "unknown")


class HistoryError(ValueError):
    """An operation or a history line is malformed (not a consistency violation)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """Exactly one test is set. ``prev_value``: the current value equals it (never true
    of an absent key); ``prev_revision``: the key is present at that revision;
    ``must_be_absent``: the key does not exist."""

    prev_value: str | None = None
    prev_revision: int | None = None
    must_be_absent: bool = False

    def __post_init__(self) -> None:
        tests = (self.prev_value is not None) + (self.prev_revision is not None) + self.must_be_absent
        if tests != 1:
            raise HistoryError(f"a condition needs exactly one test, got {self!r}")
        if self.prev_revision is not None and self.prev_revision <= 0:
            raise HistoryError(f"revisions are positive log indexes, got {self.prev_revision}")

    def describe(self) -> str:
        if self.prev_value is not None:
            return f"prev_value={self.prev_value!r}"
        if self.prev_revision is not None:
            return f"prev_revision={self.prev_revision}"
        return "must_be_absent"


@dataclass(frozen=True, slots=True)
class Seen:
    """The key as an operation found it: ``value`` None means absent; ``revision`` None
    means the answer did not say (an absent key has no revision)."""

    value: str | None
    revision: int | None = None

    def __post_init__(self) -> None:
        if self.value is None and self.revision is not None:
            raise HistoryError("an absent key has no revision")
        if self.revision is not None and self.revision <= 0:
            raise HistoryError(f"revisions are positive log indexes, got {self.revision}")

    def describe(self) -> str:
        if self.value is None:
            return "absent"
        if self.revision is None:
            return repr(self.value)
        return f"{self.value!r}@{self.revision}"


@dataclass(frozen=True, slots=True)
class Compare:
    """One compare of a transaction (``POST /txn``): ``target`` of ``key`` against ``value``
    by ``op``. ``value`` target: a str (an absent key fails every comparison); ``revision``:
    an int (an absent key has revision 0); ``exists``: a bool, ``equal``/``not_equal`` only."""

    key: str
    target: str
    op: str
    value: str | int | bool

    def __post_init__(self) -> None:
        if not isinstance(self.key, str):
            raise HistoryError(f"a compare needs a string key: {self!r}")
        if self.target not in COMPARE_TARGETS or self.op not in COMPARE_OPS:
            raise HistoryError(f"bad compare target or op: {self!r}")
        v = self.value
        ok = {
            "value": isinstance(v, str),
            "revision": isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "exists": isinstance(v, bool) and self.op in ("equal", "not_equal"),
        }[self.target]
        if not ok:
            raise HistoryError(f"bad compare value for target {self.target}: {self!r}")

    def describe(self) -> str:
        sym = {"equal": "==", "not_equal": "!=", "greater": ">", "less": "<"}[self.op]
        return f"{self.target}({self.key!r}) {sym} {self.value!r}"


@dataclass(frozen=True, slots=True)
class TxnOp:
    """One operation of a transaction's branch: ``put`` (with ``value``), ``delete`` or
    ``get`` of one key (``range`` is not used by the fault test: it would tie every key
    together)."""

    op: str
    key: str
    value: str | None = None

    def __post_init__(self) -> None:
        if self.op not in TXN_OPS or not isinstance(self.key, str):
            raise HistoryError(f"bad transaction operation: {self!r}")
        if (self.op == "put") != isinstance(self.value, str):
            raise HistoryError(f"only a put has a (string) value: {self!r}")

    def describe(self) -> str:
        if self.op == "put":
            return f"put {self.key!r}={self.value!r}"
        return f"{self.op} {self.key!r}"


@dataclass(frozen=True, slots=True)
class Txn:
    """A transaction: if every compare holds, ``success`` runs, else ``failure``. Each branch
    applies its operations in order at one revision; a get sees the writes before it."""

    compare: tuple[Compare, ...] = ()
    success: tuple[TxnOp, ...] = ()
    failure: tuple[TxnOp, ...] = ()

    def __post_init__(self) -> None:
        for branch in (self.success, self.failure):
            written = [op.key for op in branch if op.op != "get"]
            if len(written) != len(set(written)):
                raise HistoryError(f"two writes to one key in one branch: {self!r}")

    @property
    def read_only(self) -> bool:
        return not any(op.op != "get" for op in self.success + self.failure)

    def keys(self) -> tuple[str, ...]:
        """Every key it compares, reads or writes, sorted."""
        found = {c.key for c in self.compare}
        found.update(op.key for op in self.success + self.failure)
        return tuple(sorted(found))

    def branch(self, succeeded: bool) -> tuple[TxnOp, ...]:
        return self.success if succeeded else self.failure

    def describe(self) -> str:
        def ops(branch: tuple[TxnOp, ...]) -> str:
            return "[" + ", ".join(op.describe() for op in branch) + "]"
        cond = " and ".join(c.describe() for c in self.compare) or "true"
        return f"txn if {cond} then {ops(self.success)} else {ops(self.failure)}"


# The result of one operation of the branch that ran: a get's ``Seen``, a delete's
# ``deleted`` flag (whether the key existed), None for a put (its revision is the txn's).
TxnOpResult = Seen | bool | None


def _txn_result_from_json(value: Any) -> TxnOpResult:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, dict):
        return Seen(**value)
    raise HistoryError(f"bad transaction result {value!r}")


def _txn_result_to_json(value: TxnOpResult) -> Any:
    if isinstance(value, Seen):
        return {"value": value.value, "revision": value.revision}
    return value


def _txn_from_json(data: Any) -> Txn:
    if not isinstance(data, dict) or set(data) - {"compare", "success", "failure"}:
        raise HistoryError(f"bad transaction {data!r}")
    return Txn(
        compare=tuple(Compare(**c) for c in data.get("compare", ())),
        success=tuple(TxnOp(**o) for o in data.get("success", ())),
        failure=tuple(TxnOp(**o) for o in data.get("failure", ())),
    )


def _txn_to_json(txn: Txn) -> dict[str, Any]:
    def ops(branch: tuple[TxnOp, ...]) -> list[dict[str, Any]]:
        return [{"op": o.op, "key": o.key} | ({"value": o.value} if o.value is not None else {})
                for o in branch]
    return {
        "compare": [{"key": c.key, "target": c.target, "op": c.op, "value": c.value}
                    for c in txn.compare],
        "success": ops(txn.success),
        "failure": ops(txn.failure),
    }


@dataclass(frozen=True, slots=True)
class Op:
    """One client request and what its answer told the client.

    ``outcome``: "ok" took effect with the recorded result; "fail" surely did not write
    (with ``condition_failed`` it is the 412 of a conditional write, an observation that
    the condition was false, and ``seen`` is the current value when the answer carried it;
    otherwise, e.g. a 503 with applied=false or a refused connection, it is ignored);
    "unknown" (timeout, lost connection, 504) may have taken effect at any moment after
    ``invoke``, even after ``complete``.

    ``revision`` is the write's own log index when the answer reported it. ``seen`` is what
    the operation observed: required for ok reads, optional for 412s and ok writes (if the
    API reports the previous value), absent otherwise. ``complete`` None: no answer came.
    """

    client: int
    key: str
    kind: Kind
    invoke: float
    complete: float | None
    outcome: Outcome = "ok"
    value: str | None = None
    condition: Condition | None = None
    revision: int | None = None
    seen: Seen | None = None
    condition_failed: bool = False
    txn: Txn | None = None
    succeeded: bool | None = None
    results: tuple[TxnOpResult, ...] | None = None

    def __post_init__(self) -> None:
        self._validate()

    def keys(self) -> tuple[str, ...]:
        """The keys this operation touches (one, or a transaction's keys)."""
        if self.txn is not None:
            return self.txn.keys()
        return (self.key,)

    def _validate(self) -> None:
        def bad(why: str) -> HistoryError:
            return HistoryError(f"{why}: {self!r}")

        if self.kind not in KINDS:
            raise bad(f"kind must be one of {KINDS}")
        if self.outcome not in OUTCOMES:
            raise bad(f"outcome must be one of {OUTCOMES}")
        if not isinstance(self.key, str):
            raise bad("key must be a string")
        if not math.isfinite(self.invoke):
            raise bad("invoke must be a finite time")
        if self.complete is None:
            if self.outcome == "ok":
                raise bad("an ok operation has a completion time")
        elif not math.isfinite(self.complete) or self.complete < self.invoke:
            raise bad("complete must be a finite time not before invoke")
        if self.kind == "txn":
            self._validate_txn(bad)
            return
        if self.txn is not None or self.succeeded is not None or self.results is not None:
            raise bad("only a transaction has txn, succeeded and results")
        if self.kind == "put":
            if not isinstance(self.value, str):
                raise bad("a put needs a string value")
        elif self.value is not None:
            raise bad("only a put has a value")
        if self.kind == "read":
            if self.condition is not None or self.revision is not None:
                raise bad("a read has no condition and no revision of its own")
            if self.outcome == "ok" and self.seen is None:
                raise bad("an ok read needs what it saw (seen)")
        if self.condition_failed:
            if self.condition is None or self.outcome != "fail":
                raise bad("condition_failed is the fail outcome of a conditional write")
        elif self.outcome == "fail" and (self.seen is not None or self.revision is not None):
            raise bad("a write that failed without a 412 observed nothing")
        if self.outcome == "unknown" and (self.seen is not None or self.revision is not None):
            raise bad("an unknown outcome carries no result")
        if self.revision is not None and self.revision <= 0:
            raise bad("revisions are positive log indexes")

    def _validate_txn(self, bad: Any) -> None:
        txn = self.txn
        if not isinstance(txn, Txn):
            raise bad("a transaction needs its txn")
        if self.value is not None or self.condition is not None or self.seen is not None \
                or self.condition_failed:
            raise bad("a transaction has no value, condition, seen or condition_failed")
        if self.outcome == "ok":
            if not isinstance(self.succeeded, bool) or self.results is None:
                raise bad("an ok transaction needs succeeded and results")
            branch = txn.branch(self.succeeded)
            if len(self.results) != len(branch):
                raise bad("one result per operation of the branch that ran")
            for op, res in zip(branch, self.results):
                fits = {"get": isinstance(res, Seen), "delete": isinstance(res, bool),
                        "put": res is None}[op.op]
                if not fits:
                    raise bad(f"result {res!r} does not fit {op.op}")
            if self.revision is not None and txn.read_only:
                raise bad("a read-only transaction has no revision of its own")
        elif self.succeeded is not None or self.results is not None or self.revision is not None:
            raise bad("a transaction without an ok answer carries no result")
        if self.revision is not None and self.revision <= 0:
            raise bad("revisions are positive log indexes")

    def describe(self) -> str:
        """One line for counterexamples, e.g. ``c3 put 'k'='v' if prev_value='a' -> ok@12 [1.0, 1.2]``."""
        end = "never" if self.complete is None else format_time(self.complete)
        if self.kind == "txn":
            assert self.txn is not None
            if self.outcome == "ok":
                assert self.results is not None and self.succeeded is not None
                shown = []
                for op, res in zip(self.txn.branch(self.succeeded), self.results):
                    if isinstance(res, Seen):
                        shown.append(f"{op.key!r}={res.describe()}")
                    elif isinstance(res, bool):
                        shown.append(f"deleted {op.key!r}: {res}")
                result = "-> " + ("succeeded" if self.succeeded else "failed compare")
                if self.revision is not None:
                    result += f"@{self.revision}"
                if shown:
                    result += ", " + ", ".join(shown)
            else:
                result = f"-> {self.outcome}"
            return f"c{self.client} {self.txn.describe()} {result} [{format_time(self.invoke)}, {end}]"
        if self.kind == "read":
            what = f"read {self.key!r}"
        elif self.kind == "put":
            what = f"put {self.key!r}={self.value!r}"
        else:
            what = f"delete {self.key!r}"
        if self.condition is not None:
            what += f" if {self.condition.describe()}"
        if self.kind == "read" and self.outcome == "ok" and self.seen is not None:
            result = f"-> {self.seen.describe()}"
        elif self.condition_failed:
            result = "-> condition failed"
            if self.revision is not None:
                result += f"@{self.revision}"
            if self.seen is not None:
                result += f", saw {self.seen.describe()}"
        else:
            result = f"-> {self.outcome}"
            if self.revision is not None:
                result += f"@{self.revision}"
            if self.seen is not None:
                result += f", saw {self.seen.describe()}"
        return f"c{self.client} {what} {result} [{format_time(self.invoke)}, {end}]"


def format_time(t: float) -> str:
    """Microsecond precision without trailing zeros: monotonic clocks read like 81234.567891."""
    return f"{t:.6f}".rstrip("0").rstrip(".")


def op_to_dict(op: Op) -> dict[str, Any]:
    """The JSON form of ``op``: fields at their default are left out."""
    out: dict[str, Any] = {
        "client": op.client,
        "key": op.key,
        "kind": op.kind,
        "invoke": op.invoke,
        "complete": op.complete,
        "outcome": op.outcome,
    }
    if op.value is not None:
        out["value"] = op.value
    if op.condition is not None:
        c = op.condition
        if c.prev_value is not None:
            out["condition"] = {"prev_value": c.prev_value}
        elif c.prev_revision is not None:
            out["condition"] = {"prev_revision": c.prev_revision}
        else:
            out["condition"] = {"must_be_absent": True}
    if op.revision is not None:
        out["revision"] = op.revision
    if op.seen is not None:
        out["seen"] = {"value": op.seen.value, "revision": op.seen.revision}
    if op.condition_failed:
        out["condition_failed"] = True
    if op.txn is not None:
        out["txn"] = _txn_to_json(op.txn)
    if op.succeeded is not None:
        out["succeeded"] = op.succeeded
    if op.results is not None:
        out["results"] = [_txn_result_to_json(r) for r in op.results]
    return out


_FIELDS = frozenset(
    ("client", "key", "kind", "invoke", "complete", "outcome", "value", "condition",
     "revision", "seen", "condition_failed", "txn", "succeeded", "results")
)


def op_from_dict(data: dict[str, Any]) -> Op:
    """Inverse of ``op_to_dict``; raises ``HistoryError`` on unknown or missing fields."""
    if not isinstance(data, dict):
        raise HistoryError(f"an operation is a JSON object, got {data!r}")
    unknown = set(data) - _FIELDS
    if unknown:
        raise HistoryError(f"unknown fields {sorted(unknown)} in {data!r}")
    try:
        cond = data.get("condition")
        seen = data.get("seen")
        return Op(
            client=data["client"],
            key=data["key"],
            kind=data["kind"],
            invoke=float(data["invoke"]),
            complete=None if data.get("complete") is None else float(data["complete"]),
            outcome=data.get("outcome", "ok"),
            value=data.get("value"),
            condition=None if cond is None else Condition(**cond),
            revision=data.get("revision"),
            seen=None if seen is None else Seen(**seen),
            condition_failed=bool(data.get("condition_failed", False)),
            txn=None if data.get("txn") is None else _txn_from_json(data["txn"]),
            succeeded=data.get("succeeded"),
            results=None if data.get("results") is None
            else tuple(_txn_result_from_json(r) for r in data["results"]),
        )
    except (KeyError, TypeError) as e:
        raise HistoryError(f"bad operation {data!r}: {e!r}") from e


def dump_history(ops: Iterable[Op], out: IO[str]) -> None:
    """Write one JSON object per line, in the given order."""
    for op in ops:
        out.write(json.dumps(op_to_dict(op), sort_keys=True))
        out.write("\n")


def iter_history(lines: Iterable[str]) -> Iterator[Op]:
    """Parse JSON lines; blank lines and lines starting with ``#`` are skipped."""
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise HistoryError(f"line {number}: {e}") from e
        try:
            yield op_from_dict(data)
        except HistoryError as e:
            raise HistoryError(f"line {number}: {e}") from e


def load_history(source: IO[str]) -> list[Op]:
    return list(iter_history(source))


def save_history(ops: Iterable[Op], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        dump_history(ops, f)


def read_history(path: str) -> list[Op]:
    with open(path, encoding="utf-8") as f:
        return load_history(f)
