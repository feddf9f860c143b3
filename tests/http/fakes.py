"""An in-memory ``leifdb.service.api.Service`` for the HTTP tests.

The state is the real state machine (``KVStore``: pure, no I/O), so conditions,
transactions, leases and fences evaluate exactly as on a node; around it the fake plays
the service: a history of events, watches and long polls over it, lease deadlines and
lock waiters on the test's clock, the limits, and failures and delays the test controls.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock

from leifdb.errors import (
    Compacted,
    InvalidRequest,
    LeaseNotFound,
    LimitExceeded,
    LockTimeout,
    MembershipRefused,
    NotHolder,
)
from leifdb.kv.commands import (
    FAILED_LEASE_NOT_FOUND,
    Command,
    Condition,
    Delete,
    Event,
    Fence,
    Item,
    LeaseGrant,
    LeaseRenew,
    LeaseRevoke,
    Put,
    Txn,
)
from leifdb.kv.store import KVStore
from leifdb.service.backup import Backup
from leifdb.service.api import (
    CONSISTENCY_LINEARIZABLE,
    ELECTION_PREFIX,
    LOCK_PREFIX,
    ClusterMembers,
    Holder,
    LeaseInfo,
    MemberInfo,
    NodeStatus,
    ObserveSink,
    Page,
    ServiceLimits,
    WatchSink,
    WriteResult,
    check_address,
    check_member_id,
)

LEADER_ID = "127.0.0.1:16990"


def _members() -> list[MemberInfo]:
    """The fake's cluster: this node leads; n2 and n3 follow."""
    return [
        MemberInfo(LEADER_ID, LEADER_ID, "127.0.0.1:8080", False, 1, 0.0, True),
        MemberInfo("n2", "127.0.0.1:16991", "127.0.0.1:8081", False, 1, 0.1, False),
        MemberInfo("n3", "127.0.0.1:16992", "127.0.0.1:8082", False, 0, 2.5, False),
    ]


class FakeWatch:
    """A watch as the service keeps it: the sink, a queue for when the sink is full."""

    def __init__(self, service: FakeService, sink: WatchSink, key: str, prefix: bool,
                 start_revision: int) -> None:
        self.service = service
        self.sink = sink
        self.key = key
        self.prefix = prefix
        self._start_revision = start_revision
        self.queue: deque[list[Event]] = deque()
        self.blocked = False
        self.cancelled = False
        self.resumes = 0

    @property
    def start_revision(self) -> int:
        return self._start_revision

    def matches(self, event: Event) -> bool:
        return event.key.startswith(self.key) if self.prefix else event.key == self.key

    def offer(self, events: list[Event]) -> None:
        """One revision's events (already filtered): deliver, or queue while blocked."""
        if self.blocked or self.queue:
            self.queue.append(events)
            if sum(len(e) for e in self.queue) > self.service.limits.watcher_buffer_events:
                self.close("overflow")
            return
        if not self.sink.events(events):
            self.blocked = True

    def resume(self) -> None:
        self.resumes += 1
        self.blocked = False
        while self.queue and not self.blocked and not self.cancelled:
            if not self.sink.events(self.queue.popleft()):
                self.blocked = True

    def cancel(self) -> None:
        self.cancelled = True
        self._forget()

    def close(self, reason: str, compact_revision: int | None = None) -> None:
        self._forget()
        self.sink.closed(reason, compact_revision)

    def _forget(self) -> None:
        if self in self.service.watchers:
            self.service.watchers.remove(self)


_NOTHING_SENT = ("", -1)


def _holder(name: str, item: Item | None) -> Holder | None:
    if item is None:
        return None
    return Holder(name, item.key, item.create_revision, item.lease, item.value, item.revision)


class FakeObserve:
    """An election's observer: tells its sink whenever the leader or its value changes."""

    def __init__(self, service: FakeService, sink: ObserveSink, name: str) -> None:
        self.service = service
        self.sink = sink
        self.name = name
        self.prefix = f"{ELECTION_PREFIX}{name}/"
        self.cancelled = False
        self._last: tuple[str, int] | None = _NOTHING_SENT
        self.check()

    @property
    def start_revision(self) -> int:
        return self.service.revision + 1

    def check(self) -> None:
        """Deliver the leader if it is not the one last delivered (or it proclaimed)."""
        item = self.service.store.holder(self.prefix)
        now = (item.key, item.revision) if item is not None else None
        if now != self._last:
            self._last = now
            self.sink.leader(_holder(self.name, item), self.service.revision)

    def resume(self) -> None:
        pass

    def cancel(self) -> None:
        self.cancelled = True
        self._forget()

    def close(self, reason: str, compact_revision: int | None = None) -> None:
        self._forget()
        self.sink.closed(reason, compact_revision)

    def _forget(self) -> None:
        if self in self.service.observers:
            self.service.observers.remove(self)


