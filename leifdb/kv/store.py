"""The replicated key-value state machine: applies committed commands in log order.

Every node applies the same commands at the same log indexes, so every node reaches the same
state; nothing here may depend on time, randomness or anything outside the command. The
store is single-threaded: the node calls it from the reactor thread only.
"""

from __future__ import annotations

import operator
from typing import BinaryIO, Callable, Iterator

from leifdb.kv import snapshot
from leifdb.kv.commands import (
    COMPARE_OPS,
    COMPARE_TARGETS,
    ApplyResult,
    Command,
    Compare,
    Condition,
    Delete,
    Event,
    Get,
    Item,
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
# The type a compare's ``value`` must have, per target (bool is checked apart: it is an int).
_COMPARE_VALUE_TYPES = {"value": str, "revision": int, "exists": bool}


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
    differ). ``revision``: an absent key has revision 0. ``exists``: compares the bool
    "the key exists"; ``greater``/``less`` order False before True, so that every compare
    that decodes has one deterministic answer.
    """
    test = _OPERATORS[compare.op]
    if compare.target == "value":
        return current is not None and test(current.value, compare.value)
    if compare.target == "revision":
        return test(current.revision if current is not None else 0, compare.value)
    return test(current is not None, compare.value)


def check_command(command: object) -> None:
    """Raise TypeError unless ``command`` is a ``Put``, ``Delete`` or ``Txn`` that ``apply``
    can apply whole. Checked before anything changes, so a transaction never stops half
    way: keys and values are str, compares have a known target and op and a value of the
    target's type, a ``Put``/``Delete`` inside a ``Txn`` has no condition, a ``Range``
    limit is None or at least 1, and the parts of a ``Txn`` are tuples. Anything the wire
    decodes passes. Costs O(number of ops); messages are built only on failure."""
    if isinstance(command, (Put, Delete)):
        problem = _write_problem(command)
        if problem is None and not (
            command.condition is None or isinstance(command.condition, Condition)
        ):
            problem = "the condition is not a Condition"
    elif isinstance(command, Txn):
        problem = _txn_problem(command)
    else:
        problem = "not a key-value command"
    if problem is not None:
        raise TypeError(f"{problem}: {command!r:.200}")


def _txn_problem(txn: Txn) -> str | None:
    if not all(isinstance(part, tuple) for part in (txn.compare, txn.success, txn.failure)):
        return "a Txn's compare, success and failure must be tuples"
    for compare in txn.compare:
        problem = _compare_problem(compare)
        if problem is not None:
            return problem
    for op in txn.success + txn.failure:
        problem = _txn_op_problem(op)
        if problem is not None:
            return problem
    return None


def _write_problem(op: Put | Delete) -> str | None:
    if not isinstance(op.key, str):
        return "a key must be a str"
    if isinstance(op, Put) and not isinstance(op.value, str):
        return "a value must be a str"
    return None


def _compare_problem(compare: object) -> str | None:
    if not isinstance(compare, Compare):
        return "not a Compare"
    if not isinstance(compare.key, str):
        return "a key must be a str"
    if compare.target not in COMPARE_TARGETS:
        return "unknown compare target"
    if compare.op not in COMPARE_OPS:
        return "unknown compare op"
    wanted = _COMPARE_VALUE_TYPES[compare.target]
    value = compare.value
    if not isinstance(value, wanted) or (wanted is not bool and isinstance(value, bool)):
        return f"a {compare.target} compare needs a {wanted.__name__} value"
    return None


def _txn_op_problem(op: object) -> str | None:
    if isinstance(op, (Put, Delete)):
        problem = _write_problem(op)
        if problem is None and op.condition is not None:
            return "a Put or Delete in a Txn has no condition"
        return problem
    if isinstance(op, Get):
        return None if isinstance(op.key, str) else "a key must be a str"
    if isinstance(op, Range):
        if not isinstance(op.prefix, str):
            return "a prefix must be a str"
        if op.start_after is not None and not isinstance(op.start_after, str):
            return "start_after must be a str or None"
        limit = op.limit
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            return "a range limit must be None or at least 1"
        return None
    return "not a transaction operation"


class KVStore:
    """Keys to items, plus a sorted key index for ordered, paginated range reads.

    ``applied_index`` is the log index of the last entry applied (0 before any). A key's
    revision is the index of the write that last changed it, so revisions are unique,
    increasing and identical on every node and across snapshot and restore.
    """

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._keys = SortedKeys()
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

    def apply(self, index: int, command: Command) -> ApplyResult:
        """Apply the committed ``command`` found at log ``index``.

        ``index`` must be greater than ``applied_index`` (ValueError otherwise, and nothing
        changes); gaps are allowed, since no-op and configuration entries are only noted.
        A command ``check_command`` refuses raises TypeError, also with nothing changed.
        The result's ``revision`` is always ``index``, and ``events`` lists every change
        made, in order. A failed condition gives ``ok=False`` with the key's current item
        (or None) and leaves the data unchanged, though the entry still counts as applied.
        A successful put bumps the revision even if the value is unchanged; its
        ``current`` is the new item. Deleting an absent key succeeds and changes nothing
        (no event); a delete's ``current`` is None. A ``Txn``: see ``_apply_txn``.
        """
        check_command(command)
        self._advance(index)
        if isinstance(command, Txn):
            return self._apply_txn(index, command)
        key = command.key
        current = self._items.get(key)
        if not condition_holds(command.condition, current):
            return ApplyResult(ok=False, revision=index, current=current)
        if isinstance(command, Put):
            item, event = self._put(index, key, command.value)
            return ApplyResult(ok=True, revision=index, current=item, events=(event,))
        _, events = self._delete(index, key)
        return ApplyResult(ok=True, revision=index, current=None, events=events)

    def _apply_txn(self, index: int, txn: Txn) -> ApplyResult:
        """Every compare is evaluated against the state before the entry; then the chosen
        branch runs in order at revision ``index``, each op seeing the writes before it.
        ``ok`` is ``txn.succeeded``; ``current`` is None."""
        succeeded = self._compares_hold(txn.compare)
        events: list[Event] = []
        results: list[OpResult] = []
        for op in txn.success if succeeded else txn.failure:
            if isinstance(op, Put):
                item, event = self._put(index, op.key, op.value)
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

    def _put(self, index: int, key: str, value: str) -> tuple[Item, Event]:
        previous = self._items.get(key)
        item = Item(key, value, index)
        if previous is None:
            self._keys.add(key)
            event = Event("put", key, value, index)
        else:
            event = Event("put", key, value, index, previous.value, previous.revision)
        self._items[key] = item
        return item, event

    def _delete(self, index: int, key: str) -> tuple[Item | None, tuple[Event, ...]]:
        """The deleted item (None if absent) and the event (none if absent)."""
        previous = self._items.pop(key, None)
        if previous is None:
            return None, ()
        self._keys.discard(key)
        return previous, (Event("delete", key, None, index, previous.value, previous.revision),)

    def note_applied(self, index: int) -> None:
        """A log entry without a key-value command (no-op, configuration) was applied at
        ``index``; same ordering rule as ``apply``."""
        self._advance(index)

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

    def write_snapshot(self, out: BinaryIO, metadata: bytes = b"") -> None:
        """Stream every item, ``applied_index`` and the opaque ``metadata`` (for example
        the cluster membership) to ``out``. The same state and metadata always give the
        same bytes. The store must not change until this returns."""
        items = (self._items[key] for key in self._keys)
        snapshot.dump(out, self._applied_index, len(self._items), items, bytes(metadata))

    @classmethod
    def read_snapshot(cls, inp: BinaryIO) -> tuple[KVStore, bytes]:
        """Rebuild a store from a stream written by ``write_snapshot``; returns it and the
        metadata. Raises SnapshotFormatError on a truncated, corrupt or unknown stream."""
        reader = snapshot.SnapshotReader(inp)
        items: dict[str, Item] = {}

        def keys() -> Iterator[str]:
            for item in reader.items():
                items[item.key] = item
                yield item.key

        store = cls()
        store._keys = SortedKeys.from_sorted(keys())
        store._items = items
        store._applied_index = reader.applied_index
        return store, reader.metadata
