"""Leases, locks and elections in ``KVService`` against a fake node, on a test clock:
the leader's countdown, keepalives through the log, expiry through the log, checkpoints,
the activation rule after a leader change, and the lock and election recipes."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from leifdb.errors import (
    InvalidRequest,
    LeaseNotFound,
    LimitExceeded,
    LockTimeout,
    NotHolder,
    NotLeaderError,
)
from leifdb.kv.commands import (
    Event,
    LeaseCheckpoint,
    LeaseGrant,
    LeaseRenew,
    LeaseRevoke,
    Put,
    Txn,
)
from leifdb.raft.core import Status
from leifdb.raft.messages import Entry, EntryType, ReadState, Role, SoftState
from leifdb.service.api import Holder, ServiceLimits, lock_fence
from leifdb.service.kvservice import KVService
from leifdb.wire import decode_command

from .test_kvservice import FakeNode


def _service(**limits) -> tuple[Clock, FakeNode, KVService]:
    clock = Clock()
    limits.setdefault("min_lease_ttl", 1.0)
    service = KVService(clock, limits=ServiceLimits(**limits), proposal_timeout=30,
                        read_timeout=30)
    node = FakeNode()
    node.status = Status("n1", Role.LEADER, 1, "n1", 0, 0, 0, 0)
    service.attach(node)
    service.role_changed(SoftState(Role.LEADER, 1, "n1"))
    return clock, node, service


def _commit(service: KVService, node: FakeNode) -> None:
    """Apply every proposal not yet applied, as Raft would once committed."""
    start = service.applied_index + 1
    service.apply([
        Entry(node.term, index, EntryType.NORMAL, node.proposed[index - 1])
        for index in range(start, len(node.proposed) + 1)
    ])


def _noop(service: KVService, node: FakeNode) -> None:
    """The new leader's own-term entry (activates the countdown)."""
    node.proposed.append(b"")
    index = len(node.proposed)
    service.apply([Entry(node.term, index, EntryType.NOOP, b"")])


def _settle(clock: Clock, service: KVService, node: FakeNode, seconds: float = 0.0) -> None:
    """Let time pass, committing whatever the service proposes; answer reads at once."""
    clock.advance(seconds)
    for _ in range(20):
        clock.advance(0)
        if service.applied_index < len(node.proposed):
            _commit(service, node)
        elif node.reads:
            reads, node.reads = node.reads, 0
            service.read_states(
                [ReadState(i, service.applied_index, True) for i in range(1, reads + 1)], None
            )
        else:
            return


def _result(d):
    assert d.called, "the Deferred has not fired"
    result = d.result
    if isinstance(result, Failure):
        d.addErrback(lambda _: None)
        return result.value
    return result


def _commands(node: FakeNode) -> list:
    return [decode_command(data) for data in node.proposed if data]


def _leader(clock, node, service, ttl: float = 10.0) -> int:
    _noop(service, node)
    d = service.grant_lease(ttl)
    _settle(clock, service, node)
    return _result(d).id


# -- grant, info, revoke ------------------------------------------------------------


def test_grant_gives_the_entry_index_as_id_and_info_counts_down() -> None:
    clock, node, service = _service()
    lease = _leader(clock, node, service, ttl=10)
    assert lease == 2  # entry 1 is the no-op
    d = service.put("k", "v", lease=lease)
    _settle(clock, service, node, 3.0)
    assert _result(d).lease == lease
    info = service.lease_info(lease)
    _settle(clock, service, node)
    info = _result(info)
    assert info.keys == ("k",)
    assert info.ttl == 10.0
    assert info.remaining == pytest.approx(7.0)


def test_ttl_limits_and_lease_count_limit() -> None:
    clock, node, service = _service(max_leases=1, max_lease_ttl=60.0)
    _noop(service, node)
    assert isinstance(_result(service.grant_lease(0.5)), InvalidRequest)
    assert isinstance(_result(service.grant_lease(61)), InvalidRequest)
    service.grant_lease(5)
    _settle(clock, service, node)
    assert isinstance(_result(service.grant_lease(5)), LimitExceeded)


