"""Locks: POST /lock/{name} (waiting in line, 423 on timeout, released by deleting the key
or ending the lease), GET /lock/{name}, and writes fenced with ?fence=NAME:TOKEN."""

from __future__ import annotations

import pytest

from leifdb.errors import NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.kv.commands import Delete, Fence, Put
from tests.http.client import Client, Pending, assert_json_error


def holder(name: str, lease: int, token: int, value: str = "", revision: int | None = None
           ) -> dict:
    return {"name": name, "key": f"_lock/{name}/{lease}", "token": token, "lease": lease,
            "value": value, "revision": token if revision is None else revision}


def ask(client: Client, name: str, lease: int, query: str = "", **body: object) -> Pending:
    return client.start("POST", f"/lock/{name}{query}", json={"lease": lease, **body})


# -- POST /lock/{name} ---------------------------------------------------------------------


def test_a_free_lock_is_acquired_at_once():
    client = Client()
    lease = client.service.make_lease()
    reply = client.post("/lock/jobs", json={"lease": lease, "value": "worker-1"})
    assert reply.code == 200
    assert reply.json() == holder("jobs", lease, 2, "worker-1")
    assert reply.header("X-LeifDB-Revision") == "2"
    assert client.service.acquired == [{"prefix": "_lock/", "name": "jobs", "lease": lease,
                                        "value": "worker-1", "timeout": 60.0}]
    item = client.get("/db/_lock/jobs/1").json()
    assert item["create_revision"] == 2 and item["lease"] == lease


def test_waiters_acquire_in_order_of_arrival_with_growing_tokens():
    client = Client()
    a, b, c = (client.service.make_lease() for _ in range(3))
    first = client.post("/lock/jobs", json={"lease": a})
    assert first.json()["token"] == 4
    second = ask(client, "jobs", b)
    third = ask(client, "jobs", c)
    assert not second.done and not third.done
    client.delete("/db/" + first.json()["key"])  # release
    assert client.finish(second).json() == holder("jobs", b, 5)
    assert not third.done
    client.delete("/db/_lock/jobs/2")
    assert client.finish(third).json() == holder("jobs", c, 6)


def test_the_holders_lease_ending_releases_the_lock():
    client = Client()
    a = client.service.make_lease(5)
    b = client.service.make_lease(60)
    assert client.post("/lock/jobs", json={"lease": a}).code == 200
    waiting = ask(client, "jobs", b, "?timeout=30s")
    client.service.clock.advance(5)  # lease a expires: its key goes
    assert client.finish(waiting).json()["lease"] == b


def test_a_revoke_releases_the_lock():
    client = Client()
    a, b = client.service.make_lease(), client.service.make_lease()
    client.post("/lock/jobs", json={"lease": a})
    waiting = ask(client, "jobs", b)
    assert client.delete(f"/lease/{a}").code == 200
    assert client.finish(waiting).json()["lease"] == b


def test_the_same_lease_asking_again_gets_its_own_key_back():
    client = Client()
    lease = client.service.make_lease()
    first = client.post("/lock/jobs", json={"lease": lease}).json()
    assert client.post("/lock/jobs", json={"lease": lease}).json() == first


def test_not_acquired_within_the_timeout_is_423_and_the_waiter_key_goes():
    client = Client()
    a, b = client.service.make_lease(), client.service.make_lease()
    client.post("/lock/jobs", json={"lease": a})
    waiting = ask(client, "jobs", b, "?timeout=2s")
    assert client.get(f"/db/_lock/jobs/{b}").code == 200  # waiting in line
    client.service.clock.advance(1.9)
    assert not waiting.done
    client.service.clock.advance(0.1)
    reply = client.finish(waiting)
    body = assert_json_error(reply, 423)
    assert body["holder"] == f"_lock/jobs/{a}"
    assert reply.header("X-LeifDB-Revision") == "5"
    assert_json_error(client.get(f"/db/_lock/jobs/{b}"), 404)


@pytest.mark.parametrize("query,seconds", [("", 60.0), ("?timeout=500ms", 0.5),
                                           ("?timeout=2m", 120.0), ("?timeout=600", 600.0)])
def test_the_timeout_is_the_long_polls(query, seconds):
    client = Client()
    lease = client.service.make_lease()
    client.post(f"/lock/l{query}", json={"lease": lease})
    assert client.service.acquired[-1]["timeout"] == seconds


