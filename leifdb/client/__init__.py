"""The LeifDB client library.

``Client`` (blocking, on the standard library's ``http.client``) and ``AsyncClient``
(Twisted or asyncio via txaio; ``from leifdb.client.aio import AsyncClient``) share one
HTTP policy (``leifdb.client.protocol``): they know several endpoints, follow 307 to the
leader, retry 503 and refused connections with exponential backoff and jitter, and never
resend a write whose outcome is unknown: they raise ``OutcomeUnknown``.
Leases (``grant``, ``keep_alive``...), locks with fencing tokens (``lock``), elections
(``campaign``, ``observe``...) and cluster membership (``members``, ``add_member``,
``promote_member``, ``remove_member``, ``transfer_leader``) go through the same policy, and
so does ``snapshot`` (a backup, checked against its CRC-32C; ``leifdb.client.snapshot``).
"""

from leifdb.client.blocking import Client, LeaseKeeper, Observer, Watch
from leifdb.client.errors import (
    BadRequest, ClientError, Compacted, ConditionFailed, Fenced, Gone, LeaseExpired,
    LeaseNotFound, LockTimeout, MemberNotFound, MembershipRefused, NotFound, NotHolder,
    NotLeader, OutcomeUnknown, ServerError, TooLarge, Unavailable, WatchOverflow,
)
from leifdb.client.protocol import RetryPolicy, parse_duration
from leifdb.client.snapshot import SnapshotCorrupt, SnapshotInfo
from leifdb.client.types import (
    Event, Holder, Item, LeaderChange, Lease, Member, Members, Page, Status, TxnResult,
    WriteResult,
)

__all__ = [
    "BadRequest", "Client", "ClientError", "Compacted", "ConditionFailed", "Event", "Fenced",
    "Gone", "Holder", "Item", "LeaderChange", "Lease", "LeaseExpired", "LeaseKeeper",
    "LeaseNotFound", "LockTimeout", "Member", "MemberNotFound", "Members",
    "MembershipRefused", "NotFound", "NotHolder", "NotLeader", "Observer",
    "OutcomeUnknown", "Page", "RetryPolicy", "ServerError", "SnapshotCorrupt", "SnapshotInfo",
    "Status", "TooLarge", "TxnResult", "Unavailable", "Watch", "WatchOverflow", "WriteResult",
    "parse_duration",
]