def test_keys_per_lease_limit() -> None:
    clock, node, service = _service(max_keys_per_lease=2)
    lease = _leader(clock, node, service)
    for key in ("a", "b"):
        service.put(key, "v", lease=lease)
    _settle(clock, service, node)
    assert isinstance(_result(service.put("c", "v", lease=lease)), LimitExceeded)
    d = service.put("a", "again", lease=lease)  # already attached: no new key
    _settle(clock, service, node)
    assert _result(d).ok


def test_put_on_a_missing_lease_is_not_found() -> None:
    clock, node, service = _service()
    _noop(service, node)
    assert isinstance(_result(service.put("k", "v", lease=99)), LeaseNotFound)


def test_revoke_deletes_the_keys_at_one_revision() -> None:
    clock, node, service = _service()
    lease = _leader(clock, node, service)
    for key in ("a", "b"):
        service.put(key, "v", lease=lease)
    _settle(clock, service, node)
    seen: list[tuple[int, tuple[Event, ...]]] = []
    service.on_applied(lambda revision, events: seen.append((revision, events)))
    d = service.revoke_lease(lease)
    _settle(clock, service, node)
    revision = _result(d)
    assert seen == [(revision, seen[0][1])]
    assert [(e.type, e.key, e.revision) for e in seen[0][1]] == [
        ("delete", "a", revision), ("delete", "b", revision)]
    assert isinstance(_result(service.revoke_lease(lease)), LeaseNotFound)


def test_ttl_shortcut_grants_a_lease_for_the_key() -> None:
    clock, node, service = _service()
    _noop(service, node)
    d = service.put("k", "v", ttl=5)
    _settle(clock, service, node)
    result = _result(d)
    assert result.ok and result.lease == result.revision
    assert service.kv.get("k").lease == result.lease
    _settle(clock, service, node, 5.01)
    assert service.kv.get("k") is None  # expired through the log


def test_followers_refuse_lease_calls_with_the_leaders_address() -> None:
    clock, node, service = _service()
    node.status = Status("n1", Role.FOLLOWER, 2, "n2", 0, 0, 0, 0)
    node.leading = False
    for d in (service.keepalive(1), service.lease_info(1), service.leases(),
              service.grant_lease(5)):
        error = _result(d)
        assert isinstance(error, NotLeaderError) and error.leader_http == "n2:8000"


# -- keepalive and expiry -------------------------------------------------------------


def test_keepalives_of_one_turn_are_one_log_entry() -> None:
    clock, node, service = _service()
    a = _leader(clock, node, service)
    d = service.grant_lease(10)
    _settle(clock, service, node)
    b = _result(d).id
    before = len(node.proposed)
    answers = [service.keepalive(a), service.keepalive(b), service.keepalive(a)]
    assert not any(d.called for d in answers)  # answered only once the renewal applied
    clock.advance(0)
    assert _commands(node)[before - 1:] == [LeaseRenew((a, b))]
    _settle(clock, service, node)
    assert [_result(d).remaining for d in answers] == [10.0, 10.0, 10.0]


def test_a_lease_expires_through_the_log_after_its_ttl_not_before() -> None:
    clock, node, service = _service()
    lease = _leader(clock, node, service, ttl=10)
    service.put("k", "v", lease=lease)
    _settle(clock, service, node, 9.9)
    assert service.kv.get("k") is not None
    assert not any(isinstance(c, LeaseRevoke) for c in _commands(node))
    _settle(clock, service, node, 0.2)
    revokes = [c for c in _commands(node) if isinstance(c, LeaseRevoke)]
    assert revokes == [LeaseRevoke(lease, if_renewed_index=lease)]
    assert service.kv.get("k") is None and service.kv.lease(lease) is None


