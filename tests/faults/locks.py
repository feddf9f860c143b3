"""Lock histories and the lock checker of the fault test.

Lock clients (``tests.faults.lockclient``) grant leases, acquire locks with them
(``POST /lock/NAME``: a fencing token, the create revision of the holder's key), write the
lock's fenced key (``PUT /db/fenced/NAME?fence=NAME:TOKEN``) with values that name the
client, the token and a sequence number, read it, and release the lock (delete its key,
revoke the lease, or let the lease lapse). Each request is one ``LockOp``.

``check_locks`` is a pure function of those operations (plus, when available, the final
read of each fenced key and the committed changes of the fenced and lock keys from the
watch reference, the nodes' merged histories). A lock service with fencing promises, and
the checker verifies:

* tokens: two acquisitions by different leases never share a token, a token is above the
  lease's id (the key was created after the lease), the key is ``_lock/NAME/LEASE``, and an
  acquisition that completed before another lease first asked for the lock has the lower
  token (tokens increase with acquisition order);
* fencing: ordered by the revisions the server returned, the accepted fenced writes' tokens
  never decrease (a write fenced with an older token accepted after one with a newer token
  means two holders' writes interleaved); no accepted write carries a token older than
  that of an acquisition that completed before the write was sent; a token's writes are
  accepted only before its key was released (revision below the release's) and never when
  sent after the release completed; each accepted write has a revision above its token and
  a revision of its own;
* visibility: a value written by a write that failed (412 fenced, or surely not applied) is
  never read, never in the committed changes, never the final value; a value read at a
  revision is the accepted write's at that revision; the final value of a fenced key is
  the value of a write that may have been accepted, at or above every accepted write's
  revision (nothing else writes the fenced keys);
* committed order: the committed puts of a fenced key (from the nodes' watch histories,
  which include writes whose answer was lost) have non-decreasing tokens too;
* committed holders: where the committed history is complete from revision 1, replaying
  the lock keys (``_lock/NAME/LEASE``; the lowest create revision holds) gives the holder
  at every revision: each committed fenced put names the holder of the moment before it,
  and each acquisition's key had become the holder by the revision its answer was
  stamped with (``X-LeifDB-Revision``).

Standard library only; the types are the test's own, not the server's.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Iterable, Mapping, Sequence

from tests.faults.history import format_time

__all__ = [
    "FENCED_PREFIX",
    "LOCK_PREFIX",
    "Change",
    "LOCK_KINDS",
    "LockCheck",
    "LockOp",
    "check_locks",
    "dump_lock_history",
    "fenced_key",
    "holder_key",
    "load_lock_history",
    "lock_ops_from_events",
    "write_value",
]

FENCED_PREFIX = "fenced/"
LOCK_PREFIX = "_lock/"
LOCK_KINDS: tuple[str, ...] = ("grant", "lock", "write", "read", "release", "revoke", "keepalive")
OUTCOMES: tuple[str, ...] = ("ok", "fail", "unknown")


def fenced_key(lock: str) -> str:
    """The key a lock's holders write, fenced by the lock."""
    return FENCED_PREFIX + lock


def holder_key(lock: str, lease: int) -> str:
    """The key a lease holds (or waits for) a lock with."""
    return f"{LOCK_PREFIX}{lock}/{lease}"


def write_value(client: int, token: int, seq: int) -> str:
    """The value of a fenced write: who wrote it, under which token, the how-manieth."""
    return f"lc{client}-t{token}-{seq}"


