"""Linearizability checker for LeifDB's key-value model.

The model: each key is a register that is absent or holds ``(value, revision)``. A put sets
it, a delete makes it absent, a conditional write does so only when its condition holds, a
read observes it. A write's revision is the Raft log index it was applied at: unique across
all keys and increasing in linearization order.

Algorithm: Wing & Gong's search with Lowe's memoization, as in Knossos and Porcupine. A
history of a key-value store is linearizable iff the sub-history of every key is
(P-compositionality), so each key is checked alone. For one key the search walks a linked
list of call/return events, tries to linearize a pending call next, and backtracks when it
meets the return of an operation it could not place; a cache of (linearized operations as
a bitset, model state) prunes configurations already explored. ``_search`` lists the
further exact prunings that keep thousands of operations per key fast.

How outcomes enter the search:

* ok: must be linearized between invoke and complete, and must produce its recorded result.
* fail with a 412 (``condition_failed``): a read that saw the condition false (and the
  current value, when the answer carried it); it writes nothing. Other fails are dropped.
* unknown: a write that may take effect at any point after invoke (even after its timeout),
  or never. Unknown reads carry no information and are dropped. ``_prepare`` turns most
  unknown puts into something cheaper: one whose value was observed by a definite operation
  (and that nobody else writes) must have applied before that observer completed, so it
  gets that deadline; one whose value nothing observes is dropped when nothing else could
  reveal it. Write unique values and keep the current value in 412 answers for speed.

Revisions (sound, not complete):

* reported revisions are checked exactly: a read or 412 that reports revision r of a key
  whose current write has revision r' != r fails; revisions increase along each key's
  linearization; a prev_revision condition compares with the current write's revision.
* a write whose revision was never reported (unknown outcome, or an answer without it) has
  an unknown revision: strictly between the last revision linearized before it and the
  first one linearized after it, never a revision reported for another operation or seen
  on another key or with another value. The first observation that names it (a read
  reporting revision r, a prev_revision=r condition that held) binds it to r from then on.
  So a prev_revision condition can match any write whose revision was never observed, as
  long as the bounds allow. Integer gaps are not counted (revisions are treated as dense),
  and a 412 on prev_revision against an unknown revision is always accepted.
* across keys, a cheap pre-check: reported revisions are unique; a revision seen on one key
  was not reported for or seen on another (unless one transaction put both keys); and revision order never contradicts real time
  (if a's revision is below b's, a was invoked before b completed; an operation that saw
  revision r completed after every write below r was invoked).

Transactions (``kind == "txn"``, ``POST /txn``) tie keys together, so the history is first
split into independent groups (``groups``: connected components of keys touched by one
operation). A group of one key without transactions is checked as above; any other group
is checked as one object whose state maps each key to absent or (value, revision), by the
search of ``tests.faults.multikey`` (same algorithm and outcomes: an ok transaction must
produce its recorded ``succeeded`` flag and results, an unknown one applies whole with
either branch at any point after invoke, or never). Keep the groups small (the fault test's
clients run transactions only within fixed pairs of keys) and the state of compared keys
pinned (a get before a write, or a compare on a known value or revision): then unknown
writes stay cheap, as for single keys.

Times are compared as given: equal times count as concurrent. The initial state of every
key is absent: check histories taken on a fresh cluster, or record set-up writes as
operations.

Command line: ``python -m tests.faults.linearizability history.jsonl [--timeout S]``;
exit status 0 linearizable, 1 not, 2 bad input, 3 undecided (timeout).
"""

from __future__ import annotations

import argparse
import bisect
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

from tests.faults.history import (
    Condition,
    HistoryError,
    Op,
    Seen,
    dump_history,
    format_time,
    load_history,
    read_history,
    save_history,
)

__all__ = [
    "CheckResult",
    "groups",
    "Condition",
    "HistoryError",
    "KeyResult",
    "Op",
    "Seen",
    "check",
    "dump_history",
    "load_history",
    "main",
    "read_history",
    "save_history",
]

_INF = float("inf")

# Modes of an operation in the search.
_OBSERVE = 0  # ok read: checks the state, changes nothing
_REFUTE = 1  # 412: the condition was false; checks the state, writes nothing
_APPLY = 2  # ok or unknown write

# Condition kinds.
_NO_COND = 0
_PREV_VALUE = 1
_PREV_REVISION = 2
_MUST_BE_ABSENT = 3

# Model state: (value, revision, lo, hi, last). value None: absent. revision None while the
# key is present: the current write's revision is unknown, strictly between lo and hi.
# last: the highest revision linearized on this key so far (0 if none). Fields that do not
# matter are normalised to 0 so that equal behaviour means equal cache keys.
State = tuple
_ABSENT: State = (None, None, 0, 0, 0)


