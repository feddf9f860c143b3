"""The client port, bound by the node and served by its workers.

The node binds it (so a port in use is the node's start failure, reported as today) and
never accepts on it. Each worker gets a listening socket of its own on that port
(``SO_REUSEPORT``), so that the kernel spreads new connections evenly over the workers
by their addresses. One socket shared by every worker does not: a burst of connections
goes mostly to whichever worker is awake first (64 keep-alive connections were measured
split 54 to 14), and with keep-alive clients that first share is what each worker serves
from then on. The node listens on the first socket at once, so the port accepts from
the node's start as a single-process node's does (those connections wait for worker 0);
the other sockets are only bound, and each of those workers calls ``listen`` once it can
serve (``listen_when_ready``), so until then the kernel does not park its share of new
connections behind a worker still importing its code. The node keeps
every socket open, so once a worker has listened, connections that arrive while it is
being restarted wait in its socket's backlog instead of being refused.
"""

from __future__ import annotations

import socket

from twisted.internet.error import CannotListenError

__all__ = ["bind_client_sockets", "family_name", "family_of", "listen_when_ready"]

_FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}


def family_of(name: str) -> socket.AddressFamily:
    """``inet`` or ``inet6`` as the socket module's constant."""
    return _FAMILIES[name]


def family_name(family: int) -> str:
    """The inverse of ``family_of``, for a worker's command line."""
    return next(name for name, value in _FAMILIES.items() if value == family)


def bind_client_sockets(port: int, interface: str, count: int) -> list[socket.socket]:
    """``count`` bound, non-blocking TCP sockets (the first one listening) sharing
    ``interface`` (all IPv4 interfaces when empty, as ``listenTCP`` binds) and ``port``; ``CannotListenError``
    as ``listenTCP`` raises it, also when another process already listens there with
    ``SO_REUSEPORT`` (a probe without it is bound first), so two nodes never share a
    port by mistake."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((interface, port))
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((interface, port))
            if len(sockets) == 1:  # worker 0's: the port accepts from now on
                sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)  # Twisted requires it of an adopted port
    except OSError as error:
        for sock in sockets:
            sock.close()
        raise CannotListenError(interface, port, error) from None
    return sockets


def listen_when_ready(fd: int, family: socket.AddressFamily) -> None:
    """In a worker about to serve: start listening on its inherited socket ``fd`` (a
    no-op for a socket that already listens, after a restart)."""
    sock = socket.socket(family, socket.SOCK_STREAM, fileno=fd)
    try:
        sock.listen(socket.SOMAXCONN)
    finally:
        sock.detach()  # the descriptor stays the caller's
