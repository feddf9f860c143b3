"""``WorkerPool``: the node process's side of ``--workers N``. It binds the client port
once the node has started (where ``leifdb.tap.HttpService`` listens in single-process
mode; one listening socket per worker, see ``leifdb.worker.listen``), serves the
forwarded routes on an internal port (127.0.0.1, ephemeral), spawns the workers,
restarts one that exits unexpectedly, and stops them on the way out.

- Start: the port is bound (and accepts: see ``leifdb.worker.listen``), the workers
  spawned; each listens once it can serve, and the start-up line (``announce``) is
  logged when the first one does. Workers exiting
  before any of them served, ``MAX_START_FAILURES`` times in a row, is fatal (a broken
  installation), as a port in use is.
- Crash: one warning line (exit status or signal, and the worker's last line on
  stderr), then a restart after a backoff (``INITIAL_BACKOFF`` doubling to
  ``MAX_BACKOFF``; back to the start once a worker has lived ``STABLE_SECONDS``). The
  node itself is untouched: same process, same term; the crashed worker's long polls and
  lock waits are cancelled, its writes run their course.
- Stop (``drain``, called by ``NodeService`` after the leadership handover): SIGTERM to
  each worker, which drains its connections as a single-process node would and exits;
  waited for (bounded), SIGKILL past the bound. Then the ports close and the node stops.
  Every signal goes to a worker's own pid.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.error import CannotListenError, ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, globalLogPublisher
from twisted.python.failure import Failure

import leifdb
from leifdb.metrics import NodeMetrics
from leifdb.service.api import Service as KeyValueService
from leifdb.worker.calls import WorkerSettings
from leifdb.worker.listen import bind_client_sockets, family_name
from leifdb.worker.logs import LogRelay
from leifdb.worker.server import RpcServer, RpcServerFactory

__all__ = [
    "INITIAL_BACKOFF",
    "MAX_BACKOFF",
    "MAX_START_FAILURES",
    "STABLE_SECONDS",
    "WorkerPool",
]

log = Logger(namespace="leifdb.worker.pool")

INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 5.0
STABLE_SECONDS = 10.0
MAX_START_FAILURES = 5
#: Past the workers' own drain deadline, how long to wait before SIGKILL, and after it.
EXIT_MARGIN_SECONDS = 2.0
_RPC_FD = 3
_LISTEN_FD = 4


@dataclass
class _Slot:
    """Worker ``index``: its current process (None between a death and its restart)."""

    index: int
    process: Any = None
    pid: int | None = None
    server: RpcServer | None = None
    started_at: float = 0.0
    ready: bool = False
    backoff: float = INITIAL_BACKOFF
    restart: Any = None
    exited: list[Deferred] = field(default_factory=list)


class WorkerPool(Service):
    """``workers`` worker processes serving ``port`` on ``interface`` for ``service``;
    ``internal_site`` (the node's own site) answers the forwarded routes. ``settings``
    are sent to each worker (its ``internal_port`` is filled in here); HTTP timings the
    workers report go to ``metrics``."""

    name = "leifdb-workers"

    def __init__(
        self,
        node_service: Any,
        service: KeyValueService,
        internal_site: Any,
        *,
        workers: int,
        port: int,
        interface: str,
        reactor: Any,
        on_fatal: Callable[[str], None],
        settings: WorkerSettings,
        announce: Callable[[], None] | None = None,
        metrics: NodeMetrics | None = None,
        log_level: str = "info",
        python: str = sys.executable,
    ) -> None:
        if workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.node_service = node_service
        self.service = service
        self.internal_site = internal_site
        self.workers = workers
        self.port = port
        self.interface = interface
        self.reactor = reactor
        self.settings = settings
        self.metrics = metrics
        self.log_level = log_level
        self.python = python
        self._on_fatal = on_fatal
        self._announce = announce
        self._announced = False
        self._served = False  # some worker has served
        self._start_failures = 0
        self._stopping = False
        self._sockets: list[socket.socket] = []
        self._internal: Any = None
        self.slots: list[_Slot] = []
        self._env = _child_env()

    # -- start ---------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.node_service.when_started().addCallback(lambda _: self._listen())

    def _listen(self) -> None:
        if not self.running or self._stopping:
            return
        try:
            self._sockets = bind_client_sockets(self.port, self.interface, self.workers)
            self._internal = self.reactor.listenTCP(0, self.internal_site,
                                                    interface="127.0.0.1")
        except CannotListenError as error:
            self._on_fatal(f"cannot serve HTTP: {' '.join(str(error).split())}")
            return
        self.settings = replace(self.settings, internal_port=self._internal.getHost().port)
        self.slots = [_Slot(index) for index in range(self.workers)]
        for slot in self.slots:
            self._spawn(slot)

    def _announce_once(self) -> None:
        """The start-up line, when the first worker serves (a worker's ready message
        precedes its calls on the same socket, so nothing is served before the line)."""
        if self._announced:
            return
        self._announced = True
        if self._announce is not None:
            self._announce()
        else:
            log.info("HTTP API on {interface}:{port} ({workers} workers)",
                     interface=self.interface or "*", port=self.port, workers=self.workers)

    @property
    def pids(self) -> list[int]:
        """The pids of the workers running now."""
        return [slot.pid for slot in self.slots if slot.process is not None and slot.pid]

    def _spawn(self, slot: _Slot) -> None:
        slot.restart = None
        if self._stopping or not self._sockets:
            return
        listening = self._sockets[slot.index]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        server = RpcServer(self.service, reactor=self.reactor, settings=self.settings,
                           metrics=self.metrics, on_ready=lambda: self._ready(slot))
        protocol = _WorkerProcess(self, slot)
        try:
            ours.setblocking(False)
            self.reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX,
                                               RpcServerFactory(server))
            args = [
                self.python, "-m", "leifdb.worker",
                "--index", str(slot.index),
                "--rpc-fd", str(_RPC_FD),
                "--listen-fd", str(_LISTEN_FD),
                "--family", family_name(listening.family),
                "--parent-pid", str(os.getpid()),
                "--log-level", self.log_level,
            ]
            process = self.reactor.spawnProcess(
                protocol, self.python, args, env=self._env,
                childFDs={0: "w", 1: "r", 2: "r", _RPC_FD: theirs.fileno(),
                          _LISTEN_FD: listening.fileno()},
            )
        except OSError as error:
            if server.transport is not None:
                server.transport.loseConnection()
            self._failed(slot, f"could not be started ({error})")
            return
        finally:
            ours.close()
            theirs.close()
        slot.process, slot.pid, slot.server = process, process.pid, server
        slot.started_at = self.reactor.seconds()
        slot.ready = False

    def _ready(self, slot: _Slot) -> None:
        slot.ready = True
        self._served = True
        self._announce_once()

    # -- a worker ended ------------------------------------------------------------------

    def _exited(self, slot: _Slot, reason: Failure, last_error: str) -> None:
        pid = slot.pid
        was_ready = slot.ready
        lived = self.reactor.seconds() - slot.started_at
        slot.process, slot.pid, slot.ready = None, None, False
        if slot.server is not None and slot.server.transport is not None:
            slot.server.transport.loseConnection()
        slot.server = None
        waiters, slot.exited = slot.exited, []
        for d in waiters:
            d.callback(None)
        if self._stopping:
            return
        how = _describe_exit(reason)
        detail = f": {last_error}" if last_error else ""
        if lived >= STABLE_SECONDS:
            slot.backoff = INITIAL_BACKOFF
        if not was_ready and not self._served:
            self._start_failures += 1
            if self._start_failures >= MAX_START_FAILURES:
                self._stopping = True
                self._on_fatal(f"cannot start HTTP workers: worker {slot.index} (pid {pid}) "
                               f"{how}{detail}")
                return
        self._failed(slot, f"(pid {pid}) {how}{detail}")

    def _failed(self, slot: _Slot, what: str) -> None:
        delay = slot.backoff
        slot.backoff = min(slot.backoff * 2, MAX_BACKOFF)
        log.warn("worker {index} {what}; restarting it in {delay:.1f} s",
                 index=slot.index, what=what, delay=delay)
        slot.restart = self.reactor.callLater(delay, self._spawn, slot)

    # -- stop ----------------------------------------------------------------------------

    def drain(self) -> Deferred:
        """After the handover: every worker drains its connections and exits (bounded),
        and so do the node's forwarded connections; fires when both are done."""
        self._stopping = True
        self._cancel_restarts()
        for slot in self.slots:
            self._signal(slot, "TERM")
        bound = self.settings.drain_deadline + EXIT_MARGIN_SECONDS
        workers = self._wait_exits(bound)
        workers.addCallback(lambda _: self._kill_remaining())
        internal = self.internal_site.drain(self.reactor, grace=self.settings.drain_grace,
                                            deadline=self.settings.drain_deadline)
        return DeferredList([workers, internal], consumeErrors=True)

    def stopService(self) -> Deferred:
        """Closes the ports once the node has handed over and drained (or never
        started); a worker still running then is killed."""
        super().stopService()
        d = self.node_service.when_drained()
        d.addCallback(lambda _: self._close())
        return d

    def _close(self) -> Deferred:
        self._stopping = True
        self._cancel_restarts()
        d = self._kill_remaining()
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()
        internal, self._internal = self._internal, None
        if internal is not None:
            d.addCallback(lambda _: maybeDeferred(internal.stopListening))
        return d

    def _kill_remaining(self) -> Deferred:
        """SIGKILL every worker still running; fires once they are reaped (bounded)."""
        running = [slot for slot in self.slots if slot.process is not None]
        if not running:
            return succeed(None)
        for slot in running:
            log.warn("worker {index} (pid {pid}) did not exit in time; killing it",
                     index=slot.index, pid=slot.pid)
            self._signal(slot, "KILL")
        return self._wait_exits(EXIT_MARGIN_SECONDS)

    def _wait_exits(self, timeout: float) -> Deferred:
        waits = []
        for slot in self.slots:
            if slot.process is not None:
                d: Deferred = Deferred()
                slot.exited.append(d)
                waits.append(d)
        if not waits:
            return succeed(None)
        together = DeferredList(waits, consumeErrors=True)
        together.addTimeout(timeout, self.reactor)
        together.addErrback(lambda _: None)  # the caller kills what is left
        return together

    def _signal(self, slot: _Slot, name: str) -> None:
        if slot.process is None:
            return
        try:
            slot.process.signalProcess(name)
        except (ProcessExitedAlready, OSError):
            pass

    def _cancel_restarts(self) -> None:
        for slot in self.slots:
            if slot.restart is not None and slot.restart.active():
                slot.restart.cancel()
            slot.restart = None


class _WorkerProcess(ProcessProtocol):
    """One worker process: its stdout is its log (relayed), the last line of its stderr
    explains a crash."""

    def __init__(self, pool: WorkerPool, slot: _Slot) -> None:
        self.pool = pool
        self.slot = slot
        self.relay = LogRelay(slot.index, globalLogPublisher)
        self._stderr = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1:
            self.relay.feed(data)
        elif childFD == 2:
            self._stderr = (self._stderr + data)[-4096:]

    def processEnded(self, reason: Failure) -> None:
        lines = [line.strip() for line in self._stderr.decode("utf-8", "replace").splitlines()]
        last = next((line for line in reversed(lines) if line), "")
        self.pool._exited(self.slot, reason, last)


def _describe_exit(reason: Failure) -> str:
    value = reason.value
    if isinstance(value, ProcessDone):
        return "exited with status 0"
    signal_number = getattr(value, "signal", None)
    if signal_number:
        return f"died of signal {signal_number}"
    return f"exited with status {getattr(value, 'exitCode', '?')}"


def _child_env() -> dict[str, str]:
    """The node's environment, with the folder holding this ``leifdb`` package first on
    ``PYTHONPATH``, so workers run the node's code whatever its working directory."""
    env = dict(os.environ)
    root = str(Path(leifdb.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env
