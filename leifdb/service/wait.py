"""Pending proposals and reads, and the one timer that expires them (etcd's ``pkg/wait``).

A proposal waits for the entry at its index to apply; a read waits first for its read
index to be confirmed, then for the state machine to apply that far. Timeouts share one
``callLater`` per kind, armed for the oldest deadline: every waiter of a kind has the same
timeout, so deadlines arrive in FIFO order and a deque is enough (a timer per request cost
about 5 % of the leader's CPU under load).
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred

from leifdb.errors import OutcomeUnknown, Unavailable
from leifdb.kv.commands import ApplyResult

__all__ = ["Waits"]


class _Deadlines:
    """Keys in arrival order with one shared timeout; ``expire(key)`` is called for each
    key still registered when its deadline passes."""

    def __init__(self, reactor: Any, timeout: float, expire: Callable[[Any], None]) -> None:
        self._reactor = reactor
        self._timeout = timeout
        self._expire = expire
        self._queue: deque[tuple[float, Any]] = deque()
        self._call: Any = None

    def add(self, key: Any) -> None:
        self._queue.append((self._reactor.seconds() + self._timeout, key))
        if self._call is None:
            self._call = self._reactor.callLater(self._timeout, self._fire)

    def _fire(self) -> None:
        self._call = None
        now = self._reactor.seconds()
        queue = self._queue
        while queue and queue[0][0] <= now:
            self._expire(queue.popleft()[1])
        if queue:
            self._call = self._reactor.callLater(max(0.0, queue[0][0] - now), self._fire)

    def clear(self) -> None:
        self._queue.clear()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class Waits:
    """The registry. Proposals are keyed by log index and remember their term: the entry
    that applies at that index must have the same term, else the outcome is unknown (a new
    leader overwrote it). Reads are keyed by read id until confirmed, then by read index."""

    def __init__(self, reactor: Any, *, proposal_timeout: float, read_timeout: float) -> None:
        self._proposals: dict[int, tuple[int, Deferred]] = {}
        self._reads: dict[int, Deferred] = {}
        self._applied_waiters: list[tuple[int, int, Deferred]] = []  # heap (index, seq, d)
        self._seq = 0
        self._proposal_deadlines = _Deadlines(reactor, proposal_timeout, self._proposal_expired)
        self._read_deadlines = _Deadlines(reactor, read_timeout, self._read_expired)

    # -- proposals ---------------------------------------------------------------------

    def proposed(self, index: int, term: int) -> Deferred[ApplyResult]:
        d: Deferred[ApplyResult] = Deferred()
        replaced = self._proposals.get(index)
        self._proposals[index] = (term, d)
        if replaced is not None:
            # The index was handed out again (leadership lost and regained, within one
            # Ready, over a shorter log): the earlier proposal there was overwritten.
            replaced[1].errback(OutcomeUnknown("leadership changed before commit"))
        self._proposal_deadlines.add((index, term))
        return d

    def applied(self, index: int, term: int, result: ApplyResult | None) -> None:
        """The entry ``(index, term)`` applied with ``result`` (None: not a command)."""
        pending = self._proposals.pop(index, None)
        if pending is None:
            return
        proposed_term, d = pending
        if proposed_term == term and result is not None:
            d.callback(result)
        else:
            d.errback(OutcomeUnknown("leadership changed before commit"))

    def leadership_lost(self) -> None:
        """Proposals may still commit under a new leader, or not: their outcome is unknown."""
        self._fail_proposals(OutcomeUnknown("leadership lost before commit"))

    def _proposal_expired(self, key: tuple[int, int]) -> None:
        index, term = key
        pending = self._proposals.get(index)
        if pending is not None and pending[0] == term:
            del self._proposals[index]
            pending[1].errback(OutcomeUnknown("the write did not commit in time"))

    def _fail_proposals(self, error: Exception) -> None:
        proposals, self._proposals = self._proposals, {}
        for _term, d in proposals.values():
            d.errback(error)

    @property
    def pending_proposals(self) -> int:
        return len(self._proposals)

    # -- reads -------------------------------------------------------------------------

    def read_requested(self, read_id: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._reads[read_id] = d
        self._read_deadlines.add(read_id)
        return d

    def read_confirmed(self, read_id: int, read_index: int, applied_index: int) -> None:
        """The read ``read_id`` may be served once ``read_index`` has applied."""
        d = self._reads.pop(read_id, None)
        if d is None:
            return
        if read_index <= applied_index:
            d.callback(None)
        else:
            self._seq += 1
            heapq.heappush(self._applied_waiters, (read_index, self._seq, d))

    def read_refused(self, read_id: int, error: Exception) -> None:
        d = self._reads.pop(read_id, None)
        if d is not None:
            d.errback(error)

    def applied_to(self, applied_index: int) -> None:
        """Release the reads waiting for the state machine to reach ``applied_index``."""
        waiters = self._applied_waiters
        while waiters and waiters[0][0] <= applied_index:
            heapq.heappop(waiters)[2].callback(None)

    def _read_expired(self, read_id: int) -> None:
        d = self._reads.pop(read_id, None)
        if d is not None:
            d.errback(Unavailable("the read could not be confirmed in time"))

    # -- shutdown ----------------------------------------------------------------------

    def fail_all(self, write_error: Exception, read_error: Exception) -> None:
        self._proposal_deadlines.clear()
        self._read_deadlines.clear()
        self._fail_proposals(write_error)
        reads, self._reads = self._reads, {}
        waiters, self._applied_waiters = self._applied_waiters, []
        for d in list(reads.values()) + [w[2] for w in waiters]:
            d.errback(read_error)
