"""Drive the storage through a history on a ``SimFileSystem``, crash it (process kills and
power cuts, at any file-system call), recover as a node does, and check that nothing
reported durable was lost.

A *history* is a list of operations relative to the current state (appends that may
overwrite the tail, term and vote changes, local snapshots with compaction, snapshots
installed from a leader, clean and unclean restarts). *Faults* are placed at file-system
mutation counts: when one fires, the operation in flight stops dead, the machine loses
power (or the process is killed), and recovery must give a state between the one before
that operation and the one after it, never less than what was reported durable.

Every recovery is then checked to be durable itself: one more clean power cut and recovery
must give the same state (recovery must not act on what is only in the page cache).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Callable

from leifdb.raft.messages import Entry, EntryType, HardState, SnapshotMeta
from leifdb.storage import DiskStorage, SnapshotStore, crc32c
from leifdb.storage.simfs import SYNC_CALLS, SimFileSystem, SimulatedCrash

ROOT = PurePosixPath("/var/leifdb/node")
SEGMENT = 4096
CHUNK = 64


class Lost(AssertionError):
    """A durability promise was broken (or recovery refused a state a crash can leave)."""


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class State:
    """What the storage has reported durable: term, vote, the newest snapshot (which is
    also the log's compaction boundary once a node has started) and the log after it."""

    term: int = 0
    vote: str | None = None
    snap: SnapshotMeta = SnapshotMeta()
    payload: bytes = b""
    log: tuple[Entry, ...] = ()

    @property
    def boundary(self) -> int:
        return self.snap.last_included_index

    @property
    def last(self) -> int:
        return self.boundary + len(self.log)

    def term_at(self, index: int) -> int | None:
        if index == self.boundary:
            return self.snap.last_included_term
        position = index - self.boundary - 1
        return self.log[position].term if 0 <= position < len(self.log) else None

    def log_after(self, index: int) -> tuple[Entry, ...] | None:
        """Entries after ``index``, None if the model has compacted some of them away."""
        if index < self.boundary:
            return None
        return self.log[index - self.boundary :]

    def describe(self) -> str:
        entries = f"{self.log[0].index}..{self.last}" if self.log else "none"
        return (
            f"term {self.term} vote {self.vote!r} snapshot "
            f"{self.snap.last_included_index}/{self.snap.last_included_term} entries {entries}"
        )


@dataclass
class Plan:
    """One operation: the state once it returns, how much of the log must survive a crash
    in its middle (a function of the recovered boundary), and the calls it makes."""

    after: State
    required_last: Callable[[int], int]
    run: Callable[["Node"], None]


# ---------------------------------------------------------------- operations


def payload_of(index: int, term: int, nonce: int, size: int) -> bytes:
    head = f"<{index}:{term}:{nonce}>".encode()
    return (head * (size // len(head) + 1))[:size]


@dataclass(frozen=True)
class Append:
    """Append ``count`` entries, first overwriting ``rewind`` entries of the tail (a
    conflict: needs a new term); ``bump`` starts a new term anyway."""

    rewind: int
    count: int
    size: int
    bump: bool

    def plan(self, d: State, nonce: int) -> Plan | None:
        rewind = min(self.rewind, len(d.log))
        term = d.term + 1 if (rewind or self.bump or d.term == 0) else d.term
        vote = None if term != d.term else d.vote
        start = d.last + 1 - rewind
        new = tuple(
            Entry(term, i, EntryType.NORMAL, payload_of(i, term, nonce, self.size + i % 7))
            for i in range(start, start + self.count)
        )
        after = replace(d, term=term, vote=vote, log=d.log[: start - d.boundary - 1] + new)
        hard = HardState(term, vote) if term != d.term else None
        keep = start - 1

        def run(node: Node) -> None:
            node.disk.append(new)
            if hard is not None:
                node.disk.set_hard_state(hard)
            node.disk.sync()

        return Plan(after, lambda boundary: keep, run)


@dataclass(frozen=True)
class Vote:
    bump: bool
    vote: str | None

    def plan(self, d: State, nonce: int) -> Plan | None:
        term = d.term + 1 if self.bump or d.term == 0 else d.term
        after = replace(d, term=term, vote=self.vote)

        def run(node: Node) -> None:
            node.disk.set_hard_state(HardState(term, self.vote))
            node.disk.sync()

        return Plan(after, lambda boundary: d.last, run)


@dataclass(frozen=True)
class Snapshot:
    """Snapshot the state machine at some applied index, then compact the log (what
    ``leifdb.node`` does: save, then compact once the snapshot is durable)."""

    at: int
    size: int

    def plan(self, d: State, nonce: int) -> Plan | None:
        if not d.log:
            return None
        index = d.boundary + 1 + self.at % len(d.log)
        term = d.term_at(index)
        assert term is not None
        data = payload_of(index, term, nonce, self.size)
        meta = SnapshotMeta(index, term, crc32c(data), len(data))
        after = replace(d, snap=meta, payload=data, log=d.log[index - d.boundary :])

        def run(node: Node) -> None:
            saved = node.snaps.save(index, term, data)
            assert saved == meta, (saved, meta)
            node.disk.compact(meta)

        return Plan(after, _compaction_required(d, after), run)


@dataclass(frozen=True)
class Install:
    """A snapshot from the leader arrives in chunks, then replaces the log. ``matching``:
    it ends at an entry the log has (the log after it is kept); otherwise it comes with a
    new term and the whole log is dropped. ``ahead`` places it past the log's end."""

    at: int
    ahead: int
    matching: bool
    size: int

    def plan(self, d: State, nonce: int) -> Plan | None:
        if self.matching and d.log:
            index = d.boundary + 1 + self.at % len(d.log)
            term = d.term_at(index)
            assert term is not None
            kept = d.log[index - d.boundary :]
        else:
            index = d.boundary + 1 + self.at % (len(d.log) + self.ahead + 1)
            term = d.term + 1
            kept = ()
        data = payload_of(index, term, nonce, self.size)
        meta = SnapshotMeta(index, term, crc32c(data), len(data))
        hard = HardState(term, None) if term > d.term else None
        after = replace(
            d,
            term=max(term, d.term),
            vote=None if hard else d.vote,
            snap=meta,
            payload=data,
            log=kept,
        )

        def run(node: Node) -> None:
            if hard is not None:
                node.disk.set_hard_state(hard)
                node.disk.sync()
            offset = node.snaps.begin_receive(meta)
            assert offset == 0
            while offset < meta.size:
                offset = node.snaps.write_chunk(meta, offset, data[offset : offset + CHUNK])
            assert node.snaps.finish_receive(meta)
            node.disk.compact(meta)

        return Plan(after, _compaction_required(d, after), run)


@dataclass(frozen=True)
class Restart:
    """Stop and recover: cleanly, or by ``kill -9`` (the page cache survives)."""

    kill: bool

    def plan(self, d: State, nonce: int) -> Plan | None:
        def run(node: Node) -> None:
            if self.kill:
                node.fs.crash()
            else:
                node.disk.close()
                node.snaps.close()
            recovered = node.start()
            if recovered != d:
                raise Lost(
                    f"after a {'kill' if self.kill else 'clean restart'} at rest: "
                    f"{recovered.describe()}, expected {d.describe()}"
                )

        return Plan(d, lambda boundary: d.last, run)


def _compaction_required(before: State, after: State) -> Callable[[int], int]:
    """A snapshot op: if the new boundary is durable, the log it keeps must be whole;
    otherwise the compaction did not start and the whole old log must be there."""

    def required(boundary: int) -> int:
        return after.last if boundary == after.boundary else before.last

    return required


Operation = Append | Vote | Snapshot | Install | Restart


# ---------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """At file-system mutation ``at`` (``on_sync``: at the ``at``-th sync call, before it
    runs): a power cut (``power``) or a process kill. ``keep_unsynced``/``zero_fill``/
    ``seed``: how the power cut treats unsynced writes. ``in_recovery``: strike again
    that many mutations into the recovery."""

    at: int
    on_sync: bool = False
    power: bool = True
    keep_unsynced: bool = False
    zero_fill: bool = False
    seed: int = 0
    in_recovery: int | None = None

    def arm(self, fs: SimFileSystem) -> None:
        if self.on_sync:
            fs.crash_after(max(0, self.at - fs.syncs), only=SYNC_CALLS)
        else:
            fs.crash_after(max(0, self.at - fs.mutations))

    def strike(self, fs: SimFileSystem) -> None:
        if self.power:
            fs.power_cut(
                random.Random(self.seed),
                keep_unsynced=self.keep_unsynced,
                zero_fill=self.zero_fill,
            )
        else:
            fs.crash()


# ---------------------------------------------------------------- the node's files


@dataclass
class Node:
    """The durable parts of a node on a file system, started as ``leifdb.node`` does."""

    fs: SimFileSystem
    disk: DiskStorage = field(init=False)
    snaps: SnapshotStore = field(init=False)

    def start(self) -> State:
        """Recover: the log, the newest valid snapshot, and (like ``leifdb.node``) a
        compaction to that snapshot if a crash came between saving it and compacting."""
        self.disk = DiskStorage.open(str(ROOT), segment_size=SEGMENT, fs=self.fs)
        state = self.disk.load()
        self.snaps = SnapshotStore(str(ROOT / "snap"), fs=self.fs)
        latest = self.snaps.latest()
        meta = latest[0] if latest else SnapshotMeta()
        if meta.last_included_index > state.snapshot.last_included_index:
            self.disk.compact(meta)
            state = self.disk.load()
        elif meta.last_included_index < state.snapshot.last_included_index:
            raise Lost(
                f"the log starts after snapshot {state.snapshot.last_included_index} "
                f"but the newest valid snapshot is {meta.last_included_index}"
            )
        payload = b""
        if latest:
            with self.snaps.open(meta) as stream:
                payload = stream.read()
        return State(
            state.hard_state.term,
            state.hard_state.voted_for,
            state.snapshot,
            payload,
            tuple(state.entries),
        )


# ---------------------------------------------------------------- the check


def check(recovered: State, before: State, after: State, required_last: int, where: str) -> None:
    """``recovered`` may be the state before the interrupted operation, after it, or (for
    the log) a prefix of either that keeps at least ``required_last``."""

    def lost(what: str) -> Lost:
        return Lost(
            f"{where}: {what}\n  recovered {recovered.describe()}\n  before    "
            f"{before.describe()}\n  after     {after.describe()}"
        )

    hard = (recovered.term, recovered.vote)
    if hard not in ((before.term, before.vote), (after.term, after.vote)):
        raise lost(f"hard state {hard} is neither the one before nor the one after")
    for model in (before, after):
        if recovered.snap == model.snap:
            if recovered.payload != model.payload:
                raise lost("the snapshot's payload differs")
            break
    else:
        raise lost(f"snapshot {recovered.snap} is neither the one before nor the one after")
    candidates = [m.log_after(recovered.boundary) for m in (before, after)]
    if not any(
        c is not None and recovered.log == c[: len(recovered.log)] for c in candidates
    ):
        raise lost("the log is not a prefix of the log before or after")
    if recovered.last < required_last:
        raise lost(f"the log ends at {recovered.last}, entries up to {required_last} were durable")


# ---------------------------------------------------------------- the driver


FsFactory = Callable[[], SimFileSystem]


def calls_of(history: list[Operation], fs_factory: FsFactory = SimFileSystem) -> tuple[int, int]:
    """How many mutating file-system calls, and how many of them syncs, the history makes
    when nothing fails."""
    fs = fs_factory()
    run_history(history, [], fs)
    return fs.mutations, fs.syncs


def run_history(
    history: list[Operation],
    faults: list[Fault],
    fs: SimFileSystem,
    *,
    final_cut: Fault | None = None,
) -> State:
    """Run ``history`` with ``faults`` (struck in list order); raise ``Lost`` on any
    broken promise. Returns the final recovered state."""
    pending = list(faults)
    node = Node(fs)
    nonce = 0

    def arm() -> None:
        if pending:
            pending[0].arm(fs)
        else:
            fs.crash_after(None)

    def recover(before: State, after: State, required: Callable[[int], int], where: str) -> State:
        fault = pending.pop(0)
        fault.strike(fs)
        if fault.in_recovery is not None:  # and again, during (or just after) recovery
            fs.crash_after(fault.in_recovery)
            try:
                node.start()
            except SimulatedCrash:
                pass
            fault.strike(fs)
        fs.crash_after(None)
        state = start_checked(node, f"{where}, recovering")
        check(state, before, after, required(state.boundary), where)
        fs.power_cut()  # what recovery returned must already be durable
        again = start_checked(node, f"{where}, recovering again")
        if again != state:
            raise Lost(
                f"{where}: recovery acted on state that was not durable: a clean power cut "
                f"later gives {again.describe()} instead of {state.describe()}"
            )
        return state

    d = State()
    arm()
    try:
        started = node.start()
    except SimulatedCrash:
        started = recover(d, d, lambda b: 0, "crash in the first start")
        arm()
    if started != d:
        raise Lost(f"a fresh directory starts as {started.describe()}")
    for step, op in enumerate(history):
        nonce += 1
        plan = op.plan(d, nonce)
        if plan is None:
            continue
        try:
            plan.run(node)
        except SimulatedCrash:
            d = recover(d, plan.after, plan.required_last, f"crash in step {step} {op}")
            arm()
            continue
        d = plan.after
        if node.disk.last_index != d.last:
            raise Lost(f"step {step} {op}: storage says last index {node.disk.last_index}")
    fs.crash_after(None)
    (final_cut or Fault(0)).strike(fs)
    state = start_checked(node, "after the final power cut")
    check(state, d, d, d.last, "after the final power cut")
    return state


def start_checked(node: Node, where: str) -> State:
    try:
        return node.start()
    except Lost:
        raise
    except Exception as exc:
        raise Lost(f"{where}: recovery failed: {exc!r}") from exc
