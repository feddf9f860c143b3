"""The watch checker rejects each of the six violations on small hand-written streams, and
accepts correct ones; the SSE reader parses a stream; the reference cross-check spots a
lost write."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.faults.clients import SseStream
from tests.faults.history import Op, Seen, Txn, TxnOp
from tests.faults.watch import (
    PROPERTIES,
    Reference,
    WatchLog,
    check_watch,
    cross_check,
    merge_histories,
)

# Revision 2: put a; 3: a transaction puts a and b; 4: put c (not watched by "a"/"b"
# watchers); 5: delete b; 6: nothing (a failed conditional write).
REF = Reference([(1, 8)], {
    2: [("put", "a", "1", None, 0)],
    3: [("put", "a", "2", "1", 2), ("put", "b", "x", None, 0)],
    4: [("put", "c", "y", None, 0)],
    5: [("delete", "b", None, "x", 3)],
    7: [("put", "a", "3", "2", 3)],
})


def ev(r: int, kind: str, key: str, value: str | None, prev: str | None, prev_rev: int) -> tuple:
    return ("event", r, (kind, key, value, prev, prev_rev))


E2 = ev(2, "put", "a", "1", None, 0)
E3A = ev(3, "put", "a", "2", "1", 2)
E3B = ev(3, "put", "b", "x", None, 0)
E4 = ev(4, "put", "c", "y", None, 0)
E5 = ev(5, "delete", "b", None, "x", 3)
E7 = ev(7, "put", "a", "3", "2", 3)


def opened(last_event_id: int | None = None, start: int | None = None) -> tuple:
    return ("open", "n1", last_event_id, start, 0.0)


def log(*entries: tuple, key: str = "", prefix: bool = True) -> WatchLog:
    return WatchLog(key, prefix, list(entries))


CORRECT = log(
    opened(), ("progress", 1), E2, E3A, E3B, ("progress", 3), ("end", "rotate"),
    opened(last_event_id=3), E4, E5, ("progress", 6), ("end", "timeout"),
    opened(last_event_id=6), ("progress", 6), E7, ("progress", 8), ("end", "rotate"),
)


def violations(watch: WatchLog) -> set[str]:
    result = check_watch(watch, REF)
    return {p for p in PROPERTIES if result.violations.get(p)}


def test_a_correct_stream_passes() -> None:
    result = check_watch(CORRECT, REF)
    assert result.ok, result.summary()
    assert (result.events, result.checked, result.resumes, result.sessions) == (6, 6, 2, 3)
    # A key watch sees only its key, and a transaction's change of it alone.
    only_b = log(opened(start=1), E3B, ("progress", 4), E5, ("progress", 8), key="b", prefix=False)
    assert check_watch(only_b, REF).ok, check_watch(only_b, REF).summary()


def test_out_of_order_events_are_not_ordered() -> None:
    assert "ordered" in violations(log(opened(), ("progress", 1), E2, E4, E3A, E3B, ("progress", 8)))
    # A bookmark that goes back: a client resuming from its id would get revisions again.
    assert "ordered" in violations(log(opened(), ("progress", 1), E2, E3A, E3B, ("progress", 2)))


def test_an_event_delivered_twice_is_not_unique() -> None:
    found = violations(log(
        opened(), ("progress", 1), E2, E3A, E3B, ("end", "lost"),
        opened(start=2), E2, E3A, E3B, E4, E5, E7, ("progress", 8)))
    assert "unique" in found


def test_a_transaction_split_or_cut_is_not_atomic() -> None:
    # Its two changes delivered apart ...
    assert "atomic" in violations(log(opened(), ("progress", 1), E2, E3A, ("progress", 3), E3B, E4,
                                      E5, E7, ("progress", 8)))
    # ... or only one of them.
    assert "atomic" in violations(log(opened(), ("progress", 1), E2, E3A, E4, E5, E7, ("progress", 8)))


def test_a_missed_event_is_not_reliable() -> None:
    assert "reliable" in violations(log(opened(), ("progress", 1), E2, E3A, E3B, E5, E7))
    # Nor is a change that never happened, or one with the wrong previous value.
    assert "reliable" in violations(log(opened(), ("progress", 1), E2, ev(6, "put", "a", "9", "2", 3)))
    assert "reliable" in violations(log(opened(), ("progress", 1), ev(2, "put", "a", "1", "0", 1)))


def test_a_resume_that_does_not_continue_after_its_last_event_id_is_not_resumable() -> None:
    # Skips revision 4 after Last-Event-ID 3 ...
    assert "resumable" in violations(log(
        opened(), ("progress", 1), E2, E3A, E3B, ("end", "lost"),
        opened(last_event_id=3), E5, E7, ("progress", 8)))
    # ... or replays revision 3.
    assert "resumable" in violations(log(
        opened(), ("progress", 1), E2, E3A, E3B, ("end", "lost"),
        opened(last_event_id=3), E3B, E4, E5, E7, ("progress", 8)))


def test_a_bookmark_before_its_changes_is_not_bookmarkable() -> None:
    assert "bookmarkable" in violations(log(opened(), ("progress", 1), E2, ("progress", 3), E3A, E3B,
                                            E4, E5, E7, ("progress", 8)))


def test_each_violation_is_reported_alone() -> None:
    # The hand-written bad streams above each trip the property they are about; the
    # correct one trips none: so each property can fail on its own.
    assert violations(CORRECT) == set()


def test_a_compaction_gap_is_not_a_missed_event() -> None:
    watch = log(opened(), ("progress", 1), E2, ("end", "compacted"), ("gap", 2, 5, 4),
                opened(start=6), ("progress", 6), E7, ("progress", 8))
    result = check_watch(watch, REF)
    assert result.ok, result.summary()
    assert result.gaps == 1
    # Without the gap, revisions 3-5 are missing.
    watch.entries.remove(("gap", 2, 5, 4))
    assert not check_watch(watch, REF).ok


def test_events_older_than_the_reference_are_not_judged_by_it() -> None:
    ref = Reference([(3, 8)], {r: c for r, c in REF.changes.items() if r >= 3})
    result = check_watch(log(opened(start=1), E2, E3A, E3B, E4, E5, E7, ("progress", 8)), ref)
    assert result.ok, result.summary()
    assert result.checked == 5


def test_cross_check_finds_an_acknowledged_write_missing_from_the_reference() -> None:
    put = Op(0, "a", "put", 0, 1, value="3", revision=7)
    txn = Op(1, "a,b", "txn", 0, 1, txn=Txn((), (TxnOp("put", "a", "2"), TxnOp("put", "b", "x")), ()),
             succeeded=True, results=(None, None), revision=3)
    final = {"a": Op(2, "a", "read", 9, 10, seen=Seen("3", 7)), "b": Op(2, "b", "read", 9, 10, seen=Seen(None))}
    problems, checked = cross_check(REF, [put, txn], final)
    assert problems == [] and checked == 2
    lost = Op(0, "c", "put", 0, 1, value="z", revision=6)
    problems, _ = cross_check(REF, [lost], final)
    assert len(problems) == 1 and "revision 6" in problems[0]
    problems, _ = cross_check(REF, [], {"a": Op(2, "a", "read", 9, 10, seen=Seen("2", 3))})
    assert problems and "final read" in problems[0]


@pytest.fixture
def sse_server():
    """A one-shot server that answers any request with a fixed event stream."""
    body = (b"retry: 1000\n\n"
            b"id: 1\nevent: progress\ndata: {\"revision\": 1}\n\n"
            b": a comment\n"
            b"id: 2\ndata: {\"type\": \"put\", \"key\": \"a\",\r\ndata:  \"value\": \"1\", \"revision\": 2}\n\n"
            b"event: compacted\ndata: {\"reason\": \"compacted\", \"compact_revision\": 5}\n\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\nX-LeifDB-Revision: 4\r\n\r\n")
            for i in range(0, len(body), 7):  # small chunks cut lines anywhere
                piece = body[i:i + 7]
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.sendall(b"0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    thread.join(5)
    listener.close()


def test_sse_reader_parses_a_chunked_stream(sse_server: str) -> None:
    stream = SseStream(sse_server, "/watch/a")
    assert stream.open() == 200
    assert stream.revision_header == 4
    messages = list(stream.messages())
    stream.close()
    assert stream.retry == 1000
    assert [(m.event, m.id) for m in messages] == [("progress", "1"), ("message", "2"), ("compacted", "2")]
    assert messages[1].json() == {"type": "put", "key": "a", "value": "1", "revision": 2}
    assert messages[2].json()["compact_revision"] == 5


def test_node_histories_merge_into_one_reference_and_must_agree() -> None:
    early = ("n1", 1, 4, {r: c for r, c in REF.changes.items() if r <= 4})
    late = ("n2", 6, 8, {7: REF.changes[7]})
    ref = merge_histories([late, early])
    assert ref.spans == [(1, 4), (6, 8)] and not ref.problems
    assert ref.covers(4) and not ref.covers(5) and ref.covers(8)
    # Revision 5 is in no history: a watcher's event there is not judged.
    result = check_watch(log(opened(start=1), E2, E3A, E3B, E4, E5, E7, ("progress", 8)), ref)
    assert result.ok and result.checked == 5, result.summary()
    # Two nodes that disagree on a revision both cover are a problem.
    other = ("n3", 2, 3, {2: REF.changes[2]})
    assert any("kept nothing at revision 3" in p for p in merge_histories([early, other]).problems)
    forked = ("n3", 2, 3, {2: REF.changes[2], 3: [("put", "a", "9", "1", 2)]})
    assert any("disagree" in p for p in merge_histories([early, forked]).problems)


def test_prev_consistency_is_not_checked_across_a_gap_in_the_reference():
    """What a key held before a gap in the reference says nothing about after it; within
    a span a wrong prev is still a problem."""
    from tests.faults.watch import Reference, _prev_consistency

    changes = {
        2: [("put", "k", "a", None, 0)],
        9: [("put", "k", "c", "b", 7)],  # 7 lies in the gap 4..8
        10: [("put", "k", "d", "zzz", 1)],  # wrong: the previous change left ("c", 9)
    }
    ref = Reference(spans=[(1, 3), (9, 10)], changes=changes)
    problems = _prev_consistency(ref)
    assert len(problems) == 1 and "revision 10" in problems[0], problems
