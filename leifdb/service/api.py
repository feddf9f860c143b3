"""The service as its front ends see it: typed values in, typed values (or errors) out.

Front ends (HTTP routes, the SSE watch stream, later the CLI's server side, metrics) talk
to one object implementing ``Service``; they never touch the node, the core or the store.
Errors are the ones of ``leifdb.errors``:

- ``NotLeaderError``: nothing was done; ``leader_http`` says where the leader is (None: no
  leader known).
- ``Unavailable``: a linearizable read (or a write) cannot be served now; nothing was done.
- ``OutcomeUnknown``: a write was proposed but its fate is not known.
- ``Compacted``: a watch or wait starts before the kept history.
- ``LimitExceeded`` / ``InvalidRequest``: the request is over a limit / makes no sense.
- ``MembershipRefused``: a membership change or leadership transfer is not allowed (409)
  or names no member (404); nothing was done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred

from leifdb.errors import InvalidRequest
from leifdb.kv.commands import Condition, Event, Fence, Item, Txn, TxnResult

__all__ = [
    "ADDRESS_PATTERN",
    "CONSISTENCY_LINEARIZABLE",
    "CONSISTENCY_STALE",
    "ClusterMembers",
    "ELECTION_PREFIX",
    "Holder",
    "LOCK_PREFIX",
    "LeaseInfo",
    "MEMBER_ID_MAX_BYTES",
    "MEMBER_ID_PATTERN",
    "MemberInfo",
    "NodeStatus",
    "ObserveSink",
    "Page",
    "Service",
    "ServiceLimits",
    "WatchHandle",
    "WatchSink",
    "WriteResult",
    "check_address",
    "check_member_id",
    "election_prefix",
    "lock_fence",
    "lock_prefix",
]

CONSISTENCY_LINEARIZABLE = "linearizable"
CONSISTENCY_STALE = "stale"

# Where locks and elections keep their keys: ``{prefix}{name}/{lease id}`` (etcd's
# recipe: one key per owner; the lowest create revision holds).
LOCK_PREFIX = "_lock/"
ELECTION_PREFIX = "_election/"


def lock_prefix(name: str) -> str:
    """Where lock ``name``'s owners keep their keys."""
    return f"{LOCK_PREFIX}{name}/"


def election_prefix(name: str) -> str:
    """Where election ``name``'s candidates keep their keys."""
    return f"{ELECTION_PREFIX}{name}/"


def lock_fence(name: str, token: int) -> Fence:
    """The fence of ``PUT ?fence=NAME:TOKEN``: lock ``name`` still held with ``token``."""
    return Fence(lock_prefix(name), token)


# A member id as ``--members`` makes them: a name (``n4``) or, for an unnamed member, its
# ``host:port``. The HTTP document states the same pattern and length, so what the API
# documents as valid and what the service accepts never differ.
MEMBER_ID_PATTERN = r"[A-Za-z0-9\[][A-Za-z0-9._:\[\]-]*"
MEMBER_ID_MAX_BYTES = 256
# ``host:port`` (a name, an IPv4 address or ``[IPv6]``); the port is checked for 1..65535.
ADDRESS_PATTERN = r"[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}"
_MEMBER_ID = re.compile(MEMBER_ID_PATTERN)
_ADDRESS = re.compile(ADDRESS_PATTERN)


def check_member_id(member_id: object, what: str = "member id") -> str:
    """``member_id`` if it can name a member; ``InvalidRequest`` saying why otherwise."""
    if not isinstance(member_id, str) or not member_id:
        raise InvalidRequest(f"the {what} must be a non-empty string")
    if len(member_id) > MEMBER_ID_MAX_BYTES:
        raise InvalidRequest(f"the {what} is longer than {MEMBER_ID_MAX_BYTES} characters")
    if not _MEMBER_ID.fullmatch(member_id):
        raise InvalidRequest(
            f"the {what} {member_id!r} is not a name (letters, digits, '.', '_', '-') or "
            "host:port"
        )
    return member_id


