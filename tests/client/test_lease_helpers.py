"""The background keepalive helpers, without a cluster: the blocking ``LeaseKeeper``
(a thread) and ``AsyncLeaseKeeper`` on asyncio and on Twisted, against a transport that
answers by request kind. Real time, with leases of a fraction of a second."""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_twisted

from leifdb.client import (
    Client, Lease, LeaseExpired, LeaseNotFound, OutcomeUnknown, RetryPolicy,
)
from leifdb.client.aio import AsyncClient
from leifdb.client.protocol import NoAnswer
from tests.client.fakes import AsyncByKind, ByKind, answer, lease_json

A = "http://a:1"
FAST = RetryPolicy(base=0.01, cap=0.02)


def test_blocking_keeper_renews_then_surfaces_the_loss() -> None:
    fake = ByKind(keepalive=[answer(200, lease_json(ttl=0.3))] * 3 +
                  [answer(404, {"error": "lease 5 not found"})])
    renewed: list[Lease] = []
    client = Client([A], transport=fake, policy=FAST)
    with client.keep_alive(Lease(5, 0.3, 0.3), on_renew=renewed.append) as keeper:
        lost = keeper.wait(5)
        assert isinstance(lost, LeaseNotFound) and not isinstance(lost, LeaseExpired)
        assert not keeper.running and keeper.lost is lost
        with pytest.raises(LeaseNotFound):
            keeper.check()
    assert len(renewed) == 3 and keeper.lease == renewed[-1]
    assert fake.kinds() == ["keepalive"] * 4


def test_blocking_keeper_reports_expiry_when_nothing_answers_within_the_ttl() -> None:
    fake = ByKind(keepalive=[answer(200, lease_json(ttl=0.3)), NoAnswer("timed out")])
    client = Client([A], transport=fake, policy=FAST)
    start = time.monotonic()
    keeper = client.keep_alive(5)
    lost = keeper.wait(5)
    assert isinstance(lost, LeaseExpired) and isinstance(lost.cause, OutcomeUnknown)
    assert 0.3 <= time.monotonic() - start < 2.0
    assert fake.count("keepalive") > 2  # retried meanwhile


def test_blocking_keeper_close_stops_renewing() -> None:
    fake = ByKind(keepalive=answer(200, lease_json(ttl=0.3)))
    keeper = Client([A], transport=fake, policy=FAST).keep_alive(5, interval=0.05)
    time.sleep(0.3)
    keeper.close()
    assert keeper.wait(1) is None and not keeper.running
    sent = fake.count("keepalive")
    assert sent >= 3
    time.sleep(0.2)
    assert fake.count("keepalive") == sent
    keeper.check()  # not lost: no error


async def async_scenario(client: AsyncClient, fake: AsyncByKind) -> None:
    renewed: list[Lease] = []
    async with client.keep_alive(5, on_renew=renewed.append) as keeper:
        lost = await keeper.wait_lost()
    assert isinstance(lost, LeaseNotFound) and len(renewed) == 2 and not keeper.running
    fake.answers["keepalive"] = answer(200, lease_json(ttl=0.3))
    keeper = client.keep_alive(Lease(5, 0.3, 0.3), interval=0.05)
    await client._sleep(0.25)
    await keeper.close()
    assert keeper.lost is None and await keeper.wait_lost() is None
    sent = fake.count("keepalive")
    await client._sleep(0.15)
    assert fake.count("keepalive") == sent


def lost_after_two() -> AsyncByKind:
    return AsyncByKind(keepalive=[answer(200, lease_json(ttl=0.3))] * 2 +
                       [answer(404, {"error": "lease 5 not found"})])


def test_async_keeper_on_asyncio() -> None:
    async def main() -> None:
        fake = lost_after_two()
        await async_scenario(AsyncClient([A], transport=fake, policy=FAST), fake)

    asyncio.run(main())


@pytest_twisted.ensureDeferred
async def test_async_keeper_on_twisted() -> None:
    fake = lost_after_two()
    await async_scenario(AsyncClient([A], transport=fake, policy=FAST, framework="twisted"),
                         fake)
