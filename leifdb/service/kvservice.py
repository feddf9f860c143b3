"""``KVService``: where every request meets the node.

Front ends call the typed methods of ``leifdb.service.api.Service``; the node calls the
``Application`` side (apply, snapshots, read states, leadership changes). The service owns
what used to be spread over the HTTP routes and the node: the read barrier before a
linearizable read, limits, the registry of pending proposals and reads, the watch hub and
the one "applied" hook observers subscribe to. Membership changes are in ``membership``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from leifdb.errors import (
    InvalidRequest,
    LeaseNotFound,
    LimitExceeded,
    NotLeaderError,
    OutcomeUnknown,
    Unavailable,
)
from leifdb.kv.commands import (
    FAILED_LEASE_NOT_FOUND,
    ApplyResult,
    Command,
    Condition,
    Delete,
    Event,
    Fence,
    Get,
    Item,
    Lease,
    LeaseGrant,
    LeaseRevoke,
    Put,
    Range,
    Txn,
    TxnResult,
)
from leifdb.kv.store import KVStore
from leifdb.raft.messages import Entry, EntryType, ReadState, Role, SoftState
from leifdb.service.api import (
    CONSISTENCY_LINEARIZABLE,
    CONSISTENCY_STALE,
    ClusterMembers,
    Holder,
    LeaseInfo,
    NodeStatus,
    ObserveSink,
    Page,
    ServiceLimits,
    WatchSink,
    WriteResult,
    election_prefix,
    lock_prefix,
)
from leifdb.service.backup import Backup, SnapshotFile, membership_metadata
from leifdb.service.consensus import Consensus
from leifdb.service.leases import Lessor
from leifdb.service.locks import Coordination
from leifdb.service.membership import Membership
from leifdb.service.status import node_status
from leifdb.service.wait import Waits
from leifdb.service.watch import Watcher, WatchHub
from leifdb.wire import DecodeError, decode_command, encode_command

__all__ = ["Consensus", "KVService", "ProposalCounts"]

log = Logger(namespace="leifdb.service")

CONSISTENCIES = (CONSISTENCY_LINEARIZABLE, CONSISTENCY_STALE)


@dataclass
class ProposalCounts:
    """What became of this node's proposals since start (``/metrics`` reads them): applied
    (``committed``), refused or failed for certain (``failed``: nothing was done), or
    fate unknown (``outcome_unknown``: answered 504)."""

    committed: int = 0
    failed: int = 0
    outcome_unknown: int = 0

    def settled(self, result: Any) -> Any:
        """Callback: the proposal applied."""
        self.committed += 1
        return result

    def unsettled(self, failure: Failure) -> Failure:
        """Errback: count the failure by kind and pass it on."""
        if failure.check(OutcomeUnknown):
            self.outcome_unknown += 1
        else:
            self.failed += 1
        return failure


class KVService:
    """The key-value service of one node. ``attach(node)`` before the node starts."""

    def __init__(
        self,
        reactor: Any,
        *,
        limits: ServiceLimits | None = None,
        proposal_timeout: float = 5.0,
        read_timeout: float = 3.0,
        now: Callable[[], float] | None = None,
    ) -> None:
        """``now``: the monotonic clock leases count down on (production:
        ``time.monotonic``); by default the reactor's, which simulations drive."""
        self.reactor = reactor
        self.limits = limits or ServiceLimits()
        self._kv = KVStore()
        self._node: Consensus | None = None
        self._waits = Waits(reactor, proposal_timeout=proposal_timeout, read_timeout=read_timeout)
        self._hub = WatchHub(reactor, self.limits)
        self._observers: list[Callable[[int, tuple[Event, ...]], None]] = []
        self._stopped = False
        self.proposal_counts = ProposalCounts()
        clock = now or reactor.seconds
        self._lessor = Lessor(
            reactor, clock, lambda: self._kv, self._propose,
            self.limits.lease_checkpoint_interval,
        )
        self._coordination = Coordination(
            self, lambda: self._kv, self._hub, clock, self.limits.max_name_bytes
        )
        self._membership = Membership(self._node_or_refuse, self._waits.proposed)
        self._backup = Backup(reactor)

    def attach(self, node: Consensus) -> None:
        self._node = node

    # ================================================================== front-end side

    @property
    def revision(self) -> int:
        return self._kv.applied_index

    @property
    def kv(self) -> KVStore:
        """The applied state (read-only use: tests and the simulation's checks)."""
        return self._kv

    def get(self, key: str, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Item | None]:
        try:
            self._check_key(key)
            d = self._barrier(consistency)
        except Exception:
            return fail()
        return d.addCallback(lambda _: self._kv.get(key))

    def range(
        self,
        prefix: str,
        start_after: str | None = None,
        limit: int | None = None,
        consistency: str = CONSISTENCY_LINEARIZABLE,
    ) -> Deferred[Page]:
        limits = self.limits
        try:
            self._check_key(prefix, allow_empty=True)
            if start_after is not None:
                self._check_key(start_after)
            if limit is None:
                limit = limits.default_page_size
            if not 1 <= limit <= limits.max_page_size:
                raise InvalidRequest(f"limit must be from 1 to {limits.max_page_size}")
            d = self._barrier(consistency)
        except Exception:
            return fail()
        return d.addCallback(lambda _: self._page(prefix, start_after, limit))

    def _page(self, prefix: str, start_after: str | None, limit: int) -> Page:
        items, more = self._kv.range(prefix, start_after, limit)
        size = 0
        for n, item in enumerate(items):
            size += len(item.key.encode("utf-8")) + len(item.value.encode("utf-8"))
            if n and size > self.limits.max_page_bytes:
                return Page(tuple(items[:n]), True, self.revision)
        return Page(tuple(items), more, self.revision)

    def put(
        self,
        key: str,
        value: str,
        condition: Condition | None = None,
        *,
        lease: int = 0,
        ttl: float | None = None,
        fence: Fence | None = None,
    ) -> Deferred[WriteResult]:
        try:
            self._check_key(key)
            self._check_value(value)
            grant_ttl_ms = 0
            if ttl is not None:
                if lease:
                    raise InvalidRequest("give a lease or a ttl, not both")
                grant_ttl_ms = self._check_new_lease(ttl)
            elif lease:
                self._check_attach(lease, key)
            d = self._propose(Put(key, value, condition, lease, grant_ttl_ms, fence))
        except Exception:
            return fail()
        return d.addCallback(_write_result, lease)

    def delete(
        self, key: str, condition: Condition | None = None, *, fence: Fence | None = None
    ) -> Deferred[WriteResult]:
        try:
            self._check_key(key)
            d = self._propose(Delete(key, condition, fence))
        except Exception:
            return fail()
        return d.addCallback(_write_result, 0)

    # -- leases ------------------------------------------------------------------------

    def grant_lease(self, ttl: float) -> Deferred[LeaseInfo]:
        try:
            ttl_ms = self._check_new_lease(ttl)
            d = self._propose(LeaseGrant(ttl_ms))
        except Exception:
            return fail()
        return d.addCallback(
            lambda r: LeaseInfo(r.lease, ttl_ms / 1000.0, ttl_ms / 1000.0, revision=r.revision)
        )

    def keepalive(self, lease_id: int) -> Deferred[LeaseInfo]:
        try:
            self._leader_or_refuse()
            d = self._lessor.keepalive(lease_id)
        except Exception:
            return fail()
        return d.addCallback(
            lambda ttl: LeaseInfo(lease_id, ttl, ttl, revision=self.revision)
        )

    def lease_info(self, lease_id: int) -> Deferred[LeaseInfo]:
        def read(_: None) -> LeaseInfo:
            lease = self._kv.lease(lease_id)
            if lease is None:
                raise LeaseNotFound(lease_id)
            return self._lease_info(lease, lease.keys)

        return self._leader_read().addCallback(read)

    def leases(self) -> Deferred[list[LeaseInfo]]:
        return self._leader_read().addCallback(
            lambda _: [self._lease_info(lease, ()) for lease in self._kv.leases()]
        )

    def revoke_lease(self, lease_id: int) -> Deferred[int]:
        try:
            if self._caught_up_leader() and not self._kv.has_lease(lease_id):
                raise LeaseNotFound(lease_id)
            d = self._propose(LeaseRevoke(lease_id))
        except Exception:
            return fail()

        def revoked(result: ApplyResult) -> int:
            if not result.ok:
                raise LeaseNotFound(lease_id)
            return result.revision

        return d.addCallback(revoked)

    def _lease_info(self, lease: Lease, keys: tuple[str, ...]) -> LeaseInfo:
        return LeaseInfo(
            lease.id, lease.ttl_ms / 1000.0, self._lessor.remaining(lease.id, lease.remaining_ms),
            keys, self.revision,
        )

    def _leader_read(self) -> Deferred[None]:
        """A linearizable read on the leader: lease TTLs are the leader's to tell."""
        try:
            self._leader_or_refuse()
            return self._barrier(CONSISTENCY_LINEARIZABLE)
        except Exception:
            return fail()

    def _caught_up_leader(self) -> bool:
        """Checks against the applied state mean something only on a leader that has
        applied an entry of its own term (so every committed lease is in it); elsewhere
        the proposal is refused with the leader's address, or its apply decides."""
        return self._lessor.active

    def _leader_or_refuse(self) -> None:
        node = self._node_or_refuse()
        st = node.raft_status()
        if st is None or st.role is not Role.LEADER:
            raise NotLeaderError(node.http_address(st.leader_id) if st is not None else None)

    def _check_new_lease(self, ttl: float) -> int:
        """A new lease's TTL in milliseconds, after the limits."""
        limits = self.limits
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not (
            limits.min_lease_ttl <= ttl <= limits.max_lease_ttl
        ):
            raise InvalidRequest(
                f"a lease's ttl is from {limits.min_lease_ttl:g} to "
                f"{limits.max_lease_ttl:g} seconds"
            )
        if self._caught_up_leader() and self._kv.lease_count() >= limits.max_leases:
            raise LimitExceeded(f"there are already {limits.max_leases} leases")
        return round(ttl * 1000)

    def _check_attach(self, lease_id: int, key: str) -> None:
        """The lease exists here, and has room for ``key`` (checked when the request
        arrives: concurrent puts may overshoot ``max_keys_per_lease`` slightly)."""
        if not isinstance(lease_id, int) or isinstance(lease_id, bool) or lease_id < 1:
            raise InvalidRequest("a lease id is a positive integer")
        if not self._caught_up_leader():
            return
        count = self._kv.lease_key_count(lease_id)
        if count is None:
            raise LeaseNotFound(lease_id)
        current = self._kv.get(key)
        if (current is None or current.lease != lease_id) and (
            count >= self.limits.max_keys_per_lease
        ):
            raise LimitExceeded(
                f"lease {lease_id} already has {self.limits.max_keys_per_lease} keys"
            )

    # -- locks and elections -------------------------------------------------------------

    def lock(self, name: str, lease: int, *, value: str = "", timeout: float) -> Deferred[Holder]:
        return self._acquire(name, lock_prefix, lease, value, timeout)

    def campaign(self, name: str, lease: int, value: str, *, timeout: float) -> Deferred[Holder]:
        return self._acquire(name, election_prefix, lease, value, timeout)

    def _acquire(
        self, name: str, prefix: Callable[[str], str], lease: int, value: str, timeout: float
    ) -> Deferred[Holder]:
        try:
            self._coordination.check_name(name)
            self._check_value(value)
            self._check_timeout(timeout)
            self._check_attach(lease, prefix(name) + str(lease))
        except Exception:
            return fail()
        return self._coordination.acquire(name, prefix(name), lease, value, timeout)

    def lock_holder(
        self, name: str, consistency: str = CONSISTENCY_LINEARIZABLE
    ) -> Deferred[Holder | None]:
        return self._holder(name, lock_prefix, consistency)

    def election_leader(
        self, name: str, consistency: str = CONSISTENCY_LINEARIZABLE
    ) -> Deferred[Holder | None]:
        return self._holder(name, election_prefix, consistency)

    def _holder(
        self, name: str, prefix: Callable[[str], str], consistency: str
    ) -> Deferred[Holder | None]:
        try:
            self._coordination.check_name(name)
        except Exception:
            return fail()
        return self._coordination.holder(name, prefix(name), consistency)

    def proclaim(self, name: str, token: int, value: str) -> Deferred[Holder]:
        try:
            self._coordination.check_name(name)
            self._check_value(value)
        except Exception:
            return fail()
        return self._coordination.proclaim(name, election_prefix(name), token, value)

    def resign(self, name: str, token: int) -> Deferred[int]:
        try:
            self._coordination.check_name(name)
        except Exception:
            return fail()
        return self._coordination.resign(name, election_prefix(name), token)

    def observe(self, sink: ObserveSink, name: str) -> Watcher:
        self._coordination.check_name(name)
        return self._coordination.observe(sink, name, election_prefix(name))

    def _check_timeout(self, timeout: float) -> None:
        if not 0 <= timeout <= self.limits.max_wait_seconds:
            raise InvalidRequest(
                f"timeout must be from 0 to {self.limits.max_wait_seconds:g} seconds"
            )

    def txn(self, txn: Txn, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[TxnResult]:
        try:
            self._check_txn(txn)
            if txn.read_only:
                d = self._barrier(consistency)
                return d.addCallback(lambda _: self._kv.evaluate_txn(txn))
            d = self._propose(txn)
        except Exception:
            return fail()
        return d.addCallback(self._txn_result, txn)

    def _txn_result(self, result: ApplyResult, txn: Txn) -> TxnResult:
        if result.error == FAILED_LEASE_NOT_FOUND:
            raise LeaseNotFound(_missing_lease(self._kv, txn))
        assert result.txn is not None
        return result.txn

    def watch(
        self, sink: WatchSink, key: str, *, prefix: bool = False, start_revision: int | None = None
    ) -> Watcher:
        self._check_key(key, allow_empty=prefix)
        if start_revision is not None and start_revision < 1:
            raise InvalidRequest("start_revision must be at least 1")
        return self._hub.watch(sink, key, prefix, start_revision)

    def wait(
        self, key: str, *, prefix: bool, wait_revision: int, timeout: float
    ) -> Deferred[list[Event]]:
        try:
            self._check_key(key, allow_empty=prefix)
            if wait_revision < 1:
                raise InvalidRequest("wait_revision must be at least 1")
            self._check_timeout(timeout)
            return self._hub.wait(key, prefix, wait_revision, timeout)
        except Exception:
            return fail()

    def barrier(self, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[None]:
        """Fires once this node's applied state includes every write committed before the
        call (immediately for ``stale``). Front ends use it before starting a watch."""
        try:
            return self._barrier(consistency)
        except Exception:
            return fail()

    def snapshot(self, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[SnapshotFile]:
        """A snapshot of the state machine (``leifdb.service.backup``) for a backup, taken
        once this node has applied every write committed before the call (the read
        barrier of a linearizable read; at once for ``stale``). The caller closes it."""
        try:
            d = self._barrier(consistency)
        except Exception:
            return fail()
        return d.addCallback(lambda _: self._backup.take(
            lambda: self._kv,
            lambda: membership_metadata(self._node.members() if self._node else ())))

    def status(self) -> NodeStatus:
        return node_status(self._node, self._kv.applied_index, self.revision, self._hub,
                           self._stopped)

    # -- membership ----------------------------------------------------------------------

    def members(self) -> ClusterMembers:
        if self._node is None:
            raise Unavailable("the node has not started yet")
        return self._membership.members(self._node)

    def add_member(self, member_id: str, raft_address: str, http_address: str = ""
                   ) -> Deferred[ClusterMembers]:
        return self._membership.add(member_id, raft_address, http_address)

    def promote_member(self, member_id: str) -> Deferred[ClusterMembers]:
        return self._membership.promote(member_id)

    def remove_member(self, member_id: str, force: bool = False) -> Deferred[ClusterMembers]:
        return self._membership.remove(member_id, force)

    def transfer_leader(self, to: str) -> Deferred[str]:
        return self._membership.transfer(to)

    def on_applied(self, observer: Callable[[int, tuple[Event, ...]], None]) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    # -- helpers -----------------------------------------------------------------------

    def _node_or_refuse(self) -> Consensus:
        if self._node is None or self._stopped:
            raise NotLeaderError(None)
        return self._node

    def _barrier(self, consistency: str) -> Deferred[None]:
        if consistency not in CONSISTENCIES:
            raise InvalidRequest(f"consistency must be one of {', '.join(CONSISTENCIES)}")
        if consistency == CONSISTENCY_STALE:
            return succeed(None)
        read_id = self._node_or_refuse().request_read()
        return self._waits.read_requested(read_id)

    def _propose(self, command: Command) -> Deferred[ApplyResult]:
        data = encode_command(command)
        counts = self.proposal_counts
        try:
            index, term = self._node_or_refuse().propose(data)
        except NotLeaderError:
            counts.failed += 1
            raise
        return self._waits.proposed(index, term).addCallbacks(counts.settled, counts.unsettled)

    def _check_key(self, key: str, *, allow_empty: bool = False) -> None:
        if not isinstance(key, str):
            raise InvalidRequest("a key must be a string")
        if not key and not allow_empty:
            raise InvalidRequest("the key is empty")
        if len(key.encode("utf-8")) > self.limits.max_key_bytes:
            raise LimitExceeded(f"the key is longer than {self.limits.max_key_bytes} bytes")

    def _check_value(self, value: str) -> None:
        if len(value.encode("utf-8")) > self.limits.max_value_bytes:
            raise LimitExceeded(f"the value is longer than {self.limits.max_value_bytes} bytes")

    def _check_txn(self, txn: Txn) -> None:
        limits = self.limits
        count = len(txn.compare) + len(txn.success) + len(txn.failure)
        if count > limits.max_txn_ops:
            raise LimitExceeded(
                f"a transaction has at most {limits.max_txn_ops} compares and operations, "
                f"not {count}"
            )
        size = 0
        for compare in txn.compare:
            self._check_key(compare.key)
            size += len(compare.key.encode("utf-8"))
            if isinstance(compare.value, str):
                size += len(compare.value.encode("utf-8"))
        for branch in (txn.success, txn.failure):
            written: set[str] = set()
            for op in branch:
                if isinstance(op, Range):
                    self._check_key(op.prefix, allow_empty=True)
                    if op.limit is not None and not 1 <= op.limit <= limits.max_page_size:
                        raise InvalidRequest(f"a range limit is from 1 to {limits.max_page_size}")
                    continue
                self._check_key(op.key)
                size += len(op.key.encode("utf-8"))
                if isinstance(op, Put):
                    self._check_value(op.value)
                    size += len(op.value.encode("utf-8"))
                    if op.lease:
                        self._check_attach(op.lease, op.key)
                if isinstance(op, (Put, Delete)):
                    if op.key in written:
                        raise InvalidRequest(f"two writes to the key {op.key!r} in one branch")
                    written.add(op.key)
                elif not isinstance(op, Get):
                    raise InvalidRequest(f"not a transaction operation: {op!r}")
        if size > limits.max_txn_bytes:
            raise LimitExceeded(
                f"a transaction's keys and values add up to at most {limits.max_txn_bytes} bytes"
            )

    # ================================================================== application side

    @property
    def applied_index(self) -> int:
        return self._kv.applied_index

    def apply(self, entries: list[Entry]) -> None:
        """Committed entries, in log order (entries already applied are skipped)."""
        kv = self._kv
        for entry in entries:
            if entry.index <= kv.applied_index:
                continue
            result: ApplyResult | None = None
            command: Command | None = None
            if entry.type is EntryType.NORMAL:
                try:
                    command = decode_command(entry.data)
                    result = kv.apply(entry.index, command)
                except DecodeError:
                    log.error("Skipping undecodable entry {index}", index=entry.index)
                    kv.note_applied(entry.index)
            else:
                kv.note_applied(entry.index)
                if entry.type is EntryType.CONFIG:
                    # Tells the membership change waiting on (index, term) that it applied.
                    result = ApplyResult(ok=True, revision=entry.index)
            events = result.events if result is not None else ()
            self._lessor.applied(entry.index, entry.term, command, result)
            self._waits.applied(entry.index, entry.term, result)
            self._hub.applied(entry.index, events)
            for observer in list(self._observers):
                observer(entry.index, events)
        if entries:
            self._waits.applied_to(kv.applied_index)

    def write_snapshot(self, out: BinaryIO, metadata: bytes) -> None:
        self._kv.write_snapshot(out, metadata)

    def capture_snapshot(self) -> Callable[[BinaryIO, bytes], None]:
        return self._kv.capture_snapshot()

    @staticmethod
    def read_snapshot(stream: BinaryIO) -> tuple[KVStore, bytes]:
        """Any thread: a state machine rebuilt from a snapshot, and its metadata."""
        return KVStore.read_snapshot(stream)

    def install_snapshot(self, restored: KVStore) -> None:
        """Replace the state with a snapshot's (at start-up, or sent by the leader)."""
        self._kv = restored
        self._hub.reset(restored.applied_index)
        self._waits.applied_to(restored.applied_index)
        self._lessor.reset()

    def read_states(self, states: list[ReadState], leader_http: str | None) -> None:
        for state in states:
            if state.success:
                self._waits.read_confirmed(state.read_id, state.read_index, self._kv.applied_index)
            elif leader_http:
                self._waits.read_refused(state.read_id, NotLeaderError(leader_http))
            else:
                self._waits.read_refused(state.read_id, Unavailable("no leader confirmed the read"))

    def role_changed(self, soft: SoftState) -> None:
        if soft.role is Role.LEADER:
            self._lessor.became_leader(soft.term)
        else:
            self._waits.leadership_lost()
            self._lessor.lost_leadership()

    def stopped(self, write_error: Exception, read_error: Exception) -> None:
        """The node stops (shutdown or a storage failure): nothing pending can finish."""
        self._stopped = True
        self._lessor.stop()
        self._waits.fail_all(write_error, read_error)
        self._hub.shutdown()


def _write_result(result: ApplyResult, lease: int) -> WriteResult:
    if result.error == FAILED_LEASE_NOT_FOUND:
        raise LeaseNotFound(lease)
    return WriteResult(
        ok=result.ok, revision=result.revision, current=result.current,
        failure=result.error, lease=result.lease,
    )


def _missing_lease(kv: KVStore, txn: Txn) -> int:
    """The first lease a transaction's puts name that the store lacks."""
    for op in txn.success + txn.failure:
        if isinstance(op, Put) and op.lease and not kv.has_lease(op.lease):
            return op.lease
    return 0
