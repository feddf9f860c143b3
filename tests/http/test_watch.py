"""GET /watch/{key}: Server-Sent Events from the service's watch, with history replay,
progress bookmarks, final events, back-pressure and clean-up when the client leaves."""

from __future__ import annotations

import pytest
from twisted.internet.error import ConnectionDone

from leifdb.errors import NotLeaderError, Unavailable
from leifdb.http.watch import SseStream
from leifdb.kv.commands import Delete, Event, Put, Txn
from tests.http.client import Client, assert_json_error
from tests.http.doubles import Handle, Request

PUT_A1 = {"type": "put", "key": "a", "value": "1", "revision": 1}


def changes(stream) -> list[dict]:
    return stream.events()


def test_stream_headers_retry_then_progress_then_live_changes():
    client = Client()
    client.service.set("other", "x")
    stream = client.stream("/watch/a")
    assert stream.code == 200
    assert stream.header("Content-Type") == "text/event-stream"
    assert stream.header("Cache-Control") == "no-cache"
    assert stream.header("X-LeifDB-Revision") == "1"
    assert stream.messages() == [
        {"retry": "1000"},
        {"id": "1", "event": "progress", "data": {"revision": 1}},
    ]
    client.service.set("a", "1")
    client.service.remove("a")
    client.service.set("b", "not watched")
    assert stream.messages()[2:] == [
        {"id": "2", "data": {"type": "put", "key": "a", "value": "1", "revision": 2}},
        {"id": "3", "data": {"type": "delete", "key": "a", "value": None, "revision": 3}},
    ]
    assert not stream.ended


def test_prev_adds_the_previous_value_and_revision():
    client = Client()
    stream = client.stream("/watch/a?prev=true")
    client.service.set("a", "1")
    client.service.set("a", "2")
    client.service.remove("a")
    assert changes(stream) == [
        {**PUT_A1, "prev_value": None, "prev_revision": 0},
        {"type": "put", "key": "a", "value": "2", "revision": 2, "prev_value": "1",
         "prev_revision": 1},
        {"type": "delete", "key": "a", "value": None, "revision": 3, "prev_value": "2",
         "prev_revision": 2},
    ]


def test_prefix_watches_keys_under_it_and_an_empty_prefix_watches_everything():
    client = Client()
    under = client.stream("/watch/app/?prefix=true")
    everything = client.stream("/watch/?prefix=true")
    for key in ["app/x", "apple", "app/y/z"]:
        client.service.set(key, "v")
    assert [e["key"] for e in changes(under)] == ["app/x", "app/y/z"]
    assert [e["key"] for e in changes(everything)] == ["app/x", "apple", "app/y/z"]


def test_empty_key_without_prefix_is_400():
    client = Client()
    reply = client.get("/watch/")
    assert "prefix=true" in assert_json_error(reply, 400)["error"]
    assert_json_error(client.get("/watch/?prefix=false"), 400)
    assert client.service.watchers == []


def test_start_revision_replays_history_before_the_progress_bookmark():
    client = Client()
    for value in ["1", "2", "3"]:
        client.service.set("a", value)
    stream = client.stream("/watch/a?start_revision=2")
    messages = stream.messages()
    assert messages[0] == {"retry": "1000"}
    assert [m["data"]["value"] for m in messages[1:3]] == ["2", "3"]
    assert messages[3] == {"id": "3", "event": "progress", "data": {"revision": 3}}
    client.service.set("a", "4")
    assert changes(stream)[-1]["value"] == "4"


def test_last_event_id_resumes_after_it_and_wins_over_start_revision():
    client = Client()
    for value in ["1", "2", "3"]:
        client.service.set("a", value)
    stream = client.stream("/watch/a?start_revision=1", headers={"Last-Event-ID": "2"})
    assert [e["revision"] for e in changes(stream)] == [3]
    assert client.service.watchers[0].start_revision == 3


def test_last_event_id_of_zero_replays_everything_kept():
    client = Client()
    client.service.set("a", "1")
    assert changes(client.stream("/watch/a", headers={"Last-Event-ID": "0"})) == [PUT_A1]


