"""The watch history window: recording, key and prefix matching, eviction by events and by
bytes, reset after a snapshot, and compacted or future start revisions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leifdb.kv import Event, History, event_bytes, matches
from leifdb.kv.history import EVENT_OVERHEAD_BYTES

BIG = 10**9


def put(key: str, revision: int, value: str = "v", prev: str | None = None) -> Event:
    return Event("put", key, value, revision, prev, 0 if prev is None else revision - 1)


def test_matches_exact_and_prefix() -> None:
    assert matches("a/b", "a/b", False)
    assert not matches("a/bc", "a/b", False)
    assert not matches("a", "a/b", False)
    assert matches("a/bc", "a/b", True)
    assert matches("a/b", "a/b", True)
    assert not matches("a/", "a/b", True)
    assert matches("anything", "", True)
    assert not matches("anything", "", False)


def test_event_bytes_counts_utf8_of_key_value_and_prev_value_plus_overhead() -> None:
    assert event_bytes(Event("put", "k", "vv", 1)) == EVENT_OVERHEAD_BYTES + 3
    assert event_bytes(Event("delete", "é", None, 2, "日本", 1)) == EVENT_OVERHEAD_BYTES + 2 + 6
    assert event_bytes(Event("put", "\U0001f600", "", 3, "", 2)) == EVENT_OVERHEAD_BYTES + 4


def test_new_history_serves_everything_from_the_start() -> None:
    h = History(10, BIG)
    assert (h.revision, h.compact_revision) == (0, 1)
    assert h.since(0, "a") == [] and h.since(1, "a") == []
    h.record(1, [put("a", 1)])
    assert h.since(0, "a") == [(1, [put("a", 1)])]
    assert h.since(-5, "a") == [(1, [put("a", 1)])]


def test_since_filters_by_key_or_prefix_and_groups_by_revision() -> None:
    h = History(100, BIG)
    h.record(1, [put("a", 1)])
    h.record(2, [])
    h.record(3, [put("b", 3), put("a/x", 3), put("a", 3, "w", "v")])
    h.record(5, [Event("delete", "a/y", None, 5, "old", 4)])
    assert h.revision == 5
    assert h.since(1, "a") == [(1, [put("a", 1)]), (3, [put("a", 3, "w", "v")])]
    assert h.since(1, "a", prefix=True) == [
        (1, [put("a", 1)]),
        (3, [put("a/x", 3), put("a", 3, "w", "v")]),
        (5, [Event("delete", "a/y", None, 5, "old", 4)]),
    ]
    assert h.since(2, "a") == [(3, [put("a", 3, "w", "v")])]
    assert h.since(4, "a/", prefix=True) == [(5, [Event("delete", "a/y", None, 5, "old", 4)])]
    assert h.since(1, "zz") == []
    assert h.since(1, "", prefix=True) == [
        (1, [put("a", 1)]), (3, [put("b", 3), put("a/x", 3), put("a", 3, "w", "v")]),
        (5, [Event("delete", "a/y", None, 5, "old", 4)]),
    ]


def test_start_after_the_last_revision_gives_nothing() -> None:
    h = History(10, BIG)
    h.record(4, [put("a", 4)])
    assert h.since(5, "a") == []
    assert h.since(1000, "a") == []


def test_record_refuses_revisions_that_do_not_increase() -> None:
    h = History(10, BIG)
    h.record(3, [put("a", 3)])
    h.record(4, [])
    for bad in (4, 3, 0):
        with pytest.raises(ValueError):
            h.record(bad, [put("a", bad)])
    assert h.revision == 4
    assert h.since(1, "a") == [(3, [put("a", 3)])]
    assert h.event_count == 1


def test_eviction_by_event_count_drops_whole_oldest_revisions() -> None:
    h = History(3, BIG)
    h.record(1, [put("a", 1), put("b", 1)])
    h.record(2, [put("a", 2)])
    assert (h.event_count, h.compact_revision) == (3, 1)
    h.record(3, [put("a", 3)])  # 4 events: revision 1 (two events) goes
    assert (h.event_count, h.compact_revision) == (2, 2)
    assert h.since(1, "a") is None
    assert h.since(2, "a") == [(2, [put("a", 2)]), (3, [put("a", 3)])]
    h.record(4, [])
    h.record(5, [put("x", 5), put("y", 5)])  # 4 events: revision 2 goes
    assert (h.event_count, h.compact_revision) == (3, 3)
    h.record(6, [put("z", 6)])  # 4 again: revision 3 goes; 4 had nothing
    assert h.compact_revision == 4
    assert h.since(4, "", prefix=True) == [(5, [put("x", 5), put("y", 5)]), (6, [put("z", 6)])]
    assert h.since(3, "", prefix=True) is None


def test_eviction_by_bytes() -> None:
    one = EVENT_OVERHEAD_BYTES + 2  # key "a" + value "v"
    h = History(BIG, 3 * one + 1)
    for revision in range(1, 4):
        h.record(revision, [put("a", revision)])
    assert (h.byte_count, h.compact_revision) == (3 * one, 1)
    h.record(4, [put("a", 4, "vv")])  # one byte more than an event: revision 1 goes
    assert (h.byte_count, h.compact_revision) == (3 * one + 1, 2)
    assert h.since(1, "a") is None
    big = put("a", 5, "v" * 2 * one)  # costs 3 * one - 1
    h.record(5, [big])  # 2, 3 and 4 must all go
    assert (h.byte_count, h.compact_revision) == (3 * one - 1, 5)
    assert h.since(4, "a") is None
    assert h.since(5, "a") == [(5, [big])]


def test_a_revision_bigger_than_a_bound_is_not_kept_either() -> None:
    h = History(2, BIG)
    h.record(1, [put("a", 1)])
    h.record(2, [put("a", 2), put("b", 2), put("c", 2)])
    assert (h.event_count, h.byte_count, h.compact_revision) == (0, 0, 3)
    assert h.since(2, "a") is None
    assert h.since(3, "a") == []
    h.record(3, [put("a", 3)])
    assert h.since(3, "a") == [(3, [put("a", 3)])]


def test_zero_bounds_keep_nothing_but_still_track_the_revision() -> None:
    h = History(0, BIG)
    h.record(1, [])
    assert h.compact_revision == 1
    h.record(2, [put("a", 2)])
    assert (h.revision, h.compact_revision, h.event_count) == (2, 3, 0)
    assert h.since(3, "a") == [] and h.since(2, "a") is None


def test_reset_forgets_everything_before_and_at_the_snapshot() -> None:
    h = History(10, BIG)
    h.record(1, [put("a", 1)])
    h.record(2, [put("a", 2)])
    h.reset(50)
    assert (h.revision, h.compact_revision, h.event_count, h.byte_count) == (50, 51, 0, 0)
    assert h.since(2, "a") is None
    assert h.since(50, "a") is None
    assert h.since(51, "a") == []
    with pytest.raises(ValueError):
        h.record(50, [])
    h.record(51, [put("a", 51)])
    assert h.since(0, "a") is None
    assert h.since(51, "a") == [(51, [put("a", 51)])]


def test_history_can_start_at_a_snapshot_revision() -> None:
    h = History(10, BIG, revision=7)
    assert (h.revision, h.compact_revision) == (7, 8)
    assert h.since(7, "a") is None and h.since(8, "a") == []


def test_negative_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        History(-1, 10)
    with pytest.raises(ValueError):
        History(10, -1)


def test_long_run_keeps_a_bounded_window_with_recent_lookups_correct() -> None:
    h = History(100, BIG)
    for revision in range(1, 20_001):
        h.record(revision, [put(f"k{revision % 7}", revision)])
    assert h.event_count == 100 and h.compact_revision == 19_901
    assert h.since(19_990, "k3") == [(19_995, [put("k3", 19_995)])]
    # The dead prefix is cut now and then: storage stays proportional to the window.
    assert len(h._revisions) <= 2 * 100 + 64


# --- against a model that keeps everything ---

EVENTS = st.lists(
    st.builds(lambda k, v: (k, v), st.sampled_from(["a", "a/1", "a/2", "b"]),
              st.text(alphabet="xé", max_size=6)),
    max_size=4,
)


@given(
    max_events=st.integers(0, 8),
    max_bytes=st.integers(0, 8 * (EVENT_OVERHEAD_BYTES + 8)),
    steps=st.lists(st.tuples(st.integers(1, 3), EVENTS, st.booleans()), max_size=40),
    key=st.sampled_from(["a", "a/", "b", ""]),
    prefix=st.booleans(),
)
@settings(derandomize=True, max_examples=300, deadline=None)
def test_history_against_a_model(
    max_events: int, max_bytes: int, steps: list, key: str, prefix: bool
) -> None:
    h = History(max_events, max_bytes)
    recorded: list[tuple[int, list[Event]]] = []
    base = 0  # everything at or before it is gone (a reset)
    revision = 0
    for gap, pairs, reset in steps:
        revision += gap
        if reset:
            h.reset(revision)
            recorded, base = [], revision
            continue
        events = [Event("put", k, v, revision) for k, v in pairs]
        h.record(revision, events)
        if events:
            recorded.append((revision, events))
        # The kept window: the longest suffix of recorded revisions within both bounds.
        kept: list[tuple[int, list[Event]]] = []
        n = size = 0
        for rev, group in reversed(recorded):
            n += len(group)
            size += sum(event_bytes(e) for e in group)
            if n > max_events or size > max_bytes:
                break
            kept.insert(0, (rev, group))
        dropped = recorded[: len(recorded) - len(kept)]
        compact = dropped[-1][0] + 1 if dropped else base + 1
        assert h.revision == revision
        assert h.compact_revision == compact
        assert h.event_count == sum(len(g) for _, g in kept) <= max_events
        assert h.byte_count == sum(event_bytes(e) for _, g in kept for e in g) <= max_bytes
        for start in range(compact - 2, revision + 3):
            got = h.since(start, key, prefix)
            if max(start, 1) < compact:
                assert got is None
                continue
            expected = [
                (rev, [e for e in group if (e.key.startswith(key) if prefix else e.key == key)])
                for rev, group in kept if rev >= start
            ]
            assert got == [(rev, group) for rev, group in expected if group]
