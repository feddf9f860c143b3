"""The blocking client against a real 3-node cluster."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from leifdb.client import BadRequest, Client, Compacted, ConditionFailed, Item, Unavailable

pytestmark = pytest.mark.cluster


def fresh() -> str:
    return f"t{uuid.uuid4().hex[:8]}/"


def test_put_get_delete_list(cluster, endpoints) -> None:
    leader = cluster.wait_for_leader(20)
    follower = next(i for i in range(3) if i != leader)
    client = Client([cluster.url(follower)])  # writes are redirected to the leader
    p = fresh()
    w = client.put(p + "a", "1")
    assert client.endpoints.leader == cluster.url(leader)
    assert client.get(p + "a") == Item(p + "a", "1", w.revision, w.revision)
    assert client.get(p + "missing") is None
    client.put(p + "b/c", "x y+z%")
    assert client.get(p + "b/c").value == "x y+z%"
    for n in range(5):
        client.put(f"{p}n{n}", str(n))
    assert [i.key for i in client.list(p + "n")] == [f"{p}n{n}" for n in range(5)]
    page = client.list_page(p + "n", limit=2)
    assert page.more and page.next_start_after == p + "n1" and page.revision >= w.revision
    assert len(client.list(p, limit=3)) == 3
    d = client.delete(p + "a")
    assert d.revision > w.revision and client.get(p + "a") is None
    client.delete(p + "a")  # absent: not an error


def test_conditional_writes(endpoints) -> None:
    client = Client(endpoints)
    p = fresh()
    first = client.put(p + "k", "v1", create=True)
    with pytest.raises(ConditionFailed) as info:
        client.put(p + "k", "v2", create=True)
    current = info.value.current
    assert (current.key, current.value, current.revision) == (p + "k", "v1", first.revision)
    second = client.put(p + "k", "v2", prev="v1")
    with pytest.raises(ConditionFailed):
        client.put(p + "k", "v3", if_match=first.revision)
    client.put(p + "k", "v3", if_match=second.revision)
    with pytest.raises(ConditionFailed):
        client.delete(p + "k", prev="nope")
    client.delete(p + "k", prev="v3")
    with pytest.raises(ConditionFailed) as info:
        client.delete(p + "k", if_match=1)
    assert info.value.current is None


def test_txn(endpoints) -> None:
    client = Client(endpoints)
    p = fresh()
    create_both = {
        "compare": [{"key": p + "a", "target": "exists", "op": "equal", "value": False}],
        "success": [{"op": "put", "key": p + "a", "value": "1"},
                    {"op": "put", "key": p + "b", "value": "2"}],
        "failure": [{"op": "get", "key": p + "a"}],
    }
    ok = client.txn(create_both)
    assert ok.succeeded and [r["op"] for r in ok.results] == ["put", "put"]
    again = client.txn(create_both)
    assert not again.succeeded
    assert again.results[0]["item"] == Item(p + "a", "1", ok.revision, ok.revision)
    ro = client.txn(success=[{"op": "range", "prefix": p}], stale=True)
    assert [i.key for i in ro.results[0]["items"]] in ([p + "a", p + "b"], [])


def test_watch_from_a_revision_resumes_on_another_node(cluster) -> None:
    leader = cluster.wait_for_leader(20)
    f1, f2 = [i for i in range(3) if i != leader]
    writer = Client([cluster.url(leader)])
    p = fresh()
    start = writer.put(p + "0", "0").revision
    watcher = Client([cluster.url(f1), cluster.url(f2)])
    got = []
    with watcher.watch(p, prefix=True, start_revision=start) as events:
        for event in events:
            got.append(event)
            if len(got) == 1:
                cluster.kill(f1)  # the stream drops; the watch moves to f2
                for n in range(1, 4):
                    writer.put(p + str(n), str(n))
            if len(got) == 4:
                break
        assert events.revision == got[-1].revision
    cluster.restart(f1)
    assert [(e.key, e.value) for e in got] == [(p + str(n), str(n)) for n in range(4)]
    assert [e.revision for e in got] == sorted({e.revision for e in got})
    assert watcher.endpoints.urls[watcher.endpoints.current] == cluster.url(f2)
    cluster.wait_for_health(f1, 20)


def test_watch_live_with_prev_and_a_transaction(endpoints) -> None:
    client = Client(endpoints)
    p = fresh()
    client.put(p + "a", "old")
    got = []
    ready = threading.Event()

    def watch() -> None:
        with client.watch(p, prefix=True, prev=True) as events:
            ready.set()
            for event in events:
                got.append(event)
                if len(got) == 3:
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(5)
    writer = Client(endpoints)
    time.sleep(0.3)  # the watch has started (its first progress bookmark)
    r1 = writer.put(p + "a", "new").revision
    t = writer.txn(success=[{"op": "delete", "key": p + "a"},
                            {"op": "put", "key": p + "b", "value": "b"}])
    thread.join(10)
    assert [(e.type, e.key, e.value, e.prev_value) for e in got] == [
        ("put", p + "a", "new", "old"), ("delete", p + "a", None, "new"),
        ("put", p + "b", "b", None)]
    assert [e.revision for e in got] == [r1, t.revision, t.revision]


def test_watch_from_before_the_history_raises_compacted(endpoints) -> None:
    from tests.client.conftest import HISTORY_EVENTS

    client = Client(endpoints)
    p = fresh()
    start = client.put(p + "first", "x").revision
    client.txn(success=[{"op": "put", "key": f"{p}{n}", "value": "v"}
                        for n in range(HISTORY_EVENTS + 10)])
    with pytest.raises(Compacted) as info:
        next(iter(client.watch(p, prefix=True, start_revision=start)))
    assert info.value.compact_revision > start
    with pytest.raises(BadRequest):
        next(iter(client.watch("x", start_revision=0)))


def test_no_endpoint_answers() -> None:
    from leifdb.cluster import free_ports
    from leifdb.client import RetryPolicy

    client = Client([f"127.0.0.1:{p}" for p in free_ports(2)],
                    policy=RetryPolicy(attempts=3, base=0.01))
    with pytest.raises(Unavailable, match="gave up after 3 tries"):
        client.put("k", "v")
