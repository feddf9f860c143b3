"""A worker process: ``python -m leifdb.worker``, spawned by its node's ``WorkerPool``.

It inherits two descriptors: its end of the RPC socket and its listening socket on the
client port (``leifdb.worker.listen``). Once the
node's first frame has brought its settings, it serves the node's whole HTTP API on the
shared port over a ``RemoteService``, forwarding the routes it cannot serve itself
(``leifdb.worker.forward``). It lives exactly as long as its node wants it:

- SIGTERM (the node stops, after its leadership handover): drain the client connections
  as the node would (``ApiSite.drain``), then exit 0.
- The RPC socket closes (the node is gone): exit at once. On Linux the kernel also
  kills it with SIGKILL when the node dies (``PR_SET_PDEATHSIG``), so a SIGKILLed node
  leaves no worker behind, even one whose reactor is stuck.
- SIGINT is ignored: a Ctrl-C in a terminal reaches the whole process group, and the
  node decides when its workers stop.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger, globalLogBeginner

from leifdb import __version__
from leifdb.http import ApiSite, make_app
from leifdb.worker.calls import WorkerSettings
from leifdb.worker.forward import ForwardingRoot, NodeProxy
from leifdb.worker.listen import family_of, listen_when_ready
from leifdb.worker.logs import LEVELS, worker_log_observer
from leifdb.worker.remote import RelayedMetrics, RemoteService, RpcClient, RpcClientFactory

__all__ = ["Worker", "die_with_parent", "main", "parse_args"]

log = Logger(namespace="leifdb.worker")

_PR_SET_PDEATHSIG = 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m leifdb.worker",
        description="An HTTP worker of a LeifDB node; started by the node, not by hand.",
    )
    parser.add_argument("--index", type=int, required=True, help="this worker's number")
    parser.add_argument("--rpc-fd", type=int, required=True,
                        help="inherited descriptor: this end of the RPC socketpair")
    parser.add_argument("--listen-fd", type=int, required=True,
                        help="inherited descriptor: the listening client port")
    parser.add_argument("--family", choices=("inet", "inet6"), default="inet",
                        help="the client port's address family")
    parser.add_argument("--parent-pid", type=int, required=True, help="the node's pid")
    parser.add_argument("--log-level", choices=tuple(LEVELS), default="info")
    return parser.parse_args(argv)


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already
    has (the request came too late to cover it). Elsewhere, the RPC socket's EOF alone
    ends the worker."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        raise SystemExit(0)


class Worker:
    """The worker's life in its reactor: connect to the node, serve once the settings
    came, drain on the way out (before the reactor shuts down, which waits for it)."""

    def __init__(self, reactor: Any, args: argparse.Namespace) -> None:
        self.reactor = reactor
        self.args = args
        self.site: ApiSite | None = None
        self.port: Any = None
        self.settings: WorkerSettings | None = None
        self._node_gone = False
        self.client = RpcClient(reactor, on_settings=self._serve, on_lost=self._lost)

    def start(self) -> None:
        self.reactor.adoptStreamConnection(self.args.rpc_fd, socket.AF_UNIX,
                                           RpcClientFactory(self.client))
        os.close(self.args.rpc_fd)
        self.reactor.addSystemEventTrigger("before", "shutdown", self._drain)

    def _serve(self, settings: WorkerSettings) -> None:
        if self.site is not None:
            return
        self.settings = settings
        metrics = RelayedMetrics(self.client)
        app = make_app(RemoteService(self.client, settings.limits), version=__version__,
                       metrics=metrics)
        root = ForwardingRoot(app, NodeProxy(self.reactor, settings.internal_port))
        self.site = ApiSite(root, limits=app.limits, revision=app.revision, metrics=metrics,
                            access_log=settings.access_log, reactor=self.reactor)
        self.site.noisy = False
        listen_when_ready(self.args.listen_fd, family_of(self.args.family))
        self.port = self.reactor.adoptStreamPort(self.args.listen_fd,
                                                 family_of(self.args.family), self.site)
        os.close(self.args.listen_fd)
        self.client.ready()

    def _lost(self) -> None:
        """The node is gone: nothing can be answered any more, so no drain."""
        self._node_gone = True
        if self.reactor.running:
            self.reactor.stop()

    def _drain(self) -> Deferred | None:
        if self._node_gone or self.site is None or self.settings is None:
            return None
        d = self.site.drain(self.reactor, grace=self.settings.drain_grace,
                            deadline=self.settings.drain_deadline)
        d.addCallback(lambda _: self.port.stopListening())
        return d


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    die_with_parent(args.parent_pid)
    # Left ignored, Twisted does not install its own SIGINT handler either.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    globalLogBeginner.beginLoggingTo(
        [worker_log_observer(sys.stdout, args.log_level)], redirectStandardIO=False,
    )
    from twisted.internet import reactor

    Worker(reactor, args).start()
    reactor.run()
