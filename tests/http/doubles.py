"""Test doubles of the objects an SSE response talks to: the service's stream handle and
the Twisted request."""

from __future__ import annotations

from twisted.internet.defer import Deferred


class Handle:
    """A service stream's handle that records what the response asks of it."""

    start_revision = 1

    def __init__(self) -> None:
        self.resumed = 0
        self.cancelled = False

    def resume(self) -> None:
        self.resumed += 1

    def cancel(self) -> None:
        self.cancelled = True


class Request:
    """Records what a stream does to its response (Twisted's ``DummyRequest`` treats every
    producer as a pull producer and would spin on ours)."""

    method = b"GET"

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.headers: dict[bytes, bytes] = {}
        self.code = 0
        self.producer = None
        self.finished = False
        self.finishes: list[Deferred[None]] = []

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def registerProducer(self, producer, streaming: bool) -> None:
        assert streaming and self.producer is None
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def notifyFinish(self) -> Deferred[None]:
        self.finishes.append(Deferred())
        return self.finishes[-1]

    def write(self, data: bytes) -> None:
        assert not self.finished
        self.written.append(data)

    def finish(self) -> None:
        self.finished = True
