"""Leases: POST/GET /lease, GET/DELETE /lease/{id}, keepalive, and keys attached to leases
with PUT /db/{key}?lease= or ?ttl=; every status code of each."""

from __future__ import annotations

import pytest
from twisted.internet.defer import succeed

from leifdb.errors import NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.kv.commands import FAILED_LEASE_NOT_FOUND, LeaseGrant, LeaseRenew, LeaseRevoke, Put
from leifdb.service.api import WriteResult
from tests.http.client import Client, Reply, assert_json_error


def send(client: Client, method: str, path: str, body: object = None) -> Reply:
    """``body`` as JSON, or no body at all when None."""
    return client.request(method, path, **({} if body is None else {"json": body}))


# -- POST /lease ---------------------------------------------------------------------------


def test_grant_answers_the_lease_with_its_id_ttl_and_revision():
    client = Client()
    client.service.set("k", "v")
    reply = client.post("/lease", json={"ttl": 30})
    assert reply.code == 200
    assert reply.json() == {"id": 2, "ttl": 30.0, "remaining": 30.0, "revision": 2}
    assert reply.header("X-LeifDB-Revision") == "2"
    assert client.service.writes == [LeaseGrant(30_000)]
    assert client.service.store.has_lease(2)


@pytest.mark.parametrize("ttl,seconds", [
    (30, 30.0), (2.5, 2.5), ("30s", 30.0), ("2m", 120.0), ("2500ms", 2.5), ("45", 45.0),
    (2, 2.0), (30 * 86400, 30 * 86400.0),
])
def test_ttl_is_seconds_or_a_duration(ttl, seconds):
    client = Client()
    assert client.post("/lease", json={"ttl": ttl}).json()["ttl"] == seconds
    assert client.service.writes == [LeaseGrant(round(seconds * 1000))]


@pytest.mark.parametrize("body,fragment", [
    ({}, "missing ttl"),
    ({"ttl": 1.9}, "from 2s to 2592000s"),
    ({"ttl": 30 * 86400 + 1}, "from 2s to 2592000s"),
    ({"ttl": "1s"}, "from 2s"),
    ({"ttl": 0}, "from 2s"),
    ({"ttl": -5}, "number of seconds or a duration"),
    ({"ttl": True}, "number of seconds or a duration"),
    ({"ttl": None}, "number of seconds or a duration"),
    ({"ttl": "soon"}, "duration such as 30s"),
    ({"ttl": 30, "id": 5}, "unknown field"),
    ([30], "must be a JSON object"),
])
def test_bad_ttls_and_bodies_are_400(body, fragment):
    client = Client()
    assert fragment in assert_json_error(client.post("/lease", json=body), 400)["error"]
    assert client.service.writes == []


def test_no_body_and_bad_json_are_400():
    client = Client()
    assert "missing ttl" in assert_json_error(client.post("/lease"), 400)["error"]
    assert_json_error(client.raw(b"POST", b"/lease", body=b"{"), 400)
    assert client.service.writes == []


def test_the_ttl_range_follows_the_service_limits():
    client = Client(min_lease_ttl=5.0, max_lease_ttl=60.0)
    assert_json_error(client.post("/lease", json={"ttl": 4}), 400)
    assert_json_error(client.post("/lease", json={"ttl": "61s"}), 400)
    assert client.post("/lease", json={"ttl": 60}).code == 200


def test_too_many_leases_is_413():
    client = Client(max_leases=1)
    assert client.post("/lease", json={"ttl": 30}).code == 200
    reply = client.post("/lease", json={"ttl": 30})
    assert "at most 1 leases" in assert_json_error(reply, 413)["error"]
    assert reply.header("X-LeifDB-Revision") == "1"


