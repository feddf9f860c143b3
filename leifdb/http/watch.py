"""``GET /watch/{key}``: a watch as Server-Sent Events.

``SseStream`` is the service's ``WatchSink`` for one response (``leifdb.http.sse`` holds
the response's life). It is the response's push producer: when Twisted's send buffer
fills, the transport pauses it and ``events`` answers False, so the service queues (up to
its watcher buffer) instead of this process buffering without bound; when the buffer
drains, ``resumeProducing`` asks the service to go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.web.iweb import IRequest

from leifdb.http.errors import ApiError, json_body
from leifdb.http.params import (
    Query,
    check_text,
    parse_bool,
    parse_consistency,
    parse_revision,
    single_header,
)
from leifdb.http.routing import accepts, api
from leifdb.http.sse import RETRY_MILLISECONDS, EventStream, StreamRoutes, format_final
from leifdb.kv.commands import Event
from leifdb.service.api import CONSISTENCY_LINEARIZABLE

__all__ = [
    "RETRY_MILLISECONDS", "SseStream", "WatchRoutes", "format_event", "format_events",
    "format_final", "format_progress",
]


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


class SseStream(EventStream):
    """One watch's response: changes of a revision in one write, progress bookmarks."""

    def __init__(self, request: IRequest, *, prev: bool) -> None:
        super().__init__(request)
        self._prev = prev
        self._progress = 0

    # -- WatchSink (``closed`` is the base's) ------------------------------------------

    def events(self, events: list[Event]) -> bool:
        """Write one revision's changes in one write; False while the transport is
        paused (these are sent all the same: the service holds what comes next)."""
        if not self._open:
            return False
        self._write(format_events(events, self._prev))
        return not self._paused

    def progress(self, revision: int) -> None:
        if not self._open:
            return
        self._progress = max(self._progress, revision)
        self._write(format_progress(revision))

    def _opening(self, revision: int) -> list[bytes]:
        """A bookmark at the current revision unless the replay reached it already."""
        if self._progress >= revision:
            return []
        self._progress = revision
        return [format_progress(revision)]


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


class WatchRoutes(StreamRoutes):
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
        await self._serve_stream(request, stream, lambda: self.service.watch(
            stream, key, prefix=params.prefix, start_revision=params.start_revision))
