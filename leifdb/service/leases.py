"""``Lessor``: the leader's side of leases: deadlines, expiry, checkpoints, keepalives.

The replicated state (``KVStore``) knows each lease's TTL and the remaining TTL the leader
last wrote down, never a clock reading. Only the leader keeps deadlines, on the monotonic
clock it is given, and only through the log does a lease end. The rules:

- **Activation.** A new leader starts no countdown until it has applied an entry of its
  own term (so it has applied every renewal committed before it): then each lease's
  deadline is ``now + remaining`` as last written down.
- **Keepalives** go through the log (one ``LeaseRenew`` per reactor turn for every
  keepalive that arrived in it) and are answered once applied: the renewal is replicated
  before the client hears of it, so no later leader can miss it.
- **Checkpoints.** The leader writes down what each lease has left (``LeaseCheckpoint``)
  so that none goes unwritten for longer than ``lease_checkpoint_interval``; a lease whose
  renewal is in flight is skipped (the checkpoint would land after the renewal in the log
  and write back the older remaining TTL).
- **Expiry.** When a deadline passes the leader proposes ``LeaseRevoke(id,
  if_renewed_index)``; a renewal that committed first makes it a no-op.

Hence a lease never ends earlier than its TTL after its last acknowledged keepalive (the
keepalive's entry precedes the next leader's activation, which restarts the countdown
from at least what the entry wrote), and after a failover no later than its TTL plus the
checkpoint interval plus the time from the old leader's last checkpoint to the new
leader's activation (the failover time).
"""

from __future__ import annotations

import heapq
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from leifdb.errors import LeaseNotFound, NotLeaderError
from leifdb.kv.commands import (
    ApplyResult,
    Command,
    LeaseCheckpoint,
    LeaseGrant,
    LeaseRenew,
    LeaseRevoke,
    Put,
)
from leifdb.kv.store import KVStore

__all__ = ["Lessor"]

log = Logger(namespace="leifdb.service.leases")

# At most this many leases per checkpoint entry (about 20 bytes each on the wire).
CHECKPOINT_BATCH = 10_000
# A failed expiry proposal is retried after this many seconds.
EXPIRY_RETRY = 0.5


