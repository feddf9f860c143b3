"""A worker's end of its RPC socket: ``RpcClient`` batches the calls of one reactor turn
into one frame and fires each call's Deferred when the node answers; ``RemoteService``
is the ``leifdb.service.api.Service`` the worker's HTTP routes call, every Deferred
method of it one call away.

Cancelling a call's Deferred (Klein does, for the routes that await unshielded, when the
client disconnects) sends a cancel, so the node cancels the real one. The applied
revision comes with every frame from the node; ``RemoteService.revision`` is the newest
seen. What cannot be a call (``NODE_ONLY``) is refused here: the routes using it are
forwarded to the node whole (``leifdb.worker.forward``).
"""

from __future__ import annotations

import itertools
import pickle
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from leifdb.errors import OutcomeUnknown
from leifdb.metrics import NodeMetrics
from leifdb.kv.commands import Condition, Event, Fence, Item, Txn, TxnResult
from leifdb.service.api import (
    CONSISTENCY_LINEARIZABLE,
    ClusterMembers,
    Holder,
    LeaseInfo,
    NodeStatus,
    ObserveSink,
    Page,
    ServiceLimits,
    WatchHandle,
    WatchSink,
    WriteResult,
)
from leifdb.worker.calls import Call, Note, WorkerSettings
from leifdb.worker.codec import FrameDecoder, decode_exception, encode_frame

__all__ = ["NodeOnly", "RelayedMetrics", "RemoteService", "RpcClient", "RpcClientFactory"]

log = Logger(namespace="leifdb.worker.remote")

#: Request timings are sent at least this often while there are any (else with calls).
NOTE_INTERVAL_SECONDS = 1.0


class NodeOnly(RuntimeError):
    """A ``Service`` method a worker cannot offer: its route must be forwarded."""


