"""Writes sent to a follower are redirected to the leader; without a leader they fail
cleanly (503, ``applied: false``, ``Retry-After``) and really were not applied.

Real twistd processes on 127.0.0.1 (see conftest: election 300 ms, heartbeat 50 ms).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from leifdb.cluster import LocalCluster
from tests.api.client import Reply, key_path, put_until_ok, request, request_following
from tests.api.conftest import LEADER_TIMEOUT
from tests.cluster.helpers import eventually

pytestmark = pytest.mark.cluster

WAIT = 10.0


def leader_and_follower(cluster: LocalCluster) -> tuple[int, int]:
    """The leader and a follower that already names it (so it redirects, not 503s)."""
    leader = cluster.wait_for_leader(LEADER_TIMEOUT)
    follower = next(i for i in range(len(cluster)) if i != leader)
    leader_http = cluster.url(leader).removeprefix("http://")
    eventually(
        lambda: (cluster.health(follower) or {}).get("leader_http") == leader_http,
        WAIT, f"n{follower + 1} to learn the leader",
    )
    return leader, follower


def ok(reply: Reply) -> Reply | None:
    return reply if reply.status == 200 else None


def test_put_to_follower_is_307_to_same_path_and_query_on_leader(shared_cluster):
    cluster = shared_cluster
    leader, follower = leader_and_follower(cluster)
    # Percent-escapes in both the key and the query must come back byte for byte.
    path = "/db/redirect%2Fput%20%C3%A9?value=a%2Bb%20c%26d%3D"

    reply = request(cluster.url(follower), "PUT", path)

    assert reply.status == 307, reply
    assert reply.headers["location"] == cluster.url(leader) + path
    assert reply.body["applied"] is False
    assert reply.body["leader"] == cluster.url(leader)
    assert request(cluster.url(leader), "GET", path.split("?")[0]).status == 404

    followed = request_following(cluster.url(follower), "PUT", path)

    assert followed.status == 200, followed
    assert followed.visited == [cluster.url(follower), cluster.url(leader)]
    read = request(cluster.url(leader), "GET", key_path("redirect/put é"))
    assert read.value == "a+b c&d="
    assert read.body["revision"] == followed.body["revision"]


def test_put_with_json_body_and_condition_is_resent_to_leader(shared_cluster):
    cluster = shared_cluster
    leader, follower = leader_and_follower(cluster)
    path = key_path("redirect/body")

    first = request_following(
        cluster.url(follower), "PUT", path, body={"value": "one"},
        headers={"If-None-Match": "*"},
    )
    again = request_following(
        cluster.url(follower), "PUT", path, body={"value": "two"},
        headers={"If-None-Match": "*"},
    )

    assert first.status == 200, first
    assert again.status == 412, again
    assert again.visited[-1] == cluster.url(leader)
    assert again.body["value"] == "one"
    assert request(cluster.url(leader), "GET", path).value == "one"


def test_delete_to_follower_is_307_and_following_it_deletes(shared_cluster):
    cluster = shared_cluster
    leader, follower = leader_and_follower(cluster)
    key = "redirect/delete me"
    assert request_following(
        cluster.url(follower), "PUT", key_path(key), body={"value": "v"}).status == 200
    path = key_path(key, "prev=v")

    reply = request(cluster.url(follower), "DELETE", path)

    assert reply.status == 307, reply
    assert reply.headers["location"] == cluster.url(leader) + path
    assert reply.body["applied"] is False
    assert request(cluster.url(leader), "GET", key_path(key)).value == "v"

    followed = request_following(cluster.url(follower), "DELETE", path)

    assert followed.status == 200, followed
    assert request(cluster.url(leader), "GET", key_path(key)).status == 404


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")
def test_curl_follows_the_redirect_with_method_and_body(shared_cluster):
    cluster = shared_cluster
    leader, follower = leader_and_follower(cluster)
    url = cluster.url(follower) + key_path("redirect/curl")

    done = subprocess.run(
        ["curl", "-sS", "-L", "--max-redirs", "3", "--max-time", "10", "-X", "PUT",
         "-H", "Content-Type: application/json", "-d", '{"value": "by curl"}',
         "-w", "\n%{http_code} %{num_redirects}", url],
        capture_output=True, text=True, timeout=20,
    )

    body, _, codes = done.stdout.rpartition("\n")
    assert done.returncode == 0, done.stderr
    assert codes == "200 1", done.stdout
    assert json.loads(body)["status"] == "Ok"
    assert request(cluster.url(leader), "GET", key_path("redirect/curl")).value == "by curl"


def test_without_a_majority_writes_are_503_not_applied_with_retry_after(make_cluster):
    cluster = make_cluster(3)
    leader, survivor = leader_and_follower(cluster)
    key = key_path("no-leader/k")
    put_until_ok([cluster.url(leader), cluster.url(survivor)], "no-leader/k", "before")
    eventually(
        lambda: request(cluster.url(survivor), "GET", key + "?consistency=stale").value
        == "before",
        WAIT, "the survivor to apply the write",
    )
    down = [i for i in range(3) if i != survivor]
    for i in down:
        cluster.kill(i)
    eventually(
        lambda: (cluster.health(survivor) or {"leader": "?"}).get("leader") is None,
        WAIT, "the survivor to forget the dead leader",
    )
    url = cluster.url(survivor)

    attempts = [
        request(url, "PUT", key + "?value=lost1"),
        request(url, "PUT", key, body={"value": "lost2"}),
        request(url, "PUT", key, body={"value": "lost3", "prev": "before"}),
        request(url, "PUT", key_path("no-leader/new"), body={"value": "x"},
                headers={"If-None-Match": "*"}),
        request(url, "DELETE", key),
    ]

    for reply in attempts:
        assert reply.status == 503, reply
        assert reply.body["applied"] is False, reply
        assert int(reply.headers["retry-after"]) >= 1, reply
    read = request(url, "GET", key)
    assert read.status == 503, read
    assert int(read.headers["retry-after"]) >= 1
    assert request(url, "GET", key + "?consistency=stale").value == "before"

    # "applied: false" is a promise: once a majority is back, none of them happened.
    for i in down:
        cluster.start_node(i)
    cluster.wait_for_leader(LEADER_TIMEOUT)
    after = eventually(
        lambda: ok(request_following(url, "GET", key)),
        WAIT, "a linearizable read once a majority is back",
    )
    assert after.value == "before"
    assert request_following(url, "GET", key_path("no-leader/new")).status == 404
