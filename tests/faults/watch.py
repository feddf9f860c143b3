"""Watchers for the fault test, and the check of what they received.

A ``Watcher`` thread watches a key or a prefix (``GET /watch/{key}``, Server-Sent Events,
``prev=true``) on a random node. When its stream drops (node killed, paused, cut off,
a voluntary reconnect after a few seconds) it reconnects on a random node with
``Last-Event-ID`` set to the last id it received. When the server says ``compacted``
(or answers 410), it reads the key or prefix again and watches from that read's
``X-LeifDB-Revision`` + 1: the revisions in between are a recorded *gap*, where nothing is
expected. Everything it receives is recorded in order in a ``WatchLog``.

After the run, ``fetch_reference`` takes every node's full kept history (one watch of
everything from revision 1, or from the node's oldest kept revision after a 410, read up
to its first bookmark) and merges them into the ``Reference``: the committed changes by
revision, over the revisions some node still keeps. Nodes must agree where they overlap,
and every acknowledged write whose revision is covered must be in it (``cross_check``).

``check_watch`` then judges each watcher's log against the reference by the six
properties of etcd's robustness tests:

* ordered: event revisions never decrease, ids (events and bookmarks) never go back;
* unique: no (revision, key) is delivered twice;
* atomic: the events of one revision come together, and are all of the reference's
  events of that revision that match the watch (a transaction's changes never split);
* reliable: every matching reference event between the first revision the watcher was
  due and the last one it confirmed was delivered, as the reference has it (value,
  prev_value, prev_revision), except inside a recorded gap;
* resumable: after a reconnect with ``Last-Event-ID: L`` the stream goes on exactly after
  L: nothing at or below L, nothing matching skipped before the first item;
* bookmarkable: a bookmark (progress) R means every matching reference event up to R had
  been delivered before it.

Standard library only.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote, urlencode, urlsplit

from tests.faults.clients import SseStream, http_call
from tests.faults.history import Op, Seen

__all__ = [
    "Reference",
    "WatchLog",
    "WatchResult",
    "Watcher",
    "check_watch",
    "cross_check",
    "fetch_reference",
    "merge_histories",
    "Historian",
    "watch_target",
]

# One change as the checker compares them: (type, key, value, prev_value, prev_revision).
Change = tuple


def watch_target(key: str, prefix: bool, *, start_revision: int | None = None,
                 prev: bool = True, consistency: str | None = None) -> str:
    query: dict[str, str] = {}
    if prefix:
        query["prefix"] = "true"
    if start_revision is not None:
        query["start_revision"] = str(start_revision)
    if prev:
        query["prev"] = "true"
    if consistency is not None:
        query["consistency"] = consistency
    return "/watch/" + quote(key, safe="") + ("?" + urlencode(query) if query else "")


def _change(data: dict[str, Any]) -> Change | None:
    """The change an event's data describes, or None if it is malformed."""
    kind, key, rev = data.get("type"), data.get("key"), data.get("revision")
    if kind not in ("put", "delete") or not isinstance(key, str) or not isinstance(rev, int):
        return None
    value = data.get("value")
    if (kind == "put") != isinstance(value, str):
        return None
    return (kind, key, value, data.get("prev_value"), data.get("prev_revision"))


@dataclass
class WatchLog:
    """What one watcher received, in order. Entries:

    * ``("open", node, last_event_id, start_revision, t)``: a stream began (200);
    * ``("event", revision, change)``: a change (``Change``);
    * ``("progress", revision)``: a bookmark;
    * ``("end", reason)``: the stream ended: a final event's name (compacted, overflow,
      shutdown), ``eof``, ``timeout``, ``lost``, ``rotate`` (the watcher moved on, always
      right after a bookmark, never inside a revision);
    * ``("refused", node, status_or_error)``: a watch request that did not start;
    * ``("gap", after, upto)``: after a compaction, revisions after ``after`` up to
      ``upto`` are not expected (the watcher re-read at ``upto``);
    * ``("bad", text)``: a message no correct server sends.
    """

    key: str
    prefix: bool
    entries: list[tuple] = field(default_factory=list)

    def matches(self, key: str) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key

    def describe(self) -> str:
        return f"watch of {'prefix ' if self.prefix else ''}{self.key!r}"


