"""In-process fixtures: a real single-node ``KVService`` on the real reactor (memory
storage), and a worker's ``RemoteService`` talking to it over a real socketpair."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from leifdb.node import Node
from leifdb.nodeconfig import NodeConfig
from leifdb.raft.messages import Member, Role
from leifdb.raft.storage import MemoryStorage
from leifdb.service.api import ServiceLimits
from leifdb.service.kvservice import KVService
from leifdb.storage.memory import MemorySnapshotStore
from leifdb.worker.calls import WorkerSettings
from leifdb.worker.remote import RemoteService, RpcClient, RpcClientFactory
from leifdb.worker.server import RpcServer, RpcServerFactory
from tests.sim.node_sim import SimAsyncStorage
from tests.test_metrics import NoPeersTransport

LIMITS = ServiceLimits(max_key_bytes=64, min_lease_ttl=0.5)


async def _until(check, timeout: float = 5.0, step: float = 0.01) -> None:
    waited = 0.0
    while not check():
        if waited >= timeout:
            raise AssertionError("timed out")
        await deferLater(reactor, step, lambda: None)
        waited += step


@pytest_twisted.async_yield_fixture
async def kv():
    """A leading single node's ``KVService``."""
    config = NodeConfig(
        node_id="n1", members=(Member("n1", "127.0.0.1:1", "127.0.0.1:2"),),
        http_address="127.0.0.1:2", http_port=2, raft_listen_port=1, data_dir=None,
        election_timeout_ms=100, heartbeat_interval_ms=20, limits=LIMITS,
    )
    service = KVService(reactor, limits=LIMITS, proposal_timeout=5, read_timeout=3)
    node = Node(config, reactor=reactor,
                storage=SimAsyncStorage(MemoryStorage(), reactor, lambda: 0.0005),
                snapshots=MemorySnapshotStore(), transport=NoPeersTransport(), application=service)
    service.attach(node)
    await node.start()
    await _until(lambda: node.raft_status().role is Role.LEADER)
    await service.barrier()
    yield service
    await node.stop()


@dataclass
class Pair:
    """Both ends of one worker's RPC socket."""

    server: RpcServer
    client: RpcClient
    remote: RemoteService
    ready: list[bool]
    lost: list[bool]


async def connect(service: Any) -> Pair:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    theirs.setblocking(False)
    ready: list[bool] = []
    lost: list[bool] = []
    settings: list[WorkerSettings] = []
    server = RpcServer(service, reactor=reactor, settings=WorkerSettings(limits=service.limits),
                       on_ready=lambda: ready.append(True))
    client = RpcClient(reactor, on_settings=settings.append, on_lost=lambda: lost.append(True))
    reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, RpcServerFactory(server))
    reactor.adoptStreamConnection(theirs.fileno(), socket.AF_UNIX, RpcClientFactory(client))
    ours.close()
    theirs.close()
    await _until(lambda: settings)
    return Pair(server, client, RemoteService(client, settings[0].limits), ready, lost)


@pytest_twisted.async_yield_fixture
async def pair(kv):
    """A ``RemoteService`` over a socketpair to ``kv``'s RPC server."""
    connected = await connect(kv)
    yield connected
    connected.client.transport.loseConnection()
    await _until(lambda: connected.lost)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, so fixtures know whether it failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)
