"""The linearizability search for groups of keys that transactions tie together.

A transaction that touches several keys breaks the per-key decomposition of
``tests.faults.linearizability``: its keys must be checked together. ``check`` partitions
the history into independent groups, the connected components of the graph whose nodes
are keys and whose edges join the keys of one operation. A group of one key without
transactions goes through the single-key search (its model and prunings); any other group
comes here and is checked as one object whose state maps each of its keys to absent or
``(value, revision)`` (P-compositionality still holds between groups: no operation spans
two of them).

The model of one group (sound, not complete, like the single-key one):

* state: ``(last, e_0, ..., e_{n-1})``: ``last`` the highest revision linearized in the
  group so far, ``e_j`` the entry of the group's j-th key (sorted): None (absent),
  ``(value, revision)``, or ``(value, None, lo, hi, tag)`` while the revision of the write
  that left it is unknown: strictly between lo and hi; ``tag`` is the index of that
  write, so that the keys one transaction wrote bind to the same revision together.
* single-key operations behave as in the single-key model; a transaction evaluates its
  compares on the state, runs the branch its recorded ``succeeded`` names (an unknown
  transaction may run either, or never apply), applies every write at its revision and
  checks each recorded result (a get's value and revision, a delete's ``deleted`` flag).
  A compare of an unknown revision is judged leniently (``equal`` binds the revision when
  it holds; a failed compare against it is always accepted).
* revisions: an operation with a reported revision r needs r above ``last``; the writes
  linearized before it whose revision is unknown get r as upper bound.

The search is the same Wing & Gong / Lowe search as the single-key one (required
operations in a list of call/return events, unknown writes tried only at the frontier,
configurations cached as (required ops linearized, state) with the set of unknown writes
applied, dominated configurations skipped), with these exact prunings: observations that
fit without changing the state are placed at once; a write that would overwrite a value
written once that a pending operation still has to observe is not tried; of identical
unknown operations only the earliest not yet applied is tried. ``prepare`` drops unknown
writes nobody could tell apart and promotes unknown writes whose value was observed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from tests.faults.history import Op, Seen
from tests.faults.linearizability import linked_calls

_INF = float("inf")

State = tuple

# Kinds of prepared operations.
_READ = 0
_WRITE = 1  # a single-key put or delete, ok or unknown
_REFUTE = 2  # a 412
_TXN = 3


def _cmp(a: object, op: str, b: object) -> bool:
    if op == "equal":
        return a == b
    if op == "not_equal":
        return a != b
    if op == "greater":
        return a > b  # type: ignore[operator]
    return a < b  # type: ignore[operator]


def _p_can_make_true(c: object, revs: GroupRevisions | None = None) -> bool:
    """Whether a put of an unseen value with an unseen revision can make compare ``c``
    true where it was false. (An unseen revision is none that was reported or seen.)"""
    target, op, value = c.target, c.op, c.value  # type: ignore[attr-defined]
    if target == "exists":
        return (op == "equal") == bool(value)
    if target == "value":
        return op != "equal"
    if op == "equal" and revs is not None and (value == 0 or not revs.unseen(value)):  # type: ignore[arg-type]
        return False
    return True


def _p_falsifies(c: object, revs: GroupRevisions) -> bool:
    """Whether compare ``c`` is surely false while a put of an unseen value with an unseen
    revision is the key's current write."""
    target, op, value = c.target, c.op, c.value  # type: ignore[attr-defined]
    if target == "exists":
        return (op == "equal") != bool(value)
    if target == "value":
        return op == "equal"
    return op == "equal" and (value == 0 or not revs.unseen(value))  # type: ignore[arg-type]


def _p_can_make_false(c: object) -> bool:
    target, op, value = c.target, c.op, c.value  # type: ignore[attr-defined]
    if target == "exists":
        return (op == "equal") != bool(value)
    if target == "value":
        return op != "not_equal"
    return True