def test_keepalive_pushes_expiry_back_and_a_late_keepalive_is_refused() -> None:
    clock, node, service = _service()
    lease = _leader(clock, node, service, ttl=10)
    _settle(clock, service, node, 8)
    service.keepalive(lease)
    _settle(clock, service, node)
    _settle(clock, service, node, 9.5)
    assert service.kv.lease(lease) is not None  # 17.5 s after grant, 9.5 after renewal
    clock.advance(0.6)  # the deadline passes; the revoke is proposed, not yet applied
    assert isinstance(_result(service.keepalive(lease)), LeaseNotFound)


def test_a_renewal_that_commits_first_wins_over_the_expiry() -> None:
    clock, node, service = _service()
    lease = _leader(clock, node, service, ttl=10)
    keepalive = service.keepalive(lease)
    clock.advance(0)  # the renewal is proposed...
    clock.advance(10.5)  # ...and the old deadline passes before it applies
    assert isinstance(_commands(node)[-1], LeaseRevoke)
    _settle(clock, service, node)
    assert _result(keepalive).remaining == 10.0
    assert service.kv.lease(lease) is not None  # the conditional revoke was a no-op


def test_checkpoints_write_down_the_remaining_ttl() -> None:
    clock, node, service = _service(lease_checkpoint_interval=1.0)
    lease = _leader(clock, node, service, ttl=10)
    _settle(clock, service, node, 1.0)
    _settle(clock, service, node, 1.0)
    checkpoints = [c for c in _commands(node) if isinstance(c, LeaseCheckpoint)]
    assert checkpoints and checkpoints[-1].remaining[0][0] == lease
    assert service.kv.lease(lease).remaining_ms == pytest.approx(8000, abs=1)


def test_a_new_leader_counts_from_the_checkpoint_only_after_its_own_entry() -> None:
    clock, node, service = _service(lease_checkpoint_interval=1.0)
    lease = _leader(clock, node, service, ttl=10)
    _settle(clock, service, node, 3.0)  # checkpoints written: about 7 s left
    service.role_changed(SoftState(Role.FOLLOWER, 2, "n2"))
    node.status = Status("n1", Role.FOLLOWER, 2, "n2", 0, 0, 0, 0)
    clock.advance(20)  # a follower expires nothing, whatever its clock says
    assert service.kv.lease(lease) is not None
    node.term = 3
    node.status = Status("n1", Role.LEADER, 3, "n1", 0, 0, 0, 0)
    service.role_changed(SoftState(Role.LEADER, 3, "n1"))
    clock.advance(30)  # leading, but no entry of term 3 applied yet: no countdown
    assert not any(isinstance(c, LeaseRevoke) for c in _commands(node))
    remaining = service.kv.lease(lease).remaining_ms / 1000.0
    assert 6.9 <= remaining <= 8.0
    _noop(service, node)
    _settle(clock, service, node, remaining - 0.1)
    assert service.kv.lease(lease) is not None  # never earlier than written down
    _settle(clock, service, node, 0.2)
    assert service.kv.lease(lease) is None


def test_losing_leadership_fails_pending_keepalives() -> None:
    clock, node, service = _service()
    lease = _leader(clock, node, service)
    d = service.keepalive(lease)
    service.role_changed(SoftState(Role.FOLLOWER, 2, "n2"))
    assert isinstance(_result(d), NotLeaderError)


# -- locks ----------------------------------------------------------------------------


def _two_leases(clock, node, service) -> tuple[int, int]:
    a = _leader(clock, node, service, ttl=10)
    d = service.grant_lease(10)
    _settle(clock, service, node)
    return a, _result(d).id


