"""``leifdb.service.watch``: the watch hub's replay, live delivery, compaction, back-pressure
and long polls."""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock

from leifdb.errors import Compacted, LimitExceeded
from leifdb.kv.commands import Event
from leifdb.service.api import ServiceLimits
from leifdb.service.watch import WatchHub


class Sink:
    """Records what a watch delivers; ``full`` makes ``events`` answer False."""

    def __init__(self, full: bool = False) -> None:
        self.calls: list[list[Event]] = []
        self.bookmarks: list[int] = []
        self.closes: list[tuple[str, int | None]] = []
        self.full = full

    def events(self, events: list[Event]) -> bool:
        self.calls.append(list(events))
        return not self.full

    def progress(self, revision: int) -> None:
        self.bookmarks.append(revision)

    def closed(self, reason: str, compact_revision: int | None = None) -> None:
        self.closes.append((reason, compact_revision))

    @property
    def revisions(self) -> list[int]:
        return [call[0].revision for call in self.calls]


def put(key: str, revision: int, value: str | None = None) -> Event:
    return Event("put", key, value or f"{key}@{revision}", revision)


def _hub(**limits) -> tuple[Clock, WatchHub]:
    clock = Clock()
    return clock, WatchHub(clock, ServiceLimits(progress_interval=1.0, **limits))


def _apply(hub: WatchHub, revision: int, *keys: str) -> None:
    hub.applied(revision, tuple(put(k, revision) for k in keys))


# -- watches


def test_a_watch_replays_the_history_it_asks_for_then_follows_live_changes():
    _, hub = _hub()
    _apply(hub, 1, "a")
    _apply(hub, 2, "b")
    hub.applied(3, ())
    _apply(hub, 4, "a", "ab", "b")
    sink = Sink()
    watcher = hub.watch(sink, "a", True, 2)
    assert watcher.start_revision == 2
    assert sink.calls == [[put("a", 4), put("ab", 4)]]  # replayed before watch() returned
    assert sink.bookmarks == [4]
    _apply(hub, 5, "b")
    _apply(hub, 6, "ab")
    assert sink.revisions == [4, 6]


def test_a_watch_without_a_start_begins_after_the_current_revision():
    _, hub = _hub()
    _apply(hub, 1, "k")
    sink = Sink()
    assert hub.watch(sink, "k", False, None).start_revision == 2
    assert sink.calls == [] and sink.bookmarks == [1]
    _apply(hub, 2, "k")
    assert sink.revisions == [2]


def test_a_watch_from_the_future_waits_there_without_bookmarks_before_it():
    clock, hub = _hub()
    _apply(hub, 1, "k")
    sink = Sink()
    hub.watch(sink, "k", False, 4)
    _apply(hub, 2, "k")
    clock.advance(1)
    _apply(hub, 3, "k")
    clock.advance(1)
    assert sink.calls == [] and sink.bookmarks == [3]  # 3 = start - 1: nothing before 4 is owed
    _apply(hub, 4, "k")
    assert sink.revisions == [4]


def test_a_watch_before_the_kept_history_is_refused_as_compacted():
    _, hub = _hub(history_events=2)
    for revision in range(1, 5):
        _apply(hub, revision, "k")
    with pytest.raises(Compacted) as refused:
        hub.watch(Sink(), "k", False, 2)
    assert refused.value.compact_revision == 3
    sink = Sink()
    hub.watch(sink, "k", False, 3)
    assert sink.revisions == [3, 4]


def test_a_snapshot_closes_the_watches_it_leaves_behind():
    _, hub = _hub()
    _apply(hub, 1, "k")
    behind, ahead = Sink(), Sink()
    hub.watch(behind, "k", False, None)
    hub.watch(ahead, "k", False, 9)
    hub.reset(8)
    assert behind.closes == [("compacted", 9)]
    assert ahead.closes == [] and hub.watcher_count == 1
    _apply(hub, 9, "k")
    assert ahead.revisions == [9] and behind.revisions == []


def test_a_full_sink_queues_later_changes_and_gets_no_bookmark_until_it_drains():
    clock, hub = _hub()
    sink = Sink(full=True)
    watcher = hub.watch(sink, "k", False, None)
    _apply(hub, 1, "k")
    _apply(hub, 2, "k")
    _apply(hub, 3, "k")
    assert sink.revisions == [1]
    bookmarks = list(sink.bookmarks)
    clock.advance(1)
    assert sink.bookmarks == bookmarks  # changes are queued: no promise about them
    sink.full = False
    watcher.resume()
    assert sink.revisions == [1, 2, 3]
    clock.advance(1)
    assert sink.bookmarks[-1] == 3