def test_all_changes_of_a_transaction_come_together_with_one_revision():
    client = Client()
    stream = client.stream("/watch/?prefix=true")
    client.service.apply(Txn(success=(Put("x", "1"), Put("y", "2"), Delete("x"))))
    assert [(e["type"], e["key"], e["revision"]) for e in changes(stream)] == [
        ("put", "x", 1), ("put", "y", 1), ("delete", "x", 1)]


def test_progress_from_the_service_is_a_bookmark_with_an_id():
    client = Client()
    stream = client.stream("/watch/a")
    client.service.set("b", "unrelated")
    client.service.send_progress()
    assert stream.messages()[-1] == {"id": "1", "event": "progress", "data": {"revision": 1}}


@pytest.mark.parametrize("reason,compact,extra", [
    ("compacted", 7, {"compact_revision": 7}),
    ("overflow", None, {}),
    ("shutdown", None, {}),
])
def test_final_events_end_the_stream(reason, compact, extra):
    client = Client()
    stream = client.stream("/watch/a")
    client.service.close_watchers(reason, compact)
    last = stream.messages()[-1]
    assert last["event"] == reason
    assert last["data"]["reason"] == reason and last["data"]["error"]
    assert {k: v for k, v in last["data"].items() if k == "compact_revision"} == extra
    assert stream.ended


def test_a_cancelled_close_ends_the_stream_without_a_final_event():
    client = Client()
    stream = client.stream("/watch/a")
    client.service.close_watchers("cancelled")
    assert stream.ended
    assert "event" not in stream.messages()[-1] or stream.messages()[-1]["event"] == "progress"


def test_start_revision_older_than_history_is_410_before_the_stream():
    client = Client()
    for value in ["1", "2", "3"]:
        client.service.set("a", value)
    client.service.compact(3)
    reply = client.get("/watch/a?start_revision=2")
    body = assert_json_error(reply, 410)
    assert body["compact_revision"] == 3
    assert reply.header("X-LeifDB-Revision") == "3"
    assert client.service.watchers == []
    resumed = client.get("/watch/a", headers={"Last-Event-ID": "1"})
    assert assert_json_error(resumed, 410)["compact_revision"] == 3


def test_client_disconnect_cancels_the_watch():
    client = Client()
    stream = client.stream("/watch/a")
    watch = client.service.watchers[0]
    stream.hang_up()
    assert watch.cancelled
    assert client.service.watchers == []
    client.service.set("a", "1")  # nothing is written to the closed request


def test_back_pressure_pauses_the_service_and_resume_delivers_the_queue():
    client = Client()
    stream = client.stream("/watch/a")
    watch = client.service.watchers[0]
    stream.connection.server.pauseProducing()  # the transport's buffer is full
    client.service.set("a", "1")  # accepted, but the sink says "no more"
    assert watch.blocked
    client.service.set("a", "2")
    client.service.set("a", "3")
    assert [e["value"] for e in changes(stream)] == ["1"]
    assert len(watch.queue) == 2
    stream.connection.server.resumeProducing()
    assert watch.resumes == 1 and not watch.blocked and not watch.queue
    assert [e["value"] for e in changes(stream)] == ["1", "2", "3"]


def test_a_watcher_paused_too_long_gets_overflow():
    client = Client(watcher_buffer_events=2)
    stream = client.stream("/watch/a")
    stream.connection.server.pauseProducing()
    for value in ["1", "2", "3", "4"]:
        client.service.set("a", value)
    assert stream.messages()[-1]["event"] == "overflow"
    assert stream.ended and client.service.watchers == []


def test_the_watch_starts_after_a_read_barrier_unless_stale():
    client = Client()
    client.stream("/watch/a")
    assert client.service.barriers == 1
    client.stream("/watch/a?consistency=stale")
    assert client.service.barriers == 1
    client.stream("/watch/a?consistency=linearizable")
    assert client.service.barriers == 2


def test_barrier_unavailable_is_503_without_leader_307_to_a_known_leader():
    client = Client()
    client.service.read_error = Unavailable("no quorum")
    reply = client.get("/watch/a?prefix=false")
    assert_json_error(reply, 503)
    assert reply.header("Retry-After") == "1"
    client.service.read_error = NotLeaderError(None)
    assert_json_error(client.get("/watch/a"), 503)
    client.service.read_error = NotLeaderError("10.0.0.2:8081")
    reply = client.get("/watch/a?prev=true")
    assert reply.code == 307
    assert reply.header("Location") == "http://10.0.0.2:8081/watch/a?prev=true"
    assert client.service.watchers == []
    assert client.stream("/watch/a?consistency=stale").code == 200


