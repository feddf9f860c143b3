"""The async client's HTTP transports (``leifdb.client.aio``): Twisted's ``Agent`` on
Twisted, and a minimal HTTP/1.1 client on asyncio streams (no dependency beyond what the
server needs). Each does a protocol ``Send`` (the whole answer) or ``Open`` (a stream the
client reads with ``Read``)."""

from __future__ import annotations

import asyncio
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from leifdb.client.protocol import USER_AGENT, ConnectFailed, NoAnswer, Open, Response, Send

__all__ = ["AsyncioTransport", "Stream", "TwistedTransport", "default_reactor"]

class Stream:
    """An open response body, read chunk by chunk."""

    async def read(self) -> bytes | Exception:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        pass


# --- Twisted -------------------------------------------------------------------------

def default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class TwistedTransport:
    """HTTP with ``twisted.web.client.Agent`` on the running reactor. A fresh connection
    per request: Twisted's pool resends a request whose pooled connection dropped, which a
    write must not be. A connect that fails or times out is ``ConnectFailed`` (nothing
    sent); anything after that is ``NoAnswer``."""

    def __init__(self, reactor: Any = None, connect_timeout: float = 5.0) -> None:
        self._reactor = reactor or default_reactor()
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

    async def open(self, action: Open) -> tuple[Response, Stream | None]:
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


class _TwistedStream(Stream):
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

    async def open(self, action: Open) -> tuple[Response, Stream | None]:
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


class _AsyncioStream(Stream):
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
