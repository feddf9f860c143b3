"""Leases, locks and elections, without I/O: their requests, the observe stream and the
keepalive loop, run by both clients through the policy of ``leifdb.client.protocol``.

- ``grant_request``... ``resign_request`` build the calls; ``protocol.execute`` runs them.
  Leases, locks and elections are served by the leader; every call that changes something
  (keepalives included) is a write: never resent once its outcome is unknown.
- ``ObserveCursor`` is the cursor ``protocol.watch_steps`` runs for an election's observe
  stream.
- ``keepalive_steps(lease_id, ...)`` keeps a lease alive for ever: ``Send``, ``Sleep`` and
  ``Renewed`` (an acknowledged keepalive); it raises once the lease is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from urllib.parse import quote

from leifdb.client.errors import ClientError, LeaseExpired, OutcomeUnknown, ServerError, Unavailable
from leifdb.client.protocol import (
    JSON_HEADERS, Endpoints, Request, RetryPolicy, Sleep, Step, check_lease_id, duration_text,
    execute, json_body, parse_duration, with_query,
)
from leifdb.client.sse import SseParser
from leifdb.client.types import LeaderChange, Lease

__all__ = [
    "DEFAULT_WAIT", "ObserveCursor", "Renewed", "campaign_request", "grant_request",
    "keepalive_request", "keepalive_steps", "leader_request", "lease_info_request",
    "leases_request", "lock_holder_request", "lock_request", "proclaim_request",
    "resign_request", "revoke_request",
]

DEFAULT_WAIT = 60.0  # a lock's or campaign's timeout when none is given (the server's default)


@dataclass(frozen=True, slots=True)
class Renewed:
    """``keepalive_steps``: a keepalive was acknowledged (the driver answers None)."""

    lease: Lease


# --- requests -----------------------------------------------------------------------

def grant_request(ttl: float | str) -> Request:
    return Request("grant", "POST", "/lease", json_body({"ttl": parse_duration(ttl)}), JSON_HEADERS,
                   idempotent=False)


def keepalive_request(lease_id: int) -> Request:
    return Request("keepalive", "POST", f"/lease/{check_lease_id(lease_id)}/keepalive",
                   idempotent=False, lease_id=lease_id)


def lease_info_request(lease_id: int) -> Request:
    return Request("lease_info", "GET", f"/lease/{check_lease_id(lease_id)}", lease_id=lease_id)


def leases_request() -> Request:
    return Request("leases", "GET", "/lease")


def revoke_request(lease_id: int) -> Request:
    return Request("revoke", "DELETE", f"/lease/{check_lease_id(lease_id)}", idempotent=False,
                   lease_id=lease_id)


def _name_path(prefix: str, name: str, suffix: str = "") -> str:
    if not name:
        raise ValueError("a lock or election needs a name")
    return prefix + quote(name, safe="") + suffix


def _wait_request(kind: str, path: str, name: str, lease: int, value: str,
                  timeout: float | str | None) -> Request:
    wait = DEFAULT_WAIT if timeout is None else parse_duration(timeout)
    return Request(kind, "POST", with_query(path, {"timeout": duration_text(wait)}),
                   json_body({"lease": check_lease_id(lease), "value": value}), JSON_HEADERS,
                   idempotent=False, key=name, wait=wait, lease_id=lease)


def lock_request(name: str, lease: int, *, value: str = "",
                 timeout: float | str | None = None) -> Request:
    """Wait until ``lease`` holds lock ``name`` (at most ``timeout``, default 60 s)."""
    return _wait_request("lock", _name_path("/lock/", name), name, lease, value, timeout)


def lock_holder_request(name: str, *, stale: bool = False) -> Request:
    target = with_query(_name_path("/lock/", name),
                        {"consistency": "stale" if stale else None})
    return Request("lock_holder", "GET", target, leader=not stale, key=name)


def campaign_request(name: str, lease: int, value: str, *,
                     timeout: float | str | None = None) -> Request:
    return _wait_request("campaign", _name_path("/election/", name, "/campaign"), name,
                         lease, value, timeout)


def leader_request(name: str, *, stale: bool = False) -> Request:
    target = with_query(_name_path("/election/", name),
                        {"consistency": "stale" if stale else None})
    return Request("leader", "GET", target, leader=not stale, key=name)


def proclaim_request(name: str, token: int, value: str) -> Request:
    return Request("proclaim", "POST", _name_path("/election/", name, "/proclaim"),
                   json_body({"token": int(token), "value": value}), JSON_HEADERS, idempotent=False,
                   key=name)


def resign_request(name: str, token: int) -> Request:
    return Request("resign", "POST", _name_path("/election/", name, "/resign"),
                   json_body({"token": int(token)}), JSON_HEADERS, idempotent=False, key=name)


# --- observing an election ---------------------------------------------------------

class ObserveCursor:
    """An election's observe stream (``event: leader`` messages), as ``watch_steps`` runs
    it. A new stream starts with the current leader, so any final event (``compacted``,
    ``overflow``, ``shutdown``) or drop is only a reconnect; a message that repeats the
    leader already handed over (same key, token and revision) is not handed over again."""

    def __init__(self, name: str, *, stale: bool = False) -> None:
        self.name = name
        self.stale = stale
        self.revision: int | None = None
        self.ended: str | None = None
        self.error: Exception | None = None  # never set: every ending reconnects
        self.messages = 0
        self._parser = SseParser()
        self._last: tuple[str, int, int] | None = None
        self._started = False

    def request(self) -> Request:
        target = with_query(_name_path("/election/", self.name, "/observe"),
                            {"consistency": "stale" if self.stale else None})
        return Request("observe", "GET", target, leader=not self.stale, key=self.name)

    def reset(self) -> None:
        self._parser = SseParser()
        self.ended = None

    def feed(self, data: bytes) -> list[LeaderChange]:
        out: list[LeaderChange] = []
        for msg in self._parser.feed(data):
            self.messages += 1
            if msg.event == "leader":
                change = LeaderChange.from_json(json.loads(msg.data))
                self.revision = max(self.revision or 0, change.revision)
                leader = change.leader
                seen = None if leader is None else (leader.key, leader.token, leader.revision)
                if self._started and seen == self._last:
                    continue
                self._started, self._last = True, seen
                out.append(change)
            elif msg.event in ("compacted", "overflow", "shutdown"):
                self.ended = msg.event
                break
        return out


# --- keeping a lease alive -----------------------------------------------------------

_TRANSIENT = (Unavailable, OutcomeUnknown, ServerError)


def keepalive_steps(lease_id: int, endpoints: Endpoints, policy: RetryPolicy,
                    timeout: float = 10.0, *, interval: float | None = None,
                    remaining: float | None = None) -> Step:
    """Keep lease ``lease_id`` alive until the driver stops: a keepalive now, then one
    every ``interval`` seconds (default a third of the lease's TTL), each acknowledged one
    handed over as ``Renewed``.

    A keepalive whose outcome is unknown, a 503 or an unreachable cluster is retried
    (renewing twice does no harm) within the time the lease surely has left: the TTL from
    the moment the last acknowledged keepalive was sent (``remaining`` seconds from now at
    the start, if given; unknown until the first acknowledgement otherwise). Raises
    ``LeaseNotFound`` when the cluster says the lease is gone, ``LeaseExpired`` when that
    time ran out without an acknowledgement (the lease may have expired: treat it as
    lost), or any other error of the keepalive (400...)."""
    clock = policy.clock
    request = keepalive_request(lease_id)
    deadline = None if remaining is None else clock() + remaining
    every = interval
    failures = 0
    last_error: ClientError | None = None
    while True:
        sent = clock()
        left = None if deadline is None else deadline - sent
        if left is not None and left <= 0:
            raise LeaseExpired(
                f"lease {lease_id}: no keepalive acknowledged within its TTL; it may have "
                f"expired (last error: {last_error})", lease_id=lease_id, cause=last_error)
        bounded = policy if left is None else replace(policy, deadline=min(policy.deadline, left))
        try:
            lease = yield from execute(request, endpoints, bounded,
                                       timeout if left is None else min(timeout, left))
        except _TRANSIENT as e:
            failures += 1
            last_error = e
            pause = policy.backoff(failures)
            if every is not None:
                pause = min(pause, every / 2)
            if left is not None:
                pause = min(pause, max(0.0, deadline - clock()))
            yield Sleep(pause)
            continue
        failures = 0
        deadline = sent + lease.ttl
        every = interval or lease.ttl / 3
        yield Renewed(lease)
        yield Sleep(every)