class GroupRevisions:
    """Revision facts of the whole history, for one group's unknown revisions."""

    __slots__ = ("keys", "own", "owner", "seen_on", "seen_value")

    def __init__(self, keys: Sequence[str], ops: Sequence[Op], owner: dict[int, str],
                 seen_on: dict[int, set[str]]) -> None:
        self.keys = frozenset(keys)
        self.own = frozenset(r for r in map(own_revision, ops) if r is not None)
        self.owner = owner
        self.seen_on = seen_on
        index = {k: j for j, k in enumerate(sorted(keys))}
        self.seen_value: list[dict[int, str | None]] = [{} for _ in index]
        for op in ops:
            for key, seen in observations(op):
                if seen.revision is not None:
                    self.seen_value[index[key]][seen.revision] = seen.value

    def unseen(self, r: int) -> bool:
        """Whether ``r`` could be the revision of a write nobody saw."""
        return not (r in self.own or r in self.owner or r in self.seen_on
                    or any(r in d for d in self.seen_value))

    def why_not(self, j: int, r: int, value: str) -> str | None:
        if r in self.own:
            return f"revision {r} belongs to another operation"
        k = self.owner.get(r)
        if k is not None and k not in self.keys:
            return f"revision {r} belongs to another operation"
        on = self.seen_on.get(r)
        if on and not on <= self.keys:
            return f"revision {r} was seen on another key"
        seen = self.seen_value[j].get(r, value)
        if seen != value:
            return f"revision {r} was seen with value {seen!r}"
        return None


def observations(op: Op) -> list[tuple[str, Seen]]:
    """What ``op`` reported seeing, as (key, Seen): its own ``seen`` and, for an ok
    transaction, its gets (including gets of its own writes)."""
    found = []
    if op.seen is not None:
        found.append((op.key, op.seen))
    if op.kind == "txn" and op.outcome == "ok":
        assert op.txn is not None and op.succeeded is not None and op.results is not None
        for t, res in zip(op.txn.branch(op.succeeded), op.results):
            if isinstance(res, Seen):
                found.append((t.key, res))
    return found


def own_revision(op: Op) -> int | None:
    """The revision ``op`` reported for itself; for an ok transaction that did not report
    it, the revision a get of one of its own puts reported (if any)."""
    if op.revision is not None or op.kind != "txn" or op.outcome != "ok":
        return op.revision
    assert op.txn is not None and op.succeeded is not None and op.results is not None
    mine: set[str] = set()
    for t, res in zip(op.txn.branch(op.succeeded), op.results):
        if t.op == "put":
            mine.add(t.key)
        elif t.op == "delete":
            mine.discard(t.key)
        elif t.key in mine and isinstance(res, Seen) and res.revision is not None:
            return res.revision
    return None


class Spec:
    """An operation prepared for the group search."""

    __slots__ = ("op", "kind", "required", "invoke", "complete", "promoted", "rev",
                 "j", "seen", "cond", "new_value", "compares", "succeeded", "branches",
                 "observer", "must_see", "signature", "writes_one", "puts")

    def __init__(self, op: Op, index: dict[str, int], deadline: float | None = None) -> None:
        self.op = op
        self.promoted = deadline is not None
        self.required = op.outcome != "unknown" or self.promoted
        self.invoke = op.invoke
        if deadline is not None:
            self.complete = deadline
        else:
            self.complete = op.complete if op.outcome != "unknown" else _INF
        self.rev = own_revision(op)
        self.seen = None if op.seen is None else (op.seen.value, op.seen.revision)
        self.cond = op.condition
        self.new_value = op.value
        self.compares: tuple = ()
        self.succeeded = op.succeeded
        self.branches: tuple = ()
        self.writes_one = False
        if op.kind == "txn":
            assert op.txn is not None
            self.kind = _TXN
            self.j = -1
            self.compares = tuple((index[c.key], c.target, c.op, c.value) for c in op.txn.compare)

            def compile_branch(branch: tuple, results: tuple | None) -> tuple:
                out = []
                for n, t in enumerate(branch):
                    res = None if results is None else results[n]
                    if isinstance(res, Seen):
                        res = (res.value, res.revision)
                    out.append((t.op, index[t.key], t.value, res))
                return tuple(out)

            if op.outcome == "ok":
                assert op.succeeded is not None
                ran = compile_branch(op.txn.branch(op.succeeded), op.results)
                self.branches = (ran,)
            else:
                self.branches = (compile_branch(op.txn.success, None),
                                 compile_branch(op.txn.failure, None))
            writes = any(t.op != "get" for t in op.txn.success + op.txn.failure)
            ran_writes = (op.outcome != "ok"
                          or any(t.op != "get" for t in op.txn.branch(op.succeeded)))  # type: ignore[arg-type]
            self.observer = not ran_writes or not writes
            self.signature = ("txn", op.txn) if op.outcome == "unknown" else None
        else:
            self.j = index[op.key]
            if op.kind == "read":
                self.kind = _READ
                self.observer = True
            elif op.condition_failed:
                self.kind = _REFUTE
                self.observer = True
            else:
                self.kind = _WRITE
                self.observer = False
                self.writes_one = True
            self.signature = ((op.kind, op.key, op.value, op.condition)
                              if op.outcome == "unknown" else None)
        self.must_see: tuple = ()
        self.puts = tuple((index[k], v) for k, v in _puts(op))

    def describe(self) -> str:
        text = self.op.describe()
        if self.promoted:
            text += f" (a value it writes was observed: it applied by {self.complete:.6f})"
        return text