class _Spec:
    """An operation prepared for the search (immutable after ``_prepare``)."""

    __slots__ = (
        "op", "mode", "cond_kind", "cond_arg", "new_value", "rev",
        "has_seen", "seen_value", "seen_rev", "required", "invoke", "complete", "promoted",
    )

    def __init__(self, op: Op, deadline: float | None = None) -> None:
        """``deadline``: an unknown write that must have applied by then (see ``_prepare``)."""
        self.op = op
        if op.kind == "read":
            self.mode = _OBSERVE
        elif op.condition_failed:
            self.mode = _REFUTE
        else:
            self.mode = _APPLY
        cond = op.condition
        if cond is None:
            self.cond_kind, self.cond_arg = _NO_COND, None
        elif cond.prev_value is not None:
            self.cond_kind, self.cond_arg = _PREV_VALUE, cond.prev_value
        elif cond.prev_revision is not None:
            self.cond_kind, self.cond_arg = _PREV_REVISION, cond.prev_revision
        else:
            self.cond_kind, self.cond_arg = _MUST_BE_ABSENT, None
        self.new_value = op.value  # None for a delete
        self.rev = op.revision
        self.has_seen = op.seen is not None
        self.seen_value = op.seen.value if op.seen else None
        self.seen_rev = op.seen.revision if op.seen else None
        self.promoted = deadline is not None
        self.required = op.outcome != "unknown" or self.promoted
        self.invoke = op.invoke
        if deadline is not None:
            self.complete = deadline
        else:
            self.complete = op.complete if op.outcome != "unknown" else _INF

    def describe(self) -> str:
        text = self.op.describe()
        if self.promoted:
            text += f" (its value was observed: it applied by {format_time(self.complete)})"
        return text


# --- revision facts from the whole history ---------------------------------------


class _Elsewhere:
    """Revisions reported for or seen on keys other than ``key``: facts about the whole
    history that a key's unknown revisions must avoid."""

    __slots__ = ("key", "owner", "seen_on")

    def __init__(self, key: str, owner: dict[int, str], seen_on: dict[int, set[str]]) -> None:
        self.key = key
        self.owner = owner
        self.seen_on = seen_on

    def __contains__(self, r: object) -> bool:
        k = self.owner.get(r)  # type: ignore[call-overload]
        if k is not None and k != self.key:
            return True
        keys = self.seen_on.get(r)  # type: ignore[call-overload]
        return bool(keys) and (len(keys) > 1 or self.key not in keys)


class _Revisions:
    """What the history says about one key's revisions, for writes whose own revision is
    unknown: it is not one reported for another operation of the key, nor one belonging
    to another key, and if some operation saw the key at revision r with value v, only a
    write of v can have revision r."""

    __slots__ = ("own", "elsewhere", "seen_value")

    def __init__(self, ops: Sequence[Op], elsewhere: _Elsewhere) -> None:
        self.own = frozenset(op.revision for op in ops if op.revision is not None)
        self.elsewhere = elsewhere
        self.seen_value = {
            op.seen.revision: op.seen.value
            for op in ops
            if op.seen is not None and op.seen.revision is not None
        }

    def why_not(self, r: int, value: str) -> str | None:
        """Why a write of ``value`` whose revision is unknown cannot have revision ``r``."""
        if r in self.own or r in self.elsewhere:
            return f"revision {r} belongs to another operation"
        seen = self.seen_value.get(r, value)
        if seen != value:
            return f"revision {r} was seen with value {seen!r}"
        return None

    def unseen(self, r: int) -> bool:
        """Whether ``r`` could be the revision of a write nobody saw."""
        return not (r in self.own or r in self.elsewhere or r in self.seen_value)


# --- the model -------------------------------------------------------------------------
# Each function returns the next state (a tuple) or a short reason (a str) why the
# operation cannot take effect in this state.


def _bind(state: State, r: int, revs: _Revisions) -> State | str:
    value, _, lo, hi, last = state
    why = revs.why_not(r, value)
    if why is not None:
        return why
    if not lo < r < hi:
        return f"revision {r} is outside ({lo}, {hi}) allowed for the current write"
    return (value, r, 0, 0, last if last > r else r)


def _observe(state: State, value: str | None, rev: int | None, revs: _Revisions) -> State | str:
    if state[0] != value:
        return "it saw another value"
    if rev is None or value is None:
        return state
    if state[1] is not None:
        return state if state[1] == rev else "it saw another revision"
    return _bind(state, rev, revs)


def _cond_holds(state: State, kind: int, arg: object, revs: _Revisions) -> State | str:
    if kind == _PREV_VALUE:
        return state if state[0] == arg else "its condition is false here"
    if kind == _MUST_BE_ABSENT:
        return state if state[0] is None else "its condition is false here"
    if state[0] is None:  # _PREV_REVISION
        return "its condition is false here"
    if state[1] is not None:
        return state if state[1] == arg else "its condition is false here"
    return _bind(state, arg, revs)  # type: ignore[arg-type]


def _cond_can_fail(state: State, kind: int, arg: object) -> bool:
    if kind == _PREV_VALUE:
        return state[0] != arg
    if kind == _MUST_BE_ABSENT:
        return state[0] is not None
    return state[0] is None or state[1] is None or state[1] != arg


def _step(s: _Spec, state: State, revs: _Revisions) -> State | str:
    """The state after ``s`` takes effect in ``state``, or why it cannot."""
    if s.has_seen:
        state = _observe(state, s.seen_value, s.seen_rev, revs)
        if state.__class__ is str:
            return state
    mode = s.mode
    if mode == _OBSERVE:
        return state
    r = s.rev
    if mode == _REFUTE:
        if not _cond_can_fail(state, s.cond_kind, s.cond_arg):
            return "its condition holds here, yet it failed"
        if r is None:
            return state
        value, rev, lo, hi, last = state
        if r <= last:
            return f"revision {r} not above {last}"
        if value is not None and rev is None and r < hi:
            hi = r
        return (value, rev, lo, hi, r)
    if s.cond_kind != _NO_COND:
        state = _cond_holds(state, s.cond_kind, s.cond_arg, revs)
        if state.__class__ is str:
            return state
    last = state[4]
    value = s.new_value
    if r is not None:
        if r <= last:
            return f"revision {r} not above {last}"
        return (None, None, 0, 0, r) if value is None else (value, r, 0, 0, r)
    return (None, None, 0, 0, last) if value is None else (value, None, last, _INF, last)


