"""Elections: campaign (waiting in line, 423 on timeout), the leader, proclaim, resign,
and the observe stream of leaders as Server-Sent Events."""

from __future__ import annotations

import pytest
from twisted.internet.error import ConnectionDone

from leifdb.errors import NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.http.elections import ObserveStream
from leifdb.kv.commands import Delete, Put
from leifdb.service.api import Holder
from tests.http.client import Client, Pending, Stream, assert_json_error
from tests.http.doubles import Handle, Request


def leader(name: str, lease: int, token: int, value: str, revision: int | None = None
           ) -> dict:
    return {"name": name, "key": f"_election/{name}/{lease}", "token": token, "lease": lease,
            "value": value, "revision": token if revision is None else revision}


def run(client: Client, name: str, lease: int, value: str, query: str = "") -> Pending:
    return client.start("POST", f"/election/{name}/campaign{query}",
                        json={"lease": lease, "value": value})


def leaders(stream: Stream) -> list[dict]:
    return [m["data"] for m in stream.messages() if m.get("event") == "leader"]


# -- campaign and the leader ------------------------------------------------------------------


def test_the_first_candidate_leads_at_once_the_next_when_it_resigns():
    client = Client()
    a, b = client.service.make_lease(), client.service.make_lease()
    reply = client.post("/election/db/campaign", json={"lease": a, "value": "node-a"})
    assert reply.code == 200
    assert reply.json() == leader("db", a, 3, "node-a")
    assert reply.header("X-LeifDB-Revision") == "3"
    assert client.service.acquired[-1] == {"prefix": "_election/", "name": "db", "lease": a,
                                           "value": "node-a", "timeout": 60.0}
    second = run(client, "db", b, "node-b", "?timeout=30s")
    assert not second.done
    assert client.get("/election/db").json() == leader("db", a, 3, "node-a")
    resigned = client.post("/election/db/resign", json={"token": 3})
    assert resigned.code == 200 and resigned.json() == {"revision": 5}
    assert client.finish(second).json() == leader("db", b, 4, "node-b")
    assert client.get("/election/db").json()["lease"] == b


def test_a_campaign_not_won_in_time_is_423_and_the_candidate_key_goes():
    client = Client()
    a, b = client.service.make_lease(), client.service.make_lease()
    client.post("/election/db/campaign", json={"lease": a, "value": "node-a"})
    waiting = run(client, "db", b, "node-b", "?timeout=1s")
    client.service.clock.advance(1)
    body = assert_json_error(client.finish(waiting), 423)
    assert body["holder"] == f"_election/db/{a}"
    assert client.service.store.get(f"_election/db/{b}") is None


def test_a_candidate_that_leaves_is_withdrawn():
    client = Client()
    a, b = client.service.make_lease(), client.service.make_lease()
    client.post("/election/db/campaign", json={"lease": a})
    run(client, "db", b, "node-b")
    client.agent.last.pump.clientIO.loseConnection()
    client.flush()
    assert client.service.acquires == []
    assert client.service.writes[-1] == Delete(f"_election/db/{b}")


def test_value_is_optional_in_a_campaign():
    client = Client()
    lease = client.service.make_lease()
    assert client.post("/election/db/campaign", json={"lease": lease}).json()["value"] == ""


def test_campaign_with_an_unknown_lease_is_404():
    assert assert_json_error(Client().post("/election/db/campaign", json={"lease": 3}),
                             404)["lease"] == 3


@pytest.mark.parametrize("path,body,fragment", [
    ("/election//campaign", {"lease": 1}, "must not be empty"),
    ("/election/a/b/campaign", {"lease": 1}, "must not contain '/'"),
    ("/election/db/campaign", {"value": "x"}, "missing lease"),
    ("/election/db/campaign", {"lease": -1}, "'lease' must be an integer"),
    ("/election/db/campaign?timeout=1h", {"lease": 1}, "timeout must be a duration"),
    ("/election/db/proclaim", {"value": "x"}, "missing token"),
    ("/election/db/proclaim", {"token": 1}, "missing value"),
    ("/election/db/proclaim", {"token": "1", "value": "x"}, "'token' must be an integer"),
    ("/election/db/proclaim", {"token": 1, "value": None}, "'value' must be a string"),
    ("/election/db/resign", {}, "missing token"),
    ("/election/db/resign", {"token": 0}, "'token' must be an integer of at least 1"),
    ("/election/db/resign", {"token": 1, "value": "x"}, "unknown field"),
])
def test_bad_requests_are_400(path, body, fragment):
    client = Client()
    client.service.make_lease()
    reply = client.post(path, json=body)
    assert fragment in assert_json_error(reply, 400)["error"]
    assert client.service.acquired == [] and client.service.writes == []


def test_no_leader_is_404_and_a_bad_name_400():
    client = Client()
    reply = client.get("/election/db")
    assert assert_json_error(reply, 404) == {"error": "election db has no leader",
                                             "name": "db"}
    assert reply.header("X-LeifDB-Revision") == "0"
    assert_json_error(client.get("/election/" + "x" * 257), 400)
    assert_json_error(client.get("/election/a/b"), 400)


