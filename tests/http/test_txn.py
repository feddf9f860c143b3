"""POST /txn: the JSON body as a transaction, its answer, and every failure status."""

from __future__ import annotations

import json

import pytest

from leifdb.errors import NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.kv.commands import Compare, Delete, Get, Put, Range, Txn
from tests.http.client import Client, assert_json_error

CONTRACT_EXAMPLE = {
    "compare": [{"key": "a", "target": "value", "op": "equal", "value": "1"},
                {"key": "b", "target": "revision", "op": "less", "value": 10},
                {"key": "c", "target": "exists", "op": "equal", "value": False}],
    "success": [{"op": "put", "key": "a", "value": "2"}, {"op": "delete", "key": "b"},
                {"op": "get", "key": "a"},
                {"op": "range", "prefix": "x/", "start_after": None, "limit": 10}],
    "failure": [{"op": "get", "key": "a"}],
}


def seeded() -> Client:
    client = Client()
    for key, value in [("a", "1"), ("b", "old"), ("x/1", "one"), ("x/2", "two")]:
        client.service.set(key, value)
    return client


def test_success_branch_results_in_order_at_one_revision():
    client = seeded()
    reply = client.post("/txn", json=CONTRACT_EXAMPLE)
    assert reply.code == 200
    assert reply.json() == {
        "succeeded": True,
        "revision": 5,
        "results": [
            {"op": "put", "key": "a", "revision": 5},
            {"op": "delete", "key": "b", "deleted": True, "revision": 5},
            {"op": "get", "key": "a", "item": {"key": "a", "value": "2", "revision": 5,
                                               "create_revision": 1, "lease": 0}},
            {"op": "range", "prefix": "x/", "more": False, "items": [
                {"key": "x/1", "value": "one", "revision": 3, "create_revision": 3,
                 "lease": 0},
                {"key": "x/2", "value": "two", "revision": 4, "create_revision": 4,
                 "lease": 0}]},
        ],
    }
    assert reply.header("X-LeifDB-Revision") == "5"
    assert reply.header("Content-Type") == "application/json"
    assert client.service.writes == [Txn(
        compare=(Compare("a", "value", "equal", "1"), Compare("b", "revision", "less", 10),
                 Compare("c", "exists", "equal", False)),
        success=(Put("a", "2"), Delete("b"), Get("a"), Range("x/", None, 10)),
        failure=(Get("a"),),
    )]
    assert client.service.store.get("b") is None


def test_failed_compare_runs_the_failure_branch_and_is_not_an_error():
    client = seeded()
    client.service.set("a", "changed")
    reply = client.post("/txn", json=CONTRACT_EXAMPLE)
    assert reply.code == 200
    assert reply.json() == {
        "succeeded": False,
        "revision": 6,
        "results": [{"op": "get", "key": "a",
                     "item": {"key": "a", "value": "changed", "revision": 5,
                              "create_revision": 1, "lease": 0}}],
    }
    assert client.service.store.get("b").value == "old"


def test_deleting_an_absent_key_and_getting_it_report_so():
    client = Client()
    reply = client.post("/txn", json={"success": [
        {"op": "delete", "key": "nope"}, {"op": "put", "key": "k", "value": "v"}]})
    assert reply.json()["results"][0] == {"op": "delete", "key": "nope", "deleted": False,
                                          "revision": 1}


def test_read_only_txn_is_a_read_at_the_store_revision():
    client = seeded()
    reply = client.post("/txn", json={"success": [{"op": "get", "key": "nope"},
                                                  {"op": "range", "prefix": "x/", "limit": 1}]})
    assert reply.json() == {"succeeded": True, "revision": 4, "results": [
        {"op": "get", "key": "nope", "item": None},
        {"op": "range", "prefix": "x/", "items": [{"key": "x/1", "value": "one",
                                                   "revision": 3, "create_revision": 3,
                                                   "lease": 0}], "more": True}]}
    assert client.service.writes == [] and client.service.barriers == 1
    stale = client.post("/txn?consistency=stale", json={"success": [{"op": "get", "key": "a"}]})
    assert stale.code == 200 and client.service.barriers == 1