def test_a_body_over_the_limit_is_413():
    client = Client(max_body_bytes=100)
    assert_json_error(client.raw(b"POST", b"/lease", body=b'{"ttl": 30' + b" " * 100 + b"}"),
                      413)


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/lease", {"ttl": 30}),
    ("POST", "/lease/1/keepalive", None),
    ("DELETE", "/lease/1", None),
])
def test_lease_writes_on_a_follower_are_307_503_504_like_writes(method, path, body):
    client = Client()
    client.service.make_lease()
    client.service.write_error = NotLeaderError("10.0.0.2:8081")
    reply = send(client, method, path, body)
    assert assert_json_error(reply, 307)["applied"] is False
    assert reply.header("Location") == f"http://10.0.0.2:8081{path}"
    assert reply.header("X-LeifDB-Revision") == "1"
    client.service.write_error = NotLeaderError(None)
    reply = send(client, method, path, body)
    assert assert_json_error(reply, 503)["applied"] is False
    assert reply.header("Retry-After") == "1"
    client.service.write_error = Unavailable("no quorum")
    assert assert_json_error(send(client, method, path, body), 503)["applied"] is False
    client.service.write_error = OutcomeUnknown("leadership lost")
    reply = send(client, method, path, body)
    assert assert_json_error(reply, 504)["applied"] == "unknown"


# -- GET /lease, GET /lease/{id} -----------------------------------------------------------


def test_list_answers_every_lease_without_keys():
    client = Client()
    assert client.get("/lease").json() == {"leases": [], "revision": 0}
    first = client.service.make_lease(10)
    second = client.service.make_lease(20)
    client.service.apply(Put("k", "v", lease=first))
    client.service.clock.advance(4)
    reply = client.get("/lease")
    assert reply.code == 200
    assert reply.json() == {"leases": [{"id": first, "ttl": 10.0, "remaining": 6.0},
                                       {"id": second, "ttl": 20.0, "remaining": 16.0}],
                            "revision": 3}
    assert reply.header("X-LeifDB-Revision") == "3"


def test_get_lease_answers_its_keys_in_order():
    client = Client()
    lease = client.service.make_lease(30)
    for key in ["b", "a", "c/d"]:
        client.service.apply(Put(key, "v", lease=lease))
    client.service.set("other", "no lease")
    client.service.clock.advance(10)
    reply = client.get(f"/lease/{lease}")
    assert reply.code == 200
    assert reply.json() == {"id": lease, "ttl": 30.0, "remaining": 20.0,
                            "keys": ["a", "b", "c/d"], "revision": 5}
    assert reply.header("X-LeifDB-Revision") == "5"


@pytest.mark.parametrize("method,suffix", [("GET", ""), ("DELETE", ""),
                                           ("POST", "/keepalive")])
def test_an_unknown_lease_is_404(method, suffix):
    client = Client()
    client.service.set("k", "v")
    reply = client.request(method, f"/lease/77{suffix}")
    body = assert_json_error(reply, 404)
    assert body["lease"] == 77 and "77" in body["error"]
    assert reply.header("X-LeifDB-Revision") == "1"


@pytest.mark.parametrize("method,suffix", [("GET", ""), ("DELETE", ""),
                                           ("POST", "/keepalive")])
@pytest.mark.parametrize("lease_id", ["abc", "0", "-1", "1.5", "%20", "99999999999999999999"])
def test_a_lease_id_that_is_not_a_positive_integer_is_400(method, suffix, lease_id):
    client = Client()
    body = assert_json_error(client.request(method, f"/lease/{lease_id}{suffix}"), 400)
    assert "positive integer" in body["error"]
    assert client.service.writes == []


def test_lease_reads_on_a_follower_are_307_to_the_leader_or_503():
    client = Client()
    client.service.write_error = NotLeaderError("10.0.0.2:8081")
    for path in ["/lease", "/lease/5"]:
        reply = client.get(path)
        assert "leader" in assert_json_error(reply, 307)["error"]
        assert reply.header("Location") == f"http://10.0.0.2:8081{path}"
    client.service.write_error = NotLeaderError(None)
    reply = client.get("/lease/5")
    assert_json_error(reply, 503)
    assert reply.header("Retry-After") == "1"
    client.service.write_error = Unavailable("lost the majority")
    assert "stale" not in assert_json_error(client.get("/lease"), 503)["error"]


