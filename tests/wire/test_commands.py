"""Key-value commands (transactions, fences and lease commands too) and memberships in log
entries: round trips, bad input both ways, and every command that decodes applies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leifdb.kv.commands import (
    FAILED_LEASE_NOT_FOUND,
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


U64 = 2**64 - 1


@pytest.mark.parametrize("cmd", [
    Put("k", "v", lease=1),
    Put("k", "v", lease=U64),
    Put("k", "v", grant_ttl_ms=1),
    Put("k", "v", Condition(prev_revision=3), grant_ttl_ms=30_000, fence=Fence("_lock/a/", 9)),
    Put("k", "v", fence=Fence("", 1)),
    Put("k", "v", Condition(must_be_absent=True), lease=7, fence=Fence("p/", U64)),
    Delete("k", fence=Fence("_lock/a/", 2)),
    Delete("k", Condition(prev_value="x"), Fence("p", 3)),
    LeaseGrant(1),
    LeaseGrant(U64),
    LeaseRenew(()),
    LeaseRenew((3, 3, 1)),
    LeaseCheckpoint(()),
    LeaseCheckpoint(((5, 0), (2, U64))),
    LeaseRevoke(4),
    LeaseRevoke(4, 4),
    Txn((Compare("k", "create_revision", "equal", 0), Compare("k", "lease", "greater", 3)),
        (Put("k", "v", lease=3),), (Put("j", "w"),)),
], ids=lambda c: repr(c)[:70])
def test_lease_and_fence_commands_round_trip(cmd):
    assert decode_command(encode_command(cmd)) == cmd


def test_no_fence_and_a_fence_encode_differently():
    assert encode_command(Put("k", "v")) != encode_command(Put("k", "v", fence=Fence("", 1)))
    assert decode_command(encode_command(Delete("k"))).fence is None


@given(s.memberships)
@DETERMINISTIC
def test_memberships_round_trip_in_order(members):
    assert decode_membership(encode_membership(members)) == members


def test_learners_keep_their_flag():
    members = [Member("a", "h:1", "h:2"), Member("b", "h:3", "", learner=True)]
    decoded = decode_membership(encode_membership(members))
    assert [m.learner for m in decoded] == [False, True]


def test_a_learner_flag_must_be_a_bool():
    with pytest.raises(EncodeError, match="learner of 'a' is not a bool"):
        encode_membership([Member("a", "h:1", learner="yes")])


def test_a_membership_written_before_learners_decodes_as_all_voters():
    old = pb.Membership(members=[pb.Member(id="a", raft_address="h:1"),
                                 pb.Member(id="b", raft_address="h:2", http_address="h:3")])
    assert decode_membership(old.SerializeToString()) == [
        Member("a", "h:1"), Member("b", "h:2", "h:3")]


@pytest.mark.parametrize("cmd", [
    Put("", "v"),
    Delete(""),
    Put("k", "v", Condition(prev_value="a", prev_revision=1)),
    Put("k", "v", Condition(prev_revision=1, must_be_absent=True)),
    Put("k", "v", Condition(prev_revision=-1)),
    Put("k", "\ud800"),
    Member("a", "h:1"),
    Put("k", "v", lease=-1),
    Put("k", "v", lease=2**64),
    Put("k", "v", lease=True),
    Put("k", "v", grant_ttl_ms=-5),
    Put("k", "v", lease=3, grant_ttl_ms=1000),
    Put("k", "v", fence=Fence("p", 0)),
    Put("k", "v", fence=Fence("p", -1)),
    Put("k", "v", fence=Fence(b"p", 1)),  # type: ignore[arg-type]
    Put("k", "v", fence=("p", 1)),  # type: ignore[arg-type]
    Delete("k", fence=Fence("p", 0)),
    Delete("k", fence=Fence("\ud800", 1)),
    LeaseGrant(0),
    LeaseGrant(-1),
    LeaseGrant(2**64),
    LeaseGrant(1.5),  # type: ignore[arg-type]
    LeaseRenew((0,)),
    LeaseRenew([1]),  # type: ignore[arg-type]
    LeaseRenew((1, 2**64)),
    LeaseCheckpoint(((0, 5),)),
    LeaseCheckpoint(((1, -1),)),
    LeaseCheckpoint(((1, 2, 3),)),  # type: ignore[arg-type]
    LeaseCheckpoint((1, 2)),  # type: ignore[arg-type]
    LeaseRevoke(0),
    LeaseRevoke(1, -1),
    LeaseRevoke(True),
], ids=["empty put key", "empty delete key", "two tests", "two tests again",
        "negative revision", "surrogate", "not a command", "negative lease", "lease too big",
        "bool lease", "negative grant", "lease and grant", "fence token 0",
        "negative fence token", "bytes fence prefix", "tuple fence", "delete fence token 0",
        "surrogate fence prefix", "ttl 0", "negative ttl", "ttl too big", "float ttl",
        "renew id 0", "renew list", "renew id too big", "checkpoint id 0",
        "negative remaining", "checkpoint triple", "checkpoint flat", "revoke id 0",
        "negative if_renewed_index", "bool revoke id"])
def test_bad_commands_raise_encode_error(cmd):
    with pytest.raises(EncodeError):
        encode_command(cmd)


@pytest.mark.parametrize("data", [
    b"\xff\xff", b"", pb.KvCommand(put=pb.Put(value="v")).SerializeToString(),
    pb.KvCommand(delete=pb.Delete()).SerializeToString(),
    pb.KvCommand(put=pb.Put(key="k", lease=2, grant_ttl_ms=10)).SerializeToString(),
    pb.KvCommand(put=pb.Put(key="k", fence=pb.Fence(prefix="p"))).SerializeToString(),
    pb.KvCommand(delete=pb.Delete(key="k", fence=pb.Fence(prefix="p"))).SerializeToString(),
    pb.KvCommand(lease_grant=pb.LeaseGrant()).SerializeToString(),
    pb.KvCommand(lease_renew=pb.LeaseRenew(lease_ids=[1, 0])).SerializeToString(),
    pb.KvCommand(lease_checkpoint=pb.LeaseCheckpoint(
        remaining=[pb.LeaseRemaining(remaining_ms=5)])).SerializeToString(),
    pb.KvCommand(lease_revoke=pb.LeaseRevoke(if_renewed_index=3)).SerializeToString(),
], ids=["garbage", "no op", "put without key", "delete without key", "lease and grant",
        "put fence token 0", "delete fence token 0", "ttl 0", "renew id 0",
        "checkpoint id 0", "revoke id 0"])
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
        pb.Member(id=m.id, raft_address=m.raft_address, http_address=m.http_address,
                  learner=m.learner)
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
    assert result.revision == 1
    # an empty store has no lease: a chosen branch that attaches one applies nothing
    assert (result.txn is not None) != (result.error == FAILED_LEASE_NOT_FOUND)


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
    Txn((Compare("k", "create_revision", "equal", "1"),)),
    Txn((Compare("k", "lease", "equal", True),)),
    Txn((Compare("k", "lease", "equal", -1),)),
    Txn(success=(Put("k", "v", lease=-1),)),
    Txn(success=(Put("k", "v", grant_ttl_ms=1000),)),
    Txn(success=(Put("k", "v", fence=Fence("p", 1)),)),
    Txn(failure=(Delete("k", fence=Fence("p", 1)),)),
    Txn(success=(LeaseGrant(5),)),
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
    _pb_txn(success=[pb.TxnOp(put=pb.Put(key="k", grant_ttl_ms=1000))]),
    _pb_txn(success=[pb.TxnOp(put=pb.Put(key="k", fence=pb.Fence(prefix="p", token=1)))]),
    _pb_txn(failure=[pb.TxnOp(delete=pb.Delete(key="k", fence=pb.Fence(prefix="p",
                                                                       token=1)))]),
], ids=["compare empty key", "op unspecified", "unknown op number", "compare no target",
        "op not set", "put empty key", "delete empty key", "get empty key",
        "put with condition", "delete with condition", "limit 0", "put with grant",
        "put with fence", "delete with fence"])
def test_bad_txn_bytes_raise_decode_error(data):
    with pytest.raises(DecodeError):
        decode_command(data)


# Mostly valid parts, so that a fair share of the messages decode.
_maybe_empty_keys = st.sampled_from(["k", "p/a", "k", "p/b", "k", ""])
_raw_compares = st.builds(
    lambda key, op, target, value: pb.Compare(key=key, op=op, **({target: value[target]}
                                                                 if target else {})),
    _maybe_empty_keys, st.integers(1, 4) | st.integers(0, 6),
    st.sampled_from(["value", "revision", "create_revision", "lease", "exists"]) | st.none(),
    st.fixed_dictionaries({"value": s.text, "revision": s.u64, "create_revision": s.u64,
                           "lease": st.integers(0, 3), "exists": st.booleans()}),
)
_raw_conditions = st.sampled_from([None, None, None, None, pb.Condition(),
                                   pb.Condition(prev_value="v")])
_raw_fences = st.sampled_from([None, None, None, pb.Fence(prefix="k", token=2),
                               pb.Fence(prefix="p")])
_raw_leases = st.sampled_from([0, 0, 1, 2])  # the fuzz tests' store has lease 1 only
_raw_puts = st.builds(
    lambda k, v, c, lease, grant, f: pb.Put(key=k, value=v, condition=c, lease=lease,
                                             grant_ttl_ms=grant, fence=f),
    _maybe_empty_keys, s.text, _raw_conditions, _raw_leases, st.sampled_from([0, 0, 0, 9]),
    _raw_fences,
)
_raw_deletes = st.builds(lambda k, c, f: pb.Delete(key=k, condition=c, fence=f),
                         _maybe_empty_keys, _raw_conditions, _raw_fences)
_raw_ops = st.one_of(
    st.builds(lambda put: pb.TxnOp(put=put), _raw_puts),
    st.builds(lambda delete: pb.TxnOp(delete=delete), _raw_deletes),
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
    store.apply(1, LeaseGrant(10))
    store.apply(2, Put("k", "v"))
    result = store.apply(3, txn)
    assert result.revision == 3
    assert (result.txn is not None) != (result.error == FAILED_LEASE_NOT_FOUND)
    if txn.read_only:
        assert store.evaluate_txn(txn).succeeded == result.ok


_raw_ids = st.sampled_from([0, 1, 2, 2**64 - 1])
_raw_commands = st.one_of(
    st.builds(lambda put: pb.KvCommand(put=put), _raw_puts),
    st.builds(lambda delete: pb.KvCommand(delete=delete), _raw_deletes),
    st.builds(lambda ttl: pb.KvCommand(lease_grant=pb.LeaseGrant(ttl_ms=ttl)), _raw_ids),
    st.builds(lambda ids: pb.KvCommand(lease_renew=pb.LeaseRenew(lease_ids=ids)),
              st.lists(_raw_ids, max_size=3)),
    st.builds(lambda pairs: pb.KvCommand(lease_checkpoint=pb.LeaseCheckpoint(remaining=[
        pb.LeaseRemaining(lease_id=i, remaining_ms=r) for i, r in pairs])),
        st.lists(st.tuples(_raw_ids, _raw_ids), max_size=3)),
    st.builds(lambda i, r: pb.KvCommand(lease_revoke=pb.LeaseRevoke(lease_id=i,
                                                                    if_renewed_index=r)),
              _raw_ids, _raw_ids),
)


@given(_raw_commands)
@settings(derandomize=True, max_examples=300, deadline=None)
def test_every_command_that_decodes_applies_and_reencodes_the_same(raw):
    try:
        cmd = decode_command(raw.SerializeToString())
    except DecodeError:
        return
    assert decode_command(encode_command(cmd)) == cmd
    store = KVStore()
    store.apply(1, LeaseGrant(10))
    store.apply(2, Put("k", "v", lease=1))
    result = store.apply(3, cmd)
    assert result.revision == 3 and store.applied_index == 3


@pytest.mark.parametrize("raw, expected", [
    (pb.KvCommand(lease_grant=pb.LeaseGrant(ttl_ms=5)), LeaseGrant(5)),
    (pb.KvCommand(lease_renew=pb.LeaseRenew()), LeaseRenew(())),
    (pb.KvCommand(lease_checkpoint=pb.LeaseCheckpoint()), LeaseCheckpoint(())),
    (pb.KvCommand(lease_revoke=pb.LeaseRevoke(lease_id=3)), LeaseRevoke(3, 0)),
    (pb.KvCommand(put=pb.Put(key="k", fence=pb.Fence(token=1))),
     Put("k", "", fence=Fence("", 1))),
], ids=["grant", "empty renew", "empty checkpoint", "revoke", "fence with empty prefix"])
def test_protobuf_defaults_decode_as_documented(raw, expected):
    assert decode_command(raw.SerializeToString()) == expected
