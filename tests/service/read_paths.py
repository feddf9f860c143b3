"""Every read path of ``KVService`` and the check that it passes the read barrier.

A ``Scene`` is a service whose applied state lags the committed log, as on a follower or
a new leader: ``before`` is applied, ``after`` is committed but not applied yet. A
linearizable read must not answer until (1) a read index was requested from the node
(``Consensus.request_read``), (2) the node confirmed it, and (3) the state machine applied
that far; then it answers from the ``after`` state. A read the node refuses must fail,
never be served. ``consistency=stale`` answers at once from the ``before`` state and asks
the node nothing.

The node is ``RecordingNode``: it records read requests and proposals, and the scene plays
Raft by confirming or refusing reads and applying the committed log. Used by
tests/service/test_read_barrier_mutants.py (the service's read paths) and
tests/http/test_read_barrier_routes.py (the same through every HTTP read route).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from leifdb.errors import NotLeaderError, Unavailable
from leifdb.kv.commands import Command, Compare, Get, LeaseGrant, Put, Range, Txn
from leifdb.raft.core import Status
from leifdb.raft.messages import Entry, EntryType, ReadState, Role
from leifdb.service.api import CONSISTENCY_LINEARIZABLE, CONSISTENCY_STALE, Holder, election_prefix, lock_prefix
from leifdb.service.kvservice import KVService
from leifdb.wire import encode_command

__all__ = [
    "LEADER_HTTP",
    "READ_PATHS",
    "ReadPath",
    "RecordingNode",
    "Scene",
    "check_default_is_linearizable",
    "check_linearizable",
    "check_refused",
    "check_stale",
]

LEADER_HTTP = "n2:8000"


class RecordingNode:
    """The node as the service sees it (``leifdb.service.kvservice.Consensus``), leading in
    term 2 over a log the scene keeps: proposals are appended to it."""

    node_id = "n1"

    def __init__(self, log: list[Entry]) -> None:
        self.log = log
        self.term = 2
        self.read_ids: list[int] = []
        self._ids = itertools.count(101)

    def propose(self, data: bytes) -> tuple[int, int]:
        index = len(self.log) + 1
        self.log.append(Entry(self.term, index, EntryType.NORMAL, data))
        return index, self.term

    def request_read(self) -> int:
        read_id = next(self._ids)
        self.read_ids.append(read_id)
        return read_id

    def raft_status(self) -> Status:
        last = len(self.log)
        return Status(self.node_id, Role.LEADER, self.term, self.node_id, last, last, last, 0)

    def http_address(self, node_id: str | None) -> str | None:
        return f"{node_id}:8000" if node_id else None


@dataclass
class Scene:
    """A service that applied ``before``, with ``after`` committed on top of it."""

    before: list[Command]
    after: list[Command]
    clock: Clock = field(default_factory=Clock)
    service: KVService = field(init=False)
    node: RecordingNode = field(init=False)
    log: list[Entry] = field(init=False, default_factory=list)
    answered: set[int] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.service = KVService(self.clock, proposal_timeout=5, read_timeout=60)
        self.node = RecordingNode(self.log)
        self.service.attach(self.node)
        for command in self.before:
            self.node.propose(encode_command(command))
        self.apply()
        for command in self.after:
            self.node.propose(encode_command(command))

    @property
    def committed(self) -> int:
        return len(self.log)

    @property
    def open_reads(self) -> list[int]:
        return [r for r in self.node.read_ids if r not in self.answered]

    def apply(self) -> None:
        """Apply the committed log (and whatever was proposed meanwhile)."""
        while self.service.applied_index < len(self.log):
            self.service.apply(self.log[self.service.applied_index :])

    def confirm_reads(self) -> None:
        """The leader confirms every open read at the current commit index."""
        reads = self.open_reads
        self.answered.update(reads)
        self.service.read_states([ReadState(r, self.committed) for r in reads], None)

    def refuse_reads(self) -> None:
        """No leadership confirmed: every open read is refused (the leader is elsewhere)."""
        reads = self.open_reads
        self.answered.update(reads)
        self.service.read_states([ReadState(r, 0, success=False) for r in reads], LEADER_HTTP)

    def settle(self, done: Callable[[], bool], rounds: int = 6) -> None:
        """Play Raft until ``done()``: confirm reads, apply; a few rounds (a path may read
        again after a write, e.g. proclaim)."""
        for _ in range(rounds):
            if done():
                return
            self.confirm_reads()
            self.apply()


# ---------------------------------------------------------------- the paths


def _lease_then(key: str) -> tuple[list[Command], list[Command]]:
    """Lease 1 granted and applied; ``key`` put on it at revision 2, committed only."""
    return [LeaseGrant(60_000)], [Put(key, "mine", lease=1)]


def _holder(name: str, key: str) -> Holder:
    return Holder(name, key, 2, 1, "mine", 2)


@dataclass(frozen=True)
class ReadPath:
    """One read of the service: ``before``/``after`` set up its ``Scene``; ``call(service,
    consistency)`` reads (``consistency`` None: the default; ignored by paths that have
    none); ``after_state(result)`` says whether an answer shows the committed ``after``
    state, ``before_state`` whether it shows only ``before`` (None: no stale variant)."""

    name: str
    before: list[Command]
    after: list[Command]
    call: Callable[[KVService, str | None], Deferred]
    after_state: Callable[[Any], bool]
    before_state: Callable[[Any], bool] | None = None  # for the stale read

    @property
    def has_consistency(self) -> bool:
        return self.before_state is not None


def _consistency(consistency: str | None) -> dict[str, str]:
    return {} if consistency is None else {"consistency": consistency}


READ_PATHS = (
    ReadPath(
        "get", [Put("k", "v1")], [Put("k", "v2")],
        lambda s, c: s.get("k", **_consistency(c)),
        lambda item: item is not None and item.value == "v2",
        lambda item: item is not None and item.value == "v1",
    ),
    ReadPath(
        "range", [Put("k1", "v1")], [Put("k2", "v2")],
        lambda s, c: s.range("k", **_consistency(c)),
        lambda page: [i.key for i in page.items] == ["k1", "k2"],
        lambda page: [i.key for i in page.items] == ["k1"],
    ),
    ReadPath(
        "read_only_txn", [Put("k", "v1")], [Put("k", "v2")],
        lambda s, c: s.txn(Txn((Compare("k", "value", "equal", "v2"),), (Get("k"), Range("k")), ()),
                           **_consistency(c)),
        lambda result: result.succeeded and result.revision == 2,
        lambda result: not result.succeeded and result.revision == 1,
    ),
    ReadPath(
        "barrier", [Put("k", "v1")], [Put("k", "v2")],
        lambda s, c: s.barrier(**_consistency(c)).addCallback(lambda _: s.kv.get("k")),
        lambda item: item is not None and item.value == "v2",
        lambda item: item is not None and item.value == "v1",
    ),
    ReadPath(
        "lock_holder", *_lease_then(lock_prefix("jobs") + "1"),
        lambda s, c: s.lock_holder("jobs", **_consistency(c)),
        lambda holder: holder == _holder("jobs", lock_prefix("jobs") + "1"),
        lambda holder: holder is None,
    ),
    ReadPath(
        "election_leader", *_lease_then(election_prefix("db") + "1"),
        lambda s, c: s.election_leader("db", **_consistency(c)),
        lambda holder: holder == _holder("db", election_prefix("db") + "1"),
        lambda holder: holder is None,
    ),
    ReadPath(
        "lease_info", [LeaseGrant(60_000)], [LeaseGrant(30_000)],
        lambda s, c: s.lease_info(2),
        lambda lease: lease.id == 2 and lease.ttl == 30.0,
    ),
    ReadPath(
        "leases", [LeaseGrant(60_000)], [LeaseGrant(30_000)],
        lambda s, c: s.leases(),
        lambda leases: sorted(lease.id for lease in leases) == [1, 2],
    ),
    ReadPath(
        # the election's leader (its key created at 2) checked before the proclaim
        "proclaim", *_lease_then(election_prefix("db") + "1"),
        lambda s, c: s.proclaim("db", 2, "v2"),
        lambda holder: holder.token == 2 and holder.value == "v2",
    ),
    ReadPath(
        "resign", *_lease_then(election_prefix("db") + "1"),
        lambda s, c: s.resign("db", 2),
        lambda revision: revision == 3,
    ),
)


# ---------------------------------------------------------------- the checks


class _Outcome:
    """What a Deferred gave (once it fired)."""

    def __init__(self, d: Deferred) -> None:
        self.fired = False
        self.value: Any = None
        self.error: BaseException | None = None
        d.addBoth(self._got)

    def _got(self, result: Any) -> None:
        self.fired = True
        if isinstance(result, Failure):
            self.error = result.value
        else:
            self.value = result

    def __str__(self) -> str:
        return repr(self.error) if self.error is not None else repr(self.value)


def check_linearizable(path: ReadPath) -> None:
    """The default (linearizable) read: no answer before a read index was requested,
    confirmed and applied; then the ``after`` state."""
    scene = Scene(path.before, path.after)
    outcome = _Outcome(path.call(scene.service, None))
    if outcome.fired:
        raise AssertionError(f"{path.name} answered {outcome} before any read index was confirmed")
    if not scene.open_reads:
        raise AssertionError(f"{path.name} asked the node for no read index")
    scene.confirm_reads()
    if outcome.fired:
        raise AssertionError(f"{path.name} answered {outcome} before the state machine applied its read index")
    scene.settle(lambda: outcome.fired)
    if not outcome.fired or outcome.error is not None or not path.after_state(outcome.value):
        raise AssertionError(f"{path.name} answered {outcome if outcome.fired else 'nothing'}, "
                             "not the state at its read index")


def check_refused(path: ReadPath) -> None:
    """A read the node cannot confirm (no leadership) fails with where the leader is or
    that none is known; it is never served from the local state."""
    scene = Scene(path.before, path.after)
    outcome = _Outcome(path.call(scene.service, None))
    scene.refuse_reads()
    if not outcome.fired or not isinstance(outcome.error, (NotLeaderError, Unavailable)):
        raise AssertionError(f"{path.name}: a refused read index gave {outcome if outcome.fired else 'nothing'}")


def check_stale(path: ReadPath) -> None:
    """``consistency=stale``: the local state at once, without asking the node."""
    scene = Scene(path.before, path.after)
    outcome = _Outcome(path.call(scene.service, CONSISTENCY_STALE))
    if scene.node.read_ids:
        raise AssertionError(f"a stale {path.name} asked the node for a read index")
    assert path.before_state is not None
    if not outcome.fired or outcome.error is not None or not path.before_state(outcome.value):
        raise AssertionError(f"a stale {path.name} gave {outcome if outcome.fired else 'nothing'}")


def check_default_is_linearizable(path: ReadPath) -> None:
    """Asking for ``linearizable`` by name is the same as the default."""
    scene = Scene(path.before, path.after)
    outcome = _Outcome(path.call(scene.service, CONSISTENCY_LINEARIZABLE))
    if outcome.fired or not scene.open_reads:
        raise AssertionError(f"{path.name} with consistency=linearizable did not wait for a read index")