class Watcher(threading.Thread):
    """Watches until ``stop`` is set, on nodes from ``addresses()``; see the module doc.
    ``rotate`` (LO, HI): seconds after which it drops a healthy stream on purpose."""

    def __init__(self, watcher_id: int, key: str, prefix: bool,
                 addresses: Callable[[], Sequence[str]], stop: threading.Event, seed: int, *,
                 read_timeout: float = 8.0, rotate: tuple[float, float] = (2.0, 8.0),
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name=f"watcher-{watcher_id}", daemon=True)
        self.watcher_id = watcher_id
        self.log = WatchLog(key, prefix)
        self.addresses = addresses
        self.stop_event = stop
        self.rng = random.Random(seed)
        self.read_timeout = read_timeout
        self.rotate = rotate
        self.clock = clock
        self.error: BaseException | None = None
        self.last_id: int | None = None  # the last id received: the next Last-Event-ID
        self.start_revision: int | None = None  # for a new watch after a gap
        self.confirmed = 0  # the highest revision received (event or bookmark)
        self.sessions = 0
        self._lock = threading.Lock()
        self._stream: SseStream | None = None

    def record(self, entry: tuple) -> None:
        with self._lock:
            self.log.entries.append(entry)

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if not self._session():
                    self.stop_event.wait(self.rng.uniform(0.1, 0.3))
        except BaseException as e:  # reported by the runner
            self.error = e

    def interrupt(self) -> None:
        """Close the current stream (from another thread) so that ``run`` notices ``stop``."""
        stream = self._stream
        if stream is not None:
            stream.close()

    def _session(self) -> bool:
        """One watch request and its stream; False if it did not start."""
        address = self.rng.choice(list(self.addresses()))
        headers: dict[str, str] = {}
        start = None
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        elif self.start_revision is not None:
            start = self.start_revision
        target = watch_target(self.log.key, self.log.prefix, start_revision=start)
        stream = SseStream(address, target, headers, read_timeout=self.read_timeout)
        status = stream.open()
        hops = 0
        while status == 307 and stream.location and hops < 3:
            hops += 1
            parts = urlsplit(stream.location)
            address = parts.netloc
            stream = SseStream(address, target, headers, read_timeout=self.read_timeout)
            status = stream.open()
        if status != 200:
            self.record(("refused", address, status if status is not None else stream.error))
            if status == 410:
                compact = (stream.body or {}).get("compact_revision")
                self._regain(compact if isinstance(compact, int) else None)
            return False
        self.sessions += 1
        self.record(("open", address, self.last_id, start, self.clock()))
        self._stream = stream
        deadline = time.monotonic() + self.rng.uniform(*self.rotate)
        reason = "eof"
        try:
            for message in stream.messages():
                if not self._message(message):
                    reason = message.event
                    break
                # Leave only right after a bookmark: the changes of one revision share one
                # id, so leaving between two of them would resume after the revision and
                # lose the rest of it (an SSE client can only resume by revision).
                if message.event == "progress" and (
                        self.stop_event.is_set() or time.monotonic() > deadline):
                    reason = "rotate"
                    break
        except TimeoutError:
            reason = "timeout"
        except Exception:  # noqa: BLE001 - any lost connection (OSError, HTTPException, ...)
            reason = "lost"
        finally:
            self._stream = None
            stream.close()
        self.record(("end", reason))
        return True

    def _message(self, message: Any) -> bool:
        """Record one message; False when it ends the stream."""
        data = message.json()
        if message.event == "message":
            change = _change(data) if isinstance(data, dict) else None
            # Only the last change of a revision carries the id (a resume never skips the
            # rest of a transaction's changes); the others show the id carried over from
            # before (SSE's last event id), so only an id equal to the revision completes it.
            if change is None:
                self.record(("bad", f"event {message!r}"))
                return True
            revision = data["revision"]
            self.record(("event", revision, change))
            if message.id == str(revision):
                self.last_id = revision
                self.confirmed = max(self.confirmed, revision)
            return True
        if message.event == "progress":
            revision = data.get("revision") if isinstance(data, dict) else None
            if not isinstance(revision, int) or message.id != str(revision):
                self.record(("bad", f"progress {message!r}"))
                return True
            self.record(("progress", revision))
            self.last_id = revision
            self.confirmed = max(self.confirmed, revision)
            return True
        if message.event == "compacted":
            compact = data.get("compact_revision") if isinstance(data, dict) else None
            self._regain(compact if isinstance(compact, int) else None)
            return False
        if message.event in ("overflow", "shutdown"):
            if message.event == "overflow":
                self._regain(None)
            return False
        self.record(("bad", f"unknown event {message!r}"))
        return True

    def _regain(self, compact: int | None) -> None:
        """After ``compacted`` (or 410, or overflow): read again, and watch from that read's
        revision + 1. The revisions in between are a gap."""
        for _ in range(50):
            if self.stop_event.is_set():
                return
            address = self.rng.choice(list(self.addresses()))
            if self.log.prefix:
                target = "/db?" + urlencode({"prefix": self.log.key, "limit": "1"})
            else:
                target = "/db/" + quote(self.log.key, safe="")
            answer = http_call(address, "GET", target, {}, 2.5)
            if answer.status in (200, 404) and answer.revision_header is not None:
                after = self.last_id if self.last_id is not None else (
                    (self.start_revision or 1) - 1)
                self.record(("gap", after, answer.revision_header, compact))
                self.start_revision = answer.revision_header + 1
                self.last_id = None
                return
            time.sleep(0.1)
        self.record(("bad", "could not read again after a compaction"))