def test_too_many_watchers_is_503_with_retry_after():
    client = Client(max_watchers=1)
    assert client.stream("/watch/a").code == 200
    reply = client.get("/watch/b")
    assert "too many" in assert_json_error(reply, 503)["error"]
    assert reply.header("Retry-After") == "1"


@pytest.mark.parametrize("target", [
    "/watch/a?start_revision=0", "/watch/a?start_revision=x", "/watch/a?start_revision=",
    "/watch/a?prefix=yes", "/watch/a?prev=1", "/watch/a?consistency=eventual",
    "/watch/a?ttl=5", "/watch/a?prefix=true&prefix=false",
])
def test_bad_parameters_are_400(target):
    client = Client()
    assert_json_error(client.get(target), 400)
    assert client.service.watchers == [] and client.service.barriers == 0


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", ""])
def test_bad_last_event_id_is_400(value):
    assert_json_error(Client().get("/watch/a", headers={"Last-Event-ID": value}), 400)


def test_key_over_the_limit_is_413():
    client = Client(max_key_bytes=4)
    assert_json_error(client.get("/watch/abcde"), 413)
    assert_json_error(client.get("/watch/abcde?prefix=true"), 413)


def test_head_answers_the_headers_and_ends_the_watch():
    client = Client()
    reply = client.request("HEAD", "/watch/a")
    assert reply.code == 200 and reply.body == b""
    assert reply.header("Content-Type") == "text/event-stream"
    assert client.service.watchers == []


def test_post_is_405():
    reply = Client().post("/watch/a")
    assert assert_json_error(reply, 405)["allowed"] == ["GET", "HEAD", "OPTIONS"]


# -- the sink on its own -----------------------------------------------------------------

def _event(key: str, revision: int) -> Event:
    return Event("put", key, "v", revision)


def test_each_revision_is_one_write():
    request = Request()
    stream = SseStream(request, prev=False)
    stream.start(Handle(), 4)
    before = len(request.written)
    assert stream.events([_event("x", 5), _event("y", 5)]) is True
    assert len(request.written) == before + 1
    assert request.written[-1].count(b"id: 5\n") == 1  # only the last of a revision
    assert request.written[-1].endswith(b"id: 5\ndata: {\"type\":\"put\",\"key\":\"y\",\"value\":\"v\",\"revision\":5}\n\n")


def test_what_arrives_before_start_is_sent_after_the_retry_line():
    request = Request()
    stream = SseStream(request, prev=False)
    assert stream.events([_event("x", 2)]) is True
    stream.closed("overflow")
    assert request.written == []
    stream.start(Handle(), 3)
    sent = b"".join(request.written)
    assert sent.startswith(b"retry: 1000\n\nid: 2\ndata: ")
    assert sent.endswith(b"\n\n") and b"event: overflow\n" in sent
    assert b"event: progress" not in sent  # no bookmark after the end
    assert request.finished


def test_paused_sink_says_no_and_resume_asks_the_service_to_go_on():
    request = Request()
    stream = SseStream(request, prev=False)
    handle = Handle()
    stream.start(handle, 1)
    stream.pauseProducing()
    assert stream.events([_event("x", 2)]) is False
    stream.resumeProducing()
    assert handle.resumed == 1
    assert stream.events([_event("x", 3)]) is True


def test_stop_producing_cancels_the_watch_and_the_lost_connection_ends_it():
    request = Request()
    stream = SseStream(request, prev=False)
    handle = Handle()
    stream.start(handle, 1)
    assert request.producer is stream
    stream.stopProducing()
    assert handle.cancelled and not stream.done.called
    assert stream.events([_event("x", 2)]) is False
    stream.closed("shutdown")  # late: ignored
    assert not request.finished
    request.finishes[0].errback(ConnectionDone())
    assert stream.done.called


def test_closing_unregisters_the_producer_then_finishes():
    request = Request()
    stream = SseStream(request, prev=False)
    stream.start(Handle(), 1)
    stream.closed("shutdown", None)
    assert request.producer is None and request.finished and stream.done.called
    assert b"event: shutdown\n" in request.written[-1]