def check_address(address: object, what: str) -> str:
    """``address`` if it is ``host:port`` with a port in 1..65535; else ``InvalidRequest``."""
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise InvalidRequest(f"the {what} must be host:port, not {address!r}")
    port = int(address.rpartition(":")[2])
    if not 1 <= port <= 65535:
        raise InvalidRequest(f"the {what} {address!r} has a port outside 1..65535")
    return address


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node's view of the cluster. ``role`` is ``leader``, ``follower``, ``learner``
    (a follower that does not vote), ``candidate`` or ``starting``; ``leader_http`` is the
    leader's client address (``host:port``).

    ``healthy`` is what a load balancer or readiness probe needs: False (``reason`` says
    why) while no leader is known, or while a follower has not heard from its leader for
    more than an election timeout (``leader_contact_seconds`` ago; 0 on the leader, None
    when no leader is known)."""

    node: str
    role: str
    term: int
    leader: str | None
    leader_http: str | None
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    version: str
    revision: int
    compact_revision: int
    watchers: int
    cluster_id: str
    healthy: bool
    reason: str | None
    leader_contact_seconds: float | None


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member as this node knows it. ``match_index`` (the last log index known to be
    on the member) and ``last_contact_seconds`` (since the leader last heard from it) are
    the leader's to tell: None on other nodes."""

    id: str
    raft_address: str
    http_address: str
    learner: bool
    match_index: int | None
    last_contact_seconds: float | None
    is_leader: bool


