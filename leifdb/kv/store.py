"""The replicated key-value state machine: applies committed commands in log order.

Every node applies the same commands at the same log indexes, so every node reaches the same
state; nothing here may depend on time, randomness, node configuration or anything outside
the command. The store is single-threaded: the node calls it from the reactor thread only.

Leases are part of that state, without clocks: a lease is its TTL, what it had left when the
leader last wrote it down (``remaining_ms``), the index of its last renewal and its keys.
Only the leader keeps deadlines; a lease ends only through a ``LeaseRevoke`` entry. Limits
on leases (how many, keys per lease) are the service's to enforce before it proposes:
applying never depends on configuration.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from leifdb.kv import snapshot
from leifdb.kv.checks import check_command
from leifdb.kv.commands import (
    FAILED_CONDITION,
    FAILED_FENCE,
    FAILED_LEASE_NOT_FOUND,
    ApplyResult,
    Command,
    Compare,
    Condition,
    Delete,
    Event,
    Fence,
    Get,
    Item,
    Lease,
    LeaseCheckpoint,
    LeaseGrant,
    LeaseRenew,
    LeaseRevoke,
    OpResult,
    Put,
    Range,
    Txn,
    TxnOp,
    TxnResult,
)
from leifdb.kv.snapshot import SnapshotFormatError
from leifdb.kv.sortedkeys import SortedKeys

__all__ = [
    "KVStore",
    "SnapshotFormatError",
    "check_command",
    "compare_holds",
    "condition_holds",
]

_OPERATORS: dict[str, Callable[[object, object], bool]] = {
    "equal": operator.eq,
    "not_equal": operator.ne,
    "greater": operator.gt,
    "less": operator.lt,
}


def condition_holds(condition: Condition | None, current: Item | None) -> bool:
    """Whether a command guarded by ``condition`` applies to the key as it is (``current``,
    None if absent). No condition, or ``Condition()`` with no test set, always holds. If
    several tests are set (the wire format allows only one) all of them must hold.

    - ``prev_value``: the key exists and its value equals it (an absent key never does).
    - ``prev_revision``: the key's revision equals it; ``0`` means "the key is absent",
      since real revisions are log indexes and start at 1.
    - ``must_be_absent``: the key does not exist.
    """
    if condition is None:
        return True
    if condition.prev_value is not None:
        if current is None or current.value != condition.prev_value:
            return False
    if condition.prev_revision is not None:
        revision = current.revision if current is not None else 0
        if revision != condition.prev_revision:
            return False
    if condition.must_be_absent and current is not None:
        return False
    return True


def compare_holds(compare: Compare, current: Item | None) -> bool:
    """Whether ``compare`` holds for its key as it is (``current``, None if absent).

    ``value``: an absent key fails every op, ``not_equal`` included (there is no value to
    differ). ``revision``, ``create_revision``, ``lease``: an absent key has 0 for each.
    ``exists``: compares the bool "the key exists"; ``greater``/``less`` order False
    before True, so that every compare that decodes has one deterministic answer.
    """
    test = _OPERATORS[compare.op]
    target = compare.target
    if target == "value":
        return current is not None and test(current.value, compare.value)
    if target == "exists":
        return test(current is not None, compare.value)
    number = 0 if current is None else getattr(current, target)
    return test(number, compare.value)


@dataclass(slots=True)
class _LeaseState:
    """A lease in the table; ``keys`` unordered (``Lease.keys`` sorts them)."""

    ttl_ms: int
    remaining_ms: int
    renewed_index: int
    keys: set[str] = field(default_factory=set)


class KVStore:
    """Keys to items, plus a sorted key index for ordered, paginated range reads, plus the
    lease table.

    ``applied_index`` is the log index of the last entry applied (0 before any). A key's
    revision is the index of the write that last changed it, so revisions are unique,
    increasing and identical on every node and across snapshot and restore. A lease's id
    is the index of the entry that granted it, so the table (a dict, insertion ordered)
    is always in increasing id order.
    """

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._keys = SortedKeys()
        self._leases: dict[int, _LeaseState] = {}
        self._applied_index = 0

    @property
    def applied_index(self) -> int:
        return self._applied_index

    def _advance(self, index: int) -> None:
        if index <= self._applied_index:
            raise ValueError(
                f"index {index} is not after the applied index {self._applied_index}"
            )
        self._applied_index = index

    # ----------------------------------------------------------------------- apply

    def apply(self, index: int, command: Command) -> ApplyResult:
        """Apply the committed ``command`` found at log ``index``.

        ``index`` must be greater than ``applied_index`` (ValueError otherwise, and nothing
        changes); gaps are allowed, since no-op and configuration entries are only noted.
        A command ``check_command`` refuses raises TypeError, also with nothing changed.
        The result's ``revision`` is always ``index``, and ``events`` lists every change
        made, in order. A put or delete that does not apply gives ``ok=False``, the
        reason in ``error`` and the key's current item (or None), and leaves the data
        unchanged, though the entry still counts as applied. Its checks, in order: a
        put's ``lease`` exists (``FAILED_LEASE_NOT_FOUND``), the condition holds
        (``FAILED_CONDITION``), the fence holds (``FAILED_FENCE``, see ``fence_holds``).
        A successful put bumps the revision even if the value is unchanged, keeps the
        key's ``create_revision`` (a new key's is ``index``) and attaches it to its
        ``lease`` (0: none), detaching it from the one it had; with ``grant_ttl_ms`` it
        first grants lease ``index``. Its ``current`` is the new item, ``lease`` its
        lease. Deleting an absent key succeeds and changes nothing (no event); a delete's
        ``current`` is None; a deleted key leaves its lease. ``Txn``: see ``_apply_txn``;
        the lease commands: see ``_apply_lease``.
        """
        check_command(command)
        self._advance(index)
        if isinstance(command, Txn):
            return self._apply_txn(index, command)
        if isinstance(command, (Put, Delete)):
            return self._apply_write(index, command)
        return self._apply_lease(index, command)

    def _apply_write(self, index: int, command: Put | Delete) -> ApplyResult:
        key = command.key
        current = self._items.get(key)
        lease = command.lease if isinstance(command, Put) else 0
        error = None
        if lease and lease not in self._leases:
            error = FAILED_LEASE_NOT_FOUND
        elif not condition_holds(command.condition, current):
            error = FAILED_CONDITION
        elif command.fence is not None and not self.fence_holds(command.fence):
            error = FAILED_FENCE
        if error is not None:
            return ApplyResult(ok=False, revision=index, current=current, error=error)
        if isinstance(command, Delete):
            _, events = self._delete(index, key)
            return ApplyResult(ok=True, revision=index, current=None, events=events)
        if command.grant_ttl_ms:
            ttl = command.grant_ttl_ms
            self._leases[index] = _LeaseState(ttl, ttl, index)
            lease = index
        item, event = self._put(index, key, command.value, lease)
        return ApplyResult(ok=True, revision=index, current=item, events=(event,), lease=lease)

    def _apply_txn(self, index: int, txn: Txn) -> ApplyResult:
        """Every compare is evaluated against the state before the entry; then the chosen
        branch runs in order at revision ``index``, each op seeing the writes before it.
        ``ok`` is ``txn.succeeded``; ``current`` is None. If a put of the chosen branch
        names an absent lease, nothing applies: ``ok`` False, ``error``
        ``FAILED_LEASE_NOT_FOUND``, ``txn`` None (no branch op can end a lease, so this
        is known before the first op)."""
        succeeded = self._compares_hold(txn.compare)
        branch = txn.success if succeeded else txn.failure
        for op in branch:
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                return ApplyResult(ok=False, revision=index, error=FAILED_LEASE_NOT_FOUND)
        events: list[Event] = []
        results: list[OpResult] = []
        for op in branch:
            if isinstance(op, Put):
                item, event = self._put(index, op.key, op.value, op.lease)
                events.append(event)
                results.append(OpResult("put", item=item))
            elif isinstance(op, Delete):
                previous, deleted = self._delete(index, op.key)
                events.extend(deleted)
                results.append(OpResult("delete", item=previous))
            else:
                results.append(self._read(op))
        result = TxnResult(succeeded, index, tuple(results))
        return ApplyResult(ok=succeeded, revision=index, events=tuple(events), txn=result)

    def _apply_lease(
        self, index: int, command: LeaseGrant | LeaseRenew | LeaseCheckpoint | LeaseRevoke
    ) -> ApplyResult:
        """``LeaseGrant``: lease ``index`` (``lease`` in the result). ``LeaseRenew`` and
        ``LeaseCheckpoint``: update the leases present, skip the others; always ``ok``.
        ``LeaseRevoke``: deletes the lease and its keys (one delete event each, in key
        order) and is ``ok``; an absent lease or a stale ``if_renewed_index``: ``ok``
        False and nothing changes."""
        leases = self._leases
        if isinstance(command, LeaseGrant):
            leases[index] = _LeaseState(command.ttl_ms, command.ttl_ms, index)
            return ApplyResult(ok=True, revision=index, lease=index)
        if isinstance(command, LeaseRenew):
            for lease_id in command.lease_ids:
                state = leases.get(lease_id)
                if state is not None:
                    state.remaining_ms = state.ttl_ms
                    state.renewed_index = index
            return ApplyResult(ok=True, revision=index)
        if isinstance(command, LeaseCheckpoint):
            for lease_id, remaining_ms in command.remaining:
                state = leases.get(lease_id)
                if state is not None:
                    state.remaining_ms = remaining_ms
            return ApplyResult(ok=True, revision=index)
        state = leases.get(command.lease_id)
        if state is None or command.if_renewed_index not in (0, state.renewed_index):
            return ApplyResult(ok=False, revision=index)
        events: list[Event] = []
        for key in sorted(state.keys):
            events.extend(self._delete(index, key)[1])
        del leases[command.lease_id]
        return ApplyResult(ok=True, revision=index, events=tuple(events))

    def evaluate_txn(self, txn: Txn) -> TxnResult:
        """Run a read-only ``txn`` against the current state without changing anything,
        as ``apply`` would at this point; the result's ``revision`` is ``applied_index``
        (the state it read). For read-only transactions served after a read barrier
        instead of through the log. ValueError if a branch writes (it must go through the
        log); TypeError for what ``check_command`` refuses."""
        check_command(txn)
        if not txn.read_only:
            raise ValueError("a transaction that writes must be applied through the log")
        succeeded = self._compares_hold(txn.compare)
        branch = txn.success if succeeded else txn.failure
        results = tuple(self._read(op) for op in branch)
        return TxnResult(succeeded, self._applied_index, results)

    def _compares_hold(self, compares: tuple[Compare, ...]) -> bool:
        return all(compare_holds(c, self._items.get(c.key)) for c in compares)

    def _read(self, op: TxnOp) -> OpResult:
        if isinstance(op, Get):
            return OpResult("get", item=self._items.get(op.key))
        assert isinstance(op, Range)
        items, more = self.range(op.prefix, op.start_after, op.limit)
        return OpResult("range", items=tuple(items), more=more)

    def _put(self, index: int, key: str, value: str, lease: int) -> tuple[Item, Event]:
        """``lease`` (0 or present in the table) has been checked by the caller."""
        previous = self._items.get(key)
        if previous is None:
            self._keys.add(key)
            item = Item(key, value, index, index, lease)
            event = Event("put", key, value, index)
        else:
            item = Item(key, value, index, previous.create_revision, lease)
            event = Event("put", key, value, index, previous.value, previous.revision)
            if previous.lease and previous.lease != lease:
                self._leases[previous.lease].keys.discard(key)
        if lease:
            self._leases[lease].keys.add(key)
        self._items[key] = item
        return item, event

    def _delete(self, index: int, key: str) -> tuple[Item | None, tuple[Event, ...]]:
        """The deleted item (None if absent) and the event (none if absent)."""
        previous = self._items.pop(key, None)
        if previous is None:
            return None, ()
        self._keys.discard(key)
        if previous.lease:
            self._leases[previous.lease].keys.discard(key)
        return previous, (Event("delete", key, None, index, previous.value, previous.revision),)

    def note_applied(self, index: int) -> None:
        """A log entry without a key-value command (no-op, configuration) was applied at
        ``index``; same ordering rule as ``apply``."""
        self._advance(index)

    # ----------------------------------------------------------------------- reads

    def get(self, key: str) -> Item | None:
        return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def range(
        self, prefix: str = "", start_after: str | None = None, limit: int | None = None
    ) -> tuple[list[Item], bool]:
        """Items whose key starts with ``prefix``, in key order (code point order, the same
        as UTF-8 byte order), only those after ``start_after`` if given, at most ``limit``
        (None: all; otherwise at least 1, else ValueError).

        Returns ``(items, more)``; ``more`` is True when further matching keys follow the
        last one returned. To paginate, pass the last key of a page as the next
        ``start_after``. Costs O(log n + len(items)).
        """
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1 (or None for no limit)")
        if start_after is not None and start_after >= prefix:
            keys = self._keys.iter_from(start_after, inclusive=False)
        else:
            keys = self._keys.iter_from(prefix, inclusive=True)
        items: list[Item] = []
        for key in keys:
            if not key.startswith(prefix):
                break
            if limit is not None and len(items) == limit:
                return items, True
            items.append(self._items[key])
        return items, False

    def holder(self, prefix: str) -> Item | None:
        """The key under ``prefix`` with the lowest ``create_revision`` (the first in key
        order among equals, which only a transaction creating several can make): a lock's
        holder or an election's leader. None when no key starts with ``prefix``. Costs
        O(log n + keys under the prefix)."""
        best: Item | None = None
        for key in self._keys.iter_from(prefix, inclusive=True):
            if not key.startswith(prefix):
                break
            item = self._items[key]
            if best is None or item.create_revision < best.create_revision:
                best = item
        return best

    def fence_holds(self, fence: Fence) -> bool:
        """Whether ``holder(fence.prefix)`` exists with ``create_revision == fence.token``."""
        holder = self.holder(fence.prefix)
        return holder is not None and holder.create_revision == fence.token

    def lease(self, lease_id: int) -> Lease | None:
        """The lease with its keys in key order; None if absent. O(k log k) for k keys."""
        state = self._leases.get(lease_id)
        if state is None:
            return None
        return Lease(lease_id, state.ttl_ms, state.remaining_ms, state.renewed_index,
                     tuple(sorted(state.keys)))

    def lease_header(self, lease_id: int) -> Lease | None:
        """The lease with ``keys`` left empty; None if absent. O(1): for the leader's
        countdown, which looks a lease up on every keepalive and expiry."""
        state = self._leases.get(lease_id)
        if state is None:
            return None
        return Lease(lease_id, state.ttl_ms, state.remaining_ms, state.renewed_index)

    def leases(self) -> list[Lease]:
        """Every lease in increasing id order, each with ``keys`` left empty (``()``) so
        that listing costs O(leases), not O(keys); ``lease(id)`` has the keys."""
        return [Lease(lease_id, s.ttl_ms, s.remaining_ms, s.renewed_index)
                for lease_id, s in self._leases.items()]

    def lease_count(self) -> int:
        return len(self._leases)

    def lease_key_count(self, lease_id: int) -> int | None:
        """How many keys lease ``lease_id`` has (None if absent); O(1), for limits."""
        state = self._leases.get(lease_id)
        return None if state is None else len(state.keys)

    def has_lease(self, lease_id: int) -> bool:
        return lease_id in self._leases

    # ----------------------------------------------------------------------- snapshots

    def write_snapshot(self, out: BinaryIO, metadata: bytes = b"") -> None:
        """Stream every item, every lease, ``applied_index`` and the opaque ``metadata``
        (for example the cluster membership) to ``out``. The same state and metadata
        always give the same bytes."""
        self.capture_snapshot()(out, metadata)

    def capture_snapshot(self) -> Callable[[BinaryIO, bytes], None]:
        """The state now, as a function that writes it as ``write_snapshot`` would, on
        any thread, whatever the store does meanwhile: items are immutable, so a list of
        them is a consistent copy (the only O(n) work done here)."""
        applied_index = self._applied_index
        items = [self._items[key] for key in self._keys]
        leases = [
            (lease_id, s.ttl_ms, s.remaining_ms, s.renewed_index)
            for lease_id, s in self._leases.items()
        ]

        def write(out: BinaryIO, metadata: bytes) -> None:
            snapshot.dump(out, applied_index, len(items), items, bytes(metadata), leases)

        return write

    @classmethod
    def read_snapshot(cls, inp: BinaryIO) -> tuple[KVStore, bytes]:
        """Rebuild a store from a stream written by ``write_snapshot`` (or by the version
        before leases); returns it and the metadata. Raises SnapshotFormatError on a
        truncated, corrupt or unknown stream, or one where an item names a lease the
        lease table does not have."""
        reader = snapshot.SnapshotReader(inp)
        items: dict[str, Item] = {}
        keys_of: dict[int, set[str]] = {}

        def keys() -> Iterator[str]:
            for item in reader.items():
                items[item.key] = item
                if item.lease:
                    keys_of.setdefault(item.lease, set()).add(item.key)
                yield item.key

        store = cls()
        store._keys = SortedKeys.from_sorted(keys())
        store._items = items
        for lease_id, ttl_ms, remaining_ms, renewed_index in reader.leases:
            store._leases[lease_id] = _LeaseState(
                ttl_ms, remaining_ms, renewed_index, keys_of.pop(lease_id, set())
            )
        if keys_of:
            raise SnapshotFormatError(
                f"items attached to lease {min(keys_of)}, which the snapshot does not have"
            )
        store._applied_index = reader.applied_index
        return store, reader.metadata
