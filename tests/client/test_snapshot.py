"""Downloading a backup: the sans-IO steps (redirects, retries, the length and CRC-32C
checks), the atomic destination file, and the blocking, Twisted and asyncio clients and
``leifdb snapshot save|status`` against the real cluster."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from crc32c import crc32c

from leifdb.cli import EXIT_ERROR, EXIT_OK, main
from leifdb.client import (
    Client, NotFound, RetryPolicy, ServerError, SnapshotCorrupt, SnapshotInfo, Unavailable,
)
from leifdb.client.aio import AsyncClient
from leifdb.client.protocol import (
    ConnectFailed, Emit, Endpoints, NoAnswer, Open, Read, Response, Sleep,
)
from leifdb.client.snapshot import SnapshotWriter, snapshot_request, snapshot_steps
from leifdb.kv.store import KVStore
from leifdb.restore import inspect

BODY = b"a snapshot's bytes" * 1000


def ok(body: bytes = BODY, **headers: str) -> Response:
    found = {"content-length": str(len(body)),
             "x-leifdb-snapshot-crc32c": f"{crc32c(body):08x}",
             "x-leifdb-snapshot-revision": "42", "x-leifdb-snapshot-keys": "7",
             "x-leifdb-snapshot-leases": "1"}
    found.update(headers)
    return Response(200, {k: v for k, v in found.items() if v})


def drive(answers: list[Any], chunks: list[Any], **policy: Any) -> tuple[Any, list[Any], bytes]:
    """Run the steps: ``answers`` for each ``Open``, ``chunks`` for each ``Read`` (b""
    at the end). Returns (the result or the error raised, the actions, the bytes emitted)."""
    steps = snapshot_steps(snapshot_request(), Endpoints("h1:1,h2:2"),
                           RetryPolicy(rng=lambda: 0.0, **policy), 5.0)
    actions: list[Any] = []
    emitted = b""
    reply: Any = None
    try:
        while True:
            action = steps.send(reply)
            actions.append(action)
            reply = None
            if isinstance(action, Open):
                reply = answers.pop(0)
            elif isinstance(action, Read):
                reply = chunks.pop(0) if chunks else b""
            elif isinstance(action, Emit):
                emitted += b"".join(action.events)
    except StopIteration as done:
        return done.value, actions, emitted
    except Exception as e:  # noqa: BLE001 - the test looks at it
        return e, actions, emitted


def test_the_body_is_handed_over_and_checked() -> None:
    info, actions, emitted = drive([ok()], [BODY[:100], BODY[100:]])
    assert emitted == BODY
    assert info == SnapshotInfo(42, len(BODY), crc32c(BODY), 7, 1, "http://h1:1")
    first = actions[0]
    assert first.request.target == "/snapshot" and first.timeout > 100  # waits for encoding
    assert snapshot_request(stale=True).target == "/snapshot?consistency=stale"


def test_a_redirect_is_followed_and_503_or_no_connection_retried() -> None:
    moved = Response(307, {"location": "http://h2:2/snapshot"})
    info, actions, _ = drive([ConnectFailed("refused"), Response(503, {}), moved, ok()],
                             [BODY])
    assert isinstance(info, SnapshotInfo) and info.endpoint == "http://h2:2"
    opens = [a for a in actions if isinstance(a, Open)]
    assert [o.url for o in opens] == ["http://h1:1", "http://h2:2", "http://h1:1",
                                      "http://h2:2"]
    assert sum(isinstance(a, Sleep) for a in actions) == 2


def test_giving_up_and_other_answers_raise_at_once() -> None:
    error, _, _ = drive([NoAnswer("lost")] * 3, [], attempts=3)
    assert isinstance(error, Unavailable) and "gave up after 3" in str(error)
    error, _, _ = drive([Response(404, {}, b'{"error": "no such route"}')], [])
    assert isinstance(error, NotFound)  # a node older than backups


@pytest.mark.parametrize("chunks, error", [
    ([BODY[:-1] + b"!"], SnapshotCorrupt),       # a changed byte
    ([BODY + b"more"], SnapshotCorrupt),         # longer than announced
    ([BODY[:-5], NoAnswer("lost")], Unavailable),  # cut short
])
def test_a_body_that_does_not_match_raises(chunks, error) -> None:
    result, _, _ = drive([ok()], chunks)
    assert isinstance(result, error)


def test_an_answer_without_its_crc_is_a_server_error() -> None:
    result, _, _ = drive([ok(**{"x-leifdb-snapshot-crc32c": ""})], [BODY])
    assert isinstance(result, ServerError)


def test_a_path_is_replaced_only_by_a_whole_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "backup"
    path.write_bytes(b"old")
    writer = SnapshotWriter(path)
    writer.write(b"new, half")
    writer.discard()
    assert path.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [path]
    writer = SnapshotWriter(str(path))
    writer.write(b"new")
    writer.write(b" whole")
    assert path.read_bytes() == b"old"
    writer.commit()
    assert path.read_bytes() == b"new whole" and sorted(tmp_path.iterdir()) == [path]
    out = io.BytesIO()
    writer = SnapshotWriter(out)
    writer.write(b"x")
    writer.commit()
    assert out.getvalue() == b"x"


def test_a_failed_download_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "backup"
    path.write_bytes(b"old")
    client = Client("127.0.0.1:1", policy=RetryPolicy(attempts=1))
    with pytest.raises(Unavailable):
        client.snapshot(path)  # nothing listens on port 1
    assert path.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [path]


# -- the real cluster


def _store(data: bytes) -> KVStore:
    return KVStore.read_snapshot(io.BytesIO(data))[0]


@pytest.mark.cluster
def test_blocking_client_and_cli_save_a_snapshot_from_any_node(endpoints, tmp_path, capsys):
    client = Client(endpoints)
    p = f"s{uuid.uuid4().hex[:8]}/"
    written = client.put(p + "a", "1")
    for url in endpoints:
        path = tmp_path / f"from-{url.rpartition(':')[2]}"
        info = Client([url]).snapshot(path)
        assert info.revision >= written.revision and info.endpoint == url
        data = path.read_bytes()
        assert (len(data), crc32c(data)) == (info.size, info.crc32c)
        assert _store(data).get(p + "a").value == "1"  # linearizable: the write is in

    out = io.StringIO()
    path = tmp_path / "cli.snapshot"
    assert main(["--endpoints", endpoints[-1], "snapshot", "save", "--stale", str(path)],
                out=out) == EXIT_OK
    backup = inspect(path)
    assert out.getvalue() == (
        f"saved {path}: revision {backup.revision}, {backup.keys} keys, {backup.leases} "
        f"leases, {backup.size} bytes, crc32c {backup.crc32c:08x}\n")
    out = io.StringIO()
    assert main(["snapshot", "status", str(path)], out=out) == EXIT_OK
    assert "| REVISION | KEYS |" in out.getvalue()
    assert main(["--endpoints", endpoints[0], "snapshot", "save",
                 str(tmp_path / "no" / "such" / "dir")]) == EXIT_ERROR
    assert capsys.readouterr().err.startswith("leifdb: error: cannot write")


@pytest.mark.cluster
@pytest_twisted.ensureDeferred
async def test_twisted_client_saves_into_an_open_file(endpoints) -> None:
    client = AsyncClient(endpoints)
    written = await client.put(f"t{uuid.uuid4().hex[:8]}", "v")
    out = io.BytesIO()
    info = await client.snapshot(out)
    assert info.revision >= written.revision and crc32c(out.getvalue()) == info.crc32c
    assert _store(out.getvalue()).applied_index == info.revision


@pytest.mark.cluster
def test_asyncio_client_saves_to_a_path(endpoints, tmp_path) -> None:
    async def scenario() -> SnapshotInfo:
        return await AsyncClient(endpoints).snapshot(tmp_path / "a.snapshot", stale=True)

    info = asyncio.run(scenario())
    assert inspect(tmp_path / "a.snapshot").crc32c == info.crc32c