def test_read_only_txn_without_a_log_revision_answers_the_nodes_revision():
    client = seeded()
    original = client.service.txn

    def served_without_log(txn, consistency="linearizable"):
        return original(txn, consistency).addCallback(
            lambda result: type(result)(result.succeeded, 0, result.results))

    client.service.txn = served_without_log
    assert client.post("/txn", json={"success": [{"op": "get", "key": "a"}]}).json()[
        "revision"] == 4


def test_a_missing_body_is_a_400_and_an_empty_object_an_empty_transaction():
    client = Client()
    client.service.set("k", "v")
    missing = client.raw(b"POST", b"/txn", body=b"")
    assert missing.code == 400 and "missing body" in missing.json()["error"]
    for body in [b"{}", b'{"compare": [], "success": [], "failure": []}']:
        reply = client.raw(b"POST", b"/txn", body=body)
        assert reply.code == 200, body
        assert reply.json() == {"succeeded": True, "revision": 1, "results": []}


def test_compare_on_revision_and_existence():
    client = Client()
    client.service.set("k", "v")
    txn = {"compare": [{"key": "k", "target": "revision", "op": "equal", "value": 1},
                       {"key": "absent", "target": "revision", "op": "equal", "value": 0},
                       {"key": "k", "target": "exists", "op": "not_equal", "value": False},
                       {"key": "k", "target": "value", "op": "greater", "value": "u"}],
           "success": [{"op": "put", "key": "k", "value": "w"}]}
    assert client.post("/txn", json=txn).json()["succeeded"] is True


@pytest.mark.parametrize("body,fragment", [
    (b"{", "not valid JSON"),
    (b"[]", "must be a JSON object"),
    (b'{"compare": [], "compare": []}', "appears twice"),
    (b'{"succes": []}', "unknown field"),
    (b'{"success": {}}', "success must be a JSON array"),
    (b'{"success": [1]}', "success[0] must be a JSON object"),
    (b'{"success": [{"key": "a"}]}', "success[0].op must be one of"),
    (b'{"success": [{"op": "patch", "key": "a"}]}', "success[0].op must be one of"),
    (b'{"success": [{"op": "put", "key": "a"}]}', "success[0] lacks the field(s) value"),
    (b'{"success": [{"op": "put", "key": "a", "value": 1}]}', "success[0].value must be"),
    (b'{"success": [{"op": "get", "key": "a", "value": "x"}]}', "unknown field(s) value"),
    (b'{"failure": [{"op": "delete", "key": ""}]}', "failure[0].key must not be empty"),
    (b'{"success": [{"op": "range", "limit": 0}]}', "success[0].limit"),
    (b'{"success": [{"op": "range", "limit": 1001}]}', "success[0].limit"),
    (b'{"success": [{"op": "range", "limit": true}]}', "success[0].limit"),
    (b'{"success": [{"op": "range", "start_after": 5}]}', "start_after must be a string"),
    (b'{"compare": [{"key": "a", "target": "size", "op": "equal", "value": 1}]}',
     "compare[0].target"),
    (b'{"compare": [{"key": "a", "target": "value", "op": "like", "value": "x"}]}',
     "compare[0].op"),
    (b'{"compare": [{"key": "a", "target": "value", "op": "equal", "value": 1}]}',
     "must be a string for target 'value'"),
    (b'{"compare": [{"key": "a", "target": "revision", "op": "equal", "value": true}]}',
     "must be an integer"),
    (b'{"compare": [{"key": "a", "target": "revision", "op": "equal", "value": -1}]}',
     "must not be negative"),
    (b'{"compare": [{"key": "a", "target": "exists", "op": "equal", "value": "yes"}]}',
     "must be true or false"),
    (b'{"compare": [{"key": "a", "target": "exists", "op": "equal"}]}', "lacks the field"),
    (b'{"success": [{"op": "put", "key": "\\ud800", "value": "x"}]}', "lone surrogate"),
    (b'{"success": [{"op": "put", "key": "a", "value": "1", "lease": 0}]}',
     "success[0].lease must be a lease id"),
    (b'{"success": [{"op": "put", "key": "a", "value": "1", "lease": "7"}]}',
     "success[0].lease must be a lease id"),
    (b'{"success": [{"op": "put", "key": "a", "value": "1", "lease": 1.0}]}',
     "success[0].lease must be a lease id"),
    (b'{"success": [{"op": "delete", "key": "a", "lease": 1}]}', "unknown field(s) lease"),
    (b'{"compare": [{"key": "a", "target": "lease", "op": "equal", "value": -1}]}',
     "must not be negative"),
    (b'{"compare": [{"key": "a", "target": "create_revision", "op": "equal", "value": "1"}]}',
     "must be an integer for target 'create_revision'"),
    (b'{"compare": [{"key": "a", "target": "lease", "op": "equal", "value": false}]}',
     "must be an integer for target 'lease'"),
    (b'{"compare": [{"key": "a", "target": "revision", "op": "less", '
     b'"value": 9223372036854775808}]}', "must be at most"),
    (b'{"success": [{"op": "put", "key": "a", "value": "1"}, {"op": "delete", "key": "a"}]}',
     "two writes to one key"),
])
def test_bad_transactions_are_400_saying_where(body, fragment):
    client = Client()
    reply = client.raw(b"POST", b"/txn", body=body)
    assert fragment in assert_json_error(reply, 400)["error"]
    assert len(client.service.store) == 0


