"""The composition root behind ``twistd leifdb``: options in, a running node and its HTTP
API out.

``makeService`` returns a ``MultiService`` of two children: ``NodeService`` (starts and
stops the ``Node``) and ``HttpService`` (listens once the node has started, stops first).

Exit status, which twistd itself cannot set: a node that fails to start, or an HTTP port
that cannot be bound, logs one critical line, stops the reactor and ends the process with
status 1 once twistd has cleaned up (removed its pid file). A SIGTERM/SIGINT whose shutdown
completes cleanly ends with status 0 (twistd would otherwise re-raise the signal); one that
times out ends with status 1.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    Logger,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile

from leifdb import __version__, config
from leifdb.config import ConfigError, build_config
from leifdb.http import make_app, make_site
from leifdb.node import Node
from leifdb.nodeconfig import NodeConfig
from leifdb.service.kvservice import KVService
from leifdb.storage import DiskStorage, SnapshotStore
from leifdb.storage.errors import StorageError
from leifdb.storage.fs import REAL_FS, FileSystem
from leifdb.storage.threaded import ThreadedStorage
from leifdb.storage.writeback import WritebackFileSystem
from leifdb.transport import RaftTransport

__all__ = [
    "ExitStatus", "HttpService", "NodeLauncher", "NodeService", "Options", "makeService",
    "make_service", "storage_file_system",
]

log = Logger(namespace="leifdb.tap")
access_log = Logger(namespace="leifdb.http.access")

STOP_TIMEOUT_SECONDS = 10.0
USAGE_ERROR_STATUS = 2
_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}
# Start failures an operator can fix: reported as one line, without a traceback.
_EXPECTED_START_ERRORS = (StorageError, CannotListenError, OSError)


class Options(config.Options):
    """``leifdb.config.Options`` for the command line: a usage error (unknown option, bad
    value) prints ONE line on stderr and exits with status 2, where twistd would print its
    whole usage text and the error on stdout."""

    def parseOptions(self, options: list[str] | None = None) -> None:
        try:
            super().parseOptions(options)
        except usage.UsageError as error:
            sys.stderr.write(f"leifdb: error: {error}\n")
            sys.stderr.flush()
            raise SystemExit(USAGE_ERROR_STATUS) from None


class ExitStatus:
    """The status the process ends with. twistd returns 0 (or dies of the signal that
    stopped it) whatever happened, so a non-zero status is applied by an ``atexit`` hook,
    which runs after twistd's own clean-up."""

    def __init__(self) -> None:
        self.code = 0
        self._armed = False

    def fail(self, code: int = 1) -> None:
        self.code = code
        if not self._armed:
            self._armed = True
            atexit.register(self._exit)

    def _exit(self) -> None:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(self.code)


class NodeService(Service):
    """Starts the node when the reactor starts; ``when_started`` fires once it serves.

    A failure to start is fatal: ``on_fatal(message)`` is called with one line.
    ``stopService`` waits for a start in progress, then stops the node, bounded by
    ``stop_timeout`` seconds; ``clean`` says whether everything stopped in time."""

    name = "leifdb-node"

    def __init__(
        self,
        node: Any,
        *,
        reactor: Any,
        on_fatal: Callable[[str], None],
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
    ) -> None:
        self.node = node
        self.reactor = reactor
        self.stop_timeout = stop_timeout
        self.clean = True
        self._on_fatal = on_fatal
        self._starting: Deferred | None = None
        self._started = False
        self._waiters: list[Deferred] = []

    def when_started(self) -> Deferred:
        """Fires (with None) once the node serves; never, if it fails to start."""
        if self._started:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiters.append(d)
        return d

    def startService(self) -> None:
        super().startService()
        self._starting = maybeDeferred(self.node.start)
        self._starting.addCallbacks(self._start_succeeded, self._start_failed)

    def _start_succeeded(self, _: object) -> None:
        self._starting = None
        self._started = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def _start_failed(self, failure: Failure) -> None:
        self._starting = None
        node_id = getattr(getattr(self.node, "config", None), "node_id", "?")
        if not failure.check(*_EXPECTED_START_ERRORS):
            log.failure("unexpected error starting node {node}", failure, node=node_id)
        self._on_fatal(f"cannot start node {node_id}: {_one_line(failure.value)}")

    def stopService(self) -> Deferred:
        super().stopService()
        d: Deferred = self._starting if self._starting is not None else succeed(None)
        d.addCallback(lambda _: self.node.stop() if self._started else None)
        d.addTimeout(self.stop_timeout, self.reactor)
        d.addErrback(self._stop_failed)
        return d

    def _stop_failed(self, failure: Failure) -> None:
        self.clean = False
        log.error(
            "node did not stop cleanly within {timeout} s: {error}",
            timeout=self.stop_timeout, error=_one_line(failure.value),
        )