def test_unknown_query_parameters_and_methods_are_refused():
    client = Client()
    assert_json_error(client.get("/lease?consistency=stale"), 400)
    assert_json_error(client.put("/lease"), 405)
    assert_json_error(client.put("/lease/1"), 405)
    assert_json_error(client.get("/lease/1/keepalive"), 405)
    assert_json_error(client.get("/lease/1/other"), 404)


# -- keepalive and revoke ------------------------------------------------------------------


def test_keepalive_renews_the_full_ttl():
    client = Client()
    lease = client.service.make_lease(10)
    client.service.clock.advance(8)
    assert client.get(f"/lease/{lease}").json()["remaining"] == 2.0
    reply = client.post(f"/lease/{lease}/keepalive")
    assert reply.code == 200
    assert reply.json() == {"id": lease, "ttl": 10.0, "remaining": 10.0, "revision": 2}
    assert client.service.writes == [LeaseRenew((lease,))]
    client.service.clock.advance(8)
    assert client.get(f"/lease/{lease}").json()["remaining"] == 2.0


def test_keepalive_takes_no_fields():
    client = Client()
    lease = client.service.make_lease()
    assert client.post(f"/lease/{lease}/keepalive", json={}).code == 200
    assert_json_error(client.post(f"/lease/{lease}/keepalive", json={"ttl": 5}), 400)


def test_an_expired_lease_is_404_and_its_keys_are_gone():
    client = Client()
    lease = client.service.make_lease(5)
    client.service.apply(Put("session", "me", lease=lease))
    client.service.clock.advance(5)
    assert_json_error(client.post(f"/lease/{lease}/keepalive"), 404)
    assert_json_error(client.get("/db/session"), 404)


def test_revoke_deletes_the_lease_and_its_keys_at_one_revision():
    client = Client()
    lease = client.service.make_lease()
    client.service.apply(Put("a", "1", lease=lease))
    client.service.apply(Put("b", "2", lease=lease))
    client.service.set("c", "kept")
    reply = client.delete(f"/lease/{lease}")
    assert reply.code == 200
    assert reply.json() == {"id": lease, "revision": 5}
    assert reply.header("X-LeifDB-Revision") == "5"
    assert client.service.writes == [LeaseRevoke(lease)]
    assert [e.key for e in client.service.history if e.revision == 5] == ["a", "b"]
    assert client.get("/db/a").code == 404 and client.get("/db/c").code == 200
    assert_json_error(client.get(f"/lease/{lease}"), 404)
    assert_json_error(client.delete(f"/lease/{lease}"), 404)


# -- PUT /db/{key} with a lease ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["query", "body"])
def test_put_attaches_the_key_to_a_lease(how):
    client = Client()
    lease = client.service.make_lease()
    if how == "query":
        reply = client.put(f"/db/session?value=me&lease={lease}")
    else:
        reply = client.put("/db/session", json={"value": "me", "lease": lease})
    assert reply.code == 200
    assert reply.json() == {"status": "Ok", "revision": 2, "lease": lease}
    assert client.service.writes == [Put("session", "me", lease=lease)]
    assert client.get("/db/session").json() == {
        "key": "session", "value": "me", "revision": 2, "create_revision": 2, "lease": lease}
    assert client.get(f"/lease/{lease}").json()["keys"] == ["session"]


def test_a_put_without_a_lease_detaches_the_key():
    client = Client()
    lease = client.service.make_lease()
    client.put(f"/db/k?value=1&lease={lease}")
    assert client.put("/db/k?value=2").json()["lease"] == 0
    assert client.get("/db/k").json()["lease"] == 0
    assert client.get(f"/lease/{lease}").json()["keys"] == []


