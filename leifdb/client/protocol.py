"""The client's HTTP policy, without I/O: what to send, and what an answer means.

Both the async and the blocking client run the same generators and only do the I/O they
ask for, so redirects, retries, backoff and the "never resend a write whose outcome is
unknown" rule live here alone (keepalives, locks and campaigns are writes too; their
requests, the observe stream and the keepalive loop are in ``leifdb.client.coordination``):

- ``execute(request, ...)`` yields ``Send`` (the driver answers with a ``Response``, or a
  ``ConnectFailed`` / ``NoAnswer`` instance) and ``Sleep`` (the driver answers None); it
  returns the typed result or raises an error of ``leifdb.client.errors``.
- ``watch_steps(cursor, ...)`` also yields ``Read`` (the next bytes of the open stream;
  b"" or ``NoAnswer`` when it ended) and ``Emit`` (changes for the caller); it runs a
  watch (``WatchCursor``) or any other ``Cursor`` (an election's observe stream).

Policy: a 307 is followed to its ``Location`` (same method and body; at most
``max_redirects`` hops) and that node is remembered as the leader. A 503, a refused
connection, or (for reads only) a timeout, lost connection or 504 is retried on the next
endpoint after an exponential backoff with jitter, within ``attempts`` tries and
``deadline`` seconds. A write that was sent and got no answer, or a 504, raises
``OutcomeUnknown`` at once.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Generator, Iterable, Protocol, Union
from urllib.parse import quote, urlencode, urlsplit

from leifdb.client.errors import (
    BadRequest, ClientError, Compacted, ConditionFailed, Fenced, LeaseNotFound, LockTimeout,
    MemberNotFound, MembershipRefused, NotFound, NotHolder, NotLeader, OutcomeUnknown,
    ServerError, TooLarge, Unavailable, WatchOverflow,
)
from leifdb.client.sse import SseParser
from leifdb.client.types import (
    Event, Holder, Item, Lease, Members, Page, Status, TxnResult, WriteResult,
)

__all__ = [
    "ConnectFailed", "Cursor", "Emit", "Endpoints", "FenceLike", "JSON_HEADERS", "MEMBER_KINDS",
    "NoAnswer", "USER_AGENT",
    "Open", "Read", "Request", "Response", "RetryPolicy", "Send", "Sleep", "Step",
    "WatchCursor", "check_lease_id", "delete_request", "duration_text", "execute",
    "fence_text", "get_request", "health_request", "interpret", "json_body", "list_request",
    "normalize_endpoint", "parse_duration", "put_request", "txn_request", "watch_steps",
    "with_query",
]

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
# Membership calls (``leifdb.client.cluster``): their 404 means no such member, 409 refused.
MEMBER_KINDS = ("members", "add_member", "promote_member", "remove_member", "transfer_leader")


# --- requests and actions ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Request:
    """One API call. ``idempotent``: safe to resend when its outcome is unknown.
    ``leader``: best served by the leader (writes, linearizable reads). ``wait``: seconds
    the server may hold the request before answering (a lock's timeout), added to the
    transport's timeout. ``lease_id``: the lease a 404 is about (``LeaseNotFound``)."""

    kind: str
    method: str
    target: str  # path and query, percent-encoded
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    idempotent: bool = True
    leader: bool = True
    key: str = ""
    wait: float = 0.0
    lease_id: int = 0


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``request`` to ``url`` (``http://host:port``) and read the whole answer."""

    url: str
    request: Request
    timeout: float


@dataclass(frozen=True, slots=True)
class Open:
    """Send ``request`` and answer with the status and headers; for a 200 keep the body
    open for ``Read``, else read it all into ``Response.body``."""

    url: str
    request: Request
    timeout: float


@dataclass(frozen=True, slots=True)
class Read:
    """The next bytes of the open stream: b"" at its end, ``NoAnswer`` if it broke."""


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Emit:
    events: list[Any]  # Event for a watch, LeaderChange for an observe stream



class ConnectFailed(Exception):
    """Transport outcome: no connection was made, so nothing was sent."""


class NoAnswer(Exception):
    """Transport outcome: the request may have been sent but no complete answer came
    (timeout, connection lost)."""


# --- building requests ---------------------------------------------------------------

def _key_path(prefix: str, key: str) -> str:
    return prefix + quote(key, safe="")


def with_query(path: str, query: dict[str, Any]) -> str:
    """``path`` with the query of ``query``'s items that are not None."""
    pairs = [(k, v) for k, v in query.items() if v is not None]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def json_body(data: Any) -> bytes:
    """A compact JSON request body."""
    return json.dumps(data, separators=(",", ":")).encode()


JSON_HEADERS = (("Content-Type", "application/json"),)
USER_AGENT = "leifdb-client"  # sent by every transport


def get_request(key: str, *, stale: bool = False) -> Request:
    target = with_query(_key_path("/db/", key), {"consistency": "stale" if stale else None})
    return Request("get", "GET", target, leader=not stale, key=key)


_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*")
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``30``, ``2.5``, ``500ms``, ``30s``, ``2m``, ``1h`` or ``7d``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value))
        if match is None:
            raise ValueError(f"not a duration (such as 30s, 500ms, 2m, 1h): {value!r}")
        seconds = float(match.group(1)) * _SECONDS_PER_UNIT[match.group(2)]
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"not a duration: {value!r}")
    return seconds


