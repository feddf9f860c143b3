"""Key-value commands and memberships in log entries: round trips and bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leifdb.kv.commands import Condition, Delete, Put
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
