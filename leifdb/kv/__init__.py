"""The replicated key-value state machine: commands, apply, snapshot and restore.

Imports only the standard library (and itself).
"""

from leifdb.kv.commands import ApplyResult, Command, Condition, Delete, Item, Put
from leifdb.kv.snapshot import SnapshotFormatError
from leifdb.kv.store import KVStore, condition_holds

__all__ = [
    "ApplyResult",
    "Command",
    "Condition",
    "Delete",
    "Item",
    "KVStore",
    "Put",
    "SnapshotFormatError",
    "condition_holds",
]
