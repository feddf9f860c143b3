"""Linearizable and stale reads, redirects to the leader, and what clients learn when the
cluster cannot answer (503, 504): the status codes and whether the write was applied."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred

from leifdb.errors import NotLeaderError, OutcomeUnknown, Unavailable
from leifdb.http.failures import redirect as _redirect
from leifdb.http.failures import shield as _shield
from leifdb.kv.commands import Put
from tests.http.client import Client, assert_json_error


def test_reads_wait_for_the_read_barrier_by_default():
    client = Client()
    client.service.set("k", "v")
    client.service.hold = True
    pending = client.start("GET", "/db/k")
    assert not pending.done
    assert client.service.barriers == 1
    client.service.set("k", "newer")  # applied before the read point is reached
    client.service.pending.pop().callback(None)
    reply = client.finish(pending)
    assert reply.code == 200 and reply.json()["value"] == "newer"


def test_explicit_linearizable_is_the_default():
    client = Client()
    client.service.set("k", "v")
    assert client.get("/db/k?consistency=linearizable").code == 200
    assert client.service.barriers == 1


def test_stale_read_skips_the_barrier():
    client = Client()
    client.service.set("k", "v")
    client.service.read_error = Unavailable("no quorum")
    reply = client.get("/db/k?consistency=stale")
    assert reply.code == 200 and reply.json()["value"] == "v"
    assert client.service.barriers == 0


def test_range_reads_follow_the_same_rule():
    client = Client()
    client.service.set("k", "v")
    client.service.read_error = Unavailable("no quorum")
    assert_json_error(client.get("/db?prefix=k"), 503)
    assert client.get("/db?prefix=k&consistency=stale").json()["items"][0]["key"] == "k"


@pytest.mark.parametrize("path", ["/db/k?consistency=eventual", "/db?consistency=",
                                  "/db/k?consistency=STALE"])
def test_unknown_consistency_is_400(path):
    client = Client()
    assert_json_error(client.get(path), 400)
    assert client.service.barriers == 0


def test_unavailable_linearizable_read_is_503_with_retry_after():
    client = Client()
    client.service.set("k", "v")
    client.service.read_error = Unavailable("no majority")
    reply = client.get("/db/k")
    body = assert_json_error(reply, 503)
    assert reply.header("Retry-After") == "1"
    assert "stale" in body["error"]


def test_linearizable_read_on_follower_redirects_to_leader():
    client = Client()
    client.service.read_error = NotLeaderError("10.0.0.2:8081")
    reply = client.get("/db/a/b?consistency=linearizable")
    assert reply.code == 307
    assert reply.header("Location") == "http://10.0.0.2:8081/db/a/b?consistency=linearizable"


def test_linearizable_read_without_any_leader_is_503():
    client = Client()
    client.service.read_error = NotLeaderError(None)
    reply = client.get("/db/k")
    assert_json_error(reply, 503)
    assert reply.header("Retry-After") == "1"


def test_write_on_follower_is_307_to_same_path_and_query_on_leader():
    client = Client()
    client.service.write_error = NotLeaderError("127.0.0.1:8081")
    reply = client.put("/db/config%2Fdb/url?value=a%2Bb&prev=x")
    body = assert_json_error(reply, 307)
    assert reply.header("Location") == "http://127.0.0.1:8081/db/config%2Fdb/url?value=a%2Bb&prev=x"
    assert body["applied"] is False
    assert body["leader"] == "http://127.0.0.1:8081"


class _RawTarget:
    def __init__(self, uri: bytes) -> None:
        self.uri = uri


@pytest.mark.parametrize("uri,location", [
    ("/db/é?v=ü".encode(), "http://leader:8080/db/%C3%A9?v=%C3%BC"),
    (b"/db/a%20b?value=x+y", "http://leader:8080/db/a%20b?value=x+y"),
    (b"/db/k?", "http://leader:8080/db/k?"),
    (b"http://proxy.example/db/k?x=1", "http://leader:8080/db/k?x=1"),
])
def test_redirect_location_keeps_the_target_and_encodes_raw_bytes(uri, location):
    error = _redirect(_RawTarget(uri), "leader:8080", "not the leader")
    assert error.status == 307
    assert error.headers["Location"] == location


def test_delete_on_follower_redirects_too():
    client = Client()
    client.service.write_error = NotLeaderError("127.0.0.1:8082")
    reply = client.delete("/db/k")
    assert reply.code == 307
    assert reply.header("Location") == "http://127.0.0.1:8082/db/k"


def test_write_without_known_leader_is_503_not_applied():
    client = Client()
    client.service.write_error = NotLeaderError(None)
    reply = client.put("/db/k?value=v")
    body = assert_json_error(reply, 503)
    assert body["applied"] is False
    assert reply.header("Retry-After") == "1"


def test_write_when_cluster_unavailable_is_503_not_applied():
    client = Client()
    client.service.write_error = Unavailable("no quorum")
    assert assert_json_error(client.put("/db/k?value=v"), 503)["applied"] is False


def test_write_with_unknown_outcome_is_504():
    client = Client()
    client.service.write_error = OutcomeUnknown("leadership lost")
    reply = client.delete("/db/k")
    assert assert_json_error(reply, 504)["applied"] == "unknown"


def test_write_answers_only_once_committed_and_applied():
    client = Client()
    client.service.hold = True
    pending = client.start("PUT", "/db/k?value=v")
    assert not pending.done
    assert client.service.writes == [Put("k", "v")]
    client.service.pending.pop().callback(None)
    assert client.finish(pending).json() == {"status": "Ok", "revision": 1, "lease": 0}


def test_shield_keeps_cancellation_away_from_the_node():
    inner: Deferred[int] = Deferred()
    outer = _shield(inner)
    outer.addErrback(lambda _: None)
    outer.cancel()
    assert not inner.called
    inner.callback(5)  # the node finishing later must not raise AlreadyCalledError
    assert inner.called


def test_shield_passes_results_and_failures():
    ok: Deferred[int] = Deferred()
    bad: Deferred[int] = Deferred()
    got: list[object] = []
    _shield(ok).addCallback(got.append)
    _shield(bad).addErrback(lambda f: got.append(f.type))
    ok.callback(1)
    bad.errback(OutcomeUnknown())
    assert got == [1, OutcomeUnknown]
