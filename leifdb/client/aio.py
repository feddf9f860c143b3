"""The async client, for Twisted and asyncio programs alike (via txaio): the generators of
``leifdb.client.protocol`` driven by coroutines. The HTTP transport is Twisted's ``Agent``
on Twisted and a minimal HTTP/1.1 client on asyncio streams (``leifdb.client.transports``):
no dependency beyond what the server needs.

On Twisted, call the coroutines inside ``defer.ensureDeferred`` (or ``pytest_twisted``'s
``ensureDeferred`` tests); on asyncio, await them in a running loop. Methods and results
are those of the blocking ``Client``; ``watch`` and ``observe`` are async iterators, and
``keep_alive`` runs a lease's keepalives in the background (``AsyncLeaseKeeper``)."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable, Iterable

import txaio
import txaio.aio
import txaio.tx
from twisted.internet import defer
from twisted.internet.defer import Deferred

from leifdb.client.cluster import (
    add_member_request, members_steps, promote_member_request, remove_member_request,
    transfer_leader_request,
)
from leifdb.client.coordination import (
    ObserveCursor, Renewed, campaign_request, grant_request, keepalive_request, keepalive_steps,
    leader_request, lease_info_request, leases_request, lock_holder_request, lock_request,
    proclaim_request, resign_request, revoke_request,
)
from leifdb.client.protocol import (
    ConnectFailed, Emit, Endpoints, FenceLike, NoAnswer, Open, Read, RetryPolicy, Sleep,
    WatchCursor, delete_request, execute, get_request, health_request,
    list_request, put_request, txn_request, watch_steps,
)
from leifdb.client.transports import (
    AsyncioTransport, Stream, TwistedTransport, default_reactor,
)
from leifdb.client.snapshot import (
    SnapshotInfo, SnapshotTarget, SnapshotWriter, snapshot_request, snapshot_steps,
)
from leifdb.client.types import (
    Event, Holder, Item, LeaderChange, Lease, Members, Page, Status, TxnResult, WriteResult,
)

__all__ = ["AsyncClient", "AsyncLeaseKeeper", "AsyncioTransport", "TwistedTransport"]

def _detect_framework() -> str:
    """txaio's explicit choice if the program made one, else asyncio inside a running
    asyncio loop, else Twisted."""
    if txaio.using_twisted:
        return "twisted"
    if txaio.using_asyncio:
        return "asyncio"
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "twisted"
    return "asyncio"


class AsyncClient:
    """The async LeifDB client, for Twisted or asyncio: ``framework="twisted"`` or
    ``"asyncio"``, or None to follow txaio's choice (``txaio.use_twisted()`` /
    ``use_asyncio()``) or else the running loop. The client uses txaio's per-loop API
    (``txaio.tx`` / ``txaio.aio``), so it never changes txaio's global choice; the
    transport (treq or asyncio streams) follows the framework unless one is given."""

    def __init__(self, endpoints: Iterable[str] | str | None = None, *,
                 timeout: float = 10.0, policy: RetryPolicy | None = None,
                 transport: Any = None, framework: str | None = None) -> None:
        if framework is None:
            framework = _detect_framework()
        if framework not in ("twisted", "asyncio"):
            raise ValueError(f"framework: 'twisted' or 'asyncio', not {framework!r}")
        self.framework = framework
        self.endpoints = Endpoints(endpoints)
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        if transport is None:
            transport = TwistedTransport() if framework == "twisted" else AsyncioTransport()
        self.transport = transport

    def _txaio(self) -> Any:
        """txaio's API bound to this client's framework and loop."""
        if self.framework == "asyncio":
                return txaio.aio.with_config(loop=asyncio.get_running_loop())
        return txaio.tx.with_config(loop=default_reactor())

    async def _sleep(self, seconds: float) -> None:
        await self._txaio().sleep(seconds)

    def _spawn(self, coro: Any) -> Any:
        """Run ``coro`` in the background on this client's framework."""
        if self.framework == "asyncio":
            return asyncio.ensure_future(coro)
        return defer.ensureDeferred(coro)

    async def _drive(self, steps: Any, on_renewed: Callable[[Lease], None] | None = None,
                     stopped: Callable[[], bool] | None = None) -> Any:
        """Do the I/O a ``Send``/``Sleep`` generator asks for; its return value (None once
        ``stopped()`` is true)."""
        reply: Any = None
        try:
            while stopped is None or not stopped():
                action = steps.send(reply)
                reply = None
                if isinstance(action, Sleep):
                    await self._sleep(action.seconds)
                elif isinstance(action, Renewed):
                    if on_renewed is not None:
                        on_renewed(action.lease)
                else:
                    try:
                        reply = await self.transport.send(action)
                    except (ConnectFailed, NoAnswer) as e:
                        reply = e
        except StopIteration as done:
            return done.value
        return None

    async def _run(self, request: Any, url: str | None = None) -> Any:
        return await self._drive(execute(request, self.endpoints, self.policy, self.timeout,
                                         url))

    async def get(self, key: str, *, stale: bool = False) -> Item | None:
        return await self._run(get_request(key, stale=stale))

    async def put(self, key: str, value: str, *, prev: str | None = None,
                  if_match: int | None = None, create: bool = False, lease: int = 0,
                  ttl: float | str | None = None,
                  fence: FenceLike | None = None) -> WriteResult:
        return await self._run(put_request(key, value, prev=prev, if_match=if_match,
                                           create=create, lease=lease, ttl=ttl, fence=fence))

    async def delete(self, key: str, *, prev: str | None = None,
                     if_match: int | None = None,
                     fence: FenceLike | None = None) -> WriteResult:
        return await self._run(delete_request(key, prev=prev, if_match=if_match, fence=fence))

    # --- leases --------------------------------------------------------------------------

    async def grant(self, ttl: float | str) -> Lease:
        return await self._run(grant_request(ttl))

    async def keepalive(self, lease_id: int) -> Lease:
        return await self._run(keepalive_request(lease_id))

    async def lease_info(self, lease_id: int) -> Lease:
        return await self._run(lease_info_request(lease_id))

    async def leases(self) -> list[Lease]:
        return await self._run(leases_request())

    async def revoke(self, lease_id: int) -> WriteResult:
        return await self._run(revoke_request(lease_id))

    def keep_alive(self, lease: Lease | int, *, interval: float | None = None,
                   on_renew: Callable[[Lease], None] | None = None) -> AsyncLeaseKeeper:
        """Start keeping ``lease`` alive in the background (call it from a coroutine); see
        ``AsyncLeaseKeeper``. ``async with client.keep_alive(lease) as keeper:`` stops it
        on leaving."""
        keeper = AsyncLeaseKeeper(self, lease, interval=interval, on_renew=on_renew)
        keeper.start()
        return keeper

    # --- locks and elections ---------------------------------------------------------------

    async def lock(self, name: str, lease: int, *, value: str = "",
                   timeout: float | str | None = None) -> Holder:
        return await self._run(lock_request(name, lease, value=value, timeout=timeout))

    async def unlock(self, holder: Holder) -> WriteResult:
        return await self.delete(holder.key)

    async def lock_holder(self, name: str, *, stale: bool = False) -> Holder | None:
        return await self._run(lock_holder_request(name, stale=stale))

    async def campaign(self, name: str, lease: int, value: str, *,
                       timeout: float | str | None = None) -> Holder:
        return await self._run(campaign_request(name, lease, value, timeout=timeout))

    async def leader(self, name: str, *, stale: bool = False) -> Holder | None:
        return await self._run(leader_request(name, stale=stale))

    async def proclaim(self, name: str, token: int, value: str) -> Holder:
        return await self._run(proclaim_request(name, token, value))

    async def resign(self, name: str, token: int) -> WriteResult:
        return await self._run(resign_request(name, token))

    def observe(self, name: str, *, stale: bool = False) -> AsyncIterator[LeaderChange]:
        """An async iterator of ``LeaderChange``: election ``name``'s leader at once, then
        at every change of leader or of its value; reconnects by itself. ``stale``: from
        any node's own state."""
        return self._stream(ObserveCursor(name, stale=stale))

    async def list_page(self, prefix: str = "", *, start_after: str | None = None,
                        limit: int | None = None, stale: bool = False) -> Page:
        return await self._run(list_request(prefix, start_after=start_after, limit=limit,
                                            stale=stale))

    async def list(self, prefix: str = "", *, stale: bool = False) -> list[Item]:
        items: list[Item] = []
        start_after = None
        while True:
            page = await self.list_page(prefix, start_after=start_after, stale=stale)
            items.extend(page.items)
            if not page.more or not page.next_start_after:
                return items
            start_after = page.next_start_after

    async def txn(self, txn: dict[str, Any] | None = None, *, compare: list | None = None,
                  success: list | None = None, failure: list | None = None,
                  stale: bool = False) -> TxnResult:
        body = dict(txn) if txn is not None else {
            "compare": compare or [], "success": success or [], "failure": failure or []}
        return await self._run(txn_request(body, stale=stale))

    # --- the cluster ----------------------------------------------------------------------

    async def members(self) -> Members:
        return await self._drive(members_steps(self.endpoints, self.policy, self.timeout))

    async def add_member(self, member_id: str, raft_address: str,
                         http_address: str = "") -> Members:
        return await self._run(add_member_request(member_id, raft_address, http_address))

    async def promote_member(self, member_id: str) -> Members:
        return await self._run(promote_member_request(member_id))

    async def remove_member(self, member_id: str, *, force: bool = False) -> Members:
        return await self._run(remove_member_request(member_id, force=force))

    async def transfer_leader(self, to: str) -> str:
        return await self._run(transfer_leader_request(to))

    async def status(self, endpoint: str | None = None) -> Status:
        return await self._run(health_request(), url=endpoint or self.endpoints.urls[0])

    async def snapshot(self, dest: SnapshotTarget, *, stale: bool = False) -> SnapshotInfo:
        """Download a backup into ``dest`` (a path, replaced atomically, or an open binary
        file); see ``Client.snapshot``. Writing to ``dest`` blocks the loop briefly per
        chunk (64 KiB at most), as local file writes do."""
        writer = SnapshotWriter(dest)
        steps = snapshot_steps(snapshot_request(stale=stale), self.endpoints, self.policy,
                               self.timeout)
        stream: Stream | None = None
        reply: Any = None
        try:
            while True:
                action = steps.send(reply)
                reply = None
                if isinstance(action, Open):
                    if stream is not None:
                        stream.close()
                        stream = None
                    try:
                        reply, stream = await self.transport.open(action)
                    except (ConnectFailed, NoAnswer) as e:
                        reply = e
                elif isinstance(action, Read):
                    reply = await stream.read() if stream is not None else b""
                elif isinstance(action, Emit):
                    for chunk in action.events:
                        writer.write(chunk)
                elif isinstance(action, Sleep):
                    await self._sleep(action.seconds)
        except StopIteration as done:
            info: SnapshotInfo = done.value
        except BaseException:
            writer.discard()
            raise
        finally:
            steps.close()
            if stream is not None:
                stream.close()
        writer.commit()
        return info

    def watch(self, key: str, *, prefix: bool = False, prev: bool = False,
              start_revision: int | None = None, stale: bool = False) -> AsyncIterator[Event]:
        """An async iterator of ``Event`` (``async for event in client.watch(...)``);
        reconnects by itself, raises ``Compacted``. ``aclose()`` it to stop early."""
        return self._stream(WatchCursor(key, prefix=prefix, prev=prev,
                                        start_revision=start_revision, stale=stale))

    async def _stream(self, cursor: WatchCursor | ObserveCursor) -> AsyncIterator[Any]:
        steps = watch_steps(cursor, self.endpoints, self.policy, self.timeout)
        stream: Stream | None = None
        reply: Any = None
        try:
            while True:
                action = steps.send(reply)
                reply = None
                if isinstance(action, Open):
                    if stream is not None:
                        stream.close()
                        stream = None
                    try:
                        reply, stream = await self.transport.open(action)
                    except (ConnectFailed, NoAnswer) as e:
                        reply = e
                elif isinstance(action, Read):
                    reply = await stream.read() if stream is not None else b""
                elif isinstance(action, Emit):
                    for event in action.events:
                        yield event
                elif isinstance(action, Sleep):
                    await self._sleep(action.seconds)
        finally:
            steps.close()
            if stream is not None:
                stream.close()


