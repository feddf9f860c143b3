"""The LeifDB client library.

``Client`` (blocking, standard library only) and ``AsyncClient`` (Twisted or asyncio via
txaio; ``from leifdb.client.aio import AsyncClient``) share one HTTP policy (``leifdb.client.protocol``): they know several endpoints,
follow 307 to the leader, retry 503 and refused connections with exponential backoff and
jitter, and never resend a write whose outcome is unknown: they raise ``OutcomeUnknown``.
"""

from leifdb.client.blocking import Client, Watch
from leifdb.client.errors import (
    BadRequest, ClientError, Compacted, ConditionFailed, Gone, NotFound, NotLeader,
    OutcomeUnknown, ServerError, TooLarge, Unavailable, WatchOverflow,
)
from leifdb.client.protocol import RetryPolicy
from leifdb.client.types import Event, Item, Page, Status, TxnResult, WriteResult

__all__ = [
    "BadRequest", "Client", "ClientError", "Compacted", "ConditionFailed",
    "Event", "Gone", "Item", "NotFound", "NotLeader", "OutcomeUnknown", "Page", "RetryPolicy",
    "ServerError", "Status", "TooLarge", "TxnResult", "Unavailable", "Watch", "WatchOverflow",
    "WriteResult",
]

