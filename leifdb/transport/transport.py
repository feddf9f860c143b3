"""Twisted TCP between Raft nodes: the node hands messages to ``send`` and gets them back
from ``on_message`` on the other side. See the package docstring for the contract."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from leifdb.raft.messages import Message
from leifdb.transport.connector import Reconnector
from leifdb.transport.correlation import PendingRequests, ReplyStamps
from leifdb.transport.peer import PeerProtocol
from leifdb.wire import (
    REQUEST_OF_REPLY,
    REQUEST_TYPES,
    EncodeError,
    Frame,
    Hello,
    encode_hello,
    encode_message,
)

log = Logger()

DEFAULT_MAX_FRAME_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024
#: At most one log line per peer per this many seconds about refused incarnations: a wiped
#: peer redials every few seconds, and one line a minute is enough to tell the operator.
PIN_LOG_INTERVAL = 60.0

EndpointFactory = Callable[[str, int], IStreamClientEndpoint]
#: ``on_round_trip(peer, request type name, seconds)``: a reply answered a request.
RoundTripObserver = Callable[[str, str, float], None]


class IncarnationPins(Protocol):
    """Which incarnation of each peer this node accepts (``leifdb.storage.identity``'s
    ``PeerPins``): the first one seen is pinned, durably."""

    def check(self, peer_id: str, incarnation: str) -> bool:
        """True if ``incarnation`` is the pinned one (pinning it on first sight)."""
        ...

    def clear(self, peer_id: str) -> None: ...


def incarnation_refused(peer: str) -> str:
    """Why a Hello from ``peer`` with an unpinned incarnation is refused."""
    return (f"member {peer} is known with another data directory: it was wiped or "
            "replaced; remove and re-add it")


@dataclass
class TransportStats:
    """Counters since start, for metrics and tests."""

    frames_sent: int = 0
    frames_received: int = 0
    dropped_not_connected: int = 0  # no connection to msg.dst right now
    dropped_queue_full: int = 0  # the peer reads too slowly
    dropped_invalid: int = 0  # unencodable, too large, wrong src or unknown dst
    connections_rejected: int = 0  # closed for garbage, size, unknown peer, ...
    incarnations_refused: int = 0  # Hellos from a peer known with another data directory
    request_timeouts: int = 0


class RaftTransport:
    """Carries Raft messages between this node and its peers over TCP.

    ``peers`` maps node id to ``(host, port)`` of its Raft listener (an entry for this node
    itself is ignored). Received messages go to ``on_message(msg, sender_http_address)``;
    ``on_peer_unreachable(peer)`` is called when a request to ``peer`` got no reply within
    ``request_timeout`` seconds, or when the connection to it was lost, so the core can
    resend promptly. Both callbacks run in the reactor thread; exceptions they raise are
    logged and swallowed.

    ``incarnation`` (this node's data directory, sent in every Hello) and ``pins``: with
    ``pins``, an accepted connection whose Hello carries another incarnation than the one
    pinned for its sender is closed (logged at most once a minute per peer), so a peer that
    lost its data and came back under its old id is never heard, its votes never counted,
    until it is removed and re-added (which clears its pin: ``pins.clear``). A Hello
    without incarnation (a node older than incarnations) is accepted and pins nothing.

    ``on_round_trip(peer, kind, seconds)``, if given, is told the time from sending each
    request (``AppendEntries``, ``RequestVote``...) to the reply that answered it.
    """

    def __init__(
        self,
        reactor,
        *,
        node_id: str,
        http_address: str,
        peers: Mapping[str, tuple[str, int]],
        on_message: Callable[[Message, str], None] | None = None,
        on_peer_unreachable: Callable[[str], None] | None = None,
        listen_port: int | None = None,
        listen_interface: str = "",
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        request_timeout: float = 5.0,
        cluster_id: str = "leifdb",
        reconnect_initial_delay: float = 0.05,
        reconnect_max_delay: float = 5.0,
        close_timeout: float = 1.0,
        rng: random.Random | None = None,
        endpoint_factory: EndpointFactory | None = None,
        incarnation: str = "",
        pins: IncarnationPins | None = None,
        on_round_trip: RoundTripObserver | None = None,
    ) -> None:
        if not node_id or not cluster_id:
            raise ValueError("node_id and cluster_id must be non-empty")
        self.reactor = self.clock = reactor
        self.node_id = node_id
        self.http_address = http_address
        self.cluster_id = cluster_id
        self.incarnation = incarnation
        self.pins = pins
        self.hello_timeout = request_timeout
        self.stats = TransportStats()
        self._on_message = on_message or _drop
        self._on_unreachable = on_peer_unreachable
        self._on_round_trip = on_round_trip
        self._listen_at = (listen_port, listen_interface)
        self._max_frame = max_frame_bytes
        self._max_queued = max_queued_bytes
        self._backoff = (reconnect_initial_delay, reconnect_max_delay)
        self._close_timeout = close_timeout
        self._rng = rng or random.Random()
        self._endpoint_factory = endpoint_factory or self._tcp_endpoint
        self._request_ids = itertools.count(1)
        self._stamps = ReplyStamps()
        self._pending = PendingRequests(reactor, request_timeout, self._request_timed_out)
        self._peers: dict[str, tuple[str, int]] = {}
        self._dialers: dict[str, Reconnector] = {}
        self._dialed_by: dict[PeerProtocol, Reconnector] = {}
        self._outbound: dict[str, PeerProtocol] = {}  # where ``send`` writes, per peer
        self._inbound: dict[str, PeerProtocol] = {}  # identified accepted connections
        self._connections: set[PeerProtocol] = set()  # every open connection
        self._ports: list[IListeningPort] = []
        self._refusals_logged: dict[str, float] = {}  # peer -> when last logged
        self._running = False
        self._stopped = False
        self.update_peers(peers)

    # --- public interface ---------------------------------------------------------------

    def listen(self, port: int, interface: str = "") -> IListeningPort:
        """Accept peers' connections on ``port`` (0: any free port, see ``getHost()``), and
        start dialing the peers (``start``)."""
        if self._stopped:
            raise RuntimeError("a stopped RaftTransport cannot listen again")
        listening = self.reactor.listenTCP(port, _InboundFactory(self), interface=interface)
        self._ports.append(listening)
        self.start()
        return listening

    def attach(
        self,
        on_message: Callable[[Message, str], None],
        on_peer_unreachable: Callable[[str], None],
    ) -> None:
        """``leifdb.ports.Transport``: deliver to these callbacks from now on, listen on
        the ``listen_port`` given at construction (if any) and dial the peers."""
        self._on_message = on_message
        self._on_unreachable = on_peer_unreachable
        port, interface = self._listen_at
        if port is not None:
            self.listen(port, interface)
        else:
            self.start()

    def start(self) -> None:
        """Open (and keep reopening) one outbound connection per peer. Idempotent."""
        if self._stopped:
            raise RuntimeError("a stopped RaftTransport cannot start again")
        self._running = True
        for dialer in self._dialers.values():
            dialer.start()

    def send(self, msg: Message) -> None:
        """Fire and forget ``msg`` to ``msg.dst``. Never raises and never waits for a reply.

        Dropped (Raft resends) when there is no connection to the peer, when its send queue
        is full, or, with an error logged, when the message cannot be encoded, its frame
        exceeds ``max_frame_bytes``, its ``src`` is not this node or its ``dst`` no peer."""
        try:
            self._send(msg)
        except Exception:
            self.stats.dropped_invalid += 1
            log.failure("dropped a message that could not be sent: {msg!r:.200}", msg=msg)

    def stop(self) -> defer.Deferred[None]:
        """Stop listening and dialing and close every connection; queued frames get
        ``close_timeout`` seconds to flush, then connections are aborted. The Deferred fires
        when everything is closed."""
        self._running = False
        self._stopped = True
        self._pending.clear()
        for dialer in self._dialers.values():
            dialer.stop()
        waits = [defer.maybeDeferred(port.stopListening) for port in self._ports]
        self._ports = []
        conns = list(self._connections)
        for conn in conns:
            waits.append(conn.when_closed())
            conn.close()
        abort = self.clock.callLater(self._close_timeout, _abort_all, conns)
        done = defer.DeferredList(waits, consumeErrors=True)

        def finished(_: object) -> None:
            if abort.active():
                abort.cancel()

        return done.addCallback(finished)

    def update_peers(self, peers: Mapping[str, tuple[str, int]]) -> None:
        """Change the set of peers (membership change): new peers are dialed, removed ones
        disconnected and forgotten, peers with a new address redialed there."""
        new = {pid: (host, int(port)) for pid, (host, port) in peers.items()
               if pid != self.node_id}
        for pid, address in list(self._peers.items()):
            if new.get(pid) != address:
                self._forget_peer(pid, keep_inbound=pid in new)
        added = [pid for pid in new if pid not in self._dialers]
        self._peers = new
        for pid in added:
            self._dialers[pid] = self._make_dialer(pid)
            if self._running:
                self._dialers[pid].start()

    def connected_peers(self) -> frozenset[str]:
        """Peers this node can send to right now."""
        return frozenset(self._outbound)

    def unanswered(self, peer: str) -> int:
        """Requests sent to ``peer`` that no reply has answered yet (and not timed out)."""
        return self._pending.count(peer)

    # --- ConnectionOwner (called by PeerProtocol) ---------------------------------------

    def is_peer(self, node_id: str) -> bool:
        return node_id in self._peers

    def hello_frame(self, peer: str) -> bytes:
        return encode_hello(self.node_id, peer, self.http_address, self.cluster_id,
                            self.incarnation)

    def admit(self, conn: PeerProtocol, peer: str, hello: Hello) -> str | None:
        if self.pins is None or not hello.incarnation:
            return None
        try:
            if self.pins.check(peer, hello.incarnation):
                return None
            reason = incarnation_refused(peer)
        except Exception as e:  # the pin could not be made durable: do not trust the peer
            reason = f"cannot record the incarnation of {peer}: {e}"
        self.stats.incarnations_refused += 1
        now = self.clock.seconds()
        last = self._refusals_logged.get(peer)
        if last is None or now - last >= PIN_LOG_INTERVAL:
            self._refusals_logged[peer] = now
            log.warn("refusing Raft connection from {peer} ({address}): {reason}",
                     peer=peer, address=conn.address, reason=reason)
        return reason

    def connection_opened(self, conn: PeerProtocol) -> None:
        if self._stopped:
            conn.close(abort=True)
            return
        self._connections.add(conn)
        if conn.dialed is not None:
            self._outbound[conn.dialed] = conn

    def peer_identified(self, conn: PeerProtocol) -> None:
        peer = conn.peer_id
        if conn.outbound or peer is None:
            return
        older = self._inbound.get(peer)
        if older is not None and older is not conn:
            older.close(abort=True)
        self._inbound[peer] = conn
        dialer = self._dialers.get(peer)
        if dialer is not None:
            dialer.retry_now()  # it is back: do not wait out our backoff

    def frame_received(self, conn: PeerProtocol, frame: Frame) -> None:
        if self._stopped:
            return
        self.stats.frames_received += 1
        msg = frame.body
        if frame.request_id:
            self._stamps.request_received(frame.src, type(msg), frame.request_id)
        elif frame.in_reply_to:
            request = REQUEST_OF_REPLY[type(msg)]
            round_trip = self._pending.answered(frame.src, request, frame.in_reply_to)
            if round_trip is not None and self._on_round_trip is not None:
                self._on_round_trip(frame.src, request.__name__, round_trip)
        try:
            self._on_message(msg, frame.src_http_address)
        except Exception:
            log.failure("on_message raised for {kind} from {peer}",
                        kind=type(msg).__name__, peer=frame.src)

    def connection_closed(self, conn: PeerProtocol, reason: Failure) -> None:
        self._connections.discard(conn)
        if conn.rejected_for is not None:
            self.stats.connections_rejected += 1
        if conn.peer_id is not None and self._inbound.get(conn.peer_id) is conn:
            del self._inbound[conn.peer_id]
        dialer = self._dialed_by.pop(conn, None)
        if conn.dialed is not None and self._outbound.get(conn.dialed) is conn:
            del self._outbound[conn.dialed]
            self._pending.forget(conn.dialed)
            self._report_unreachable(conn.dialed)
        if dialer is not None:
            dialer.connection_lost(reason)

    # --- internals ----------------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        peer = msg.dst
        if msg.src != self.node_id or peer not in self._peers:
            self.stats.dropped_invalid += 1
            log.error("dropped a {kind} from {src!r} to {dst!r}: not from this node to a peer",
                      kind=type(msg).__name__, src=msg.src, dst=peer)
            return
        conn = self._outbound.get(peer)
        if conn is None or self._stopped:
            self.stats.dropped_not_connected += 1
            return
        kind = type(msg)
        request_id = in_reply_to = 0
        if isinstance(msg, REQUEST_TYPES):
            request_id = next(self._request_ids)
        elif kind in REQUEST_OF_REPLY:
            in_reply_to = self._stamps.take(peer, REQUEST_OF_REPLY[kind])
        try:
            data = encode_message(msg, src_http_address=self.http_address,
                                  request_id=request_id, in_reply_to=in_reply_to)
        except EncodeError as e:
            self.stats.dropped_invalid += 1
            log.error("dropped a {kind} to {peer}: {error}", kind=kind.__name__, peer=peer,
                      error=str(e))
            return
        if len(data) > self._max_frame:
            self.stats.dropped_invalid += 1
            log.error("dropped a {kind} to {peer}: {size} bytes exceed max_frame_bytes {limit}",
                      kind=kind.__name__, peer=peer, size=len(data), limit=self._max_frame)
            return
        if not conn.send_frame(data):
            self.stats.dropped_queue_full += 1
            return
        self.stats.frames_sent += 1
        if request_id:
            self._pending.sent(peer, kind, request_id)

    def _make_dialer(self, peer: str) -> Reconnector:
        host, port = self._peers[peer]
        factory = _OutboundFactory(self, peer)
        dialer = Reconnector(
            self.clock, peer, self._endpoint_factory(host, port), factory,
            initial_delay=self._backoff[0], max_delay=self._backoff[1], rng=self._rng,
            describe=lambda: f"at {host}:{port}",
        )
        factory.dialer = dialer
        return dialer

    def _build_protocol(self, dialed: str | None, dialer: Reconnector | None) -> PeerProtocol:
        conn = PeerProtocol(self, dialed, max_frame_bytes=self._max_frame,
                            max_queued_bytes=self._max_queued)
        if dialer is not None:
            self._dialed_by[conn] = dialer
        return conn

    def _forget_peer(self, peer: str, *, keep_inbound: bool) -> None:
        dialer = self._dialers.pop(peer, None)
        if dialer is not None:
            dialer.stop()
        conn = self._outbound.pop(peer, None)
        if conn is not None:
            conn.close()
        if not keep_inbound:
            inbound = self._inbound.pop(peer, None)
            if inbound is not None:
                inbound.close()
            self._stamps.forget(peer)
        self._pending.forget(peer)

    def _tcp_endpoint(self, host: str, port: int) -> IStreamClientEndpoint:
        host = host.strip("[]")
        timeout = max(1, int(self.hello_timeout))
        if isIPAddress(host):
            return TCP4ClientEndpoint(self.reactor, host, port, timeout=timeout)
        if isIPv6Address(host):
            return TCP6ClientEndpoint(self.reactor, host, port, timeout=timeout)
        return HostnameEndpoint(self.reactor, host, port, timeout=timeout)

    def _request_timed_out(self, peer: str) -> None:
        self.stats.request_timeouts += 1
        self._report_unreachable(peer)

    def _report_unreachable(self, peer: str) -> None:
        if self._on_unreachable is None or self._stopped:
            return
        try:
            self._on_unreachable(peer)
        except Exception:
            log.failure("on_peer_unreachable raised for {peer}", peer=peer)


class _InboundFactory(Factory):
    noisy = False

    def __init__(self, transport: RaftTransport) -> None:
        self._transport = transport

    def buildProtocol(self, addr) -> PeerProtocol:
        return self._transport._build_protocol(None, None)


class _OutboundFactory(Factory):
    noisy = False

    def __init__(self, transport: RaftTransport, peer: str) -> None:
        self._transport = transport
        self._peer = peer
        self.dialer: Reconnector | None = None

    def buildProtocol(self, addr) -> PeerProtocol:
        return self._transport._build_protocol(self._peer, self.dialer)


def _drop(msg: Message, sender_http: str) -> None:
    """Messages that arrive before ``attach``: Raft resends them."""


def _abort_all(conns: list[PeerProtocol]) -> None:
    for conn in conns:
        if not conn.lost:
            conn.close(abort=True)
