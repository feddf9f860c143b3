"""``GET /snapshot``: the store's snapshot streamed with its revision, CRC-32C and length
in the headers, after the read barrier; refusals as a read's; the temporary file is
closed whatever happens to the request."""

from __future__ import annotations

import io
from typing import Any

from crc32c import crc32c
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from leifdb.errors import NotLeaderError, Unavailable
from leifdb.http.snapshot import CHUNK_BYTES, _FileBody
from leifdb.kv.store import KVStore
from leifdb.service.api import CONSISTENCY_LINEARIZABLE
from leifdb.service.backup import Backup, SnapshotFile
from tests.http.client import Client, assert_json_error, raw_http
from tests.http.fakes import FakeService


class SnapshottingService(FakeService):
    """The fake service plus ``snapshot``: the real encoder (inline) over the fake's
    store, after the fake's read barrier. ``taken`` keeps every file handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: list[SnapshotFile] = []

    def snapshot(self, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[Any]:
        d = self._read(consistency, lambda: None)
        d.addCallback(lambda _: Backup(self.clock).take(lambda: self.store, lambda: b""))
        return d.addCallback(self._keep)

    def _keep(self, taken: SnapshotFile) -> SnapshotFile:
        self.taken.append(taken)
        return taken


def _client(keys: int = 5, value: str = "v") -> Client:
    service = SnapshottingService()
    for i in range(keys):
        service.set(f"key/{i:05d}", value)
    service.make_lease(10.0)
    return Client(service)


def _expected(service: FakeService) -> bytes:
    out = io.BytesIO()
    service.store.write_snapshot(out, b"")
    return out.getvalue()


def test_the_body_is_the_stores_snapshot_and_the_headers_say_what_it_is():
    client = _client()
    reply = client.get("/snapshot")
    assert reply.code == 200, reply.body
    assert reply.body == _expected(client.service)
    assert reply.header("Content-Type") == "application/octet-stream"
    assert reply.header("X-LeifDB-Snapshot-CRC32C") == f"{crc32c(reply.body):08x}"
    assert reply.header("X-LeifDB-Snapshot-Revision") == str(client.service.revision)
    assert reply.header("X-LeifDB-Snapshot-Keys") == "5"
    assert reply.header("X-LeifDB-Snapshot-Leases") == "1"
    assert reply.header("Content-Disposition") == (
        f'attachment; filename="leifdb-{client.service.revision}.snapshot"')
    restored, _ = KVStore.read_snapshot(io.BytesIO(reply.body))
    assert restored.range("") == client.service.store.range("")
    assert client.service.barriers == 1
    assert all(taken.file.closed for taken in client.service.taken)


def test_the_length_is_declared_so_the_body_is_not_chunked():
    client = _client()
    expected = _expected(client.service)
    raw = raw_http(client.resource, b"GET /snapshot HTTP/1.1\r\nHost: node\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\nContent-Length: %d\r\n" % len(expected) in head + b"\r\n"
    assert b"chunked" not in head and body == expected


def test_a_snapshot_many_chunks_long_streams_whole():
    client = _client(keys=40, value="x" * 10_000)
    reply = client.get("/snapshot")
    assert len(reply.body) > 5 * CHUNK_BYTES
    assert reply.body == _expected(client.service)
    assert client.service.taken[0].file.closed


def test_a_stale_snapshot_skips_the_barrier():
    client = _client()
    assert client.get("/snapshot?consistency=stale").code == 200
    assert client.service.barriers == 0
    assert_json_error(client.get("/snapshot?consistency=eventual"), 400)


def test_head_gets_the_headers_and_the_file_is_closed():
    client = _client()
    raw = raw_http(client.resource, b"HEAD /snapshot HTTP/1.1\r\nHost: node\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b""
    assert b"\r\nContent-Length: %d\r\n" % len(_expected(client.service)) in head + b"\r\n"
    assert client.service.taken[0].file.closed


def test_refusals_are_answered_as_for_a_read():
    client = _client()
    client.service.read_error = NotLeaderError("10.0.0.2:8080")
    reply = client.get("/snapshot?consistency=linearizable")
    assert reply.code == 307
    assert reply.header("Location") == "http://10.0.0.2:8080/snapshot?consistency=linearizable"
    client.service.read_error = NotLeaderError(None)
    assert_json_error(client.get("/snapshot"), 503)
    client.service.read_error = Unavailable("5 snapshots are already being taken")
    body = assert_json_error(client.get("/snapshot"), 503)
    assert "5 snapshots" in body["error"]
    assert client.service.taken == []


def test_a_snapshot_that_arrives_after_the_client_left_is_deleted():
    client = _client()
    client.service.hold = True
    stream_d = client.http.request("GET", "http://node.test/snapshot", unbuffered=True)
    client.flush()
    assert client.service.pending and client.service.taken == []
    client.agent.last.pump.clientIO.loseConnection()
    client.flush()
    client.service.hold = False
    client.service.pending.pop().callback(None)
    assert len(client.service.taken) == 1 and client.service.taken[0].file.closed
    stream_d.addErrback(lambda _: None)


class FakeRequest:
    """What ``_FileBody`` uses of a request; it asks for a pause after ``room`` writes."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.written: list[bytes] = []
        self.producer: Any = None
        self.finished: Deferred[None] = Deferred()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def notifyFinish(self) -> Deferred[None]:
        return self.finished

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if len(self.written) >= self.room:
            self.producer.pauseProducing()


def test_the_body_stops_at_a_pause_and_a_lost_client_closes_the_file():
    request = FakeRequest(room=1)
    file = io.BytesIO(b"a" * (2 * CHUNK_BYTES + 1))
    body = _FileBody(request, file)
    body.start()
    assert request.producer is body and [len(w) for w in request.written] == [CHUNK_BYTES]
    request.finished.errback(Failure(ConnectionLost()))
    assert file.closed and body.done.called and request.producer is None
    body.resumeProducing()  # a late resume writes nothing
    assert len(request.written) == 1


def test_the_body_goes_on_when_resumed_and_the_end_unregisters_and_closes():
    request = FakeRequest(room=1)
    file = io.BytesIO(b"a" * CHUNK_BYTES + b"bc")
    body = _FileBody(request, file)
    body.start()
    assert not body.done.called
    request.room = 100
    body.resumeProducing()
    assert request.written == [b"a" * CHUNK_BYTES, b"bc"] and request.producer is None
    assert file.closed and body.done.called
    body.stopProducing()  # a second end is harmless
    request.finished.callback(None)