class RpcClient(Protocol):
    """Calls out, replies in. ``on_settings`` gets the node's first frame's
    ``WorkerSettings``; ``on_lost`` is called once the connection ends (the node is gone:
    every call still waiting fails with ``OutcomeUnknown``)."""

    def __init__(
        self,
        reactor: Any,
        *,
        on_settings: Callable[[WorkerSettings], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.reactor = reactor
        self.revision = 0
        self._on_settings = on_settings
        self._on_lost = on_lost
        self._decoder = FrameDecoder()
        self._ids = itertools.count(1)
        self._pending: dict[int, Deferred] = {}
        self._calls: list[Call] = []
        self._cancels: list[int] = []
        self._ready = False
        self._http: list[tuple[str, str, int, float]] = []
        self._flush_call: Any = None
        self._note_call: Any = None
        self._lost = False

    @property
    def pending(self) -> int:
        """Calls sent and not answered yet."""
        return len(self._pending)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Deferred:
        """The node's ``service.name(*args, **kwargs)``, sent with this turn's others."""
        if self._lost:
            raise OutcomeUnknown("the node's consensus process is gone")
        call_id = next(self._ids)
        d: Deferred = Deferred(canceller=lambda _: self._cancel(call_id))
        self._pending[call_id] = d
        self._calls.append((call_id, name, args, kwargs))
        self._schedule()
        return d

    def ready(self) -> None:
        """Tell the node this worker serves."""
        self._ready = True
        self._schedule()

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """A request timing for the node's metrics (sent with calls, or within a second)."""
        self._http.append((route, method, status, seconds))
        if self._note_call is None and not self._lost:
            self._note_call = self.reactor.callLater(NOTE_INTERVAL_SECONDS, self._send_note)

    def dataReceived(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except Exception as error:
            log.error("dropping the RPC connection to the node: {error}", error=error)
            self.transport.abortConnection()
            return
        pending = self._pending
        for revision, replies, settings in frames:
            if revision > self.revision:
                self.revision = revision
            if settings is not None:
                self._on_settings(settings)
            for call_id, ok, value in replies:
                d = pending.pop(call_id, None)
                if d is None:
                    continue  # cancelled here meanwhile
                if ok:
                    d.callback(value)
                else:
                    d.errback(decode_exception(value))

    def connectionLost(self, reason: Any = None) -> None:
        self._lost = True
        for call in (self._flush_call, self._note_call):
            if call is not None and call.active():
                call.cancel()
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(OutcomeUnknown("lost the connection to the node's consensus process"))
        self._on_lost()

    def _cancel(self, call_id: int) -> None:
        if self._pending.pop(call_id, None) is not None and not self._lost:
            self._cancels.append(call_id)
            self._schedule()

    def _schedule(self) -> None:
        if self._flush_call is None and not self._lost:
            self._flush_call = self.reactor.callLater(0, self._flush)

    def _send_note(self) -> None:
        self._note_call = None
        self._schedule()

    def _flush(self) -> None:
        self._flush_call = None
        calls, self._calls = self._calls, []
        cancels, self._cancels = self._cancels, []
        note = None
        if self._ready or self._http:
            note = Note(ready=self._ready, http=tuple(self._http))
            self._ready, self._http = False, []
        if not (calls or cancels or note):
            return
        try:
            data = encode_frame((calls, cancels, note))
        except Exception:
            calls = self._sendable(calls)
            data = encode_frame((calls, cancels, note))
        self.transport.write(data)

    def _sendable(self, calls: list[Call]) -> list[Call]:
        """The calls that pickle; the others fail at once (a bug in their arguments)."""
        sendable = []
        for call in calls:
            try:
                pickle.dumps(call, pickle.HIGHEST_PROTOCOL)
            except Exception as error:
                d = self._pending.pop(call[0], None)
                if d is not None:
                    d.errback(TypeError(f"cannot send {call[1]} to the node: {error}"))
            else:
                sendable.append(call)
        return sendable


class RpcClientFactory(Factory):
    """Hands out one prepared ``RpcClient`` (for ``adoptStreamConnection``)."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> RpcClient:
        return self.client


class RelayedMetrics(NodeMetrics):
    """The metrics a worker's site times requests into: each timing goes to the node,
    whose ``/metrics`` (forwarded there) then counts every worker's requests."""

    def __init__(self, client: RpcClient) -> None:
        super().__init__(process=False)
        self._client = client

    def http_request(self, route: str, method: bytes | str, status: int, seconds: float) -> None:
        if isinstance(method, bytes):
            method = method.decode("ascii", "replace")
        self._client.http_request(route, method, status, seconds)


class RemoteService:
    """``leifdb.service.api.Service`` over ``client``: the node's service, one call away.
    ``limits`` are the node's (from its ``WorkerSettings``)."""

    def __init__(self, client: RpcClient, limits: ServiceLimits) -> None:
        self._client = client
        self._call = client.call
        self.limits = limits

    @property
    def revision(self) -> int:
        """The newest applied revision the node has reported."""
        return self._client.revision

    def get(self, key: str, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Item | None]:
        return self._call("get", key, consistency)

    def range(self, prefix: str, start_after: str | None = None, limit: int | None = None,
              consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Page]:
        return self._call("range", prefix, start_after, limit, consistency)

    def put(self, key: str, value: str, condition: Condition | None = None, *,
            lease: int = 0, ttl: float | None = None, fence: Fence | None = None
            ) -> Deferred[WriteResult]:
        if lease or ttl is not None or fence is not None:
            return self._call("put", key, value, condition, lease=lease, ttl=ttl, fence=fence)
        return self._call("put", key, value, condition)

    def delete(self, key: str, condition: Condition | None = None, *,
               fence: Fence | None = None) -> Deferred[WriteResult]:
        if fence is not None:
            return self._call("delete", key, condition, fence=fence)
        return self._call("delete", key, condition)

    def txn(self, txn: Txn, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[TxnResult]:
        return self._call("txn", txn, consistency)

    def barrier(self, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[None]:
        return self._call("barrier", consistency)

    def wait(self, key: str, *, prefix: bool, wait_revision: int, timeout: float
             ) -> Deferred[list[Event]]:
        return self._call("wait", key, prefix=prefix, wait_revision=wait_revision,
                          timeout=timeout)

    # -- leases --------------------------------------------------------------------------

    def grant_lease(self, ttl: float) -> Deferred[LeaseInfo]:
        return self._call("grant_lease", ttl)

    def keepalive(self, lease_id: int) -> Deferred[LeaseInfo]:
        return self._call("keepalive", lease_id)

    def lease_info(self, lease_id: int) -> Deferred[LeaseInfo]:
        return self._call("lease_info", lease_id)

    def leases(self) -> Deferred[list[LeaseInfo]]:
        return self._call("leases")

    def revoke_lease(self, lease_id: int) -> Deferred[int]:
        return self._call("revoke_lease", lease_id)

    # -- locks and elections -------------------------------------------------------------

    def lock(self, name: str, lease: int, *, value: str = "", timeout: float
             ) -> Deferred[Holder]:
        return self._call("lock", name, lease, value=value, timeout=timeout)

    def lock_holder(self, name: str, consistency: str = CONSISTENCY_LINEARIZABLE
                    ) -> Deferred[Holder | None]:
        return self._call("lock_holder", name, consistency)

    def campaign(self, name: str, lease: int, value: str, *, timeout: float
                 ) -> Deferred[Holder]:
        return self._call("campaign", name, lease, value, timeout=timeout)

    def election_leader(self, name: str, consistency: str = CONSISTENCY_LINEARIZABLE
                        ) -> Deferred[Holder | None]:
        return self._call("election_leader", name, consistency)

    def proclaim(self, name: str, token: int, value: str) -> Deferred[Holder]:
        return self._call("proclaim", name, token, value)

    def resign(self, name: str, token: int) -> Deferred[int]:
        return self._call("resign", name, token)

    # -- membership ----------------------------------------------------------------------

    def add_member(self, member_id: str, raft_address: str, http_address: str = ""
                   ) -> Deferred[ClusterMembers]:
        return self._call("add_member", member_id, raft_address, http_address)

    def promote_member(self, member_id: str) -> Deferred[ClusterMembers]:
        return self._call("promote_member", member_id)

    def remove_member(self, member_id: str, force: bool = False) -> Deferred[ClusterMembers]:
        return self._call("remove_member", member_id, force)

    def transfer_leader(self, to: str) -> Deferred[str]:
        return self._call("transfer_leader", to)

    # -- served by the node itself (their routes are forwarded) --------------------------

    def status(self) -> NodeStatus:
        raise NodeOnly("status() is the node's: its routes are forwarded to it")

    def members(self) -> ClusterMembers:
        raise NodeOnly("members() is the node's: its routes are forwarded to it")

    def snapshot(self, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Any]:
        raise NodeOnly("snapshot() is the node's: its route is forwarded to it")

    def watch(self, sink: WatchSink, key: str, *, prefix: bool = False,
              start_revision: int | None = None) -> WatchHandle:
        raise NodeOnly("watch() is the node's: its route is forwarded to it")

    def observe(self, sink: ObserveSink, name: str) -> WatchHandle:
        raise NodeOnly("observe() is the node's: its route is forwarded to it")

    def on_applied(self, observer: Callable[[int, tuple[Event, ...]], None]
                   ) -> Callable[[], None]:
        raise NodeOnly("on_applied() is the node's")