# --- the reference ------------------------------------------------------------------------


@dataclass
class Reference:
    """Committed changes by revision, known for the revisions of ``spans`` (sorted,
    disjoint, inclusive): every change with such a revision is in ``changes``; a covered
    revision without changes changed nothing. ``lo``/``hi``: the outermost covered."""

    spans: list[tuple[int, int]]
    changes: dict[int, list[Change]]
    sources: list[tuple[str, int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def lo(self) -> int:
        return self.spans[0][0] if self.spans else 0

    @property
    def hi(self) -> int:
        return self.spans[-1][1] if self.spans else 0

    def covers(self, revision: int) -> bool:
        k = bisect.bisect_right(self.spans, (revision, float("inf"))) - 1
        return k >= 0 and self.spans[k][0] <= revision <= self.spans[k][1]

    def matching(self, log: WatchLog) -> list[tuple[int, Change]]:
        """The reference events a watch would get, by revision (in stream order)."""
        return [(r, c) for r in sorted(self.changes) for c in self.changes[r] if log.matches(c[1])]

    @property
    def events(self) -> int:
        return sum(len(v) for v in self.changes.values())

    def describe(self) -> str:
        spans = ", ".join(f"{a}..{b}" for a, b in self.spans) or "none"
        return f"revisions {spans}, {self.events} changes, from {len(self.sources)} node histories"


NodeHistory = tuple  # (node name, first revision, bookmark revision, changes by revision)


def read_history(address: str, *, timeout: float = 15.0) -> tuple[int, int, dict[int, list[Change]]] | str:
    """A node's kept history: (first revision, revision of its bookmark, changes by
    revision), from one watch of everything up to its first bookmark (``consistency=stale``:
    the node's own applied history, no leader needed); or what went wrong."""
    start = 1
    for _ in range(3):
        stream = SseStream(address, watch_target("", True, start_revision=start, consistency="stale"),
                           read_timeout=timeout)
        status = stream.open()
        if status == 410:
            compact = (stream.body or {}).get("compact_revision")
            if not isinstance(compact, int):
                return f"410 without compact_revision: {stream.body}"
            start = compact
            continue
        if status != 200:
            return f"watch answered {status or stream.error}: {stream.body}"
        changes: dict[int, list[Change]] = defaultdict(list)
        try:
            for message in stream.messages():
                data = message.json()
                if message.event == "progress" and isinstance(data, dict):
                    return start, int(data["revision"]), dict(changes)
                if message.event != "message" or not isinstance(data, dict):
                    return f"the stream ended with {message.event}: {data}"
                change = _change(data)
                if change is None:
                    return f"bad event {message.data}"
                changes[data["revision"]].append(change)
        except Exception as e:  # noqa: BLE001
            return f"the stream broke: {e!r}"
        finally:
            stream.close()
        return "the stream ended before its first bookmark"
    return "the node kept compacting"


def merge_histories(histories: Sequence[NodeHistory]) -> Reference:
    """One reference from node histories taken at any time: where two cover a revision
    they must agree on its changes (a problem otherwise)."""
    problems: list[str] = []
    changes: dict[int, list[Change]] = {}
    owner: dict[int, str] = {}
    spans: list[tuple[int, int, str]] = []

    def covered_by(r: int) -> str | None:
        for a, b, name in spans:
            if a <= r <= b:
                return name
        return None

    for name, lo, hi, node_changes in sorted(histories, key=lambda h: (h[1], -h[2])):
        if hi < lo:
            continue
        for r, cs in sorted(node_changes.items()):
            if r in changes:
                if changes[r] != cs:
                    problems.append(f"reference: nodes {owner[r]} and {name} disagree on revision "
                                    f"{r}: {changes[r]} vs {cs}")
            else:
                other = covered_by(r)
                if other is not None:
                    problems.append(f"reference: node {name} has {cs} at revision {r}, node "
                                    f"{other} kept nothing there")
                changes[r] = cs
                owner[r] = name
        for r in changes:
            if lo <= r <= hi and r not in node_changes:
                problems.append(f"reference: node {name} kept nothing at revision {r}, node "
                                f"{owner[r]} has {changes[r]}")
        spans.append((lo, hi, name))
    merged: list[tuple[int, int]] = []
    for a, b, _ in sorted(spans):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    ref = Reference(merged, changes, [(n, a, b) for a, b, n in spans], problems[:20])
    ref.problems.extend(_prev_consistency(ref))
    return ref


def fetch_reference(addresses: dict[str, str], *, timeout: float = 15.0,
                    earlier: Sequence[NodeHistory] = ()) -> Reference:
    """Every node's kept history now (``addresses``: name -> HTTP address), merged with
    ``earlier`` ones (taken during the run, see ``Historian``)."""
    problems: list[str] = []
    histories = list(earlier)
    for name, address in sorted(addresses.items()):
        got = read_history(address, timeout=timeout)
        if isinstance(got, str):
            problems.append(f"reference: node {name}: {got}")
        else:
            histories.append((name, *got))
    ref = merge_histories(histories)
    ref.problems[:0] = problems
    if not ref.spans:
        ref.problems.append("reference: no node history")
    return ref


class Historian(threading.Thread):
    """Takes a random node's kept history every few seconds during the run, so that the
    reference also covers revisions that every node has dropped by the end (a node keeps
    its window only since its last restart or installed snapshot)."""

    def __init__(self, nodes: Callable[[], dict[str, str]], stop: threading.Event, seed: int,
                 every: tuple[float, float] = (2.0, 4.0)) -> None:
        super().__init__(name="historian", daemon=True)
        self.nodes = nodes
        self.stop_event = stop
        self.rng = random.Random(seed)
        self.every = every
        self.histories: list[NodeHistory] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.wait(self.rng.uniform(*self.every)):
                name, address = self.rng.choice(sorted(self.nodes().items()))
                got = read_history(address, timeout=3.0)
                if not isinstance(got, str):
                    self.histories.append((name, *got))
        except BaseException as e:  # reported by the runner
            self.error = e


def _prev_consistency(ref: Reference) -> list[str]:
    """Each change's prev_value/prev_revision must be the key's previous change."""
    problems = []
    last: dict[str, tuple[str | None, int]] = {}
    span = None
    for r in sorted(ref.changes):
        here = bisect.bisect_right(ref.spans, (r, float("inf"))) - 1
        if here != span:
            # A gap in the reference: what a key held before it says nothing after it.
            last.clear()
            span = here
        for kind, key, value, prev_value, prev_revision in ref.changes[r]:
            if key in last and (prev_value, prev_revision) != last[key]:
                problems.append(f"reference: revision {r} {kind} {key!r} says prev "
                                f"{prev_value!r}@{prev_revision}, the previous change left {last[key]}")
                if len(problems) > 5:
                    return problems
            last[key] = (value, r) if kind == "put" else (None, 0)
    return problems


def _expected_changes(op: Op) -> list[Change] | None:
    """(type, key, value) of the changes an acknowledged write made at its revision."""
    if op.kind == "put":
        return [("put", op.key, op.value)]
    if op.kind == "delete":
        return None  # a delete of an absent key changes nothing: either is fine
    assert op.txn is not None and op.succeeded is not None and op.results is not None
    out = []
    for t, res in zip(op.txn.branch(op.succeeded), op.results):
        if t.op == "put":
            out.append(("put", t.key, t.value))
        elif t.op == "delete" and res is True:
            out.append(("delete", t.key, None))
    return out


def cross_check(ref: Reference, ops: Iterable[Op], final_reads: dict[str, Op]) -> tuple[list[str], int]:
    """Acknowledged writes and final reads against the reference: (problems, writes checked)."""
    problems = []
    checked = 0
    for op in ops:
        if op.outcome != "ok" or op.revision is None or not ref.covers(op.revision):
            continue
        if op.kind == "read" or op.condition_failed:
            continue
        got = sorted((c[0], c[1], c[2]) for c in ref.changes.get(op.revision, []))
        want = _expected_changes(op)
        checked += 1
        if want is None:
            if got not in ([], [("delete", op.key, None)]):
                problems.append(f"acknowledged write at revision {op.revision} is not in the "
                                f"watch history (it has {got}): {op.describe()}")
        elif got != sorted(want):
            problems.append(f"acknowledged write at revision {op.revision} is not in the watch "
                            f"history as written (it has {got}): {op.describe()}")
    last: dict[str, tuple[int, Change]] = {}
    for r in sorted(ref.changes):
        for c in ref.changes[r]:
            last[c[1]] = (r, c)
    for key, read in sorted(final_reads.items()):
        seen = read.seen
        if seen is None:
            continue
        found = last.get(key)
        if seen.value is None:
            if found is not None and found[1][0] == "put":
                problems.append(f"final read of {key!r} found it absent, the watch history's last "
                                f"change is {found}")
        elif seen.revision is not None and ref.covers(seen.revision):
            if found is None or found[0] != seen.revision or found[1][2] != seen.value:
                problems.append(f"final read of {key!r} saw {Seen(seen.value, seen.revision).describe()}, "
                                f"the watch history's last change is {found}")
    return problems, checked


# --- the six properties -------------------------------------------------------------------

PROPERTIES = ("ordered", "unique", "atomic", "reliable", "resumable", "bookmarkable")


@dataclass
class WatchResult:
    """The verdict on one watcher: violations by property, and counts."""

    name: str
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    events: int = 0  # events received
    checked: int = 0  # events compared with the reference
    bookmarks: int = 0
    sessions: int = 0
    resumes: int = 0
    gaps: int = 0
    span: tuple[int, int] = (0, 0)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def add(self, prop: str, text: str) -> None:
        assert prop in PROPERTIES
        self.violations[prop].append(text)

    def summary(self) -> str:
        head = (f"{self.name}: {self.events} events ({self.checked} checked against the reference), "
                f"{self.bookmarks} bookmarks, {self.sessions} streams, {self.resumes} resumed, "
                f"{self.gaps} compaction gaps, revisions {self.span[0]}..{self.span[1]}")
        if self.ok:
            return head + ": ok"
        lines = [head + ": VIOLATIONS"]
        for prop in PROPERTIES:
            found = self.violations.get(prop) or []
            if found:
                lines.append(f"  {prop}: {len(found)}, first: " + "; ".join(found[:3]))
        return "\n".join(lines)


def check_watch(log: WatchLog, ref: Reference, name: str = "watcher") -> WatchResult:
    """Judge ``log`` against ``ref`` by the six properties (see the module doc)."""
    res = WatchResult(name)
    expected = ref.matching(log)
    exp_revs = [r for r, _ in expected]
    by_rev: dict[int, list[Change]] = defaultdict(list)
    for r, c in expected:
        by_rev[r].append(c)
    gaps: list[tuple[int, int]] = []
    delivered: dict[tuple[int, str], Change] = {}
    seen_revs: set[int] = set()
    last_event_rev = 0
    last_id = 0
    first_due: int | None = None
    confirmed = 0
    resume_from: int | None = None  # Last-Event-ID of the open session, until its first item
    bookmarked = 0  # bookmarks were checked up to here
    group: list[Change] = []
    group_rev: int | None = None
    closed_groups: set[int] = set()

    def in_gap(r: int) -> bool:
        return any(a < r <= b for a, b in gaps)

    def missing(lo: int, hi: int) -> list[str]:
        """Matching reference events with lo <= revision <= hi not delivered (nor in a gap)."""
        import bisect
        out = []
        for k in range(bisect.bisect_left(exp_revs, lo), bisect.bisect_right(exp_revs, hi)):
            r, c = expected[k]
            if (r, c[1]) not in delivered and not in_gap(r) and ref.covers(r):
                out.append(f"{c[0]} {c[1]!r}@{r}")
        return out

    def close_group() -> None:
        nonlocal group, group_rev
        if group_rev is None:
            return
        r = group_rev
        closed_groups.add(r)
        if ref.covers(r):
            want = sorted(by_rev.get(r, []), key=repr)
            got = sorted(group, key=repr)
            if [c[1] for c in got] != [c[1] for c in want]:
                res.add("atomic", f"revision {r}: got changes of {[c[1] for c in got]} together, "
                                  f"the reference has {[c[1] for c in want]}")
        group, group_rev = [], None

    for entry in log.entries:
        kind = entry[0]
        if kind == "open":
            close_group()
            res.sessions += 1
            _, node, last_event_id, start, _ = entry
            if last_event_id is not None:
                res.resumes += 1
                resume_from = last_event_id
            else:
                resume_from = None
            if first_due is None and start is not None:
                first_due = start
        elif kind == "event":
            _, r, change = entry
            res.events += 1
            key = change[1]
            if group_rev is not None and r != group_rev:
                close_group()
            if resume_from is not None:
                if r <= resume_from:
                    res.add("resumable", f"after Last-Event-ID {resume_from} the stream replayed "
                                         f"revision {r}")
                else:
                    skipped = missing(resume_from + 1, r - 1)
                    if skipped:
                        res.add("resumable", f"after Last-Event-ID {resume_from} the first event "
                                             f"was at {r}, skipping {skipped[:3]}")
                resume_from = None
            if r < last_event_rev:
                res.add("ordered", f"event at revision {r} after one at {last_event_rev}")
            elif r < last_id:
                res.add("ordered", f"event at revision {r} after id {last_id}")
            if (r, key) in delivered:
                res.add("unique", f"{change[0]} {key!r}@{r} delivered twice")
            elif r in closed_groups and r != group_rev:
                res.add("atomic", f"revision {r}: {key!r} came apart from the revision's other changes")
            if first_due is None:
                first_due = r
            if ref.covers(r):
                res.checked += 1
                want = [c for c in by_rev.get(r, []) if c[1] == key]
                if not want:
                    res.add("reliable", f"{change[0]} {key!r}@{r} is not in the reference "
                                        f"(which has {by_rev.get(r, [])} at {r})")
                elif want[0] != change:
                    res.add("reliable", f"{key!r}@{r} delivered as {change}, the reference has {want[0]}")
            delivered[(r, key)] = change
            seen_revs.add(r)
            group.append(change)
            group_rev = r
            last_event_rev = max(last_event_rev, r)
            last_id = max(last_id, r)
            confirmed = max(confirmed, r)
        elif kind == "progress":
            close_group()
            _, r = entry
            res.bookmarks += 1
            if r < last_id:
                res.add("ordered", f"bookmark {r} after id {last_id} (a client resuming from it "
                                   f"would get revisions again)")
            if resume_from is not None:
                skipped = missing(resume_from + 1, r)
                if skipped:
                    res.add("resumable", f"after Last-Event-ID {resume_from} the first item was "
                                         f"bookmark {r}, skipping {skipped[:3]}")
                resume_from = None
            if first_due is None:
                first_due = r + 1
            lost = missing(max(first_due, bookmarked + 1), r)
            bookmarked = max(bookmarked, r)
            if lost:
                res.add("bookmarkable", f"bookmark {r} before {len(lost)} matching change(s) were "
                                        f"delivered: {lost[:3]}")
            last_id = max(last_id, r)
            confirmed = max(confirmed, r)
        elif kind == "end":
            close_group()
        elif kind == "gap":
            close_group()
            res.gaps += 1
            gaps.append((entry[1], entry[2]))
            if first_due is None:
                first_due = entry[2] + 1
            last_id = max(last_id, entry[2])
        elif kind == "bad":
            res.add("reliable", f"malformed message: {entry[1]}")
    close_group()
    if first_due is not None:
        lost = missing(first_due, confirmed)
        if lost:
            res.add("reliable", f"{len(lost)} matching change(s) between {first_due} and "
                                f"{confirmed} never delivered: {lost[:5]}")
        res.span = (first_due, confirmed)
    return res


def summarize(results: Sequence[WatchResult]) -> str:
    counts: Counter[str] = Counter()
    for r in results:
        for prop, found in r.violations.items():
            counts[prop] += len(found)
    return ", ".join(f"{p} {counts[p]}" for p in PROPERTIES if counts[p]) or "none"