# --- the model ----------------------------------------------------------------------------


_E = 2  # state[0] last, state[1] order, state[_E + j] the entry of key j


def _bump(s: list, r: int) -> str | None:
    """Linearize a reported revision ``r`` on the mutable state ``s``: every write whose
    revision is unknown was linearized before it, so its revision is below ``r``."""
    if r <= s[0]:
        return f"revision {r} not above {s[0]}"
    s[0] = r
    for j in range(_E, len(s)):
        e = s[j]
        if e is not None and e[1] is None and e[3] > r:
            s[j] = (e[0], None, e[2], r, e[4])
    return None


def _bind(s: list, j: int, r: int, revs: GroupRevisions) -> str | None:
    """The unknown revision of key ``j``'s current write is ``r``: so is that of every key
    the same write left, and the unknown writes before (after) it get ``r`` as upper
    (lower) bound."""
    e = s[_E + j]
    why = revs.why_not(j, r, e[0])
    if why is not None:
        return why
    if not e[2] < r < e[3]:
        hi = "" if e[3] == _INF else f", {e[3]}"
        return f"revision {r} is outside ({e[2]}{hi}) allowed for the current write"
    tag = e[4]
    order = s[1]
    at = order.index(tag)
    before, after = set(order[:at]), set(order[at + 1:])
    for m in range(_E, len(s)):
        x = s[m]
        if x is None or x[1] is not None:
            continue
        if x[4] == tag:
            s[m] = (x[0], r)
        elif x[4] in before and x[3] > r:
            s[m] = (x[0], None, x[2], r, x[4])
        elif x[4] in after and x[2] < r:
            if x[3] <= r:
                return f"revision {r} is not below that of a later write"
            s[m] = (x[0], None, r, x[3], x[4])
    s[1] = order[:at] + order[at + 1:]
    if r > s[0]:
        s[0] = r
    return None


def _observe(s: list, j: int, value: str | None, rev: int | None, revs: GroupRevisions) -> str | None:
    e = s[_E + j]
    if e is None:
        return None if value is None else "it saw another value"
    if e[0] != value:
        return "it saw another value"
    if rev is None:
        return None
    if e[1] is not None:
        return None if e[1] == rev else "it saw another revision"
    return _bind(s, j, rev, revs)


def _cond_holds(s: list, j: int, cond: object, revs: GroupRevisions) -> str | None:
    e = s[_E + j]
    if cond.prev_value is not None:  # type: ignore[attr-defined]
        return None if e is not None and e[0] == cond.prev_value else "its condition is false here"  # type: ignore[attr-defined]
    if cond.must_be_absent:  # type: ignore[attr-defined]
        return None if e is None else "its condition is false here"
    r = cond.prev_revision  # type: ignore[attr-defined]
    if e is None:
        return "its condition is false here"
    if e[1] is not None:
        return None if e[1] == r else "its condition is false here"
    return _bind(s, j, r, revs)