def test_lock_waiters_are_served_in_order_with_increasing_tokens() -> None:
    clock, node, service = _service()
    a, b = _two_leases(clock, node, service)
    first = service.lock("db", a, value="alpha", timeout=30)
    _settle(clock, service, node)
    holder = _result(first)
    assert holder.key == f"_lock/db/{a}" and holder.value == "alpha"
    second = service.lock("db", b, timeout=30)
    _settle(clock, service, node, 1)
    assert not second.called
    fenced = service.put("x", "1", fence=lock_fence("db", holder.token))
    _settle(clock, service, node)
    assert _result(fenced).ok
    service.delete(holder.key)
    _settle(clock, service, node)
    next_holder = _result(second)
    assert next_holder.token > holder.token
    stale = service.put("x", "2", fence=lock_fence("db", holder.token))
    _settle(clock, service, node)
    assert (_result(stale).ok, _result(stale).failure) == (False, "fence")


def test_a_lock_wait_times_out_and_withdraws_its_key() -> None:
    clock, node, service = _service()
    a, b = _two_leases(clock, node, service)
    service.lock("db", a, timeout=30)
    _settle(clock, service, node)
    waiting = service.lock("db", b, timeout=2)
    _settle(clock, service, node)
    _settle(clock, service, node, 2.1)
    error = _result(waiting)
    assert isinstance(error, LockTimeout) and error.holder == f"_lock/db/{a}"
    assert service.kv.get(f"_lock/db/{b}") is None


def test_cancelling_a_lock_wait_withdraws_its_key() -> None:
    clock, node, service = _service()
    a, b = _two_leases(clock, node, service)
    service.lock("db", a, timeout=30)
    _settle(clock, service, node)
    waiting = service.lock("db", b, timeout=30)
    _settle(clock, service, node)
    waiting.cancel()
    _result(waiting)
    _settle(clock, service, node)
    assert service.kv.get(f"_lock/db/{b}") is None


def test_the_lease_ending_releases_the_lock() -> None:
    clock, node, service = _service()
    a, b = _two_leases(clock, node, service)
    service.lock("db", a, timeout=30)
    _settle(clock, service, node)
    waiting = service.lock("db", b, timeout=60)
    _settle(clock, service, node)
    service.keepalive(b)
    _settle(clock, service, node, 5)
    service.keepalive(b)
    _settle(clock, service, node, 5.5)  # a's lease (10 s) expired; b renewed
    assert _result(waiting).key == f"_lock/db/{b}"


def test_bad_names_and_missing_leases() -> None:
    clock, node, service = _service()
    _noop(service, node)
    for name in ("", "a/b", "x" * 300):
        assert isinstance(_result(service.lock(name, 1, timeout=1)), InvalidRequest)
    assert isinstance(_result(service.lock("db", 42, timeout=1)), LeaseNotFound)


# -- elections ------------------------------------------------------------------------


class _Observer:
    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None]] = []

    def leader(self, holder: Holder | None, revision: int) -> None:
        self.seen.append((holder.key, holder.value) if holder else (None, None))

    def closed(self, reason: str, compact_revision: int | None = None) -> None:
        self.seen.append(("closed", reason))


def test_campaign_proclaim_resign_and_observe() -> None:
    clock, node, service = _service()
    a, b = _two_leases(clock, node, service)
    observer = _Observer()
    service.observe(observer, "web")
    first = service.campaign("web", a, "host-a", timeout=30)
    second = service.campaign("web", b, "host-b", timeout=30)
    _settle(clock, service, node)
    leader = _result(first)
    assert not second.called
    wrong = service.proclaim("web", leader.token + 1, "x")
    _settle(clock, service, node)
    assert isinstance(_result(wrong), NotHolder)
    d = service.proclaim("web", leader.token, "host-a2")
    _settle(clock, service, node)
    assert _result(d).token == leader.token and _result(d).value == "host-a2"
    d = service.election_leader("web")
    _settle(clock, service, node)
    assert _result(d).value == "host-a2"
    d = service.resign("web", leader.token)
    _settle(clock, service, node)
    assert _result(second).value == "host-b"
    key_a, key_b = f"_election/web/{a}", f"_election/web/{b}"
    assert observer.seen == [
        (None, None), (key_a, "host-a"), (key_a, "host-a2"), (key_b, "host-b")]
