"""Cluster membership in the client and the ``leifdb`` command, with scripted transports:
the requests, the typed answers, which failures are retried and which are not, asking the
leader for the member list, ``/health``'s 503 as an answer, and ``leifdb member|leader``
output formats and exit codes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from leifdb import cli
from leifdb.cli import (
    EXIT_CONDITION, EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE, main,
)
from leifdb.client import (
    Client, Member, MemberNotFound, Members, MembershipRefused, OutcomeUnknown, RetryPolicy,
    Unavailable,
)
from leifdb.client.aio import AsyncClient
from leifdb.client.cluster import (
    add_member_request, promote_member_request, remove_member_request,
    transfer_leader_request,
)
from leifdb.client.protocol import ConnectFailed, NoAnswer, Response
from tests.client.fakes import AsyncByKind, ByKind, answer
from tests.client.test_protocol import A, B, Clock, Script, client, reply


def member(member_id: str, role: str = "voter", leader: bool = False, port: int = 1,
           match: int | None = None, contact: float | None = None) -> dict[str, Any]:
    return {"id": member_id, "raft_address": f"h{port}:700{port}",
            "http_address": f"h{port}:800{port}", "role": role, "match_index": match,
            "last_contact_seconds": contact, "is_leader": leader}


def members(node: str = "n1", leader: str | None = "n1", *extra: dict, views: bool = True
            ) -> dict[str, Any]:
    """A member list as ``node`` answers it (``views``: with the leader's view)."""
    def view(match: int, contact: float) -> dict[str, Any]:
        return {"match": match, "contact": contact} if views else {}

    listed = [member("n1", leader=leader == "n1", port=1, **view(12, 0.0)),
              member("n2", leader=leader == "n2", port=2, **view(11, 0.25))]
    return {"cluster_id": "c-1", "node": node, "leader": leader, "members": listed + list(extra)}


HEALTH = {"status": "OK", "version": "1", "node": "n4", "role": "learner", "term": 2,
          "leader": "n1", "leader_http": "h1:8001", "commit_index": 5, "applied_index": 5,
          "cluster_id": "c-1", "healthy": True, "reason": None, "leader_contact_seconds": 0.1}


# -- requests -----------------------------------------------------------------------------


def test_requests_are_built_as_the_api_wants():
    add = add_member_request("n4", "h4:7004", "http://h4:8004/")
    assert (add.method, add.target, add.idempotent) == ("POST", "/cluster/members", False)
    assert json.loads(add.body) == {"id": "n4", "raft_address": "h4:7004",
                                    "http_address": "h4:8004"}
    assert "http_address" not in json.loads(add_member_request("n4", "h4:7004").body)
    promote = promote_member_request("10.0.0.4:7004")
    assert (promote.target, promote.idempotent) == (
        "/cluster/members/10.0.0.4%3A7004/promote", False)
    assert remove_member_request("n4").target == "/cluster/members/n4"
    assert remove_member_request("n4", force=True).target == "/cluster/members/n4?force=true"
    transfer = transfer_leader_request("n2")
    assert (json.loads(transfer.body), transfer.idempotent) == ({"to": "n2"}, True)
    for bad in (lambda: add_member_request("", "h:1"), lambda: promote_member_request(""),
                lambda: transfer_leader_request(""),
                lambda: add_member_request("n4", "h:1", "ftp://x")):
        with pytest.raises(ValueError):
            bad()


# -- typed answers and the retry policy ---------------------------------------------------


def test_changes_answer_the_new_member_list_following_redirects():
    learner = member("n4", "learner", port=4)
    s = Script(reply(307, {"error": "not the leader"}, location=f"{B}/cluster/members"),
               reply(201, members("n2", "n2", learner)))
    got = client(s).add_member("n4", "h4:7004")
    assert isinstance(got, Members) and got.get("n4") == Member.from_json(learner)
    assert got.get("n4").learner and s.urls == [A, B]
    assert s.sent[1].request.method == "POST"


def test_transfer_answers_the_new_leader():
    s = Script(reply(200, {"leader": "n2", "leader_http": "h2:8002"}))
    assert client(s).transfer_leader("n2") == "n2"


def test_refusals_and_unknown_members_are_not_retried():
    s = Script(reply(409, {"error": "n4 lags 5000 entries behind", "applied": False}),
               reply(404, {"error": "no member n9", "applied": False}))
    c = client(s)
    with pytest.raises(MembershipRefused, match="lags 5000") as refused:
        c.promote_member("n4")
    assert refused.value.status == 409
    with pytest.raises(MemberNotFound) as missing:
        c.remove_member("n9")
    assert missing.value.member_id == "n9" and len(s.sent) == 2


def test_a_503_is_retried_and_an_unknown_outcome_is_not():
    clock = Clock()
    s = Script(reply(503, {"error": "a configuration change is uncommitted"}, retry_after="1"),
               reply(200, members()),
               reply(504, {"error": "maybe", "applied": "unknown"}), NoAnswer("lost"))
    c = client(s, clock)
    assert c.remove_member("n3").leader == "n1" and len(clock.sleeps) == 1
    with pytest.raises(OutcomeUnknown):
        c.promote_member("n4")
    with pytest.raises(OutcomeUnknown):
        c.add_member("n4", "h4:7004")


def test_a_transfer_whose_answer_was_lost_is_asked_again():
    s = Script(NoAnswer("lost"), reply(200, {"leader": "n2", "leader_http": None}))
    assert client(s).transfer_leader("n2") == "n2" and len(s.sent) == 2


def test_members_are_asked_of_the_leader_when_a_follower_answered():
    s = Script(reply(200, members("n2", "n1", views=False)), reply(200, members()))
    c = client(s)
    got = c.members()
    assert s.urls == [A, "http://h1:8001"] and c.endpoints.leader == "http://h1:8001"
    assert got.node == "n1" and got.get("n2").match_index == 11
    assert got.get("n2").last_contact_seconds == 0.25


def test_members_from_a_follower_stand_when_the_leader_is_unreachable_or_unknown():
    s = Script(reply(200, members("n2", "n1", views=False)), ConnectFailed("refused"),
               reply(200, members("n2", None, views=False)))
    c = client(s)
    first = c.members()
    assert first.node == "n2" and first.get("n1").match_index is None
    assert c.members().leader is None and len(s.sent) == 3


def test_an_unhealthy_node_is_a_status_not_an_error():
    s = Script(reply(503, {**HEALTH, "role": "follower", "healthy": False, "status":
                           "UNAVAILABLE", "reason": "no leader is known"}),
               reply(503, {"error": "something else"}))
    c = client(s)
    st = c.status(A)
    assert (st.role, st.healthy, st.reason) == ("follower", False, "no leader is known")
    with pytest.raises(Unavailable):
        c.status(A)
    assert len(s.sent) == 2


def test_the_async_client_on_asyncio():
    fake = AsyncByKind(members=answer(200, members()),
                       transfer_leader=answer(200, {"leader": "n2", "leader_http": None}),
                       remove_member=answer(200, members()))

    async def scenario() -> None:
        c = AsyncClient([A], transport=fake, framework="asyncio")
        assert (await c.members()).leader == "n1"
        assert await c.transfer_leader("n2") == "n2"
        assert (await c.remove_member("n3", force=True)).node == "n1"

    asyncio.run(scenario())
    assert fake.kinds() == ["members", "transfer_leader", "remove_member"]
    assert fake.sent[-1].target.endswith("?force=true")


# -- the command --------------------------------------------------------------------------


@pytest.fixture
def fake(monkeypatch) -> ByKind:
    transport = ByKind()

    def make(endpoints: str, timeout: float) -> Client:
        return Client(endpoints, timeout=timeout, transport=transport,
                      policy=RetryPolicy(attempts=2, base=0.01))

    monkeypatch.setattr(cli, "Client", make)
    return transport


def run(*args: str) -> int:
    return main(["--endpoints", A, *args])


def test_member_list_in_every_format(fake: ByKind, capsys):
    fake.answers.update(members=answer(200, members("n1", "n1", member("n4", "learner", port=4))))
    assert run("member", "list") == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert "ROLE" in lines[1] and "MATCH INDEX" in lines[1] and "LAST CONTACT" in lines[1]
    row = next(line for line in lines if "| n2 " in line)
    assert " voter " in row and " 11 " in row and " 0.25s " in row
    assert " learner " in next(line for line in lines if "| n4 " in line)
    assert run("-o", "value", "member", "list") == EXIT_OK
    assert capsys.readouterr().out == "n1 voter\nn2 voter\nn4 learner\n"
    assert run("-o", "json", "member", "list") == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["leader"] == "n1" and data["members"][2]["role"] == "learner"


def test_member_changes_print_the_outcome_and_send_what_was_asked(fake: ByKind, capsys):
    fake.answers.update(add_member=answer(201, members()), promote_member=answer(200, members()),
                        remove_member=answer(200, members()))
    assert run("member", "add", "n4", "h4:7004", "h4:8004") == EXIT_OK
    assert capsys.readouterr().out == "n4 learner\n"
    assert json.loads(fake.sent[-1].body) == {"id": "n4", "raft_address": "h4:7004",
                                              "http_address": "h4:8004"}
    assert run("member", "promote", "n4") == EXIT_OK
    assert capsys.readouterr().out == "n4 voter\n"
    assert run("member", "remove", "n4", "--force") == EXIT_OK
    assert capsys.readouterr().out == "n4 removed\n"
    assert fake.sent[-1].target == "/cluster/members/n4?force=true"
    assert run("-o", "table", "member", "remove", "n4") == EXIT_OK
    assert "| n2 " in capsys.readouterr().out
    assert fake.sent[-1].target == "/cluster/members/n4"


def test_leader_transfer(fake: ByKind, capsys):
    fake.answers.update(transfer_leader=answer(200, {"leader": "n2", "leader_http": "h2:8002"}))
    assert run("leader", "transfer", "n2") == EXIT_OK
    assert capsys.readouterr().out == "n2\n"
    assert run("-o", "json", "leader", "transfer", "n2") == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"leader": "n2"}


