"""Conditional writes racing from several clients, and read-your-acknowledged-write on
every node, against one healthy 3-node cluster of real processes.

Clients talk to different nodes and follow 307s to the leader, as ``curl -L`` would, so
the races also cross the redirect path.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Callable, TypeVar

import pytest

from leifdb.cluster import LocalCluster
from tests.api.client import Reply, key_path, request, request_following

pytestmark = pytest.mark.cluster

T = TypeVar("T")
THREADS = 8
JOIN_TIMEOUT = 60.0


def race(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` for i in range(count) on threads released together; the results
    in order (a thread's exception is re-raised here)."""
    barrier = threading.Barrier(count, timeout=10)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    if errors:
        raise errors[0]
    return results


def node_url(cluster: LocalCluster, i: int) -> str:
    return cluster.url(i % len(cluster))


def test_concurrent_creates_exactly_one_wins(shared_cluster):
    cluster = shared_cluster
    cluster.wait_for_leader()
    for attempt in range(3):
        key = key_path(f"race/create/{attempt}")

        replies = race(THREADS, lambda i: request_following(
            node_url(cluster, i), "PUT", key, body={"value": f"client-{i}"},
            headers={"If-None-Match": "*"}))

        statuses = Counter(r.status for r in replies)
        assert statuses == Counter({200: 1, 412: THREADS - 1}), replies
        winner = next(i for i, r in enumerate(replies) if r.status == 200)
        revision = replies[winner].body["revision"]
        for reply in replies:
            if reply.status == 412:
                assert reply.body["value"] == f"client-{winner}", reply
                assert reply.body["revision"] == revision, reply
                assert reply.headers["etag"] == f'"{revision}"'
        read = request_following(cluster.url(0), "GET", key)
        assert (read.value, read.body["revision"]) == (f"client-{winner}", revision)


def _increment(cluster: LocalCluster, i: int, key: str, attempts: int) -> list[int]:
    """Read-modify-write ``attempts`` times; the values this client wrote with a 200.
    Even clients guard with ``prev=<value>``, odd ones with ``If-Match: <revision>``."""
    written = []
    url = node_url(cluster, i)
    for _ in range(attempts):
        current = request_following(url, "GET", key)
        assert current.status == 200, current
        n = int(current.value)
        if i % 2 == 0:
            reply = request_following(url, "PUT", key_path("race/counter", f"prev={n}"),
                                      body={"value": str(n + 1)})
        else:
            reply = request_following(url, "PUT", key, body={"value": str(n + 1)},
                                      headers={"If-Match": current.headers["etag"]})
        assert reply.status in (200, 412), reply
        if reply.status == 200:
            written.append(n + 1)
    return written


def test_compare_and_set_increments_never_lose_an_update(shared_cluster):
    cluster = shared_cluster
    key = key_path("race/counter")
    assert request_following(cluster.url(0), "PUT", key, body={"value": "0"}).status == 200
    attempts = 8

    written = race(THREADS, lambda i: _increment(cluster, i, key, attempts))

    successes = [value for values in written for value in values]
    final = request_following(cluster.url(1), "GET", key)
    assert int(final.value) == len(successes)
    assert sorted(successes) == list(range(1, len(successes) + 1))  # each a distinct step
    # A client's reads strictly increase (a failed guard means someone else wrote), so
    # at least ``attempts`` increments succeeded in all.
    assert len(successes) >= attempts
    for values in written:
        assert values == sorted(values)


def _read_everywhere(cluster: LocalCluster, key: str) -> list[Reply]:
    """A default read of ``key`` on every node; a 307 is followed (to the leader)."""
    return [request_following(cluster.url(i), "GET", key) for i in range(len(cluster))]


def test_acknowledged_write_is_visible_on_every_node_at_once(shared_cluster):
    cluster = shared_cluster
    for n in range(15):
        key = key_path(f"visible/{n % 3}")
        via = cluster.url(n % len(cluster))

        put = request_following(via, "PUT", key, body={"value": f"v{n}"})

        assert put.status == 200, put
        for i, read in enumerate(_read_everywhere(cluster, key)):
            assert read.status == 200, (i, read)
            assert (read.value, read.body["revision"]) == (f"v{n}", put.body["revision"]), i

    deleted = request_following(cluster.url(2), "DELETE", key_path("visible/0"))
    assert deleted.status == 200, deleted
    assert [r.status for r in _read_everywhere(cluster, key_path("visible/0"))] == [404] * 3


def test_followers_serve_reads_themselves_or_redirect(shared_cluster):
    """The read side of the redirect contract: a follower either answers a linearizable
    read itself (ReadIndex) or sends a 307 to the same path and query on the leader; a
    stale read is always answered locally."""
    cluster = shared_cluster
    leader = cluster.wait_for_leader()
    key = key_path("visible/follower read")
    assert request_following(cluster.url(2), "PUT", key, body={"value": "x"}).status == 200
    for i in range(len(cluster)):
        if i == leader:
            continue
        reply = request(cluster.url(i), "GET", key + "?consistency=linearizable")
        if reply.status == 307:
            assert reply.headers["location"] == (
                cluster.url(leader) + key + "?consistency=linearizable")
        else:
            assert reply.status == 200 and reply.value == "x", reply
        stale = request(cluster.url(i), "GET", key + "?consistency=stale")
        assert stale.status in (200, 404), stale  # applied yet or not, but answered here