def test_the_default_and_maximum_wait_follow_the_service_limits():
    client = Client(default_wait_seconds=7.0, max_wait_seconds=10.0)
    lease = client.service.make_lease()
    client.post("/lock/l", json={"lease": lease})
    assert client.service.acquired[-1]["timeout"] == 7.0
    assert_json_error(client.post("/lock/l?timeout=11", json={"lease": lease}), 400)


def test_a_client_that_leaves_removes_its_waiting_key():
    client = Client()
    a, b = client.service.make_lease(), client.service.make_lease()
    client.post("/lock/jobs", json={"lease": a})
    ask(client, "jobs", b)
    assert len(client.service.acquires) == 1
    client.agent.last.pump.clientIO.loseConnection()
    client.flush()
    assert client.service.acquires == []
    assert client.service.store.get(f"_lock/jobs/{b}") is None
    assert client.service.writes[-1] == Delete(f"_lock/jobs/{b}")


def test_an_unknown_lease_is_404():
    client = Client()
    body = assert_json_error(client.post("/lock/jobs", json={"lease": 9}), 404)
    assert body["lease"] == 9
    assert client.service.store.range("_lock/")[0] == []


@pytest.mark.parametrize("path,body,fragment", [
    ("/lock/", {"lease": 1}, "must not be empty"),
    ("/lock/a/b", {"lease": 1}, "must not contain '/'"),
    ("/lock/a%2Fb", {"lease": 1}, "must not contain '/'"),
    ("/lock/" + "n" * 257, {"lease": 1}, "the limit is 256"),
    ("/lock/l", {}, "missing lease"),
    ("/lock/l", {"value": "me"}, "missing lease"),
    ("/lock/l", {"lease": 0}, "'lease' must be an integer of at least 1"),
    ("/lock/l", {"lease": "1"}, "'lease' must be an integer"),
    ("/lock/l", {"lease": 1, "value": 2}, "'value' must be a string"),
    ("/lock/l", {"lease": 1, "ttl": 2}, "unknown field"),
    ("/lock/l?timeout=forever", {"lease": 1}, "timeout must be a duration"),
    ("/lock/l?timeout=601", {"lease": 1}, "at most 600s"),
])
def test_bad_names_bodies_and_timeouts_are_400(path, body, fragment):
    client = Client()
    client.service.make_lease()
    reply = client.post(path, json=body)
    assert fragment in assert_json_error(reply, 400)["error"]
    assert client.service.acquired == []


def test_no_body_is_400_and_a_large_value_413():
    client = Client(max_value_bytes=10)
    client.service.make_lease()
    assert "missing lease" in assert_json_error(client.post("/lock/l"), 400)["error"]
    assert_json_error(client.post("/lock/l", json={"lease": 1, "value": "v" * 11}), 413)


def test_the_name_limit_follows_the_service():
    client = Client(max_name_bytes=4)
    lease = client.service.make_lease()
    assert client.post("/lock/four", json={"lease": lease}).code == 200
    assert_json_error(client.post("/lock/fives", json={"lease": lease}), 400)
    assert_json_error(client.get("/lock/fives"), 400)


def test_lock_on_a_follower_is_307_503_504_like_a_write():
    client = Client()
    client.service.write_error = NotLeaderError("10.0.0.2:8081")
    reply = client.post("/lock/jobs?timeout=5s", json={"lease": 1})
    assert assert_json_error(reply, 307)["applied"] is False
    assert reply.header("Location") == "http://10.0.0.2:8081/lock/jobs?timeout=5s"
    client.service.write_error = NotLeaderError(None)
    assert assert_json_error(client.post("/lock/jobs", json={"lease": 1}), 503)[
        "applied"] is False
    client.service.write_error = OutcomeUnknown("lost")
    assert assert_json_error(client.post("/lock/jobs", json={"lease": 1}), 504)[
        "applied"] == "unknown"


# -- GET /lock/{name} ----------------------------------------------------------------------


