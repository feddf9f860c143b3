"""Leases, locks and elections over HTTP on a real 3-node cluster: the routes on the real
service, end to end (tests/http checks every status of the routes on a fake service).

Real twistd processes on 127.0.0.1 with the STEADY timing of the shared cluster.
"""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest

from leifdb.cluster import LocalCluster
from tests.api.client import Reply, key_path, request, request_following
from tests.api.conftest import LEADER_TIMEOUT
from tests.cluster.helpers import eventually

pytestmark = pytest.mark.cluster

WAIT = 10.0
MIN_TTL = 2  # seconds: ServiceLimits.min_lease_ttl


def leader_url(cluster: LocalCluster) -> str:
    return cluster.url(cluster.wait_for_leader(LEADER_TIMEOUT))


def grant(url: str, ttl: float = 30) -> int:
    reply = request(url, "POST", "/lease", body={"ttl": ttl})
    assert reply.status == 200, reply
    return int(reply.body["id"])


def ok(reply: Reply) -> Reply:
    assert reply.status == 200, reply
    return reply


def test_a_lease_keeps_its_keys_until_it_is_revoked(shared_cluster):
    url = leader_url(shared_cluster)
    lease = grant(url)
    put = ok(request(url, "PUT", key_path("leased/a", f"value=1&lease={lease}")))
    assert put.body["lease"] == lease
    ok(request(url, "PUT", key_path("leased/b"), body={"value": "2", "lease": lease}))
    item = ok(request(url, "GET", key_path("leased/a"))).body
    assert item["lease"] == lease and item["create_revision"] == put.body["revision"]
    info = ok(request(url, "GET", f"/lease/{lease}")).body
    assert info["keys"] == ["leased/a", "leased/b"] and info["ttl"] == 30
    assert lease in [entry["id"] for entry in ok(request(url, "GET", "/lease")).body["leases"]]
    renewed = ok(request(url, "POST", f"/lease/{lease}/keepalive")).body
    assert renewed["remaining"] == renewed["ttl"] == 30

    revoked = ok(request(url, "DELETE", f"/lease/{lease}"))
    assert revoked.headers["x-leifdb-revision"] == str(revoked.body["revision"])
    assert request(url, "GET", key_path("leased/a")).status == 404
    assert request(url, "GET", key_path("leased/b")).status == 404
    assert request(url, "GET", f"/lease/{lease}").status == 404
    assert request(url, "POST", f"/lease/{lease}/keepalive").status == 404
    assert request(url, "PUT", key_path("leased/c", f"value=1&lease={lease}")).status == 404


def test_a_key_with_its_own_ttl_is_deleted_when_it_expires(shared_cluster):
    url = leader_url(shared_cluster)
    put = ok(request(url, "PUT", key_path("session/ttl", f"value=me&ttl={MIN_TTL}s")))
    lease = put.body["lease"]
    assert lease > 0
    assert ok(request(url, "GET", f"/lease/{lease}")).body["keys"] == ["session/ttl"]
    eventually(lambda: request(url, "GET", key_path("session/ttl")).status == 404,
               MIN_TTL + WAIT, "the key to expire with its lease")
    assert request(url, "GET", f"/lease/{lease}").status == 404


def test_lease_routes_on_a_follower_redirect_to_the_leader(shared_cluster):
    cluster = shared_cluster
    leader = cluster.wait_for_leader(LEADER_TIMEOUT)
    follower = next(i for i in range(len(cluster)) if i != leader)
    leader_http = cluster.url(leader).removeprefix("http://")
    eventually(lambda: (cluster.health(follower) or {}).get("leader_http") == leader_http,
               WAIT, "the follower to know the leader")
    reply = request(cluster.url(follower), "POST", "/lease", body={"ttl": 30})
    assert reply.status == 307, reply
    assert reply.headers["location"] == cluster.url(leader) + "/lease"
    assert request(cluster.url(follower), "GET", "/lease").status == 307
    followed = request_following(cluster.url(follower), "POST", "/lease", body={"ttl": 30})
    assert followed.status == 200 and followed.visited[-1] == cluster.url(leader)


