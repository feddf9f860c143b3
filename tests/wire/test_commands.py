"""Key-value commands (transactions too) and memberships in log entries: round trips, bad
input both ways, and every transaction that decodes applies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leifdb.kv.commands import Compare, Condition, Delete, Get, Put, Range, Txn
from leifdb.kv.store import KVStore
from leifdb.raft.messages import Member
from leifdb.wire import (
    DecodeError,
    EncodeError,
    decode_command,
    decode_membership,
    encode_command,
    encode_membership,
)
from leifdb.wire import leifdb_pb2 as pb
from tests.wire import strategies as s

DETERMINISTIC = settings(derandomize=True, deadline=None)


@given(s.commands)
@DETERMINISTIC
def test_commands_round_trip_exactly(cmd):
    assert decode_command(encode_command(cmd)) == cmd


@pytest.mark.parametrize("cond", [
    None, Condition(), Condition(prev_value=""), Condition(prev_value="v"),
    Condition(prev_revision=0), Condition(prev_revision=7), Condition(must_be_absent=True),
])
@pytest.mark.parametrize("make", [lambda c: Put("k", "v", c), lambda c: Delete("k", c)],
                         ids=["put", "delete"])
def test_every_condition_round_trips(make, cond):
    cmd = make(cond)
    assert decode_command(encode_command(cmd)) == cmd


@given(s.memberships)
@DETERMINISTIC
def test_memberships_round_trip_in_order(members):
    assert decode_membership(encode_membership(members)) == members


@pytest.mark.parametrize("cmd", [
    Put("", "v"),
    Delete(""),
    Put("k", "v", Condition(prev_value="a", prev_revision=1)),
    Put("k", "v", Condition(prev_revision=1, must_be_absent=True)),
    Put("k", "v", Condition(prev_revision=-1)),
    Put("k", "\ud800"),
    Member("a", "h:1"),
], ids=["empty put key", "empty delete key", "two tests", "two tests again",
        "negative revision", "surrogate", "not a command"])
def test_bad_commands_raise_encode_error(cmd):
    with pytest.raises(EncodeError):
        encode_command(cmd)


@pytest.mark.parametrize("data", [
    b"\xff\xff", b"", pb.KvCommand(put=pb.Put(value="v")).SerializeToString(),
    pb.KvCommand(delete=pb.Delete()).SerializeToString(),
], ids=["garbage", "no op", "put without key", "delete without key"])
def test_bad_command_bytes_raise_decode_error(data):
    with pytest.raises(DecodeError):
        decode_command(data)


@pytest.mark.parametrize("members", [
    [],
    [Member("", "h:1")],
    [Member("a", "h:1"), Member("a", "h:2")],
    [Member("a", "no-port")],
    [Member("a", ":1")],
    [Member("a", "h:0")],
    [Member("a", "h:65536")],
    [Member("a", "h:²")],
    [Member("a", "h:1", "bad")],
], ids=["none", "empty id", "duplicate id", "no port", "no host", "port 0", "port too big",
        "unicode digit", "bad http address"])
def test_bad_memberships_fail_both_ways(members):
    with pytest.raises(EncodeError):
        encode_membership(members)
    raw = pb.Membership(members=[
        pb.Member(id=m.id, raft_address=m.raft_address, http_address=m.http_address)
        for m in members]).SerializeToString()
    with pytest.raises(DecodeError):
        decode_membership(raw)


@given(st.binary(max_size=100))
@settings(derandomize=True, max_examples=300)
def test_arbitrary_bytes_never_raise_anything_but_decode_error(data):
    for decode in (decode_command, decode_membership):
        try:
            decode(data)
        except DecodeError:
            pass


# --- transactions ---


@given(s.txns)
@DETERMINISTIC
def test_txns_round_trip_exactly_and_apply(txn):
    data = encode_command(txn)
    decoded = decode_command(data)
    assert decoded == txn
    assert [type(op) for op in decoded.success + decoded.failure] == [
        type(op) for op in txn.success + txn.failure]
    assert [type(c.value) for c in decoded.compare] == [type(c.value) for c in txn.compare]
    store = KVStore()
    result = store.apply(1, decoded)
    assert result.txn is not None and result.revision == 1


@pytest.mark.parametrize("txn", [
    Txn(),
    Txn(success=(Range(""),)),
    Txn(success=(Range("", start_after=""),)),
    Txn(success=(Range("p/", start_after="p/a", limit=1),)),
    Txn(failure=(Range("p/", limit=2**64 - 1),)),
    Txn((Compare("k", "exists", "equal", False),)),
    Txn((Compare("k", "exists", "not_equal", True),)),
    Txn((Compare("k", "revision", "less", 0),)),
    Txn((Compare("k", "value", "greater", ""),)),
    Txn((Compare("k", "value", "equal", "v"), Compare("j", "revision", "not_equal", 5)),
        (Put("k", ""), Delete("j"), Get("k")), (Get("j"),)),
], ids=lambda t: repr(t)[:70])
def test_txn_edge_cases_round_trip(txn):
    assert decode_command(encode_command(txn)) == txn


def test_range_keeps_none_apart_from_empty_and_unset_limit_apart_from_any():
    none, empty = (Txn(success=(Range("p", start_after=v),)) for v in (None, ""))
    assert encode_command(none) != encode_command(empty)
    assert decode_command(encode_command(none)).success[0].start_after is None
    assert decode_command(encode_command(empty)).success[0].start_after == ""
    assert decode_command(encode_command(none)).success[0].limit is None


@pytest.mark.parametrize("txn", [
    Txn((Compare("", "value", "equal", "v"),)),
    Txn(success=(Put("", "v"),)),
    Txn(failure=(Delete(""),)),
    Txn(success=(Get(""),)),
    Txn((Compare("k", "version", "equal", 1),)),
    Txn((Compare("k", "value", "like", "v"),)),
    Txn((Compare("k", "value", "equal", 1),)),
    Txn((Compare("k", "revision", "equal", "1"),)),
    Txn((Compare("k", "revision", "equal", True),)),
    Txn((Compare("k", "exists", "equal", 1),)),
    Txn((Compare("k", "exists", "equal", "true"),)),
    Txn((Compare("k", "revision", "equal", -1),)),
    Txn((Compare("k", "revision", "equal", 2**64),)),
    Txn(success=(Put("k", "v", Condition(prev_value="v")),)),
    Txn(success=(Put("k", "v", Condition()),)),
    Txn(failure=(Delete("k", Condition(must_be_absent=True)),)),
    Txn(success=(Range("", limit=0),)),
    Txn(success=(Range("", limit=-3),)),
    Txn(success=(Range("", limit=2**64),)),
    Txn(success=(Range("\ud800"),)),
    Txn(success=(Put("k", "\ud800"),)),
    Txn((Compare("k", "value", "equal", "\udfff"),)),
    Txn(success=(Txn(),)),
    Txn(success=("get k",)),
    Txn(success=[Get("k")]),
    Txn(compare=(Condition(),)),
], ids=lambda t: repr(t)[:70])
def test_bad_txns_raise_encode_error(txn):
    with pytest.raises(EncodeError):
        encode_command(txn)


def _pb_txn(**branches) -> bytes:
    return pb.KvCommand(txn=pb.Txn(**branches)).SerializeToString()


@pytest.mark.parametrize("data", [
    _pb_txn(compare=[pb.Compare(key="", op=pb.COMPARE_EQUAL, value="v")]),
    _pb_txn(compare=[pb.Compare(key="k", op=pb.COMPARE_OP_UNSPECIFIED, value="v")]),
    _pb_txn(compare=[pb.Compare(key="k", op=99, value="v")]),
    _pb_txn(compare=[pb.Compare(key="k", op=pb.COMPARE_EQUAL)]),
    _pb_txn(success=[pb.TxnOp()]),
    _pb_txn(success=[pb.TxnOp(put=pb.Put(key="", value="v"))]),
    _pb_txn(success=[pb.TxnOp(delete=pb.Delete())]),
    _pb_txn(failure=[pb.TxnOp(get=pb.Get())]),
    _pb_txn(success=[pb.TxnOp(put=pb.Put(key="k", condition=pb.Condition()))]),
    _pb_txn(failure=[pb.TxnOp(delete=pb.Delete(key="k", condition=pb.Condition(
        prev_revision=3)))]),
    _pb_txn(success=[pb.TxnOp(range=pb.Range(prefix="p", limit=0))]),
], ids=["compare empty key", "op unspecified", "unknown op number", "compare no target",
        "op not set", "put empty key", "delete empty key", "get empty key",
        "put with condition", "delete with condition", "limit 0"])
def test_bad_txn_bytes_raise_decode_error(data):
    with pytest.raises(DecodeError):
        decode_command(data)


# Mostly valid parts, so that a fair share of the messages decode.
_maybe_empty_keys = st.sampled_from(["k", "p/a", "k", "p/b", "k", ""])
_raw_compares = st.builds(
    lambda key, op, target, value: pb.Compare(key=key, op=op, **({target: value[target]}
                                                                 if target else {})),
    _maybe_empty_keys, st.integers(1, 4) | st.integers(0, 6),
    st.sampled_from(["value", "revision", "exists"]) | st.none(),
    st.fixed_dictionaries({"value": s.text, "revision": s.u64, "exists": st.booleans()}),
)
_raw_conditions = st.sampled_from([None, None, None, None, pb.Condition(),
                                   pb.Condition(prev_value="v")])
_raw_ops = st.one_of(
    st.builds(lambda k, v, c: pb.TxnOp(put=pb.Put(key=k, value=v, condition=c)),
              _maybe_empty_keys, s.text, _raw_conditions),
    st.builds(lambda k, c: pb.TxnOp(delete=pb.Delete(key=k, condition=c)),
              _maybe_empty_keys, _raw_conditions),
    st.builds(lambda k: pb.TxnOp(get=pb.Get(key=k)), _maybe_empty_keys),
    st.builds(lambda p, a, n: pb.TxnOp(range=pb.Range(prefix=p, start_after=a, limit=n)),
              s.text, st.none() | s.text, st.none() | st.integers(1, 3) | st.integers(0, 3)),
    st.just(pb.TxnOp()),
)


@given(st.lists(_raw_compares, max_size=2), st.lists(_raw_ops, max_size=3),
       st.lists(_raw_ops, max_size=3))
@settings(derandomize=True, max_examples=300, deadline=None)
def test_every_txn_that_decodes_applies_and_reencodes_the_same(compares, success, failure):
    data = _pb_txn(compare=compares, success=success, failure=failure)
    try:
        txn = decode_command(data)
    except DecodeError:
        return
    assert decode_command(encode_command(txn)) == txn
    store = KVStore()
    store.apply(1, Put("k", "v"))
    result = store.apply(2, txn)
    assert result.revision == 2 and result.txn is not None
    if txn.read_only:
        assert store.evaluate_txn(txn).succeeded == result.ok
