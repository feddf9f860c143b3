"""Cluster routes: GET/POST /cluster/members, promote, DELETE, POST /cluster/leader, and
/health's 503; every status code of each, and one pass through the real ``KVService``."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from leifdb.errors import MembershipRefused, NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.raft.messages import Entry, EntryType
from leifdb.service.kvservice import KVService
from tests.http.client import Client, Reply, assert_json_error
from tests.service.test_membership import FakeConsensus

LEADER = {"id": "127.0.0.1:16990", "raft_address": "127.0.0.1:16990",
          "http_address": "127.0.0.1:8080", "role": "voter", "match_index": 1,
          "last_contact_seconds": 0.0, "is_leader": True}
N4 = {"id": "n4", "raft_address": "10.0.0.4:7004", "http_address": "10.0.0.4:8004"}


def ids(reply: Reply) -> list[tuple[str, str]]:
    return [(m["id"], m["role"]) for m in reply.json()["members"]]


# -- GET /cluster/members ------------------------------------------------------------------


def test_members_lists_every_member_with_what_the_leader_sees():
    client = Client()
    reply = client.get("/cluster/members")
    assert reply.code == 200
    body = reply.json()
    assert (body["cluster_id"], body["node"], body["leader"]) == (
        "c-test", "127.0.0.1:16990", "127.0.0.1:16990")
    assert body["members"][0] == LEADER
    assert body["members"][2]["last_contact_seconds"] == 2.5
    assert isinstance(body["config_index"], int)
    assert reply.header("X-LeifDB-Revision") is None  # not the key API
    assert client.service.barriers == 0 and client.service.changes == []


def test_members_is_served_by_any_node_even_a_follower():
    client = Client()
    client.service.write_error = NotLeaderError("127.0.0.1:8081")
    assert client.get("/cluster/members").code == 200


def test_members_before_the_node_started_is_503(monkeypatch):
    client = Client()

    def not_yet():
        raise Unavailable("the node has not started yet")

    monkeypatch.setattr(client.service, "members", not_yet)
    reply = client.get("/cluster/members")
    assert assert_json_error(reply, 503)["error"] == "the node has not started yet; retry"
    assert reply.header("Retry-After") == "1"


# -- POST /cluster/members -----------------------------------------------------------------


def test_add_answers_201_with_the_new_list_and_the_member_as_learner():
    client = Client()
    reply = client.post("/cluster/members", json=N4)
    assert reply.code == 201
    assert ids(reply)[-1] == ("n4", "learner")
    assert reply.json()["members"][-1]["match_index"] is None
    assert client.service.changes == [("add", "n4", "10.0.0.4:7004", "10.0.0.4:8004")]


def test_the_http_address_is_optional():
    client = Client()
    reply = client.post("/cluster/members", json={"id": "n4", "raft_address": "h4:7004"})
    assert reply.code == 201
    assert client.service.changes == [("add", "n4", "h4:7004", "")]


@pytest.mark.parametrize("body, fragment", [
    ({"raft_address": "h:1"}, "missing id"),
    ({"id": "n4"}, "missing raft_address"),
    ({"id": 4, "raft_address": "h:1"}, "field 'id' must be a string"),
    ({"id": "n4", "raft_address": "h:1", "role": "voter"}, "unknown field"),
    ({"id": "n 4", "raft_address": "h:1"}, "is not a name"),
    ({"id": "n4", "raft_address": "h"}, "host:port"),
    ({"id": "n4", "raft_address": "h:70000"}, "outside 1..65535"),
    ({"id": "n4", "raft_address": "h:1", "http_address": "http://h:2"}, "http_address"),
    ([], "must be a JSON object"),
])
def test_bad_bodies_are_400_naming_the_problem(body, fragment):
    client = Client()
    assert fragment in assert_json_error(client.post("/cluster/members", json=body), 400)["error"]
    assert client.service.changes == []


def test_an_empty_body_is_400_with_the_expected_shape():
    error = assert_json_error(Client().post("/cluster/members"), 400)["error"]
    assert "missing id" in error and '"raft_address"' in error


def test_a_taken_id_is_409_with_the_reason():
    client = Client()
    reply = client.post("/cluster/members", json={"id": "n2", "raft_address": "h:1"})
    assert assert_json_error(reply, 409) == {"error": "n2 is already a member",
                                             "applied": False}


# -- promote and remove --------------------------------------------------------------------


def test_promote_makes_the_learner_a_voter():
    client = Client()
    client.post("/cluster/members", json=N4)
    reply = client.post("/cluster/members/n4/promote")
    assert reply.code == 200 and ids(reply)[-1] == ("n4", "voter")
    assert client.service.changes[-1] == ("promote", "n4")


def test_promote_an_unknown_member_is_404_and_a_voter_409():
    client = Client()
    assert "no member n9" in assert_json_error(
        client.post("/cluster/members/n9/promote"), 404)["error"]
    assert "already a voter" in assert_json_error(
        client.post("/cluster/members/n2/promote"), 409)["error"]
    assert client.service.changes == []


@pytest.mark.parametrize("query, force", [("", False), ("?force=false", False),
                                          ("?force=true", True)])
def test_remove_answers_the_list_without_the_member(query, force):
    client = Client()
    reply = client.delete("/cluster/members/n3" + query)
    assert reply.code == 200
    assert [m for m, _ in ids(reply)] == ["127.0.0.1:16990", "n2"]
    assert client.service.changes == [("remove", "n3", force)]


def test_remove_with_a_bad_force_or_a_body_is_400_and_an_unknown_member_404():
    client = Client()
    assert assert_json_error(client.delete("/cluster/members/n3?force=yes"), 400)[
        "parameter"] == "force"
    assert_json_error(client.delete("/cluster/members/n3", json={"force": True}), 400)
    assert_json_error(client.delete("/cluster/members/n9"), 404)
    assert_json_error(client.delete("/cluster/members/n%203"), 400)
    assert client.service.changes == []


def test_ids_in_host_port_form_are_addressed_percent_encoded_or_not():
    client = Client()
    client.post("/cluster/members", json={"id": "10.0.0.5:7005", "raft_address": "10.0.0.5:7005"})
    assert client.post("/cluster/members/10.0.0.5%3A7005/promote").code == 200
    assert client.delete("/cluster/members/10.0.0.5:7005").code == 200


# -- POST /cluster/leader ------------------------------------------------------------------


def test_transfer_answers_the_new_leader_and_its_address():
    client = Client()
    reply = client.post("/cluster/leader", json={"to": "n2"})
    assert reply.code == 200
    assert reply.json() == {"leader": "n2", "leader_http": "127.0.0.1:8081"}
    assert client.service.changes == [("transfer", "n2")]


@pytest.mark.parametrize("body, code, fragment", [
    ({}, 400, "missing to"),
    ({"to": 2}, 400, "must be a string"),
    ({"to": "n2", "now": True}, 400, "unknown field"),
    ({"to": "n9"}, 404, "no member n9"),
])
def test_transfer_refusals(body, code, fragment):
    client = Client()
    assert fragment in assert_json_error(client.post("/cluster/leader", json=body), code)["error"]
    assert client.service.changes == []


# -- what every change shares: redirects, refusals, unknown outcomes ----------------------

CHANGES = [
    ("POST", "/cluster/members", {"id": "n5", "raft_address": "10.0.0.5:7005"}),
    ("POST", "/cluster/members/n4/promote", None),
    ("DELETE", "/cluster/members/n3?force=true", None),
    ("POST", "/cluster/leader", {"to": "n3"}),
]


def _send(client: Client, method: str, path: str, body: object) -> Reply:
    return client.request(method, path, **({} if body is None else {"json": body}))


@pytest.mark.parametrize("method, path, body", CHANGES)
def test_a_follower_redirects_changes_to_the_leader_with_path_and_query(method, path, body):
    client = Client()
    client.service.write_error = NotLeaderError("127.0.0.1:8081")
    reply = _send(client, method, path, body)
    error = assert_json_error(reply, 307)
    assert reply.header("Location") == f"http://127.0.0.1:8081{path}"
    assert error["applied"] is False and error["leader"] == "http://127.0.0.1:8081"
    client.service.write_error = NotLeaderError(None)
    reply = _send(client, method, path, body)
    assert assert_json_error(reply, 503)["applied"] is False
    assert reply.header("Retry-After") == "1"


@pytest.mark.parametrize("method, path, body", CHANGES)
def test_refusals_keep_their_reason_and_status(method, path, body):
    client = Client()
    client.post("/cluster/members", json=N4)  # a learner to promote
    client.service.refusal = Unavailable("a configuration change is still uncommitted")
    reply = _send(client, method, path, body)
    error = assert_json_error(reply, 503)
    assert error["error"] == ("a configuration change is still uncommitted; nothing was "
                              "changed; retry")
    assert reply.header("Retry-After") == "1"
    client.service.refusal = MembershipRefused("the learner lags 5000 entries behind", 409)
    assert assert_json_error(_send(client, method, path, body), 409)["error"] == (
        "the learner lags 5000 entries behind")


@pytest.mark.parametrize("method, path, body", CHANGES[:3])
def test_a_change_whose_outcome_is_unknown_is_504(method, path, body):
    client = Client()
    client.service.write_error = OutcomeUnknown("leadership lost before commit")
    error = assert_json_error(_send(client, method, path, body), 504)
    assert error["applied"] == "unknown" and "list the members" in error["error"]


def test_a_change_is_answered_only_once_it_applied():
    client = Client()
    client.service.hold = True
    pending = client.start("DELETE", "/cluster/members/n3")
    assert not pending.done
    client.service.pending.pop().callback(None)
    assert pending.reply().code == 200


# -- /health ------------------------------------------------------------------------------


def test_an_unhealthy_node_answers_503_with_the_reason_and_every_field():
    client = Client()
    client.service.status_fields.update(
        role="follower", leader="n2", leader_http="127.0.0.1:8081", healthy=False,
        reason="no word from the leader n2 for 3.2 s", leader_contact_seconds=3.2)
    reply = client.get("/health")
    assert reply.code == 503 and reply.header("Retry-After") == "1"
    body = reply.json()
    assert (body["status"], body["healthy"], body["reason"]) == (
        "UNAVAILABLE", False, "no word from the leader n2 for 3.2 s")
    assert body["leader_contact_seconds"] == 3.2 and body["role"] == "follower"
    assert {"node", "term", "leader", "leader_http", "commit_index", "applied_index",
            "version", "cluster_id"} <= set(body)


# -- through the real service -------------------------------------------------------------


def test_through_kvservice_a_change_answers_when_its_config_entry_applies():
    service = KVService(Clock(), proposal_timeout=5, read_timeout=3)
    node = FakeConsensus()
    service.attach(node)
    client = Client(service)
    pending = client.start("POST", "/cluster/members", json=N4)
    assert not pending.done and node.changes[-1][0][-1].learner
    service.apply([Entry(node.term, node.last_index, EntryType.CONFIG, b"")])
    reply = pending.reply()
    assert reply.code == 201 and ids(reply)[-1] == ("n4", "learner")
    assert client.get("/cluster/members").json()["members"][1]["match_index"] == 9
    node.contact_age = None
    node.role, node.leader = node.role.FOLLOWER, None
    health = client.get("/health")
    assert health.code == 503 and "no leader is known" in health.json()["reason"]