class HttpService(Service):
    """Serves ``site`` on ``port`` once ``node_service`` has started; failing to listen is
    fatal. Stopping closes the listening port (connections in progress are dropped when
    the reactor stops)."""

    name = "leifdb-http"

    def __init__(
        self,
        node_service: NodeService,
        site: Any,
        *,
        port: int,
        interface: str,
        reactor: Any,
        on_fatal: Callable[[str], None],
    ) -> None:
        self.node_service = node_service
        self.site = site
        self.port = port
        self.interface = interface
        self.reactor = reactor
        self._on_fatal = on_fatal
        self._listening: Any = None

    def startService(self) -> None:
        super().startService()
        self.node_service.when_started().addCallback(lambda _: self._listen())

    def _listen(self) -> None:
        if not self.running:
            return
        try:
            self._listening = self.reactor.listenTCP(self.port, self.site, interface=self.interface)
        except CannotListenError as exc:
            self._on_fatal(f"cannot serve HTTP: {_one_line(exc)}")
            return
        log.info(
            "HTTP API on {interface}:{port}", interface=self.interface or "*", port=self.port
        )

    def stopService(self) -> Deferred | None:
        super().stopService()
        listening, self._listening = self._listening, None
        return maybeDeferred(listening.stopListening) if listening is not None else None


class _LeifdbService(MultiService):
    """The node and its HTTP API. Given an ``ILogObserver``, it installs it on the twistd
    ``Application`` it is added to (twistd logs through it instead of its default)."""

    def __init__(self, log_observer: Any = None) -> None:
        super().__init__()
        self._log_observer = log_observer

    def setServiceParent(self, parent: Any) -> None:
        super().setServiceParent(parent)
        set_component = getattr(parent, "setComponent", None)
        if self._log_observer is not None and set_component is not None:
            set_component(ILogObserver, self._log_observer)


def makeService(options: Any) -> MultiService:
    """twistd's entry point: ``options`` is a parsed ``Options``."""
    from twisted.internet import reactor

    node_config = getattr(options, "config", None)
    if node_config is None:
        try:
            node_config = build_config(options, os.environ)
        except ConfigError as error:
            sys.stderr.write(f"leifdb: error: {error}\n")
            raise SystemExit(USAGE_ERROR_STATUS) from None
    twistd_options = getattr(options, "parent", None)
    return make_service(
        node_config,
        reactor=reactor,
        exit_status=ExitStatus(),
        log_observer=_filtered_log_observer(twistd_options, node_config.log_level),
    )


def make_service(
    node_config: NodeConfig,
    *,
    reactor: Any,
    exit_status: ExitStatus,
    log_observer: Any = None,
    node: Any = None,
    service: KVService | None = None,
    stop_timeout: float = STOP_TIMEOUT_SECONDS,
) -> MultiService:
    """The node and its HTTP API as one service: the only place where the node's
    collaborators (disk, snapshots, TCP transport, key-value service) are chosen.
    ``node`` and ``service`` replace the real ones in tests."""
    if service is None:
        service = KVService(
            reactor,
            limits=node_config.limits,
            proposal_timeout=max(5.0, 5 * node_config.election_timeout_ms / 1000.0),
            read_timeout=max(2.0, 3 * node_config.election_timeout_ms / 1000.0),
            now=time.monotonic,  # leases count down on a clock that never jumps
        )
    if node is None:
        node = NodeLauncher(node_config, reactor, service)

    def fatal(message: str) -> None:
        log.critical("{message}", message=message)
        exit_status.fail(1)
        reactor.callLater(0, _stop_reactor, reactor)

    resource = make_app(service, version=__version__)
    site = make_site(resource, reactor=reactor)
    site.noisy = False
    site.log = _access_logger(node_config.log_level)

    top = _LeifdbService(log_observer)
    node_service = NodeService(node, reactor=reactor, on_fatal=fatal, stop_timeout=stop_timeout)
    node_service.setServiceParent(top)
    HttpService(
        node_service,
        site,
        port=node_config.http_port,
        interface=node_config.listen_interface,
        reactor=reactor,
        on_fatal=fatal,
    ).setServiceParent(top)
    reactor.addSystemEventTrigger(
        "after", "shutdown", _settle_exit_status, reactor, node_service, exit_status
    )
    return top