def duration_text(seconds: float) -> str:
    """A duration as the server's ``timeout`` and ``ttl`` parameters take it: ``30s``,
    ``0.25s`` (at most millisecond precision)."""
    text = f"{round(seconds, 3):.3f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"


FenceLike = Union[Holder, str, tuple[str, int]]  # a lock's Holder, "NAME:TOKEN", (name, token)


def fence_text(fence: FenceLike) -> str:
    """``NAME:TOKEN`` from a lock ``Holder``, a ``(name, token)`` pair or the text itself."""
    if isinstance(fence, Holder):
        return fence.fence
    if isinstance(fence, tuple):
        name, token = fence
        fence = f"{name}:{token}"
    name, sep, token = str(fence).rpartition(":")
    if not sep or not name or not token.isdigit() or int(token) < 1:
        raise ValueError(f"a fence is NAME:TOKEN (a lock's name and its token), not {fence!r}")
    return f"{name}:{int(token)}"


def check_lease_id(lease_id: int) -> int:
    """``lease_id`` if it can be a lease's id: a bad one is the caller's error, not the server's."""
    if isinstance(lease_id, bool) or not isinstance(lease_id, int) or lease_id < 1:
        raise ValueError(f"a lease id is a positive integer, not {lease_id!r}")
    return lease_id


def put_request(key: str, value: str, *, prev: str | None = None,
                if_match: int | None = None, create: bool = False, lease: int = 0,
                ttl: float | str | None = None,
                fence: FenceLike | None = None) -> Request:
    """``lease``: attach the key to that lease; ``ttl``: grant a lease of that many seconds
    for this key alone (not with ``lease``); ``fence``: apply only while that lock is
    held with that token."""
    if lease and ttl is not None:
        raise ValueError("give lease or ttl, not both")
    query: dict[str, Any] = {
        "lease": check_lease_id(lease) if lease else None,
        "ttl": None if ttl is None else duration_text(parse_duration(ttl)),
        "fence": None if fence is None else fence_text(fence),
    }
    request = _write("put", "PUT", key, {"value": value}, prev, if_match, create, query)
    return replace(request, lease_id=lease or 0)


def delete_request(key: str, *, prev: str | None = None, if_match: int | None = None,
                   fence: FenceLike | None = None) -> Request:
    query = {"fence": None if fence is None else fence_text(fence)}
    return _write("delete", "DELETE", key, {}, prev, if_match, False, query)


