"""Leases, TTL keys, fenced writes, locks and elections in the sans-IO policy, through the
blocking ``Client`` with a scripted transport: every request as the API wants it, every
answer typed, every error status mapped, the keepalive loop and the observe stream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from leifdb.client import (
    BadRequest, Client, ConditionFailed, Fenced, Holder, Item, LeaderChange, Lease,
    LeaseExpired, LeaseNotFound, LockTimeout, NotFound, NotHolder, OutcomeUnknown,
    RetryPolicy, Unavailable, WriteResult,
)
from leifdb.client.coordination import (
    ObserveCursor, Renewed, campaign_request, grant_request, keepalive_request, keepalive_steps,
    leader_request, lease_info_request, leases_request, lock_holder_request, lock_request,
    proclaim_request, resign_request, revoke_request,
)
from leifdb.client.protocol import (
    ConnectFailed, Emit, Endpoints, NoAnswer, Open, Read, Response, Send, Sleep, delete_request,
    duration_text, execute, fence_text, parse_duration, put_request, watch_steps,
)
from tests.client.test_protocol import A, B, C, Clock, Script, client, reply

HOLDER = {"name": "job", "key": "_lock/job/5", "token": 5, "lease": 5, "value": "me",
          "revision": 5}
LEASE = {"id": 5, "ttl": 10.0, "remaining": 10.0, "revision": 6}


# --- building requests ----------------------------------------------------------------

def test_durations() -> None:
    assert [parse_duration(t) for t in ("30", "2.5", "500ms", "30s", "2m", "1h", "7d", " 3s ")
            ] == [30, 2.5, 0.5, 30, 120, 3600, 7 * 86400, 3]
    assert parse_duration(4) == 4.0
    for bad in ("", "s", "3x", "-1s", "1e3", "nan", "3 s s"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError):
        parse_duration(float("inf"))
    assert [duration_text(x) for x in (30, 30.0, 0.25, 0.0004, 2592000)] == [
        "30s", "30s", "0.25s", "0s", "2592000s"]


def test_fences() -> None:
    assert fence_text("job:7") == "job:7"
    assert fence_text(("a:b", 3)) == "a:b:3"  # the token is after the last colon
    assert fence_text(Holder.from_json(HOLDER)) == "job:5"
    for bad in ("job", "job:", ":7", "job:x", "job:0", "job:-1"):
        with pytest.raises(ValueError):
            fence_text(bad)


def test_put_and_delete_with_lease_ttl_and_fence() -> None:
    r = put_request("a/b", "v", lease=12)
    assert (r.method, r.target, json.loads(r.body), r.lease_id, r.idempotent) == (
        "PUT", "/db/a%2Fb?lease=12", {"value": "v"}, 12, False)
    assert put_request("k", "v", ttl="2m").target == "/db/k?ttl=120s"
    assert put_request("k", "v", ttl=2.5).target == "/db/k?ttl=2.5s"
    assert put_request("k", "v", ttl=30, fence="job:7", prev="x").target == \
        "/db/k?ttl=30s&fence=job%3A7"
    assert put_request("k", "v").target == "/db/k" and put_request("k", "v").lease_id == 0
    with pytest.raises(ValueError):
        put_request("k", "v", lease=3, ttl=30)
    with pytest.raises(ValueError):
        put_request("k", "v", lease=-3)
    with pytest.raises(ValueError):
        put_request("k", "v", ttl="soon")
    d = delete_request("k", fence=("job", 7))
    assert (d.method, d.target, d.body) == ("DELETE", "/db/k?fence=job%3A7", None)
    with pytest.raises(ValueError):
        delete_request("k", fence="nope")


def test_lease_requests() -> None:
    g = grant_request("30s")
    assert (g.method, g.target, json.loads(g.body), g.idempotent, g.leader) == (
        "POST", "/lease", {"ttl": 30.0}, False, True)
    k = keepalive_request(5)
    assert (k.method, k.target, k.body, k.idempotent, k.lease_id) == (
        "POST", "/lease/5/keepalive", None, False, 5)
    i = lease_info_request(5)
    assert (i.method, i.target, i.idempotent, i.leader, i.lease_id) == (
        "GET", "/lease/5", True, True, 5)
    assert (leases_request().method, leases_request().target) == ("GET", "/lease")
    v = revoke_request(5)
    assert (v.method, v.target, v.idempotent, v.lease_id) == ("DELETE", "/lease/5", False, 5)
    for bad in (0, -1, True, "5"):
        with pytest.raises(ValueError):
            keepalive_request(bad)


def test_lock_and_election_requests() -> None:
    lk = lock_request("a job", 5, value="me", timeout="2m")
    assert (lk.method, lk.target, json.loads(lk.body), lk.idempotent, lk.wait) == (
        "POST", "/lock/a%20job?timeout=120s", {"lease": 5, "value": "me"}, False, 120.0)
    assert lock_request("x", 5).wait == 60.0 and "timeout=60s" in lock_request("x", 5).target
    with pytest.raises(ValueError):
        lock_request("", 5)
    with pytest.raises(ValueError):
        lock_request("x", 0)
    h = lock_holder_request("x", stale=True)
    assert (h.method, h.target, h.leader) == ("GET", "/lock/x?consistency=stale", False)
    c = campaign_request("e/1", 5, "node-a", timeout=1.5)
    assert (c.target, json.loads(c.body), c.wait, c.idempotent) == (
        "/election/e%2F1/campaign?timeout=1.5s", {"lease": 5, "value": "node-a"}, 1.5, False)
    assert leader_request("e").target == "/election/e" and leader_request("e").idempotent
    p = proclaim_request("e", 9, "new")
    assert (p.method, p.target, json.loads(p.body), p.idempotent) == (
        "POST", "/election/e/proclaim", {"token": 9, "value": "new"}, False)
    r = resign_request("e", 9)
    assert (r.target, json.loads(r.body), r.idempotent) == (
        "/election/e/resign", {"token": 9}, False)
    assert ObserveCursor("e").request().target == "/election/e/observe"
    stale = ObserveCursor("e", stale=True).request()
    assert (stale.target, stale.leader) == ("/election/e/observe?consistency=stale", False)


def test_a_lock_waits_longer_than_the_request_timeout() -> None:
    s = Script(reply(200, HOLDER))
    c = Client([A], transport=s, timeout=3.0)
    c.lock("job", 5, timeout=20)
    assert s.sent[0].timeout == 23.0


# --- answers --------------------------------------------------------------------------

def test_items_carry_create_revision_and_lease() -> None:
    item = {"key": "k", "value": "v", "revision": 9, "create_revision": 4, "lease": 5}
    s = Script(reply(200, item), reply(200, {"key": "k", "value": "v", "revision": 9}))
    c = client(s)
    assert c.get("k") == Item("k", "v", 9, 4, 5)
    assert c.get("k") == Item("k", "v", 9, 0, 0)  # an older server: no such fields
    assert Item("k", "v", 9, 4, 5).to_json() == item


def test_typed_lease_answers() -> None:
    s = Script(reply(200, LEASE),
               reply(200, {"id": 5, "ttl": 10, "remaining": 7.5, "revision": 8}),
               reply(200, {**LEASE, "keys": ["a", "b"]}),
               reply(200, {"leases": [LEASE, {"id": 9, "ttl": 2, "remaining": 1}],
                           "revision": 9}),
               reply(200, {"id": 5, "revision": 10}),
               reply(200, {"status": "Ok", "revision": 11, "lease": 12}))
    c = client(s)
    assert c.grant(10) == Lease(5, 10.0, 10.0, (), 6)
    assert c.keepalive(5).remaining == 7.5
    assert c.lease_info(5).keys == ("a", "b")
    assert [lease.id for lease in c.leases()] == [5, 9]
    assert c.revoke(5) == WriteResult(10)
    assert c.put("k", "v", ttl=30) == WriteResult(11, 12)


def test_typed_lock_and_election_answers() -> None:
    holder = Holder("job", "_lock/job/5", 5, 5, "me", 5)
    s = Script(reply(200, HOLDER), reply(200, {"status": "Ok", "revision": 7}),
               reply(200, HOLDER), reply(404, {"error": "lock job is free"}),
               reply(200, HOLDER), reply(200, HOLDER), reply(404, {"error": "no leader"}),
               reply(200, {**HOLDER, "value": "new", "revision": 9}),
               reply(200, {"revision": 10}))
    c = client(s)
    assert c.lock("job", 5) == holder and holder.fence == "job:5"
    assert c.unlock(holder) == WriteResult(7)
    assert s.sent[1].request.method == "DELETE" and s.sent[1].request.target == \
        "/db/_lock%2Fjob%2F5"
    assert c.lock_holder("job") == holder
    assert c.lock_holder("job") is None
    assert c.campaign("job", 5, "me") == holder
    assert c.leader("job") == holder
    assert c.leader("job") is None
    assert c.proclaim("job", 5, "new").value == "new"
    assert c.resign("job", 5) == WriteResult(10)


def test_lease_errors() -> None:
    s = Script(*[reply(404, {"error": "lease 5 not found"})] * 5,
               reply(404, {"error": "lease 7 not found"}),
               reply(400, {"error": "ttl 1 s is below the minimum 2 s"}))
    c = client(s)
    for call in (lambda: c.keepalive(5), lambda: c.lease_info(5), lambda: c.revoke(5),
                 lambda: c.lock("job", 5), lambda: c.campaign("e", 5, "v")):
        with pytest.raises(LeaseNotFound) as info:
            call()
        assert info.value.lease_id == 5 and info.value.status == 404
        assert isinstance(info.value, NotFound)
    with pytest.raises(LeaseNotFound, match="lease 7") as info:
        c.put("k", "v", lease=7)
    assert info.value.lease_id == 7
    with pytest.raises(BadRequest, match="minimum"):
        c.grant(1)
    assert len(s.sent) == 7  # none retried


def test_fenced_writes_and_not_holder_are_412s_of_their_own() -> None:
    s = Script(reply(412, {"error": "fenced: lock job is no longer held with token 5",
                           "fence": "job:5"}),
               reply(412, {"error": "fenced", "fence": "job:5"}),
               reply(412, {"error": "not the leader"}),
               reply(412, {"error": "not the leader"}),
               reply(412, {"error": "condition failed", "key": "k", "value": "v",
                           "revision": 3, "create_revision": 2, "lease": 0}))
    c = client(s)
    with pytest.raises(Fenced) as info:
        c.put("k", "v", fence="job:5")
    assert info.value.fence == "job:5" and isinstance(info.value, NotHolder)
    assert not isinstance(info.value, ConditionFailed)
    with pytest.raises(Fenced):
        c.delete("k", fence="job:5")
    with pytest.raises(NotHolder) as not_holder:
        c.proclaim("e", 5, "x")
    assert not isinstance(not_holder.value, Fenced) and not_holder.value.status == 412
    with pytest.raises(NotHolder):
        c.resign("e", 5)
    with pytest.raises(ConditionFailed) as failed:
        c.put("k", "v", prev="old")
    assert failed.value.current == Item("k", "v", 3, 2, 0)


def test_423_is_lock_timeout() -> None:
    s = Script(reply(423, {"error": "'job' is still held", "holder": "_lock/job/3"}),
               reply(423, {"error": "'e' is still held", "holder": None}))
    c = client(s)
    with pytest.raises(LockTimeout) as info:
        c.lock("job", 5, timeout=1)
    assert info.value.holder == "_lock/job/3" and info.value.status == 423
    with pytest.raises(LockTimeout) as info:
        c.campaign("e", 5, "v", timeout=1)
    assert info.value.holder is None


@pytest.mark.parametrize("answer", [NoAnswer("timed out"), reply(504, {"error": "?"})])
@pytest.mark.parametrize("call", ["grant", "keepalive", "revoke", "lock", "campaign",
                                  "proclaim", "resign"])
def test_lease_lock_and_election_writes_are_never_resent(answer: Any, call: str) -> None:
    s = Script(answer, reply(200, LEASE))
    c = client(s)
    calls = {"grant": lambda: c.grant(10), "keepalive": lambda: c.keepalive(5),
             "revoke": lambda: c.revoke(5), "lock": lambda: c.lock("job", 5),
             "campaign": lambda: c.campaign("e", 5, "v"),
             "proclaim": lambda: c.proclaim("e", 5, "v"), "resign": lambda: c.resign("e", 5)}
    with pytest.raises(OutcomeUnknown):
        calls[call]()
    assert len(s.sent) == 1


def test_lease_reads_are_retried_and_writes_follow_redirects() -> None:
    s = Script(NoAnswer("lost"), reply(200, LEASE),
               reply(307, {}, location="http://c:3/lease/5/keepalive"), reply(200, LEASE),
               reply(503, {"error": "no leader"}), reply(200, HOLDER))
    c = client(s)
    assert c.lease_info(5).id == 5
    assert s.urls == [A, B]  # a read whose answer was lost is retried elsewhere
    assert c.keepalive(5).id == 5
    assert s.urls[2:4] == [B, C] and s.sent[3].request.target == "/lease/5/keepalive"
    assert c.lock_holder("job").token == 5  # the 503 is retried on the next endpoint
    assert len(s.sent) == 6


# --- keepalive loop -------------------------------------------------------------------

def run_keepalive(answers: list[Any], clock: Clock, *, remaining: float | None = None,
                  interval: float | None = None, limit: int = 100
                  ) -> tuple[list[Any], BaseException | None]:
    """Drive ``keepalive_steps`` with scripted answers and a fake clock (each Send takes
    no time, unless the answer is a (seconds, answer) pair); log what it asked for."""
    steps = keepalive_steps(5, Endpoints([A, B]), RetryPolicy(rng=lambda: 1.0, clock=clock),
                            10.0, remaining=remaining, interval=interval)
    log: list[Any] = []
    reply_: Any = None
    try:
        for _ in range(limit):
            action = steps.send(reply_)
            reply_ = None
            if isinstance(action, Sleep):
                log.append(("sleep", round(action.seconds, 3)))
                clock.now += action.seconds
            elif isinstance(action, Renewed):
                log.append(("renewed", action.lease.remaining))
            elif isinstance(action, Send):
                if not answers:
                    return log, None
                answer = answers.pop(0)
                if isinstance(answer, tuple):
                    clock.now += answer[0]
                    answer = answer[1]
                log.append(("send", action.url, round(action.timeout, 3)))
                reply_ = answer
    except Exception as e:  # noqa: BLE001
        return log, e
    return log, None


def lease_reply(remaining: float = 9.0, ttl: float = 9.0) -> Response:
    return reply(200, {"id": 5, "ttl": ttl, "remaining": remaining, "revision": 1})


def test_keepalive_renews_every_third_of_the_ttl_until_the_lease_is_gone() -> None:
    log, error = run_keepalive([lease_reply(), lease_reply(8.5), reply(404, {"error": "gone"})],
                               Clock())
    # each request's timeout is bounded by the time the lease surely has left (9 - 3 s)
    assert log == [("send", A, 10.0), ("renewed", 9.0), ("sleep", 3.0),
                   ("send", A, 6.0), ("renewed", 8.5), ("sleep", 3.0), ("send", A, 6.0)]
    assert isinstance(error, LeaseNotFound) and not isinstance(error, LeaseExpired)
    log, _ = run_keepalive([lease_reply(), lease_reply()], Clock(), interval=0.5)
    assert ("sleep", 0.5) in log


def test_keepalive_retries_transient_failures_within_the_ttl() -> None:
    clock = Clock()
    log, error = run_keepalive([
        lease_reply(),
        NoAnswer("lost"),            # outcome unknown: tried again, renewing twice is harmless
        reply(503, {"error": "no leader"}), reply(503, {"error": "no leader"}),
        ConnectFailed("refused"), ConnectFailed("refused"), lease_reply(),
    ], clock)
    assert error is None
    assert [e[0] for e in log].count("renewed") == 2
    sends = [e for e in log if e[0] == "send"]
    assert sends[1][1] == A and sends[2][1] == A  # a fresh call: from the first endpoint
    assert len(sends) == 7


def test_keepalive_gives_up_once_the_ttl_has_passed_without_an_answer() -> None:
    clock = Clock()
    answers = [lease_reply()] + [(1.0, NoAnswer("timed out"))] * 20
    log, error = run_keepalive(answers, clock)
    assert isinstance(error, LeaseExpired) and isinstance(error, LeaseNotFound)
    assert isinstance(error.cause, OutcomeUnknown) and error.lease_id == 5
    # the lease surely lived 9 s from the sending of the acknowledged keepalive at 0
    assert 9.0 <= clock.now <= 9.0 + 1.0
    sends = [e for e in log if e[0] == "send"]
    assert all(timeout <= 9.0 for _, _, timeout in sends[1:])  # bounded by the time left
    assert len(sends) < 15


def test_keepalive_from_a_granted_lease_counts_its_remaining_time() -> None:
    clock = Clock()
    log, error = run_keepalive([(1.0, ConnectFailed("refused"))] * 10, clock, remaining=2.0)
    assert isinstance(error, LeaseExpired) and clock.now <= 3.0
    log, error = run_keepalive([reply(400, {"error": "bad id"})], Clock(), remaining=2.0)
    assert isinstance(error, BadRequest)  # not transient: surfaced at once


def test_keepalive_without_a_known_ttl_retries_until_told() -> None:
    log, error = run_keepalive([ConnectFailed("refused")] * 30 + [lease_reply()], Clock())
    assert error is None and ("renewed", 9.0) in log


# --- observe --------------------------------------------------------------------------

def leader_msg(revision: int, holder: dict | None) -> bytes:
    return (b"event: leader\ndata: " + json.dumps({"leader": holder, "revision": revision})
            .encode() + b"\n\n")


def test_observe_cursor_hands_over_changes_once() -> None:
    cursor = ObserveCursor("job")
    out = cursor.feed(b"retry: 1000\n\n" + leader_msg(4, None) + leader_msg(5, HOLDER))
    assert out == [LeaderChange(None, 4), LeaderChange(Holder.from_json(HOLDER), 5)]
    assert cursor.revision == 5
    assert cursor.feed(leader_msg(6, HOLDER)) == []  # the same leader, same value
    proclaimed = {**HOLDER, "value": "new", "revision": 7}
    assert [c.leader.value for c in cursor.feed(leader_msg(7, proclaimed))] == ["new"]
    assert cursor.feed(leader_msg(8, None)) == [LeaderChange(None, 8)]
    cursor.feed(b'event: shutdown\ndata: {"reason": "shutdown"}\n\n')
    assert cursor.ended == "shutdown" and cursor.error is None
    assert LeaderChange(None, 8).to_json() == {"leader": None, "revision": 8}


def test_observe_reconnects_after_any_ending_without_repeating_itself() -> None:
    cursor = ObserveCursor("job")
    steps = watch_steps(cursor, Endpoints([A, B]), RetryPolicy(rng=lambda: 1.0, base=0.01,
                                                               attempts=3))
    ok = Response(200, {"content-type": "text/event-stream"})
    script: list[Any] = [
        ok, leader_msg(5, HOLDER), b'event: compacted\ndata: {"compact_revision": 9}\n\n',
        ok, leader_msg(10, HOLDER), NoAnswer("reset"),
        ok, leader_msg(11, HOLDER), b"",
        ok, leader_msg(12, HOLDER), b"",
        ok, leader_msg(13, None),
    ]
    got: list[LeaderChange] = []
    opens = 0
    reply_: Any = None
    while True:
        action = steps.send(reply_)
        reply_ = None
        if isinstance(action, (Open, Read)) and not script:
            break
        if isinstance(action, Open):
            opens += 1
            reply_ = script.pop(0)
        elif isinstance(action, Read):
            reply_ = script.pop(0)
        elif isinstance(action, Emit):
            got += action.events
    # four silent reconnects did not add up to the three failures that end a stream:
    # every stream delivered a message
    assert [(c.leader and c.leader.token, c.revision) for c in got] == [(5, 5), (None, 13)]
    assert opens == 5


def test_observe_gives_up_after_failures_in_a_row() -> None:
    steps = watch_steps(ObserveCursor("job"), Endpoints([A]),
                        RetryPolicy(rng=lambda: 1.0, base=0.01, attempts=2))
    reply_: Any = None
    with pytest.raises(Unavailable):
        for _ in range(10):
            action = steps.send(reply_)
            reply_ = ConnectFailed("refused") if isinstance(action, Open) else None


def test_execute_adds_the_wait_to_the_timeout() -> None:
    steps = execute(lock_request("job", 5, timeout=7), Endpoints([A]), RetryPolicy(), 2.0)
    assert next(steps).timeout == 9.0