def _cond_can_fail(s: list, j: int, cond: object) -> bool:
    e = s[_E + j]
    if cond.prev_value is not None:  # type: ignore[attr-defined]
        return e is None or e[0] != cond.prev_value  # type: ignore[attr-defined]
    if cond.must_be_absent:  # type: ignore[attr-defined]
        return e is not None
    return e is None or e[1] is None or e[1] != cond.prev_revision  # type: ignore[attr-defined]


def _compare_true(s: list, c: tuple, revs: GroupRevisions) -> str | None:
    """Make compare ``c`` hold on ``s`` (binding an unknown revision if it must), or why not."""
    j, target, op, x = c
    e = s[_E + j]
    if target == "exists":
        return None if _cmp(e is not None, op, x) else "a compare is false here"
    if target == "value":
        return None if e is not None and _cmp(e[0], op, x) else "a compare is false here"
    if e is None or e[1] is not None:
        rev = 0 if e is None else e[1]
        return None if _cmp(rev, op, x) else "a compare is false here"
    lo, hi = e[2], e[3]
    if op == "equal":
        return _bind(s, j, x, revs)
    if op == "less":
        return None if lo < x else "a compare is false here"
    if op == "greater":
        return None if hi > x else "a compare is false here"
    return None


def _compare_can_fail(s: list, c: tuple) -> bool:
    j, target, op, x = c
    e = s[_E + j]
    if target == "exists":
        return not _cmp(e is not None, op, x)
    if target == "value":
        return e is None or not _cmp(e[0], op, x)
    if e is None or e[1] is not None:
        rev = 0 if e is None else e[1]
        return not _cmp(rev, op, x)
    lo, hi = e[2], e[3]
    if op == "less":
        return hi > x
    if op == "greater":
        return lo < x
    return True  # equal / not_equal against an unknown revision: lenient


def _write(s: list, j: int, value: str | None, rev: int | None, tag: int) -> None:
    if value is None:
        s[_E + j] = None
    elif rev is not None:
        s[_E + j] = (value, rev)
    else:
        s[_E + j] = (value, None, s[0], _INF, tag)
        if tag not in s[1]:
            s[1] = s[1] + (tag,)


def _finish(s: list) -> State:
    """The state as a tuple, forgetting the order of writes no key shows any more."""
    order = s[1]
    if order:
        live = {e[4] for e in s[_E:] if e is not None and e[1] is None}
        if len(live) != len(order):
            s[1] = tuple(t for t in order if t in live)
    return tuple(s)


def _run_branch(s: list, branch: tuple, rev: int | None, tag: int, check: bool,
                revs: GroupRevisions) -> str | None:
    mine: list[int] = []  # keys this branch put so far
    for op, j, value, res in branch:
        if op == "put" and rev is None and mine:
            e = s[_E + mine[0]]
            if e[1] is not None:  # a get of an earlier put bound this transaction's revision
                rev = e[1]
        if op == "get":
            if check:
                why = _observe(s, j, res[0], res[1], revs)
                if why is not None:
                    return "a get " + why[3:] if why.startswith("it ") else why
        elif op == "delete":
            if check and res != (s[_E + j] is not None):
                return f"its delete reported deleted={res}, yet the key was " + (
                    "present" if s[_E + j] is not None else "absent")
            s[_E + j] = None
        else:
            _write(s, j, value, rev, tag)
            mine.append(j)
    return None


def step(spec: Spec, i: int, state: State, revs: GroupRevisions) -> list[State] | str:
    """The states after ``spec`` (index ``i``) takes effect in ``state``, or why it cannot."""
    s = list(state)
    kind = spec.kind
    if spec.seen is not None:
        why = _observe(s, spec.j, spec.seen[0], spec.seen[1], revs)
        if why is not None:
            return why
    if kind == _READ:
        return [_finish(s)]
    r = spec.rev
    if kind == _REFUTE:
        if not _cond_can_fail(s, spec.j, spec.cond):
            return "its condition holds here, yet it failed"
        if r is not None:
            why = _bump(s, r)
            if why is not None:
                return why
        return [_finish(s)]
    if r is not None:
        why = _bump(s, r)
        if why is not None:
            return why
    if kind == _WRITE:
        if spec.cond is not None:
            why = _cond_holds(s, spec.j, spec.cond, revs)
            if why is not None:
                return why
        _write(s, spec.j, spec.new_value, r, i)
        return [_finish(s)]
    # A transaction.
    if spec.succeeded is not None:
        if spec.succeeded:
            for c in spec.compares:
                why = _compare_true(s, c, revs)
                if why is not None:
                    return why + ", yet it succeeded"
        elif not any(_compare_can_fail(s, c) for c in spec.compares):
            return "every compare holds here, yet it failed"
        why = _run_branch(s, spec.branches[0], r, i, True, revs)
        if why is not None:
            return why
        return [_finish(s)]
    out: list[State] = []
    ok = list(s)
    if all(_compare_true(ok, c, revs) is None for c in spec.compares):
        _run_branch(ok, spec.branches[0], r, i, False, revs)
        out.append(_finish(ok))
    if any(_compare_can_fail(s, c) for c in spec.compares):
        _run_branch(s, spec.branches[1], r, i, False, revs)
        t = _finish(s)
        if t not in out:
            out.append(t)
    return out if out else "it can take neither branch here"


