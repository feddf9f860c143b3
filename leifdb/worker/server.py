"""The consensus process's end of a worker's RPC socket: ``RpcServer`` calls the real
service for each call a worker sends and answers, one frame per reactor turn, with the
node's applied revision on every frame.

A worker that gives up on a call (its client went away) sends a cancel: the call's
Deferred is cancelled here, which is what frees a long poll or removes a lock waiter's
key. A worker whose connection ends (it crashed) gets the same for its cancellable calls
(``CANCEL_ON_DISCONNECT``); its writes run their course, as they would for a client that
disconnected from a single-process node.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from leifdb.metrics import NodeMetrics
from leifdb.service.api import Service
from leifdb.worker.calls import CALLS, CANCEL_ON_DISCONNECT, Note, Reply, WorkerSettings
from leifdb.worker.codec import FrameDecoder, encode_exception, encode_frame

__all__ = ["REVISION_PUSH_SECONDS", "RpcServer", "RpcServerFactory"]

log = Logger(namespace="leifdb.worker.server")

#: While no reply goes out, a worker still learns the applied revision this often.
REVISION_PUSH_SECONDS = 0.1


class RpcServer(Protocol):
    """Serves one worker. ``settings`` go out in the first frame; ``on_ready`` is called
    when the worker says it serves; HTTP timings it reports go to ``metrics``."""

    def __init__(
        self,
        service: Service,
        *,
        reactor: Any,
        settings: WorkerSettings,
        metrics: NodeMetrics | None = None,
        on_ready: Callable[[], None] | None = None,
        push_interval: float = REVISION_PUSH_SECONDS,
    ) -> None:
        self.service = service
        self.reactor = reactor
        self.settings = settings
        self.metrics = metrics
        self._on_ready = on_ready
        self._decoder = FrameDecoder()
        self._running: dict[int, tuple[str, Deferred]] = {}
        self._replies: list[Reply] = []
        self._flush_call: Any = None
        self._sent_revision = -1
        self._connected = False
        self._push = LoopingCall(self._push_revision)
        self._push.clock = reactor
        self._push_interval = push_interval

    @property
    def running(self) -> int:
        """Calls not answered yet."""
        return len(self._running)

    def connectionMade(self) -> None:
        self._connected = True
        self._write((self.service.revision, [], self.settings))
        self._push.start(self._push_interval, now=False)

    def dataReceived(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except Exception as error:
            log.error("dropping a worker's RPC connection: {error}", error=error)
            self.transport.abortConnection()
            return
        for calls, cancels, note in frames:
            for call_id, name, args, kwargs in calls:
                self._call(call_id, name, args, kwargs)
            for call_id in cancels:
                entry = self._running.get(call_id)
                if entry is not None:
                    entry[1].cancel()
            if note is not None:
                self._note(note)

    def connectionLost(self, reason: Any = None) -> None:
        self._connected = False
        if self._push.running:
            self._push.stop()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        for name, d in list(self._running.values()):
            if name in CANCEL_ON_DISCONNECT:
                d.cancel()

    def _call(self, call_id: int, name: str, args: tuple, kwargs: dict) -> None:
        if name not in CALLS:
            error = RuntimeError(f"{name!r} is not a service call a worker may make")
            self._reply((call_id, False, encode_exception(error)))
            return
        d = maybeDeferred(getattr(self.service, name), *args, **kwargs)
        self._running[call_id] = (name, d)
        d.addBoth(self._done, call_id)

    def _done(self, result: Any, call_id: int) -> None:
        self._running.pop(call_id, None)
        if isinstance(result, Failure):
            error = result.value
            if not _expected(error):
                log.failure("unexpected error in a call from a worker", result)
            self._reply((call_id, False, encode_exception(error)))
        else:
            self._reply((call_id, True, result))

    def _reply(self, reply: Reply) -> None:
        if not self._connected:
            return
        self._replies.append(reply)
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        replies, self._replies = self._replies, []
        if self._connected:
            self._write((self.service.revision, replies, None))

    def _push_revision(self) -> None:
        if self._flush_call is None and self.service.revision != self._sent_revision:
            self._write((self.service.revision, [], None))

    def _write(self, frame: tuple[int, list[Reply], WorkerSettings | None]) -> None:
        try:
            data = encode_frame(frame)
        except Exception:
            revision, replies, settings = frame
            data = encode_frame((revision, [_sendable(reply) for reply in replies], settings))
        self._sent_revision = frame[0]
        self.transport.write(data)

    def _note(self, note: Note) -> None:
        if note.ready and self._on_ready is not None:
            self._on_ready()
        if self.metrics is not None:
            for route, method, status, seconds in note.http:
                self.metrics.http_request(route, method, status, seconds)


class RpcServerFactory(Factory):
    """Hands out one prepared ``RpcServer`` (``adoptStreamConnection`` wants a factory)."""

    def __init__(self, server: RpcServer) -> None:
        self.server = server

    def buildProtocol(self, addr: Any) -> RpcServer:
        return self.server


def _expected(error: BaseException) -> bool:
    """The service's own refusals and cancellations, as opposed to a bug."""
    return isinstance(error, CancelledError) or type(error).__module__.startswith("leifdb.")


def _sendable(reply: Reply) -> Reply:
    """``reply``, or an error saying why it cannot be pickled."""
    try:
        pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        cannot = RuntimeError(f"the node cannot send this call's result: {error}")
        return (reply[0], False, encode_exception(cannot))
    return reply