def test_leader_reads_are_linearizable_unless_stale():
    client = Client()
    client.service.read_error = NotLeaderError("10.0.0.2:8081")
    reply = client.get("/election/db")
    assert reply.header("Location") == "http://10.0.0.2:8081/election/db"
    assert client.get("/election/db?consistency=stale").code == 404
    client.service.read_error = Unavailable("no quorum")
    assert_json_error(client.get("/election/db"), 503)


@pytest.mark.parametrize("path,body", [
    ("/election/db/campaign", {"lease": 1, "value": "x"}),
    ("/election/db/proclaim", {"token": 1, "value": "x"}),
    ("/election/db/resign", {"token": 1}),
])
def test_election_writes_on_a_follower_are_307_503_504(path, body):
    client = Client()
    client.service.write_error = NotLeaderError("10.0.0.2:8081")
    reply = client.post(path, json=body)
    assert assert_json_error(reply, 307)["applied"] is False
    assert reply.header("Location") == f"http://10.0.0.2:8081{path}"
    client.service.write_error = NotLeaderError(None)
    assert_json_error(client.post(path, json=body), 503)
    client.service.write_error = Unavailable("no quorum")
    assert_json_error(client.post(path, json=body), 503)
    client.service.write_error = OutcomeUnknown("lost")
    assert assert_json_error(client.post(path, json=body), 504)["applied"] == "unknown"


# -- proclaim and resign ------------------------------------------------------------------------


def test_proclaim_changes_the_value_and_revision_not_the_token():
    client = Client()
    lease = client.service.make_lease()
    token = client.post("/election/db/campaign", json={"lease": lease, "value": "a"}).json()[
        "token"]
    reply = client.post("/election/db/proclaim", json={"token": token, "value": "a, at x"})
    assert reply.code == 200
    assert reply.json() == leader("db", lease, token, "a, at x", revision=3)
    assert reply.header("X-LeifDB-Revision") == "3"
    assert client.service.writes[-1] == Put(f"_election/db/{lease}", "a, at x", lease=lease)


@pytest.mark.parametrize("path,body", [
    ("/election/db/proclaim", {"token": 99, "value": "x"}),
    ("/election/db/resign", {"token": 99}),
])
def test_a_token_that_does_not_lead_is_412(path, body):
    client = Client()
    assert "does not lead" in assert_json_error(client.post(path, json=body), 412)["error"]
    lease = client.service.make_lease()
    client.post("/election/db/campaign", json={"lease": lease})
    reply = client.post(path, json=body)
    assert_json_error(reply, 412)
    assert reply.header("X-LeifDB-Revision") == "2"
    assert client.get("/election/db").json()["token"] == 2


def test_a_resigned_token_cannot_resign_again():
    client = Client()
    lease = client.service.make_lease()
    client.post("/election/db/campaign", json={"lease": lease})
    assert client.post("/election/db/resign", json={"token": 2}).code == 200
    assert_json_error(client.post("/election/db/resign", json={"token": 2}), 412)
    assert_json_error(client.get("/election/db"), 404)


def test_elections_and_locks_of_one_name_are_apart():
    client = Client()
    lease = client.service.make_lease()
    client.post("/lock/db", json={"lease": lease})
    assert_json_error(client.get("/election/db"), 404)
    client.post("/election/db/campaign", json={"lease": lease})
    assert client.get("/election/db").json()["key"] == f"_election/db/{lease}"
    assert client.get("/lock/db").json()["key"] == f"_lock/db/{lease}"


# -- GET /election/{name}/observe -------------------------------------------------------------


def test_observe_sends_the_leader_at_once_then_each_change():
    client = Client()
    a, b = client.service.make_lease(), client.service.make_lease()
    stream = client.stream("/election/db/observe")
    assert stream.code == 200
    assert stream.header("Content-Type") == "text/event-stream"
    assert stream.header("Cache-Control") == "no-cache"
    assert stream.header("X-LeifDB-Revision") == "2"
    assert stream.messages() == [
        {"retry": "1000"}, {"event": "leader", "data": {"leader": None, "revision": 2}}]
    client.post("/election/db/campaign", json={"lease": a, "value": "node-a"})
    run(client, "db", b, "node-b")  # waits: no new leader
    client.service.set("unrelated", "x")
    client.post("/election/db/proclaim", json={"token": 3, "value": "node-a2"})
    client.post("/election/db/resign", json={"token": 3})
    client.delete(f"/lease/{b}")
    assert leaders(stream) == [
        {"leader": None, "revision": 2},
        {"leader": leader("db", a, 3, "node-a"), "revision": 3},
        {"leader": leader("db", a, 3, "node-a2", revision=6), "revision": 6},
        {"leader": leader("db", b, 4, "node-b"), "revision": 7},
        {"leader": None, "revision": 8},
    ]
    assert not stream.ended


