"""The service's errors as HTTP answers, in one place so every route maps them alike.

Reads (and read-only transactions, watch start points, long polls) and writes differ in
what a client must learn: a write says whether it was ``applied`` (false: safe to retry;
"unknown": read first), a read only where to go or when to retry. Lease reads are served
by the leader alone (only it keeps the deadlines), so they have their own wording, and
so do membership changes (a refusal says why; an unknown outcome means reading the member
list, not a key).
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from leifdb.errors import (
    Compacted,
    InvalidRequest,
    LeaseNotFound,
    LimitExceeded,
    LockTimeout,
    MembershipRefused,
    NotHolder,
    NotLeaderError,
    OutcomeUnknown,
    Unavailable,
)
from leifdb.http.errors import ApiError
from leifdb.http.params import split_uri

__all__ = [
    "RETRY_AFTER_SECONDS",
    "leader_read_failure",
    "membership_failure",
    "read_failure",
    "redirect",
    "shield",
    "write_failure",
]

RETRY_AFTER_SECONDS = 1
# RFC 3986 characters that may stay as they are in a Location path or query; "%" stays
# because the raw target is already percent-encoded.
_URI_SAFE = "/%:@!$&'()*+,;=-._~?"
_RETRY = {"Retry-After": str(RETRY_AFTER_SECONDS)}

T = TypeVar("T")


def shield(d: Deferred[T]) -> Deferred[T]:
    """A Deferred that follows ``d`` but whose cancellation does not reach ``d``.

    Klein cancels a handler's Deferred when the client disconnects; a write already handed
    to the service must still run its course, and the service's own Deferred must not be
    cancelled under it.
    """
    shielded: Deferred[T] = Deferred()

    def forward(result: Any) -> None:
        if not shielded.called:
            if isinstance(result, Failure):
                shielded.errback(result)
            else:
                shielded.callback(result)

    d.addBoth(forward)
    return shielded


def redirect(request: IRequest, leader_http: str, message: str, **fields: Any) -> ApiError:
    """307 to the same path and query on the leader, so the method and body are resent."""
    raw_path, raw_query = split_uri(request.uri)
    target = quote(raw_path, safe=_URI_SAFE)
    if raw_query is not None:
        target += "?" + quote(raw_query, safe=_URI_SAFE)
    location = f"http://{leader_http}{target}"
    return ApiError(
        307, message, headers={"Location": location}, leader=f"http://{leader_http}", **fields
    )


def _why(error: Exception) -> str:
    return f" ({error})" if str(error) else ""


def _common(error: Exception) -> ApiError | None:
    """Errors that mean the same for reads and writes: nothing was done."""
    if isinstance(error, LeaseNotFound):
        return ApiError(404, str(error), lease=error.lease_id)
    if isinstance(error, NotHolder):
        return ApiError(412, str(error) or "the token is not the election's leader")
    if isinstance(error, LockTimeout):
        return ApiError(423, str(error), holder=error.holder)
    if isinstance(error, Compacted):
        return ApiError(410, str(error), compact_revision=error.compact_revision)
    if isinstance(error, LimitExceeded):
        return ApiError(413, str(error) or "the request is over a limit")
    if isinstance(error, InvalidRequest):
        return ApiError(400, str(error) or "invalid request")
    return None


def read_failure(request: IRequest, error: Exception) -> ApiError | None:
    """The answer for a read the service refused, or None (an unexpected error: 500)."""
    if isinstance(error, NotLeaderError):
        if error.leader_http:
            return redirect(
                request,
                error.leader_http,
                "this node does not serve linearizable reads; read from the leader",
            )
        return ApiError(
            503,
            "no leader is known, so a linearizable read cannot be served; "
            "retry, or use consistency=stale",
            headers=_RETRY,
        )
    if isinstance(error, (Unavailable, OutcomeUnknown)):
        return ApiError(
            503,
            f"a linearizable read cannot be served right now{_why(error)}; "
            "retry, or use consistency=stale",
            headers=_RETRY,
        )
    return _common(error)


def leader_read_failure(request: IRequest, error: Exception) -> ApiError | None:
    """The answer for a read only the leader serves (leases), or None (a bug: 500)."""
    if isinstance(error, NotLeaderError):
        if error.leader_http:
            return redirect(request, error.leader_http, "only the leader keeps leases; ask it")
        return ApiError(503, "no leader is known, so no node keeps leases now; retry",
                        headers=_RETRY)
    if isinstance(error, (Unavailable, OutcomeUnknown)):
        return ApiError(503, f"the leader cannot answer right now{_why(error)}; retry",
                        headers=_RETRY)
    return _common(error)


def write_failure(request: IRequest, error: Exception) -> ApiError | None:
    """The answer for a write that failed, or None (an unexpected error: 500)."""
    if isinstance(error, NotLeaderError):
        if error.leader_http:
            return redirect(
                request, error.leader_http, "this node is not the leader", applied=False
            )
        return ApiError(
            503,
            "no leader is known; the write was not applied",
            headers=_RETRY,
            applied=False,
        )
    if isinstance(error, Unavailable):
        return ApiError(
            503,
            "the cluster is unavailable; the write was not applied",
            headers=_RETRY,
            applied=False,
        )
    if isinstance(error, OutcomeUnknown):
        return ApiError(
            504,
            f"the write may or may not have been applied{_why(error)}; "
            "read the key before retrying",
            applied="unknown",
        )
    return _common(error)


def membership_failure(request: IRequest, error: Exception) -> ApiError | None:
    """The answer for a membership change or leadership transfer that failed, or None (a
    bug: 500). Every refusal says why; nothing was changed unless the outcome is unknown."""
    if isinstance(error, NotLeaderError):
        if error.leader_http:
            return redirect(
                request, error.leader_http,
                "this node is not the leader; membership changes go through the leader",
                applied=False,
            )
        return ApiError(503, "no leader is known; nothing was changed", headers=_RETRY,
                        applied=False)
    if isinstance(error, MembershipRefused):
        if error.status == 503:
            return ApiError(503, f"{error}; nothing was changed; retry", headers=_RETRY,
                            applied=False)
        return ApiError(error.status, str(error), applied=False)
    if isinstance(error, Unavailable):
        return ApiError(
            503, f"{error or 'the cluster cannot change now'}; nothing was changed; retry",
            headers=_RETRY, applied=False,
        )
    if isinstance(error, OutcomeUnknown):
        return ApiError(
            504,
            f"the change may or may not have been applied{_why(error)}; list the members "
            "before retrying",
            applied="unknown",
        )
    return _common(error)