def test_a_lock_is_held_by_one_lease_at_a_time_and_fences_late_writes(shared_cluster):
    url = leader_url(shared_cluster)
    first, second = grant(url), grant(url)
    held = ok(request(url, "POST", "/lock/e2e", body={"lease": first, "value": "one"})).body
    assert held["key"] == f"_lock/e2e/{first}" and held["lease"] == first
    assert ok(request(url, "GET", "/lock/e2e")).body == held

    refused = request(url, "POST", "/lock/e2e?timeout=500ms", body={"lease": second})
    assert refused.status == 423, refused
    assert refused.body["holder"] == held["key"]
    assert request(url, "GET", key_path(f"_lock/e2e/{second}")).status == 404

    fence = f"fence=e2e:{held['token']}"
    ok(request(url, "PUT", key_path("e2e/out", f"value=first&{fence}")))
    ok(request(url, "DELETE", key_path(held["key"])))  # release
    taken = ok(request(url, "POST", "/lock/e2e?timeout=5s", body={"lease": second})).body
    assert taken["lease"] == second and taken["token"] > held["token"]

    late = request(url, "PUT", key_path("e2e/out", f"value=late&{fence}"))
    assert late.status == 412, late
    assert late.body == {"error": f"fenced: lock e2e is no longer held with token "
                                  f"{held['token']}", "fence": f"e2e:{held['token']}"}
    assert request(url, "GET", key_path("e2e/out")).value == "first"
    ok(request(url, "PUT", key_path("e2e/out", f"value=second&fence=e2e:{taken['token']}")))


def test_a_waiter_gets_the_lock_when_the_holders_lease_is_revoked(shared_cluster):
    url = leader_url(shared_cluster)
    first, second = grant(url), grant(url)
    ok(request(url, "POST", "/lock/handover", body={"lease": first}))
    parts = urlsplit(url)
    waiter = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
    try:
        waiter.request("POST", "/lock/handover?timeout=8s", json.dumps({"lease": second}))
        eventually(lambda: request(url, "GET", key_path(f"_lock/handover/{second}")).status
                   == 200, WAIT, "the waiter to queue")
        ok(request(url, "DELETE", f"/lease/{first}"))
        answer = waiter.getresponse()
        assert answer.status == 200
        assert json.loads(answer.read())["lease"] == second
    finally:
        waiter.close()


def test_a_waiter_that_hangs_up_leaves_the_line(shared_cluster):
    url = leader_url(shared_cluster)
    first, second = grant(url), grant(url)
    ok(request(url, "POST", "/lock/hangup", body={"lease": first}))
    parts = urlsplit(url)
    body = json.dumps({"lease": second}).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=WAIT) as sock:
        sock.sendall(b"POST /lock/hangup?timeout=60s HTTP/1.1\r\nHost: node\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        eventually(lambda: request(url, "GET", key_path(f"_lock/hangup/{second}")).status
                   == 200, WAIT, "the waiter to queue")
    eventually(lambda: request(url, "GET", key_path(f"_lock/hangup/{second}")).status == 404,
               WAIT, "the waiter's key to go when its client hung up")


def _events(response: http.client.HTTPResponse, count: int) -> list[tuple[str, dict]]:
    """The next ``count`` SSE messages that have an event name, as (event, data)."""
    found: list[tuple[str, dict]] = []
    event, data = "", ""
    while len(found) < count:
        line = response.fp.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: "):
            data = line[len("data: "):]
        elif not line and event:
            found.append((event, json.loads(data)))
            event, data = "", ""
    return found


def test_an_election_elects_in_order_and_its_observers_see_each_leader(shared_cluster):
    url = leader_url(shared_cluster)
    first, second = grant(url), grant(url)
    parts = urlsplit(url)
    observer = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
    try:
        observer.request("GET", "/election/e2e/observe")
        stream = observer.getresponse()
        assert stream.status == 200
        assert stream.getheader("Content-Type") == "text/event-stream"
        assert _events(stream, 1)[0][1]["leader"] is None

        elected = ok(request(url, "POST", "/election/e2e/campaign",
                             body={"lease": first, "value": "node-a"})).body
        assert _events(stream, 1)[0][1]["leader"] == elected
        assert request(url, "POST", "/election/e2e/campaign?timeout=300ms",
                       body={"lease": second, "value": "node-b"}).status == 423
        proclaimed = ok(request(url, "POST", "/election/e2e/proclaim",
                                body={"token": elected["token"], "value": "node-a2"})).body
        assert proclaimed["token"] == elected["token"] and proclaimed["value"] == "node-a2"
        assert _events(stream, 1)[0][1]["leader"] == proclaimed
        assert ok(request(url, "GET", "/election/e2e")).body == proclaimed

        assert request(url, "POST", "/election/e2e/resign",
                       body={"token": elected["token"] + 1}).status == 412
        ok(request(url, "POST", "/election/e2e/resign", body={"token": elected["token"]}))
        assert _events(stream, 1)[0][1]["leader"] is None
        assert request(url, "GET", "/election/e2e").status == 404
    finally:
        observer.close()
