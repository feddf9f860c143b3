"""``leifdb.service.KVService`` against a fake node (``Consensus``): limits, the read
barrier, proposals, read-only transactions and status."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from leifdb import __version__
from leifdb.errors import (
    Compacted,
    InvalidRequest,
    LimitExceeded,
    NotLeaderError,
    OutcomeUnknown,
    Unavailable,
)
from leifdb.kv.commands import Compare, Delete, Event, Get, Item, OpResult, Put, Range, Txn, TxnResult
from leifdb.raft.core import Status
from leifdb.raft.messages import Entry, EntryType, Member, ReadState, Role, SoftState
from leifdb.service.api import ServiceLimits, WriteResult
from leifdb.service.kvservice import KVService
from leifdb.wire import decode_command


class FakeNode:
    """The node as the service sees it: records proposals and read requests; the test
    plays Raft by calling the service's application side."""

    node_id = "n1"
    cluster_id = "c1"
    election_timeout = 1.0

    def __init__(self) -> None:
        self.proposed: list[bytes] = []
        self.reads = 0
        self.term = 1
        self.leading = True
        self.status: Status | None = None

    def propose(self, data: bytes) -> tuple[int, int]:
        if not self.leading:
            raise NotLeaderError("n2:8000")
        self.proposed.append(data)
        return len(self.proposed), self.term

    def request_read(self) -> int:
        if not self.leading:
            raise NotLeaderError(None)
        self.reads += 1
        return self.reads

    def raft_status(self) -> Status | None:
        return self.status

    def http_address(self, node_id: str | None) -> str | None:
        return f"{node_id}:8000" if node_id else None

    def leader_contact_age(self) -> float | None:
        return 0.1

    def members(self) -> list[Member]:
        return [Member("n1", "n1:7000")]


def _service(**limits) -> tuple[Clock, FakeNode, KVService]:
    clock = Clock()
    service = KVService(clock, limits=ServiceLimits(**limits), proposal_timeout=5, read_timeout=3)
    node = FakeNode()
    service.attach(node)
    return clock, node, service


def _commit(service: KVService, node: FakeNode, *, term: int | None = None) -> None:
    """Apply every proposal not yet applied, as Raft would once committed."""
    start = service.applied_index + 1
    service.apply([
        Entry(term or node.term, index, EntryType.NORMAL, node.proposed[index - 1])
        for index in range(start, len(node.proposed) + 1)
    ])


def _result(d):
    """What a fired Deferred holds: its value, or its failure's exception (handled)."""
    assert d.called, "the Deferred has not fired"
    result = d.result
    if isinstance(result, Failure):
        d.addErrback(lambda _: None)
        return result.value
    return result


def _pending(d) -> bool:
    return not d.called


# -- limits and validation


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda s: s.put("k" * 11, "v"), LimitExceeded),
        (lambda s: s.put("k", "v" * 21), LimitExceeded),
        (lambda s: s.put("", "v"), InvalidRequest),
        (lambda s: s.delete("k" * 11), LimitExceeded),
        (lambda s: s.get("k" * 11), LimitExceeded),
        (lambda s: s.get("k", consistency="eventual"), InvalidRequest),
        (lambda s: s.range("", limit=0), InvalidRequest),
        (lambda s: s.range("", limit=6), InvalidRequest),
        (lambda s: s.txn(Txn((), tuple(Get(f"k{i}") for i in range(5)), ())), LimitExceeded),
        (lambda s: s.txn(Txn((), (Put("a", "v" * 20), Put("b", "v" * 20)), ())), LimitExceeded),
        (lambda s: s.txn(Txn((), (Put("a", "1"), Delete("a")), ())), InvalidRequest),
        (lambda s: s.txn(Txn((), (), (Put("a", "1"), Put("a", "2")))), InvalidRequest),
        (lambda s: s.txn(Txn((Compare("k" * 11, "exists", "equal", True),), (), ())), LimitExceeded),
        (lambda s: s.txn(Txn((), (Range("", limit=6),), ())), InvalidRequest),
        (lambda s: s.txn(Txn((), (Put("k", "v" * 21),), ())), LimitExceeded),
        (lambda s: s.wait("k", prefix=False, wait_revision=0, timeout=1), InvalidRequest),
        (lambda s: s.wait("k", prefix=False, wait_revision=1, timeout=61), InvalidRequest),
        (lambda s: s.wait("", prefix=False, wait_revision=1, timeout=1), InvalidRequest),
    ],
)
def test_requests_over_a_limit_or_without_sense_are_refused_before_anything_happens(call, error):
    _, node, service = _service(
        max_key_bytes=10, max_value_bytes=20, max_page_size=5, max_txn_ops=4, max_txn_bytes=30,
        max_wait_seconds=60,
    )
    assert isinstance(_result(call(service)), error)
    assert node.proposed == [] and node.reads == 0


