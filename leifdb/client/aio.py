"""The async client, for Twisted and asyncio programs alike (via txaio): the generators of
``leifdb.client.protocol`` driven by coroutines. The HTTP transport is Twisted's ``Agent``
on Twisted and a minimal HTTP/1.1 client on asyncio streams: no dependency beyond what the
server needs.

On Twisted, call the coroutines inside ``defer.ensureDeferred`` (or ``pytest_twisted``'s
``ensureDeferred`` tests); on asyncio, await them in a running loop. Methods and results
are those of the blocking ``Client``; ``watch`` and ``observe`` are async iterators, and
``keep_alive`` runs a lease's keepalives in the background (``AsyncLeaseKeeper``)."""

from __future__ import annotations

import asyncio
from io import BytesIO
from typing import Any, AsyncIterator, Callable, Iterable
from urllib.parse import urlsplit

import txaio
import txaio.aio
import txaio.tx
from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

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
    ConnectFailed, Emit, Endpoints, FenceLike, NoAnswer, Open, Read, Response, RetryPolicy,
    Send, Sleep, WatchCursor, delete_request, execute, get_request, health_request,
    list_request, put_request, txn_request, watch_steps,
)
from leifdb.client.snapshot import (
    SnapshotInfo, SnapshotTarget, SnapshotWriter, snapshot_request, snapshot_steps,
)
from leifdb.client.types import (
    Event, Holder, Item, LeaderChange, Lease, Members, Page, Status, TxnResult, WriteResult,
)

__all__ = ["AsyncClient", "AsyncLeaseKeeper", "AsyncioTransport", "TwistedTransport"]

USER_AGENT = "leifdb-client"


class _Stream:
    """An open response body, read chunk by chunk."""

    async def read(self) -> bytes | Exception:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        pass


# --- Twisted -------------------------------------------------------------------------

def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class TwistedTransport:
    """HTTP with ``twisted.web.client.Agent`` on the running reactor. A fresh connection
    per request: Twisted's pool resends a request whose pooled connection dropped, which a
    write must not be. A connect that fails or times out is ``ConnectFailed`` (nothing
    sent); anything after that is ``NoAnswer``."""

    def __init__(self, reactor: Any = None, connect_timeout: float = 5.0) -> None:
        self._reactor = reactor or _reactor()
        self._agent = Agent(self._reactor, connectTimeout=connect_timeout,
                            pool=HTTPConnectionPool(self._reactor, persistent=False))

    async def _start(self, action: Send | Open) -> Any:
        request = action.request
        headers = Headers({"User-Agent": [USER_AGENT], "Accept": ["application/json"]})
        for name, value in request.headers:
            headers.addRawHeader(name, value)
        body = FileBodyProducer(BytesIO(request.body)) if request.body is not None else None
        d = self._agent.request(request.method.encode("ascii"),
                                (action.url + request.target).encode("ascii"), headers, body)
        d.addTimeout(action.timeout, self._reactor)
        try:
            return await d
        except (ierror.ConnectError, ierror.DNSLookupError,
                ierror.ConnectingCancelledError) as e:
            raise ConnectFailed(f"cannot connect: {e}") from None
        except defer.CancelledError:
            raise  # the caller gave up (a keeper closing), not the network
        except Exception as e:  # TimeoutError, ResponseNeverReceived, ResponseFailed...
            raise NoAnswer(f"{type(e).__name__}: {e}") from None

    @staticmethod
    def _headers(resp: Any) -> dict[str, str]:
        headers = {k.decode().lower(): v[-1].decode("latin-1")
                   for k, v in resp.headers.getAllRawHeaders()}
        if isinstance(resp.length, int):  # Twisted keeps Content-Length out of the headers
            headers.setdefault("content-length", str(resp.length))
        return headers

    async def _body(self, resp: Any, timeout: float) -> bytes:
        """The whole body (``readBody`` without its deprecation warning)."""
        done: Deferred[Any] = Deferred()
        chunks: list[bytes] = []
        collector = _Collector(chunks, done)
        resp.deliverBody(collector)
        done.addTimeout(timeout, self._reactor)
        try:
            (reason,) = await done
        except defer.CancelledError:
            if collector.transport is not None:
                collector.transport.stopProducing()
            raise
        except Exception as e:
            if collector.transport is not None:
                collector.transport.stopProducing()
            raise NoAnswer(f"answer cut short: {type(e).__name__}") from None
        if not reason.check(ResponseDone, PotentialDataLoss):
            raise NoAnswer(f"answer cut short: {reason.value!r}")
        return b"".join(chunks)

    async def send(self, action: Send) -> Response:
        resp = await self._start(action)
        return Response(resp.code, self._headers(resp), await self._body(resp, action.timeout))

    async def open(self, action: Open) -> tuple[Response, _Stream | None]:
        resp = await self._start(action)
        if resp.code != 200:
            body = await self._body(resp, action.timeout)
            return Response(resp.code, self._headers(resp), body), None
        return Response(200, self._headers(resp)), _TwistedStream(resp)


