"""Client-side histories of key-value operations, and their JSON-lines form.

A history is what clients saw, not what the servers did: each ``Op`` has the time its
request was sent, the time its answer arrived (None if none ever did), and what the answer
said. The checker in ``tests.faults.linearizability`` decides whether some single order of
the operations explains every answer.

The types mirror ``leifdb.kv.commands`` on purpose instead of importing it: the checker is
a specification of the key-value model and must not change when the code under test does.
Standard library only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import IO, Any, Iterable, Iterator, Literal

Kind = Literal["read", "put", "delete"]
Outcome = Literal["ok", "fail", "unknown"]

KINDS: tuple[str, ...] = ("read", "put", "delete")
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

    def __post_init__(self) -> None:
        self._validate()

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

    def describe(self) -> str:
        """One line for counterexamples, e.g. ``c3 put 'k'='v' if prev_value='a' -> ok@12 [1.0, 1.2]``."""
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
        end = "never" if self.complete is None else format_time(self.complete)
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
    return out


_FIELDS = frozenset(
    ("client", "key", "kind", "invoke", "complete", "outcome", "value", "condition",
     "revision", "seen", "condition_failed")
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