class FakeAcquire:
    """A lock or campaign waiting for its key to be the oldest under the prefix."""

    def __init__(self, service: FakeService, name: str, prefix: str, key: str,
                 timeout: float) -> None:
        self.service = service
        self.name = name
        self.prefix = prefix
        self.key = key
        self.result: Deferred[Holder] = Deferred(self._cancelled)
        self.timer: IDelayedCall = service.clock.callLater(timeout, self._expire)

    def check(self) -> None:
        """Answer once the key holds; fail if it is gone (its lease ended)."""
        store = self.service.store
        item = store.get(self.key)
        if item is None:
            lease = int(self.key.rsplit("/", 1)[1])
            self._end()
            self.result.errback(LeaseNotFound(lease))
            return
        holder = store.holder(self.prefix)
        if holder is not None and holder.key == self.key:
            self._end()
            self.result.callback(_holder(self.name, holder))

    def _expire(self) -> None:
        self._end(timer=False)
        self._remove_key()
        holder = self.service.store.holder(self.prefix)
        self.result.errback(LockTimeout(self.name, holder.key if holder else None))

    def _cancelled(self, _: Deferred[Holder]) -> None:
        self._end()
        self._remove_key()

    def _remove_key(self) -> None:
        """The waiter gives up its place in line."""
        self.service.writes.append(Delete(self.key))
        self.service.apply(Delete(self.key))

    def _end(self, timer: bool = True) -> None:
        if timer and self.timer.active():
            self.timer.cancel()
        if self in self.service.acquires:
            self.service.acquires.remove(self)


