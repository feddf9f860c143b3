"""Key-value commands as plain values; ``leifdb.wire`` encodes them into log entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class Condition:
    """At most one test is set. ``prev_value``: the current value equals it;
    ``prev_revision``: the key's revision equals it; ``must_be_absent``: the key is absent."""

    prev_value: str | None = None
    prev_revision: int | None = None
    must_be_absent: bool = False


@dataclass(frozen=True, slots=True)
class Fence:
    """A write guarded by a lock's fencing token: it applies only while the key with the
    lowest ``create_revision`` under ``prefix`` (the lock's holder, etcd's recipe) has
    ``create_revision == token``. No key under the prefix: the fence fails."""

    prefix: str
    token: int


@dataclass(frozen=True, slots=True)
class Put:
    """``lease``: attach the key to that lease (0: no lease; a put without a lease detaches
    the key from the one it had). ``grant_ttl_ms`` (only outside transactions, with
    ``lease`` 0): grant a new lease of that TTL whose id is this entry's index and attach
    the key to it, in the same entry (``PUT ?ttl=``). ``fence``: see ``Fence``."""

    key: str
    value: str
    condition: Condition | None = None
    lease: int = 0
    grant_ttl_ms: int = 0
    fence: Fence | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    condition: Condition | None = None
    fence: Fence | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """``revision``: the index of the write that last changed the key; ``create_revision``:
    of the write that created it (since it was last absent); ``lease``: the lease it is
    attached to, 0 for none."""

    key: str
    value: str
    revision: int
    create_revision: int = 0
    lease: int = 0


# --------------------------------------------------------------------------- leases
#
# Lease state is replicated and time-free: the log says how long a lease had left when
# the leader last wrote it down (``remaining_ms``), never a clock reading. Only the leader
# keeps deadlines (``leifdb.service.leases``), and only the log expires a lease.


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """A new lease of ``ttl_ms``; its id is the index of this entry."""

    ttl_ms: int


@dataclass(frozen=True, slots=True)
class LeaseRenew:
    """Keepalives (batched): each lease still present gets ``remaining_ms = ttl_ms`` and
    ``renewed_index`` = this entry's index. Absent ids are skipped."""

    lease_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LeaseCheckpoint:
    """The leader writes down what each lease has left: ``(id, remaining_ms)`` pairs.
    Absent ids are skipped; ``renewed_index`` is unchanged."""

    remaining: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class LeaseRevoke:
    """Delete lease ``lease_id`` and every key attached to it, at this entry's revision.
    ``if_renewed_index`` (expiry): only if the lease's ``renewed_index`` still equals it,
    so a keepalive that committed after the leader decided to expire the lease wins. 0:
    unconditional (a client's revoke). An absent lease: nothing happens."""

    lease_id: int
    if_renewed_index: int = 0


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as the replicated state holds it. ``keys`` in key order."""

    id: int
    ttl_ms: int
    remaining_ms: int
    renewed_index: int
    keys: tuple[str, ...] = ()


# Why a write did not apply (``ApplyResult.error``).
FAILED_CONDITION = "condition"
FAILED_FENCE = "fence"
FAILED_LEASE_NOT_FOUND = "lease_not_found"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """``ok`` False: the condition failed and nothing changed; ``current`` is the key as it
    is (None if absent). ``revision`` is the log index of this command when it applied.
    ``events``: the changes it made (empty if none), in order. ``txn``: for a ``Txn``, its
    result (``ok`` is then ``txn.succeeded``). ``error`` when ``ok`` is False for a put or
    delete: ``FAILED_CONDITION``, ``FAILED_FENCE`` or ``FAILED_LEASE_NOT_FOUND`` (for a
    ``Txn`` whose put names an absent lease: the whole transaction applies nothing, ``ok``
    False, ``txn`` None). ``lease``: a put's lease after it applied (the granted id for
    ``grant_ttl_ms``); a ``LeaseGrant``'s new id."""

    ok: bool
    revision: int
    current: Item | None = None
    events: tuple[Event, ...] = ()
    txn: TxnResult | None = None
    error: str | None = None
    lease: int = 0


# --------------------------------------------------------------------------- transactions
#
# A transaction is one log entry: its compares are evaluated against the state as it is
# when the entry applies, then every operation of the chosen branch applies in order at
# the entry's index (one revision for all of its changes). Reads inside a branch see the
# writes made before them in the same branch.

COMPARE_TARGETS = ("value", "revision", "create_revision", "lease", "exists")
COMPARE_OPS = ("equal", "not_equal", "greater", "less")


@dataclass(frozen=True, slots=True)
class Compare:
    """``target`` of ``key`` compared with ``value`` by ``op``.

    - ``value``: ``value`` is a str; an absent key fails every comparison.
    - ``revision``, ``create_revision``, ``lease``: ``value`` is an int; an absent key has
      0 for each (``lease`` 0: no lease).
    - ``exists``: ``value`` is a bool; only ``equal`` and ``not_equal`` make sense.
    ``greater`` and ``less`` compare code points for values, numbers for revisions.
    """

    key: str
    target: str
    op: str
    value: str | int | bool


@dataclass(frozen=True, slots=True)
class Get:
    key: str


@dataclass(frozen=True, slots=True)
class Range:
    prefix: str
    start_after: str | None = None
    limit: int | None = None


TxnOp = Union[Put, Delete, Get, Range]


@dataclass(frozen=True, slots=True)
class Txn:
    """If every compare holds, ``success`` applies, else ``failure``. The ``Put`` and
    ``Delete`` inside carry no ``condition``, ``fence`` or ``grant_ttl_ms`` (the compares
    are the conditions); a ``Put`` may carry a ``lease``."""

    compare: tuple[Compare, ...] = ()
    success: tuple[TxnOp, ...] = ()
    failure: tuple[TxnOp, ...] = ()

    @property
    def read_only(self) -> bool:
        """No branch writes: it can be served by a read barrier instead of a log entry."""
        return not any(isinstance(op, (Put, Delete)) for op in self.success + self.failure)


Command = Union[Put, Delete, Txn, LeaseGrant, LeaseRenew, LeaseCheckpoint, LeaseRevoke]


@dataclass(frozen=True, slots=True)
class OpResult:
    """The result of one operation of a transaction's branch, in branch order.

    ``put``: ``item`` is the new item. ``delete``: ``item`` is the deleted item or None when
    the key was absent. ``get``: ``item`` or None. ``range``: ``items`` and ``more``."""

    op: str
    item: Item | None = None
    items: tuple[Item, ...] = ()
    more: bool = False


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``succeeded``: the compares held and ``success`` ran (else ``failure`` ran).
    ``revision`` is the log index of the transaction; for a read-only transaction served
    without the log, the store revision (applied index) it read at."""

    succeeded: bool
    revision: int
    results: tuple[OpResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Event:
    """One change of one key, as watchers see it. ``type`` is ``put`` or ``delete``;
    ``value`` is None for a delete. ``prev_value``/``prev_revision`` describe the key just
    before (None/0 when it was absent). Every change made by one log entry has that entry's
    index as ``revision``."""

    type: str
    key: str
    value: str | None
    revision: int
    prev_value: str | None = None
    prev_revision: int = 0