@dataclass(frozen=True, slots=True)
class LockOp:
    """One request of a lock client and what its answer said.

    ``kind``: grant (a lease), lock (acquire ``lock`` with ``lease``), write (put ``value``
    to the lock's fenced key, fenced by ``token``), read (of the fenced key: ``value`` and
    ``revision`` are what it saw, ``value`` None for absent), release (delete the holder's
    key), revoke (the lease), keepalive (of the lease).

    ``outcome``: ok (done, with what the answer said); fail (surely not done: a 412
    ``fenced`` write, a 423 lock timeout, a 404 lease, 503 not applied, refused); unknown
    (a timeout, a lost connection, 504: it may have been done at any time after invoke).
    ``revision``: for an ok write, release or revoke the revision it was applied at; for an
    ok read the revision of the value seen; for an ok lock the holder key's revision.
    ``token``: a lock's answer, or the token a write was fenced with.
    """

    client: int
    kind: str
    lock: str
    lease: int
    invoke: float
    complete: float | None
    outcome: str
    token: int = 0
    value: str | None = None
    revision: int | None = None
    key: str | None = None  # an ok lock's holder key (as the answer named it)
    fenced: bool = False  # a write answered 412 (the fence failed)
    status: int | None = None
    why: str = ""
    error: str = ""  # the error message of an answer other than 200
    at: int | None = None  # the answer's X-LeifDB-Revision: the node's revision when answering

    def __post_init__(self) -> None:
        if self.kind not in LOCK_KINDS:
            raise ValueError(f"kind must be one of {LOCK_KINDS}: {self!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}: {self!r}")
        if not math.isfinite(self.invoke):
            raise ValueError(f"invoke must be a finite time: {self!r}")
        if self.complete is None:
            if self.outcome == "ok":
                raise ValueError(f"an ok operation has a completion time: {self!r}")
        elif self.complete < self.invoke:
            raise ValueError(f"complete before invoke: {self!r}")
        if self.fenced and (self.kind != "write" or self.outcome != "fail"):
            raise ValueError(f"only a failed write is fenced: {self!r}")
        if self.kind == "write" and (self.value is None or self.token <= 0):
            raise ValueError(f"a write has a value and a token: {self!r}")

    def describe(self) -> str:
        """One line, e.g. ``lc2 write fenced/a='lc2-t40-1' fence t40 -> ok@57 [1.2, 1.3]``."""
        end = "never" if self.complete is None else format_time(self.complete)
        who = f"lc{self.client}"
        if self.kind == "write":
            what = f"write {fenced_key(self.lock)}={self.value!r} fence t{self.token}"
        elif self.kind == "read":
            what = f"read {fenced_key(self.lock)}"
        elif self.kind == "lock":
            what = f"lock {self.lock!r} with lease {self.lease}"
        elif self.kind == "release":
            what = f"release {holder_key(self.lock, self.lease)}"
        else:
            what = f"{self.kind} lease {self.lease}"
        result = f"-> {self.outcome}"
        if self.fenced:
            result = "-> 412 fenced"
        elif self.outcome == "ok" and self.kind == "read":
            seen = "absent" if self.value is None else f"{self.value!r}@{self.revision}"
            result = f"-> {seen}"
        elif self.outcome == "ok" and self.kind == "lock":
            result = f"-> token {self.token}"
        elif self.revision is not None:
            result += f"@{self.revision}"
        elif self.outcome != "ok" and self.why:
            result += f" ({self.why}{': ' + self.error if self.error else ''})"
        return f"{who} {what} {result} [{format_time(self.invoke)}, {end}]"


# --- the JSON-lines form of a lock client's events ------------------------------------------