def test_the_same_key_written_in_both_branches_is_fine():
    client = Client()
    txn = {"compare": [{"key": "a", "target": "exists", "op": "equal", "value": True}],
           "success": [{"op": "put", "key": "a", "value": "1"}],
           "failure": [{"op": "put", "key": "a", "value": "2"}]}
    assert client.post("/txn", json=txn).json()["succeeded"] is False


def test_too_many_operations_is_413():
    client = Client(max_txn_ops=3)
    ops = [{"op": "get", "key": f"k{i}"} for i in range(4)]
    assert_json_error(client.post("/txn", json={"success": ops}), 413)
    assert client.post("/txn", json={"success": ops[:3]}).code == 200


def test_key_or_value_over_the_limit_is_413():
    client = Client(max_key_bytes=4, max_value_bytes=4)
    put = {"op": "put", "key": "kkkkk", "value": "v"}
    assert assert_json_error(client.post("/txn", json={"success": [put]}), 413)["limit"] == 4
    put = {"op": "put", "key": "k", "value": "vvvvv"}
    assert_json_error(client.post("/txn", json={"success": [put]}), 413)


def test_txn_bodies_may_be_larger_than_other_bodies_up_to_max_txn_bytes():
    client = Client(max_body_bytes=1000, max_txn_bytes=5000)
    ops = [{"op": "put", "key": f"k{i}", "value": "v" * 20} for i in range(50)]
    body = json.dumps({"success": ops}).encode()
    assert 1000 < len(body) < 5000
    assert client.raw(b"POST", b"/txn", body=body).code == 200
    assert_json_error(client.raw(b"PUT", b"/db/k", body=body), 413)
    too_big = json.dumps({"success": ops * 3}).encode()
    reply = client.raw(b"POST", b"/txn", body=too_big)
    assert assert_json_error(reply, 413)["limit"] == 5000
    assert_json_error(client.raw(b"POST", b"/txn", body=too_big, chunked=True), 413)


def test_write_on_a_follower_is_307_to_the_same_target_on_the_leader():
    client = Client()
    client.service.write_error = NotLeaderError("10.0.0.2:8081")
    reply = client.post("/txn?consistency=stale", json={"success": [
        {"op": "put", "key": "a", "value": "1"}]})
    body = assert_json_error(reply, 307)
    assert reply.header("Location") == "http://10.0.0.2:8081/txn?consistency=stale"
    assert body["applied"] is False


def test_read_only_txn_on_a_follower_redirects_like_a_read():
    client = Client()
    client.service.read_error = NotLeaderError("10.0.0.2:8081")
    reply = client.post("/txn", json={"success": [{"op": "get", "key": "a"}]})
    assert reply.code == 307 and "applied" not in reply.json()


@pytest.mark.parametrize("error", [NotLeaderError(None), Unavailable("no quorum")])
def test_write_not_applied_is_503_with_retry_after(error):
    client = Client()
    client.service.write_error = error
    reply = client.post("/txn", json={"success": [{"op": "delete", "key": "a"}]})
    assert assert_json_error(reply, 503)["applied"] is False
    assert reply.header("Retry-After") == "1"


