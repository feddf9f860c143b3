"""The client's HTTP policy, without I/O: what to send, and what an answer means.

Both the async and the blocking client run the same generators and only do the I/O they
ask for, so redirects, retries, backoff and the "never resend a write whose outcome is
unknown" rule live here alone:

- ``execute(request, ...)`` yields ``Send`` (the driver answers with a ``Response``, or a
  ``ConnectFailed`` / ``NoAnswer`` instance) and ``Sleep`` (the driver answers None); it
  returns the typed result or raises an error of ``leifdb.client.errors``.
- ``watch_steps(cursor, ...)`` also yields ``Read`` (the next bytes of the open stream;
  b"" or ``NoAnswer`` when it ended) and ``Emit`` (changes for the caller).

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
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Generator, Iterable
from urllib.parse import quote, urlencode, urlsplit

from leifdb.client.errors import (
    BadRequest, ClientError, Compacted, ConditionFailed, NotFound, NotLeader,
    OutcomeUnknown, ServerError, TooLarge, Unavailable, WatchOverflow,
)
from leifdb.client.sse import SseParser
from leifdb.client.types import Event, Item, Page, Status, TxnResult, WriteResult

__all__ = [
    "ConnectFailed", "Emit", "Endpoints", "NoAnswer", "Open", "Read", "Request", "Response",
    "RetryPolicy", "Send", "Sleep", "WatchCursor", "delete_request", "execute",
    "get_request", "health_request", "interpret", "list_request", "normalize_endpoint",
    "put_request", "txn_request", "watch_steps",
]

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"


# --- requests and actions ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Request:
    """One API call. ``idempotent``: safe to resend when its outcome is unknown.
    ``leader``: best served by the leader (writes, linearizable reads)."""

    kind: str
    method: str
    target: str  # path and query, percent-encoded
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    idempotent: bool = True
    leader: bool = True
    key: str = ""


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
    events: list[Event]


class ConnectFailed(Exception):
    """Transport outcome: no connection was made, so nothing was sent."""


class NoAnswer(Exception):
    """Transport outcome: the request may have been sent but no complete answer came
    (timeout, connection lost)."""


# --- building requests ---------------------------------------------------------------

def _key_path(prefix: str, key: str) -> str:
    return prefix + quote(key, safe="")


def _with_query(path: str, query: dict[str, Any]) -> str:
    pairs = [(k, v) for k, v in query.items() if v is not None]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


_JSON = (("Content-Type", "application/json"),)


def get_request(key: str, *, stale: bool = False) -> Request:
    target = _with_query(_key_path("/db/", key), {"consistency": "stale" if stale else None})
    return Request("get", "GET", target, leader=not stale, key=key)


def put_request(key: str, value: str, *, prev: str | None = None,
                if_match: int | None = None, create: bool = False) -> Request:
    body: dict[str, Any] = {"value": value}
    return _write("put", "PUT", key, body, prev, if_match, create)


def delete_request(key: str, *, prev: str | None = None,
                   if_match: int | None = None) -> Request:
    return _write("delete", "DELETE", key, {}, prev, if_match, False)


def _write(kind: str, method: str, key: str, body: dict[str, Any], prev: str | None,
           if_match: int | None, create: bool) -> Request:
    if sum((prev is not None, if_match is not None, create)) > 1:
        raise ValueError("give at most one condition: prev, if_match or create")
    headers = list(_JSON)
    if prev is not None:
        body["prev"] = prev
    if if_match is not None:
        headers.append(("If-Match", f'"{int(if_match)}"'))
    if create:
        headers.append(("If-None-Match", "*"))
    return Request(kind, method, _key_path("/db/", key), _json(body) if body else None,
                   tuple(headers), idempotent=False, key=key)


def list_request(prefix: str = "", *, start_after: str | None = None,
                 limit: int | None = None, stale: bool = False) -> Request:
    target = _with_query("/db", {"prefix": prefix, "start_after": start_after,
                                 "limit": limit, "consistency": "stale" if stale else None})
    return Request("list", "GET", target, leader=not stale, key=prefix)


def txn_request(txn: dict[str, Any], *, stale: bool = False) -> Request:
    """``txn``: the ``POST /txn`` body (``compare``, ``success``, ``failure``). A
    transaction that only reads (get/range in both branches) is safe to resend."""
    ops = list(txn.get("success") or []) + list(txn.get("failure") or [])
    read_only = all(isinstance(op, dict) and op.get("op") in ("get", "range") for op in ops)
    target = _with_query("/txn", {"consistency": "stale" if stale else None})
    return Request("txn", "POST", target, _json(txn), _JSON, idempotent=read_only,
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
    try:
        if status == 200:
            kind = request.kind
            if kind == "get":
                return Item.from_json(data)
            if kind in ("put", "delete"):
                return WriteResult(int(data["revision"]))
            if kind == "list":
                return Page(data["prefix"], [Item.from_json(i) for i in data["items"]],
                            bool(data["more"]), data.get("next_start_after"),
                            _revision_header(resp))
            if kind == "txn":
                return TxnResult(bool(data["succeeded"]), int(data["revision"]),
                                 [_txn_result(r) for r in data.get("results", [])])
            if kind == "health":
                return Status.from_json(url, data)
            return data
    except (KeyError, TypeError, ValueError) as e:
        raise ServerError(f"unexpected answer to {request.method} {request.target}: {e!r}",
                          status=status, body=data) from None
    message = _message(status, data)
    if status == 404 and request.kind == "get":
        return None
    if status == 412:
        current = None
        if isinstance(data, dict) and data.get("revision") is not None:
            current = Item(request.key, data.get("value"), int(data["revision"]))
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
        reply = yield Send(url, request, timeout)
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
        return Request("watch", "GET", _with_query(_key_path("/watch/", self.key), query),
                       headers=headers, leader=not self.stale, key=self.key)

    def reset(self) -> None:
        """The stream ended: forget its partial message and revision."""
        self._parser = SseParser()
        self._pending = []
        self.ended = None

    def feed(self, data: bytes) -> list[Event]:
        out: list[Event] = []
        for msg in self._parser.feed(data):
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


def watch_steps(cursor: WatchCursor, endpoints: Endpoints, policy: RetryPolicy,
                timeout: float = 10.0) -> Step:
    """Run a watch for ever: open, read, emit, and on a dropped stream, a ``shutdown``,
    a 503 or a refused connection, reconnect (with backoff, to the next endpoint) from
    ``cursor.revision`` via ``Last-Event-ID``. Raises ``Compacted``, ``WatchOverflow``,
    ``Unavailable`` after ``policy.attempts`` failures in a row, or the error of any
    other answer."""
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
            while why is None:
                chunk = yield Read()
                if isinstance(chunk, Exception) or not chunk:
                    why = chunk if isinstance(chunk, Exception) else NoAnswer("stream ended")
                    break
                events = cursor.feed(chunk)
                if events:
                    failures = 0
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
