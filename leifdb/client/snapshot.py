"""Downloading a backup (``GET /snapshot``), without I/O: the policy both clients run.

``snapshot_steps`` yields ``Open`` until a node answers 200 (following 307, retrying
503s, 504s, refused connections and unanswered requests with backoff, like any read),
then ``Read`` for the body and ``Emit([chunk])`` for each piece the caller must keep. It
checks every byte against the length and CRC-32C (Castagnoli, the storage's checksum)
the headers announced and returns a ``SnapshotInfo``; a body that does not match raises
``SnapshotCorrupt``, one cut short ``Unavailable``: either way the caller must not keep
what it wrote. A download cut short is not resumed (start again).

``SnapshotWriter`` is where the clients write a download given a path: a temporary file
beside it, fsynced and renamed over the path only once the whole body checked out.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Union
from urllib.parse import urlsplit

from crc32c import crc32c

from leifdb.client.errors import ClientError, NotLeader, ServerError, Unavailable
from leifdb.client.protocol import (
    ConnectFailed, Emit, Endpoints, NoAnswer, Open, Read, Request, Response, RetryPolicy,
    Sleep, Step, interpret, with_query,
)

__all__ = ["CRC_HEADER", "SNAPSHOT_WAIT_SECONDS", "SnapshotCorrupt", "SnapshotInfo",
           "SnapshotTarget", "SnapshotWriter", "snapshot_request", "snapshot_steps"]

CRC_HEADER = "x-leifdb-snapshot-crc32c"
REVISION_HEADER = "x-leifdb-snapshot-revision"
KEYS_HEADER = "x-leifdb-snapshot-keys"
LEASES_HEADER = "x-leifdb-snapshot-leases"
# The node encodes the whole snapshot before its first byte goes out (a second or so per
# million keys): this much longer than a request's timeout is allowed for the answer.
SNAPSHOT_WAIT_SECONDS = 120.0

# Where a download goes: a path (written atomically) or an open binary file.
SnapshotTarget = Union[str, os.PathLike, BinaryIO]


class SnapshotCorrupt(ClientError):
    """The downloaded snapshot does not match the length or CRC-32C its node announced:
    it was damaged on the way. Nothing was kept (download it again)."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A downloaded snapshot: the ``revision`` it was taken at (it holds every write up
    to it), its ``size`` and ``crc32c`` (checked), how many ``keys`` and ``leases`` it
    holds, and the ``endpoint`` that served it."""

    revision: int
    size: int
    crc32c: int
    keys: int
    leases: int
    endpoint: str

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "size": self.size,
                "crc32c": f"{self.crc32c:08x}", "keys": self.keys, "leases": self.leases,
                "endpoint": self.endpoint}


def snapshot_request(*, stale: bool = False) -> Request:
    """Linearizable by default: the snapshot holds every write acknowledged before it."""
    target = with_query("/snapshot", {"consistency": "stale" if stale else None})
    return Request("snapshot", "GET", target, leader=not stale, wait=SNAPSHOT_WAIT_SECONDS)


def _announced(resp: Response, url: str) -> tuple[int, int, int, int, int]:
    """``(size, crc32c, revision, keys, leases)`` from the headers of a 200."""
    headers = resp.headers
    try:
        return (int(headers["content-length"]), int(headers[CRC_HEADER], 16),
                int(headers[REVISION_HEADER]), int(headers.get(KEYS_HEADER, 0)),
                int(headers.get(LEASES_HEADER, 0)))
    except (KeyError, ValueError) as e:
        raise ServerError(f"{url}: a snapshot without its length, CRC-32C or revision "
                          f"({e!r})", status=200) from None


def _redirect(resp: Response) -> tuple[str, str] | None:
    """``(node URL, path and query)`` of a 307's ``Location``."""
    parts = urlsplit(resp.headers.get("location", ""))
    if parts.scheme != "http" or not parts.netloc:
        return None
    query = f"?{parts.query}" if parts.query else ""
    return f"http://{parts.netloc}", (parts.path or "/") + query


def snapshot_steps(request: Request, endpoints: Endpoints, policy: RetryPolicy,
                   timeout: float = 10.0) -> Step:
    """Download one snapshot: see the module docstring."""
    start = policy.clock()
    url = endpoints.first(request.leader)
    original = request
    failures = hops = 0
    while True:
        reply = yield Open(url, request, timeout + request.wait)
        if isinstance(reply, Response) and reply.status == 307:
            hop = _redirect(reply)
            hops += 1
            if hop is None or hops > policy.max_redirects:
                raise NotLeader(f"{url}: redirect not followed", status=307)
            url, target = hop
            endpoints.leader = url
            request = replace(request, target=target)
            continue
        if isinstance(reply, Response) and reply.status == 200:
            break
        if isinstance(reply, Response) and reply.status not in (503, 504):
            interpret(request, reply, url)  # raises the error the status means
            raise ServerError(f"{url}: unexpected answer {reply.status} to GET /snapshot",
                              status=reply.status)
        assert isinstance(reply, (Response, ConnectFailed, NoAnswer))
        failures += 1
        delay = policy.backoff(failures)
        if failures >= policy.attempts or policy.clock() - start + delay > policy.deadline:
            why = f"HTTP {reply.status}" if isinstance(reply, Response) else str(reply)
            raise Unavailable(f"{url}: {why} (gave up after {failures} tries)")
        yield Sleep(delay)
        endpoints.failed(url)
        url = endpoints.first(request.leader)
        request, hops = original, 0
    size, crc, revision, keys, leases = _announced(reply, url)
    received = running = 0
    while True:
        chunk = yield Read()
        if isinstance(chunk, Exception) or not chunk:
            break
        received += len(chunk)
        if received > size:
            raise SnapshotCorrupt(f"{url}: the snapshot is longer than the {size} bytes "
                                  "announced; nothing was kept")
        running = crc32c(chunk, running)
        yield Emit([chunk])
    if received < size:
        raise Unavailable(f"{url}: the download was cut short at {received} of {size} "
                          "bytes; nothing was kept, download it again")
    if running != crc:
        raise SnapshotCorrupt(f"{url}: the snapshot's CRC-32C is {running:08x}, not the "
                              f"{crc:08x} announced; nothing was kept, download it again")
    return SnapshotInfo(revision, size, crc, keys, leases, url)


class SnapshotWriter:
    """The destination of a download: ``write`` chunks, then ``commit`` (or ``discard``).

    Given a path, it writes ``<path>.part-<random>`` beside it, and ``commit`` fsyncs it,
    renames it over the path and fsyncs the directory: the path holds the old file or
    the whole new snapshot, never part of one. Given an open binary file, it writes to it
    (``discard`` leaves what was written: the caller owns that file)."""

    def __init__(self, target: SnapshotTarget) -> None:
        self._path: Path | None = None
        self._tmp: Path | None = None
        if isinstance(target, (str, os.PathLike)):
            self._path = Path(target)
            self._tmp = self._path.with_name(f"{self._path.name}.part-{secrets.token_hex(4)}")
            self._file: BinaryIO = open(self._tmp, "xb")
        else:
            self._file = target

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        if self._path is None or self._tmp is None:
            self._file.flush()
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
        os.replace(self._tmp, self._path)
        fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def discard(self) -> None:
        if self._tmp is None:
            return
        self._file.close()
        self._tmp.unlink(missing_ok=True)
