"""Lease clients and lease checks of the node-level simulation (``tests/sim/node_sim.py``).

``SimLeases`` (``NodeSim.leases``) plays clients that grant leases (``grant``; or a put
with ``ttl``: ``put_with_ttl``), attach keys to them (``NodeSim.submit`` of a ``Put`` with
``lease``), keep some alive (a keepalive every ``ttl / 3`` through the service of
whichever node leads, found as the sim's other clients find it), stop keeping others
alive (``abandon``) and revoke some (``revoke``), while the sim's faults go on.

It watches every proposal (``proposed``, from the node the service is attached through),
every entry each replica applies with its changes (``applied``, the service's
``on_applied`` hook), the replay of the committed log (``replayed``) and which node is an
active lessor (``check``, after every event), and checks:

(a) every replica applies the same changes at each index as the committed log's replay,
    lease revocations and the keys they delete included (``NodeSim``'s state machine
    check compares the whole state, the lease table with each lease's keys included, at
    every applied index too);
(b) no lease ends earlier than its rule allows: the entry that ends a lease by expiry
    (``LeaseRevoke`` with ``if_renewed_index``) is proposed no earlier than ``t + ttl``
    for every grant or keepalive issued at ``t`` and acknowledged (a client's revoke is
    exempt);
(c) no lease outlives its bound: ``settle`` (the cluster healed, one leader) stops every
    keepalive and requires each lease to end by ``max(last renewal attempt, activation of
    the leader that ends it) + ttl + slack``; ``report`` measures, for scripted failovers,
    how long after ``last attempt + ttl`` a lease ended, against the time the cluster had
    no active lessor (``outage``);
(d) a lease's keys are deleted at the revision the lease ends, all of them, and every
    key attached to a lease is one of that lease's keys while it lives.

Keepalives and revokes answered ``LeaseNotFound`` while the committed log holds the lease
and an acknowledged grant or keepalive still promises it time are recorded in
``false_not_found`` (the client was told its lease is gone when it is not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.python.failure import Failure

from leifdb.errors import LeaseNotFound, NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.kv.commands import (
    ApplyResult,
    Command,
    Event,
    Lease,
    LeaseGrant,
    LeaseRenew,
    LeaseRevoke,
    Put,
    Txn,
)
from leifdb.raft.messages import Entry, Role
from leifdb.service.api import LeaseInfo
from leifdb.wire import DecodeError, decode_command

if TYPE_CHECKING:
    from leifdb.service.kvservice import KVService
    from tests.sim.node_sim import NodeSim, WriteOp

__all__ = ["LeaseCall", "SimLease", "SimLeases"]

# Float noise allowed when comparing simulated times.
EPSILON = 1e-6


@dataclass(eq=False)
class SimLease:
    """One lease as the clients and the committed log know it.

    ``must_last_until``: the latest ``t + ttl`` over the grant and keepalives issued at
    ``t`` and acknowledged (check (b)). ``last_attempt``: when the last renewal was
    attempted (any outcome), or the grant. ``renewed_at``: when the committed entry that
    last granted or renewed it was first applied (the leader counts from then).
    ``end_*``: the committed entry that ended it, ``expiry`` or ``revoke``; when it was
    proposed (and by whom, in which term) and first applied anywhere."""

    lease_id: int
    ttl: float
    known_at: float
    keep: bool = False
    must_last_until: float = 0.0
    promised_by: str = ""
    last_attempt: float = 0.0
    renewed_at: float = 0.0
    keepalives: int = 0
    keepalives_acked: int = 0
    revoke_asked: bool = False
    revoked_at_revision: int | None = None
    end_index: int | None = None
    end_kind: str | None = None
    end_proposed_at: float | None = None
    end_proposer: tuple[str, int] | None = None
    end_applied_at: float | None = None
    keeper: Any = None

    @property
    def ended(self) -> bool:
        return self.end_index is not None

    def __str__(self) -> str:
        return f"lease {self.lease_id} (ttl {self.ttl:g}s)"


@dataclass
class LeaseCall:
    """A client's ``grant_lease``, ``keepalive`` or ``revoke_lease`` call. ``outcome``:
    pending, ok, fail (refused: not the leader, or not found), unknown."""

    kind: str
    node: str
    issued_at: float
    lease_id: int = 0
    ttl: float = 0.0
    keep: bool = False
    outcome: str = "pending"
    answer: Any = None
    error: str | None = None


@dataclass
class LeaseStats:
    """What a run exercised; ``settle_excess``: how long after the start of its last
    countdown + ttl each lease left at ``settle`` ended."""

    grants: int = 0
    grants_acked: int = 0
    keepalives: int = 0
    keepalives_acked: int = 0
    revokes: int = 0
    revokes_acked: int = 0
    expired: int = 0
    revoked: int = 0
    keys_deleted: int = 0
    settle_excess: list[float] = field(default_factory=list)


class SimLeases:
    """The lease clients and checks of one ``NodeSim``."""

    def __init__(self, sim: NodeSim, *, slack: float | None = None) -> None:
        self.sim = sim
        self.leases: dict[int, SimLease] = {}
        self.calls: list[LeaseCall] = []
        self.stats = LeaseStats()
        # (index, term) -> (time, node id, command): every proposal any node accepted
        self.proposals: dict[tuple[int, int], tuple[float, str, Command | None]] = {}
        self.first_applied: dict[int, float] = {}
        self.false_not_found: list[str] = []
        # When the cluster had no active lessor: [start, end] (end None: still).
        self.outages: list[list[float | None]] = [[0.0, None]]
        self.activations: dict[tuple[str, int], float] = {}
        self._streams: list[tuple[str, int, tuple[Event, ...]]] = []
        self._keep_for_op: dict[int, bool] = {}
        heartbeat = sim.options.heartbeat_interval_ms / 1000.0
        # Commit of the last renewal plus commit of the expiry, and timer granularity.
        self.slack = slack if slack is not None else 4 * heartbeat

    @property
    def checkpoint_interval(self) -> float:
        return self.sim.options.limits.lease_checkpoint_interval

    # ------------------------------------------------------------------ clients

    def _leader_id(self) -> str | None:
        leader = self.sim.leader()
        return leader.config.node_id if leader is not None else None

    def _service(self, node_id: str) -> KVService | None:
        node = self.sim.node(node_id)
        return None if node is None else self.sim.services[node]

    def grant(self, node_id: str | None, ttl: float, *, keep: bool = True) -> LeaseCall:
        """``grant_lease(ttl)`` at ``node_id`` (None: the leader); once acknowledged, the
        lease is kept alive if ``keep``."""
        node_id = node_id or self._leader_id() or self.sim.ids[0]
        call = LeaseCall("grant", node_id, self.sim.now, ttl=ttl, keep=keep)
        self.calls.append(call)
        self.stats.grants += 1
        service = self._service(node_id)
        if service is None:
            call.outcome, call.error = "fail", "node down"
            return call
        d = service.grant_lease(ttl)
        self.sim._note("grant", node_id, ttl, "keep" if keep else "abandon")
        d.addCallbacks(self._granted, self._call_failed, callbackArgs=(call,), errbackArgs=(call,))
        return call

    def _granted(self, info: LeaseInfo, call: LeaseCall) -> None:
        if not self._first_answer(call, info):
            return
        call.outcome, call.answer, call.lease_id = "ok", info, info.id
        self.stats.grants_acked += 1
        self.sim._note("granted", call.node, info)
        if not isinstance(info, LeaseInfo) or info.id <= 0 or info.id != info.revision:
            self.sim._problems.append(f"grant {call} answered {info!r}: the id must be the entry's index")
            return
        if abs(info.ttl - call.ttl) > EPSILON:
            self.sim._problems.append(f"grant of {call.ttl}s answered with ttl {info.ttl}")
        lease = self._lease(info.id, call.ttl, call.issued_at)
        self._promised(lease, call.issued_at, f"the grant issued at {call.issued_at:.3f} at {call.node}")
        lease.last_attempt = max(lease.last_attempt, call.issued_at)
        lease.keep = call.keep
        if call.keep:
            self._schedule_keepalive(lease)

    def put_with_ttl(self, node_id: str, key: str, value: str, ttl: float, *, keep: bool = False) -> WriteOp:
        """``put(key, value, ttl=ttl)``: a new lease for this key alone; kept alive once
        acknowledged if ``keep``."""
        op = self.sim.submit(node_id, Put(key, value, grant_ttl_ms=round(ttl * 1000)))
        self._keep_for_op[op.op_id] = keep
        self.stats.grants += 1
        return op

    def put_granted(self, op: WriteOp) -> None:
        """``NodeSim._write_acked`` of a put with ``ttl``: its lease was granted."""
        result = op.result
        ttl = op.command.grant_ttl_ms / 1000.0
        self.stats.grants_acked += 1
        lease = self._lease(result.lease, ttl, op.invoked_at)
        self._promised(lease, op.invoked_at, f"the put with ttl issued at {op.invoked_at:.3f} at {op.node}")
        lease.last_attempt = max(lease.last_attempt, op.invoked_at)
        lease.keep = self._keep_for_op.pop(op.op_id, False)
        if lease.keep:
            self._schedule_keepalive(lease)

    def keepalive(self, lease: SimLease, node_id: str | None = None) -> LeaseCall | None:
        """One keepalive of ``lease`` at ``node_id`` (None: the leader; no leader known:
        nothing is sent)."""
        node_id = node_id or self._leader_id()
        if node_id is None:
            return None
        service = self._service(node_id)
        call = LeaseCall("keepalive", node_id, self.sim.now, lease.lease_id, lease.ttl)
        self.calls.append(call)
        if service is None:
            call.outcome, call.error = "fail", "node down"
            return call
        d = service.keepalive(lease.lease_id)
        if d.called and isinstance(d.result, Failure) and d.result.check(NotLeaderError):
            d.addErrback(lambda _: None)
            call.outcome, call.error = "fail", "not leader"
            return call
        self.stats.keepalives += 1
        lease.keepalives += 1
        lease.last_attempt = max(lease.last_attempt, call.issued_at)
        d.addCallbacks(self._renewed, self._call_failed, callbackArgs=(call, lease), errbackArgs=(call,))
        return call

    def _renewed(self, info: LeaseInfo, call: LeaseCall, lease: SimLease) -> None:
        if not self._first_answer(call, info):
            return
        call.outcome, call.answer = "ok", info
        self.stats.keepalives_acked += 1
        lease.keepalives_acked += 1
        if info.id != lease.lease_id or abs(info.ttl - lease.ttl) > EPSILON:
            self.sim._problems.append(f"keepalive of {lease} answered {info}")
        self._promised(lease, call.issued_at, f"the keepalive issued at {call.issued_at:.3f} at {call.node}")

    def _schedule_keepalive(self, lease: SimLease) -> None:
        if lease.keeper is None or not lease.keeper.active():
            lease.keeper = self.sim.clock.callLater(lease.ttl / 3, self._keep_alive, lease)

    def _keep_alive(self, lease: SimLease) -> None:
        lease.keeper = None
        if lease.keep and not lease.ended:
            self.keepalive(lease)
            lease.keeper = self.sim.clock.callLater(lease.ttl / 3, self._keep_alive, lease)

    def abandon(self, lease: SimLease) -> None:
        """The client stops keeping ``lease`` alive (it crashed, or lost interest)."""
        if lease.keep:
            self.sim._note("abandon", lease)
        lease.keep = False
        if lease.keeper is not None and lease.keeper.active():
            lease.keeper.cancel()
        lease.keeper = None

    def revoke(self, lease: SimLease, node_id: str | None = None) -> LeaseCall | None:
        """``revoke_lease`` at ``node_id`` (None: the leader). The lease is no longer
        kept alive either way."""
        self.abandon(lease)
        node_id = node_id or self._leader_id()
        if node_id is None:
            return None
        call = LeaseCall("revoke", node_id, self.sim.now, lease.lease_id, lease.ttl)
        self.calls.append(call)
        service = self._service(node_id)
        if service is None:
            call.outcome, call.error = "fail", "node down"
            return call
        self.stats.revokes += 1
        lease.revoke_asked = True
        d = service.revoke_lease(lease.lease_id)
        self.sim._note("revoke", node_id, lease)
        d.addCallbacks(self._revoked, self._call_failed, callbackArgs=(call, lease), errbackArgs=(call,))
        return call

    def _revoked(self, revision: int, call: LeaseCall, lease: SimLease) -> None:
        if not self._first_answer(call, revision):
            return
        call.outcome, call.answer = "ok", revision
        self.stats.revokes_acked += 1
        lease.revoked_at_revision = revision
        self._check_revoke_revision(lease)

    def _first_answer(self, call: LeaseCall, answer: object) -> bool:
        if call.outcome != "pending":
            self.sim._problems.append(f"{call.kind} {call} answered twice (now with {answer!r})")
            return False
        return True

    def _call_failed(self, failure: Failure, call: LeaseCall) -> None:
        if call.outcome != "pending":
            self.sim._problems.append(f"{call.kind} {call} answered twice (now with {failure.value!r})")
            return
        call.error = repr(failure.value)
        if failure.check(NotLeaderError, Unavailable):
            call.outcome = "fail"
        elif failure.check(OutcomeUnknown):
            call.outcome = "unknown"
        elif failure.check(LeaseNotFound) and call.kind != "grant":
            call.outcome = "fail"
            self._not_found(call)
        else:
            self.sim._problems.append(
                f"{call.kind} at {call.node} failed unexpectedly: {failure.getTraceback()}"
            )

    def _not_found(self, call: LeaseCall) -> None:
        """A keepalive or revoke answered ``LeaseNotFound``: the client gives the lease up.
        Recorded when the committed log holds the lease and it is promised time still."""
        lease = self.leases.get(call.lease_id)
        if lease is None:
            return
        self.abandon(lease)
        now = self.sim.now
        granted = self.sim._ref.has_lease(call.lease_id)
        if granted and not lease.ended and lease.must_last_until > now + EPSILON:
            self.false_not_found.append(
                f"{call.kind} of {lease} issued at {call.issued_at:.3f} to {call.node} answered "
                f"LeaseNotFound at {now:.3f}, but the committed log holds the lease and an "
                f"acknowledged renewal promises it until {lease.must_last_until:.3f}"
            )
            self.sim._note("false LeaseNotFound", call.kind, lease, call.node)

    # ------------------------------------------------------------------ what the sim reports

    def attach_node(self, node: Any, service: Any) -> Any:
        """What ``service.attach`` gets instead of ``node``: the node, recording proposals.
        Also follows what the service applies."""
        node_id = node.config.node_id
        service.on_applied(lambda index, events: self.applied(node_id, index, events))
        return _RecordingNode(node, self)

    def proposed(self, node_id: str, index: int, term: int, data: bytes) -> None:
        try:
            command: Command | None = decode_command(data)
        except DecodeError:
            command = None
        self.proposals.setdefault((index, term), (self.sim.now, node_id, command))

    def applied(self, node_id: str, index: int, events: tuple[Event, ...]) -> None:
        self.first_applied.setdefault(index, self.sim.now)
        self._streams.append((node_id, index, tuple(events)))

    def replayed(
        self, entry: Entry, command: Command | None, result: ApplyResult | None, before: Lease | None
    ) -> None:
        """The reference applied committed ``entry`` (``before``: for a ``LeaseRevoke``,
        the lease as it was just before)."""
        if command is None or result is None:
            return
        applied_at = self.first_applied.get(entry.index, self.sim.now)
        if isinstance(command, LeaseGrant) or (isinstance(command, Put) and command.grant_ttl_ms):
            if result.ok and result.lease:
                ms = command.ttl_ms if isinstance(command, LeaseGrant) else command.grant_ttl_ms
                proposed = self.proposals.get((entry.index, entry.term))
                lease = self._lease(result.lease, ms / 1000.0, proposed[0] if proposed else self.sim.now)
                lease.renewed_at = applied_at
        elif isinstance(command, LeaseRenew):
            for lease_id in command.lease_ids:
                lease = self.leases.get(lease_id)
                state = self.sim._ref.lease(lease_id)
                if lease is not None and state is not None and state.renewed_index == entry.index:
                    lease.renewed_at = applied_at
        elif isinstance(command, LeaseRevoke):
            self._lease_ended(entry, command, result, before)
        self._check_attachments(command)

    def _lease_ended(
        self, entry: Entry, command: LeaseRevoke, result: ApplyResult, before: Lease | None
    ) -> None:
        if not result.ok:
            if before is not None and command.if_renewed_index == 0:
                raise self.sim._violation(f"{command} at {entry.index} did not apply to {before}")
            return
        if before is None:
            raise self.sim._violation(f"{command} at {entry.index} applied, but there was no such lease")
        # (d) every key of the lease is deleted at this revision, and nothing else is
        deleted = sorted(e.key for e in result.events)
        if deleted != sorted(before.keys) or any(
            e.type != "delete" or e.revision != entry.index for e in result.events
        ):
            raise self.sim._violation(
                f"{command} at {entry.index} deleted {result.events}, but the lease had keys {before.keys}"
            )
        ref = self.sim._ref
        left = [key for key in before.keys if ref.get(key) is not None]
        if left or ref.has_lease(command.lease_id):
            raise self.sim._violation(f"{command} at {entry.index} left keys {left} or the lease behind")
        lease = self._lease(command.lease_id, before.ttl_ms / 1000.0, self.sim.now)
        proposed = self.proposals.get((entry.index, entry.term))
        if proposed is None:
            raise self.sim._violation(f"committed {command} at {entry.index}@{entry.term} was never proposed")
        lease.end_index = entry.index
        lease.end_kind = "expiry" if command.if_renewed_index else "revoke"
        lease.end_proposed_at, lease.end_proposer = proposed[0], (proposed[1], entry.term)
        lease.end_applied_at = self.first_applied.get(entry.index, self.sim.now)
        self.abandon(lease)
        self.stats.keys_deleted += len(before.keys)
        if lease.end_kind == "expiry":
            self.stats.expired += 1
            self._check_not_early(lease)
        else:
            self.stats.revoked += 1
            self._check_revoke_revision(lease)
        self.sim._note("lease ended", lease, lease.end_kind, "at", entry.index, "proposed by", proposed[1],
                       f"at {proposed[0]:.3f}", "keys", before.keys)

    def _check_attachments(self, command: Command) -> None:
        """(d) After a write: every key it put on a lease is one of that lease's keys."""
        if isinstance(command, Put):
            keys = [command.key]
        elif isinstance(command, Txn):
            keys = [op.key for op in command.success + command.failure if isinstance(op, Put)]
        else:
            return
        ref = self.sim._ref
        for key in keys:
            item = ref.get(key)
            if item is not None and item.lease:
                lease = ref.lease(item.lease)
                if lease is None or key not in lease.keys:
                    raise self.sim._violation(f"{item} is attached to lease {item.lease}, which is {lease}")

    # ------------------------------------------------------------------ (b)

    def _lease(self, lease_id: int, ttl: float, known_at: float) -> SimLease:
        lease = self.leases.get(lease_id)
        if lease is None:
            lease = self.leases[lease_id] = SimLease(lease_id, ttl, known_at, last_attempt=known_at)
        return lease

    def _promised(self, lease: SimLease, issued_at: float, what: str) -> None:
        """An acknowledged grant or keepalive issued at ``issued_at`` (``what``)."""
        if issued_at + lease.ttl > lease.must_last_until:
            lease.must_last_until = issued_at + lease.ttl
            lease.promised_by = what
            self._check_not_early(lease)

    def _check_not_early(self, lease: SimLease) -> None:
        """(b) An expiry proposed before ``must_last_until``."""
        if lease.end_kind != "expiry":
            return
        if lease.end_proposed_at < lease.must_last_until - EPSILON:
            proposer, term = lease.end_proposer
            raise self.sim._violation(
                f"{lease} ended early: its expiry (entry {lease.end_index}) was proposed by {proposer} "
                f"in term {term} at {lease.end_proposed_at:.3f} (first applied at "
                f"{lease.end_applied_at:.3f}), but {lease.promised_by}, acknowledged, promised it until "
                f"{lease.must_last_until:.3f}"
            )

    def _check_revoke_revision(self, lease: SimLease) -> None:
        if lease.revoked_at_revision is not None and lease.ended and (
            lease.end_kind != "revoke" or lease.end_index != lease.revoked_at_revision
        ):
            raise self.sim._violation(
                f"revoke of {lease} acknowledged at revision {lease.revoked_at_revision}, but it ended by "
                f"{lease.end_kind} at {lease.end_index}"
            )

    # ------------------------------------------------------------------ every event

    def check(self) -> None:
        """After every event: each replica's applied changes against the committed log's
        replay (a), and whether an active lessor leads (for outages)."""
        if self._streams:
            ref_results = self.sim._ref_results
            top = self.sim._ref.applied_index
            pending = []
            for node_id, index, events in self._streams:
                if index > top:
                    pending.append((node_id, index, events))
                    continue
                result = ref_results[index][1]
                want = result.events if result is not None else ()
                if tuple(want) != events:
                    raise self.sim._violation(
                        f"{node_id} applied {events} at {index}, but the committed log's replay "
                        f"changes {want} there"
                    )
            self._streams = pending
        active = False
        for node in self.sim.up():
            core = node.core
            service = self.sim.services.get(node)
            if core is not None and core.role is Role.LEADER and service is not None and service._lessor.active:
                active = True
                self.activations.setdefault((node.config.node_id, core.term), self.sim.now)
        last = self.outages[-1]
        if active and last[1] is None:
            last[1] = self.sim.now
        elif not active and last[1] is not None:
            self.outages.append([self.sim.now, None])

    def outage(self, start: float, end: float) -> float:
        """How long within [start, end] no node was an active lessor."""
        total = 0.0
        for a, b in self.outages:
            b = end if b is None else b
            total += max(0.0, min(b, end) - max(a, start))
        return total

    # ------------------------------------------------------------------ (c)

    def report(self, lease: SimLease, intervals: float = 1.0) -> dict[str, float]:
        """How late ``lease`` ended: ``excess`` = end (first applied) - (last attempt +
        ttl); ``outage``: the time without an active lessor within [last attempt, end];
        ``bound``: what (c) allows the excess, ``intervals`` checkpoint intervals plus
        ``outage`` plus ``slack``."""
        end = lease.end_applied_at if lease.ended else self.sim.now
        outage = self.outage(lease.last_attempt, end)
        return {
            "last_attempt": lease.last_attempt,
            "ended": end,
            "excess": end - (lease.last_attempt + lease.ttl),
            "outage": outage,
            "bound": intervals * self.checkpoint_interval + outage + self.slack,
        }

    def check_bound(self, lease: SimLease, intervals: float = 1.0) -> dict[str, float]:
        """(c) for a scripted failover: ``lease``, not kept alive since its last renewal
        attempt, must have ended by last attempt + ttl + ``intervals`` checkpoint
        intervals + the time the cluster had no active lessor meanwhile + ``slack``.
        Returns ``report``; raises ``Violation`` otherwise."""
        r = self.report(lease, intervals)
        if not lease.ended or r["excess"] > r["bound"] + EPSILON:
            state = f"ended at {r['ended']:.3f}" if lease.ended else f"is still there at {r['ended']:.3f}"
            raise self.sim._violation(
                f"{lease} outlived its bound: last renewal attempt at {lease.last_attempt:.3f}, so it must "
                f"end by {lease.last_attempt + lease.ttl + r['bound']:.3f} (ttl + {intervals:g} checkpoint "
                f"interval(s) of {self.checkpoint_interval:g}s + {r['outage']:.3f}s without an active lessor "
                f"+ slack {self.slack:g}s), but it {state}: {r['excess']:.3f}s after last attempt + ttl"
            )
        return r

    def settle(self) -> None:
        """With the cluster healed and converged (``NodeSim.settle``): stop every
        keepalive; every lease must end by ``max(last attempt, last renewal applied,
        activation of the leader that ends it) + ttl + slack`` (that leader restarts each
        countdown from at most ``ttl`` when it activates, and from ``ttl`` when it applies
        a renewal; attempts made while messages were lost may commit late)."""
        live = [lease for lease in self.leases.values() if not lease.ended]
        for lease in self.leases.values():
            self.abandon(lease)
        if not live:
            return
        sim = self.sim
        start = sim.now
        budget = max(max(lease.last_attempt, start) + lease.ttl for lease in live) + 4 * sim.options.election_timeout
        sim.run_until(lambda: all(lease.ended for lease in live), budget - start)
        for lease in live:
            if lease.ended:
                activated = self.activations.get(lease.end_proposer, start)
                end = lease.end_applied_at
            else:
                leader = sim.leader()
                key = (leader.config.node_id, leader.core.term) if leader is not None else None
                activated = self.activations.get(key, start)
                end = sim.now
            start_of_countdown = max(lease.last_attempt, lease.renewed_at, activated)
            bound = start_of_countdown + lease.ttl + self.slack
            self.stats.settle_excess.append(end - (start_of_countdown + lease.ttl))
            if not lease.ended or end > bound + EPSILON:
                raise sim._violation(
                    f"{lease} outlived its bound: last renewal attempt at {lease.last_attempt:.3f}, applied "
                    f"at {lease.renewed_at:.3f}, the leader active since {activated:.3f}, so it must end by "
                    f"{bound:.3f}; "
                    + (f"it ended at {end:.3f}" if lease.ended else f"it is still there at {end:.3f}")
                )


class _RecordingNode:
    """The node as its service sees it (``Consensus``), telling ``SimLeases`` of every
    proposal it accepts."""

    def __init__(self, node: Any, leases: SimLeases) -> None:
        self._node = node
        self._leases = leases

    def propose(self, data: bytes) -> tuple[int, int]:
        index, term = self._node.propose(data)
        self._leases.proposed(self._node.config.node_id, index, term, data)
        return index, term

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)
