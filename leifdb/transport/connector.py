"""Keeps one outbound connection to one peer open, redialing with exponential backoff.

The delay before attempt n (after n failures) is drawn uniformly from
``[d/2, d]`` with ``d = min(max_delay, initial_delay * 2**n)``; the jitter keeps nodes that
lost a peer together from redialing in lockstep. A connection counts as a success only once
it has stayed up for ``stable_after`` seconds: a peer that accepts and then closes at once
(it does not know us, or is another cluster) is backed off like one that refuses. Logging
is one line per change (reachable / unreachable), not per attempt.
"""

from __future__ import annotations

import random
from typing import Callable

from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from leifdb.transport.peer import PeerProtocol

log = Logger()


def describe_loss(reason: Failure, connection: object = None) -> str:
    """Why an established connection ended, for the operator: closed by this node (and
    why), by the peer, or lost. Twisted calls a FIN from the peer "closed cleanly", but a
    peer that crashed or was killed sends one too: from here it is a lost connection."""
    if getattr(connection, "closed_here", False):
        why = getattr(connection, "rejected_for", None)
        return "connection closed by this node" + (f": {why}" if why else "")
    if reason.check(ConnectionDone):
        return "connection lost: the peer closed it (stopped, restarted or crashed)"
    if reason.check(ConnectionLost):
        return "connection lost: reset or broken (the peer or the network failed)"
    return f"connection lost: {reason.getErrorMessage()}"


class Reconnector:
    """Dials ``endpoint`` until ``stop``. The owner reports the end of each connection with
    ``connection_lost``; ``retry_now`` skips the current backoff wait (e.g. the peer just
    connected to us, so it is back)."""

    def __init__(
        self, clock: IReactorTime, peer: str, endpoint: IStreamClientEndpoint,
        factory: IProtocolFactory, *, initial_delay: float, max_delay: float,
        stable_after: float = 1.0, rng: random.Random | None = None,
        describe: Callable[[], str] = lambda: "",
    ) -> None:
        self._clock = clock
        self._peer = peer
        self._endpoint = endpoint
        self._factory = factory
        self._initial = initial_delay
        self._max = max_delay
        self._stable_after = stable_after
        self._rng = rng or random.Random()
        self._describe = describe
        self.failures = 0
        self._attempt: defer.Deferred | None = None
        self._wait: IDelayedCall | None = None
        self._stable: IDelayedCall | None = None
        self._connection: PeerProtocol | None = None
        self._running = False
        self._reported: str | None = None  # "up" or "down": the last state logged

    @property
    def waiting(self) -> bool:
        return self._wait is not None and self._wait.active()

    def start(self) -> None:
        if not self._running:
            self._running = True
            self._dial()

    def retry_now(self) -> None:
        if self._running and self.waiting:
            self._wait.cancel()
            self._dial()

    def stop(self) -> None:
        """Stop dialing; the owner closes an established connection itself."""
        self._running = False
        for call in (self._wait, self._stable):
            if call is not None and call.active():
                call.cancel()
        if self._attempt is not None:
            self._attempt.cancel()

    def next_delay(self) -> float:
        ceiling = min(self._max, self._initial * 2 ** min(self.failures, 64))
        return self._rng.uniform(ceiling / 2, ceiling)

    def connection_lost(self, reason: Failure) -> None:
        connection, self._connection = self._connection, None
        if self._stable is not None and self._stable.active():
            self._stable.cancel()
            self.failures += 1
        self._went_down(describe_loss(reason, connection))
        self._schedule()

    def _dial(self) -> None:
        self._wait = None
        self._attempt = self._endpoint.connect(self._factory)
        self._attempt.addCallbacks(self._connected, self._failed)

    def _connected(self, protocol: PeerProtocol) -> None:
        self._attempt = None
        if not self._running:
            protocol.close(abort=True)
            return
        if protocol.closing:  # lost before the endpoint reported it
            self.failures += 1
            self._schedule()
            return
        self._connection = protocol
        self._stable = self._clock.callLater(self._stable_after, self._became_stable)

    def _became_stable(self) -> None:
        self._stable = None
        self.failures = 0
        if self._reported != "up":
            log.info("connected to peer {peer} {where}", peer=self._peer, where=self._describe())
            self._reported = "up"

    def _failed(self, failure: Failure) -> None:
        self._attempt = None
        if not self._running:
            return  # cancelled by stop
        self.failures += 1
        self._went_down(failure.getErrorMessage())
        self._schedule()

    def _went_down(self, why: str) -> None:
        if self._running and self._reported != "down":
            log.info("peer {peer} {where} unreachable ({why}); redialing with backoff",
                     peer=self._peer, where=self._describe(), why=why)
            self._reported = "down"

    def _schedule(self) -> None:
        if self._running and not self.waiting and self._attempt is None:
            self._wait = self._clock.callLater(self.next_delay(), self._dial)