def test_a_watch_over_a_limit_or_without_sense_raises():
    _, _, service = _service(max_key_bytes=10, max_watchers=1)
    sink = _Sink()
    with pytest.raises(LimitExceeded):
        service.watch(sink, "k" * 11)
    with pytest.raises(InvalidRequest):
        service.watch(sink, "k", start_revision=0)
    with pytest.raises(InvalidRequest):
        service.watch(sink, "")
    service.watch(sink, "", prefix=True)  # an empty prefix watches everything
    with pytest.raises(LimitExceeded):
        service.watch(sink, "k")


# -- writes


def test_a_write_is_proposed_and_answers_when_its_entry_applies():
    _, node, service = _service()
    d = service.put("k", "v")
    assert decode_command(node.proposed[0]) == Put("k", "v") and _pending(d)
    _commit(service, node)
    assert _result(d) == WriteResult(True, 1, Item("k", "v", 1, 1))
    d = service.delete("k")
    _commit(service, node)
    assert _result(d) == WriteResult(True, 2, None)


def test_a_write_at_a_follower_is_refused_with_the_leader():
    _, node, service = _service()
    node.leading = False
    error = _result(service.put("k", "v"))
    assert isinstance(error, NotLeaderError) and error.leader_http == "n2:8000"


def test_a_txn_that_writes_goes_through_the_log():
    _, node, service = _service()
    txn = Txn((Compare("k", "exists", "equal", False),), (Put("k", "1"), Get("k")), (Get("k"),))
    d = service.txn(txn)
    assert decode_command(node.proposed[0]) == txn
    _commit(service, node)
    assert _result(d) == TxnResult(True, 1, (OpResult("put", Item("k", "1", 1, 1)), OpResult("get", Item("k", "1", 1, 1))))


# -- reads


def test_a_linearizable_read_waits_for_confirmation_and_for_the_state_to_apply():
    _, node, service = _service()
    service.put("k", "v")
    d = service.get("k")
    assert node.reads == 1 and _pending(d)
    service.read_states([ReadState(1, 1)], None)
    assert _pending(d)  # confirmed at index 1, which has not applied yet
    _commit(service, node)
    assert _result(d) == Item("k", "v", 1, 1)


def test_a_read_that_no_leader_confirms_fails_with_where_the_leader_is():
    _, node, service = _service()
    first, second = service.get("k"), service.get("k")
    service.read_states([ReadState(1, 0, success=False)], "n2:8000")
    service.read_states([ReadState(2, 0, success=False)], None)
    error = _result(first)
    assert isinstance(error, NotLeaderError) and error.leader_http == "n2:8000"
    assert isinstance(_result(second), Unavailable)


