"""Leases, TTL keys, locks with fencing tokens and elections through the client library,
blocking and async, against the real 3-node cluster (tests/client/conftest.py)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
import pytest_twisted

from leifdb.client import (
    Client, Fenced, LeaseNotFound, LockTimeout, NotHolder,
)
from leifdb.client.aio import AsyncClient
from leifdb.service.api import ServiceLimits
from tests.cluster.helpers import eventually

pytestmark = pytest.mark.cluster

MIN_TTL = ServiceLimits().min_lease_ttl
CHECKPOINT = ServiceLimits().lease_checkpoint_interval


def fresh() -> str:
    return f"l{uuid.uuid4().hex[:8]}"


def test_lease_lifecycle(endpoints) -> None:
    client = Client(endpoints)
    p = fresh() + "/"
    lease = client.grant(30)
    assert lease.id > 0 and lease.ttl == 30 and 0 < lease.remaining <= 30
    first = client.put(p + "a", "1", lease=lease.id)
    assert first.lease == lease.id
    client.put(p + "b", "2", lease=lease.id)
    item = client.get(p + "a")
    assert (item.lease, item.create_revision) == (lease.id, first.revision)
    info = client.lease_info(lease.id)
    assert info.keys == (p + "a", p + "b") and info.id == lease.id
    assert lease.id in [other.id for other in client.leases()]
    renewed = client.keepalive(lease.id)
    assert renewed.ttl == 30 and renewed.remaining > 29
    client.put(p + "a", "detached")  # a put without a lease detaches the key
    assert client.get(p + "a").lease == 0
    assert client.lease_info(lease.id).keys == (p + "b",)
    revoked = client.revoke(lease.id)
    assert revoked.revision > first.revision
    assert client.get(p + "b") is None and client.get(p + "a").value == "detached"
    for call in (client.keepalive, client.lease_info, client.revoke):
        with pytest.raises(LeaseNotFound) as info:
            call(lease.id)
        assert info.value.lease_id == lease.id
    with pytest.raises(LeaseNotFound):
        client.put(p + "c", "x", lease=lease.id)
    assert client.get(p + "c") is None


def test_a_ttl_key_lives_its_ttl_then_goes(endpoints) -> None:
    client = Client(endpoints)
    key = fresh()
    start = time.monotonic()
    written = client.put(key, "x", ttl=MIN_TTL)
    assert written.lease > 0
    assert client.get(key).lease == written.lease
    assert client.lease_info(written.lease).keys == (key,)
    time.sleep(max(0.0, start + MIN_TTL * 0.75 - time.monotonic()))
    assert client.get(key) is not None  # never earlier than its TTL
    eventually(lambda: client.get(key) is None, MIN_TTL + CHECKPOINT + 5, "the key to expire")
    with pytest.raises(LeaseNotFound):
        client.lease_info(written.lease)


def test_keep_alive_keeps_a_short_lease_until_closed(endpoints) -> None:
    client = Client(endpoints)
    key = fresh()
    lease = client.grant(MIN_TTL)
    client.put(key, "alive", lease=lease.id)
    renewals = []
    with client.keep_alive(lease, on_renew=renewals.append) as keeper:
        time.sleep(MIN_TTL * 2.5)
        keeper.check()
        assert client.get(key) is not None and len(renewals) >= 5
    eventually(lambda: client.get(key) is None, MIN_TTL + CHECKPOINT + 5,
               "the key to expire once keepalives stopped")
    assert keeper.lost is None


def test_a_kept_lease_survives_a_leader_failover(cluster, endpoints) -> None:
    client = Client(endpoints)
    key = fresh()
    # The TTL leaves room for a failover (up to 2 election timeouts plus the election) after
    # a keepalive lost with the leader: the keeper reports a lease it cannot be sure of.
    lease = client.grant(8)
    client.put(key, "v", lease=lease.id)
    leader = cluster.wait_for_leader(20)
    with client.keep_alive(lease) as keeper:
        cluster.kill(leader)
        try:
            time.sleep(lease.ttl * 1.5)
            cluster.wait_for_leader(20)
            keeper.check()
            assert client.get(key) is not None
        finally:
            cluster.restart(leader)
    client.revoke(lease.id)
    cluster.wait_for_health(leader, 20)


def test_lock_with_fencing_tokens(endpoints) -> None:
    client = Client(endpoints)
    name, data = fresh(), fresh()
    a, b = client.grant(30), client.grant(30)
    first = client.lock(name, a.id, value="a")
    assert (first.name, first.key, first.lease, first.value) == (
        name, f"_lock/{name}/{a.id}", a.id, "a")
    assert client.lock_holder(name) == first
    assert client.lock(name, a.id).token == first.token  # the same lease: its own key
    with pytest.raises(LockTimeout) as timed_out:
        client.lock(name, b.id, timeout=1)
    assert timed_out.value.holder == first.key
    assert client.get(f"_lock/{name}/{b.id}") is None  # the waiter's key was removed
    client.put(data, "by a", fence=first)
    client.unlock(first)
    second = client.lock(name, b.id, timeout=5)
    assert second.token > first.token
    with pytest.raises(Fenced) as fenced:
        client.put(data, "stale a", fence=first.fence)
    assert fenced.value.fence == first.fence
    with pytest.raises(Fenced):
        client.delete(data, fence=(name, first.token))
    assert client.get(data).value == "by a"
    client.put(data, "by b", fence=second)
    # the etcd recipe: a transaction guarded by the lock key's create revision
    guarded = client.txn(
        compare=[{"key": second.key, "target": "create_revision", "op": "equal",
                  "value": second.token}],
        success=[{"op": "put", "key": data, "value": "txn by b"}])
    stale = client.txn(
        compare=[{"key": first.key, "target": "create_revision", "op": "equal",
                  "value": first.token}],
        success=[{"op": "put", "key": data, "value": "txn by a"}])
    assert guarded.succeeded and not stale.succeeded
    assert client.get(data).value == "txn by b"
    client.revoke(b.id)  # the lease's end releases the lock
    assert client.lock_holder(name) is None
    with pytest.raises(Fenced):
        client.put(data, "after", fence=second)
    with pytest.raises(LeaseNotFound):
        client.lock(name, b.id)
    client.revoke(a.id)


def test_waiters_get_the_lock_in_turn(endpoints) -> None:
    client = Client(endpoints)
    name = fresh()
    leases = [client.grant(30) for _ in range(3)]
    holder = client.lock(name, leases[0].id)
    got: list = []

    def wait(lease_id: int) -> None:
        got.append(Client(endpoints).lock(name, lease_id, timeout=20))

    threads = []
    for lease in leases[1:]:
        threads.append(threading.Thread(target=wait, args=(lease.id,), daemon=True))
        threads[-1].start()
        eventually(lambda: client.get(f"_lock/{name}/{lease.id}"), 10, "the waiter's key")
    assert got == []
    client.unlock(holder)
    threads[0].join(10)
    assert [h.lease for h in got] == [leases[1].id]
    client.unlock(got[0])
    threads[1].join(10)
    assert [h.lease for h in got] == [leases[1].id, leases[2].id]
    assert got[0].token < got[1].token
    for lease in leases:
        client.revoke(lease.id)


def test_election(endpoints) -> None:
    client = Client(endpoints)
    name = fresh()
    a, b = client.grant(30), client.grant(30)
    assert client.leader(name) is None
    seen: list = []
    observer = client.observe(name)
    follower = threading.Thread(target=lambda: seen.extend(
        change for _, change in zip(range(5), observer)), daemon=True)
    follower.start()
    eventually(lambda: seen, 10, "the first observation")
    leader_a = client.campaign(name, a.id, "node-a")
    assert client.leader(name) == leader_a and leader_a.value == "node-a"
    campaigning: list = []
    waiter = threading.Thread(target=lambda: campaigning.append(
        Client(endpoints).campaign(name, b.id, "node-b", timeout=20)), daemon=True)
    waiter.start()
    eventually(lambda: client.get(f"_election/{name}/{b.id}"), 10, "b's candidate key")
    proclaimed = client.proclaim(name, leader_a.token, "node-a v2")
    assert proclaimed.token == leader_a.token and proclaimed.revision > leader_a.revision
    client.resign(name, leader_a.token)
    waiter.join(10)
    assert campaigning and campaigning[0].value == "node-b"
    with pytest.raises(NotHolder):
        client.proclaim(name, leader_a.token, "stale")
    with pytest.raises(NotHolder):
        client.resign(name, leader_a.token)
    client.revoke(b.id)  # no leader any more
    follower.join(10)
    observer.close()
    assert [c.leader and (c.leader.lease, c.leader.value) for c in seen] == [
        None, (a.id, "node-a"), (a.id, "node-a v2"), (b.id, "node-b"), None]
    assert [c.revision for c in seen] == sorted(c.revision for c in seen)
    client.revoke(a.id)


async def async_scenario(client: AsyncClient) -> None:
    name = fresh()
    lease = await client.grant(MIN_TTL)
    async with client.keep_alive(lease) as keeper:
        holder = await client.lock(name, lease.id, timeout=5)
        await client._sleep(MIN_TTL * 1.5)
        keeper.check()
        assert (await client.lock_holder(name)) == holder
        await client.put(name, "fenced", fence=holder)
        observed = client.observe(name)
        await client.campaign(name, lease.id, "me")
        try:
            async for change in observed:
                assert change.leader is not None and change.leader.value == "me"
                break
        finally:
            await observed.aclose()
        assert (await client.leader(name)).lease == lease.id
        await client.unlock(holder)
        assert await client.lock_holder(name) is None
    await client.revoke(lease.id)
    with pytest.raises(LeaseNotFound):
        await client.keepalive(lease.id)
    info = client.keep_alive(lease.id)
    assert isinstance(await info.wait_lost(), LeaseNotFound)


@pytest_twisted.ensureDeferred
async def test_async_on_twisted(endpoints) -> None:
    await async_scenario(AsyncClient(endpoints, framework="twisted"))


def test_async_on_asyncio(endpoints) -> None:
    asyncio.run(async_scenario(AsyncClient(endpoints, framework="asyncio")))

