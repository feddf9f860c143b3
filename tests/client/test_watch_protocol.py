"""The SSE parser and the watch's sans-IO cursor and reconnect loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from leifdb.client import Compacted, Event, RetryPolicy, Unavailable, WatchOverflow
from leifdb.client.protocol import (
    ConnectFailed, Emit, Endpoints, NoAnswer, Open, Read, Response, Sleep, WatchCursor,
    watch_steps,
)
from leifdb.client.sse import SseMessage, SseParser


def ev(rev: int, key: str = "k", value: str | None = "v", kind: str = "put") -> bytes:
    return json.dumps({"type": kind, "key": key, "value": value, "revision": rev}).encode()


# --- parser ---------------------------------------------------------------------------

def test_messages_split_anywhere() -> None:
    stream = (b"retry: 1000\n\nid: 3\nevent: progress\ndata: {\"revision\": 3}\n\n"
              b": a comment\ndata: a\ndata: b\n\n")
    for size in (1, 2, 7, len(stream)):
        parser = SseParser()
        out: list[SseMessage] = []
        for i in range(0, len(stream), size):
            out += parser.feed(stream[i:i + size])
        assert out == [SseMessage("progress", '{"revision": 3}', "3"),
                       SseMessage("", "a\nb", None)]
        assert parser.retry == 1000 and parser.last_id == "3"


def test_crlf_and_cr_line_ends() -> None:
    parser = SseParser()
    assert parser.feed(b"id:1\r\ndata:x\r") == []
    assert parser.feed(b"\n\r\n") == [SseMessage("", "x", "1")]
    assert parser.feed(b"data: y\r\rdata: z") == [SseMessage("", "y", None)]


def test_no_data_no_message() -> None:
    parser = SseParser()
    assert parser.feed(b"id: 9\n\nevent: x\n\n") == []
    assert parser.last_id == "9"


# --- cursor ---------------------------------------------------------------------------

def test_a_revision_is_handed_over_when_its_last_change_arrives() -> None:
    cursor = WatchCursor("p/", prefix=True)
    assert cursor.feed(b"data: " + ev(5, "p/a") + b"\n\n") == []
    out = cursor.feed(b"id: 5\ndata: " + ev(5, "p/b") + b"\n\n")
    assert [e.key for e in out] == ["p/a", "p/b"] and cursor.revision == 5
    # a drop inside revision 6: its first half is dropped, and the resume asks from 6
    assert cursor.feed(b"data: " + ev(6, "p/a") + b"\n\n") == []
    cursor.reset()
    request = cursor.request()
    assert ("Last-Event-ID", "5") in request.headers
    assert request.target == "/watch/p%2F?prefix=true"


def test_progress_moves_the_revision_and_requests() -> None:
    cursor = WatchCursor("k", start_revision=3, prev=True, stale=True)
    assert cursor.request().target == "/watch/k?prev=true&consistency=stale&start_revision=3"
    assert cursor.request().headers == ()
    assert cursor.feed(b'id: 10\nevent: progress\ndata: {"revision": 10}\n\n') == []
    assert cursor.revision == 10
    assert ("Last-Event-ID", "10") in cursor.request().headers
    assert "start_revision" not in cursor.request().target


def test_final_events() -> None:
    with pytest.raises(Compacted) as info:
        WatchCursor("k").feed(b'event: compacted\ndata: {"reason": "compacted", '
                              b'"error": "left", "compact_revision": 77}\n\n')
    assert info.value.compact_revision == 77
    with pytest.raises(WatchOverflow):
        WatchCursor("k").feed(b'event: overflow\ndata: {"reason": "overflow"}\n\n')
    cursor = WatchCursor("k")
    cursor.feed(b'event: shutdown\ndata: {"reason": "shutdown"}\n\n')
    assert cursor.ended == "shutdown"


def test_events_carry_prev() -> None:
    data = {"type": "delete", "key": "k", "value": None, "revision": 4, "prev_value": "v",
            "prev_revision": 2}
    out = WatchCursor("k").feed(b"id: 4\ndata: " + json.dumps(data).encode() + b"\n\n")
    assert out == [Event("delete", "k", None, 4, "v", 2)]


# --- the reconnect loop ---------------------------------------------------------------

def drive(cursor: WatchCursor, script: list[Any], policy: RetryPolicy | None = None
          ) -> tuple[list[Event], list[Any], BaseException | None]:
    """Run ``watch_steps`` against a script: each Open takes the next item (a Response
    or an exception); each Read the next bytes (or exception) queued after it."""
    steps = watch_steps(cursor, Endpoints(["http://a:1", "http://b:2"]),
                        policy or RetryPolicy(rng=lambda: 1.0, base=0.01))
    events: list[Event] = []
    log: list[Any] = []
    reply: Any = None
    try:
        while True:
            action = steps.send(reply)
            reply = None
            if isinstance(action, (Open, Read)):
                if not script:
                    return events, log, None
                reply = script.pop(0)
                log.append((action.url, dict(action.request.headers)) if isinstance(action, Open)
                           else "read")
            elif isinstance(action, Emit):
                events += action.events
            elif isinstance(action, Sleep):
                log.append(("sleep", action.seconds))
    except Exception as e:  # noqa: BLE001
        return events, log, e


OK = Response(200, {"content-type": "text/event-stream"})


def test_resumes_after_a_drop_from_the_last_revision() -> None:
    cursor = WatchCursor("k")
    events, log, error = drive(cursor, [
        OK, b"retry: 1000\n\nid: 4\nevent: progress\ndata: {\"revision\": 4}\n\n",
        b"id: 5\ndata: " + ev(5) + b"\n\n", b"data: " + ev(6, "x") + b"\n\n",
        NoAnswer("reset"),
        ConnectFailed("refused"),
        OK, b"data: " + ev(6, "x") + b"\n\nid: 6\ndata: " + ev(6, "y") + b"\n\n", b"",
        Response(503, {}, b'{"error": "busy"}'),
        OK, b"id: 7\ndata: " + ev(7) + b"\n\n",
    ])
    assert error is None
    assert [(e.revision, e.key) for e in events] == [(5, "k"), (6, "x"), (6, "y"), (7, "k")]
    opens = [entry for entry in log if isinstance(entry, tuple) and entry[0] != "sleep"]
    assert opens[0] == ("http://a:1", {})
    assert opens[1] == ("http://b:2", {"Last-Event-ID": "5"})  # next endpoint
    assert opens[2] == ("http://a:1", {"Last-Event-ID": "5"})
    assert opens[3][1] == {"Last-Event-ID": "6"} and opens[4][1] == {"Last-Event-ID": "6"}


def test_a_307_is_followed_and_410_raises() -> None:
    cursor = WatchCursor("k", start_revision=2)
    events, log, error = drive(cursor, [
        Response(307, {"location": "http://c:3/watch/k?start_revision=2"}, b"{}"),
        Response(410, {}, b'{"error": "gone", "compact_revision": 40}'),
    ])
    assert log[1][0] == "http://c:3"
    assert isinstance(error, Compacted) and error.compact_revision == 40


def test_compacted_mid_stream_raises_after_the_events_before_it() -> None:
    cursor = WatchCursor("k")
    events, _, error = drive(cursor, [
        OK, b"id: 5\ndata: " + ev(5) + b"\n\nevent: compacted\ndata: "
            b'{"reason": "compacted", "compact_revision": 9}\n\n'])
    assert isinstance(error, Compacted) and error.compact_revision == 9
    assert [e.revision for e in events] == [5]  # handed over before the error


def test_shutdown_reconnects_elsewhere_and_failures_are_bounded() -> None:
    cursor = WatchCursor("k")
    events, log, error = drive(cursor, [
        OK, b'id: 3\nevent: progress\ndata: {"revision": 3}\n\n'
            b'event: shutdown\ndata: {"reason": "shutdown"}\n\n',
        ConnectFailed("refused"), ConnectFailed("refused"), ConnectFailed("refused"),
    ], RetryPolicy(attempts=3, rng=lambda: 1.0, base=0.01))
    assert isinstance(error, Unavailable)
    assert [e for e in log if isinstance(e, tuple) and e[0] != "sleep"][1] == \
        ("http://b:2", {"Last-Event-ID": "3"})