def test_the_holder_or_404_when_free():
    client = Client()
    a, b = client.service.make_lease(), client.service.make_lease()
    reply = client.get("/lock/jobs")
    assert assert_json_error(reply, 404) == {"error": "lock jobs is free", "name": "jobs"}
    assert reply.header("X-LeifDB-Revision") == "2"
    client.post("/lock/jobs", json={"lease": a, "value": "me"})
    ask(client, "jobs", b)
    reply = client.get("/lock/jobs")
    assert reply.json() == holder("jobs", a, 3, "me")
    assert reply.header("X-LeifDB-Revision") == "4"
    assert client.service.barriers == 2


def test_stale_holder_reads_skip_the_barrier_and_others_redirect():
    client = Client()
    client.service.read_error = NotLeaderError("10.0.0.2:8081")
    reply = client.get("/lock/jobs")
    assert_json_error(reply, 307)
    assert reply.header("Location") == "http://10.0.0.2:8081/lock/jobs"
    assert client.get("/lock/jobs?consistency=stale").code == 404
    client.service.read_error = Unavailable("no quorum")
    assert "stale" in assert_json_error(client.get("/lock/jobs"), 503)["error"]
    assert_json_error(client.get("/lock/jobs?consistency=eventual"), 400)
    assert_json_error(client.get("/lock/jobs?timeout=1"), 400)


def test_other_methods_are_405():
    reply = Client().delete("/lock/jobs")
    assert assert_json_error(reply, 405)["allowed"] == ["GET", "HEAD", "OPTIONS", "POST"]


# -- fences ---------------------------------------------------------------------------------


def locked(client: Client) -> dict:
    lease = client.service.make_lease()
    return client.post("/lock/jobs", json={"lease": lease}).json()


def test_a_fenced_put_and_delete_apply_while_the_lock_is_held_with_the_token():
    client = Client()
    lock = locked(client)
    reply = client.put(f"/db/out?value=1&fence=jobs:{lock['token']}")
    assert reply.code == 200
    assert client.service.writes[-1] == Put("out", "1", fence=Fence("_lock/jobs/", 2))
    assert client.delete(f"/db/out?fence=jobs:{lock['token']}").code == 200
    assert client.service.writes[-1] == Delete("out", fence=Fence("_lock/jobs/", 2))


def test_a_fenced_write_after_the_lock_changed_hands_is_412():
    client = Client()
    lock = locked(client)
    client.delete("/db/" + lock["key"])
    lease = client.service.make_lease()
    client.post("/lock/jobs", json={"lease": lease})
    for reply in [client.put("/db/out?value=late&fence=jobs:2"),
                  client.delete("/db/out?fence=jobs:2")]:
        assert assert_json_error(reply, 412) == {
            "error": "fenced: lock jobs is no longer held with token 2", "fence": "jobs:2"}
        assert reply.header("X-LeifDB-Revision") is not None
    assert client.service.store.get("out") is None


def test_a_fenced_write_on_a_free_lock_is_412():
    client = Client()
    reply = client.put("/db/out?value=v&fence=jobs:1")
    assert assert_json_error(reply, 412)["fence"] == "jobs:1"


def test_a_name_with_colons_fences_with_the_last_one():
    client = Client()
    lease = client.service.make_lease()
    token = client.post("/lock/a:b", json={"lease": lease}).json()["token"]
    assert client.put(f"/db/out?value=v&fence=a:b:{token}").code == 200
    assert client.service.writes[-1].fence == Fence("_lock/a:b/", token)


@pytest.mark.parametrize("fence", ["jobs", "jobs:", ":5", "jobs:0", "jobs:-1", "jobs:x",
                                   "a/b:5", "jobs:1.5", "", "n" * 257 + ":1",
                                   "jobs:99999999999999999999"])
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_a_malformed_fence_is_400(fence, method):
    client = Client()
    value = "&value=v" if method == "PUT" else ""
    reply = client.request(method, f"/db/k?fence={fence}{value}")
    assert assert_json_error(reply, 400)["parameter"] == "fence"
    assert client.service.writes == []


def test_a_fence_with_a_condition_needs_both():
    client = Client()
    lock = locked(client)
    client.service.set("k", "old")
    reply = client.put(f"/db/k?value=new&prev=other&fence=jobs:{lock['token']}")
    assert assert_json_error(reply, 412)["value"] == "old"
    assert client.put(f"/db/k?value=new&prev=old&fence=jobs:{lock['token']}").code == 200