def storage_file_system(config: NodeConfig) -> FileSystem:
    """The file system under the node's storage: the real one, or (tests only,
    ``--unsafe-test-writeback-fs``) one that keeps un-synced writes in this process, so
    that SIGKILL loses exactly what a power cut would."""
    if not config.unsafe_test_writeback_fs:
        return REAL_FS
    log.warn(
        "UNSAFE, TEST ONLY: un-synced writes live in this process's memory "
        "(--unsafe-test-writeback-fs), and no real fsync is made"
    )
    return WritebackFileSystem(config.data_dir)


class NodeLauncher:
    """Opens the data directory when the reactor starts (so a locked or corrupt one is a
    clean start failure, not a traceback at load time), wires the node to its disk,
    snapshot store, TCP transport and service, and starts it."""

    def __init__(self, config: NodeConfig, reactor: Any, service: KVService) -> None:
        self.config = config
        self.reactor = reactor
        self.service = service
        self.node: Node | None = None

    def start(self) -> Deferred:
        config = self.config
        try:
            storage_log = Logger(namespace="leifdb.storage")
            fs = storage_file_system(config)
            disk = DiskStorage.open(config.data_dir, logger=storage_log, fs=fs)
            snapshots = SnapshotStore(
                disk.data_dir.snap_dir, retain=config.retain_snapshots, logger=storage_log,
                fs=fs,
            )
            peers = {}
            for member in config.members:
                if member.id != config.node_id:
                    host, _, port = member.raft_address.rpartition(":")
                    peers[member.id] = (host, int(port))
            transport = RaftTransport(
                self.reactor,
                node_id=config.node_id,
                http_address=config.http_address,
                peers=peers,
                cluster_id=config.cluster_id,
                listen_port=config.raft_listen_port,
                listen_interface=config.listen_interface,
            )
            self.node = Node(
                config,
                reactor=self.reactor,
                storage=ThreadedStorage(disk, self.reactor),
                snapshots=snapshots,
                transport=transport,
                application=self.service,
            )
            self.service.attach(self.node)
        except Exception:
            return fail()
        return self.node.start()

    def stop(self) -> Deferred:
        return self.node.stop() if self.node is not None else succeed(None)


def _settle_exit_status(reactor: Any, node_service: NodeService, exit_status: ExitStatus) -> None:
    """After shutdown: a clean stop on SIGTERM/SIGINT exits 0, an unclean one 1."""
    if not node_service.clean:
        exit_status.fail(1)
    if getattr(reactor, "_exitSignal", None) in (signal.SIGTERM, signal.SIGINT):
        # twistd would kill itself with the signal again after its clean-up; instead the
        # process exits normally, with ``exit_status``'s code.
        reactor._exitSignal = None


def _stop_reactor(reactor: Any) -> None:
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


def _access_logger(level: str) -> Callable[[Any], None]:
    """One debug event per request at ``--log-level debug``; nothing otherwise (so an
    info-level log stays quiet under load)."""
    if level != "debug":
        return lambda request: None

    def log_request(request: Any) -> None:
        access_log.debug(
            "{client} {method} {uri} {code} {length}",
            client=getattr(request.getClientAddress(), "host", "-"),
            method=request.method.decode("ascii", "replace"),
            uri=request.uri.decode("ascii", "replace"),
            code=request.code,
            length=request.sentLength,
        )

    return log_request


def _filtered_log_observer(twistd_options: Any, level: str) -> Any:
    """The observer twistd would make by default (stdout with ``-n``, else ``--logfile`` or
    ``twistd.log``), behind a ``LogLevelFilterPredicate`` at ``level``. None (twistd's own,
    unfiltered) for ``--syslog``, ``--logger`` or when not run by twistd."""
    if twistd_options is None or not hasattr(twistd_options, "get"):
        return None
    if twistd_options.get("syslog") or twistd_options.get("logger"):
        return None
    logfile = twistd_options.get("logfile") or ""
    nodaemon = twistd_options.get("nodaemon")
    if logfile == "-" and not nodaemon:
        return None  # twistd refuses this itself, with its own message
    if logfile == "-" or (nodaemon and not logfile):
        inner = textFileLogObserver(sys.stdout)
    else:
        inner = textFileLogObserver(LogFile.fromFullPath(str(Path(logfile or "twistd.log"))))
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    return FilteringLogObserver(inner, [predicate])


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, _EXPECTED_START_ERRORS) else f"{type(exc).__name__}: {text}"