def lock_ops_from_events(lines: Iterable[str]) -> tuple[list[LockOp], list[str]]:
    """Operations from a lock client's event lines: an ``invoke`` line when a request is
    sent, a ``complete`` line with what came back. An invoke without its completion (the
    client was killed, or stopped mid-request) is an unknown outcome. Also returns the
    ``unexpected`` lines' texts (answers no correct server gives) and malformed lines; a
    torn last line (a client killed while writing it) is no such line: it is skipped."""
    invokes: dict[int, dict[str, Any]] = {}
    completes: dict[int, dict[str, Any]] = {}
    notes: list[str] = []
    torn: str | None = None
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        if torn is not None:
            notes.append(torn)
            torn = None
        try:
            data = json.loads(text)
        except ValueError:
            torn = f"line {number}: not JSON: {text[:120]!r}"
            continue
        ev = data.get("ev") if isinstance(data, dict) else None
        if ev == "invoke":
            invokes[data["op"]] = data
        elif ev == "complete":
            completes[data["op"]] = data
        elif ev == "unexpected":
            notes.append(f"lc{data.get('client')}: {data.get('text')}")
        else:
            notes.append(f"line {number}: unknown event {text[:120]!r}")
    ops = []
    for n, inv in sorted(invokes.items()):
        done = completes.get(n)
        fields: dict[str, Any] = {
            "client": inv["client"], "kind": inv["kind"], "lock": inv.get("lock", ""),
            "lease": inv.get("lease", 0), "invoke": inv["t"], "token": inv.get("token", 0),
            "value": inv.get("value"),
        }
        if done is None:
            fields.update(complete=None, outcome="unknown", why="no answer recorded")
        else:
            fields.update(complete=done["t"], outcome=done["outcome"],
                          status=done.get("status"), why=done.get("why", ""),
                          revision=done.get("revision"), key=done.get("key"),
                          fenced=bool(done.get("fenced", False)), error=done.get("error", ""),
                          at=done.get("at"))
            for name in ("lease", "token"):
                if done.get(name):
                    fields[name] = done[name]
            if inv["kind"] == "read":
                fields["value"] = done.get("value")
        ops.append(LockOp(**fields))
    return ops, notes


def dump_lock_history(ops: Iterable[LockOp], out: IO[str]) -> None:
    """One JSON object per operation (``load_lock_history`` reads them back)."""
    for op in ops:
        out.write(json.dumps(asdict(op), sort_keys=True) + "\n")


def load_lock_history(source: IO[str]) -> list[LockOp]:
    return [LockOp(**json.loads(line)) for line in source if line.strip()]


# --- the checker ------------------------------------------------------------------------------


@dataclass
class LockCheck:
    """The verdict: ``violations`` (each with the operations that show it) and counts."""

    violations: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, text: str, *ops: LockOp) -> None:
        self.violations.append("\n".join([text, *(f"  {op.describe()}" for op in ops)]))

    def summary(self) -> str:
        c = self.counts
        head = (f"locks: {c['acquired']} acquisitions (tokens {c['tokens']}), fenced writes "
                f"accepted {c['accepted']}, rejected 412 {c['rejected']}, unknown "
                f"{c['write_unknown']}, other failures {c['write_failed']}; {c['reads']} reads; "
                f"{c['committed']} committed writes checked; leases granted {c['granted']}, "
                f"lost {c['lease_lost']}")
        if self.ok:
            return head + ": ok"
        shown = "\n".join(self.violations[:10])
        more = f"\n... and {len(self.violations) - 10} more" if len(self.violations) > 10 else ""
        return f"{head}: {len(self.violations)} VIOLATION(S)\n{shown}{more}"


def _token_of(value: str) -> int | None:
    """The token a fenced value names (``lcC-tT-S``), None if it names none."""
    parts = value.split("-")
    if len(parts) == 3 and parts[1].startswith("t") and parts[1][1:].isdigit():
        return int(parts[1][1:])
    return None


# One committed change: (revision, "put" or "delete", key, value or None).
Change = tuple[int, str, str, str | None]