def test_read_only_txn_unavailable_is_503():
    client = Client()
    client.service.read_error = Unavailable("no quorum")
    reply = client.post("/txn", json={})
    assert "stale" in assert_json_error(reply, 503)["error"]


def test_unknown_outcome_is_504():
    client = Client()
    client.service.write_error = OutcomeUnknown("leadership lost")
    reply = client.post("/txn", json={"success": [{"op": "put", "key": "a", "value": "1"}]})
    assert assert_json_error(reply, 504)["applied"] == "unknown"
    assert reply.header("X-LeifDB-Revision") == "0"


def test_the_answer_waits_for_commit():
    client = Client()
    client.service.hold = True
    pending = client.start("POST", "/txn", json={"success": [
        {"op": "put", "key": "a", "value": "1"}]})
    assert not pending.done
    client.service.pending.pop().callback(None)
    assert client.finish(pending).json()["revision"] == 1


@pytest.mark.parametrize("query", ["consistency=eventual", "timeout=1", "prefix=a"])
def test_bad_or_unknown_query_is_400(query):
    client = Client()
    assert_json_error(client.post("/txn?" + query, json={}), 400)
    assert client.service.barriers == 0


def test_other_methods_are_405():
    reply = Client().get("/txn")
    assert assert_json_error(reply, 405)["allowed"] == ["OPTIONS", "POST"]


# -- leases ------------------------------------------------------------------------------------


def test_a_put_may_attach_its_key_to_a_lease():
    client = Client()
    lease = client.service.make_lease()
    reply = client.post("/txn", json={"success": [
        {"op": "put", "key": "a", "value": "1", "lease": lease},
        {"op": "put", "key": "b", "value": "2"},
        {"op": "get", "key": "a"}]})
    assert reply.code == 200
    assert reply.json()["results"][2]["item"] == {
        "key": "a", "value": "1", "revision": 2, "create_revision": 2, "lease": lease}
    assert client.service.writes == [Txn(success=(Put("a", "1", lease=lease), Put("b", "2"),
                                                  Get("a")))]
    assert client.get(f"/lease/{lease}").json()["keys"] == ["a"]


def test_a_put_naming_an_absent_lease_is_404_and_applies_nothing():
    client = Client()
    client.service.set("x", "old")
    reply = client.post("/txn", json={"success": [
        {"op": "put", "key": "x", "value": "new"},
        {"op": "put", "key": "a", "value": "1", "lease": 42}]})
    body = assert_json_error(reply, 404)
    assert body["lease"] == 42
    assert reply.header("X-LeifDB-Revision") == "2"
    assert client.service.store.get("x").value == "old"
    assert client.service.store.get("a") is None


def test_an_absent_lease_in_the_branch_that_does_not_run_is_no_error():
    client = Client()
    reply = client.post("/txn", json={
        "compare": [{"key": "x", "target": "exists", "op": "equal", "value": False}],
        "success": [{"op": "put", "key": "x", "value": "1"}],
        "failure": [{"op": "put", "key": "x", "value": "2", "lease": 42}]})
    assert reply.code == 200 and reply.json()["succeeded"] is True


@pytest.mark.parametrize("target,op,value,succeeded", [
    ("create_revision", "equal", 1, True),
    ("create_revision", "less", 2, True),
    ("create_revision", "greater", 1, False),
    ("lease", "equal", 2, True),
    ("lease", "not_equal", 0, True),
    ("lease", "equal", 0, False),
])
def test_compare_on_create_revision_and_lease(target, op, value, succeeded):
    client = Client()
    client.service.set("k", "v")  # created at 1
    lease = client.service.make_lease()  # 2
    client.service.apply(Put("k", "w", lease=lease))  # revision 3, still created at 1
    reply = client.post("/txn", json={
        "compare": [{"key": "k", "target": target, "op": op, "value": value}],
        "success": [{"op": "get", "key": "k"}]})
    assert reply.json()["succeeded"] is succeeded


@pytest.mark.parametrize("target", ["create_revision", "lease"])
def test_an_absent_key_has_zero_for_both(target):
    client = Client()
    reply = client.post("/txn", json={
        "compare": [{"key": "nope", "target": target, "op": "equal", "value": 0}]})
    assert reply.json()["succeeded"] is True