def _describe_state(state: State) -> str:
    value, rev, lo, hi, _ = state
    if value is None:
        return "absent"
    if rev is not None:
        return f"{value!r}@{rev}"
    upper = "" if hi == _INF else f" below {hi}"
    return f"{value!r} (revision unknown, above {lo}{upper})"


# --- preparing a key's history --------------------------------------------------------


def _informative(op: Op) -> bool:
    """Whether ``op`` constrains the history at all."""
    if op.outcome == "fail":
        return op.condition_failed
    if op.outcome == "unknown":
        return op.kind != "read"
    return True


def _prepare(ops: Sequence[Op], revs: _Revisions) -> list[_Spec]:
    """The operations the search needs, sorted by invoke time.

    Beyond dropping uninformative operations, two exact simplifications of unknown puts
    (with unique values, as a test client should write, they remove most of them):

    * one whose value some definite operation observed (ok read or 412 that saw it, ok
      conditional write on prev_value equal to it), and that no other operation writes,
      must have applied before the first such observer completed: it becomes required,
      with that deadline;
    * one whose value nothing observes or names can be dropped, unless an operation that
      it could explain completed after its invoke: a 412 that did not report the value it
      saw, or a prev_revision naming a revision nobody saw. Any state it left would be
      overwritten before anything could tell it apart.
    """
    ops = [op for op in ops if _informative(op)]
    writers: dict[str, int] = defaultdict(int)
    needed_by: dict[str, float] = {}
    mentioned: set[str] = set()
    blocked_until = -_INF
    for op in ops:
        if op.kind == "put" and op.outcome != "fail":
            writers[op.value] += 1  # type: ignore[index]
        observed = []
        if op.seen is not None and op.seen.value is not None:
            observed.append(op.seen.value)
        cond = op.condition
        if cond is not None and cond.prev_value is not None:
            mentioned.add(cond.prev_value)
            if op.outcome == "ok":
                observed.append(cond.prev_value)
        for v in observed:
            mentioned.add(v)
            if op.complete is not None and op.complete < needed_by.get(v, _INF):
                needed_by[v] = op.complete
        explains = (op.condition_failed and op.seen is None) or (
            cond is not None and cond.prev_revision is not None and revs.unseen(cond.prev_revision))
        if explains:
            end = _INF if op.complete is None else op.complete
            blocked_until = max(blocked_until, end)
    specs = []
    for op in sorted(ops, key=lambda op: (op.invoke, _INF if op.complete is None else op.complete)):
        if op.outcome == "unknown" and op.kind == "put":
            value = op.value
            if value not in mentioned and blocked_until < op.invoke:
                continue
            if value in needed_by and writers[value] == 1:  # type: ignore[index]
                specs.append(_Spec(op, needed_by[value]))  # type: ignore[index]
                continue
        specs.append(_Spec(op))
    return specs


# --- the search ------------------------------------------------------------------------


@dataclass
class _Deepest:
    """The configuration with the most operations linearized at a dead end."""

    linearized: list[int]
    state: State
    blocked: int  # index of the operation whose return could not be passed
    pending: list[int]  # calls that could have been tried before it


@dataclass
class _Outcome:
    ok: bool | None
    states: int
    deepest: _Deepest | None
    # Found before searching: why, and the operations (spec indexes) that show it in the
    # history searched (not a sub-history: dropping writes is not a sound reduction).
    reason: str | None = None
    culprits: tuple[int, ...] = ()


_CLOCK_EVERY = 2048


def linked_calls(
    specs: Sequence[Any],
) -> tuple[int, int, int, list[int], list[int], list[tuple[float, int, int]]]:
    """The search's two doubly linked lists over node ids (0 head of the main list, i+1
    call of op i, n+1+i return of a required op i, 2n+1 main tail, 2n+2 head and 2n+3 tail
    of the list of unknown writes): required calls and returns in time order, unknown
    writes by invoke time. Returns (tail, u_head, u_tail, next, prev, unknown), ``unknown``
    being (invoke, op, node id) of the unknown writes in invoke order. ``specs`` need
    ``required``, ``invoke`` and ``complete``."""
    n = len(specs)
    tail = 2 * n + 1
    u_head, u_tail = tail + 1, tail + 2
    events = []
    unknown = []
    for i, s in enumerate(specs):
        if s.required:
            events.append((s.invoke, 0, i, i + 1))
            events.append((s.complete, 1, i, n + 1 + i))
        else:
            unknown.append((s.invoke, i, i + 1))
    events.sort()
    unknown.sort()
    nxt = [0] * (u_tail + 1)
    prv = [0] * (u_tail + 1)
    for chain in ([0] + [e[3] for e in events] + [tail], [u_head] + [u[2] for u in unknown] + [u_tail]):
        for a, b in zip(chain, chain[1:]):
            nxt[a] = b
            prv[b] = a
    return tail, u_head, u_tail, nxt, prv, unknown


