"""How the fault test turns HTTP answers into checker outcomes, and its other pure helpers."""

from __future__ import annotations

import pytest

from tests.faults.clients import Answer, OpSpec, classify
from tests.faults.history import Condition, Op, Seen
from tests.faults.runner import lost_writes, parse_duration

PUT = OpSpec("put", "k", value="v")
CAS = OpSpec("put", "k", value="v", condition=Condition(prev_value="old"))
READ = OpSpec("read", "k")


@pytest.mark.parametrize("spec, answer, outcome", [
    (PUT, Answer(200, {"status": "Ok", "revision": 7}), "ok"),
    (PUT, Answer(None, error="refused"), "fail"),
    (PUT, Answer(None, error="connect"), "fail"),
    (PUT, Answer(307, {"applied": False}, "http://127.0.0.1:1/db/k"), "fail"),
    (PUT, Answer(503, {"error": "no leader", "applied": False}), "fail"),
    (PUT, Answer(503, {"error": "?"}), "unknown"),
    (PUT, Answer(504, {"applied": "unknown"}), "unknown"),
    (PUT, Answer(500, {"error": "internal"}), "unknown"),
    (PUT, Answer(None, error="timeout"), "unknown"),
    (PUT, Answer(None, error="lost"), "unknown"),
    (READ, Answer(200, {"key": "k", "value": "v", "revision": 3}), "ok"),
    (READ, Answer(404, {"error": "key not found", "key": "k"}), "ok"),
    (READ, Answer(503, {"error": "no leader"}), "fail"),
    (READ, Answer(None, error="timeout"), "unknown"),
])
def test_outcome_of_each_answer(spec: OpSpec, answer: Answer, outcome: str) -> None:
    c = classify(spec, answer)
    assert c.outcome == outcome
    assert c.unexpected is None


def test_a_412_is_an_observation_of_the_current_value() -> None:
    c = classify(CAS, Answer(412, {"key": "k", "value": "cur", "revision": 9}))
    assert (c.outcome, c.condition_failed, c.seen) == ("fail", True, Seen("cur", 9))
    absent = classify(CAS, Answer(412, {"key": "k", "value": None, "revision": None}))
    assert absent.seen == Seen(None)


def test_reads_see_value_and_revision() -> None:
    assert classify(READ, Answer(200, {"value": "v", "revision": 3})).seen == Seen("v", 3)
    assert classify(READ, Answer(404, {"error": "key not found"})).seen == Seen(None)


@pytest.mark.parametrize("spec, answer", [
    (PUT, Answer(400, {"error": "bad"})),
    (PUT, Answer(412, {"value": "x", "revision": 2})),  # no condition was sent
    (PUT, Answer(200, {"status": "Ok"})),  # no revision
    (READ, Answer(404, {"error": "no such route"})),
])
def test_answers_no_correct_server_gives_are_flagged(spec: OpSpec, answer: Answer) -> None:
    c = classify(spec, answer)
    assert c.unexpected is not None
    assert c.outcome == "unknown"


def test_requests_carry_the_condition() -> None:
    assert CAS.request() == ("PUT", "/db/k?value=v&prev=old", {})
    rev = OpSpec("delete", "a/b", condition=Condition(prev_revision=5)).request()
    assert rev == ("DELETE", "/db/a%2Fb", {"If-Match": '"5"'})
    absent = OpSpec("put", "k", value="x y", condition=Condition(must_be_absent=True)).request()
    assert absent == ("PUT", "/db/k?value=x+y", {"If-None-Match": "*"})
    stale = OpSpec("read", "k", consistency="stale").request()
    assert stale == ("GET", "/db/k?consistency=stale", {})


def _put(value: str, rev: int, t: float) -> Op:
    return Op(0, "k", "put", t, t + 0.1, value=value, revision=rev)


def _read(value: str | None, rev: int | None, t: float = 100.0) -> Op:
    return Op(1, "k", "read", t, t + 0.1, seen=Seen(value, rev))


def test_lost_writes_spots_an_acknowledged_write_missing_at_the_end() -> None:
    ops = [_put("a", 2, 1.0), _put("b", 5, 2.0)]
    assert lost_writes(ops, {"k": _read("b", 5)}) == []
    assert "lost write" in lost_writes(ops, {"k": _read("a", 2)})[0]
    assert "lost write" in lost_writes(ops, {"k": _read(None, None)})[0]
    deleted = ops + [Op(2, "k", "delete", 3.0, None, outcome="unknown")]
    assert lost_writes(deleted, {"k": _read(None, None)}) == []


