"""Key-value commands and cluster membership <-> the bytes stored in log entries.

``encode_command`` produces the ``data`` of an ``ENTRY_NORMAL`` entry and ``encode_membership``
that of an ``ENTRY_CONFIG`` entry (and of the membership part of a snapshot). As for frames,
encoding refuses what decoding would refuse, so a committed entry written by this code always
decodes again.
"""

from __future__ import annotations

from typing import Iterable

from google.protobuf import message as _pb_message

from leifdb.kv.commands import (
    Command,
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
    TxnOp,
)
from leifdb.kv.store import check_command
from leifdb.raft.messages import Member
from leifdb.wire import leifdb_pb2 as pb
from leifdb.wire._checks import Invalid, require, require_address
from leifdb.wire.errors import DecodeError, EncodeError

_PB_VALUE_ERRORS = (ValueError, TypeError, OverflowError)


_COMPARE_OPS = {
    "equal": pb.COMPARE_EQUAL,
    "not_equal": pb.COMPARE_NOT_EQUAL,
    "greater": pb.COMPARE_GREATER,
    "less": pb.COMPARE_LESS,
}
_COMPARE_OP_NAMES = {number: name for name, number in _COMPARE_OPS.items()}


def encode_command(cmd: Command) -> bytes:
    """Serialize a key-value command as a ``KvCommand``. ``EncodeError`` for anything
    ``decode_command`` would refuse or ``KVStore.apply`` could not apply (everything
    ``check_command`` refuses, such as a fence or grant inside a ``Txn``), and for what
    only the wire refuses: an empty key (a range or fence prefix may be empty), a
    condition with more than one test, an integer that does not fit 64 bits."""
    try:
        check_command(cmd)
        out = pb.KvCommand()
        if isinstance(cmd, Txn):
            _encode_txn(cmd, out.txn)
        elif isinstance(cmd, Put):
            _encode_put(cmd, out.put)
        elif isinstance(cmd, Delete):
            _encode_delete(cmd, out.delete)
        elif isinstance(cmd, LeaseGrant):
            out.lease_grant.ttl_ms = cmd.ttl_ms
        elif isinstance(cmd, LeaseRenew):
            out.lease_renew.SetInParent()
            out.lease_renew.lease_ids.extend(cmd.lease_ids)
        elif isinstance(cmd, LeaseCheckpoint):
            out.lease_checkpoint.SetInParent()
            for lease_id, remaining_ms in cmd.remaining:
                out.lease_checkpoint.remaining.add(lease_id=lease_id, remaining_ms=remaining_ms)
        else:
            out.lease_revoke.lease_id = cmd.lease_id
            out.lease_revoke.if_renewed_index = cmd.if_renewed_index
        return out.SerializeToString()
    except (Invalid, *_PB_VALUE_ERRORS) as e:
        raise EncodeError(f"command: {e}") from None


def decode_command(data: bytes) -> Command:
    """Parse a ``KvCommand``; ``DecodeError`` for anything else, including a command
    ``check_command`` refuses (a lease id or a fence token of 0, a put that both names
    and grants a lease, a fence inside a transaction, ...)."""
    op = pb.KvCommand()
    try:
        op.ParseFromString(data)
    except _pb_message.DecodeError as e:
        raise DecodeError(f"not a KvCommand: {e}") from None
    kind = op.WhichOneof("op")
    try:
        require(kind is not None, "command has no operation")
        command = _decode_kind(op, kind)
        check_command(command)
    except (Invalid, TypeError) as e:
        raise DecodeError(f"command: {e}") from None
    return command


def _decode_kind(op: pb.KvCommand, kind: str) -> Command:
    if kind == "txn":
        return _decode_txn(op.txn)
    if kind == "put":
        return _decode_put(op.put)
    if kind == "delete":
        return _decode_delete(op.delete)
    if kind == "lease_grant":
        return LeaseGrant(op.lease_grant.ttl_ms)
    if kind == "lease_renew":
        return LeaseRenew(tuple(op.lease_renew.lease_ids))
    if kind == "lease_checkpoint":
        return LeaseCheckpoint(
            tuple((r.lease_id, r.remaining_ms) for r in op.lease_checkpoint.remaining)
        )
    return LeaseRevoke(op.lease_revoke.lease_id, op.lease_revoke.if_renewed_index)


def _encode_put(put: Put, out: pb.Put) -> None:
    require(put.key != "", "empty key")
    out.key, out.value = put.key, put.value
    out.lease, out.grant_ttl_ms = put.lease, put.grant_ttl_ms
    _encode_guards(put.condition, put.fence, out)


def _encode_delete(delete: Delete, out: pb.Delete) -> None:
    require(delete.key != "", "empty key")
    out.key = delete.key
    _encode_guards(delete.condition, delete.fence, out)


def _encode_guards(condition: Condition | None, fence: Fence | None,
                   out: pb.Put | pb.Delete) -> None:
    out.SetInParent()
    if condition is not None:
        _encode_condition(condition, out.condition)
    if fence is not None:
        out.fence.prefix, out.fence.token = fence.prefix, fence.token


def _decode_put(body: pb.Put) -> Put:
    require(body.key != "", "empty key")
    condition, fence = _decode_guards(body)
    return Put(body.key, body.value, condition, body.lease, body.grant_ttl_ms, fence)


def _decode_delete(body: pb.Delete) -> Delete:
    require(body.key != "", "empty key")
    condition, fence = _decode_guards(body)
    return Delete(body.key, condition, fence)