def _search(specs: list[_Spec], revs: _Revisions, deadline: float | None) -> _Outcome:
    """Wing & Gong / Lowe search over ``specs``; ok None if ``deadline`` passed first.

    Operations with an answer (required) sit in a linked list of call and return events in
    time order; the candidates at each step are the calls before the first return (the
    frontier). Unknown writes sit in a second list, by invoke time, and are tried only
    after the required candidates: they have no deadline and need not be linearized.

    Prunings beyond Lowe's cache, all exact (the brute-force test in test_linearizability
    checks the verdicts):

    * a configuration is (required ops linearized, state, unknown writes applied); it is
      skipped if one with the same required ops and state and a subset of those unknown
      writes was already explored, since that one had every option this one has;
    * an observation (read or 412) that fits without changing the state is linearized at
      once with no alternatives: a linearization placing it later can place it now instead;
    * an unconditional unknown write is not tried right after another unknown write: it
      would erase it unseen, which is the same as the first never applying;
    * a write is not tried when it would overwrite a value that only one operation writes
      while a pending operation still has to observe that value;
    * of unknown writes with the same effect (say, plain deletes) only the earliest invoked
      one not yet applied is tried: they are interchangeable.
    """
    n = len(specs)
    remaining = sum(1 for s in specs if s.required)
    if remaining == 0:
        return _Outcome(True, 0, None)
    # Node ids: 0 head of the main list, i+1 call of op i, n+1+i return of a required op i,
    # 2n+1 main tail, 2n+2 head and 2n+3 tail of the list of unknown writes.
    tail, u_head, u_tail, nxt, prv, unknown = linked_calls(specs)
    required = [s.required for s in specs]
    observer = [s.mode != _APPLY for s in specs]  # never changes the value
    blind = [s.cond_kind == _NO_COND for s in specs]  # overwrites whatever was there
    invoke = [s.invoke for s in specs]
    complete = [s.complete for s in specs]
    bit = [1 << i for i in range(n)]
    # How many pending required operations must still observe each value written once:
    # overwriting such a value while some are pending is hopeless.
    must_see, ghost = _must_see(specs)
    if ghost >= 0:
        v = must_see[ghost]
        return _Outcome(False, 0, None, f"No operation writes {v!r}, yet this one observed it", (ghost,))
    waiting: dict[str, int] = {}
    for v in must_see:
        if v is not None:
            waiting[v] = waiting.get(v, 0) + 1
    stale = _stale_observation(specs, must_see) or _foreign_revision(specs)
    if stale is not None:
        return stale

    # Unknown writes with the same effect are interchangeable: only the earliest invoked
    # one not yet applied is tried (a later one stays available for later).
    twin_before: list[int] = [-1] * n
    last_of_kind: dict[tuple, int] = {}
    for _, i, _ in unknown:
        s = specs[i]
        kind = (s.new_value, s.cond_kind, s.cond_arg)
        twin_before[i] = last_of_kind.get(kind, -1)
        last_of_kind[kind] = i

    cache: dict[tuple[int, State], list[int]] = {}
    states = 0
    # Stack entries: (op, state before it, forced, frontier time when an unknown op was tried).
    stack: list[tuple[int, State, bool, float]] = []
    state: State = _ABSENT
    req_bits = 0
    unk_bits = 0
    node = nxt[0]
    in_main = True
    frontier = 0.0
    deepest: _Deepest | None = None
    ticks = 0
    step = _step

    while True:
        if remaining == 0:
            return _Outcome(True, states, None)
        ticks += 1
        if deadline is not None and ticks % _CLOCK_EVERY == 0 and time.monotonic() > deadline:
            return _Outcome(None, states, deepest)

        backtrack = False
        if in_main:
            if node <= n:  # a call of a required op
                i = node - 1
                new = step(specs[i], state, revs)
                if new.__class__ is tuple and not observer[i]:
                    v = state[0]
                    if v is not None and waiting.get(v, 0) > (must_see[i] == v):
                        new = "hopeless"
                if new.__class__ is tuple:
                    forced = observer[i] and new == state
                    bits = req_bits | bit[i]
                    key = (bits, new)
                    seen = cache.get(key)
                    if seen is not None and any(a | unk_bits == unk_bits for a in seen):
                        if forced:  # this configuration is as good as one that failed
                            backtrack = True
                    else:
                        if seen is None:
                            cache[key] = [unk_bits]
                        else:
                            seen.append(unk_bits)
                        states += 1
                        stack.append((i, state, forced, 0.0))
                        v = must_see[i]
                        if v is not None:
                            waiting[v] -= 1
                        state = new
                        req_bits = bits
                        p, q = prv[node], nxt[node]
                        nxt[p] = q
                        prv[q] = p
                        r = n + 1 + i
                        p, q = prv[r], nxt[r]
                        nxt[p] = q
                        prv[q] = p
                        remaining -= 1
                        node = nxt[0]
                        continue
                if not backtrack:
                    node = nxt[node]
                    continue
            elif node == tail:  # cannot happen while a required op is pending
                return _Outcome(False, states, deepest)
            else:  # the frontier: now the unknown writes invoked before it
                frontier = complete[node - n - 1]
                in_main = False
                node = nxt[u_head]
                continue
        elif node != u_tail and invoke[node - 1] <= frontier:
            i = node - 1
            if blind[i] and stack and not required[stack[-1][0]]:
                node = nxt[node]  # it would erase the unknown write just applied, unseen
                continue
            twin = twin_before[i]
            if twin >= 0 and not unk_bits & bit[twin]:
                node = nxt[node]
                continue
            new = step(specs[i], state, revs)
            v = state[0]
            if new.__class__ is tuple and new != state and not waiting.get(v, 0):  # type: ignore[arg-type]
                bits = unk_bits | bit[i]
                key = (req_bits, new)
                seen = cache.get(key)
                if seen is None or not any(a | bits == bits for a in seen):
                    if seen is None:
                        cache[key] = [bits]
                    else:
                        seen.append(bits)
                    states += 1
                    stack.append((i, state, False, frontier))
                    state = new
                    unk_bits = bits
                    p, q = prv[node], nxt[node]
                    nxt[p] = q
                    prv[q] = p
                    node = nxt[0]
                    in_main = True
                    continue
            node = nxt[node]
            continue
        else:
            backtrack = True

        # Dead end: record it, then undo the latest choice that still has alternatives.
        if deepest is None or len(stack) > len(deepest.linearized):
            deepest = _dead_end(specs, stack, state, nxt, n, u_head, u_tail)
        while True:
            if not stack:
                return _Outcome(False, states, deepest)
            i, state, forced, frontier = stack.pop()
            c = i + 1
            v = must_see[i]
            if v is not None:
                waiting[v] += 1
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
        node = nxt[c]
        in_main = required[i]


