"""The blocking client, for scripts and the ``leifdb`` command: the standard library's
``http.client`` running the generators of ``leifdb.client.protocol``."""

from __future__ import annotations

import http.client
import time
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

from leifdb.client.protocol import (
    ConnectFailed, Emit, Endpoints, NoAnswer, Open, Read, Response, RetryPolicy, Send, Sleep,
    WatchCursor, delete_request, execute, get_request, health_request, list_request,
    put_request, txn_request, watch_steps,
)
from leifdb.client.types import Event, Item, Page, Status, TxnResult, WriteResult

__all__ = ["Client"]

USER_AGENT = "leifdb-client"
WATCH_READ_TIMEOUT = 15.0  # the server sends a progress bookmark every 5 s


def _connect(url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.connect()
    except OSError as e:
        conn.close()
        raise ConnectFailed(f"cannot connect: {e}") from None
    return conn


def _send(conn: http.client.HTTPConnection, action: Send | Open) -> http.client.HTTPResponse:
    request = action.request
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **dict(request.headers)}
    try:
        conn.request(request.method, request.target, body=request.body, headers=headers)
        return conn.getresponse()
    except (OSError, http.client.HTTPException) as e:
        raise NoAnswer(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None


def _headers(resp: http.client.HTTPResponse) -> dict[str, str]:
    return {k.lower(): v for k, v in resp.getheaders()}


def send_once(action: Send | Open) -> Response:
    """Do a ``Send``: one connection, one request, the whole answer."""
    conn = _connect(action.url, action.timeout)
    try:
        resp = _send(conn, action)
        try:
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise NoAnswer(f"answer cut short: {e!r}") from None
        return Response(resp.status, _headers(resp), body)
    finally:
        conn.close()


class Client:
    """A blocking LeifDB client.

    ``endpoints``: ``["http://host:port", ...]`` or ``"h1:p1,h2:p2"``. Writes go to the
    leader (learned from redirects); linearizable reads too; ``stale=True`` reads are
    served by whichever endpoint answers. See ``leifdb.client.protocol`` for the retry
    policy; ``sleep``, ``policy`` (its ``rng`` and ``clock``) and ``transport`` can be
    replaced for tests."""

    def __init__(self, endpoints: Iterable[str] | str | None = None, *, timeout: float = 10.0,
                 policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 transport: Callable[[Send], Response] = send_once) -> None:
        self.endpoints = Endpoints(endpoints)
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self._sleep = sleep
        self._transport = transport

    def _run(self, request: Any, url: str | None = None) -> Any:
        steps = execute(request, self.endpoints, self.policy, self.timeout, url)
        reply: Any = None
        try:
            while True:
                action = steps.send(reply)
                if isinstance(action, Sleep):
                    self._sleep(action.seconds)
                    reply = None
                    continue
                try:
                    reply = self._transport(action)
                except (ConnectFailed, NoAnswer) as e:
                    reply = e
        except StopIteration as done:
            return done.value

    # --- the API -----------------------------------------------------------------------

    def get(self, key: str, *, stale: bool = False) -> Item | None:
        """The key, or None if it is absent."""
        return self._run(get_request(key, stale=stale))

    def put(self, key: str, value: str, *, prev: str | None = None,
            if_match: int | None = None, create: bool = False) -> WriteResult:
        """Write ``key``; with a condition (at most one), ``ConditionFailed`` if it does
        not hold: ``prev`` (current value), ``if_match`` (current revision), ``create``
        (only if absent)."""
        return self._run(put_request(key, value, prev=prev, if_match=if_match, create=create))

    def delete(self, key: str, *, prev: str | None = None,
               if_match: int | None = None) -> WriteResult:
        return self._run(delete_request(key, prev=prev, if_match=if_match))

    def list_page(self, prefix: str = "", *, start_after: str | None = None,
                  limit: int | None = None, stale: bool = False) -> Page:
        return self._run(list_request(prefix, start_after=start_after, limit=limit,
                                      stale=stale))

    def list(self, prefix: str = "", *, stale: bool = False,
             limit: int | None = None) -> list[Item]:
        """Every key under ``prefix`` (all pages; at most ``limit`` items if given).
        Pages after the first are separate reads."""
        items: list[Item] = []
        start_after = None
        while True:
            page = self.list_page(prefix, start_after=start_after, stale=stale,
                                  limit=min(1000, limit - len(items)) if limit else None)
            items.extend(page.items)
            if not page.more or not page.next_start_after or \
                    (limit is not None and len(items) >= limit):
                return items
            start_after = page.next_start_after

    def txn(self, txn: dict[str, Any] | None = None, *, compare: list | None = None,
            success: list | None = None, failure: list | None = None,
            stale: bool = False) -> TxnResult:
        """A transaction: the ``POST /txn`` body as a dict, or its three lists."""
        body = dict(txn) if txn is not None else {
            "compare": compare or [], "success": success or [], "failure": failure or []}
        return self._run(txn_request(body, stale=stale))

    def status(self, endpoint: str | None = None) -> Status:
        """``GET /health`` of one endpoint (the first one by default), without retries."""
        url = endpoint or self.endpoints.urls[0]
        return self._run(health_request(), url=url)

    def statuses(self) -> list[Status | Exception]:
        """The status of every endpoint, or the error it gave."""
        out: list[Status | Exception] = []
        for url in self.endpoints.urls:
            try:
                out.append(self.status(url))
            except Exception as e:  # noqa: BLE001 - reported per endpoint
                out.append(e)
        return out

    def watch(self, key: str, *, prefix: bool = False, prev: bool = False,
              start_revision: int | None = None, stale: bool = False,
              read_timeout: float = WATCH_READ_TIMEOUT) -> Watch:
        """Iterate over the changes of ``key`` (or of every key under it with
        ``prefix=True``) from ``start_revision`` (default: from now). Reconnects by
        itself; raises ``Compacted`` if the position left the node's history."""
        cursor = WatchCursor(key, prefix=prefix, prev=prev, start_revision=start_revision,
                             stale=stale)
        return Watch(self, cursor, read_timeout)


class Watch:
    """An iterator of ``Event``; ``revision`` is the last revision fully seen (events or
    progress bookmarks). ``close()`` (or leaving a ``with`` block) ends it."""

    def __init__(self, client: Client, cursor: WatchCursor, read_timeout: float) -> None:
        self._client = client
        self.cursor = cursor
        self._read_timeout = read_timeout
        self._iter = self._events()

    @property
    def revision(self) -> int | None:
        return self.cursor.revision

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return next(self._iter)

    def close(self) -> None:
        self._iter.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _events(self) -> Iterator[Event]:
        client = self._client
        steps = watch_steps(self.cursor, client.endpoints, client.policy, client.timeout)
        conn: http.client.HTTPConnection | None = None
        resp: http.client.HTTPResponse | None = None
        reply: Any = None
        try:
            while True:
                action = steps.send(reply)
                reply = None
                if isinstance(action, Open):
                    if conn is not None:
                        conn.close()
                        conn = resp = None
                    try:
                        conn = _connect(action.url, action.timeout)
                        resp = _send(conn, action)
                        if resp.status == 200:
                            conn.sock.settimeout(self._read_timeout)
                            reply = Response(200, _headers(resp))
                        else:
                            reply = Response(resp.status, _headers(resp), resp.read())
                    except (ConnectFailed, NoAnswer) as e:
                        reply = e
                    except (OSError, http.client.HTTPException) as e:
                        reply = NoAnswer(repr(e))
                elif isinstance(action, Read):
                    try:
                        reply = resp.read1(65536) if resp is not None else b""
                    except (OSError, http.client.HTTPException, ValueError) as e:
                        reply = NoAnswer(repr(e))
                elif isinstance(action, Emit):
                    for event in action.events:
                        yield event
                elif isinstance(action, Sleep):
                    client._sleep(action.seconds)
        finally:
            steps.close()
            if conn is not None:
                conn.close()