def _write(kind: str, method: str, key: str, body: dict[str, Any], prev: str | None,
           if_match: int | None, create: bool, query: dict[str, Any]) -> Request:
    if sum((prev is not None, if_match is not None, create)) > 1:
        raise ValueError("give at most one condition: prev, if_match or create")
    headers = list(JSON_HEADERS)
    if prev is not None:
        body["prev"] = prev
    if if_match is not None:
        headers.append(("If-Match", f'"{int(if_match)}"'))
    if create:
        headers.append(("If-None-Match", "*"))
    return Request(kind, method, with_query(_key_path("/db/", key), query),
                   json_body(body) if body else None, tuple(headers), idempotent=False, key=key)


def list_request(prefix: str = "", *, start_after: str | None = None,
                 limit: int | None = None, stale: bool = False) -> Request:
    target = with_query("/db", {"prefix": prefix, "start_after": start_after,
                                "limit": limit, "consistency": "stale" if stale else None})
    return Request("list", "GET", target, leader=not stale, key=prefix)


def txn_request(txn: dict[str, Any], *, stale: bool = False) -> Request:
    """``txn``: the ``POST /txn`` body (``compare``, ``success``, ``failure``). A
    transaction that only reads (get/range in both branches) is safe to resend."""
    ops = list(txn.get("success") or []) + list(txn.get("failure") or [])
    read_only = all(isinstance(op, dict) and op.get("op") in ("get", "range") for op in ops)
    target = with_query("/txn", {"consistency": "stale" if stale else None})
    return Request("txn", "POST", target, json_body(txn), JSON_HEADERS, idempotent=read_only,
                   leader=not (stale and read_only))


def health_request() -> Request:
    return Request("health", "GET", "/health", leader=False)


def normalize_endpoint(endpoint: str) -> str:
    """``host:port``, ``http://host:port`` or ``http://host:port/`` as ``http://host:port``."""
    endpoint = endpoint.strip()
    if "://" not in endpoint:
        endpoint = "http://" + endpoint
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http endpoint: {endpoint!r}")
    return f"http://{parts.netloc}"


# --- endpoints and backoff -----------------------------------------------------------

class Endpoints:
    """The endpoints the client knows, the one in use, and the leader learned from
    redirects (tried first for requests the leader serves best)."""

    def __init__(self, endpoints: Iterable[str] | str | None = None) -> None:
        if endpoints is None:
            endpoints = [DEFAULT_ENDPOINT]
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        self.urls = [normalize_endpoint(e) for e in endpoints]
        if not self.urls:
            raise ValueError("no endpoints given")
        self.current = 0
        self.leader: str | None = None

    def first(self, leader: bool) -> str:
        if leader and self.leader:
            return self.leader
        return self.urls[self.current]

    def failed(self, url: str) -> str:
        """``url`` did not serve: forget it as leader, move on to the next endpoint."""
        if url == self.leader:
            self.leader = None
        if url in self.urls:
            self.current = (self.urls.index(url) + 1) % len(self.urls)
        else:
            self.current = (self.current + 1) % len(self.urls)
        return self.urls[self.current]


@dataclass
class RetryPolicy:
    """``attempts`` tries in all within ``deadline`` seconds; between tries n and n+1 a
    pause of ``d = min(cap, base * 2**n)`` jittered uniformly into ``[d/2, d]``."""

    attempts: int = 8
    base: float = 0.05
    cap: float = 2.0
    deadline: float = 15.0
    max_redirects: int = 3
    rng: Callable[[], float] = field(default=random.random)
    clock: Callable[[], float] = field(default=time.monotonic)

    def backoff(self, failures: int) -> float:
        d = min(self.cap, self.base * (2 ** max(0, failures - 1)))
        return d / 2 + self.rng() * d / 2


# --- interpreting answers ------------------------------------------------------------