def describe_state(state: State, keys: Sequence[str]) -> str:
    parts = []
    for k, e in zip(keys, state[_E:]):
        if e is None:
            parts.append(f"{k!r} absent")
        elif e[1] is not None:
            parts.append(f"{k!r}={e[0]!r}@{e[1]}")
        else:
            upper = "" if e[3] == _INF else f" below {e[3]}"
            parts.append(f"{k!r}={e[0]!r} (revision unknown, above {e[2]}{upper})")
    return ", ".join(parts)


# --- preparing a group's history ------------------------------------------------------


def informative(op: Op) -> bool:
    if op.outcome == "fail":
        return op.condition_failed
    if op.outcome == "unknown":
        if op.kind == "txn":
            return not op.txn.read_only  # type: ignore[union-attr]
        return op.kind != "read"
    return True


def _pre_state_gets(op: Op) -> dict[str, Seen]:
    """For an ok transaction: the keys its branch read before writing them, and what it saw."""
    found: dict[str, Seen] = {}
    written: set[str] = set()
    assert op.txn is not None and op.succeeded is not None and op.results is not None
    for t, res in zip(op.txn.branch(op.succeeded), op.results):
        if t.op == "get" and t.key not in written and t.key not in found:
            assert isinstance(res, Seen)
            found[t.key] = res
        elif t.op != "get":
            written.add(t.key)
    return found


def must_observe(op: Op) -> list[tuple[str, str]]:
    """Values that ``op`` (if it took effect with its recorded result) saw as the state
    before it: (key, value) pairs."""
    out: list[tuple[str, str]] = []
    if op.seen is not None and op.seen.value is not None:
        out.append((op.key, op.seen.value))
    if op.kind == "txn":
        if op.outcome != "ok":
            return out
        pre = _pre_state_gets(op)
        for key, seen in pre.items():
            if seen.value is not None:
                out.append((key, seen.value))
        if op.succeeded:
            for c in op.txn.compare:  # type: ignore[union-attr]
                if c.target == "value" and c.op == "equal" and (c.key, c.value) not in out:
                    out.append((c.key, c.value))  # type: ignore[arg-type]
        return out
    cond = op.condition
    if (op.kind != "read" and not op.condition_failed and cond is not None
            and cond.prev_value is not None and op.outcome == "ok"
            and (op.key, cond.prev_value) not in out):
        out.append((op.key, cond.prev_value))
    return out


def _puts(op: Op) -> list[tuple[str, str]]:
    """(key, value) of every put ``op`` may make."""
    if op.kind == "put":
        return [(op.key, op.value)]  # type: ignore[list-item]
    if op.kind == "txn":
        txn = op.txn
        assert txn is not None
        branches = (txn.branch(op.succeeded),) if op.outcome == "ok" else (txn.success, txn.failure)  # type: ignore[arg-type]
        return [(t.key, t.value) for b in branches for t in b if t.op == "put"]  # type: ignore[misc]
    return []


