"""``GET /watch/{key}``: a watch as Server-Sent Events.

``SseStream`` is the service's ``WatchSink`` for one response and the response's push
producer: when Twisted's send buffer fills, the transport pauses it and ``events`` answers
False, so the service queues (up to its watcher buffer) instead of this process buffering
without bound; when the buffer drains, ``resumeProducing`` asks the service to go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from zope.interface import implementer

from leifdb.errors import LimitExceeded
from leifdb.http.errors import ApiError, json_body
from leifdb.http.failures import RETRY_AFTER_SECONDS, read_failure
from leifdb.http.params import (
    Query,
    check_text,
    parse_bool,
    parse_consistency,
    parse_revision,
    single_header,
)
from leifdb.http.routing import Routes, accepts, api
from leifdb.kv.commands import Event
from leifdb.service.api import CONSISTENCY_LINEARIZABLE, WatchHandle

__all__ = [
    "SseStream", "WatchRoutes", "format_event", "format_events", "format_final", "format_progress",
]

RETRY_MILLISECONDS = 1000
_FINAL_ERRORS = {
    "compacted": "the watch's position left the history the node keeps; read again and "
                 "watch from the revision of that read",
    "overflow": "the watcher fell too far behind (its buffer on the node is full); read "
                "again and watch from the revision of that read",
    "shutdown": "the node is shutting down; reconnect, to another node if need be, with "
                "Last-Event-ID",
}


def format_events(events: list[Event], prev: bool) -> bytes:
    """The changes of one revision as SSE messages. Only the last carries ``id:``, so a
    client whose connection drops inside a revision resumes (``Last-Event-ID``) at that
    revision again rather than after it: a partial revision is repeated, never lost.

    Every watcher of a busy key gets the same bytes, so the last result is reused when the
    service hands the same list to the next watcher (it does when all of a revision's
    changes match)."""
    cached = _last_formatted[prev]
    if cached is not None and cached[0] is events:
        return cached[1]
    last = len(events) - 1
    data = b"".join(format_event(event, prev, with_id=n == last) for n, event in enumerate(events))
    _last_formatted[prev] = (events, data)
    return data


_last_formatted: dict[bool, tuple[list[Event], bytes] | None] = {False: None, True: None}


def format_event(event: Event, prev: bool, *, with_id: bool = True) -> bytes:
    """One change as an SSE message (with ``id:`` = its revision unless told not to)."""
    data: dict[str, Any] = {
        "type": event.type,
        "key": event.key,
        "value": event.value,
        "revision": event.revision,
    }
    if prev:
        data["prev_value"] = event.prev_value
        data["prev_revision"] = event.prev_revision
    if not with_id:
        return b"data: %s\n\n" % json_body(data)
    return b"id: %d\ndata: %s\n\n" % (event.revision, json_body(data))


def format_progress(revision: int) -> bytes:
    """A bookmark: everything up to ``revision`` has been sent."""
    return b"id: %d\nevent: progress\ndata: %s\n\n" % (revision, json_body({"revision": revision}))


def format_final(reason: str, compact_revision: int | None) -> bytes:
    """The last message of a stream the server ends."""
    data: dict[str, Any] = {
        "reason": reason,
        "error": _FINAL_ERRORS.get(reason, f"the watch ended ({reason})"),
    }
    if compact_revision is not None:
        data["compact_revision"] = compact_revision
    return b"event: %s\ndata: %s\n\n" % (reason.encode("ascii", "replace"), json_body(data))


@implementer(IPushProducer)
class SseStream:
    """One watch's response. Until ``start`` the status is not decided (the service may
    still refuse the watch), so what the service delivers meanwhile (replayed history) is
    kept and sent right after the stream's first line."""

    def __init__(self, request: IRequest, *, prev: bool) -> None:
        self._request = request
        self._prev = prev
        self._early: list[bytes] | None = []
        self._final: bytes | None = None
        self._progress = 0
        self._paused = False
        self._handle: WatchHandle | None = None
        self._over = False
        self.done: Deferred[None] = Deferred()

    # -- WatchSink ------------------------------------------------------------------

    def events(self, events: list[Event]) -> bool:
        """Write one revision's changes in one write; False while the transport is
        paused (these are sent all the same: the service holds what comes next)."""
        if self._over or self._final is not None:
            return False
        self._write(format_events(events, self._prev))
        return not self._paused

    def progress(self, revision: int) -> None:
        if self._over or self._final is not None:
            return
        self._progress = max(self._progress, revision)
        self._write(format_progress(revision))

    def closed(self, reason: str, compact_revision: int | None = None) -> None:
        """The service ended the watch: send why (nothing for ``cancelled``), then end."""
        if self._over or self._final is not None:
            return
        self._final = b"" if reason == "cancelled" else format_final(reason, compact_revision)
        if self._early is None:
            self._write(self._final)
            self._end()

    # -- the response ----------------------------------------------------------------

    def start(self, handle: WatchHandle, revision: int) -> None:
        """The service accepted the watch (current revision ``revision``): answer 200,
        send the retry hint, the replayed history, a progress bookmark, then live changes."""
        self._handle = handle
        request = self._request
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.registerProducer(self, True)
        request.notifyFinish().addErrback(self._client_gone)
        early, self._early = self._early or [], None
        if self._final is None and self._progress < revision:
            self._progress = revision
            early.append(format_progress(revision))
        self._write(b"retry: %d\n\n" % RETRY_MILLISECONDS + b"".join(early) + (self._final or b""))
        if self._final is not None:
            self._end()

    def stop(self) -> None:
        """End the stream from this side (a HEAD request gets the headers only)."""
        self._cancel()
        self._end()

    def _write(self, data: bytes) -> None:
        if self._early is not None:
            self._early.append(data)
        elif data and not self._over:
            self._request.write(data)

    def _end(self) -> None:
        if self._over:
            return
        self._over = True
        self._request.unregisterProducer()
        self._request.finish()
        self._fire_done()

    def _client_gone(self, failure: Failure) -> None:
        self._over = True
        self._cancel()
        if getattr(self._request, "producer", None) is self:
            # Else twisted.web logs "Producer was not unregistered" for every dropped watch.
            # The channel is gone already (Request.connectionLost), so only forget it here.
            self._request.producer = None
        self._fire_done()

    def _cancel(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.cancel()

    def _fire_done(self) -> None:
        if not self.done.called:
            self.done.callback(None)

    # -- IPushProducer ---------------------------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if self._handle is not None and not self._over:
            self._handle.resume()

    def stopProducing(self) -> None:
        """The connection is going away: stop the watch now. The handler ends when the
        request learns of it (``_client_gone``), not before: Klein would finish it."""
        self._over = True
        self._cancel()


@dataclass(frozen=True, slots=True)
class _WatchParams:
    prefix: bool
    start_revision: int | None
    prev: bool
    consistency: str


def _parse_watch(request: IRequest, query: Query, key: str, max_key_bytes: int
                 ) -> _WatchParams:
    prefix = bool(parse_bool(query, "prefix"))
    if not key and not prefix:
        raise ApiError(400, "the key must not be empty (use prefix=true to watch every key)")
    check_text(key, "prefix" if prefix else "key", max_key_bytes)
    start_revision = parse_revision(query.single("start_revision"), "start_revision")
    last_event = parse_revision(single_header(request, b"last-event-id"), "Last-Event-ID", 0)
    if last_event is not None:
        start_revision = last_event + 1
    return _WatchParams(prefix, start_revision, bool(parse_bool(query, "prev")),
                        parse_consistency(query))


class WatchRoutes(Routes):
    """``GET /watch/{key}``."""

    @api.route("/watch/<key:key>", methods=["GET"], merge_slashes=False)
    @accepts("prefix", "start_revision", "prev", "consistency")
    async def watch(self, request: IRequest, key: str) -> None:
        """Stream the changes of a key, or of every key under a prefix, as Server-Sent
        Events.

        ---
        get:
          tags: [watch]
          summary: Watch a key or a prefix (Server-Sent Events)
          description: >-
            The stream starts with `retry: 1000`, then the history from `start_revision`
            (or from the `Last-Event-ID` header + 1, which wins), then an
            `event: progress` with the current revision, then each change as it is
            applied: `id: <revision>` and `data: {"type": "put"|"delete", "key",
            "value", "revision"}` (plus `prev_value`, `prev_revision` with `prev=true`);
            all changes of one transaction come together. Progress events repeat every
            few seconds. The server ends a stream with `event: compacted`, `overflow` or
            `shutdown` and a JSON `data` saying why. Errors before the stream starts are
            JSON. Swagger UI cannot show a stream that never ends: use `curl -N`.
          operationId: watch
          produces: [text/event-stream, application/json]
          parameters:
            - in: query
              name: prefix
              type: boolean
              description: >-
                Watch every key starting with `key` (default false). The key may be empty
                only with `prefix=true`: `/watch/?prefix=true` watches everything.
            - in: query
              name: start_revision
              type: integer
              format: int64
              minimum: 1
              description: Replay the changes from this revision on before live ones.
            - in: query
              name: prev
              type: boolean
              description: Include each key's previous value and revision (default false).
            - Consistency
            - in: header
              name: Last-Event-ID
              type: integer
              format: int64
              minimum: 0
              description: Resume after this revision (what EventSource sends on reconnect).
          responses:
            200:
              description: >-
                The event stream (`text/event-stream`): `id:`, `event:` and `data:` lines
                as described above; it has no JSON schema.
            307: ReadRedirect
            400: BadRequest
            410: Gone
            413: TooLarge
            500: InternalError
            503: WatchUnavailable
        """
        params = _parse_watch(request, self._query(request), key,
                              self.limits.service.max_key_bytes)
        if params.consistency == CONSISTENCY_LINEARIZABLE:
            # The watch starts no earlier than a linearizable read made now would see.
            await self._read(request, self.service.barrier, CONSISTENCY_LINEARIZABLE)
        stream = SseStream(request, prev=params.prev)
        handle = self._start_watch(request, stream, key, params)
        self._stamp(request)
        stream.start(handle, self.service.revision)
        if request.method == b"HEAD":
            stream.stop()
        await stream.done

    def _start_watch(
        self, request: IRequest, stream: SseStream, key: str, params: _WatchParams
    ) -> WatchHandle:
        try:
            return self.service.watch(
                stream, key, prefix=params.prefix, start_revision=params.start_revision
            )
        except LimitExceeded as e:
            raise ApiError(
                503,
                f"this node serves too many watches right now ({e}); retry, or watch "
                "through another node",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
        except Exception as e:  # Compacted (410) and the read refusals
            answer = read_failure(request, e)
            if answer is None:
                raise
            raise answer from None
