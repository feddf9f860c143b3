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
class Put:
    key: str
    value: str
    condition: Condition | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    condition: Condition | None = None


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    value: str
    revision: int


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """``ok`` False: the condition failed and nothing changed; ``current`` is the key as it
    is (None if absent). ``revision`` is the log index of this command when it applied.
    ``events``: the changes it made (empty if none), in order. ``txn``: for a ``Txn``, its
    result (``ok`` is then ``txn.succeeded``)."""

    ok: bool
    revision: int
    current: Item | None = None
    events: tuple[Event, ...] = ()
    txn: TxnResult | None = None


# --------------------------------------------------------------------------- transactions
#
# A transaction is one log entry: its compares are evaluated against the state as it is
# when the entry applies, then every operation of the chosen branch applies in order at
# the entry's index (one revision for all of its changes). Reads inside a branch see the
# writes made before them in the same branch.

COMPARE_TARGETS = ("value", "revision", "exists")
COMPARE_OPS = ("equal", "not_equal", "greater", "less")


@dataclass(frozen=True, slots=True)
class Compare:
    """``target`` of ``key`` compared with ``value`` by ``op``.

    - ``value``: ``value`` is a str; an absent key fails every comparison.
    - ``revision``: ``value`` is an int; an absent key has revision 0.
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
    ``Delete`` inside carry no ``condition`` (the compares are the conditions)."""

    compare: tuple[Compare, ...] = ()
    success: tuple[TxnOp, ...] = ()
    failure: tuple[TxnOp, ...] = ()

    @property
    def read_only(self) -> bool:
        """No branch writes: it can be served by a read barrier instead of a log entry."""
        return not any(isinstance(op, (Put, Delete)) for op in self.success + self.failure)


Command = Union[Put, Delete, Txn]


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
