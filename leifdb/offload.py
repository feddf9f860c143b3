"""Running CPU-bound work (snapshot encoding) off the reactor thread.

Encoding a snapshot on the reactor holds every request for its whole length (a latency
spike every ``snapshot_entries`` writes); on a worker thread it shares the GIL in small
slices instead, and the node keeps answering.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool

__all__ = ["Runner", "thread_runner"]

# ``run(function, *args)``: call ``function`` on a worker thread; a Deferred of its result.
Runner = Callable[..., Deferred]


def thread_runner(reactor: Any) -> Runner:
    """The reactor's thread pool; inline for a reactor without one (a test's ``Clock``,
    so simulations stay deterministic)."""
    get_pool = getattr(reactor, "getThreadPool", None)
    if get_pool is None:
        return maybeDeferred
    return lambda function, *args: deferToThreadPool(reactor, get_pool(), function, *args)
