"""The replicated key-value state machine: applies committed commands in log order.

Every node applies the same commands at the same log indexes, so every node reaches the same
state; nothing here may depend on time, randomness or anything outside the command. The
store is single-threaded: the node calls it from the reactor thread only.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator

from leifdb.kv import snapshot
from leifdb.kv.commands import ApplyResult, Command, Condition, Delete, Item, Put
from leifdb.kv.snapshot import SnapshotFormatError
from leifdb.kv.sortedkeys import SortedKeys

__all__ = ["KVStore", "SnapshotFormatError", "condition_holds"]


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
        The result's ``revision`` is always ``index``. A failed condition gives
        ``ok=False`` with the key's current item (or None) and leaves the data unchanged,
        though the entry still counts as applied. A successful put bumps the revision even
        if the value is unchanged; its ``current`` is the new item. Deleting an absent key
        succeeds and changes nothing; a delete's ``current`` is None.
        """
        if not isinstance(command, (Put, Delete)):
            raise TypeError(f"not a key-value command: {command!r}")
        self._advance(index)
        key = command.key
        current = self._items.get(key)
        if not condition_holds(command.condition, current):
            return ApplyResult(ok=False, revision=index, current=current)
        if isinstance(command, Put):
            item = Item(key, command.value, index)
            if current is None:
                self._keys.add(key)
            self._items[key] = item
            return ApplyResult(ok=True, revision=index, current=item)
        if current is not None:
            del self._items[key]
            self._keys.discard(key)
        return ApplyResult(ok=True, revision=index, current=None)

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