class _Collector(Protocol):
    def __init__(self, chunks: list[bytes], done: Deferred[Any]) -> None:
        self._chunks = chunks
        self._done = done

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        if not self._done.called:
            self._done.callback([reason])  # a Failure given to callback would errback


class _BodyProtocol(Protocol):
    def __init__(self, stream: _TwistedStream) -> None:
        self._stream = stream

    def dataReceived(self, data: bytes) -> None:
        self._stream.put(data)

    def connectionLost(self, reason: Any = None) -> None:
        self._stream.put(NoAnswer(f"stream ended: {reason.value!r}" if reason else "ended"))


class _TwistedStream(_Stream):
    def __init__(self, resp: Any) -> None:
        self._chunks: list[bytes | Exception] = []
        self._waiter: Deferred[None] | None = None
        self._protocol = _BodyProtocol(self)
        resp.deliverBody(self._protocol)

    def put(self, item: bytes | Exception) -> None:
        self._chunks.append(item)
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.callback(None)

    async def read(self) -> bytes | Exception:
        while not self._chunks:
            self._waiter = Deferred()
            await self._waiter
        item = self._chunks.pop(0)
        if isinstance(item, Exception):
            self._chunks.insert(0, item)
        return item

    def close(self) -> None:
        transport = getattr(self._protocol, "transport", None)
        if transport is not None:
            transport.stopProducing()


# --- asyncio (streams) ---------------------------------------------------------------

class AsyncioTransport:
    """A minimal HTTP/1.1 client on asyncio streams (``Connection: close``; Content-Length,
    chunked or read-to-end bodies): enough for LeifDB's API, without a dependency."""

    async def _start(self, action: Send | Open) -> tuple[Any, Any, int, dict[str, str]]:
        parts = urlsplit(action.url)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port or 80), action.timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise ConnectFailed(f"cannot connect: {e!r}") from None
        request = action.request
        lines = [f"{request.method} {request.target} HTTP/1.1", f"Host: {parts.netloc}",
                 f"User-Agent: {USER_AGENT}", "Accept: application/json", "Connection: close",
                 f"Content-Length: {len(request.body or b'')}"]
        lines += [f"{k}: {v}" for k, v in request.headers]
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") +
                         (request.body or b""))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), action.timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            writer.close()
            raise NoAnswer(f"{type(e).__name__}: {e}") from None
        except asyncio.CancelledError:
            writer.close()
            raise
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return reader, writer, int(status_line.split()[1]), headers

    async def send(self, action: Send) -> Response:
        reader, writer, status, headers = await self._start(action)
        stream = _AsyncioStream(reader, writer, headers)
        body = b""
        try:
            while True:
                chunk = await asyncio.wait_for(stream.read(), action.timeout)
                if isinstance(chunk, Exception):
                    if stream.complete:
                        break
                    raise chunk
                body += chunk
        except asyncio.TimeoutError:
            raise NoAnswer("timed out reading the answer") from None
        finally:
            stream.close()
        return Response(status, headers, body)

    async def open(self, action: Open) -> tuple[Response, _Stream | None]:
        reader, writer, status, headers = await self._start(action)
        if status != 200:
            response = await self._rest(reader, writer, status, headers)
            return response, None
        return Response(200, headers), _AsyncioStream(reader, writer, headers)

    async def _rest(self, reader: Any, writer: Any, status: int,
                    headers: dict[str, str]) -> Response:
        stream = _AsyncioStream(reader, writer, headers)
        body = b""
        while True:
            chunk = await stream.read()
            if isinstance(chunk, Exception):
                break
            body += chunk
        stream.close()
        return Response(status, headers, body)


class _AsyncioStream(_Stream):
    def __init__(self, reader: Any, writer: Any, headers: dict[str, str]) -> None:
        self._reader = reader
        self._writer = writer
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left = int(length) if length is not None and not self._chunked else None
        self.complete = False

    async def read(self) -> bytes | Exception:
        try:
            if self._chunked:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    self.complete = True
                    return NoAnswer("stream ended")
                data = await self._reader.readexactly(size + 2)
                return data[:-2]
            if self._left is not None:
                if self._left == 0:
                    self.complete = True
                    return NoAnswer("stream ended")
                data = await self._reader.read(min(self._left, 65536))
                if not data:
                    return NoAnswer("answer cut short")
                self._left -= len(data)
                return data
            data = await self._reader.read(65536)
            if not data:
                self.complete = True
                return NoAnswer("stream ended")
            return data
        except (OSError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            return NoAnswer(f"{type(e).__name__}: {e}")

    def close(self) -> None:
        self._writer.close()


# --- the client ----------------------------------------------------------------------

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
        return txaio.tx.with_config(loop=_reactor())

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
        stream: _Stream | None = None
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
        stream: _Stream | None = None
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
