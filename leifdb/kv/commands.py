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


Command = Union[Put, Delete]


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    value: str
    revision: int


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """``ok`` False: the condition failed and nothing changed; ``current`` is the key as it
    is (None if absent). ``revision`` is the log index of this command when it applied."""

    ok: bool
    revision: int
    current: Item | None = None
