"""The replicated key-value state machine: commands, apply, transactions, snapshot and
restore, and the window of recent changes that watchers replay from.

Imports only the standard library (and itself).
"""

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
from leifdb.kv.history import History, event_bytes, matches
from leifdb.kv.snapshot import SnapshotFormatError
from leifdb.kv.store import KVStore, check_command, compare_holds, condition_holds

__all__ = [
    "FAILED_CONDITION",
    "FAILED_FENCE",
    "FAILED_LEASE_NOT_FOUND",
    "ApplyResult",
    "Command",
    "Compare",
    "Condition",
    "Delete",
    "Event",
    "Fence",
    "Get",
    "History",
    "Item",
    "KVStore",
    "Lease",
    "LeaseCheckpoint",
    "LeaseGrant",
    "LeaseRenew",
    "LeaseRevoke",
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
