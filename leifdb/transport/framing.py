"""Length-prefixed frames over one TCP connection, with bounded memory both ways.

A frame is a 4-byte big-endian unsigned length followed by that many bytes (Twisted's
``Int32StringReceiver``). Receiving: a length above ``max_frame_bytes`` closes the connection
before any of the frame is buffered, and a large frame arriving in many reads is joined once
(the base class would copy its buffer on every read). Sending: frames go straight to the
socket until Twisted's write buffer is full, then wait in a queue of at most
``max_queued_bytes``; past that they are dropped, because Raft resends and a slow peer must
not grow our memory.
"""

from __future__ import annotations

from collections import deque
from struct import pack, unpack

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer, ITCPTransport
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger()


@implementer(IPushProducer)
class SendQueue:
    """Frames waiting for the socket while Twisted's write buffer is full.

    Registered as the transport's streaming producer: Twisted pauses it when its buffer
    passes its high-water mark and resumes it when the buffer has drained."""

    def __init__(self, protocol: FramedProtocol, max_queued_bytes: int) -> None:
        self._protocol = protocol
        self._max = max_queued_bytes
        self._frames: deque[bytes] = deque()
        self.queued_bytes = 0
        self.paused = False
        self.stopped = False

    def offer(self, frame: bytes) -> bool:
        """Write ``frame`` now, or queue it; False (dropped) if the queue is full. A frame
        is always accepted when the queue is empty, so one maximal frame can always go."""
        if self.stopped:
            return False
        if not self.paused:
            self._protocol.write_frame(frame)
            return True
        if self._frames and self.queued_bytes + len(frame) > self._max:
            return False
        self._frames.append(frame)
        self.queued_bytes += len(frame)
        return True

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.resume()

    def stopProducing(self) -> None:
        self.stop()

    def resume(self) -> None:
        self.paused = False
        while self._frames and not self.paused and not self.stopped:
            frame = self._frames.popleft()
            self.queued_bytes -= len(frame)
            self._protocol.write_frame(frame)

    def stop(self) -> None:
        self.stopped = True
        self._frames.clear()
        self.queued_bytes = 0


class FramedProtocol(Int32StringReceiver):
    """Frames in, frames out. Subclasses implement ``frame_received`` (and may extend
    ``connection_made`` / ``connection_lost``); ``reject`` closes the connection with one
    warning, after which nothing more is read from it."""

    def __init__(self, max_frame_bytes: int, max_queued_bytes: int) -> None:
        self.MAX_LENGTH = max_frame_bytes
        self.send_queue = SendQueue(self, max_queued_bytes)
        self.closing = False
        self.lost = False
        self.rejected_for: str | None = None  # why ``reject`` closed it
        self.closed_here = False  # this side closed it (``close``), not the peer or the network
        self.peer_label = "?"  # who is on the other end, for log lines
        self._close_waiters: list[defer.Deferred[None]] = []
        self._pending_chunks: list[bytes] = []
        self._bytes_missing = 0  # of the frame at the head of the buffer

    # Twisted hooks: forward at once.
    def connectionMade(self) -> None:
        self.connection_made()

    def dataReceived(self, data: bytes) -> None:
        self.data_received(data)

    def stringReceived(self, string: bytes) -> None:
        if not self.closing:
            self.frame_received(string)

    def lengthLimitExceeded(self, length: int) -> None:
        self.reject(f"frame of {length} bytes exceeds the limit of {self.MAX_LENGTH}")

    def connectionLost(self, reason: Failure) -> None:
        self.connection_lost(reason)
        self._notify_closed()

    # Our side.
    def connection_made(self) -> None:
        self.transport.registerProducer(self.send_queue, True)
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)
            self.transport.setTcpKeepAlive(True)

    def connection_lost(self, reason: Failure) -> None:
        self.closing = self.lost = True
        self.send_queue.stop()
        self._pending_chunks = []

    def _notify_closed(self) -> None:
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            d.callback(None)

    def when_closed(self) -> defer.Deferred[None]:
        """Fires once the connection is gone and ``connection_lost`` has run."""
        if self.lost:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._close_waiters.append(d)
        return d

    def frame_received(self, frame: bytes) -> None:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self._bytes_missing > 0:
            self._pending_chunks.append(data)
            self._bytes_missing -= len(data)
            if self._bytes_missing > 0:
                return
            data = b"".join(self._pending_chunks)
            self._pending_chunks = []
        super().dataReceived(data)
        buffered = self._unprocessed
        self._bytes_missing = 0
        if not self.closing and len(buffered) >= self.prefixLength:
            (length,) = unpack(self.structFormat, buffered[: self.prefixLength])
            self._bytes_missing = self.prefixLength + length - len(buffered)

    def send_frame(self, frame: bytes) -> bool:
        """Queue one frame; False if it was dropped (closing, too big or queue full)."""
        if self.closing or len(frame) > self.MAX_LENGTH:
            return False
        return self.send_queue.offer(frame)

    def write_frame(self, frame: bytes) -> None:
        self.transport.writeSequence([pack(self.structFormat, len(frame)), frame])

    def reject(self, reason: str, *, quiet: bool = False) -> None:
        """Close a misbehaving connection: one warning (none if ``quiet``: the caller logs,
        e.g. rate-limited), then nothing more is processed."""
        if self.closing:
            return
        self.rejected_for = reason
        if not quiet:
            log.warn(
                "closing Raft connection with {peer} ({address}): {reason}",
                peer=self.peer_label, address=_address(self.transport), reason=reason,
            )
        self.close(abort=True)

    @property
    def address(self) -> str:
        """``host:port`` of the other end, for log lines ("?" if unknown)."""
        return _address(self.transport)

    def close(self, *, abort: bool = False) -> None:
        """Stop reading and close, flushing queued frames unless ``abort``."""
        if self.closing and not abort:
            return
        if not self.lost:
            self.closed_here = True
        self.closing = True
        self.paused = True  # stops the base class's parsing loop
        if abort:
            self.send_queue.stop()
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()


def _address(transport) -> str:
    try:
        peer = transport.getPeer()
        return f"{peer.host}:{peer.port}"
    except Exception:
        return "?"
