"""Server-Sent Events responses: what a watch stream and an election's observe stream share.

``EventStream`` is one streamed response and its push producer: until ``start`` the status
is not decided (the service may still refuse), so what arrives meanwhile is kept and sent
right after the stream's first line; the service's final ``closed`` becomes a last event
and the end of the response; a client that goes away cancels the service's handle.
Subclasses add what they deliver (``SseStream``: changes and bookmarks; ``ObserveStream``:
leaders). ``StreamRoutes._serve_stream`` is the route side: start the service's stream,
map its refusals, answer, wait for the end.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from zope.interface import implementer

from leifdb.errors import LimitExceeded
from leifdb.http.errors import ApiError, json_body
from leifdb.http.failures import RETRY_AFTER_SECONDS, read_failure
from leifdb.http.routing import Routes
from leifdb.service.api import WatchHandle

__all__ = ["EventStream", "RETRY_MILLISECONDS", "StreamRoutes", "format_final"]

RETRY_MILLISECONDS = 1000
_FINAL_ERRORS = {
    "compacted": "the stream's position left the history the node keeps; read again and "
                 "watch from the revision of that read",
    "overflow": "the watcher fell too far behind (its buffer on the node is full); read "
                "again and watch from the revision of that read",
    "shutdown": "the node is shutting down; reconnect, to another node if need be, with "
                "Last-Event-ID",
}


def format_final(reason: str, compact_revision: int | None) -> bytes:
    """The last message of a stream the server ends."""
    data: dict[str, Any] = {
        "reason": reason,
        "error": _FINAL_ERRORS.get(reason, f"the stream ended ({reason})"),
    }
    if compact_revision is not None:
        data["compact_revision"] = compact_revision
    return b"event: %s\ndata: %s\n\n" % (reason.encode("ascii", "replace"), json_body(data))


@implementer(IPushProducer)
class EventStream:
    """One SSE response fed by a service stream (a watch or an observe)."""

    def __init__(self, request: IRequest) -> None:
        self._request = request
        self._early: list[bytes] | None = []
        self._final: bytes | None = None
        self._paused = False
        self._handle: WatchHandle | None = None
        self._over = False
        self.done: Deferred[None] = Deferred()

    @property
    def _open(self) -> bool:
        """Still taking messages: neither ended by the server nor gone."""
        return not self._over and self._final is None

    def closed(self, reason: str, compact_revision: int | None = None) -> None:
        """The service ended the stream: send why (nothing for ``cancelled``), then end."""
        if not self._open:
            return
        self._final = b"" if reason == "cancelled" else format_final(reason, compact_revision)
        if self._early is None:
            self._write(self._final)
            self._end()

    # -- the response ----------------------------------------------------------------

    def start(self, handle: WatchHandle, revision: int) -> None:
        """The service accepted the stream (current revision ``revision``): answer 200,
        send the retry hint, what arrived before, the subclass's opening, then live
        messages."""
        self._handle = handle
        request = self._request
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.registerProducer(self, True)
        request.notifyFinish().addErrback(self._client_gone)
        early, self._early = self._early or [], None
        if self._final is None:
            early.extend(self._opening(revision))
        self._write(b"retry: %d\n\n" % RETRY_MILLISECONDS + b"".join(early) + (self._final or b""))
        if self._final is not None:
            self._end()

    def _opening(self, revision: int) -> list[bytes]:
        """Messages to send once the stream starts, after those that came before."""
        return []

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
            # Else twisted.web logs "Producer was not unregistered" for every dropped stream.
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
        """The connection is going away: stop the stream now. The handler ends when the
        request learns of it (``_client_gone``), not before: Klein would finish it."""
        self._over = True
        self._cancel()


class StreamRoutes(Routes):
    """What the streaming routes share: starting the service's stream and answering."""

    async def _serve_stream(
        self, request: IRequest, stream: EventStream, start: Callable[[], WatchHandle]
    ) -> None:
        """Start the service's stream with ``start`` (its refusals become JSON errors:
        too many watchers is 503, the rest as for reads), answer 200 and stream until
        either side ends it. HEAD gets the headers only."""
        try:
            handle = start()
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
        self._stamp(request)
        stream.start(handle, self.service.revision)
        if request.method == b"HEAD":
            stream.stop()
        await stream.done
