"""The composition root behind ``twistd leifdb``: options in, a running node and its HTTP
API out.

``makeService`` returns a ``MultiService`` of two children: ``NodeService`` (starts and
stops the ``Node``) and, serving the client HTTP API once the node has started, either
``HttpService`` (``--workers 0``: this process listens) or ``leifdb.worker.WorkerPool``
(``--workers N``: N worker processes serve the port, this one keeps Raft, storage and
the key-value service, and serves the routes the workers forward on an internal port).

Before the node starts, ``NodeLauncher`` loads (or makes) the data directory's identity
and peer pins (``leifdb.storage.identity``) and, for a node started with ``--join`` on an
empty data directory, joins the running cluster (``ClusterJoin``): it fetches the members
and adds itself as a learner, so the node starts with no bootstrap configuration of its own.

Logs: one line when the node serves (version, node id, cluster, data directory, ports,
members) and one when it has stopped; ``--log-format json`` writes one JSON object per line
for log shippers, text stays the default. The access log (``--log-level debug``) is the
site's (``leifdb.http.site``). Metrics: one ``NodeMetrics`` per node, handed to the node,
the transport, the service's status and the site here.

Exit status, which twistd itself cannot set: a node that fails to start (a data directory
of another member or of a removed one, a cluster it cannot join...), or an HTTP port that
cannot be bound, logs one critical line, stops the reactor and ends the process with
status 1 once twistd has cleaned up (removed its pid file). On SIGTERM/SIGINT a leader
first hands leadership to another voter (bounded), so a rolling restart costs no election
timeout; a shutdown that completes cleanly ends with status 0 (twistd would otherwise
re-raise the signal); one that times out ends with status 1.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from typing import Any, Callable

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.failure import Failure

from leifdb import __version__, config
from leifdb.config import ConfigError, build_config
from leifdb.http import make_app, make_site
from leifdb.join import ClusterJoin, JoinError
from leifdb.metrics import NodeMetrics
from leifdb.node import Node
from leifdb.nodeconfig import NodeConfig
from leifdb.nodelog import STARTED_FORMAT, filtered_log_observer, started_line_fields
from leifdb.raft.messages import Member
from leifdb.service.kvservice import KVService
from leifdb.storage import DiskStorage, SnapshotStore
from leifdb.storage.errors import StorageError
from leifdb.storage.fs import REAL_FS, FileSystem
from leifdb.storage.identity import PeerPins, load_or_create_identity, read_identity
from leifdb.storage.threaded import ThreadedStorage
from leifdb.storage.writeback import WritebackFileSystem
from leifdb.transport import RaftTransport
from leifdb.worker.calls import WorkerSettings
from leifdb.worker.pool import WorkerPool

__all__ = [
    "ClusterJoin", "ExitStatus", "HttpService", "JoinError", "NodeLauncher", "NodeService",
    "Options", "makeService", "make_service", "storage_file_system",
]

log = Logger(namespace="leifdb.tap")

STOP_TIMEOUT_SECONDS = 10.0
# On stop, client connections get this long to send a last request after the handover,
# and at most this share of the stop timeout to finish (``ApiSite.drain``).
DRAIN_GRACE_SECONDS = 1.0
DRAIN_SHARE = 0.3
#: Of the stop timeout, what a leader may spend handing over before it stops anyway.
TRANSFER_SHARE = 0.5
USAGE_ERROR_STATUS = 2
# Start failures an operator can fix: reported as one line, without a traceback.
_EXPECTED_START_ERRORS = (StorageError, CannotListenError, OSError, JoinError)


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
    ``stopService`` waits for a start in progress, lets a leader hand leadership over
    (``node.transfer_leadership_before_stop``, at most ``TRANSFER_SHARE`` of the stop
    timeout), then stops the node; all of it bounded by ``stop_timeout`` seconds.
    ``clean`` says whether everything stopped in time."""

    name = "leifdb-node"

    def __init__(
        self,
        node: Any,
        *,
        reactor: Any,
        on_fatal: Callable[[str], None],
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
        drain_clients: Callable[[], Deferred] | None = None,
    ) -> None:
        self.node = node
        self.reactor = reactor
        self.stop_timeout = stop_timeout
        self._drain_clients = drain_clients
        self.clean = True
        self._on_fatal = on_fatal
        self._starting: Deferred | None = None
        self._started = False
        self._waiters: list[Deferred] = []
        self._drained_done = False
        self._drained_waiters: list[Deferred] = []

    def when_drained(self) -> Deferred:
        """Fires once a stopping node has handed leadership over and drained its client
        connections: the HTTP port closes only then, so clients still sent here are
        redirected to the new leader instead of refused (or cut in the listen backlog as
        the port closes) while the node still leads or has just stopped leading."""
        if self._drained_done:
            return succeed(None)
        d: Deferred = Deferred()
        self._drained_waiters.append(d)
        return d

    def _drained(self, result: object) -> object:
        self._drained_done = True
        waiters, self._drained_waiters = self._drained_waiters, []
        for d in waiters:
            d.callback(None)
        return result

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
        node_id = _node_id(self.node)
        if not failure.check(*_EXPECTED_START_ERRORS):
            log.failure("unexpected error starting node {node}", failure, node=node_id)
        self._on_fatal(f"cannot start node {node_id}: {_one_line(failure.value)}")

    def stopService(self) -> Deferred:
        super().stopService()
        began = self.reactor.seconds()
        d: Deferred = self._starting if self._starting is not None else succeed(None)
        d.addCallback(lambda _: self._hand_over() if self._started else None)
        d.addCallback(lambda _: self._drain() if self._started else None)
        d.addBoth(self._drained)
        d.addCallback(lambda _: self.node.stop() if self._started else None)
        d.addTimeout(self.stop_timeout, self.reactor)
        d.addCallbacks(self._stopped, self._stop_failed, callbackArgs=(began,))
        return d

    def _stopped(self, _: object, began: float) -> None:
        """The one line a clean shutdown logs (a failed one logs ``_stop_failed``'s)."""
        if self._started:
            log.info("LeifDB node {node} stopped cleanly in {seconds:.2f} s",
                     node=_node_id(self.node), seconds=self.reactor.seconds() - began)

    def _hand_over(self) -> Deferred:
        """A leader's transfer before it stops: never fails, never takes more than its
        share of the stop timeout (the stop goes on either way)."""
        d = maybeDeferred(lambda: self.node.transfer_leadership_before_stop())
        d.addTimeout(self.stop_timeout * TRANSFER_SHARE, self.reactor)
        d.addErrback(self._hand_over_failed)
        return d

    def _drain(self) -> Deferred | None:
        """After the handover, before the node stops: let requests in progress finish and
        close client connections between requests (``ApiSite.drain``), so a rolling
        restart cuts no request short. Never fails."""
        if self._drain_clients is None:
            return None
        d = maybeDeferred(self._drain_clients)
        d.addErrback(lambda failure: log.warn("closing client connections: {error}",
                                              error=_one_line(failure.value)))
        return d

    def _hand_over_failed(self, failure: Failure) -> None:
        log.warn("stopping without handing leadership over: {error}",
                 error=_one_line(failure.value))

    def _stop_failed(self, failure: Failure) -> None:
        self.clean = False
        log.error(
            "node did not stop cleanly within {timeout} s: {error}",
            timeout=self.stop_timeout, error=_one_line(failure.value),
        )