def _decode(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _message(status: int, data: Any) -> str:
    if isinstance(data, dict) and data.get("error"):
        return f"{status}: {data['error']}"
    return f"HTTP {status}"


def _revision_header(resp: Response) -> int | None:
    try:
        return int(resp.headers.get("x-leifdb-revision", ""))
    except ValueError:
        return None


def _txn_result(op: dict[str, Any]) -> dict[str, Any]:
    out = dict(op)
    if isinstance(out.get("item"), dict):
        out["item"] = Item.from_json(out["item"])
    if isinstance(out.get("items"), list):
        out["items"] = [Item.from_json(i) for i in out["items"]]
    return out


def interpret(request: Request, resp: Response, url: str = "") -> Any:
    """The typed result of a final answer, or the error it means."""
    data = _decode(resp.body)
    status = resp.status
    kind = request.kind
    try:
        if status in (200, 201) or (status == 503 and kind == "health" and
                                    isinstance(data, dict) and "healthy" in data):
            if kind == "get":
                return Item.from_json(data)
            if kind == "put":
                return WriteResult(int(data["revision"]), int(data.get("lease") or 0))
            if kind in ("delete", "revoke", "resign"):
                return WriteResult(int(data["revision"]))
            if kind in ("grant", "keepalive", "lease_info"):
                return Lease.from_json(data)
            if kind == "leases":
                return [Lease.from_json(lease) for lease in data["leases"]]
            if kind in ("lock", "campaign", "proclaim", "lock_holder", "leader"):
                return Holder.from_json(data)
            if kind == "list":
                return Page(data["prefix"], [Item.from_json(i) for i in data["items"]],
                            bool(data["more"]), data.get("next_start_after"),
                            _revision_header(resp))
            if kind == "txn":
                return TxnResult(bool(data["succeeded"]), int(data["revision"]),
                                 [_txn_result(r) for r in data.get("results", [])])
            if kind == "health":
                return Status.from_json(url, data)
            if kind in ("members", "add_member", "promote_member", "remove_member"):
                return Members.from_json(data)
            if kind == "transfer_leader":
                return str(data["leader"])
            return data
    except (KeyError, TypeError, ValueError) as e:
        raise ServerError(f"unexpected answer to {request.method} {request.target}: {e!r}",
                          status=status, body=data) from None
    message = _message(status, data)
    if status == 404 and request.kind in ("get", "lock_holder", "leader"):
        return None  # absent key, free lock, no leader: answers, not errors
    if status == 404 and request.lease_id:
        raise LeaseNotFound(message, lease_id=request.lease_id, body=data)
    if status == 404 and kind in MEMBER_KINDS:
        raise MemberNotFound(message, member_id=request.key, body=data)
    if status == 409 and kind in MEMBER_KINDS:
        raise MembershipRefused(message, status=409, body=data)
    if status == 412 and isinstance(data, dict) and data.get("fence"):
        raise Fenced(message, fence=str(data["fence"]), body=data)
    if status == 412 and request.kind in ("proclaim", "resign"):
        raise NotHolder(message, status=412, body=data)
    if status == 423:
        holder = data.get("holder") if isinstance(data, dict) else None
        raise LockTimeout(message, holder=holder, body=data)
    if status == 412:
        current = None
        if isinstance(data, dict) and data.get("revision") is not None:
            current = Item(request.key, data.get("value"), int(data["revision"]),
                           int(data.get("create_revision") or 0), int(data.get("lease") or 0))
        raise ConditionFailed(message, key=request.key, current=current, body=data)
    if status == 410:
        compact = data.get("compact_revision") if isinstance(data, dict) else None
        raise Compacted(message, compact_revision=compact, body=data)
    if status == 504 and not request.idempotent:
        raise OutcomeUnknown(message, status=504, body=data)
    if status in (503, 504):
        raise Unavailable(message, status=status, body=data)
    if status == 307:
        raise NotLeader(message, status=307, body=data)
    errors: dict[int, type[ClientError]] = {400: BadRequest, 404: NotFound, 413: TooLarge}
    raise errors.get(status, ServerError)(message, status=status, body=data)


def _retryable(request: Request, reply: Response | Exception) -> bool:
    if isinstance(reply, ConnectFailed):
        return True
    if isinstance(reply, NoAnswer):
        return request.idempotent
    if request.kind == "health":
        return False  # a 503 is an answer: the node is up but not healthy
    return reply.status == 503 or (reply.status == 504 and request.idempotent)


def _describe(reply: Response | Exception, url: str) -> str:
    if isinstance(reply, Response):
        return f"{url}: {_message(reply.status, _decode(reply.body))}"
    return f"{url}: {reply}" if str(reply) else f"{url}: {type(reply).__name__}"


def _redirect(resp: Response) -> tuple[str, str] | None:
    location = resp.headers.get("location")
    if not location:
        return None
    parts = urlsplit(location)
    if not parts.netloc:
        return None
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"http://{parts.netloc}", target or "/"


Step = Generator[Any, Any, Any]


def execute(request: Request, endpoints: Endpoints, policy: RetryPolicy,
            timeout: float = 10.0, url: str | None = None) -> Step:
    """Run one call to its end: see the module docstring. ``url`` pins one endpoint
    (no redirects, no moving on: used by ``status``)."""
    start = policy.clock()
    pinned = url is not None
    url = url or endpoints.first(request.leader)
    original = request
    failures = hops = 0
    while True:
        reply = yield Send(url, request, timeout + request.wait)
        if isinstance(reply, NoAnswer) and not request.idempotent:
            raise OutcomeUnknown(
                f"{url}: no answer to {request.method} {request.target} ({reply or 'lost'});"
                " it may or may not have been applied: read before retrying")
        if isinstance(reply, Response) and reply.status == 307 and not pinned:
            hop = _redirect(reply)
            hops += 1
            if hop is None or hops > policy.max_redirects:
                raise NotLeader(f"{_describe(reply, url)} (redirect not followed)",
                                status=307, body=_decode(reply.body))
            url, target = hop
            endpoints.leader = url
            request = replace(request, target=target)
            continue
        if isinstance(reply, Response) and not _retryable(request, reply):
            return interpret(request, reply, url)
        failures += 1
        why = _describe(reply, url)
        delay = policy.backoff(failures)
        if pinned or failures >= policy.attempts or \
                policy.clock() - start + delay > policy.deadline:
            if isinstance(reply, Response) and reply.status in (503, 504):
                raise Unavailable(f"{why} (gave up after {failures} tries)",
                                  status=reply.status, body=_decode(reply.body))
            raise Unavailable(f"{why} (gave up after {failures} tries)")
        yield Sleep(delay)
        url = endpoints.failed(url)
        url = endpoints.first(request.leader)
        request, hops = original, 0


# --- watch ---------------------------------------------------------------------------

class Cursor(Protocol):
    """What ``watch_steps`` needs of a stream: the request that (re)opens it where it
    stands, and the meaning of its bytes."""

    messages: int  # whole messages received so far
    ended: str | None  # the final event that ended the stream, if any
    error: Exception | None  # raised once the changes before it are handed over

    def request(self) -> Request: ...

    def reset(self) -> None: ...

    def feed(self, data: bytes) -> list[Any]: ...


class WatchCursor:
    """Where a watch stands, and what its stream's bytes mean.

    Changes of one revision are held until the message with its ``id:`` (the last of the
    revision) arrives, then handed over together: a stream that drops inside a revision is
    resumed at that revision and nothing is seen twice. ``revision`` is the last revision
    fully seen (changes or a progress bookmark)."""

    def __init__(self, key: str, *, prefix: bool = False, prev: bool = False,
                 start_revision: int | None = None, stale: bool = False) -> None:
        self.key = key
        self.prefix = prefix
        self.prev = prev
        self.start_revision = start_revision
        self.stale = stale
        self.revision: int | None = None
        self.ended: str | None = None
        self.error: Exception | None = None  # a final event, raised once the changes
        # before it in the same read are handed over
        self.messages = 0  # whole messages received: a stream that delivers is no failure
        self._parser = SseParser()
        self._pending: list[Event] = []

    def request(self) -> Request:
        query = {"prefix": "true" if self.prefix else None,
                 "prev": "true" if self.prev else None,
                 "consistency": "stale" if self.stale else None}
        headers: tuple[tuple[str, str], ...] = ()
        if self.revision is not None:
            headers = (("Last-Event-ID", str(self.revision)),)
        elif self.start_revision is not None:
            query["start_revision"] = str(self.start_revision)
        return Request("watch", "GET", with_query(_key_path("/watch/", self.key), query),
                       headers=headers, leader=not self.stale, key=self.key)

    def reset(self) -> None:
        """The stream ended: forget its partial message and revision."""
        self._parser = SseParser()
        self._pending = []
        self.ended = None

    def feed(self, data: bytes) -> list[Event]:
        out: list[Event] = []
        for msg in self._parser.feed(data):
            self.messages += 1
            if msg.event in ("", "message"):
                self._pending.append(Event.from_json(json.loads(msg.data)))
                if msg.id is not None:
                    self.revision = int(msg.id)
                    out.extend(self._pending)
                    self._pending = []
            elif msg.event == "progress":
                if msg.id is not None:
                    self.revision = max(self.revision or 0, int(msg.id))
            elif msg.event in ("compacted", "overflow", "shutdown"):
                info = _decode(msg.data.encode()) or {}
                text = f"watch ended ({msg.event}): {info.get('error', '')}".rstrip(": ")
                if msg.event == "compacted":
                    self.error = Compacted(text, compact_revision=info.get("compact_revision"),
                                           body=info)
                elif msg.event == "overflow":
                    self.error = WatchOverflow(text, body=info)
                self.ended = msg.event
                break
        if self.error is not None and not out:
            raise self.error
        return out


def watch_steps(cursor: Cursor, endpoints: Endpoints,
                policy: RetryPolicy, timeout: float = 10.0) -> Step:
    """Run a watch (or an observe stream) for ever: open, read, emit, and on a dropped
    stream, a final event, a 503 or a refused connection, reconnect (with backoff, to the
    next endpoint) from ``cursor.revision`` via ``Last-Event-ID``. Raises ``Compacted``,
    ``WatchOverflow``, ``Unavailable`` after ``policy.attempts`` failures in a row (a
    stream that delivered a message ends the row), or the error of any other answer."""
    url = endpoints.first(cursor.request().leader)
    failures = hops = 0
    while True:
        request = cursor.request()
        reply = yield Open(url, request, timeout)
        if isinstance(reply, Response) and reply.status == 307:
            hop = _redirect(reply)
            hops += 1
            if hop is None or hops > policy.max_redirects:
                raise NotLeader(f"{_describe(reply, url)} (redirect not followed)", status=307)
            url = hop[0]
            continue
        hops = 0
        if isinstance(reply, Response) and reply.status == 200:
            why: Any = None
            delivered = cursor.messages
            while why is None:
                chunk = yield Read()
                if isinstance(chunk, Exception) or not chunk:
                    why = chunk if isinstance(chunk, Exception) else NoAnswer("stream ended")
                    break
                events = cursor.feed(chunk)
                if cursor.messages != delivered:
                    failures = 0
                if events:
                    yield Emit(events)
                if cursor.error is not None:
                    raise cursor.error
                if cursor.ended:
                    why = NoAnswer(f"node said {cursor.ended}")
            cursor.reset()
            reply = why
        elif isinstance(reply, Response) and reply.status not in (503, 504):
            interpret(request, reply, url)  # raises
            raise ServerError(_describe(reply, url))
        failures += 1
        if failures >= policy.attempts:
            raise Unavailable(f"{_describe(reply, url)} (watch gave up after {failures} tries)")
        yield Sleep(policy.backoff(failures))
        url = endpoints.failed(url)