def _must_see(specs: list[_Spec]) -> tuple[list[str | None], int]:
    """For each required operation, the value it must observe if only one operation
    writes it (else None); and the first that observed a value nobody writes (or -1)."""
    writers: dict[str, int] = defaultdict(int)
    for s in specs:
        if s.mode == _APPLY and s.new_value is not None:
            writers[s.new_value] += 1
    must_see: list[str | None] = [None] * len(specs)
    ghost = -1
    for i, s in enumerate(specs):
        if s.has_seen:
            v = s.seen_value
        elif s.mode == _APPLY and s.cond_kind == _PREV_VALUE:
            v = s.cond_arg  # type: ignore[assignment]
        else:
            v = None
        if s.required and v is not None:
            if v not in writers:
                must_see[i] = v
                return must_see, i
            if writers[v] == 1:
                must_see[i] = v
    return must_see, ghost


def _stale_observation(specs: list[_Spec], must_see: list[str | None]) -> _Outcome | None:
    """Catch the common violations without searching: an operation observed a value that
    only one write writes, but that write began after the observer completed, or another
    write surely replaced the value (began after the writer completed, completed before
    the observer began). Reports the first in the order of ``specs``."""
    writer_of: dict[str, int] = {}
    for i, s in enumerate(specs):
        if s.mode == _APPLY and s.new_value is not None:
            writer_of[s.new_value] = i  # only used for values written once
    applied = sorted((s.invoke, s.complete, i) for i, s in enumerate(specs)
                     if s.required and s.mode == _APPLY)
    invokes = [a[0] for a in applied]
    earliest_end: list[tuple[float, int]] = [(_INF, -1)] * (len(applied) + 1)
    for k in range(len(applied) - 1, -1, -1):  # earliest completion among applied[k:]
        earliest_end[k] = min(earliest_end[k + 1], (applied[k][1], applied[k][2]))
    for i, v in enumerate(must_see):
        if v is None:
            continue
        w = writer_of[v]
        observer, writer = specs[i], specs[w]
        if observer.complete < writer.invoke:
            return _Outcome(False, 0, None, f"{v!r} was observed before the only write of it began", (w, i))
        if not writer.required:
            continue
        end, x = earliest_end[bisect.bisect_right(invokes, writer.complete)]
        if end < observer.invoke:
            return _Outcome(False, 0, None, f"{v!r} was observed after another write surely replaced it",
                            (w, x, i))
    return None


def _foreign_revision(specs: list[_Spec]) -> _Outcome | None:
    """Catch, without searching, an operation that saw (or required, in prev_revision) the
    key at a revision that was reported for an operation which did not leave that state."""
    owner = {s.rev: i for i, s in enumerate(specs) if s.rev is not None}
    for i, s in enumerate(specs):
        if not s.required:
            continue
        if s.has_seen and s.seen_rev is not None and s.seen_rev in owner:
            w = specs[owner[s.seen_rev]]
            if w.mode != _APPLY or w.new_value != s.seen_value:
                return _Outcome(False, 0, None, f"Revision {s.seen_rev} was reported for an operation "
                                f"that did not write {s.seen_value!r}", (owner[s.seen_rev], i))
        if s.mode == _APPLY and s.cond_kind == _PREV_REVISION and s.cond_arg in owner:
            w = specs[owner[s.cond_arg]]  # type: ignore[index]
            if w.mode != _APPLY or w.new_value is None:
                return _Outcome(False, 0, None, f"Revision {s.cond_arg} was reported for an operation "
                                "that did not write the key", (owner[s.cond_arg], i))  # type: ignore[index]
    return None