class HttpService(Service):
    """Serves ``site`` on ``port`` once ``node_service`` has started; failing to listen is
    fatal. Once listening it calls ``announce`` (the start-up line), else logs where it
    listens. Stopping closes the listening port once the node has handed over."""

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
        announce: Callable[[], None] | None = None,
    ) -> None:
        self.node_service = node_service
        self.site = site
        self.port = port
        self.interface = interface
        self.reactor = reactor
        self._on_fatal = on_fatal
        self._announce = announce
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
        if self._announce is not None:
            self._announce()
        else:
            log.info("HTTP API on {interface}:{port}", interface=self.interface or "*",
                     port=self.port)

    def stopService(self) -> Deferred | None:
        """Closes the port once the node has handed leadership over and drained its
        connections (``NodeService.when_drained``); the node stops after that."""
        super().stopService()
        d = self.node_service.when_drained()
        d.addCallback(lambda _: self._stop_listening())
        return d

    def _stop_listening(self) -> Deferred | None:
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
        log_observer=filtered_log_observer(twistd_options, node_config.log_level,
                                            node_config.log_format),
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
    metrics = NodeMetrics(
        service, leases=lambda: service.kv.lease_count(), proposals=lambda: service.proposal_counts
    )
    if node is None:
        node = NodeLauncher(node_config, reactor, service, metrics=metrics)

    def fatal(message: str) -> None:
        log.critical("{message}", message=message)
        exit_status.fail(1)
        reactor.callLater(0, _stop_reactor, reactor)

    def announce() -> None:
        config = getattr(node, "config", node_config)  # --join changes the members
        log.info(STARTED_FORMAT, **started_line_fields(config, _current_members(service, config)))

    resource = make_app(service, version=__version__, metrics=metrics)
    workers = node_config.workers
    access_log = node_config.log_level == "debug"
    # With workers, this site serves only what they forward: they time the requests and
    # write the access log, so it does neither (nothing is counted twice).
    site = make_site(resource, reactor=reactor, metrics=None if workers else metrics,
                     access_log=access_log and not workers)
    site.noisy = False
    drain_deadline = stop_timeout * DRAIN_SHARE
    pool: WorkerPool | None = None

    def drain_clients() -> Deferred:
        if pool is not None:
            return pool.drain()
        return site.drain(reactor, grace=DRAIN_GRACE_SECONDS, deadline=drain_deadline)

    top = _LeifdbService(log_observer)
    node_service = NodeService(
        node, reactor=reactor, on_fatal=fatal, stop_timeout=stop_timeout,
        drain_clients=drain_clients,
    )
    node_service.setServiceParent(top)
    if workers:
        pool = WorkerPool(
            node_service,
            service,
            site,
            workers=workers,
            port=node_config.http_port,
            interface=node_config.listen_interface,
            reactor=reactor,
            on_fatal=fatal,
            announce=announce,
            settings=WorkerSettings(
                limits=service.limits, access_log=access_log,
                drain_grace=DRAIN_GRACE_SECONDS, drain_deadline=drain_deadline,
            ),
            metrics=metrics,
            log_level=node_config.log_level,
        )
        pool.setServiceParent(top)
    else:
        HttpService(
            node_service,
            site,
            port=node_config.http_port,
            interface=node_config.listen_interface,
            reactor=reactor,
            on_fatal=fatal,
            announce=announce,
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
    clean start failure, not a traceback at load time), checks or makes its identity,
    joins the cluster when told to (``--join``, empty data directory), wires the node to
    its disk, snapshot store, TCP transport and service, and starts it. ``join`` replaces
    the real ``ClusterJoin`` in tests; ``metrics`` observes the node and the transport."""

    def __init__(self, config: NodeConfig, reactor: Any, service: KVService,
                 join: Callable[[NodeConfig], Deferred] | None = None,
                 metrics: NodeMetrics | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.service = service
        self.metrics = metrics
        self.node: Node | None = None
        self._join = join or (lambda cfg: ClusterJoin(cfg, reactor).run())

    def start(self) -> Deferred:
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        config = self.config
        storage_log = Logger(namespace="leifdb.storage")
        fs = storage_file_system(config)
        disk = DiskStorage.open(config.data_dir, logger=storage_log, fs=fs)
        try:
            data_dir = disk.data_dir.path
            known = read_identity(data_dir, fs=fs)
            if config.join is not None and known is not None:
                log.info(
                    "--join ignored: {dir} already holds member {id} of cluster {cluster}; "
                    "restarting from it", dir=data_dir, id=known.member_id,
                    cluster=known.cluster_id,
                )
            elif config.join is not None:
                config = await self._join(config)
            identity = load_or_create_identity(data_dir, config.node_id, config.cluster_id,
                                               fs=fs)
            if config.joined_index and not identity.joined_index:
                identity.mark_joined(config.joined_index)
            pins = PeerPins.open(data_dir, fs=fs)
            snapshots = SnapshotStore(
                disk.data_dir.snap_dir, retain=config.retain_snapshots, logger=storage_log,
                fs=fs,
            )
        except BaseException:
            disk.close()  # releases the data directory's lock
            raise
        self.config = config
        transport = RaftTransport(
            self.reactor,
            node_id=config.node_id,
            http_address=config.http_address,
            peers=raft_peers(config),
            cluster_id=config.cluster_id,
            listen_port=config.raft_listen_port,
            listen_interface=config.listen_interface,
            incarnation=identity.incarnation,
            pins=pins,
            on_round_trip=self.metrics.round_trip if self.metrics is not None else None,
        )
        if self.metrics is not None:
            self.metrics.attach_transport(transport)
        self.node = Node(
            config,
            reactor=self.reactor,
            storage=ThreadedStorage(disk, self.reactor),
            snapshots=snapshots,
            transport=transport,
            application=self.service,
            identity=identity,
            pins=pins,
            observer=self.metrics,
        )
        self.service.attach(self.node)
        await self.node.start()

    def transfer_leadership_before_stop(self) -> Deferred:
        if self.node is None:
            return succeed(None)
        return self.node.transfer_leadership_before_stop()

    def stop(self) -> Deferred:
        return self.node.stop() if self.node is not None else succeed(None)


def raft_peers(config: NodeConfig) -> dict[str, tuple[str, int]]:
    """Every other member's Raft ``(host, port)``, as the transport dials them."""
    peers = {}
    for member in config.members:
        if member.id != config.node_id:
            host, _, port = member.raft_address.rpartition(":")
            peers[member.id] = (host.strip("[]"), int(port))
    return peers


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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, _EXPECTED_START_ERRORS) else f"{type(exc).__name__}: {text}"


def _current_members(service: Any, config: NodeConfig) -> tuple[Member, ...]:
    """The members as the started node knows them (its log may hold a newer list than its
    options); the configured ones if the service cannot tell yet."""
    try:
        infos = service.members().members
    except Exception:
        return config.members
    return tuple(Member(m.id, m.raft_address, m.http_address, m.learner) for m in infos)


def _node_id(node: Any) -> str:
    return getattr(getattr(node, "config", None), "node_id", "?")
