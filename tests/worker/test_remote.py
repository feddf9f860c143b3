"""``RemoteService`` against a real single-node ``KVService`` over a real socketpair, in
one reactor: results and errors as the service gives them, the revision, cancellation
reaching the service, and what a lost connection cancels and what it does not."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.task import deferLater

from leifdb.errors import InvalidRequest, LeaseNotFound, LimitExceeded, OutcomeUnknown
from leifdb.kv.commands import Compare, Condition, Get, Put, Txn
from leifdb.metrics import NodeMetrics
from leifdb.worker.remote import NodeOnly
from tests.worker.conftest import _until, connect


async def _failure_of(d):
    try:
        await d
    except Exception as error:
        return error
    raise AssertionError("no failure")


@pytest_twisted.ensureDeferred
async def test_reads_writes_and_transactions_cross_with_their_results(kv, pair):
    remote = pair.remote
    written = await remote.put("a", "1")
    assert written.ok and remote.revision >= written.revision
    assert (await remote.get("a")) == (await kv.get("a"))
    failed = await remote.put("a", "2", Condition(prev_value="nope"))
    assert not failed.ok and failed.current.value == "1"
    await remote.put("a/b", "x")
    page = await remote.range("a/", None, 10, "stale")
    assert [item.key for item in page.items] == ["a/b"]
    result = await remote.txn(Txn(compare=(Compare("a", "value", "equal", "1"),),
                                  success=(Put("c", "3"), Get("a"))))
    assert result.succeeded and (await remote.get("c")).value == "3"
    deleted = await remote.delete("c")
    assert deleted.ok and (await remote.get("c")) is None
    await remote.barrier()
    assert pair.ready == []  # only the worker says when it serves


@pytest_twisted.ensureDeferred
async def test_errors_arrive_as_the_service_raises_them(kv, pair):
    for call in (lambda s: s.put("", "v"), lambda s: s.put("k" * 65, "v"),
                 lambda s: s.keepalive(12345), lambda s: s.grant_lease(0.01)):
        want = await _failure_of(call(kv))
        got = await _failure_of(call(pair.remote))
        assert type(got) is type(want) and got.args == want.args and vars(got) == vars(want)
        assert isinstance(got, (InvalidRequest, LimitExceeded, LeaseNotFound))


@pytest_twisted.ensureDeferred
async def test_a_long_poll_is_woken_by_a_write_and_compaction_errors_cross(kv, pair):
    start = kv.revision + 1
    waiting = pair.remote.wait("w", prefix=False, wait_revision=start, timeout=10)
    await deferLater(reactor, 0.05, lambda: None)
    assert not waiting.called
    await kv.put("w", "woken")
    events = await waiting
    assert [e.key for e in events] == ["w"]


@pytest_twisted.ensureDeferred
async def test_cancelling_a_long_poll_cancels_it_in_the_service(kv, pair):
    waiting = pair.remote.wait("c", prefix=False, wait_revision=kv.revision + 1, timeout=30)
    await _until(lambda: pair.server.running == 1)
    waiting.cancel()
    assert isinstance(await _failure_of(waiting), CancelledError)
    await _until(lambda: pair.server.running == 0)


@pytest_twisted.ensureDeferred
async def test_cancelling_a_lock_wait_removes_the_waiters_key(kv, pair):
    first = (await pair.remote.grant_lease(5.0)).id
    second = (await pair.remote.grant_lease(5.0)).id
    holder = await pair.remote.lock("L", first, timeout=5)
    assert holder.lease == first
    waiting = pair.remote.lock("L", second, timeout=30)
    await _until(lambda: _keys(kv, "_lock/L/") == 2)
    waiting.cancel()
    await _until(lambda: _keys(kv, "_lock/L/") == 1)


def _keys(kv, prefix: str) -> int:
    return len(kv.kv.range(prefix)[0])


@pytest_twisted.ensureDeferred
async def test_a_lost_worker_cancels_its_waits_but_not_its_writes(kv):
    pair = await connect(kv)
    waiting = pair.remote.wait("gone", prefix=False, wait_revision=kv.revision + 1, timeout=30)
    await _until(lambda: pair.server.running == 1)
    writing = pair.remote.put("kept", "v")
    await deferLater(reactor, 0, lambda: None)  # sent, and most likely not yet answered
    pair.client.transport.loseConnection()
    await _until(lambda: pair.lost)
    await _until(lambda: pair.server.running == 0)
    assert (await kv.get("kept")) is not None  # the write ran its course
    for d in (waiting, writing):  # the worker's callers learn the node is gone
        assert isinstance(await _failure_of(d), OutcomeUnknown)
    with pytest.raises(OutcomeUnknown):
        pair.remote.get("x")


@pytest_twisted.ensureDeferred
async def test_what_cannot_cross_is_refused_and_timings_reach_the_metrics(kv, pair):
    with pytest.raises(NodeOnly):
        pair.remote.status()
    metrics = NodeMetrics(kv, process=False)
    pair.server.metrics = metrics
    pair.client.http_request("/db/{key}", "GET", 200, 0.002)
    pair.client.ready()
    await _until(lambda: pair.ready)
    text = metrics.exposition()[0].decode()
    assert 'leifdb_http_request_duration_seconds_count{method="GET",route="/db/{key}",' \
           'status="200"} 1.0' in text