def _decode_guards(body: pb.Put | pb.Delete) -> tuple[Condition | None, Fence | None]:
    condition = _decode_condition(body.condition) if body.HasField("condition") else None
    fence = Fence(body.fence.prefix, body.fence.token) if body.HasField("fence") else None
    return condition, fence


def _encode_txn(txn: Txn, out: pb.Txn) -> None:
    """``txn`` has passed ``check_command``: only the wire's own rules are left."""
    out.SetInParent()
    for compare in txn.compare:
        require(compare.key != "", "empty key in a compare")
        c = out.compare.add(key=compare.key, op=_COMPARE_OPS[compare.op])
        setattr(c, compare.target, compare.value)
    for ops, branch in ((txn.success, out.success), (txn.failure, out.failure)):
        for txn_op in ops:
            _encode_txn_op(txn_op, branch.add())


def _encode_txn_op(op: TxnOp, out: pb.TxnOp) -> None:
    if isinstance(op, Range):
        out.range.prefix = op.prefix
        if op.start_after is not None:
            out.range.start_after = op.start_after
        if op.limit is not None:
            out.range.limit = op.limit
        return
    require(op.key != "", "empty key in a transaction operation")
    if isinstance(op, Put):
        out.put.key, out.put.value, out.put.lease = op.key, op.value, op.lease
    elif isinstance(op, Delete):
        out.delete.key = op.key
    else:
        out.get.key = op.key


def _decode_txn(txn: pb.Txn) -> Txn:
    compares = []
    for c in txn.compare:
        require(c.key != "", "empty key in a compare")
        require(c.op in _COMPARE_OP_NAMES, f"unknown compare op {c.op}")
        target = c.WhichOneof("target")
        require(target is not None, "compare has no target")
        compares.append(Compare(c.key, target, _COMPARE_OP_NAMES[c.op], getattr(c, target)))
    return Txn(
        tuple(compares),
        tuple(_decode_txn_op(op) for op in txn.success),
        tuple(_decode_txn_op(op) for op in txn.failure),
    )


def _decode_txn_op(op: pb.TxnOp) -> TxnOp:
    """Puts and deletes decode whole; ``check_command`` then refuses a condition, fence or
    grant inside the transaction."""
    kind = op.WhichOneof("op")
    require(kind is not None, "transaction operation has no op")
    if kind == "range":
        r = op.range
        require(not r.HasField("limit") or r.limit >= 1, "range limit must be at least 1")
        return Range(
            r.prefix,
            r.start_after if r.HasField("start_after") else None,
            r.limit if r.HasField("limit") else None,
        )
    if kind == "get":
        require(op.get.key != "", "empty key in a transaction operation")
        return Get(op.get.key)
    if kind == "put":
        return _decode_put(op.put)
    return _decode_delete(op.delete)


def _encode_condition(cond: Condition, out: pb.Condition) -> None:
    require(isinstance(cond, Condition), "condition must be a Condition")
    tests = (cond.prev_value is not None) + (cond.prev_revision is not None) + cond.must_be_absent
    require(tests <= 1, "a condition sets at most one test")
    out.SetInParent()
    if cond.prev_value is not None:
        out.prev_value = cond.prev_value
    elif cond.prev_revision is not None:
        out.prev_revision = cond.prev_revision
    elif cond.must_be_absent:
        out.must_be_absent = True


def _decode_condition(c: pb.Condition) -> Condition:
    test = c.WhichOneof("test")
    if test == "prev_value":
        return Condition(prev_value=c.prev_value)
    if test == "prev_revision":
        return Condition(prev_revision=c.prev_revision)
    return Condition(must_be_absent=c.must_be_absent)


def encode_membership(members: Iterable[Member]) -> bytes:
    """Serialize a cluster membership, in the given order, learners flagged. At least one
    member; ids unique and non-empty; ``raft_address`` is ``host:port``, ``http_address``
    too or empty. (That a change keeps a voter is the core's rule, not the format's.)"""
    members = list(members)
    try:
        _check_membership(members)
        return pb.Membership(
            members=[pb.Member(id=m.id, raft_address=m.raft_address, http_address=m.http_address,
                               learner=m.learner)
                     for m in members]
        ).SerializeToString()
    except (Invalid, *_PB_VALUE_ERRORS) as e:
        raise EncodeError(f"membership: {e}") from None


def decode_membership(data: bytes) -> list[Member]:
    """Parse a ``Membership``; ``DecodeError`` for anything else. A member written before
    learners existed has no ``learner`` field and decodes as a voter."""
    msg = pb.Membership()
    try:
        msg.ParseFromString(data)
    except _pb_message.DecodeError as e:
        raise DecodeError(f"not a Membership: {e}") from None
    members = [Member(m.id, m.raft_address, m.http_address, m.learner) for m in msg.members]
    try:
        _check_membership(members)
    except Invalid as e:
        raise DecodeError(f"membership: {e}") from None
    return members


def _check_membership(members: list[Member]) -> None:
    require(len(members) >= 1, "no members")
    for m in members:
        require(isinstance(m, Member), "members must be Member values")
        require(isinstance(m.learner, bool), f"learner of {m.id!r} is not a bool")
        require(isinstance(m.id, str) and m.id != "", "empty member id")
        require_address(m.raft_address, f"raft_address of {m.id!r}")
        require_address(m.http_address, f"http_address of {m.id!r}", optional=True)
    require(len({m.id for m in members}) == len(members), "duplicate member id")