def test_observe_of_an_election_with_a_leader_starts_with_it():
    client = Client()
    lease = client.service.make_lease()
    client.post("/election/db/campaign", json={"lease": lease, "value": "v"})
    assert leaders(client.stream("/election/db/observe")) == [
        {"leader": leader("db", lease, 2, "v"), "revision": 2}]


@pytest.mark.parametrize("reason,compact", [("compacted", 5), ("shutdown", None)])
def test_the_server_ends_an_observe_stream_with_a_final_event(reason, compact):
    client = Client()
    stream = client.stream("/election/db/observe")
    client.service.close_watchers(reason, compact)
    last = stream.messages()[-1]
    assert last["event"] == reason and last["data"]["reason"] == reason
    assert last["data"].get("compact_revision") == compact
    assert stream.ended and client.service.observers == []


def test_a_client_that_leaves_stops_observing():
    client = Client()
    stream = client.stream("/election/db/observe")
    observer = client.service.observers[0]
    stream.hang_up()
    assert observer.cancelled and client.service.observers == []


def test_observe_starts_after_a_barrier_unless_stale():
    client = Client()
    client.stream("/election/db/observe")
    assert client.service.barriers == 1
    client.stream("/election/db/observe?consistency=stale")
    assert client.service.barriers == 1
    client.service.read_error = NotLeaderError("10.0.0.2:8081")
    reply = client.get("/election/db/observe")
    assert reply.header("Location") == "http://10.0.0.2:8081/election/db/observe"
    client.service.read_error = Unavailable("no quorum")
    reply = client.get("/election/db/observe")
    assert_json_error(reply, 503)
    assert len(client.service.observers) == 2


def test_too_many_streams_is_503_and_bad_input_400():
    client = Client(max_watchers=1)
    client.stream("/watch/k")
    reply = client.get("/election/db/observe")
    assert "too many" in assert_json_error(reply, 503)["error"]
    assert reply.header("Retry-After") == "1"
    assert_json_error(client.get("/election/db/observe?prefix=true"), 400)
    assert_json_error(client.get("/election/a%2Fb/observe"), 400)
    assert_json_error(client.post("/election/db/observe"), 405)


def test_head_on_observe_answers_the_headers_only():
    client = Client()
    reply = client.request("HEAD", "/election/db/observe")
    assert reply.code == 200 and reply.body == b""
    assert client.service.observers == []


# -- the observe sink on its own --------------------------------------------------------------

HOLDER = Holder("db", "_election/db/1", 2, 1, "a", 2)


def test_while_paused_only_the_latest_leader_waits_and_resume_sends_it():
    request = Request()
    stream = ObserveStream(request)
    handle = Handle()
    stream.start(handle, 1)
    stream.leader(None, 1)
    stream.pauseProducing()
    stream.leader(HOLDER, 2)
    stream.leader(None, 3)
    sent = b"".join(request.written)
    assert sent.count(b"event: leader") == 1
    stream.resumeProducing()
    assert handle.resumed == 1
    assert request.written[-1] == b'event: leader\ndata: {"leader":null,"revision":3}\n\n'
    assert b"".join(request.written).count(b"event: leader") == 2


def test_a_leader_held_while_paused_goes_out_before_the_final_event():
    request = Request()
    stream = ObserveStream(request)
    stream.start(Handle(), 1)
    stream.pauseProducing()
    stream.leader(HOLDER, 2)
    stream.closed("shutdown")
    sent = b"".join(request.written)
    assert sent.index(b"event: leader") < sent.index(b"event: shutdown")
    assert request.finished


def test_leaders_before_start_follow_the_retry_line():
    request = Request()
    stream = ObserveStream(request)
    stream.leader(HOLDER, 2)
    assert request.written == []
    stream.start(Handle(), 2)
    sent = b"".join(request.written)
    assert sent.startswith(b"retry: 1000\n\nevent: leader\ndata: {\"leader\":{\"name\":\"db\"")
    assert b"progress" not in sent


def test_after_the_client_left_nothing_is_written():
    request = Request()
    stream = ObserveStream(request)
    handle = Handle()
    stream.start(handle, 1)
    before = len(request.written)
    request.finishes[0].errback(ConnectionDone())
    assert handle.cancelled and stream.done.called
    stream.leader(HOLDER, 2)
    stream.closed("shutdown")
    assert len(request.written) == before


@pytest.mark.parametrize("verb", ["campaign", "proclaim", "resign"])
def test_a_verb_with_the_wrong_method_is_405_not_a_bad_name(verb):
    client = Client()
    reply = client.get(f"/election/db/{verb}")
    assert assert_json_error(reply, 405)["allowed"] == ["OPTIONS", "POST"]
    options = client.request("OPTIONS", f"/election/db/{verb}")
    assert options.header("Allow") == "OPTIONS, POST"


def test_an_election_may_be_named_like_a_verb():
    client = Client()
    lease = client.service.make_lease()
    reply = client.post("/election/campaign/campaign", json={"lease": lease})
    assert reply.json()["key"] == f"_election/campaign/{lease}"
    assert client.get("/election/campaign").json()["lease"] == lease
