"""What ``KVStore.apply`` accepts: ``check_command`` refuses a malformed command before
anything changes, so an entry never applies half way. The wire refuses the same things."""

from __future__ import annotations

from leifdb.kv.commands import (
    COMPARE_OPS,
    COMPARE_TARGETS,
    Compare,
    Condition,
    Delete,
    Fence,
    Get,
    LeaseCheckpoint,
    LeaseGrant,
    LeaseRenew,
    LeaseRevoke,
    Put,
    Range,
    Txn,
)

__all__ = ["check_command"]

# The type a compare's ``value`` must have, per target (bool is checked apart: it is an int).
_COMPARE_VALUE_TYPES = {
    "value": str,
    "revision": int,
    "create_revision": int,
    "lease": int,
    "exists": bool,
}


def check_command(command: object) -> None:
    """Raise TypeError unless ``apply`` can apply ``command`` whole.

    - ``Put``/``Delete``: str key (and value); ``condition`` None or a ``Condition``;
      ``fence`` None or a ``Fence`` (str prefix, int token >= 1); a put's ``lease`` and
      ``grant_ttl_ms`` ints >= 0, ``grant_ttl_ms`` only with ``lease`` 0.
    - ``Txn``: tuples; compares with a known target and op and a value of the target's
      type; its ``Put``/``Delete`` carry no condition, fence or grant (a lease is fine);
      a ``Range`` limit is None or at least 1.
    - ``LeaseGrant``: ``ttl_ms`` >= 1. ``LeaseRenew``: a tuple of ids >= 1.
      ``LeaseCheckpoint``: a tuple of ``(id >= 1, remaining_ms >= 0)`` pairs.
      ``LeaseRevoke``: ``lease_id`` >= 1, ``if_renewed_index`` >= 0.

    Anything the wire decodes passes. Costs O(size of the command); messages are built
    only on failure."""
    problem = _problem(command)
    if problem is not None:
        raise TypeError(f"{problem}: {command!r:.200}")


def _problem(command: object) -> str | None:
    if isinstance(command, Put):
        return _write_problem(command) or _put_extras_problem(command)
    if isinstance(command, Delete):
        return _write_problem(command)
    if isinstance(command, Txn):
        return _txn_problem(command)
    if isinstance(command, LeaseGrant):
        return None if _is_int(command.ttl_ms, 1) else "a lease TTL must be an int >= 1 (ms)"
    if isinstance(command, LeaseRenew):
        ids = command.lease_ids
        if not isinstance(ids, tuple) or not all(_is_int(i, 1) for i in ids):
            return "lease_ids must be a tuple of ints >= 1"
        return None
    if isinstance(command, LeaseCheckpoint):
        pairs = command.remaining
        if not isinstance(pairs, tuple) or not all(
            isinstance(p, tuple) and len(p) == 2 and _is_int(p[0], 1) and _is_int(p[1], 0)
            for p in pairs
        ):
            return "remaining must be a tuple of (lease id >= 1, remaining_ms >= 0) pairs"
        return None
    if isinstance(command, LeaseRevoke):
        if not _is_int(command.lease_id, 1):
            return "a lease id must be an int >= 1"
        if not _is_int(command.if_renewed_index, 0):
            return "if_renewed_index must be an int >= 0"
        return None
    return "not a key-value command"


def _is_int(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _write_problem(op: Put | Delete) -> str | None:
    """The rules a put or delete follows everywhere, in a transaction or not."""
    if not isinstance(op.key, str):
        return "a key must be a str"
    if isinstance(op, Put):
        if not isinstance(op.value, str):
            return "a value must be a str"
        if not _is_int(op.lease, 0):
            return "a put's lease must be an int >= 0"
        if not _is_int(op.grant_ttl_ms, 0):
            return "grant_ttl_ms must be an int >= 0"
    if not (op.condition is None or isinstance(op.condition, Condition)):
        return "the condition is not a Condition"
    fence = op.fence
    if fence is not None and not (
        isinstance(fence, Fence) and isinstance(fence.prefix, str) and _is_int(fence.token, 1)
    ):
        return "a fence must be a Fence with a str prefix and an int token >= 1"
    return None


def _put_extras_problem(put: Put) -> str | None:
    if put.grant_ttl_ms and put.lease:
        return "a put grants a lease (grant_ttl_ms) or names one (lease), not both"
    return None


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
        if problem is not None:
            return problem
        if op.condition is not None or op.fence is not None:
            return "a Put or Delete in a Txn has no condition or fence"
        if isinstance(op, Put) and op.grant_ttl_ms:
            return "a Put in a Txn grants no lease"
        return None
    if isinstance(op, Get):
        return None if isinstance(op.key, str) else "a key must be a str"
    if isinstance(op, Range):
        if not isinstance(op.prefix, str):
            return "a prefix must be a str"
        if op.start_after is not None and not isinstance(op.start_after, str):
            return "start_after must be a str or None"
        limit = op.limit
        if limit is not None and not _is_int(limit, 1):
            return "a range limit must be None or at least 1"
        return None
    return "not a transaction operation"