class FakeService:
    """Applies writes at once (revision = the store's applied index + 1) unless told
    otherwise.

    ``read_error`` / ``write_error``: fail linearizable reads / writes with it; what only
    the leader serves (leases, locks, elections) fails with ``write_error`` too, as on a
    follower. ``hold``: keep the Deferreds of linearizable reads and of writes in
    ``pending`` for the test to fire. ``writes`` lists the commands asked for,
    ``barriers`` counts linearizable reads, ``waits`` the long polls' arguments and
    ``acquired`` the locks' and campaigns'. ``clock`` times long polls, lease deadlines
    (a lease no keepalive renews is revoked after its TTL) and lock waits.

    Membership: ``member_list`` (this node leads), changed at once like writes (and
    refused or held alike); ``changes`` records each change asked for; ``refusal``: fail
    changes and transfers with it after the service's own checks.
    """

    def __init__(self, limits: ServiceLimits | None = None, clock: Clock | None = None) -> None:
        self.limits = limits if limits is not None else ServiceLimits()
        self.clock = clock if clock is not None else Clock()
        self.store: Any = KVStore()
        self.history: list[Event] = []
        self.compact_revision = 1
        self.writes: list[Command] = []
        self.barriers = 0
        self.read_error: Exception | None = None
        self.write_error: Exception | None = None
        self.hold = False
        self.pending: list[Deferred[Any]] = []
        self.watchers: list[FakeWatch] = []
        self.waits: list[dict[str, Any]] = []
        self.acquired: list[dict[str, Any]] = []
        self.acquires: list[FakeAcquire] = []
        self.observers: list[FakeObserve] = []
        self.deadlines: dict[int, IDelayedCall] = {}
        self._waiters: list[tuple[Callable[[Event], bool], int, Deferred[list[Event]]]] = []
        self._observers: list[Callable[[int, tuple[Event, ...]], None]] = []
        self.status_fields: dict[str, Any] = {
            "node": LEADER_ID, "role": "leader", "term": 3,
            "leader": LEADER_ID, "leader_http": "127.0.0.1:8080", "cluster_id": "c-test",
            "healthy": True, "reason": None, "leader_contact_seconds": 0.0,
        }
        self.member_list: list[MemberInfo] = _members()
        self.changes: list[tuple[Any, ...]] = []
        self.refusal: Exception | None = None

    # -- test controls ---------------------------------------------------------------

    def set(self, key: str, value: str) -> Item:
        """Write a key at once, as if replicated earlier (not recorded in ``writes``)."""
        item = self.apply(Put(key, value)).current
        assert item is not None
        return item

    def remove(self, key: str) -> None:
        self.apply(Delete(key))

    def make_lease(self, ttl: float = 30.0) -> int:
        """Grant a lease at once (not recorded in ``writes``); its id."""
        lease = self.apply(LeaseGrant(round(ttl * 1000))).lease
        self._schedule_expiry(lease, ttl)
        return int(lease)

    def apply(self, command: Command) -> Any:
        """Apply ``command`` at the next revision and tell watchers, waiters, observers."""
        index = self.store.applied_index + 1
        result = self.store.apply(index, command)
        self.history.extend(result.events)
        self._publish(index, result.events)
        return result

    def compact(self, revision: int) -> None:
        """Keep history from ``revision`` on only."""
        self.compact_revision = revision
        self.history = [e for e in self.history if e.revision >= revision]

    def send_progress(self) -> None:
        for watch in list(self.watchers):
            if not watch.blocked and not watch.queue:
                watch.sink.progress(self.revision)

    def close_watchers(self, reason: str, compact_revision: int | None = None) -> None:
        """End every watch and observe stream, as the node does (``shutdown``...)."""
        for watch in list(self.watchers):
            watch.close(reason, compact_revision)
        for observer in list(self.observers):
            observer.close(reason, compact_revision)

    # -- Service ---------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self.store.applied_index

    def get(self, key: str, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Any]:
        return self._read(consistency, lambda: self.store.get(key))

    def snapshot(self, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Any]:
        return self._read(consistency, lambda: None).addCallback(
            lambda _: Backup(self.clock).take(lambda: self.store, lambda: b""))

    def range(self, prefix: str, start_after: str | None = None, limit: int | None = None,
              consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Page]:
        return self._read(consistency, lambda: self._page(prefix, start_after, limit))

    def put(self, key: str, value: str, condition: Condition | None = None, *,
            lease: int = 0, ttl: float | None = None, fence: Fence | None = None
            ) -> Deferred[WriteResult]:
        grant_ttl_ms = 0
        if ttl is not None:
            if lease:
                return fail(InvalidRequest("lease and ttl together"))
            if self.store.lease_count() >= self.limits.max_leases:
                return fail(LimitExceeded(f"at most {self.limits.max_leases} leases"))
            grant_ttl_ms = round(ttl * 1000)
        return self._write(Put(key, value, condition, lease=lease, grant_ttl_ms=grant_ttl_ms,
                               fence=fence))

    def delete(self, key: str, condition: Condition | None = None, *,
               fence: Fence | None = None) -> Deferred[WriteResult]:
        return self._write(Delete(key, condition, fence=fence))

    # -- leases ----------------------------------------------------------------------

    def grant_lease(self, ttl: float) -> Deferred[LeaseInfo]:
        if not self.limits.min_lease_ttl <= ttl <= self.limits.max_lease_ttl:
            return fail(InvalidRequest(f"ttl {ttl} out of range"))
        if self.store.lease_count() >= self.limits.max_leases:
            return fail(LimitExceeded(f"at most {self.limits.max_leases} leases"))

        def granted(result: Any) -> LeaseInfo:
            return LeaseInfo(result.lease, ttl, ttl, revision=result.revision)

        return self._write(LeaseGrant(round(ttl * 1000))).addCallback(granted)

    def keepalive(self, lease_id: int) -> Deferred[LeaseInfo]:
        def renewed(_: Any) -> LeaseInfo:
            ttl = self._ttl(lease_id)
            self.deadlines[lease_id].reset(ttl)
            return LeaseInfo(lease_id, ttl, ttl, revision=self.revision)

        return self._leader_write(LeaseRenew((lease_id,)), lease_id).addCallback(renewed)

    def lease_info(self, lease_id: int) -> Deferred[LeaseInfo]:
        return self._leader(lambda: self._info(lease_id, with_keys=True))

    def leases(self) -> Deferred[list[LeaseInfo]]:
        return self._leader(lambda: [self._info(lease.id, with_keys=False)
                                     for lease in self.store.leases()])

    def revoke_lease(self, lease_id: int) -> Deferred[int]:
        def revoked(result: Any) -> int:
            self.deadlines.pop(lease_id).cancel()
            return int(result.revision)

        return self._leader_write(LeaseRevoke(lease_id), lease_id).addCallback(revoked)

    # -- locks and elections ---------------------------------------------------------

    def lock(self, name: str, lease: int, *, value: str = "", timeout: float
             ) -> Deferred[Holder]:
        return self._acquire(LOCK_PREFIX, name, lease, value, timeout)

    def campaign(self, name: str, lease: int, value: str, *, timeout: float
                 ) -> Deferred[Holder]:
        return self._acquire(ELECTION_PREFIX, name, lease, value, timeout)

    def lock_holder(self, name: str, consistency: str = CONSISTENCY_LINEARIZABLE
                    ) -> Deferred[Holder | None]:
        return self._read(consistency, lambda: _holder(
            name, self.store.holder(f"{LOCK_PREFIX}{name}/")))

    def election_leader(self, name: str, consistency: str = CONSISTENCY_LINEARIZABLE
                        ) -> Deferred[Holder | None]:
        return self._read(consistency, lambda: _holder(
            name, self.store.holder(f"{ELECTION_PREFIX}{name}/")))

    def proclaim(self, name: str, token: int, value: str) -> Deferred[Holder]:
        def announce() -> Holder:
            leader = self._leader_with(name, token)
            self.writes.append(Put(leader.key, value, lease=leader.lease))
            item = self.apply(Put(leader.key, value, lease=leader.lease)).current
            holder = _holder(name, item)
            assert holder is not None
            return holder

        return self._leader(announce)

    def resign(self, name: str, token: int) -> Deferred[int]:
        def step_down() -> int:
            leader = self._leader_with(name, token)
            self.writes.append(Delete(leader.key))
            return int(self.apply(Delete(leader.key)).revision)

        return self._leader(step_down)

    def observe(self, sink: ObserveSink, name: str) -> FakeObserve:
        if len(self.watchers) + len(self.observers) >= self.limits.max_watchers:
            raise LimitExceeded(f"at most {self.limits.max_watchers} watchers")
        observer = FakeObserve(self, sink, name)
        self.observers.append(observer)
        return observer

    def barrier(self, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Any]:
        return self._read(consistency, lambda: None)

    def txn(self, txn: Txn, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Any]:
        self._check_txn(txn)
        if txn.read_only:
            return self._read(consistency, lambda: self.store.evaluate_txn(txn))
        return self._write(txn)

    def watch(self, sink: WatchSink, key: str, *, prefix: bool = False,
              start_revision: int | None = None) -> FakeWatch:
        if len(self.watchers) + len(self.observers) >= self.limits.max_watchers:
            raise LimitExceeded(f"at most {self.limits.max_watchers} watchers")
        if start_revision is not None and start_revision < self.compact_revision:
            raise Compacted(self.compact_revision)
        start = start_revision if start_revision is not None else self.revision + 1
        watch = FakeWatch(self, sink, key, prefix, start)
        for _, events in self._revisions(watch.matches, start):
            watch.offer(events)
        self.watchers.append(watch)
        return watch

    def wait(self, key: str, *, prefix: bool, wait_revision: int, timeout: float
             ) -> Deferred[list[Event]]:
        self.waits.append({"key": key, "prefix": prefix, "wait_revision": wait_revision,
                           "timeout": timeout})
        if wait_revision < self.compact_revision:
            return fail(Compacted(self.compact_revision))

        def matches(event: Event) -> bool:
            return event.key.startswith(key) if prefix else event.key == key

        for _, events in self._revisions(matches, wait_revision):
            d: Deferred[list[Event]] = Deferred()
            d.callback(events)
            return d
        waiter: tuple[Any, int, Deferred[list[Event]]]

        def cancel(_: Deferred[list[Event]]) -> None:
            self._waiters.remove(waiter)
            timer.cancel()

        result: Deferred[list[Event]] = Deferred(cancel)
        waiter = (matches, wait_revision, result)
        self._waiters.append(waiter)

        def expire() -> None:
            self._waiters.remove(waiter)
            result.callback([])

        timer = self.clock.callLater(timeout, expire)
        result.addBoth(lambda r: (timer.cancel() if timer.active() else None, r)[1])
        return result

    @property
    def pending_waits(self) -> int:
        return len(self._waiters)

    def status(self) -> NodeStatus:
        applied = self.store.applied_index
        return NodeStatus(
            commit_index=applied, applied_index=applied, last_index=applied,
            snapshot_index=0, version="fake", revision=applied,
            compact_revision=self.compact_revision, watchers=len(self.watchers),
            **self.status_fields,
        )

    # -- membership ------------------------------------------------------------------

    def members(self) -> ClusterMembers:
        return ClusterMembers(self.status_fields["cluster_id"], self.status_fields["node"],
                              self.status_fields["leader"], tuple(self.member_list))

    def add_member(self, member_id: str, raft_address: str, http_address: str = ""
                   ) -> Deferred[ClusterMembers]:
        def add() -> ClusterMembers:
            check_member_id(member_id)
            check_address(raft_address, "raft_address")
            if http_address:
                check_address(http_address, "http_address")
            if any(m.id == member_id for m in self.member_list):
                raise MembershipRefused(f"{member_id} is already a member", 409)
            return self._reconfigure(("add", member_id, raft_address, http_address), [
                *self.member_list,
                MemberInfo(member_id, raft_address, http_address, True, None, None, False)])

        return self._leader(add)

    def promote_member(self, member_id: str) -> Deferred[ClusterMembers]:
        def promote() -> ClusterMembers:
            member = self._member(member_id)
            if not member.learner:
                raise MembershipRefused(f"{member_id} is already a voter", 409)
            return self._reconfigure(("promote", member_id), [
                MemberInfo(m.id, m.raft_address, m.http_address, False, m.match_index,
                           m.last_contact_seconds, m.is_leader) if m.id == member_id else m
                for m in self.member_list])

        return self._leader(promote)

    def remove_member(self, member_id: str, force: bool = False) -> Deferred[ClusterMembers]:
        def remove() -> ClusterMembers:
            self._member(member_id)
            return self._reconfigure(("remove", member_id, force),
                                     [m for m in self.member_list if m.id != member_id])

        return self._leader(remove)

    def transfer_leader(self, to: str) -> Deferred[str]:
        def transfer() -> str:
            target = self._member(to)
            if self.refusal is not None:
                raise self.refusal
            self.changes.append(("transfer", to))
            self.status_fields.update(leader=to, leader_http=target.http_address or None)
            self.member_list = [
                MemberInfo(m.id, m.raft_address, m.http_address, m.learner, m.match_index,
                           m.last_contact_seconds, m.id == to) for m in self.member_list]
            return to

        return self._leader(transfer)

    def _member(self, member_id: str) -> MemberInfo:
        check_member_id(member_id)
        for member in self.member_list:
            if member.id == member_id:
                return member
        raise MembershipRefused(f"no member {member_id} in the cluster", 404)

    def _reconfigure(self, change: tuple[Any, ...], members: list[MemberInfo]
                     ) -> ClusterMembers:
        if self.refusal is not None:
            raise self.refusal
        self.changes.append(change)
        self.member_list = members
        return self.members()

    def on_applied(self, observer: Callable[[int, tuple[Event, ...]], None]
                   ) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    # -- inside ----------------------------------------------------------------------

    def _read(self, consistency: str, read: Callable[[], Any]) -> Deferred[Any]:
        if consistency == CONSISTENCY_LINEARIZABLE:
            self.barriers += 1
            if self.read_error is not None:
                return fail(self.read_error)
            if self.hold:
                d: Deferred[Any] = Deferred()
                d.addCallback(lambda _: read())
                self.pending.append(d)
                return d
        return maybeDeferred(read)

    def _leader(self, action: Callable[[], Any]) -> Deferred[Any]:
        """What only the leader does: refused with ``write_error`` (a follower's
        ``NotLeaderError``...), held with ``hold``, else done at once."""
        if self.write_error is not None:
            return fail(self.write_error)
        if self.hold:
            d: Deferred[Any] = Deferred()
            d.addCallback(lambda _: action())
            self.pending.append(d)
            return d
        return maybeDeferred(action)

    def _write(self, command: Command) -> Deferred[Any]:
        self.writes.append(command)
        return self._leader(lambda: self._commit(command))

    def _leader_write(self, command: Command, lease_id: int) -> Deferred[Any]:
        """A command on lease ``lease_id``, which must exist when it applies."""
        def commit() -> Any:
            if not self.store.has_lease(lease_id):
                raise LeaseNotFound(lease_id)
            return self.apply(command)

        self.writes.append(command)
        return self._leader(commit)

    def _commit(self, command: Command) -> Any:
        result = self.apply(command)
        if isinstance(command, LeaseGrant):
            self._schedule_expiry(result.lease, command.ttl_ms / 1000)
            return result
        if result.error == FAILED_LEASE_NOT_FOUND:
            raise LeaseNotFound(self._missing_lease(command))
        if isinstance(command, Txn):
            return result.txn
        if isinstance(command, Put) and command.grant_ttl_ms and result.ok:
            self._schedule_expiry(result.lease, command.grant_ttl_ms / 1000)
        current = result.current if not result.ok or isinstance(command, Put) else None
        return WriteResult(ok=result.ok, revision=result.revision, current=current,
                           failure=result.error, lease=result.lease)

    def _missing_lease(self, command: Command) -> int:
        """The lease a refused put or transaction named that does not exist."""
        ops = (command.success + command.failure) if isinstance(command, Txn) else (command,)
        return next(op.lease for op in ops
                    if isinstance(op, Put) and op.lease and not self.store.has_lease(op.lease))

    def _schedule_expiry(self, lease_id: int, ttl: float) -> None:
        def expire() -> None:
            del self.deadlines[lease_id]
            self.apply(LeaseRevoke(lease_id))

        self.deadlines[lease_id] = self.clock.callLater(ttl, expire)

    def _ttl(self, lease_id: int) -> float:
        lease = self.store.lease(lease_id)
        if lease is None:
            raise LeaseNotFound(lease_id)
        return float(lease.ttl_ms / 1000)

    def _info(self, lease_id: int, *, with_keys: bool) -> LeaseInfo:
        lease = self.store.lease(lease_id)
        if lease is None:
            raise LeaseNotFound(lease_id)
        remaining = self.deadlines[lease_id].getTime() - self.clock.seconds()
        return LeaseInfo(lease_id, lease.ttl_ms / 1000, remaining,
                         lease.keys if with_keys else (), self.revision)

    def _acquire(self, prefix: str, name: str, lease: int, value: str, timeout: float
                 ) -> Deferred[Holder]:
        self.acquired.append({"prefix": prefix, "name": name, "lease": lease, "value": value,
                              "timeout": timeout})
        if self.write_error is not None:
            return fail(self.write_error)
        if not self.store.has_lease(lease):
            return fail(LeaseNotFound(lease))
        key = f"{prefix}{name}/{lease}"
        if self.store.get(key) is None:
            self.writes.append(Put(key, value, lease=lease))
            self.apply(Put(key, value, lease=lease))
        waiter = FakeAcquire(self, name, f"{prefix}{name}/", key, timeout)
        self.acquires.append(waiter)
        waiter.check()
        return waiter.result

    def _leader_with(self, name: str, token: int) -> Item:
        """The election's leader if its token is ``token``; else ``NotHolder``."""
        item = self.store.holder(f"{ELECTION_PREFIX}{name}/")
        if item is None or item.create_revision != token:
            raise NotHolder(f"token {token} does not lead election {name!r}")
        return item

    def _page(self, prefix: str, start_after: str | None, limit: int | None) -> Page:
        limit = min(limit or self.limits.default_page_size, self.limits.max_page_size)
        items, more = self.store.range(prefix, start_after, limit)
        page: list[Item] = []
        size = 0
        for item in items:
            size += len(item.key.encode()) + len(item.value.encode())
            if page and size > self.limits.max_page_bytes:
                more = True
                break
            page.append(item)
        return Page(tuple(page), more, self.revision)

    def _check_txn(self, txn: Txn) -> None:
        ops = len(txn.compare) + len(txn.success) + len(txn.failure)
        if ops > self.limits.max_txn_ops:
            raise LimitExceeded(f"{ops} operations and compares; the limit is "
                                f"{self.limits.max_txn_ops}")
        for branch in (txn.success, txn.failure):
            written = [op.key for op in branch if isinstance(op, (Put, Delete))]
            if len(written) != len(set(written)):
                raise InvalidRequest("two writes to one key in one branch")

    def _revisions(self, matches: Callable[[Event], bool], start: int
                   ) -> list[tuple[int, list[Event]]]:
        """Kept history from ``start`` on, filtered, grouped by revision."""
        grouped: dict[int, list[Event]] = {}
        for event in self.history:
            if event.revision >= start and matches(event):
                grouped.setdefault(event.revision, []).append(event)
        return sorted(grouped.items())

    def _publish(self, revision: int, events: tuple[Event, ...]) -> None:
        for watch in list(self.watchers):
            chosen = [e for e in events if watch.matches(e)]
            if chosen and revision >= watch.start_revision:
                watch.offer(chosen)
        for matches, wait_revision, d in list(self._waiters):
            chosen = [e for e in events if matches(e)]
            if chosen and revision >= wait_revision:
                self._waiters.remove((matches, wait_revision, d))
                d.callback(chosen)
        for waiter in list(self.acquires):
            waiter.check()
        for observe in list(self.observers):
            observe.check()
        for observer in list(self._observers):
            observer(revision, events)