def prepare(ops: Sequence[Op], keys: Sequence[str], revs: GroupRevisions) -> list[Spec]:
    """The group's operations the search needs, sorted by invoke time (see the module
    docstring and ``linearizability._prepare`` for why the simplifications are exact)."""
    index = {k: j for j, k in enumerate(keys)}
    ops = [op for op in ops if informative(op)]
    writers: dict[tuple[str, str], int] = defaultdict(int)
    needed_by: dict[tuple[str, str], float] = {}
    mentioned: set[tuple[str, str]] = set()
    blocked_until: dict[str, float] = defaultdict(lambda: -_INF)

    def block(key: str, end: float | None) -> None:
        t = _INF if end is None else end
        if t > blocked_until[key]:
            blocked_until[key] = t

    for op in ops:
        if op.outcome != "fail":
            for kv in _puts(op):
                writers[kv] += 1
        for key, seen in observations(op):
            if seen.value is not None:
                mentioned.add((key, seen.value))
        cond = op.condition
        if cond is not None and cond.prev_value is not None:
            mentioned.add((op.key, cond.prev_value))
        if op.txn is not None:
            for c in op.txn.compare:
                if c.target == "value":
                    mentioned.add((c.key, c.value))  # type: ignore[arg-type]
        if op.outcome != "unknown":
            for kv in must_observe(op):
                if op.complete is not None and op.complete < needed_by.get(kv, _INF):
                    needed_by[kv] = op.complete
        end = op.complete if op.outcome != "unknown" else None
        if op.condition_failed and op.seen is None:
            block(op.key, end)
        if cond is not None and cond.prev_revision is not None and revs.unseen(cond.prev_revision):
            block(op.key, end)
        if op.kind == "txn":
            txn = op.txn
            assert txn is not None
            if op.outcome == "ok":
                # Keys whose state at the transaction is pinned: read before written, or
                # compared equal to a value, or found absent, by compares that held.
                pre = set(_pre_state_gets(op))
                if op.succeeded:
                    pre.update(c.key for c in txn.compare if _p_falsifies(c, revs))
                branch = txn.branch(op.succeeded)  # type: ignore[arg-type]
                for c in txn.compare:
                    if c.key in pre:
                        continue
                    if (_p_can_make_true(c, revs) if op.succeeded else _p_can_make_false(c)):
                        block(c.key, end)
                for t in branch:
                    if t.op == "delete" and t.key not in pre:
                        block(t.key, end)
            else:
                s_writes = any(t.op != "get" for t in txn.success)
                f_writes = any(t.op != "get" for t in txn.failure)
                for c in txn.compare:
                    if (s_writes and _p_can_make_true(c, revs)) or (f_writes and _p_can_make_false(c)):
                        block(c.key, None)

    specs = []
    for op in sorted(ops, key=lambda op: (op.invoke, _INF if op.complete is None else op.complete)):
        if op.outcome == "unknown" and op.kind in ("put", "txn"):
            puts = _puts(op)
            pure = op.kind == "put" or all(
                t.op != "delete" for t in op.txn.success + op.txn.failure)  # type: ignore[union-attr]
            if pure and puts and not any(kv in mentioned for kv in puts) and all(
                    blocked_until[k] < op.invoke for k, _ in puts):
                continue
            deadlines = [needed_by[kv] for kv in puts if kv in needed_by and writers[kv] == 1]
            if deadlines:
                specs.append(Spec(op, index, min(deadlines)))
                continue
        specs.append(Spec(op, index))
    for s in specs:
        if s.required:
            s.must_see = tuple((index[k], v) for k, v in must_observe(s.op))
    return specs


# --- the search -------------------------------------------------------------------------


@dataclass
class Deepest:
    linearized: list[int]
    state: State
    blocked: int
    pending: list[int]


@dataclass
class Outcome:
    ok: bool | None
    states: int
    deepest: Deepest | None
    reason: str | None = None
    culprits: tuple[int, ...] = ()


_CLOCK_EVERY = 2048