def _dead_end(specs: list[_Spec], stack: list, state: State, nxt: list[int], n: int,
              u_head: int, u_tail: int) -> _Deepest:
    """Describe the current dead end: the first pending return and the calls before it."""
    pending = []
    walk = nxt[0]
    while walk <= n:
        pending.append(walk - 1)
        walk = nxt[walk]
    blocked = walk - n - 1 if n < walk < 2 * n + 1 else -1
    frontier = specs[blocked].complete if blocked >= 0 else _INF
    walk = nxt[u_head]
    while walk != u_tail and specs[walk - 1].invoke <= frontier:
        pending.append(walk - 1)
        walk = nxt[walk]
    return _Deepest([e[0] for e in stack], state, blocked, pending)


# --- results -------------------------------------------------------------------------


@dataclass
class KeyResult:
    """The verdict for one key. ``ok`` None: not decided before the timeout.
    ``ops``: operations searched (after dropping uninformative ones); ``states``: cache
    entries explored."""

    key: str
    ok: bool | None
    ops: int
    dropped: int
    states: int
    elapsed: float
    counterexample: str | None = None


@dataclass
class CheckResult:
    """``ok``: True linearizable, False not, None undecided (timeout). ``counterexample``
    explains the first violation found (revision pre-check or first failing key)."""

    ok: bool | None
    keys: dict[str, KeyResult] = field(default_factory=dict)
    counterexample: str | None = None
    elapsed: float = 0.0

    def summary(self) -> str:
        verdict = {True: "linearizable", False: "NOT linearizable", None: "undecided (timed out)"}[self.ok]
        nkeys = sum(len(label.split("+")) for label in self.keys)
        grouped = "" if nkeys == len(self.keys) else f" in {len(self.keys)} groups"
        lines = [f"{verdict}: {nkeys} keys{grouped}, {self.elapsed:.3f} s"]
        for k in sorted(self.keys):
            r = self.keys[k]
            v = {True: "ok", False: "VIOLATION", None: "undecided"}[r.ok]
            lines.append(
                f"  {k!r}: {v}, {r.ops} ops searched, {r.dropped} dropped, "
                f"{r.states} states, {r.elapsed:.3f} s"
            )
        if self.counterexample:
            lines.append("")
            lines.append(self.counterexample)
        return "\n".join(lines)


# --- revision pre-check across keys ----------------------------------------------------


def _revision_precheck(ops: Sequence[Op]) -> str | None:
    """Cross-key revision facts the per-key search cannot see; a description or None."""
    from tests.faults.multikey import observations, own_revision

    owner: dict[int, Op] = {}
    for op in ops:
        rev = own_revision(op)
        if rev is None:
            continue
        other = owner.get(rev)
        if other is not None and other is not op:
            return (
                f"revision {rev} was reported for two operations:\n"
                f"  {other.describe()}\n  {op.describe()}"
            )
        owner[rev] = op

    def put_keys(op: Op) -> set[str]:
        if op.kind != "txn":
            return {op.key} if op.kind == "put" else set()
        txn = op.txn
        assert txn is not None
        branches = (txn.branch(op.succeeded),) if op.outcome == "ok" else (txn.success, txn.failure)  # type: ignore[arg-type]
        return {t.key for b in branches for t in b if t.op == "put"}

    txn_puts = [(op.revision, put_keys(op)) for op in ops if op.kind == "txn" and op.outcome != "fail"]

    def one_txn_puts(r: int, a: str, b: str) -> bool:
        return any((rev is None or rev == r) and a in keys and b in keys for rev, keys in txn_puts)

    seen_on: dict[int, tuple[str, Op]] = {}
    for op in ops:
        for key, seen in observations(op):
            if seen.revision is None:
                continue
            r = seen.revision
            writer = owner.get(r)
            if writer is not None and key not in put_keys(writer) and (
                    writer.kind == "txn" or writer.key != key):
                return (
                    f"revision {r} was seen on key {key!r} but written by an operation that "
                    f"did not put it:\n  {writer.describe()}\n  {op.describe()}"
                )
            other = seen_on.get(r)
            if other is not None and other[0] != key and not one_txn_puts(r, other[0], key):
                return (
                    f"revision {r} was seen on two keys:\n  {other[1].describe()}\n  {op.describe()}"
                )
            seen_on.setdefault(r, (key, op))
    # Real time: a write with a lower revision was linearized earlier, so it was invoked
    # before any operation with a higher revision completed; and an observation of
    # revision r completed after every write below r had been invoked.
    items: list[tuple[int, int, Op]] = [(r, 1, op) for r, op in owner.items()]
    items += [(seen.revision, 0, op) for op in ops for _, seen in observations(op)
              if seen.revision is not None]
    items.sort(key=lambda t: (t[0], t[1]))
    latest: Op | None = None  # the write with the latest invoke among lower revisions
    idx = 0
    while idx < len(items):
        r = items[idx][0]
        group = []
        while idx < len(items) and items[idx][0] == r:
            group.append(items[idx])
            idx += 1
        for _, is_write, op in group:
            if latest is not None and op.complete is not None and op.complete < latest.invoke:
                role = "got" if is_write else "saw"
                return (
                    f"revision order contradicts real time: an operation that {role} revision {r} "
                    f"completed before a write with the lower revision {latest.revision} was invoked:\n"
                    f"  {latest.describe()}\n  {op.describe()}"
                )
        for _, is_write, op in group:
            if is_write and (latest is None or op.invoke > latest.invoke):
                latest = op
    return None


# --- explaining and shrinking a failing key ---------------------------------------------


