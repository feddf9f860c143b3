"""Redialing with exponential backoff and jitter, on a fake clock and a fake endpoint."""

from __future__ import annotations

import random

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from leifdb.transport.connector import Reconnector


class FakeEndpoint:
    def __init__(self):
        self.attempts: list[defer.Deferred] = []

    def connect(self, factory):
        d = defer.Deferred()
        self.attempts.append(d)
        return d

    def refuse(self):
        self.attempts[-1].errback(Failure(ConnectionRefusedError()))

    def accept(self):
        proto = FakeProtocol()
        self.attempts[-1].callback(proto)
        return proto


class FakeProtocol:
    closing = False

    def close(self, abort=False):
        self.closing = True


def reconnector(**kw):
    clock, endpoint = Clock(), FakeEndpoint()
    options = dict(initial_delay=0.1, max_delay=2.0, stable_after=1.0, rng=random.Random(7))
    options.update(kw)
    return clock, endpoint, Reconnector(clock, "b", endpoint, object(), **options)


def wait_for_next_attempt(clock, endpoint):
    """Advance the clock to the next redial; return the delay it took."""
    before = len(endpoint.attempts)
    (call,) = clock.getDelayedCalls()
    delay = call.getTime() - clock.seconds()
    clock.advance(delay)
    assert len(endpoint.attempts) == before + 1
    return delay


def test_backoff_doubles_with_jitter_up_to_the_maximum():
    clock, endpoint, dialer = reconnector()
    dialer.start()
    delays = []
    for _ in range(8):
        endpoint.refuse()
        delays.append(wait_for_next_attempt(clock, endpoint))
    ceilings = [min(2.0, 0.1 * 2**n) for n in range(1, 9)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings)), delays
    assert len(set(delays)) == len(delays)  # jittered


def test_a_stable_connection_resets_the_backoff_and_its_loss_redials_quickly():
    clock, endpoint, dialer = reconnector()
    dialer.start()
    for _ in range(5):
        endpoint.refuse()
        wait_for_next_attempt(clock, endpoint)
    endpoint.accept()
    clock.advance(1.0)
    assert dialer.failures == 0
    dialer.connection_lost(Failure(ConnectionRefusedError()))
    assert wait_for_next_attempt(clock, endpoint) <= 0.1


def test_a_connection_closed_at_once_counts_as_a_failure():
    clock, endpoint, dialer = reconnector()
    dialer.start()
    for expected in range(1, 6):
        endpoint.accept()
        clock.advance(0.01)
        dialer.connection_lost(Failure(ConnectionRefusedError()))
        assert dialer.failures == expected
        wait_for_next_attempt(clock, endpoint)


def test_unreachable_and_reachable_are_logged_once_each(transport_log):
    clock, endpoint, dialer = reconnector()
    dialer.start()
    for _ in range(5):
        endpoint.refuse()
        wait_for_next_attempt(clock, endpoint)
    assert len(transport_log.infos()) == 1 and "unreachable" in transport_log.infos()[0]
    endpoint.accept()
    clock.advance(1.0)
    assert len(transport_log.infos()) == 2 and "connected" in transport_log.infos()[1]


def test_retry_now_skips_the_wait():
    clock, endpoint, dialer = reconnector()
    dialer.start()
    endpoint.refuse()
    assert dialer.waiting
    dialer.retry_now()
    assert len(endpoint.attempts) == 2 and clock.getDelayedCalls() == []


def test_stop_cancels_the_attempt_and_the_wait():
    clock, endpoint, dialer = reconnector()
    dialer.start()
    dialer.stop()
    assert endpoint.attempts[0].called  # cancelled
    assert clock.getDelayedCalls() == []

    clock, endpoint, dialer = reconnector()
    dialer.start()
    endpoint.refuse()
    dialer.stop()
    clock.advance(10)
    assert len(endpoint.attempts) == 1