def search(specs: list[Spec], nkeys: int, revs: GroupRevisions, deadline: float | None) -> Outcome:
    import time

    n = len(specs)
    remaining = sum(1 for s in specs if s.required)
    if remaining == 0:
        return Outcome(True, 0, None)
    writers: dict[tuple[int, str], int] = defaultdict(int)
    for s in specs:
        for jv in s.puts:
            writers[jv] += 1
    must_see: list[tuple] = [()] * n
    waiting: dict[tuple[int, str], int] = defaultdict(int)
    for i, s in enumerate(specs):
        if not s.required:
            continue
        for jv in s.must_see:
            if jv not in writers:
                return Outcome(False, 0, None,
                               f"No operation writes {jv[1]!r} to this key, yet this one observed it", (i,))
        once = tuple(jv for jv in s.must_see if writers[jv] == 1)
        must_see[i] = once
        for jv in once:
            waiting[jv] += 1

    tail, u_head, u_tail, nxt, prv, unknown = linked_calls(specs)
    required = [s.required for s in specs]
    observer = [s.observer for s in specs]
    invoke = [s.invoke for s in specs]
    complete = [s.complete for s in specs]
    bit = [1 << i for i in range(n)]
    twin_before = [-1] * n
    last_of: dict = {}
    for _, i, _ in unknown:
        sig = specs[i].signature
        if sig is not None:
            twin_before[i] = last_of.get(sig, -1)
            last_of[sig] = i

    def hopeless(i: int, old: State, new: State) -> bool:
        for j in range(_E, len(old)):
            e = old[j]
            if e is None:
                continue
            f = new[j]
            if f is not None and f[0] == e[0]:
                continue
            jv = (j - _E, e[0])
            w = waiting.get(jv, 0)
            if w and w > must_see[i].count(jv):
                return True
        return False

    cache: dict[tuple[int, State], list[int]] = {}
    states = 0
    stack: list[tuple[int, State, bool, float, int]] = []
    state: State = (0, ()) + (None,) * nkeys
    req_bits = 0
    unk_bits = 0
    node = nxt[0]
    alt0 = 0
    in_main = True
    frontier = 0.0
    deepest: Deepest | None = None
    ticks = 0

    def dead_end() -> Deepest:
        pending = []
        walk = nxt[0]
        while walk <= n:
            pending.append(walk - 1)
            walk = nxt[walk]
        blocked = walk - n - 1 if n < walk < 2 * n + 1 else -1
        front = specs[blocked].complete if blocked >= 0 else _INF
        walk = nxt[u_head]
        while walk != u_tail and specs[walk - 1].invoke <= front:
            pending.append(walk - 1)
            walk = nxt[walk]
        return Deepest([e[0] for e in stack], state, blocked, pending)

    def push(i: int, new: State, forced: bool, front: float, alt: int) -> None:
        nonlocal state, req_bits, unk_bits, remaining
        stack.append((i, state, forced, front, alt))
        for jv in must_see[i]:
            waiting[jv] -= 1
        state = new
        c = i + 1
        p, q = prv[c], nxt[c]
        nxt[p] = q
        prv[q] = p
        if required[i]:
            req_bits |= bit[i]
            r = n + 1 + i
            p, q = prv[r], nxt[r]
            nxt[p] = q
            prv[q] = p
            remaining -= 1
        else:
            unk_bits |= bit[i]

    while True:
        if remaining == 0:
            return Outcome(True, states, None)
        ticks += 1
        if deadline is not None and ticks % _CLOCK_EVERY == 0 and time.monotonic() > deadline:
            return Outcome(None, states, deepest)
        backtrack = False
        if in_main:
            if node <= n:
                i = node - 1
                succs = step(specs[i], i, state, revs)
                pushed = False
                if succs.__class__ is list:
                    for a in range(alt0, len(succs)):
                        new = succs[a]
                        if not observer[i] and hopeless(i, state, new):
                            continue
                        forced = observer[i] and new == state and len(succs) == 1
                        bits = req_bits | bit[i]
                        key = (bits, new)
                        seen = cache.get(key)
                        if seen is not None and any(x | unk_bits == unk_bits for x in seen):
                            if forced:
                                backtrack = True
                                break
                            continue
                        if seen is None:
                            cache[key] = [unk_bits]
                        else:
                            seen.append(unk_bits)
                        states += 1
                        push(i, new, forced, 0.0, a)
                        pushed = True
                        break
                alt0 = 0
                if pushed:
                    node = nxt[0]
                    continue
                if not backtrack:
                    node = nxt[node]
                    continue
            elif node == tail:
                return Outcome(False, states, deepest)
            else:
                frontier = complete[node - n - 1]
                in_main = False
                node = nxt[u_head]
                alt0 = 0
                continue
        elif node != u_tail and invoke[node - 1] <= frontier:
            i = node - 1
            twin = twin_before[i]
            if twin >= 0 and not unk_bits & bit[twin]:
                node = nxt[node]
                alt0 = 0
                continue
            succs = step(specs[i], i, state, revs)
            pushed = False
            if succs.__class__ is list:
                for a in range(alt0, len(succs)):
                    new = succs[a]
                    if new == state or hopeless(i, state, new):
                        continue
                    bits = unk_bits | bit[i]
                    key = (req_bits, new)
                    seen = cache.get(key)
                    if seen is not None and any(x | bits == bits for x in seen):
                        continue
                    if seen is None:
                        cache[key] = [bits]
                    else:
                        seen.append(bits)
                    states += 1
                    push(i, new, False, frontier, a)
                    pushed = True
                    break
            alt0 = 0
            if pushed:
                node = nxt[0]
                in_main = True
                continue
            node = nxt[node]
            continue
        else:
            backtrack = True

        if deepest is None or len(stack) > len(deepest.linearized):
            deepest = dead_end()
        while True:
            if not stack:
                return Outcome(False, states, deepest)
            i, state, forced, frontier, a = stack.pop()
            c = i + 1
            for jv in must_see[i]:
                waiting[jv] += 1
            if required[i]:
                req_bits ^= bit[i]
                r = n + 1 + i
                nxt[prv[r]] = r
                prv[nxt[r]] = r
                remaining += 1
            else:
                unk_bits ^= bit[i]
            nxt[prv[c]] = c
            prv[nxt[c]] = c
            if not forced:
                break
        node = c  # try its next alternative, then the operations after it
        alt0 = a + 1
        in_main = required[i]