def _check_ops(ops: Sequence[Op], elsewhere: _Elsewhere,
               deadline: float | None) -> tuple[list[_Spec], _Outcome, _Revisions]:
    """Check one key's operations."""
    revs = _Revisions(ops, elsewhere)
    specs = _prepare(ops, revs)
    return specs, _search(specs, revs, deadline), revs


def _prefix(ops: Sequence[Op], t: float) -> list[Op]:
    """The history as it stood at time ``t``: later calls vanish, unanswered ones become
    unknown (writes) or vanish (observations). Linearizability is prefix-closed."""
    out = []
    for op in ops:
        if op.invoke > t:
            continue
        if op.complete is not None and op.complete <= t:
            out.append(op)
        elif op.kind == "txn":
            if op.outcome != "fail" and not op.txn.read_only:  # type: ignore[union-attr]
                out.append(replace(op, outcome="unknown", complete=None, revision=None,
                                   succeeded=None, results=None))
        elif op.kind != "read" and not op.condition_failed and op.outcome != "fail":
            out.append(replace(op, outcome="unknown", complete=None, revision=None, seen=None))
    return out


_Failure = tuple  # (ops, specs, outcome, revs) of a failing check


def _shrink(failure: _Failure, check_ops: Callable[[list[Op]], tuple], deadline: float) -> _Failure:
    """A smaller failing history of one key than ``failure``'s, found before ``deadline``.

    Only sound reductions: the shortest failing prefix (binary search; linearizability is
    prefix-closed), then dropping observations (reads and 412s), which only removes
    constraints, in shrinking chunks while the rest still fails.
    """
    best = failure

    def fails(candidate: list[Op]) -> bool:
        nonlocal best
        if time.monotonic() > deadline:
            return False
        specs, outcome, revs = check_ops(candidate)
        if outcome.ok is False:
            best = (candidate, specs, outcome, revs)
            return True
        return False

    ops: list[Op] = failure[0]
    specs, outcome = failure[1], failure[2]
    if outcome.reason is not None:  # already explained by a few operations
        return best
    ends = sorted({op.complete for op in ops if op.complete is not None and _informative(op)
                   and op.outcome != "unknown"})
    lo, hi = 0, len(ends) - 1  # the whole history, ends[-1], is known to fail
    if outcome.deepest is not None and outcome.deepest.blocked >= 0:
        # Where the search got stuck is a good first guess.
        guess = bisect.bisect_left(ends, specs[outcome.deepest.blocked].complete)
        if guess < hi and fails(_prefix(ops, ends[guess])):
            hi = guess
    while lo < hi and time.monotonic() < deadline:
        mid = (lo + hi) // 2
        if fails(_prefix(ops, ends[mid])):
            hi = mid
        else:
            lo = mid + 1

    def observation(op: Op) -> bool:
        return op.kind == "read" or op.condition_failed or (
            op.kind == "txn" and op.txn.read_only)  # type: ignore[union-attr]

    chunk = max(1, sum(map(observation, best[0])) // 2)
    while time.monotonic() < deadline:
        removed_any = False
        start = 0
        while time.monotonic() < deadline:
            ops = best[0]
            obs = [i for i, op in enumerate(ops) if observation(op)]
            if start >= len(obs):
                break
            drop = set(obs[start:start + chunk])
            if fails([op for i, op in enumerate(ops) if i not in drop]):
                removed_any = True
            else:
                start += chunk
        if not removed_any:
            if chunk == 1:
                break
            chunk = max(1, chunk // 2)
    return best


_MAX_LISTED = 40


def _explain(key: str, original: int, ops: Sequence[Op], specs: list[_Spec], outcome: _Outcome,
             revs: _Revisions) -> str:
    lines = [f"key {key!r} is not linearizable."]
    if outcome.reason is not None:  # a direct argument: these operations suffice
        lines.append(outcome.reason + ":")
        lines.extend(f"  {specs[i].describe()}" for i in outcome.culprits)
        return "\n".join(lines)
    shown = sorted(ops, key=lambda op: (op.invoke, op.client))
    lines.append(
        f"A sub-history of {len(ops)} of its {original} operations already fails"
        + (":" if len(shown) <= _MAX_LISTED else f" (last {_MAX_LISTED} by invoke time shown):")
    )
    if len(shown) > _MAX_LISTED:
        lines.append(f"  ... {len(shown) - _MAX_LISTED} earlier operations")
    lines.extend(f"  {op.describe()}" for op in shown[-_MAX_LISTED:])
    deepest = outcome.deepest
    if deepest is not None:
        lin = deepest.linearized
        if lin:
            lines.append(
                f"At best {len(lin)} of its {len(specs)} searched operations can be linearized, "
                f"leaving the key {_describe_state(deepest.state)}; the last ones were:"
            )
            lines.extend(f"  {specs[i].describe()}" for i in lin[-5:])
        else:
            lines.append("Not even the first operation can be linearized; the key starts absent.")
        if deepest.blocked >= 0:
            lines.append("Then this operation must take effect before it returns, but cannot:")
            lines.append(f"  {specs[deepest.blocked].describe()}")
        lines.append("Operations that could have gone next, and why they do not fit:")
        must_see = _must_see(specs)[0]
        done = set(lin)
        current = deepest.state[0]
        for i in deepest.pending:
            why = _step(specs[i], deepest.state, revs)
            if isinstance(why, str):
                reason = why
            else:
                witness = [j for j, v in enumerate(must_see)
                           if v is not None and v == current and j != i and j not in done]
                if specs[i].mode == _APPLY and witness:
                    reason = (f"it would replace {current!r}, written once, which this one has yet "
                              f"to see: {specs[witness[0]].describe()}")
                else:
                    reason = "fits here, but every continuation fails later"
            lines.append(f"  {specs[i].describe()}: {reason}")
    return "\n".join(lines)


# --- entry point -----------------------------------------------------------------------


def groups(ops: Sequence[Op]) -> list[tuple[tuple[str, ...], list[Op]]]:
    """The history split into independent groups: the connected components of the graph
    whose nodes are keys and whose edges join the keys one operation touches (only
    operations that constrain anything tie keys). Each group is its keys (sorted) and its
    operations; groups are sorted by their first key."""
    from tests.faults.multikey import informative

    parent: dict[str, str] = {}

    def find(k: str) -> str:
        root = k
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[k] != root:
            parent[k], k = root, parent[k]
        return root

    for op in ops:
        keys = op.keys()
        first = find(keys[0])
        if len(keys) > 1 and informative(op):
            for k in keys[1:]:
                other = find(k)
                if other != first:
                    parent[other] = first
    members: dict[str, list[str]] = defaultdict(list)
    for k in list(parent):
        members[find(k)].append(k)
    by_root: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_root[find(op.keys()[0])].append(op)
    out = [(tuple(sorted(members[root])), by_root[root]) for root in members if by_root[root]]
    out.sort()
    return out


def check(history: Iterable[Op], timeout: float | None = None, *,
          shrink_timeout: float = 5.0) -> CheckResult:
    """Decide whether ``history`` is linearizable for LeifDB's key-value model.

    Keys are checked one at a time, in sorted order, until ``timeout`` seconds have passed
    (None: no limit); keys not decided by then get ``ok`` None. For the first failing key
    up to ``shrink_timeout`` seconds (within the timeout) are spent finding a smaller
    failing sub-history for the counterexample.
    """
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    ops = list(history)
    result = CheckResult(ok=True)

    problem = _revision_precheck(ops)
    if problem is not None:
        result.ok = False
        result.counterexample = problem

    from tests.faults import multikey

    owner: dict[int, str] = {}
    seen_on: dict[int, set[str]] = defaultdict(set)
    for op in ops:
        rev = multikey.own_revision(op)
        if rev is not None:
            owner.setdefault(rev, op.keys()[0])
        for k, seen in multikey.observations(op):
            if seen.revision is not None:
                seen_on[seen.revision].add(k)

    explained = False
    for keys, group_ops in groups(ops):
        label = "+".join(keys)
        t0 = time.monotonic()
        if deadline is not None and t0 >= deadline:
            result.keys[label] = KeyResult(label, None, 0, 0, 0, 0.0)
            if result.ok is True:
                result.ok = None
            continue
        single = len(keys) == 1 and not any(
            op.kind == "txn" and multikey.informative(op) for op in group_ops)
        if single:
            elsewhere = _Elsewhere(keys[0], owner, seen_on)

            def check_ops(candidate: list[Op], elsewhere: _Elsewhere = elsewhere) -> tuple:
                return _check_ops(candidate, elsewhere, deadline)
        else:
            def check_ops(candidate: list[Op], keys: tuple[str, ...] = keys) -> tuple:
                return multikey.check_group(candidate, keys, owner, seen_on, deadline)
        specs, outcome, revs = check_ops(group_ops)
        kr = KeyResult(label, outcome.ok, len(specs), len(group_ops) - len(specs), outcome.states,
                       time.monotonic() - t0)
        result.keys[label] = kr
        if outcome.ok is None:
            if result.ok is True:
                result.ok = None
        elif outcome.ok is False:
            result.ok = False
            if not explained:
                explained = True
                budget = time.monotonic() + shrink_timeout
                if deadline is not None:
                    budget = min(budget, deadline)
                small, small_specs, small_outcome, small_revs = _shrink(
                    (group_ops, specs, outcome, revs), check_ops, budget)
                if single:
                    kr.counterexample = _explain(keys[0], len(group_ops), small, small_specs,
                                                 small_outcome, small_revs)
                else:
                    kr.counterexample = multikey.explain(keys, len(group_ops), small, small_specs,
                                                         small_outcome, small_revs)
                if result.counterexample is None:
                    result.counterexample = kr.counterexample
                else:
                    result.counterexample += "\n\n" + kr.counterexample
            kr.elapsed = time.monotonic() - t0
    result.elapsed = time.monotonic() - start
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.linearizability",
        description="Check a saved LeifDB history (JSON lines, one operation per line).",
    )
    parser.add_argument("history", help="path to a .jsonl history, or - for stdin")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    parser.add_argument("--shrink-timeout", type=float, default=5.0,
                        help="seconds to spend shrinking a counterexample (default 5)")
    args = parser.parse_args(argv)
    try:
        ops = load_history(sys.stdin) if args.history == "-" else read_history(args.history)
    except (OSError, HistoryError) as e:
        print(f"cannot read history: {e}", file=sys.stderr)
        return 2
    result = check(ops, timeout=args.timeout, shrink_timeout=args.shrink_timeout)
    print(result.summary())
    return {True: 0, False: 1, None: 3}[result.ok]


if __name__ == "__main__":
    sys.exit(main())
