"""TCP proxies between cluster nodes, one per directed link, that the fault test controls.

Each node dials every peer at the address its member list gives, and LeifDB sends only on
connections it opened, so the proxy for ``a -> b`` carries everything ``a`` says to ``b``
(plus ``b``'s handshake reply). Cutting or slowing one proxy therefore cuts or slows one
direction of one pair, which is all a partition or a delay needs, with no root and no
iptables.

All proxies live on one asyncio event loop in a daemon thread; the control methods are
called from any other thread and return once the change is in effect. Ports are bound once
at ``start`` and kept until ``stop``, so a restarted node finds its peers' proxies where
its command line says they are.

A cluster whose membership changes cannot use one address per link, though: the member
list lives in the Raft log and gives every member ONE address that all nodes dial. So each
node also has a front proxy (``front_address(dst)``): it reads the first frame of every
connection (LeifDB's ``Hello``, which names the sender), and from then on treats the
connection as the link ``sender -> dst``. Nodes can be added while the net runs
(``add_node``), with their links and front.

Link states:

* ``up``: bytes are forwarded, after ``delay`` seconds (plus jitter) if one is set.
* ``reset``: open connections are aborted and new ones are accepted and aborted at once,
  like a peer that refuses (the dialer sees the failure immediately).
* ``blackhole``: open connections stop forwarding and silently swallow what they receive;
  new ones are accepted and swallowed too, like a network that loses every packet (the
  dialer only notices through its own timeouts). Healing aborts the swallowed connections,
  since their byte streams lost frames midway.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import struct
from dataclasses import dataclass, field
from typing import Iterable, Literal

from leifdb.wire import DecodeError, decode_frame

__all__ = ["LinkState", "LinkStats", "ProxyNet"]

LinkState = Literal["up", "reset", "blackhole"]
LINK_STATES: tuple[str, ...] = ("up", "reset", "blackhole")

_CHUNK = 65536
_CONTROL_TIMEOUT = 10.0
_FIRST_FRAME_TIMEOUT = 5.0
_FIRST_FRAME_MAX = 1 << 20


@dataclass
class LinkStats:
    """Counters of one link, for reports."""

    accepted: int = 0
    refused: int = 0
    aborted: int = 0
    bytes_forwarded: int = 0
    bytes_dropped: int = 0


@dataclass
class _Link:
    src: str
    dst: str
    target_port: int
    server: asyncio.base_events.Server | None = None
    port: int = 0
    state: str = "up"
    delay: float = 0.0
    jitter: float = 0.0
    conns: set["_Conn"] = field(default_factory=set)
    stats: LinkStats = field(default_factory=LinkStats)


@dataclass
class _Front:
    """The one address every node dials to reach ``dst``."""

    dst: str
    target_port: int
    server: asyncio.base_events.Server | None = None
    port: int = 0
    unknown: int = 0  # connections whose first frame named no known sender


class _Conn:
    """One proxied connection: the dialer's side, the target's side and two pumps.
    ``first``: bytes already read from the dialer (a front's first frame), sent upstream
    before anything else."""

    def __init__(self, link: _Link, client: asyncio.StreamWriter, first: bytes = b"") -> None:
        self.link = link
        self.client = client
        self.first = first
        self.upstream: asyncio.StreamWriter | None = None
        self.swallowing = False
        self.tasks: list[asyncio.Task] = []

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class ProxyNet:
    """A proxy for every ordered pair of ``nodes``; node ``dst``'s real Raft port is given
    with ``set_target`` (or at construction) before anyone dials.

    ``port(src, dst)`` is where ``src`` must be told that ``dst`` lives. Thread-safe.
    """

    def __init__(self, nodes: Iterable[str], targets: dict[str, int], *,
                 seed: int = 0, host: str = "127.0.0.1") -> None:
        self.nodes = list(nodes)
        self.host = host
        self._rng = random.Random(seed)
        self._links: dict[tuple[str, str], _Link] = {
            (a, b): _Link(a, b, targets[b])
            for a, b in itertools.permutations(self.nodes, 2)
        }
        self._fronts: dict[str, _Front] = {name: _Front(name, targets[name]) for name in self.nodes}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread and bind every proxy's port."""
        if self._loop is not None:
            raise RuntimeError("already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="proxynet", daemon=True)
        self._thread.start()
        self._call(self._bind_all())

    def stop(self) -> None:
        """Close every listener and connection and stop the loop thread. Idempotent."""
        loop = self._loop
        if loop is None:
            return
        try:
            if loop.is_running():
                self._call(self._close_all())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=_CONTROL_TIMEOUT)
            if not loop.is_running():
                loop.close()
            self._loop = None

    def __enter__(self) -> "ProxyNet":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------

    def port(self, src: str, dst: str) -> int:
        port = self._links[(src, dst)].port
        if not port:
            raise RuntimeError("proxies are not started")
        return port

    def address(self, src: str, dst: str) -> str:
        return f"{self.host}:{self.port(src, dst)}"

    def front_address(self, dst: str) -> str:
        """Where any node reaches ``dst``: the link is told by the dialer's first frame."""
        port = self._fronts[dst].port
        if not port:
            raise RuntimeError("proxies are not started")
        return f"{self.host}:{port}"

    def add_node(self, name: str, target_port: int) -> None:
        """A node that joins while the net runs: links both ways with every node (up), and
        its front (no per-link listeners: it is reached through its front only)."""
        if name in self.nodes:
            raise ValueError(f"{name} is already a node")
        front = _Front(name, target_port)

        async def add() -> None:
            for other in self.nodes:
                self._links[(name, other)] = _Link(name, other, self._fronts[other].target_port)
                self._links[(other, name)] = _Link(other, name, target_port)
            self.nodes.append(name)
            self._fronts[name] = front
            await self._bind_front(front)

        self._call(add())

    def links(self) -> list[tuple[str, str]]:
        return list(self._links)

    def stats(self) -> dict[tuple[str, str], LinkStats]:
        return {k: LinkStats(**vars(v.stats)) for k, v in self._links.items()}

    def state(self, src: str, dst: str) -> str:
        return self._links[(src, dst)].state

    # -- faults --------------------------------------------------------------------

    def set_links(self, links: Iterable[tuple[str, str]], state: str) -> None:
        """Put the given directed links into ``state`` (``up``, ``reset`` or ``blackhole``)."""
        if state not in LINK_STATES:
            raise ValueError(f"unknown link state {state!r}")
        chosen = [self._links[link] for link in links]
        self._call(self._set_state(chosen, state))

    def cut(self, links: Iterable[tuple[str, str]], mode: str = "reset") -> None:
        self.set_links(links, mode)

    def partition(self, groups: Iterable[Iterable[str]],
                  mode: str = "reset") -> list[tuple[str, str]]:
        """Cut every link between nodes of different groups (both directions); nodes in
        no group are cut from everyone. Returns the links cut."""
        where: dict[str, int] = {}
        for i, group in enumerate(groups):
            for node in group:
                where[node] = i
        for node in self.nodes:
            where.setdefault(node, len(self.nodes) + self.nodes.index(node))
        cut = [(a, b) for a, b in self._links if where[a] != where[b]]
        self.set_links(cut, mode)
        return cut

    def isolate(self, node: str, mode: str = "reset") -> list[tuple[str, str]]:
        """Cut ``node`` from every other node, both directions."""
        cut = [(a, b) for a, b in self._links if node in (a, b)]
        self.set_links(cut, mode)
        return cut

    def set_delay(self, links: Iterable[tuple[str, str]], delay: float,
                  jitter: float = 0.0) -> None:
        """Delay bytes on ``links`` by ``delay`` seconds plus uniform ``[0, jitter)``; the
        byte order on each connection is kept."""
        chosen = [self._links[link] for link in links]

        async def apply() -> None:
            for link in chosen:
                link.delay, link.jitter = delay, jitter

        self._call(apply())

    def heal(self) -> None:
        """Every link up, with no delay."""
        links = list(self._links.values())

        async def apply() -> None:
            for link in links:
                link.delay = link.jitter = 0.0
            await self._set_state(links, "up")

        self._call(apply())

    # -- inside the loop -----------------------------------------------------------

    def _call(self, coro: object) -> object:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout=_CONTROL_TIMEOUT)

    async def _bind_all(self) -> None:
        for link in self._links.values():
            link.server = await asyncio.start_server(
                lambda r, w, link=link: self._accepted(link, r, w), self.host, 0)
            link.port = link.server.sockets[0].getsockname()[1]
        for front in self._fronts.values():
            await self._bind_front(front)

    async def _bind_front(self, front: _Front) -> None:
        front.server = await asyncio.start_server(
            lambda r, w, front=front: self._front_accepted(front, r, w), self.host, 0)
        front.port = front.server.sockets[0].getsockname()[1]

    async def _close_all(self) -> None:
        servers = [link.server for link in self._links.values()]
        servers += [front.server for front in self._fronts.values()]
        for server in servers:
            if server is not None:
                server.close()
        for link in self._links.values():
            for conn in list(link.conns):
                conn.abort()
            link.conns.clear()
        for server in servers:
            if server is not None:
                await server.wait_closed()

    async def _front_accepted(self, front: _Front, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        """Read the dialer's first frame to learn which link this is, then proxy it as
        that link's. A connection that names no known sender is closed."""
        try:
            header = await asyncio.wait_for(reader.readexactly(4), _FIRST_FRAME_TIMEOUT)
            (size,) = struct.unpack(">I", header)
            if size > _FIRST_FRAME_MAX:
                raise ValueError(f"first frame of {size} bytes")
            body = await asyncio.wait_for(reader.readexactly(size), _FIRST_FRAME_TIMEOUT)
            src = decode_frame(body).src
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError,
                DecodeError):
            src = ""
        link = self._links.get((src, front.dst))
        if link is None:
            front.unknown += 1
            writer.transport.abort()
            return
        await self._accepted(link, reader, writer, header + body)

    async def _set_state(self, links: list[_Link], state: str) -> None:
        for link in links:
            old, link.state = link.state, state
            if state == "reset" or (state == "up" and old == "blackhole"):
                for conn in list(link.conns):
                    conn.abort()
                    link.stats.aborted += 1
                link.conns.clear()
            elif state == "blackhole":
                for conn in link.conns:
                    conn.swallowing = True

    async def _accepted(self, link: _Link, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, first: bytes = b"") -> None:
        if link.state == "reset":
            link.stats.refused += 1
            writer.transport.abort()
            return
        conn = _Conn(link, writer, first)
        link.conns.add(conn)
        link.stats.accepted += 1
        try:
            if link.state == "blackhole":
                conn.swallowing = True
                link.stats.bytes_dropped += len(first)
                await self._swallow(conn, reader)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(self.host, link.target_port)
            except OSError:
                link.stats.refused += 1
                writer.transport.abort()
                return
            conn.upstream = up_writer
            if conn not in link.conns:  # cut while dialing
                conn.abort()
                return
            if first:
                up_writer.write(first)
                link.stats.bytes_forwarded += len(first)
            forward = asyncio.ensure_future(self._pump(conn, reader, up_writer))
            backward = asyncio.ensure_future(self._pump(conn, up_reader, writer))
            conn.tasks = [forward, backward]
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
            conn.abort()
        finally:
            link.conns.discard(conn)

    async def _swallow(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                return
            conn.link.stats.bytes_dropped += len(data)

    async def _pump(self, conn: _Conn, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer`` in order, each chunk held back by the link's delay
        at the time it arrived; swallow once the link is blackholed."""
        link = conn.link
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        last_due = 0.0

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if conn.swallowing:
                    link.stats.bytes_dropped += len(data)
                    continue
                writer.write(data)
                link.stats.bytes_forwarded += len(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if conn.swallowing:
                    link.stats.bytes_dropped += len(data)
                    continue
                delay = link.delay + (self._rng.uniform(0, link.jitter) if link.jitter else 0.0)
                last_due = max(last_due, loop.time() + delay)
                queue.put_nowait((last_due, data))
            while not queue.empty() and not sender.done():
                await asyncio.sleep(0.01)
        finally:
            sender.cancel()