def test_put_with_an_unknown_lease_is_404_and_changes_nothing():
    client = Client()
    reply = client.put("/db/k?value=v&lease=42")
    body = assert_json_error(reply, 404)
    assert body["lease"] == 42
    assert reply.header("X-LeifDB-Revision") == "1"  # the refused put is a log entry
    assert client.service.store.get("k") is None


@pytest.mark.parametrize("how", ["query", "body"])
def test_put_with_ttl_grants_a_lease_for_the_key_alone(how):
    client = Client()
    client.service.set("x", "y")
    if how == "query":
        reply = client.put("/db/session?value=me&ttl=10s")
    else:
        reply = client.put("/db/session", json={"value": "me", "ttl": 10})
    assert reply.code == 200
    assert reply.json() == {"status": "Ok", "revision": 2, "lease": 2}
    assert client.service.writes == [Put("session", "me", grant_ttl_ms=10_000)]
    assert client.get("/lease/2").json()["keys"] == ["session"]
    client.service.clock.advance(10)
    assert_json_error(client.get("/db/session"), 404)
    assert_json_error(client.get("/lease/2"), 404)


@pytest.mark.parametrize("target,body,fragment", [
    ("/db/k?value=v&lease=1", {"lease": 1}, "both in the query and in the body"),
    ("/db/k?value=v&ttl=5s", {"ttl": 5}, "both in the query and in the body"),
    ("/db/k?value=v&lease=1&ttl=5s", None, "not both"),
    ("/db/k?value=v&lease=1", {"ttl": 5}, "not both"),
    ("/db/k?value=v", {"lease": 1, "ttl": "5s"}, "not both"),
    ("/db/k?value=v&ttl=1s", None, "from 2s"),
    ("/db/k?value=v&ttl=31d", None, "duration such as"),
    ("/db/k?value=v", {"ttl": 3e6}, "from 2s"),
    ("/db/k?value=v&lease=0", None, "lease must be an integer of at least 1"),
    ("/db/k?value=v&lease=x", None, "lease must be an integer"),
    ("/db/k?value=v", {"lease": 0}, "'lease' must be an integer of at least 1"),
    ("/db/k?value=v", {"lease": "1"}, "'lease' must be an integer"),
    ("/db/k?value=v", {"lease": 1.0}, "'lease' must be an integer"),
    ("/db/k?value=v", {"lease": True}, "'lease' must be an integer"),
    ("/db/k", {"value": 5}, "'value' must be a string"),
])
def test_bad_lease_and_ttl_on_put_are_400(target, body, fragment):
    client = Client()
    client.service.make_lease()
    reply = send(client, "PUT", target, body)
    assert fragment in assert_json_error(reply, 400)["error"]
    assert client.service.writes == []


def test_put_with_ttl_past_the_lease_limit_is_413():
    client = Client(max_leases=1)
    client.service.make_lease()
    assert_json_error(client.put("/db/k?value=v&ttl=30"), 413)


def test_put_with_a_lease_on_a_follower_is_307_keeping_the_query():
    client = Client()
    client.service.write_error = NotLeaderError("10.0.0.2:8081")
    reply = client.put("/db/k?value=v&ttl=30s")
    assert reply.header("Location") == "http://10.0.0.2:8081/db/k?value=v&ttl=30s"


def test_a_put_the_store_refused_for_its_lease_is_404_too():
    """A service may report the refusal in the result rather than raise it."""
    client = Client()
    client.service.put = lambda *args, **kwargs: succeed(  # type: ignore[method-assign]
        WriteResult(ok=False, revision=1, failure=FAILED_LEASE_NOT_FOUND))
    body = assert_json_error(client.put("/db/k?value=v&lease=8"), 404)
    assert body["lease"] == 8 and body["key"] == "k"
