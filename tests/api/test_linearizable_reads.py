"""A deposed leader never answers a default (linearizable) read with data older than a
write the new leader acknowledged; ``consistency=stale`` may.

Two constructions, each repeated:

* paused: SIGSTOP the leader, let the majority elect a new one and acknowledge a write,
  send reads to the old leader WHILE it is still stopped (the kernel queues them), then
  SIGCONT it: the reads meet a node that still believes it leads.
* isolated: the leader keeps running but every link to and from it swallows bytes (the
  proxies of ``tests.faults.proxy``); it cannot even learn that it was deposed, so a stale
  read there provably returns the old value while a default read must not.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from leifdb.cluster import LocalCluster
from tests.api.client import Reply, key_path, put_until_ok, request, request_following
from tests.api.conftest import LEADER_TIMEOUT
from tests.cluster.helpers import eventually

pytestmark = pytest.mark.cluster

ROUNDS = 3
WAIT = 10.0
# Longer than the node's read barrier timeout (max(2 s, 3 election timeouts)).
READ_TIMEOUT = 6.0


def write(cluster: LocalCluster, via: int, key: str, value: str, among: list[int]) -> None:
    """Acknowledged write through ``via`` first, then the other nodes of ``among``."""
    order = [via] + [i for i in among if i != via]
    put_until_ok([cluster.url(i) for i in order], key, value)


def send_now(url: str, path: str, method: str = "GET") -> http.client.HTTPConnection:
    """Connect and send ``method path`` without waiting for the answer (a stopped
    process's listening socket still completes the handshake and queues the bytes)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=READ_TIMEOUT)
    conn.request(method, path)
    return conn


def answer(conn: http.client.HTTPConnection) -> Reply:
    try:
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    body = json.loads(data) if data else None
    return Reply(response.status, body, {k.lower(): v for k, v in response.getheaders()})


def check_default_read(cluster: LocalCluster, reply: Reply, old: str, new: str) -> None:
    """A linearizable read after ``new`` was acknowledged: ``new``, or an error or a
    redirect (which must lead to ``new``); never ``old``."""
    assert reply.status in (200, 307, 503), reply
    if reply.status == 200:
        assert reply.value == new, f"linearizable read returned {reply.value!r}, not {new!r}"
    if reply.status == 307:
        target = urlsplit(reply.headers["location"])
        path = target.path + (f"?{target.query}" if target.query else "")
        followed = request_following(
            f"http://{target.netloc}", "GET", path, timeout=READ_TIMEOUT)
        assert followed.status in (200, 503), followed
        if followed.status == 200:
            assert followed.value == new, followed
    assert old not in json.dumps(reply.body), reply


def check_zombie_write(cluster: LocalCluster, reply: Reply, key: str, among: list[int]) -> None:
    """A write sent to a deposed leader: a 200 must be durable; a 307 or 503 promises
    ``applied: false``, so the key must stay absent; a 504 may go either way."""
    assert reply.status in (200, 307, 503, 504), reply
    if reply.status in (307, 503):
        assert reply.body["applied"] is False, reply
    read = eventually(
        lambda: (lambda r: r if r.status in (200, 404) else None)(
            request_following(cluster.url(among[0]), "GET", key_path(key))),
        WAIT, "a linearizable read of the zombie key",
    )
    if reply.status == 200:
        assert read.value == "zombie", (reply, read)
    elif reply.status != 504:
        assert read.status == 404, (reply, read)


def test_paused_old_leader_never_serves_old_data_after_failover(make_cluster):
    cluster = make_cluster(3)
    seen_stale_old = 0
    for round_ in range(ROUNDS):
        key, old, new = f"paused/{round_}", f"old-{round_}", f"new-{round_}"
        everyone = list(range(len(cluster)))
        old_leader = cluster.wait_for_leader(LEADER_TIMEOUT)
        write(cluster, old_leader, key, old, everyone)
        cluster.pause(old_leader)
        try:
            others = [i for i in everyone if i != old_leader]
            new_leader = cluster.wait_for_leader(LEADER_TIMEOUT, among=others)
            write(cluster, new_leader, key, new, others)
            url = cluster.url(old_leader)
            pending = [
                send_now(url, key_path(key)),
                send_now(url, key_path(key, "consistency=stale")),
                send_now(url, key_path(key, "consistency=linearizable")),
                send_now(url, key_path(key + "/zombie", "value=zombie"), "PUT"),
            ]
        finally:
            cluster.resume(old_leader)
        first, stale, second, zombie = (answer(conn) for conn in pending)

        check_default_read(cluster, first, old, new)
        check_default_read(cluster, second, old, new)
        assert stale.status == 200 and stale.value in (old, new), stale
        seen_stale_old += stale.value == old
        check_zombie_write(cluster, zombie, key + "/zombie", others)
        eventually(
            lambda: request(url, "GET", key_path(key, "consistency=stale")).value == new,
            WAIT, "the old leader to catch up",
        )
    print(f"stale reads that returned the old value: {seen_stale_old}/{ROUNDS}")


def test_isolated_old_leader_never_serves_old_data(make_proxied_cluster):
    cluster = make_proxied_cluster(3)
    for round_ in range(2):
        key, old, new = f"isolated/{round_}", f"old-{round_}", f"new-{round_}"
        everyone = list(range(len(cluster)))
        old_leader = cluster.wait_for_leader(LEADER_TIMEOUT)
        write(cluster, old_leader, key, old, everyone)
        cluster.net.isolate(cluster.names[old_leader], mode="blackhole")
        others = [i for i in everyone if i != old_leader]
        new_leader = cluster.wait_for_leader(LEADER_TIMEOUT, among=others)
        write(cluster, new_leader, key, new, others)
        url = cluster.url(old_leader)

        reads = [
            request(url, "GET", key_path(key), timeout=READ_TIMEOUT),
            request(url, "GET", key_path("isolated/absent"), timeout=READ_TIMEOUT),
            request(url, "GET", "/db?prefix=isolated/", timeout=READ_TIMEOUT),
        ]
        stale = request(url, "GET", key_path(key, "consistency=stale"))

        check_default_read(cluster, reads[0], old, new)
        assert reads[1].status in (307, 503), reads[1]  # not even a 404 from old state
        assert reads[2].status in (307, 503), reads[2]
        assert stale.value == old, stale  # the construction works: old data is there

        cluster.net.heal()
        eventually(
            lambda: request_following(url, "GET", key_path(key), timeout=READ_TIMEOUT).value
            == new,
            WAIT, "the healed old leader to serve the new value",
        )
