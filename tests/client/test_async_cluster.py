"""The async client against the real cluster: on Twisted (treq, under pytest-twisted) and
on asyncio (its own stream transport), one txaio-based client."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import pytest_twisted
from twisted.internet import defer

from leifdb.client import Compacted, ConditionFailed, Item, OutcomeUnknown, Unavailable
from leifdb.client.aio import AsyncClient, AsyncioTransport, TwistedTransport
from leifdb.client.protocol import RetryPolicy

pytestmark = pytest.mark.cluster


def fresh() -> str:
    return f"a{uuid.uuid4().hex[:8]}/"


async def compacted_start(client: AsyncClient) -> int:
    """A revision that has left the history: a write, then more changes than kept."""
    from tests.client.conftest import HISTORY_EVENTS

    p = fresh()
    start = (await client.put(p + "first", "x")).revision
    await client.txn(success=[{"op": "put", "key": f"{p}{n}", "value": "v"}
                              for n in range(HISTORY_EVENTS + 10)])
    return start


async def collect(client: AsyncClient, prefix: str, count: int, **kw) -> list:
    got = []
    events = client.watch(prefix, prefix=True, **kw)
    try:
        async for event in events:
            got.append(event)
            if len(got) == count:
                break
    finally:
        await events.aclose()
    return got


@pytest_twisted.ensureDeferred
async def test_twisted_put_get_watch(endpoints) -> None:
    client = AsyncClient(endpoints)  # no asyncio loop running: Twisted
    assert client.framework == "twisted" and isinstance(client.transport, TwistedTransport)
    p = fresh()
    w = await client.put(p + "a", "1")
    assert await client.get(p + "a") == Item(p + "a", "1", w.revision, w.revision)
    assert await client.get(p + "missing") is None
    with pytest.raises(ConditionFailed):
        await client.put(p + "a", "2", create=True)
    watching = defer.ensureDeferred(collect(client, p, 3, prev=True, start_revision=w.revision))
    await client.put(p + "b", "2")
    d = await client.delete(p + "a")
    from twisted.internet import reactor

    got = await watching.addTimeout(10, reactor)
    assert [(e.type, e.key, e.prev_value) for e in got] == [
        ("put", p + "a", None), ("put", p + "b", None), ("delete", p + "a", "1")]
    assert got[-1].revision == d.revision
    assert [i.key for i in await client.list(p)] == [p + "b"]
    t = await client.txn(success=[{"op": "get", "key": p + "b"}])
    assert t.results[0]["item"].value == "2"
    status = await client.status()
    assert status.role in ("leader", "follower")


@pytest_twisted.ensureDeferred
async def test_twisted_compacted_and_refused(endpoints) -> None:
    from leifdb.cluster import free_ports

    from twisted.internet import reactor

    client = AsyncClient(endpoints, framework="twisted")
    start = await compacted_start(client)
    with pytest.raises(Compacted):
        await defer.ensureDeferred(
            collect(client, "nothing/", 1, start_revision=start)).addTimeout(10, reactor)
    dead = AsyncClient([f"127.0.0.1:{free_ports(1)[0]}"], framework="twisted",
                       policy=RetryPolicy(attempts=2, base=0.01))
    with pytest.raises(Unavailable):
        await dead.put("k", "v")


def test_asyncio_put_get_watch(endpoints) -> None:
    async def scenario() -> None:
        client = AsyncClient(endpoints)  # inside a running asyncio loop: asyncio
        assert isinstance(client.transport, AsyncioTransport)
        p = fresh()
        w = await client.put(p + "a", "1")
        assert (await client.get(p + "a")).value == "1"
        watching = asyncio.ensure_future(collect(client, p, 2, start_revision=w.revision))
        await client.put(p + "b", "2")
        got = await asyncio.wait_for(watching, 10)
        assert [e.key for e in got] == [p + "a", p + "b"]
        assert len(await client.list(p)) == 2
        start = await compacted_start(client)
        with pytest.raises(Compacted):
            await asyncio.wait_for(collect(client, "nothing/", 1, start_revision=start), 10)

    asyncio.run(scenario())


def test_async_write_timeout_is_outcome_unknown() -> None:
    """A server that accepts and never answers: the asyncio transport's timeout on a
    write surfaces as OutcomeUnknown, after one try."""
    async def scenario() -> int:
        seen = []

        async def silent(reader, writer) -> None:
            seen.append(1)
            await asyncio.sleep(5)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = AsyncClient([f"127.0.0.1:{port}"], framework="asyncio", timeout=0.3)
        with pytest.raises(OutcomeUnknown):
            await client.put("k", "v")
        server.close()
        return len(seen)

    assert asyncio.run(scenario()) == 1


@pytest_twisted.ensureDeferred
async def test_twisted_write_timeout_is_outcome_unknown_and_read_retries() -> None:
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts; nobody answers
        url = "127.0.0.1:%d" % silent.getsockname()[1]
        client = AsyncClient([url], framework="twisted", timeout=0.2,
                             policy=RetryPolicy(attempts=2, base=0.01))
        with pytest.raises(OutcomeUnknown):
            await client.put("k", "v")
        with pytest.raises(Unavailable, match="gave up after 2 tries"):
            await client.get("k")