@pytest.mark.parametrize("text, seconds", [
    ("90", 90.0), ("30s", 30.0), ("10m", 600.0), ("1h", 3600.0), ("1m30s", 90.0),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "m", "5m junk"])
def test_parse_duration_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# --- transactions ----------------------------------------------------------------------

from tests.faults.history import Compare, Txn, TxnOp  # noqa: E402

CAS2 = OpSpec("txn", "a,b", txn=Txn(
    (Compare("a", "value", "equal", "1"), Compare("b", "exists", "equal", False)),
    (TxnOp("put", "a", "2"), TxnOp("delete", "b"), TxnOp("get", "a")),
    (TxnOp("get", "a"), TxnOp("get", "b"))))
READ2 = OpSpec("txn", "a,b", txn=Txn((), (TxnOp("get", "a"), TxnOp("get", "b")), ()))


def test_a_transaction_is_posted_as_the_contract_says() -> None:
    import json
    assert CAS2.request() == ("POST", "/txn", {"Content-Type": "application/json"})
    body = json.loads(CAS2.body() or b"")
    assert body["compare"][1] == {"key": "b", "target": "exists", "op": "equal", "value": False}
    assert body["success"][0] == {"op": "put", "key": "a", "value": "2"}
    assert body["failure"] == [{"op": "get", "key": "a"}, {"op": "get", "key": "b"}]


def test_transaction_answers_are_classified() -> None:
    ok = classify(CAS2, Answer(200, {"succeeded": True, "revision": 9, "results": [
        {"op": "put", "key": "a", "revision": 9},
        {"op": "delete", "key": "b", "deleted": False, "revision": 9},
        {"op": "get", "key": "a", "item": {"key": "a", "value": "2", "revision": 9}}]}))
    assert (ok.outcome, ok.succeeded, ok.revision) == ("ok", True, 9)
    assert ok.results == (None, False, Seen("2", 9))
    failed = classify(CAS2, Answer(200, {"succeeded": False, "revision": 10, "results": [
        {"op": "get", "key": "a", "item": None},
        {"op": "get", "key": "b", "item": {"key": "b", "value": "x", "revision": 4}}]}))
    assert (failed.outcome, failed.succeeded, failed.results) == ("ok", False, (Seen(None), Seen("x", 4)))
    read = classify(READ2, Answer(200, {"succeeded": True, "revision": 12, "results": [
        {"op": "get", "key": "a", "item": None}, {"op": "get", "key": "b", "item": None}]}))
    assert read.outcome == "ok" and read.revision is None  # the revision it read at is not its own
    assert classify(CAS2, Answer(503, {"applied": False})).outcome == "fail"
    assert classify(CAS2, Answer(504, {"applied": "unknown"})).outcome == "unknown"
    assert classify(CAS2, Answer(None, error="lost")).outcome == "unknown"
    assert classify(READ2, Answer(503, {"error": "no leader"})).outcome == "fail"


@pytest.mark.parametrize("body", [
    {"succeeded": True, "revision": 9, "results": []},  # too few results
    {"succeeded": True, "revision": 9, "results": [
        {"op": "put", "key": "a", "revision": 8},  # not the transaction's revision
        {"op": "delete", "key": "b", "deleted": False, "revision": 9},
        {"op": "get", "key": "a", "item": None}]},
    {"succeeded": "yes", "revision": 9, "results": []},
])
def test_transaction_answers_no_correct_server_gives_are_flagged(body: dict) -> None:
    c = classify(CAS2, Answer(200, body))
    assert c.outcome == "unknown" and c.unexpected is not None


def test_lost_writes_sees_transaction_writes() -> None:
    txn = Op(0, "k,j", "txn", 0.0, 1.0, txn=Txn((), (TxnOp("put", "k", "v"), TxnOp("put", "j", "w")), ()),
             succeeded=True, results=(None, None), revision=8)
    assert lost_writes([txn], {"k": _read("v", 8)}) == []
    assert lost_writes([txn], {"k": _read("old", 5)})
    assert lost_writes([txn], {"j": _read(None, None)})
