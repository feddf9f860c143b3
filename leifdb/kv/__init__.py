"""The replicated key-value state machine: commands, apply, transactions, snapshot and
restore, and the window of recent changes that watchers replay from.

Imports only the standard library (and itself).
"""

from leifdb.kv.commands import (
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
from leifdb.kv.history import History, event_bytes, matches
from leifdb.kv.snapshot import SnapshotFormatError
from leifdb.kv.store import KVStore, check_command, compare_holds, condition_holds

__all__ = [
    "ApplyResult",
    "Command",
    "Compare",
    "Condition",
    "Delete",
    "Event",
    "Get",
    "History",
    "Item",
    "KVStore",
    "OpResult",
    "Put",
    "Range",
    "SnapshotFormatError",
    "Txn",
    "TxnOp",
    "TxnResult",
    "check_command",
    "compare_holds",
    "condition_holds",
    "event_bytes",
    "matches",
]