def check_locks(ops: Sequence[LockOp], *,
                final: Mapping[str, tuple[str | None, int | None]] | None = None,
                committed: Sequence[Change] | None = None, complete_to: int = 0) -> LockCheck:
    """Check lock clients' operations (see the module doc).

    ``final``: per lock, the fenced key's final ``(value, revision)`` read after every client
    stopped (value None: absent). ``committed``: the committed changes of fenced and lock
    keys the nodes' histories have (None: no such history); ``complete_to``: they are all of
    them from revision 1 to this one (0: not complete from revision 1).
    """
    result = LockCheck()
    c = result.counts
    by_lock: dict[str, list[LockOp]] = defaultdict(list)
    for op in ops:
        c[f"{op.kind}:{op.outcome}"] += 1
        if op.kind in ("lock", "write", "read", "release"):
            by_lock[op.lock].append(op)
    c["granted"] = sum(1 for op in ops if op.kind == "grant" and op.outcome == "ok")
    c["lease_lost"] = sum(1 for op in ops if op.kind == "keepalive" and op.status == 404)
    revokes = {op.lease: op for op in ops if op.kind == "revoke" and op.outcome == "ok"}
    _check_tokens(ops, result)
    fenced: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for revision, _, key, value in committed or ():
        if key.startswith(FENCED_PREFIX):
            fenced[key[len(FENCED_PREFIX):]].append((revision, value))
    for lock in sorted(set(by_lock) | set(final or {}) | set(fenced)):
        _check_lock(lock, by_lock.get(lock, []), revokes, result,
                    None if final is None else final.get(lock),
                    None if committed is None else fenced.get(lock, []))
    if committed is not None and complete_to > 0:
        _check_holders(ops, committed, complete_to, result)
    return result


def _check_tokens(ops: Sequence[LockOp], result: LockCheck) -> None:
    """Token facts across every lock (tokens are revisions: unique store-wide)."""
    acquired = [op for op in ops if op.kind == "lock" and op.outcome == "ok"]
    result.counts["acquired"] = len(acquired)
    result.counts["tokens"] = len({op.token for op in acquired})
    owner: dict[int, LockOp] = {}
    for op in acquired:
        want = holder_key(op.lock, op.lease)
        if op.token <= 0:
            result.add(f"lock {op.lock!r} acquired without a token", op)
        elif op.token <= op.lease:
            result.add(f"lock {op.lock!r}: token {op.token} is not above lease {op.lease}, "
                       "whose grant came before the holder's key was created", op)
        if op.key is not None and op.key != want:
            result.add(f"lock {op.lock!r}: the holder key is {op.key!r}, not {want!r}", op)
        other = owner.get(op.token)
        if other is not None and (other.lock, other.lease) != (op.lock, op.lease):
            result.add(f"token {op.token} was given to two acquisitions", other, op)
        owner.setdefault(op.token, op)


def _check_lock(lock: str, ops: list[LockOp], revokes: dict[int, LockOp], result: LockCheck,
                final: tuple[str | None, int | None] | None,
                committed: Sequence[tuple[int, str | None]] | None) -> None:
    c = result.counts
    acquired = sorted((op for op in ops if op.kind == "lock" and op.outcome == "ok"),
                      key=lambda op: op.complete or 0.0)
    first_ask: dict[int, float] = {}
    for op in ops:
        if op.kind == "lock":
            first_ask[op.lease] = min(first_ask.get(op.lease, math.inf), op.invoke)
    # Tokens increase with acquisition order: B asked after A had the lock.
    for a in acquired:
        for b in acquired:
            if a.lease != b.lease and a.complete is not None \
                    and a.complete < first_ask[b.lease] and a.token >= b.token:
                result.add(f"lock {lock!r}: an acquisition completed before another lease "
                           f"first asked, yet its token {a.token} is not below {b.token}", a, b)
    writes = [op for op in ops if op.kind == "write"]
    accepted = sorted((op for op in writes if op.outcome == "ok"),
                      key=lambda op: op.revision or 0)
    c["accepted"] += len(accepted)
    c["rejected"] += sum(1 for op in writes if op.fenced)
    c["write_unknown"] += sum(1 for op in writes if op.outcome == "unknown")
    c["write_failed"] += sum(1 for op in writes if op.outcome == "fail" and not op.fenced)
    by_value: dict[str, LockOp] = {}
    for op in writes:
        assert op.value is not None
        if op.value in by_value:
            result.add(f"lock {lock!r}: the value {op.value!r} was written twice (a client bug)",
                       by_value[op.value], op)
        by_value[op.value] = op
    _check_fencing(lock, accepted, acquired, ops, revokes, result)
    reads = [op for op in ops if op.kind == "read" and op.outcome == "ok"]
    c["reads"] += len(reads)
    for op in reads:
        _check_seen(lock, op.value, op.revision, by_value, result,
                    f"a read of {fenced_key(lock)!r}", op)
    if final is not None:
        _check_final(lock, final, accepted, by_value, result)
    if committed is not None:
        _check_committed(lock, committed, by_value, result)


