"""One lock fault, set up exactly: a lock request waiting on a leader that is cut off from
the others and, once the network heals, catches up by installing a snapshot.

The fault run found it (``POST /lock`` answered 410 "revisions before N are no longer
kept": the waiter's watch of the lock's keys ended with the snapshot). A lock request is
not a watch: the waiting key is still there, so the wait must go on (or end in an answer
the contract lists for ``POST /lock``), and asking again with the same lease must give
the same key, and so the same token, back.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, urlencode

import pytest

from tests.faults.clients import Answer, http_call
from tests.faults.cluster import ProxiedCluster
from tests.faults.lockclient import call

pytestmark = pytest.mark.cluster

LOCK_ANSWERS = {200, 307, 404, 423, 503, 504}  # what the contract lets POST /lock answer


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProxiedCluster]:
    c = ProxiedCluster(tmp_path, 3, seed=1, extra_args=[
        "--election-timeout", "400", "--heartbeat-interval", "50", "--snapshot-entries", "20"])
    try:
        c.start_all()
        c.wait_for_leader(30)
        yield c
    finally:
        c.close()


def _ok(address: str, method: str, target: str, body: dict | None = None) -> dict:
    """Repeat a request (following redirects) until it answers 200; its body."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answer = call(address, method, target, body, 5.0)
        if answer.status == 200 and answer.body is not None:
            return answer.body
        time.sleep(0.1)
    raise AssertionError(f"{method} {target} never answered 200")


def test_a_lock_waiter_on_a_cut_off_leader_survives_its_snapshot_install(
        cluster: ProxiedCluster) -> None:
    leader = cluster.wait_for_leader(10)
    here = cluster.http_address(leader)
    first = _ok(here, "POST", "/lease", {"ttl": 60})["id"]
    second = _ok(here, "POST", "/lease", {"ttl": 60})["id"]
    held = _ok(here, "POST", "/lock/r?timeout=5s", {"lease": first})
    answers: list[tuple[Answer, float]] = []

    def wait() -> None:
        answer = http_call(here, "POST", "/lock/r?timeout=20s",
                           {"Content-Type": "application/json"}, 30,
                           json.dumps({"lease": second}).encode())
        answers.append((answer, time.monotonic()))

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.5)  # the waiting key is committed
    cluster.net.isolate(cluster.names[leader], "blackhole")
    majority = [cluster.http_address(i) for i in range(len(cluster)) if i != leader]
    for n in range(60):  # past several snapshots: the cut-off node must install one
        _ok(majority[n % 2], "PUT", f"/db/filler{n}?value=v")
    cluster.net.heal()
    healed = time.monotonic()
    time.sleep(2.0)
    release = call(majority[0], "DELETE", "/db/" + quote(held["key"], safe=""), None, 5.0)
    assert release.status == 200, release
    waiter.join(30)
    assert answers, "the waiting lock request never answered"
    answer, at = answers[0]
    assert answer.status in LOCK_ANSWERS, (
        f"POST /lock answered {answer.status} {answer.body} {at - healed:.2f} s after the "
        "heal: not an answer of the lock contract")
    again = _ok(majority[1], "POST", "/lock/r?timeout=10s", {"lease": second})
    assert again["key"] == f"_lock/r/{second}" and again["token"] > held["token"], again
    if answer.status == 200:
        assert answer.body is not None and answer.body["token"] == again["token"], answer.body


def test_a_lock_timeout_on_a_cut_off_leader_leaves_no_waiting_key(
        cluster: ProxiedCluster) -> None:
    """423 says the waiting key was removed: a key left behind would take the lock later
    for an owner that was told it gave up (its lease lives on), and hold it until that
    lease ends. A node that cannot remove the key must not answer 423."""
    leader = cluster.wait_for_leader(10)
    here = cluster.http_address(leader)
    first = _ok(here, "POST", "/lease", {"ttl": 60})["id"]
    second = _ok(here, "POST", "/lease", {"ttl": 60})["id"]
    _ok(here, "POST", "/lock/r?timeout=5s", {"lease": first})
    answers: list[Answer] = []

    def wait() -> None:
        answers.append(http_call(here, "POST", "/lock/r?timeout=3s",
                                 {"Content-Type": "application/json"}, 30,
                                 json.dumps({"lease": second}).encode()))

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.5)  # the waiting key is committed
    cluster.net.isolate(cluster.names[leader], "blackhole")
    waiter.join(20)
    cluster.net.heal()
    assert answers and answers[0].status in LOCK_ANSWERS, answers
    if answers[0].status != 423:
        return  # the node said it could not tell: the key may stay
    others = [cluster.http_address(i) for i in range(len(cluster)) if i != leader]
    key = f"_lock/r/{second}"
    deadline = time.monotonic() + 8
    keys: list[str] = []
    while time.monotonic() < deadline:
        page = _ok(others[0], "GET", "/db?" + urlencode({"prefix": "_lock/r/"}))
        keys = [item["key"] for item in page["items"]]
        if key not in keys:
            return
        time.sleep(0.2)
    raise AssertionError(f"POST /lock answered 423 {answers[0].body}, yet its waiting key "
                         f"{key} is still there after the heal: {keys}")
