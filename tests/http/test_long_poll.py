"""Long poll: GET /db/{key}?wait_revision=N waits for a change at N or later (or the
timeout), then answers the current state as a plain read would."""

from __future__ import annotations

import pytest

from leifdb.errors import NotLeaderError, Unavailable
from tests.http.client import Client, assert_json_error


def test_a_change_already_in_history_answers_at_once():
    client = Client()
    client.service.set("k", "1")
    client.service.set("k", "2")
    reply = client.get("/db/k?wait_revision=1")
    assert reply.code == 200
    assert reply.json() == {"key": "k", "value": "2", "revision": 2, "create_revision": 1,
                            "lease": 0}
    assert reply.header("ETag") == '"2"'
    assert reply.header("X-LeifDB-Revision") == "2"


def test_waits_for_a_change_then_reads_the_current_state():
    client = Client()
    client.service.set("k", "1")
    pending = client.start("GET", "/db/k?wait_revision=2")
    assert not pending.done
    client.service.set("other", "x")  # not this key: keep waiting
    assert not pending.done
    client.service.set("k", "2")
    reply = client.finish(pending)
    assert reply.json() == {"key": "k", "value": "2", "revision": 3, "create_revision": 1,
                            "lease": 0}
    assert reply.header("X-LeifDB-Revision") == "3"


def test_a_delete_wakes_the_poll_which_then_answers_404():
    client = Client()
    client.service.set("k", "1")
    pending = client.start("GET", "/db/k?wait_revision=2")
    client.service.remove("k")
    reply = client.finish(pending)
    assert assert_json_error(reply, 404)["key"] == "k"
    assert reply.header("X-LeifDB-Revision") == "2"


def test_timeout_answers_the_current_state_anyway():
    client = Client()
    client.service.set("k", "1")
    pending = client.start("GET", "/db/k?wait_revision=2&timeout=30s")
    assert client.service.waits[-1]["timeout"] == 30.0
    client.service.clock.advance(29.9)
    assert not pending.done
    client.service.clock.advance(0.1)
    reply = client.finish(pending)
    assert reply.json()["value"] == "1"
    assert reply.header("X-LeifDB-Revision") == "1"


def test_timeout_on_an_absent_key_is_404():
    client = Client()
    pending = client.start("GET", "/db/nope?wait_revision=1&timeout=1")
    client.service.clock.advance(1)
    assert_json_error(client.finish(pending), 404)


@pytest.mark.parametrize("text,seconds", [
    (None, 60.0), ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("45", 45.0), ("1.5", 1.5),
    ("0", 0.0), ("600s", 600.0), ("10m", 600.0),
])
def test_timeout_forms(text, seconds):
    client = Client()
    query = "" if text is None else f"&timeout={text}"
    client.start("GET", f"/db/k?wait_revision=1{query}")
    assert client.service.waits == [
        {"key": "k", "prefix": False, "wait_revision": 1, "timeout": seconds}]


@pytest.mark.parametrize("text", ["601", "11m", "-1", "1h", "s", "1.5.5", "abc", " 5", ""])
def test_bad_or_too_long_timeouts_are_400(text):
    client = Client()
    body = assert_json_error(client.get(f"/db/k?wait_revision=1&timeout={text}"), 400)
    assert body["parameter"] == "timeout"
    assert client.service.waits == []


def test_prefix_polls_every_key_under_it_and_answers_a_page():
    client = Client()
    client.service.set("app/a", "1")
    pending = client.start("GET", "/db/app/?wait_revision=2&prefix=true&limit=1")
    client.service.set("apple", "not under app/")
    assert not pending.done
    client.service.set("app/b", "2")
    reply = client.finish(pending)
    assert reply.json() == {
        "prefix": "app/",
        "items": [{"key": "app/a", "value": "1", "revision": 1, "create_revision": 1,
                   "lease": 0}],
        "more": True,
        "next_start_after": "app/a",
    }
    assert reply.header("X-LeifDB-Revision") == "3"
    assert reply.header("ETag") is None
    after = client.get("/db/app/?wait_revision=1&prefix=true&start_after=app/a")
    assert [i["key"] for i in after.json()["items"]] == ["app/b"]


def test_an_empty_prefix_polls_everything():
    client = Client()
    pending = client.start("GET", "/db/?wait_revision=1&prefix=true")
    client.service.set("x", "1")
    assert [i["key"] for i in client.finish(pending).json()["items"]] == ["x"]


def test_wait_revision_older_than_history_is_410():
    client = Client()
    for value in "123":
        client.service.set("k", value)
    client.service.compact(3)
    reply = client.get("/db/k?wait_revision=2")
    assert assert_json_error(reply, 410)["compact_revision"] == 3
    assert reply.header("X-LeifDB-Revision") == "3"
    assert client.get("/db/k?wait_revision=3").code == 200


@pytest.mark.parametrize("query,parameter", [
    ("prefix=true", "prefix"), ("prefix=false", "prefix"), ("timeout=5s", "timeout"),
    ("wait_revision=1&limit=5", "limit"), ("wait_revision=1&start_after=a", "start_after"),
    ("wait_revision=1&prefix=false&limit=5", "limit"), ("limit=5", "limit"),
    ("wait_revision=0", "wait_revision"), ("wait_revision=x", "wait_revision"),
    ("wait_revision=1&prefix=yes", "prefix"), ("wait_revision=1&ttl=1", "ttl"),
])
def test_parameters_out_of_place_or_malformed_are_400(query, parameter):
    client = Client()
    body = assert_json_error(client.get("/db/k?" + query), 400)
    assert body["parameter"] == parameter
    assert client.service.waits == []


def test_empty_key_without_prefix_is_400():
    assert_json_error(Client().get("/db/?wait_revision=1"), 400)


def test_the_read_after_the_wait_is_linearizable_unless_stale():
    """One barrier before the wait (a node that cannot serve the read says so at once)
    and one for the read after it."""
    client = Client()
    client.service.set("k", "1")
    assert client.get("/db/k?wait_revision=1").code == 200
    assert client.service.barriers == 2
    client.service.barriers = 1
    assert client.get("/db/k?wait_revision=1&consistency=stale").code == 200
    assert client.service.barriers == 1


def test_a_read_that_cannot_be_served_after_the_wait_is_503_or_307():
    client = Client()
    client.service.set("k", "1")
    client.service.read_error = Unavailable("no quorum")
    reply = client.get("/db/k?wait_revision=1")
    assert_json_error(reply, 503)
    assert reply.header("Retry-After") == "1"
    client.service.read_error = NotLeaderError("10.0.0.9:8080")
    reply = client.get("/db/k?wait_revision=1&timeout=1s")
    assert reply.header("Location") == "http://10.0.0.9:8080/db/k?wait_revision=1&timeout=1s"


def test_a_client_that_leaves_frees_its_waiter():
    client = Client()
    client.start("GET", "/db/k?wait_revision=1")
    assert client.service.pending_waits == 1
    client.agent.last.pump.clientIO.loseConnection()
    client.flush()
    assert client.service.pending_waits == 0
    client.service.set("k", "1")  # nothing left to answer


def test_key_over_the_limit_is_413():
    client = Client(max_key_bytes=3)
    assert_json_error(client.get("/db/abcd?wait_revision=1"), 413)
    assert_json_error(client.get("/db/abcd?wait_revision=1&prefix=true"), 413)