def _check_fencing(lock: str, accepted: list[LockOp], acquired: list[LockOp],
                   ops: list[LockOp], revokes: dict[int, LockOp], result: LockCheck) -> None:
    """The accepted fenced writes of one lock, in revision order."""
    by_token = {op.token: op for op in acquired}
    newest: LockOp | None = None  # the accepted write with the highest token so far
    last_revision: dict[int, LockOp] = {}
    for w in accepted:
        if w.revision is None:
            result.add(f"lock {lock!r}: an accepted write without a revision", w)
            continue
        if w.revision in last_revision:
            result.add(f"lock {lock!r}: two accepted writes at revision {w.revision}",
                       last_revision[w.revision], w)
        last_revision[w.revision] = w
        if w.revision <= w.token:
            result.add(f"lock {lock!r}: a write fenced by token {w.token} was accepted at "
                       f"revision {w.revision}, before the holder's key existed", w)
        if newest is not None and w.token < newest.token:
            holders = [by_token[t] for t in (w.token, newest.token) if t in by_token]
            result.add(f"lock {lock!r}: TWO HOLDERS: a write fenced by token {w.token} was "
                       f"accepted at revision {w.revision}, after a write fenced by the newer "
                       f"token {newest.token} was accepted at revision {newest.revision}",
                       newest, w, *holders)
        if newest is None or w.token > newest.token:
            newest = w
    # Real time: once a newer holder's acquisition completed, older tokens are dead.
    for w in accepted:
        for a in acquired:
            if a.token > w.token and a.complete is not None and a.complete < w.invoke:
                result.add(f"lock {lock!r}: a write fenced by token {w.token} was accepted "
                           f"although it was sent after token {a.token} had acquired the lock",
                           a, w)
                break
    # A released token is dead: at the release's revision, and for writes sent after it.
    ends: dict[int, LockOp] = {}
    for op in ops:
        if op.kind == "release" and op.outcome == "ok":
            ends[op.lease] = op
    for op in acquired:
        revoke = revokes.get(op.lease)
        if revoke is not None and (op.lease not in ends or (revoke.revision or 0) <
                                   (ends[op.lease].revision or 0)):
            ends[op.lease] = revoke
    for w in accepted:
        holder = by_token.get(w.token)
        if holder is None:
            continue
        end = ends.get(holder.lease)
        if end is None or end.complete is None:
            continue
        if (w.revision is not None and end.revision is not None and w.revision >= end.revision) \
                or w.invoke > end.complete:
            result.add(f"lock {lock!r}: a write fenced by token {w.token} was accepted after "
                       f"its holder's key was released", holder, end, w)


def _check_seen(lock: str, value: str | None, revision: int | None, by_value: dict[str, LockOp],
                result: LockCheck, what: str, *context: LockOp) -> None:
    if value is None:
        return
    w = by_value.get(value)
    if w is None:
        result.add(f"lock {lock!r}: {what} saw {value!r}, which no fenced write wrote", *context)
    elif w.outcome == "fail":
        why = "rejected by its fence (412)" if w.fenced else "surely not applied"
        result.add(f"lock {lock!r}: {what} saw {value!r}, written by a write {why}", w, *context)
    elif w.outcome == "ok" and revision is not None and w.revision != revision:
        result.add(f"lock {lock!r}: {what} saw {value!r} at revision {revision}, but its write "
                   f"was accepted at revision {w.revision}", w, *context)