@pytest.mark.parametrize("response, code, words", [
    (answer(409, {"error": "another configuration change is in progress"}), EXIT_CONDITION,
     "refused: 409: another configuration change"),
    (answer(404, {"error": "no member n9 in the cluster"}), EXIT_NOT_FOUND, "no member n9"),
    (answer(504, {"error": "leadership lost", "applied": "unknown"}), EXIT_UNKNOWN,
     "outcome unknown"),
    (answer(400, {"error": "the raft_address must be host:port"}), EXIT_ERROR,
     "must be host:port"),
])
def test_failures_exit_with_their_documented_codes(fake: ByKind, capsys, response: Response,
                                                   code: int, words: str):
    fake.answers.update(promote_member=response)
    assert run("member", "promote", "n9") == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("leifdb: error: ") and words in err


def test_usage_errors_exit_2(fake: ByKind, capsys):
    for args in (["member"], ["member", "add", "n4"], ["leader"], ["member", "drop", "n4"],
                 ["member", "add", "n4", "h:1", "ftp://x"]):
        assert run(*args) == EXIT_USAGE, args
        assert capsys.readouterr().err.startswith("leifdb: error: ")
    assert fake.sent == []


def test_status_shows_learners_and_health(fake: ByKind, capsys):
    unhealthy = {**HEALTH, "role": "follower", "healthy": False, "status": "UNAVAILABLE",
                 "reason": "no leader is known"}
    fake.answers.update(health=[answer(200, HEALTH), answer(503, unhealthy)])
    assert main(["--endpoints", f"{A},{B}", "status"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert "HEALTHY" in lines[1]
    assert " learner " in lines[3] and " yes " in lines[3]
    assert " follower " in lines[4] and "no: no leader is known" in lines[4]
