"""Request/reply correlation: which requests a peer has not answered, and for how long.

Raft requests (RequestVote, AppendEntries, InstallSnapshot, ReadIndexRequest) carry a
``request_id``; replies carry ``in_reply_to``. The core never sees either: they exist so the
transport can tell the core early that a peer stopped answering, instead of the core waiting
for its own, longer, timers.

The receiver stamps a reply with the newest request id of the matching type it has received
from that peer and not yet answered (``ReplyStamps``). The sender treats a reply as answering
every pending request of that type up to ``in_reply_to`` (``PendingRequests``): requests go
out and are processed in order on one connection, so a peer that answers request n has also
processed every earlier one, even if the core chose not to reply to some of them.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class ReplyStamps:
    """Receiver side: the ``in_reply_to`` to put on the next reply to each peer."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, type], int] = {}

    def request_received(self, peer: str, kind: type, request_id: int) -> None:
        self._latest[(peer, kind)] = request_id

    def take(self, peer: str, kind: type) -> int:
        """The id to stamp on a reply to ``kind`` for ``peer`` (0 if none is waiting)."""
        return self._latest.pop((peer, kind), 0)

    def forget(self, peer: str) -> None:
        for key in [k for k in self._latest if k[0] == peer]:
            del self._latest[key]


class PendingRequests:
    """Sender side: requests sent and not yet answered, each with a deadline.

    ``on_timeout(peer)`` is called once when some request to ``peer`` is older than
    ``timeout`` seconds; every pending request to that peer is then forgotten, so one stall
    gives one call. One timer per peer, on the injected clock."""

    def __init__(
        self, clock: IReactorTime, timeout: float, on_timeout: Callable[[str], None],
        max_pending_per_peer: int = 10_000,
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._max = max_pending_per_peer
        # peer -> request type -> (request_id, deadline), oldest first
        self._pending: dict[str, dict[type, deque[tuple[int, float]]]] = {}
        self._timers: dict[str, IDelayedCall] = {}

    def sent(self, peer: str, kind: type, request_id: int) -> None:
        queue = self._pending.setdefault(peer, {}).setdefault(kind, deque())
        if len(queue) >= self._max:
            queue.popleft()
        queue.append((request_id, self._clock.seconds() + self._timeout))
        if peer not in self._timers:
            self._timers[peer] = self._clock.callLater(self._timeout, self._check, peer)

    def answered(self, peer: str, kind: type, up_to: int) -> float | None:
        """Forget the requests a reply answers; the round trip of request ``up_to`` in
        seconds (None if it was not pending: timed out, forgotten or never sent)."""
        queue = self._pending.get(peer, {}).get(kind)
        round_trip = None
        while queue and queue[0][0] <= up_to:
            request_id, deadline = queue.popleft()
            if request_id == up_to:
                round_trip = self._clock.seconds() - (deadline - self._timeout)
        return round_trip

    def count(self, peer: str) -> int:
        return sum(len(q) for q in self._pending.get(peer, {}).values())

    def forget(self, peer: str) -> None:
        self._pending.pop(peer, None)
        timer = self._timers.pop(peer, None)
        if timer is not None and timer.active():
            timer.cancel()

    def clear(self) -> None:
        for peer in list(self._timers):
            self.forget(peer)
        self._pending.clear()

    def _check(self, peer: str) -> None:
        del self._timers[peer]
        heads = [q[0][1] for q in self._pending.get(peer, {}).values() if q]
        if not heads:
            self._pending.pop(peer, None)
            return
        now = self._clock.seconds()
        if min(heads) <= now:
            self.forget(peer)
            self._on_timeout(peer)
        else:
            self._timers[peer] = self._clock.callLater(min(heads) - now, self._check, peer)
