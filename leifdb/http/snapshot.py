"""``GET /snapshot``: a consistent snapshot of the state machine, for backups.

Any node serves it, after the read barrier of a linearizable read (``consistency=stale``:
at once, from its own state). The body is the key-value snapshot format of
``leifdb.kv.snapshot`` (every key with its revision, create revision and lease, and the
lease table); the headers say what it is before the first byte comes: its revision (the
applied index it was taken at), its CRC-32C and its length. ``leifdb snapshot save``
downloads it, ``leifdb snapshot restore`` turns it into a new cluster's data directory.

The service encodes the snapshot into a temporary file off the reactor thread
(``leifdb.service.backup`` tells the cost); this module streams that file as a push
producer (chunks until the connection's buffer asks for a pause) and closes (deletes) it
at the end or when the client goes away.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Protocol

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from zope.interface import implementer

from leifdb.http.failures import read_failure, shield
from leifdb.http.params import parse_consistency
from leifdb.http.routing import Routes, accepts, api

__all__ = ["CHUNK_BYTES", "CRC_HEADER", "KEYS_HEADER", "LEASES_HEADER", "REVISION_HEADER",
           "SnapshotRoutes", "TakenSnapshot"]

REVISION_HEADER = b"X-LeifDB-Snapshot-Revision"
CRC_HEADER = b"X-LeifDB-Snapshot-CRC32C"
KEYS_HEADER = b"X-LeifDB-Snapshot-Keys"
LEASES_HEADER = b"X-LeifDB-Snapshot-Leases"
CHUNK_BYTES = 64 * 1024


class TakenSnapshot(Protocol):
    """What ``service.snapshot`` gives (``leifdb.service.backup.SnapshotFile``)."""

    file: BinaryIO
    size: int
    crc32c: int
    revision: int
    keys: int
    leases: int

    def close(self) -> None: ...


@implementer(IPushProducer)
class _FileBody:
    """Writes ``file`` to the response until the connection asks for a pause, and on
    again when it resumes; ``done`` fires (once) when it is all written or the
    connection went away. Closes the file either way."""

    def __init__(self, request: IRequest, file: BinaryIO) -> None:
        self._request = request
        self._file = file
        self._paused = False
        self._writing = False
        self.done: Deferred[None] = Deferred()

    def start(self) -> None:
        self._request.registerProducer(self, True)
        self._request.notifyFinish().addErrback(self._client_gone)
        self._write()

    def _write(self) -> None:
        if self._writing:
            return
        self._writing = True
        try:
            while not self._paused and not self.done.called:
                data = self._file.read(CHUNK_BYTES)
                if not data:
                    self._request.unregisterProducer()
                    self._end()
                    return
                self._request.write(data)
        finally:
            self._writing = False

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._write()

    def stopProducing(self) -> None:
        self._end()

    def _client_gone(self, failure: Failure) -> None:
        if getattr(self._request, "producer", None) is self:
            # The channel is gone already: only forget the producer (else twisted.web
            # logs "Producer was not unregistered").
            self._request.producer = None
        self._end()

    def _end(self) -> None:
        self._file.close()
        if not self.done.called:
            self.done.callback(None)


class SnapshotRoutes(Routes):
    """``GET /snapshot``."""

    @api.route("/snapshot", methods=["GET"], merge_slashes=False)
    @accepts("consistency")
    async def snapshot(self, request: IRequest) -> bytes | None:
        """A consistent snapshot of every key and lease, for backups.

        ---
        get:
          tags: [cluster]
          summary: Download a snapshot of the state machine (a backup)
          description: >-
            Any node answers, once it has applied every write committed before the
            request (as a linearizable read; `consistency=stale` answers from this
            node's state at once). The body is LeifDB's key-value snapshot format
            (binary: every key with its value, revision, create revision and lease, then
            the lease table, then a CRC-32 trailer); `X-LeifDB-Snapshot-Revision` is the revision
            it was taken at and `X-LeifDB-Snapshot-CRC32C` the CRC-32C of the whole body.
            `leifdb snapshot save FILE` downloads and checks it, `leifdb snapshot restore`
            makes a new cluster from it. Encoded off the reactor thread; one snapshot at
            a time per node.
          operationId: getSnapshot
          produces: [application/octet-stream, application/json]
          parameters:
            - Consistency
          responses:
            200:
              description: The snapshot.
              schema:
                type: string
                format: binary
              headers:
                X-LeifDB-Snapshot-Revision:
                  type: integer
                  format: int64
                  description: >-
                    The revision (applied index) the snapshot was taken at: it holds every
                    write up to it.
                X-LeifDB-Snapshot-CRC32C:
                  type: string
                  pattern: "^[0-9a-f]{8}$"
                  description: CRC-32C (Castagnoli) of the body, 8 hex digits.
                X-LeifDB-Snapshot-Keys:
                  type: integer
                  format: int64
                  description: How many keys it holds.
                X-LeifDB-Snapshot-Leases:
                  type: integer
                  format: int64
                  description: How many leases it holds.
                Content-Length:
                  type: integer
                  format: int64
                  description: The body's length in bytes.
            307: ReadRedirect
            400: BadRequest
            413: TooLarge
            500: InternalError
            503: ReadUnavailable
        """
        consistency = parse_consistency(self._query(request))
        taken = await self._take(request, consistency)
        try:
            request.setResponseCode(200)
            request.setHeader(b"Content-Type", b"application/octet-stream")
            request.setHeader(b"Content-Length", b"%d" % taken.size)
            request.setHeader(b"Content-Disposition",
                              b'attachment; filename="leifdb-%d.snapshot"' % taken.revision)
            request.setHeader(REVISION_HEADER, b"%d" % taken.revision)
            request.setHeader(CRC_HEADER, b"%08x" % taken.crc32c)
            request.setHeader(KEYS_HEADER, b"%d" % taken.keys)
            request.setHeader(LEASES_HEADER, b"%d" % taken.leases)
            if request.method == b"HEAD":
                return b""
            body = _FileBody(request, taken.file)
            body.start()
            await body.done
            return None
        finally:
            taken.close()

    async def _take(self, request: IRequest, consistency: str) -> TakenSnapshot:
        """The service's snapshot; its refusals answered as a read's. If the client goes
        away first, the snapshot is deleted once it arrives."""
        left: list[bool] = []

        def close_if_left(taken: Any) -> Any:
            if left and not isinstance(taken, Failure):
                taken.close()
            return taken

        d = maybeDeferred(self.service.snapshot, consistency)
        d.addBoth(close_if_left)
        try:
            return await shield(d)
        except CancelledError:
            left.append(True)
            raise
        except Exception as e:
            answer = read_failure(request, e)
            if answer is None:
                raise
            raise answer from None