# --- explaining a failing group -----------------------------------------------------------

_MAX_LISTED = 40


def explain(keys: Sequence[str], original: int, ops: Sequence[Op], specs: list[Spec],
            outcome: Outcome, revs: GroupRevisions) -> str:
    names = ", ".join(repr(k) for k in keys)
    lines = [f"keys {names} (tied together by transactions) are not linearizable."]
    if outcome.reason is not None:
        lines.append(outcome.reason + ":")
        lines.extend(f"  {specs[i].describe()}" for i in outcome.culprits)
        return "\n".join(lines)
    shown = sorted(ops, key=lambda op: (op.invoke, op.client))
    lines.append(
        f"A sub-history of {len(ops)} of their {original} operations already fails"
        + (":" if len(shown) <= _MAX_LISTED else f" (last {_MAX_LISTED} by invoke time shown):"))
    if len(shown) > _MAX_LISTED:
        lines.append(f"  ... {len(shown) - _MAX_LISTED} earlier operations")
    lines.extend(f"  {op.describe()}" for op in shown[-_MAX_LISTED:])
    deepest = outcome.deepest
    if deepest is not None:
        lin = deepest.linearized
        if lin:
            lines.append(f"At best {len(lin)} of its {len(specs)} searched operations can be "
                         f"linearized, leaving {describe_state(deepest.state, keys)}; the last ones were:")
            lines.extend(f"  {specs[i].describe()}" for i in lin[-5:])
        else:
            lines.append("Not even the first operation can be linearized; every key starts absent.")
        if deepest.blocked >= 0:
            lines.append("Then this operation must take effect before it returns, but cannot:")
            lines.append(f"  {specs[deepest.blocked].describe()}")
        lines.append("Operations that could have gone next, and why they do not fit:")
        for i in deepest.pending:
            why = step(specs[i], i, deepest.state, revs)
            reason = why if isinstance(why, str) else "fits here, but every continuation fails later"
            lines.append(f"  {specs[i].describe()}: {reason}")
    return "\n".join(lines)


def check_group(ops: Sequence[Op], keys: Sequence[str], owner: dict[int, str],
                seen_on: dict[int, set[str]], deadline: float | None
                ) -> tuple[list[Spec], Outcome, GroupRevisions]:
    revs = GroupRevisions(keys, ops, owner, seen_on)
    specs = prepare(ops, keys, revs)
    return specs, search(specs, len(keys), revs, deadline), revs