@dataclass(frozen=True, slots=True)
class ClusterMembers:
    """The member list of this node's latest configuration (committed or not, as Raft
    uses it), as seen by ``node``; ``leader``: the leader's id, None when none is known."""

    cluster_id: str
    node: str
    leader: str | None
    members: tuple[MemberInfo, ...]
    config_index: int = 0  # log index of this configuration's entry (0: the bootstrap list)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a range read, in key order. ``revision`` is the store's revision the
    page was read at; ``more``: further keys match after the last one returned."""

    items: tuple[Item, ...]
    more: bool
    revision: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A put or delete that committed. ``ok`` False: the condition failed and nothing
    changed (``current`` is the key as it is). ``revision``: the write's revision."""

    ok: bool
    revision: int
    current: Item | None = None
    failure: str | None = None
    lease: int = 0


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A lease as the leader sees it. ``ttl``: seconds granted; ``remaining``: seconds left
    before the leader expires it (``ttl`` right after a grant or keepalive); ``keys``:
    attached keys in key order (filled by ``lease_info`` only); ``revision``: the store
    revision of the answer."""

    id: int
    ttl: float
    remaining: float
    keys: tuple[str, ...] = ()
    revision: int = 0


@dataclass(frozen=True, slots=True)
class Holder:
    """A lock's holder or an election's leader: its key under the lock's or election's
    prefix, ``token`` (the key's create revision: strictly increasing with every
    acquisition, the fencing token), the owning ``lease``, the ``value`` and the key's
    current ``revision`` (a proclaim changes it, never the token)."""

    name: str
    key: str
    token: int
    lease: int
    value: str
    revision: int


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """Limits the service enforces, with their defaults (the one place they are defined;
    ``leifdb.nodeconfig`` and the HTTP layer take them from here)."""

    max_key_bytes: int = 1024
    max_value_bytes: int = 1 << 20
    default_page_size: int = 100
    max_page_size: int = 1000
    max_page_bytes: int = 4 << 20
    max_txn_ops: int = 1024
    max_txn_bytes: int = 8 << 20
    history_events: int = 1_000_000
    history_bytes: int = 256 << 20
    watcher_buffer_events: int = 10_000
    watcher_buffer_bytes: int = 8 << 20
    max_watchers: int = 100_000
    progress_interval: float = 5.0
    max_wait_seconds: float = 600.0
    default_wait_seconds: float = 60.0
    max_leases: int = 100_000
    min_lease_ttl: float = 2.0
    max_lease_ttl: float = 30 * 86_400.0
    max_keys_per_lease: int = 10_000
    lease_checkpoint_interval: float = 1.0
    max_name_bytes: int = 256


class WatchSink(Protocol):
    """Where a watch delivers (an SSE response, a test). Called on the reactor thread."""

    def events(self, events: list[Event]) -> bool:
        """Deliver changes of one revision (all of a transaction's together); the sink
        always takes them. Return False when it cannot take more after these (its buffer
        is full): the service then queues further changes until ``WatchHandle.resume``,
        up to the watcher buffer bound, past which it ends the watch with ``overflow``."""
        ...

    def progress(self, revision: int) -> None:
        """A bookmark: every change up to ``revision`` has been delivered."""
        ...

    def closed(self, reason: str, compact_revision: int | None = None) -> None:
        """The watch ended for ``reason``: ``compacted`` (its position left the history
        window; ``compact_revision`` is where history starts), ``overflow`` (too slow),
        ``shutdown`` (the node stops) or ``cancelled``."""
        ...


class ObserveSink(Protocol):
    """Where an election's observe stream delivers. Called on the reactor thread."""

    def leader(self, holder: Holder | None, revision: int) -> None:
        """The election's leader (or its value) at ``revision``; None: no leader."""
        ...

    def closed(self, reason: str, compact_revision: int | None = None) -> None:
        """As ``WatchSink.closed``."""
        ...


class WatchHandle(Protocol):
    @property
    def start_revision(self) -> int: ...

    def resume(self) -> None:
        """The sink can take more again: deliver what is queued."""
        ...

    def cancel(self) -> None:
        """Stop the watch (the client went away); ``closed`` is not called."""
        ...


class Service(Protocol):
    """One node's key-value service (``leifdb.service.KVService``)."""

    limits: ServiceLimits

    @property
    def revision(self) -> int:
        """The revision of this node's applied state (its applied log index)."""
        ...

    def get(self, key: str, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Item | None]:
        ...

    def snapshot(self, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Any]:
        """A consistent snapshot of the state machine after the read barrier: a
        ``leifdb.service.backup.SnapshotFile`` (file, size, crc32c, revision...)."""
        ...

    def range(
        self,
        prefix: str,
        start_after: str | None = None,
        limit: int | None = None,
        consistency: str = CONSISTENCY_LINEARIZABLE,
    ) -> Deferred[Page]:
        """At most ``limit`` (default ``default_page_size``, at most ``max_page_size``)
        items, stopping early past ``max_page_bytes`` of keys and values."""
        ...

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
        """``lease``: attach to that lease (``LeaseNotFound`` if absent); ``ttl``: grant a
        lease of that many seconds for this key alone (not with ``lease``); ``fence``: see
        ``Fence``. A failed condition or fence: ``ok`` False, ``failure`` says which."""
        ...

    def delete(
        self, key: str, condition: Condition | None = None, *, fence: Fence | None = None
    ) -> Deferred[WriteResult]:
        ...

    # -- leases (served by the leader: elsewhere ``NotLeaderError``) ---------------------

    def grant_lease(self, ttl: float) -> Deferred[LeaseInfo]:
        """``InvalidRequest`` outside ``min_lease_ttl..max_lease_ttl``, ``LimitExceeded``
        past ``max_leases``."""
        ...

    def keepalive(self, lease_id: int) -> Deferred[LeaseInfo]:
        """Renew through the log (batched): fires once the renewal committed. A lease whose
        deadline passed is not renewed: ``LeaseNotFound``."""
        ...

    def lease_info(self, lease_id: int) -> Deferred[LeaseInfo]:
        ...

    def leases(self) -> Deferred[list[LeaseInfo]]:
        """Every lease, by id, without keys."""
        ...

    def revoke_lease(self, lease_id: int) -> Deferred[int]:
        """Fires with the revision that deleted the lease and its keys."""
        ...

    # -- locks and elections -------------------------------------------------------------

    def lock(self, name: str, lease: int, *, value: str = "", timeout: float) -> Deferred[Holder]:
        """Wait (in order of arrival) until this lease holds lock ``name``; ``LockTimeout``
        after ``timeout`` seconds (the waiter's key is removed). Cancelling the Deferred
        removes the waiter's key too. The same lease asking again gets its own key back."""
        ...

    def lock_holder(self, name: str, consistency: str = CONSISTENCY_LINEARIZABLE
                    ) -> Deferred[Holder | None]:
        ...

    def campaign(self, name: str, lease: int, value: str, *, timeout: float) -> Deferred[Holder]:
        """As ``lock``, under the election prefix, the value being the candidate's."""
        ...

    def election_leader(self, name: str, consistency: str = CONSISTENCY_LINEARIZABLE
                        ) -> Deferred[Holder | None]:
        ...

    def proclaim(self, name: str, token: int, value: str) -> Deferred[Holder]:
        """The leader with ``token`` announces a new value; ``NotHolder`` otherwise."""
        ...

    def resign(self, name: str, token: int) -> Deferred[int]:
        """The leader with ``token`` steps down (its key is deleted); ``NotHolder``
        otherwise. Fires with the revision of the delete."""
        ...

    def observe(self, sink: ObserveSink, name: str) -> WatchHandle:
        """Deliver the election's current leader at once, then every change of its
        leader or of the leader's value, from this node's applied state."""
        ...

    def txn(self, txn: Txn, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[TxnResult]:
        """A read-only transaction is served after a read barrier (or at once when
        ``consistency`` is stale) without a log entry; any other goes through the log.
        Raises ``LimitExceeded`` past ``max_txn_ops``/``max_txn_bytes``, ``InvalidRequest``
        for two writes to one key."""
        ...

    def barrier(self, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[None]:
        """Fires once this node's applied state includes every write committed before
        the call (at once for ``stale``): where a watch that starts "now" begins."""
        ...

    def watch(
        self,
        sink: WatchSink,
        key: str,
        *,
        prefix: bool = False,
        start_revision: int | None = None,
    ) -> WatchHandle:
        """Deliver every change of ``key`` (or of keys under it when ``prefix``) with a
        revision >= ``start_revision`` (None: changes after the current revision), from
        this node's applied state, in order, each revision once. Raises ``Compacted`` when
        ``start_revision`` is older than the history kept, ``LimitExceeded`` past
        ``max_watchers``. Replayed history is delivered before this returns."""
        ...

    def wait(
        self, key: str, *, prefix: bool, wait_revision: int, timeout: float
    ) -> Deferred[list[Event]]:
        """Long poll: fires with the changes of ``key`` (or under it) at revisions >=
        ``wait_revision`` as soon as there is at least one (all of that first revision), or
        with [] after ``timeout`` seconds. Raises ``Compacted`` like ``watch``."""
        ...

    def status(self) -> NodeStatus:
        ...

    # -- membership (changes are served by the leader: elsewhere ``NotLeaderError``) -----

    def members(self) -> ClusterMembers:
        """This node's view of the members, at once (no barrier, no redirect);
        ``Unavailable`` before the node is attached."""
        ...

    def add_member(self, member_id: str, raft_address: str, http_address: str = ""
                   ) -> Deferred[ClusterMembers]:
        """Add a learner (it receives the log, never votes); fires with the new member
        list once the change is applied here. ``MembershipRefused`` (409) when the id or
        the Raft address is taken."""
        ...

    def promote_member(self, member_id: str) -> Deferred[ClusterMembers]:
        """Make a caught-up learner a voter. ``MembershipRefused``: 404 no such member,
        409 already a voter or lagging too far behind."""
        ...

    def remove_member(self, member_id: str, force: bool = False) -> Deferred[ClusterMembers]:
        """Remove a member (the leader too: it hands over once the change commits).
        ``force``: skip the check that a quorum of the remaining voters is reachable."""
        ...

    def transfer_leader(self, to: str) -> Deferred[str]:
        """Hand leadership to voter ``to``; fires with the new leader's id once another
        node leads (at once if ``to`` already leads). ``Unavailable`` if it does not
        happen within an election timeout."""
        ...

    def on_applied(self, observer: Callable[[int, tuple[Event, ...]], None]) -> Callable[[], None]:
        """Call ``observer(revision, events)`` after every applied entry (events may be
        empty); returns a function that unsubscribes."""
        ...