class Lessor:
    """Deadlines of the leases while this node leads. ``propose(command)`` appends a
    command and fires with its ``ApplyResult``; ``store()`` is the applied state;
    ``now()`` a monotonic clock in seconds; ``reactor`` provides ``callLater``."""

    def __init__(
        self,
        reactor: Any,
        now: Callable[[], float],
        store: Callable[[], KVStore],
        propose: Callable[[Command], Deferred[ApplyResult]],
        checkpoint_interval: float,
    ) -> None:
        self._reactor = reactor
        self._now = now
        self._store = store
        self._propose = propose
        self._checkpoint_interval = checkpoint_interval
        self._leader_term: int | None = None  # leading in this term (maybe not active yet)
        self._active = False
        self._deadlines: dict[int, float] = {}
        self._written: dict[int, float] = {}  # when each lease's remaining was last written
        self._heap: list[tuple[float, int]] = []
        self._expiring: set[int] = set()
        self._expiry_call: Any = None
        self._checkpoint_call: Any = None
        self._renewals: dict[int, list[Deferred[float]]] = {}
        self._flush_call: Any = None
        # Leases in a proposed LeaseRenew not yet applied: a checkpoint proposed now would
        # land after the renewal and write back the older, shorter remaining TTL.
        self._renewing: dict[int, int] = {}

    # -- leadership --------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Deadlines are being kept (the leader applied an entry of its term)."""
        return self._active

    def became_leader(self, term: int) -> None:
        """Leading from ``term`` on: activate once an entry of ``term`` applies."""
        if self._leader_term != term:
            self._deactivate()
            self._leader_term = term

    def lost_leadership(self) -> None:
        self._leader_term = None
        self._deactivate()

    def _deactivate(self) -> None:
        self._active = False
        self._deadlines.clear()
        self._written.clear()
        self._heap.clear()
        self._expiring.clear()
        self._renewing.clear()
        for call in (self._expiry_call, self._checkpoint_call, self._flush_call):
            if call is not None and call.active():
                call.cancel()
        self._expiry_call = self._checkpoint_call = self._flush_call = None
        renewals, self._renewals = self._renewals, {}
        for waiters in renewals.values():
            for d in waiters:
                d.errback(NotLeaderError(None))

    def _activate(self) -> None:
        self._active = True
        now = self._now()
        for lease in self._store().leases():
            self._set_deadline(lease.id, now + lease.remaining_ms / 1000.0, now)
        self._arm_checkpoint()
        log.info("Leases: counting down {count} leases as leader", count=len(self._deadlines))

    # -- the applied stream ------------------------------------------------------------

    def applied(self, index: int, term: int, command: Command | None, result: ApplyResult | None
                ) -> None:
        """After every applied entry (``command`` None for no-op and configuration)."""
        if self._leader_term is None:
            return
        if not self._active:
            if term == self._leader_term:
                self._activate()
            return
        if result is None or command is None:
            return
        now = self._now()
        store = self._store()
        if isinstance(command, LeaseGrant) or (isinstance(command, Put) and command.grant_ttl_ms):
            if result.ok and result.lease:
                self._set_deadline(result.lease, now + _ttl(command), now)
        elif isinstance(command, LeaseRenew):
            for lease_id in command.lease_ids:
                lease = store.lease_header(lease_id)
                if lease is not None and lease.renewed_index == index:
                    self._set_deadline(lease_id, now + lease.ttl_ms / 1000.0, now)
        elif isinstance(command, LeaseRevoke):
            self._expiring.discard(command.lease_id)
            if store.lease_header(command.lease_id) is None:
                self._deadlines.pop(command.lease_id, None)
                self._written.pop(command.lease_id, None)

    def reset(self) -> None:
        """The state was replaced by a snapshot: recount from it if active."""
        if self._active:
            self._deactivate()
            self._activate()

    # -- what front ends ask ------------------------------------------------------------

    def remaining(self, lease_id: int, remaining_ms: int) -> float:
        """Seconds lease ``lease_id`` has left as this leader sees it; before activation,
        what was last written down (``remaining_ms``)."""
        deadline = self._deadlines.get(lease_id)
        if deadline is None:
            return remaining_ms / 1000.0
        return max(0.0, deadline - self._now())

    def keepalive(self, lease_id: int) -> Deferred[float]:
        """Renew ``lease_id`` in the next batch; fires with its TTL once the renewal is
        applied. ``LeaseNotFound`` when it is gone or its deadline already passed; before
        activation the applied state may lack a committed lease, so only the renewal's
        apply can tell."""
        if self._leader_term is None:
            raise NotLeaderError(None)
        if self._active:
            deadline = self._deadlines.get(lease_id)
            if (
                not self._store().has_lease(lease_id)
                or lease_id in self._expiring
                or (deadline is not None and deadline <= self._now())
            ):
                raise LeaseNotFound(lease_id)
        d: Deferred[float] = Deferred()
        self._renewals.setdefault(lease_id, []).append(d)
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush_renewals)
        return d

    def _flush_renewals(self) -> None:
        self._flush_call = None
        batch, self._renewals = self._renewals, {}
        if not batch:
            return
        renew = LeaseRenew(tuple(batch))
        try:
            proposal = self._propose(renew)
        except Exception:
            failure = Failure()
            for waiters in batch.values():
                for d in waiters:
                    d.errback(failure)
            return
        for lease_id in renew.lease_ids:
            self._renewing[lease_id] = self._renewing.get(lease_id, 0) + 1

        def settled() -> None:
            for lease_id in renew.lease_ids:
                left = self._renewing.get(lease_id, 0) - 1
                if left > 0:
                    self._renewing[lease_id] = left
                else:
                    self._renewing.pop(lease_id, None)

        def renewed(result: ApplyResult) -> None:
            settled()
            store = self._store()
            for lease_id, waiters in batch.items():
                lease = store.lease_header(lease_id)
                for d in waiters:
                    if lease is not None and lease.renewed_index == result.revision:
                        d.callback(lease.ttl_ms / 1000.0)
                    else:
                        d.errback(LeaseNotFound(lease_id))

        def failed(failure: Failure) -> None:
            settled()
            for waiters in batch.values():
                for d in waiters:
                    d.errback(failure)

        proposal.addCallbacks(renewed, failed)

    # -- deadlines and expiry ----------------------------------------------------------

    def _set_deadline(self, lease_id: int, deadline: float, now: float) -> None:
        self._deadlines[lease_id] = deadline
        self._written[lease_id] = now
        heapq.heappush(self._heap, (deadline, lease_id))
        self._arm_expiry()

    def _arm_expiry(self) -> None:
        heap = self._heap
        while heap and self._deadlines.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # superseded by a later deadline, or gone
        if not heap:
            return
        delay = max(0.0, heap[0][0] - self._now())
        call = self._expiry_call
        if call is not None and call.active():
            if call.getTime() - self._reactor.seconds() <= delay:
                return
            call.cancel()
        self._expiry_call = self._reactor.callLater(delay, self._expire_due)

    def _expire_due(self) -> None:
        self._expiry_call = None
        if not self._active:
            return
        now = self._now()
        heap = self._heap
        store = self._store()
        while heap and heap[0][0] <= now:
            deadline, lease_id = heapq.heappop(heap)
            if self._deadlines.get(lease_id) != deadline or lease_id in self._expiring:
                continue
            lease = store.lease_header(lease_id)
            if lease is None:
                self._deadlines.pop(lease_id, None)
                continue
            self._expire(lease_id, lease.renewed_index)
        self._arm_expiry()

    def _expire(self, lease_id: int, renewed_index: int) -> None:
        self._expiring.add(lease_id)
        try:
            proposal = self._propose(LeaseRevoke(lease_id, renewed_index))
        except NotLeaderError:
            self._expiring.discard(lease_id)
            return

        def retry(failure: Failure) -> None:
            # The outcome is unknown: look again soon (a no-op if it did apply).
            if self._active and lease_id in self._expiring:
                self._expiring.discard(lease_id)
                self._set_deadline(lease_id, self._now() + EXPIRY_RETRY, self._now())

        proposal.addCallbacks(lambda _: None, retry)
        log.debug("Leases: expiring {lease}", lease=lease_id)

    # -- checkpoints -------------------------------------------------------------------

    def _arm_checkpoint(self) -> None:
        # Runs at twice the rate leases are written: a lease is written at the first run
        # more than half an interval after it was last written, so no lease goes unwritten
        # for longer than one interval (plus the timer's lateness), while each is written
        # about once per interval.
        self._checkpoint_call = self._reactor.callLater(
            self._checkpoint_interval / 2, self._checkpoint
        )

    def _checkpoint(self) -> None:
        self._checkpoint_call = None
        if not self._active:
            return
        self._arm_checkpoint()
        now = self._now()
        stale = now - self._checkpoint_interval / 2
        busy = self._expiring.union(self._renewing)
        due = [
            (lease_id, max(0, int((deadline - now) * 1000)))
            for lease_id, deadline in self._deadlines.items()
            if self._written.get(lease_id, 0.0) < stale and lease_id not in busy
        ]
        for start in range(0, len(due), CHECKPOINT_BATCH):
            batch = tuple(sorted(due[start:start + CHECKPOINT_BATCH]))
            try:
                self._propose(LeaseCheckpoint(batch)).addErrback(lambda _: None)
            except NotLeaderError:
                return
            for lease_id, _ in batch:
                self._written[lease_id] = now

    # -- shutdown ----------------------------------------------------------------------

    def stop(self) -> None:
        self.lost_leadership()


def _ttl(command: LeaseGrant | Put) -> float:
    ms = command.ttl_ms if isinstance(command, LeaseGrant) else command.grant_ttl_ms
    return ms / 1000.0
