"""The sans-IO HTTP policy (``leifdb.client.protocol``) through the blocking ``Client``
with a scripted transport, an injected sleep, clock and rng: every status path, redirects,
backoff, and no retry of a write whose outcome is unknown."""

from __future__ import annotations

import json
from typing import Any

import pytest

from leifdb.client import (
    BadRequest, Client, Compacted, ConditionFailed, Item, NotFound, NotLeader,
    OutcomeUnknown, RetryPolicy, ServerError, TooLarge, Unavailable, WriteResult,
)
from leifdb.client.protocol import (
    ConnectFailed, Endpoints, NoAnswer, Response, Send, delete_request, get_request,
    list_request, normalize_endpoint, put_request, txn_request,
)

A, B, C = "http://a:1", "http://b:2", "http://c:3"


def reply(status: int, body: Any = None, **headers: str) -> Response:
    data = b"" if body is None else json.dumps(body).encode()
    return Response(status, {k.replace("_", "-").lower(): v for k, v in headers.items()}, data)


class Script:
    """A transport answering from a list (a Response or an exception to raise) and
    recording what was sent where."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[Send] = []

    def __call__(self, action: Send) -> Response:
        self.sent.append(action)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def urls(self) -> list[str]:
        return [a.url for a in self.sent]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client(script: Script, clock: Clock | None = None, rng: float = 1.0, **policy: Any
           ) -> Client:
    clock = clock or Clock()
    return Client([A, B, C], transport=script, sleep=clock.sleep,
                  policy=RetryPolicy(rng=lambda: rng, clock=clock, **policy))


OK_ITEM = {"key": "k", "value": "v", "revision": 7}


# --- requests -------------------------------------------------------------------------

def test_requests_are_built_as_the_api_wants() -> None:
    r = get_request("a/b c?")
    assert (r.method, r.target, r.leader, r.idempotent) == ("GET", "/db/a%2Fb%20c%3F", True, True)
    assert get_request("k", stale=True).target == "/db/k?consistency=stale"
    assert not get_request("k", stale=True).leader
    p = put_request("k", "v", prev="old")
    assert (p.method, json.loads(p.body), p.idempotent) == ("PUT", {"value": "v", "prev": "old"},
                                                            False)
    assert ("If-Match", '"5"') in put_request("k", "v", if_match=5).headers
    assert ("If-None-Match", "*") in put_request("k", "v", create=True).headers
    with pytest.raises(ValueError):
        put_request("k", "v", prev="x", create=True)
    d = delete_request("k")
    assert (d.method, d.body, d.idempotent) == ("DELETE", None, False)
    assert list_request("p/", start_after="p/a", limit=2).target == \
        "/db?prefix=p%2F&start_after=p%2Fa&limit=2"
    assert txn_request({"success": [{"op": "get", "key": "a"}]}).idempotent
    assert not txn_request({"success": [{"op": "put", "key": "a", "value": "1"}]}).idempotent


def test_endpoints_are_normalized() -> None:
    assert normalize_endpoint("127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert normalize_endpoint("http://h:1/") == "http://h:1"
    assert Endpoints("h:1, h:2").urls == ["http://h:1", "http://h:2"]
    with pytest.raises(ValueError):
        normalize_endpoint("https://h:1")
    with pytest.raises(ValueError):
        Endpoints([])


# --- successes ------------------------------------------------------------------------

def test_typed_results() -> None:
    s = Script(reply(200, OK_ITEM), reply(404, {"error": "key not found"}),
               reply(200, {"status": "Ok", "revision": 8}),
               reply(200, {"status": "Ok", "revision": 9}),
               reply(200, {"prefix": "", "items": [OK_ITEM], "more": False,
                           "next_start_after": None}, x_leifdb_revision="9"),
               reply(200, {"succeeded": True, "revision": 10, "results": [
                   {"op": "get", "key": "k", "item": OK_ITEM},
                   {"op": "range", "prefix": "", "items": [OK_ITEM], "more": False}]}))
    c = client(s)
    assert c.get("k") == Item("k", "v", 7)
    assert c.get("missing") is None
    assert c.put("k", "v") == WriteResult(8)
    assert c.delete("k") == WriteResult(9)
    page = c.list_page("")
    assert page.items == [Item("k", "v", 7)] and page.revision == 9 and not page.more
    t = c.txn(success=[{"op": "get", "key": "k"}])
    assert t.succeeded and t.revision == 10
    assert t.results[0]["item"] == Item("k", "v", 7)
    assert t.results[1]["items"] == [Item("k", "v", 7)]


def test_list_follows_pages() -> None:
    item2 = {"key": "k2", "value": "w", "revision": 8}
    s = Script(reply(200, {"prefix": "", "items": [OK_ITEM], "more": True,
                           "next_start_after": "k"}),
               reply(200, {"prefix": "", "items": [item2], "more": False,
                           "next_start_after": None}))
    assert [i.key for i in client(s).list("")] == ["k", "k2"]
    assert "start_after=k" in s.sent[1].request.target


# --- errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("status, error", [
    (400, BadRequest), (404, NotFound), (413, TooLarge), (500, ServerError), (418, ServerError),
])
def test_error_statuses(status: int, error: type) -> None:
    s = Script(reply(status, {"error": "nope"}))
    with pytest.raises(error, match="nope") as info:
        client(s).put("k", "v")
    assert info.value.status == status
    assert len(s.sent) == 1


def test_412_carries_the_current_item() -> None:
    s = Script(reply(412, {"error": "condition failed", "key": "k", "value": "now",
                           "revision": 4}),
               reply(412, {"error": "condition failed", "key": "k", "value": None,
                           "revision": None}))
    c = client(s)
    with pytest.raises(ConditionFailed) as info:
        c.put("k", "v", prev="old")
    assert info.value.current == Item("k", "now", 4)
    with pytest.raises(ConditionFailed) as info:
        c.delete("k", if_match=3)
    assert info.value.current is None


def test_410_is_compacted() -> None:
    s = Script(reply(410, {"error": "gone", "compact_revision": 50}))
    with pytest.raises(Compacted) as info:
        client(s).get("k")
    assert info.value.compact_revision == 50


def test_a_bad_200_body_is_a_server_error() -> None:
    with pytest.raises(ServerError):
        client(Script(reply(200, {"nope": 1}))).get("k")


# --- redirects ------------------------------------------------------------------------

def test_307_is_followed_and_the_leader_remembered() -> None:
    s = Script(reply(307, {"error": "not leader"}, location="http://b:2/db/k"),
               reply(200, {"status": "Ok", "revision": 3}),
               reply(200, {"status": "Ok", "revision": 4}),
               reply(200, OK_ITEM, ))
    c = client(s)
    assert c.put("k", "v").revision == 3
    assert s.urls == [A, B]
    assert s.sent[1].request.method == "PUT" and s.sent[1].request.body == s.sent[0].request.body
    c.put("k", "w")
    c.get("k")
    assert s.urls[2:] == [B, B]  # the leader first, for writes and linearizable reads


def test_stale_reads_do_not_go_to_the_leader() -> None:
    s = Script(reply(307, {}, location="http://b:2/db/k"), reply(200, {"status": "Ok",
                                                                       "revision": 3}),
               reply(200, OK_ITEM))
    c = client(s)
    c.put("k", "v")
    c.get("k", stale=True)
    assert s.urls == [A, B, A]


def test_too_many_redirects() -> None:
    loop = [reply(307, {}, location=f"http://{h}/db/k") for h in ("b:2", "c:3", "a:1", "b:2")]
    with pytest.raises(NotLeader):
        client(Script(*loop)).put("k", "v")
    with pytest.raises(NotLeader):
        client(Script(reply(307, {"error": "x"}))).get("k")  # no Location


# --- retries --------------------------------------------------------------------------

def test_503_and_refused_are_retried_with_backoff_on_the_next_endpoint() -> None:
    clock = Clock()
    s = Script(reply(503, {"error": "no leader", "applied": False}, retry_after="1"),
               ConnectFailed("refused"),
               reply(503, {"error": "no leader"}),
               reply(200, {"status": "Ok", "revision": 5}))
    c = client(s, clock, rng=1.0, base=0.1, cap=0.3)
    assert c.put("k", "v").revision == 5
    assert s.urls == [A, B, C, A]
    assert clock.sleeps == [0.1, 0.2, 0.3]  # doubling, capped


def test_jitter_is_between_half_and_all_of_the_backoff() -> None:
    clock = Clock()
    s = Script(ConnectFailed("refused"), ConnectFailed("refused"), reply(200, OK_ITEM))
    client(s, clock, rng=0.0, base=0.1).get("k")
    assert clock.sleeps == [0.05, 0.1]


def test_retries_end_after_attempts_or_deadline() -> None:
    s = Script(*[reply(503, {"error": "no leader"})] * 3)
    with pytest.raises(Unavailable, match="gave up after 3 tries") as info:
        client(s, attempts=3).put("k", "v")
    assert info.value.status == 503
    clock = Clock()
    s = Script(*[ConnectFailed("refused")] * 10)
    with pytest.raises(Unavailable, match="refused"):
        client(s, clock, base=1.0, cap=1.0, deadline=2.5).get("k")
    assert len(s.sent) == 3 and clock.now <= 2.5


def test_reads_are_retried_after_timeouts_lost_connections_and_504() -> None:
    s = Script(NoAnswer("timed out"), reply(504, {"error": "?"}), reply(200, OK_ITEM))
    assert client(s).get("k") == Item("k", "v", 7)
    assert len(s.sent) == 3
    ro = Script(NoAnswer("lost"), reply(200, {"succeeded": True, "revision": 1, "results": []}))
    assert client(ro).txn(success=[{"op": "get", "key": "k"}]).succeeded


@pytest.mark.parametrize("answer", [
    NoAnswer("timed out"), NoAnswer("connection lost"),
    reply(504, {"error": "may or may not", "applied": "unknown"}),
])
@pytest.mark.parametrize("call", ["put", "delete", "txn"])
def test_writes_with_an_unknown_outcome_are_never_retried(answer: Any, call: str) -> None:
    s = Script(answer, reply(200, {"status": "Ok", "revision": 1}))
    c = client(s)
    with pytest.raises(OutcomeUnknown):
        if call == "put":
            c.put("k", "v")
        elif call == "delete":
            c.delete("k")
        else:
            c.txn(success=[{"op": "put", "key": "k", "value": "v"}])
    assert len(s.sent) == 1


def test_outcome_unknown_is_not_unavailable() -> None:
    assert not issubclass(OutcomeUnknown, Unavailable)


def test_status_is_not_retried_and_not_redirected() -> None:
    s = Script(reply(200, {"status": "OK", "version": "0.3.0", "node": "n1", "role": "leader",
                           "term": 2, "leader": "n1", "leader_http": "a:1",
                           "commit_index": 5, "applied_index": 5}), ConnectFailed("refused"))
    c = client(s)
    st = c.status(A)
    assert (st.endpoint, st.node, st.role, st.term, st.commit_index) == (A, "n1", "leader", 2, 5)
    with pytest.raises(Unavailable):
        c.status(B)
    assert s.urls == [A, B]