class AsyncLeaseKeeper:
    """Keeps a lease alive in the background (``AsyncClient.keep_alive``): a keepalive at
    once, then every ``interval`` (a third of the TTL by default), retried within the TTL
    when the cluster is unreachable or the outcome unknown (see
    ``leifdb.client.coordination.keepalive_steps``).

    The lease's loss is surfaced, never hidden: once the cluster says it is gone
    (``LeaseNotFound``) or no keepalive was acknowledged within its TTL (``LeaseExpired``),
    renewing stops, ``lost`` holds the error, ``check()`` raises it and ``wait_lost()``
    returns it. ``close()`` stops renewing (it does not revoke the lease)."""

    def __init__(self, client: AsyncClient, lease: Lease | int, *,
                 interval: float | None = None,
                 on_renew: Callable[[Lease], None] | None = None) -> None:
        self._client = client
        self.lease_id = lease.id if isinstance(lease, Lease) else int(lease)
        self.lease: Lease | None = lease if isinstance(lease, Lease) else None
        self.lost: Exception | None = None
        self._interval = interval
        self._on_renew = on_renew
        self._remaining = lease.remaining if isinstance(lease, Lease) else None
        self._task: Any = None
        self._closing = False
        self._finished = False
        self._waiters: list[Any] = []

    def start(self) -> AsyncLeaseKeeper:
        if self._task is None:
            steps = keepalive_steps(self.lease_id, self._client.endpoints, self._client.policy,
                                    self._client.timeout, interval=self._interval,
                                    remaining=self._remaining)
            self._task = self._client._spawn(self._loop(steps))
        return self

    @property
    def running(self) -> bool:
        return self._task is not None and not self._finished

    def _renewed(self, lease: Lease) -> None:
        self.lease = lease
        if self._on_renew is not None:
            self._on_renew(lease)

    async def _loop(self, steps: Any) -> None:
        try:
            await self._client._drive(steps, self._renewed, lambda: self._closing)
        except (asyncio.CancelledError, defer.CancelledError):
            if not self._closing:
                raise
        except Exception as e:  # noqa: BLE001 - surfaced through lost/check/wait_lost
            self.lost = e
        finally:
            steps.close()
            self._finished = True
            waiters, self._waiters = self._waiters, []
            api = self._client._txaio()
            for waiter in waiters:
                if not api.is_called(waiter):  # a waiter cancelled meanwhile
                    api.resolve(waiter, None)

    async def wait_lost(self) -> Exception | None:
        """Wait until renewing stopped: the loss (or None if ``close()`` stopped it)."""
        if not self._finished:
            waiter = self._client._txaio().create_future()
            self._waiters.append(waiter)
            await waiter
        return self.lost

    def check(self) -> None:
        """Raise the loss of the lease, if it was lost."""
        if self.lost is not None:
            raise self.lost

    async def close(self) -> None:
        """Stop renewing (an in-flight keepalive is abandoned)."""
        if self._task is None or self._finished:
            return
        self._closing = True
        if isinstance(self._task, Deferred):
            self._task.addErrback(lambda failure: failure.trap(defer.CancelledError))
        self._task.cancel()
        await self.wait_lost()

    async def __aenter__(self) -> AsyncLeaseKeeper:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