def test_a_read_only_txn_is_served_after_the_barrier_without_a_log_entry():
    _, node, service = _service()
    service.put("k", "v")
    _commit(service, node)
    d = service.txn(Txn((Compare("k", "value", "equal", "v"),), (Get("k"), Range("")), ()))
    assert node.reads == 1 and len(node.proposed) == 1 and _pending(d)
    service.read_states([ReadState(1, 1)], None)
    item = Item("k", "v", 1, 1)
    assert _result(d) == TxnResult(True, 1, (OpResult("get", item), OpResult("range", items=(item,))))


def test_stale_reads_skip_the_barrier():
    _, node, service = _service()
    node.leading = False  # not even a leader is needed
    assert _result(service.get("k", consistency="stale")) is None
    assert _result(service.range("", consistency="stale")).items == ()
    assert _result(service.txn(Txn((), (Get("k"),), ()), consistency="stale")) == TxnResult(
        True, 0, (OpResult("get"),)
    )
    assert _result(service.barrier("stale")) is None
    assert node.reads == 0


def test_a_range_page_stops_at_the_byte_limit_and_says_more_follows():
    _, node, service = _service(max_page_bytes=8)
    for key in ("a", "b", "c"):
        service.put(key, "123")
    _commit(service, node)
    page = _result(service.range("", consistency="stale"))
    assert [i.key for i in page.items] == ["a", "b"] and page.more and page.revision == 3


# -- the application side


def test_losing_leadership_makes_pending_writes_unknown_and_stopping_fails_everything():
    _, node, service = _service()
    write = service.put("k", "v")
    service.role_changed(SoftState(Role.FOLLOWER, 2, "n2"))
    assert isinstance(_result(write), OutcomeUnknown)
    write, read = service.put("k", "w"), service.get("k")
    sink = _Sink()
    service.watch(sink, "k")
    service.stopped(OutcomeUnknown("stop"), Unavailable("stop"))
    assert isinstance(_result(write), OutcomeUnknown) and isinstance(_result(read), Unavailable)
    assert sink.closes == ["shutdown"]
    assert isinstance(_result(service.get("k")), NotLeaderError)


def test_watchers_and_observers_see_every_applied_entry_and_a_snapshot_resets_history():
    _, node, service = _service()
    seen = []
    unsubscribe = service.on_applied(lambda revision, events: seen.append((revision, events)))
    sink = _Sink()
    service.watch(sink, "k")
    service.put("k", "1")
    _commit(service, node)
    service.apply([Entry(1, 2, EntryType.NOOP)])
    assert seen == [(1, (Event("put", "k", "1", 1),)), (2, ())]
    assert sink.got == [[Event("put", "k", "1", 1)]]
    unsubscribe()
    restored = type(service.kv)()
    restored.apply(5, Put("k", "snap"))
    service.install_snapshot(restored)
    assert service.revision == 5 and sink.closes == ["compacted"]
    with pytest.raises(Compacted):
        service.watch(_Sink(), "k", start_revision=5)
    assert len(seen) == 2


def test_status_reports_the_core_and_the_service():
    _, node, service = _service()
    starting = service.status()
    assert (starting.role, starting.node, starting.term, starting.version) == ("starting", "n1", 0, __version__)
    node.status = Status("n1", Role.FOLLOWER, 3, "n2", 7, 0, 9, 4)
    service.put("k", "v")
    _commit(service, node)
    service.watch(_Sink(), "k")
    st = service.status()
    assert (st.node, st.role, st.term, st.leader, st.leader_http) == ("n1", "follower", 3, "n2", "n2:8000")
    assert (st.commit_index, st.last_index, st.snapshot_index) == (7, 9, 4)
    assert (st.applied_index, st.revision, st.compact_revision, st.watchers) == (1, 1, 1, 1)


class _Sink:
    def __init__(self) -> None:
        self.got: list[list[Event]] = []
        self.closes: list[str] = []

    def events(self, events: list[Event]) -> bool:
        self.got.append(list(events))
        return True

    def progress(self, revision: int) -> None:
        pass

    def closed(self, reason: str, compact_revision: int | None = None) -> None:
        self.closes.append(reason)
