"""One Raft connection: the Hello handshake and the checks every later frame must pass.

Each node sends only on connections it opened (one per peer) and receives on connections
peers opened to it, so a pair of nodes shares two connections, one per direction. The first
frame either side sends is a ``Hello`` naming itself, the node it expects, the cluster and
the incarnation of its data directory; a connection whose first frame is not a valid Hello
from a known peer to this node, or that later sends garbage, an oversized frame, or a frame
with another ``src`` or ``dst``, is closed with one warning. A Hello the owner does not
``admit`` (a peer known with another incarnation) is closed too, and the owner logs that
itself. Decoded frames go to the ``ConnectionOwner``.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from leifdb.transport.framing import FramedProtocol
from leifdb.wire import DecodeError, Frame, Hello, decode_frame


class ConnectionOwner(Protocol):
    """What a ``PeerProtocol`` needs from the transport that owns it."""

    node_id: str
    cluster_id: str
    clock: IReactorTime
    hello_timeout: float

    def is_peer(self, node_id: str) -> bool: ...

    def hello_frame(self, peer: str) -> bytes: ...

    def admit(self, conn: PeerProtocol, peer: str, hello: Hello) -> str | None:
        """Why a Hello that passed every other check is refused, or None to accept it.
        The owner logs a refusal (the connection closes without a warning of its own)."""

    def connection_opened(self, conn: PeerProtocol) -> None:
        """Any connection, before its handshake (so ``stop`` can close it)."""

    def peer_identified(self, conn: PeerProtocol) -> None:
        """The connection's Hello passed; ``conn.peer_id`` is set."""

    def frame_received(self, conn: PeerProtocol, frame: Frame) -> None:
        """A valid Raft message from ``conn.peer_id`` to this node."""

    def connection_closed(self, conn: PeerProtocol, reason: Failure) -> None: ...


class PeerProtocol(FramedProtocol):
    """``dialed`` is the peer this node connected to, or None for an accepted connection."""

    def __init__(
        self, owner: ConnectionOwner, dialed: str | None, *, max_frame_bytes: int,
        max_queued_bytes: int,
    ) -> None:
        super().__init__(max_frame_bytes, max_queued_bytes)
        self.owner = owner
        self.dialed = dialed
        self.peer_id: str | None = None  # set once the peer's Hello passed
        self.peer_label = dialed or "unidentified peer"
        self._hello_timer: IDelayedCall | None = None

    @property
    def outbound(self) -> bool:
        return self.dialed is not None

    def connection_made(self) -> None:
        super().connection_made()
        if self.dialed is not None:
            self.send_frame(self.owner.hello_frame(self.dialed))
        self.owner.connection_opened(self)
        if self.dialed is None and not self.closing:
            self._hello_timer = self.owner.clock.callLater(
                self.owner.hello_timeout, self.reject, "no Hello in time")

    def frame_received(self, data: bytes) -> None:
        try:
            frame = decode_frame(data)
        except DecodeError as e:
            self.reject(f"undecodable frame: {e}")
            return
        if self.peer_id is None:
            self.hello_received(frame)
        elif isinstance(frame.body, Hello):
            self.reject("a second Hello")
        elif frame.src != self.peer_id:
            self.reject(f"a frame from {frame.src!r} on a connection from {self.peer_id!r}")
        elif frame.dst != self.owner.node_id:
            self.reject(f"a frame for {frame.dst!r}, not this node")
        else:
            self.owner.frame_received(self, frame)

    def hello_received(self, frame: Frame) -> None:
        owner = self.owner
        if not isinstance(frame.body, Hello):
            self.reject("first frame is not a Hello")
        elif frame.body.cluster_id != owner.cluster_id:
            self.reject(f"cluster {frame.body.cluster_id!r}, not {owner.cluster_id!r}")
        elif frame.dst != owner.node_id:
            self.reject(f"Hello for {frame.dst!r}, not this node ({owner.node_id!r})")
        elif not owner.is_peer(frame.src):
            self.reject(f"Hello from {frame.src!r}, which is not a peer")
        elif self.dialed is not None and frame.src != self.dialed:
            self.reject(f"Hello from {frame.src!r} on the connection to {self.dialed!r}")
        elif (refused := owner.admit(self, frame.src, frame.body)) is not None:
            self.reject(refused, quiet=True)
        else:
            self._cancel_hello_timer()
            self.peer_id = self.peer_label = frame.src
            owner.peer_identified(self)

    def connection_lost(self, reason: Failure) -> None:
        super().connection_lost(reason)
        self._cancel_hello_timer()
        self.owner.connection_closed(self, reason)

    def _cancel_hello_timer(self) -> None:
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        self._hello_timer = None