def test_resume_stops_again_when_the_sink_fills_up():
    _, hub = _hub()
    sink = Sink(full=True)
    watcher = hub.watch(sink, "k", False, None)
    for revision in (1, 2, 3):
        _apply(hub, revision, "k")
    watcher.resume()  # still full: one more, then wait
    assert sink.revisions == [1, 2]
    sink.full = False
    watcher.resume()
    assert sink.revisions == [1, 2, 3]


def test_a_watcher_past_its_buffer_is_closed_with_overflow_and_the_others_go_on():
    _, hub = _hub(watcher_buffer_events=2)
    slow, fast = Sink(full=True), Sink()
    hub.watch(slow, "k", False, None)
    hub.watch(fast, "k", False, None)
    for revision in range(1, 5):
        _apply(hub, revision, "k")
    assert slow.revisions == [1] and slow.closes == [("overflow", None)]
    assert fast.revisions == [1, 2, 3, 4] and hub.watcher_count == 1


def test_a_cancelled_watch_hears_nothing_more():
    _, hub = _hub()
    sink = Sink()
    hub.watch(sink, "k", False, None).cancel()
    _apply(hub, 1, "k")
    assert sink.calls == [] and sink.closes == [] and hub.watcher_count == 0


def test_bookmarks_come_every_progress_interval_and_stop_with_the_last_watcher():
    clock, hub = _hub()
    sink = Sink()
    watcher = hub.watch(sink, "k", False, None)
    _apply(hub, 1, "other")
    clock.advance(1)
    _apply(hub, 2, "other")
    clock.advance(1)
    assert sink.bookmarks == [0, 1, 2]
    watcher.cancel()
    clock.advance(1)
    assert clock.getDelayedCalls() == []


def test_shutdown_closes_every_watch_and_answers_every_poll():
    clock, hub = _hub()
    sink = Sink()
    hub.watch(sink, "k", False, None)
    polled = []
    hub.wait("k", False, 1, 10).addCallback(polled.append)
    hub.shutdown()
    assert sink.closes == [("shutdown", None)] and polled == [[]]
    assert clock.getDelayedCalls() == []


def test_the_number_of_watchers_is_limited():
    _, hub = _hub(max_watchers=1)
    hub.watch(Sink(), "k", False, None)
    with pytest.raises(LimitExceeded):
        hub.watch(Sink(), "k", False, None)


# -- long polls


def test_a_long_poll_answers_at_once_from_history():
    _, hub = _hub()
    _apply(hub, 1, "k")
    _apply(hub, 2, "a", "k")
    _apply(hub, 3, "k")
    got = []
    hub.wait("k", False, 2, 10).addCallback(got.append)
    assert got == [[put("k", 2)]]  # the first revision's changes only


def test_a_long_poll_answers_with_the_first_change_after_it_began():
    clock, hub = _hub()
    _apply(hub, 1, "k")
    got = []
    hub.wait("k", True, 2, 10).addCallback(got.append)
    _apply(hub, 2, "other")
    assert got == []
    _apply(hub, 3, "k1", "k2")
    assert got == [[put("k1", 3), put("k2", 3)]]
    assert clock.getDelayedCalls() == []  # its timer is gone


def test_a_long_poll_times_out_empty():
    clock, hub = _hub()
    got = []
    hub.wait("k", False, 1, 5).addCallback(got.append)
    clock.advance(4.9)
    assert got == []
    clock.advance(0.1)
    assert got == [[]]
    _apply(hub, 1, "k")
    assert got == [[]]


def test_a_long_poll_before_the_history_or_across_a_snapshot_is_compacted():
    _, hub = _hub(history_events=1)
    _apply(hub, 1, "k")
    _apply(hub, 2, "k")
    with pytest.raises(Compacted):
        hub.wait("k", False, 1, 5)
    errors = []
    hub.wait("k", False, 3, 5).addErrback(lambda f: errors.append(f.value))
    hub.reset(10)
    assert isinstance(errors[0], Compacted) and errors[0].compact_revision == 11


def test_a_cancelled_long_poll_is_forgotten_with_its_timer():
    """The HTTP layer cancels the Deferred when the client goes away: the poll must not
    linger (holding its timer) until a change or its timeout."""
    clock, hub = _hub()
    d = hub.wait("k", False, 1, 600)
    errors = []
    d.addErrback(lambda f: errors.append(f.value))
    d.cancel()
    assert isinstance(errors[0], CancelledError)
    assert clock.getDelayedCalls() == [] and not hub._polls
    _apply(hub, 1, "k")  # nothing to answer any more