def _check_final(lock: str, final: tuple[str | None, int | None], accepted: list[LockOp],
                 by_value: dict[str, LockOp], result: LockCheck) -> None:
    value, revision = final
    last = accepted[-1] if accepted else None
    if value is None:
        if last is not None:
            result.add(f"lock {lock!r}: the fenced key is absent at the end, though writes were "
                       "accepted and nothing deletes it; the last:", last)
        return
    _check_seen(lock, value, revision, by_value, result, "the final read")
    if last is not None and revision is not None and last.revision is not None \
            and revision < last.revision:
        result.add(f"lock {lock!r}: the final value {value!r}@{revision} is older than an "
                   "accepted write (lost)", last)


def _check_committed(lock: str, committed: Sequence[tuple[int, str | None]],
                     by_value: dict[str, LockOp], result: LockCheck) -> None:
    """The committed puts of the fenced key, in revision order: from writes that may have
    been accepted, with tokens that never decrease."""
    newest: tuple[int, int, str] | None = None  # (token, revision, value)
    for revision, value in sorted(committed, key=lambda rv: rv[0]):
        if value is None:
            result.add(f"lock {lock!r}: the fenced key was deleted at revision {revision}; "
                       "nothing deletes it")
            continue
        result.counts["committed"] += 1
        _check_seen(lock, value, revision, by_value, result,
                    f"the committed change at revision {revision}")
        token = _token_of(value)
        if token is None:
            continue
        if newest is not None and token < newest[0]:
            older = [by_value[v] for v in (newest[2], value) if v in by_value]
            result.add(f"lock {lock!r}: TWO HOLDERS: {value!r} (token {token}) was committed at "
                       f"revision {revision}, after {newest[2]!r} (token {newest[0]}) at "
                       f"revision {newest[1]}", *older)
        if newest is None or token > newest[0]:
            newest = (token, revision, value)


def _check_holders(ops: Sequence[LockOp], committed: Sequence[Change], complete_to: int,
                   result: LockCheck) -> None:
    """Replay the lock keys of the committed history (complete from revision 1 to
    ``complete_to``): every fenced put must name the holder of the moment, every
    acquisition's key must have held by the revision its answer was stamped with."""
    by_revision: dict[int, list[Change]] = defaultdict(list)
    for change in committed:
        if change[0] <= complete_to:
            by_revision[change[0]].append(change)
    writes = {op.value: op for op in ops if op.kind == "write"}
    alive: dict[str, dict[str, int]] = defaultdict(dict)  # lock -> key -> create revision
    became: dict[int, int] = {}  # token -> the revision at which its key began to hold
    for revision in sorted(by_revision):
        changes = by_revision[revision]
        for _, kind, key, value in changes:
            if kind != "put" or not key.startswith(FENCED_PREFIX) or value is None:
                continue
            lock = key[len(FENCED_PREFIX):]
            token = _token_of(value)
            holder = min(alive[lock].values(), default=None)
            result.counts["fences_replayed"] += 1
            if token is not None and holder != token:
                what = "FENCE BROKEN" if holder is None else "TWO HOLDERS"
                who = "no holder" if holder is None else f"token {holder} holding"
                shown = [writes[value]] if value in writes else []
                result.add(f"lock {lock!r}: {what}: {value!r} (token {token}) was committed at "
                           f"revision {revision} with {who} (committed lock keys replayed)",
                           *shown)
        touched = set()
        for _, kind, key, _ in changes:
            if not key.startswith(LOCK_PREFIX):
                continue
            lock = key[len(LOCK_PREFIX):].rpartition("/")[0]
            touched.add(lock)
            if kind == "put":
                alive[lock].setdefault(key, revision)
            else:
                alive[lock].pop(key, None)
        for lock in touched:
            holder = min(alive[lock].values(), default=None)
            if holder is not None:
                became.setdefault(holder, revision)
    for op in ops:
        if op.kind != "lock" or op.outcome != "ok" or op.at is None or op.at > complete_to:
            continue
        result.counts["acquisitions_replayed"] += 1
        start = became.get(op.token)
        if start is None or start > op.at:
            since = "never" if start is None else f"only from revision {start}"
            result.add(f"lock {op.lock!r}: the acquisition with token {op.token} was answered "
                       f"at revision {op.at}, but in the committed history its key held "
                       f"{since}", op)
