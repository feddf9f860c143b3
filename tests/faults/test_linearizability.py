"""Tests for the key-value linearizability checker: hand-written histories, generated ones."""

from __future__ import annotations

import io
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.faults.history import (
    Condition,
    HistoryError,
    Op,
    Seen,
    dump_history,
    load_history,
    op_from_dict,
    op_to_dict,
)
from tests.faults.linearizability import check, main

ROOT = Path(__file__).resolve().parents[2]


# --- compact constructors --------------------------------------------------------------


def rd(client: int, t0: float, t1: float | None, value: str | None, rev: int | None = None,
       key: str = "x", outcome: str = "ok") -> Op:
    seen = Seen(value, rev) if outcome == "ok" else None
    return Op(client, key, "read", t0, t1, outcome=outcome, seen=seen)  # type: ignore[arg-type]


def put(client: int, t0: float, t1: float | None, value: str, rev: int | None = None,
        key: str = "x", outcome: str = "ok", cond: Condition | None = None) -> Op:
    return Op(client, key, "put", t0, t1, outcome=outcome, value=value,  # type: ignore[arg-type]
              condition=cond, revision=rev)


def delete(client: int, t0: float, t1: float | None, rev: int | None = None, key: str = "x",
           outcome: str = "ok", cond: Condition | None = None) -> Op:
    return Op(client, key, "delete", t0, t1, outcome=outcome, condition=cond,  # type: ignore[arg-type]
              revision=rev)


def cas_failed(client: int, t0: float, t1: float, cond: Condition, seen: Seen | None,
               value: str | None = "z", key: str = "x") -> Op:
    kind = "delete" if value is None else "put"
    return Op(client, key, kind, t0, t1, outcome="fail",  # type: ignore[arg-type]
              value=value, condition=cond, seen=seen, condition_failed=True)


def prev(value: str) -> Condition:
    return Condition(prev_value=value)


def prev_rev(rev: int) -> Condition:
    return Condition(prev_revision=rev)


ABSENT = Condition(must_be_absent=True)


def assert_valid(history: list[Op]) -> None:
    result = check(history)
    assert result.ok is True, result.summary()


def assert_invalid(history: list[Op]) -> str:
    result = check(history)
    assert result.ok is False, result.summary()
    assert result.counterexample
    return result.counterexample


# --- basic histories ------------------------------------------------------------------


def test_empty_history_is_linearizable() -> None:
    result = check([])
    assert result.ok is True
    assert result.keys == {}


def test_sequential_history_is_linearizable() -> None:
    assert_valid([
        rd(1, 0, 1, None),
        put(1, 2, 3, "a", rev=1),
        rd(2, 4, 5, "a", rev=1),
        put(2, 6, 7, "b", rev=2),
        rd(1, 8, 9, "b", rev=2),
        delete(1, 10, 11, rev=3),
        rd(2, 12, 13, None),
    ])


def test_overlapping_operations_linearize_in_a_non_obvious_order() -> None:
    # The put invoked first must take effect last; both reads fall inside it.
    assert_valid([
        put(1, 0, 10, "a"),
        put(2, 1, 3, "b"),
        rd(3, 2, 4, "b"),
        rd(3, 5, 6, "b"),
        rd(4, 7, 8, "a"),
        rd(3, 11, 12, "a"),
    ])


def test_read_concurrent_with_a_write_may_see_either_value() -> None:
    base = [put(1, 0, 1, "a"), put(2, 2, 6, "b")]
    assert_valid(base + [rd(3, 3, 4, "a"), rd(4, 3.5, 5, "b")])
    # ...but not the old value after a read already saw the new one.
    assert_invalid(base + [rd(3, 3, 4, "b"), rd(4, 4.5, 5, "a")])


def test_stale_read_is_a_violation() -> None:
    text = assert_invalid([
        put(1, 0, 1, "a"),
        put(1, 2, 3, "b"),
        rd(2, 4, 5, "a"),
    ])
    assert "read 'x' -> 'a'" in text


def test_lost_acknowledged_write_is_a_violation() -> None:
    assert_invalid([
        put(1, 0, 1, "a"),
        rd(2, 2, 3, None),
    ])
    assert_invalid([
        put(1, 0, 1, "a"),
        put(2, 2, 3, "b"),
        rd(1, 4, 5, "a"),
        rd(2, 6, 7, "a"),
    ])


def test_read_of_a_value_nobody_wrote_is_a_violation() -> None:
    text = assert_invalid([put(1, 0, 1, "a"), rd(2, 0.5, 3, "ghost")])
    assert "No operation writes 'ghost'" in text


def test_equal_timestamps_count_as_concurrent() -> None:
    assert_valid([put(1, 0, 2, "a"), rd(2, 2, 3, None)])
    assert_valid([put(1, 0, 1, "a"), put(1, 2, 3, "b"), rd(2, 3, 4, "a")])
    assert_valid([put(1, 0, 2, "a"), put(1, 2, 3, "b"), rd(2, 4, 5, "a")])
    assert_invalid([put(1, 0, 1.9, "a"), put(1, 2, 2.9, "b"), rd(2, 3, 4, "a")])
    assert_valid([rd(2, 0, 2, "a"), put(1, 2, 3, "a")])
    assert_invalid([rd(2, 0, 1.9, "a"), put(1, 2, 3, "a")])


# --- conditional writes ---------------------------------------------------------------


def test_two_cas_on_the_same_previous_value_cannot_both_succeed() -> None:
    assert_invalid([
        put(1, 0, 1, "a"),
        put(2, 2, 5, "b", cond=prev("a")),
        put(3, 2, 5, "c", cond=prev("a")),
    ])


def test_two_cas_on_the_same_revision_cannot_both_succeed() -> None:
    assert_invalid([
        put(1, 0, 1, "a", rev=1),
        put(2, 2, 5, "b", cond=prev_rev(1)),
        put(3, 2, 5, "c", cond=prev_rev(1)),
    ])


def test_two_create_if_absent_cannot_both_succeed() -> None:
    assert_invalid([
        put(2, 2, 5, "b", cond=ABSENT),
        put(3, 2, 5, "c", cond=ABSENT),
    ])


def test_chained_cas_is_linearizable() -> None:
    assert_valid([
        put(1, 0, 1, "0"),
        put(2, 2, 6, "2", cond=prev("1")),
        put(3, 2, 6, "1", cond=prev("0")),
        cas_failed(4, 2, 6, prev("0"), Seen("2")),
        rd(1, 7, 8, "2"),
    ])


def test_conditional_write_applied_twice_is_a_violation() -> None:
    # The CAS finished before 'a' was written again, so 'b' cannot reappear after it.
    assert_invalid([
        put(1, 0, 1, "a"),
        put(2, 2, 3, "b", cond=prev("a")),
        rd(3, 4, 5, "b"),
        put(1, 6, 7, "a"),
        rd(3, 8, 9, "b"),
    ])


def test_failed_cas_that_saw_an_impossible_value_is_a_violation() -> None:
    assert_invalid([put(1, 0, 1, "a"), cas_failed(2, 2, 3, prev("q"), Seen("never"))])


def test_failed_cas_whose_condition_held_is_a_violation() -> None:
    # It saw 'a' and was told prev_value='a' failed: a contradiction on its own.
    assert_invalid([put(1, 0, 1, "a"), cas_failed(2, 2, 3, prev("a"), Seen("a"))])
    # Without the value, the 412 still says the key was not 'a' at some point in [2, 3].
    assert_invalid([put(1, 0, 1, "a"), cas_failed(2, 2, 3, prev("a"), None)])
    assert_valid([put(1, 0, 1, "a"), put(3, 1.5, 2.5, "b"), cas_failed(2, 2, 3, prev("a"), None)])


def test_failed_cas_is_an_observation_but_not_a_write() -> None:
    history = [put(1, 0, 1, "a"), cas_failed(2, 2, 3, prev("q"), Seen("a"), value="z")]
    assert_valid(history + [rd(3, 4, 5, "a")])
    assert_invalid(history + [rd(3, 4, 5, "z")])


def test_failed_must_be_absent_needs_a_present_key() -> None:
    assert_invalid([cas_failed(1, 0, 1, ABSENT, None)])
    assert_valid([put(2, 0, 1, "a"), cas_failed(1, 2, 3, ABSENT, Seen("a"))])


def test_prev_revision_is_judged_against_the_current_write() -> None:
    base = [put(1, 0, 1, "a", rev=1), put(1, 2, 3, "b", rev=2)]
    assert_valid(base + [put(2, 4, 5, "c", rev=3, cond=prev_rev(2)), rd(3, 6, 7, "c", rev=3)])
    assert_invalid(base + [put(2, 4, 5, "c", cond=prev_rev(1))])
    assert_valid(base + [cas_failed(2, 4, 5, prev_rev(1), Seen("b", 2))])


def test_failed_and_unknown_outcomes_that_observed_nothing_are_ignored() -> None:
    assert_valid([
        put(1, 0, 1, "a"),
        put(2, 2, 3, "b", outcome="fail"),  # 503 applied=false
        rd(3, 4, None, None, outcome="unknown"),
        rd(3, 5, 6, None, outcome="fail"),
        rd(1, 7, 8, "a"),
    ])


# --- unknown outcomes -----------------------------------------------------------------


def test_unknown_write_that_must_have_applied() -> None:
    assert_valid([
        put(1, 0, 1, "a"),
        put(2, 2, None, "b", outcome="unknown"),
        rd(3, 10, 11, "b"),
    ])


def test_unknown_write_may_never_apply() -> None:
    assert_valid([
        put(1, 0, 1, "a"),
        put(2, 2, 3, "b", outcome="unknown"),
        rd(3, 10, 11, "a"),
    ])


def test_unknown_write_may_apply_late() -> None:
    # The client timed out at 3; the write applies after 'c' was acknowledged.
    assert_valid([
        put(1, 0, 1, "a"),
        put(2, 2, 3, "b", outcome="unknown"),
        put(1, 4, 5, "c"),
        rd(3, 6, 7, "c"),
        rd(3, 8, 9, "b"),
        rd(4, 10, 11, "b"),
    ])


def test_unknown_write_cannot_apply_before_it_was_invoked() -> None:
    assert_invalid([
        put(1, 0, 1, "a"),
        rd(3, 2, 3, "b"),
        put(2, 4, None, "b", outcome="unknown"),
    ])


def test_unknown_write_applies_at_most_once() -> None:
    assert_invalid([
        put(1, 0, 1, "a"),
        put(2, 2, None, "b", outcome="unknown"),
        rd(3, 3, 4, "b"),
        put(1, 5, 6, "a"),
        rd(3, 7, 8, "b"),
    ])


def test_unknown_conditional_write_applies_only_when_its_condition_holds() -> None:
    assert_valid([
        put(1, 0, 1, "a"),
        put(2, 2, None, "b", cond=prev("a"), outcome="unknown"),
        rd(3, 3, 4, "b"),
    ])
    assert_invalid([
        put(1, 0, 1, "a"),
        put(2, 2, None, "b", cond=prev("zzz"), outcome="unknown"),
        rd(3, 3, 4, "b"),
    ])


def test_unknown_write_seen_only_by_a_412_or_a_revision_is_kept() -> None:
    # Nobody saw 'b', but only it explains why prev_value='a' failed with no other writer...
    assert_valid([
        put(1, 0, 1, "a"),
        put(2, 2, None, "b", outcome="unknown"),
        cas_failed(3, 3, 4, prev("a"), None),
    ])
    # ...or which write had revision 5.
    assert_valid([
        put(1, 0, 1, "a", rev=1),
        put(2, 2, None, "b", outcome="unknown"),
        put(3, 3, 4, "c", cond=prev_rev(5)),
        rd(4, 5, 6, "c"),
    ])


def test_unknown_write_nobody_could_see_is_dropped() -> None:
    result = check([
        put(1, 0, 1, "a"),
        put(2, 2, None, "b", outcome="unknown"),
        rd(3, 3, 4, "a"),
        put(1, 5, 6, "c"),
        rd(3, 7, 8, "c"),
    ])
    assert result.ok is True
    assert result.keys["x"].dropped == 1


def test_unknown_writes_may_apply_in_any_order() -> None:
    base = [put(1, 0, 1, "a"), put(2, 2, None, "b", outcome="unknown"),
            put(3, 2, None, "c", outcome="unknown")]
    assert_valid(base + [rd(4, 3, 4, "b"), rd(4, 5, 6, "c")])
    assert_valid(base + [rd(4, 3, 4, "c"), rd(4, 5, 6, "b")])
    assert_invalid(base + [rd(4, 3, 4, "c"), rd(4, 5, 6, "b"), rd(4, 7, 8, "c")])


def test_unknown_writes_can_chain() -> None:
    # 'c' has two possible writers, so neither must have applied; the CAS on 'c' needs
    # the unknown put of 'b' and then the unknown CAS b -> c, back to back.
    history = [
        put(1, 0, 1, "a"),
        put(2, 2, None, "b", outcome="unknown"),
        put(3, 2, None, "c", cond=prev("b"), outcome="unknown"),
        put(4, 2, None, "c", cond=prev("zzz"), outcome="unknown"),
        put(5, 3, 4, "d", cond=prev("c")),
    ]
    assert_valid(history)
    assert_invalid(history + [rd(5, 5, 6, "c")])


def test_an_unknown_write_left_for_later_is_not_pruned_as_explored() -> None:
    # The search first applies the unknown 'b' early (after 'b', 'a' in that order) and
    # fails at the second read; it must still try keeping it for after 'c'.
    assert_valid([
        put(2, 0, 3, "b"),
        put(1, 0, 3, "a"),
        put(3, 0, None, "b", outcome="unknown"),
        rd(4, 4, 5, "b"),
        put(1, 6, 7, "c"),
        rd(4, 8, 9, "b"),
    ])


def test_identical_unknown_deletes_each_apply_at_most_once() -> None:
    base = [
        put(1, 0, 1, "a"),
        delete(2, 2, None, outcome="unknown"),
        delete(3, 2.5, None, outcome="unknown"),
        rd(4, 3, 4, None),
        put(1, 5, 6, "b"),
        rd(4, 7, 8, None),
    ]
    assert_valid(base)
    assert_invalid(base + [put(1, 9, 10, "c"), rd(4, 11, 12, None)])


# --- deletes --------------------------------------------------------------------------


def test_delete_makes_the_key_absent() -> None:
    base = [put(1, 0, 1, "a"), delete(1, 2, 3)]
    assert_valid(base + [rd(2, 4, 5, None)])
    assert_invalid(base + [rd(2, 4, 5, "a")])


def test_delete_of_an_absent_key_succeeds_and_recreation_works() -> None:
    assert_valid([
        delete(1, 0, 1),
        rd(2, 2, 3, None),
        put(1, 4, 5, "a", cond=ABSENT),
        delete(2, 6, 7, cond=prev("a")),
        put(1, 8, 9, "b", cond=ABSENT),
        rd(2, 10, 11, "b"),
    ])


def test_conditional_delete_respects_its_condition() -> None:
    assert_invalid([put(1, 0, 1, "a"), delete(2, 2, 3, cond=prev("b"))])
    assert_invalid([delete(2, 2, 3, cond=prev_rev(7))])
    assert_valid([put(1, 0, 1, "a"), cas_failed(2, 2, 3, prev("b"), Seen("a"), value=None),
                  rd(3, 4, 5, "a")])


def test_unknown_delete_can_explain_an_absent_read() -> None:
    assert_valid([put(1, 0, 1, "a"), delete(2, 2, None, outcome="unknown"), rd(3, 5, 6, None)])
    assert_invalid([put(1, 0, 1, "a"), delete(2, 2, 3, outcome="fail"), rd(3, 5, 6, None)])


# --- revisions ------------------------------------------------------------------------


def test_read_revision_must_match_the_write_that_got_it() -> None:
    base = [put(1, 0, 1, "a", rev=1), put(1, 2, 3, "b", rev=2)]
    assert_valid(base + [rd(2, 4, 5, "b", rev=2)])
    text = assert_invalid(base + [rd(2, 4, 5, "b", rev=1)])
    assert "Revision 1 was reported for an operation that did not write 'b'" in text
    assert_invalid(base + [rd(2, 4, 5, "b", rev=3)])  # the current write's revision is known


def test_revisions_must_increase_along_the_linearization() -> None:
    assert_invalid([put(1, 0, 1, "a", rev=5), put(1, 2, 3, "b", rev=4)])
    # Concurrent writes may be ordered by their revisions.
    assert_valid([put(1, 0, 3, "a", rev=5), put(2, 0, 3, "b", rev=4), rd(3, 4, 5, "a")])
    assert_invalid([put(1, 0, 3, "a", rev=5), put(2, 0, 3, "b", rev=4), rd(3, 4, 5, "b")])


def test_a_412_with_its_own_revision_is_ordered_by_it() -> None:
    refuted = replace(cas_failed(2, 2, 3, prev("q"), Seen("a")), revision=5)
    assert_valid([put(1, 0, 1, "a", rev=1), refuted, put(3, 2, 10, "b", rev=6)])
    # 'b' got revision 4, so it was applied before the 412 (revision 5), which saw 'a'.
    assert_invalid([put(1, 0, 1, "a", rev=1), refuted, put(3, 2, 10, "b", rev=4)])


def test_revisions_are_unique_and_ordered_across_keys() -> None:
    assert_invalid([put(1, 0, 1, "a", rev=3, key="x"), put(2, 2, 3, "b", rev=3, key="y")])
    assert_invalid([put(1, 0, 1, "a", rev=3, key="x"), put(2, 2, 3, "b", rev=2, key="y")])
    assert_valid([put(1, 0, 1, "a", rev=2, key="x"), put(2, 2, 3, "b", rev=3, key="y")])
    # Seeing revision 5 on y means the write of revision 4 on x was already invoked.
    y_written = put(3, 0, None, "b", outcome="unknown", key="y")
    assert_valid([y_written, rd(1, 0, 1, "b", rev=5, key="y"), put(2, 0.5, 3, "a", rev=4, key="x")])
    assert_invalid([y_written, rd(1, 0, 1, "b", rev=5, key="y"), put(2, 2, 3, "a", rev=4, key="x")])
    # A revision written to x cannot be seen on y.
    assert_invalid([put(1, 0, 1, "a", rev=1, key="x"), put(2, 0, 1, "a", key="y"),
                    rd(3, 2, 3, "a", rev=1, key="y")])


def test_unknown_revision_binds_at_its_first_observation() -> None:
    base = [put(1, 0, 1, "a", rev=1), put(2, 2, None, "b", outcome="unknown")]
    assert_valid(base + [rd(3, 5, 6, "b", rev=7), rd(4, 7, 8, "b", rev=7)])
    assert_invalid(base + [rd(3, 5, 6, "b", rev=7), rd(4, 7, 8, "b", rev=8)])
    # An unknown revision lies above the revisions linearized before the write.
    assert_invalid([put(1, 0, 1, "a", rev=5), put(2, 2, 3, "b"), rd(3, 4, 5, "b", rev=4)])
    # ...and below those linearized after it (here a 412 that reported its own revision).
    refuted = replace(cas_failed(3, 2, 3, prev("q"), Seen("b")), revision=5)
    assert_valid([put(2, 0, 1, "b"), refuted, rd(4, 2.5, 4, "b", rev=4)])
    assert_invalid([put(2, 0, 1, "b"), refuted, rd(4, 2.5, 4, "b", rev=6)])


def test_prev_revision_can_match_a_write_whose_revision_was_never_seen() -> None:
    base = [put(1, 0, 1, "a", rev=1), put(2, 2, None, "b", outcome="unknown")]
    assert_valid(base + [put(3, 5, 6, "c", rev=9, cond=prev_rev(4)), rd(4, 7, 8, "c", rev=9)])
    # Once 'b' is known to be current, its revision is neither one reported for another
    # operation nor one that belongs to another key.
    seen_b = base + [rd(3, 3, 4, "b")]
    assert_valid(seen_b + [put(3, 5, 6, "c", cond=prev_rev(3))])
    assert_invalid(seen_b + [put(3, 5, 6, "c", cond=prev_rev(1))])
    assert_invalid(seen_b + [put(3, 5, 6, "c", cond=prev_rev(2)), put(5, 0, 1, "q", rev=2, key="y")])
    assert_invalid(seen_b + [put(3, 5, 6, "c", cond=prev_rev(2)), rd(5, 2, 3, "q", rev=2, key="y"),
                             put(6, 0, None, "q", outcome="unknown", key="y")])


def test_revision_of_a_delete_is_not_a_key_revision() -> None:
    assert_invalid([put(1, 0, 1, "a", rev=1), delete(1, 2, 3, rev=2), put(1, 4, 5, "b"),
                    rd(2, 6, 7, "b", rev=2)])
    text = assert_invalid([put(1, 0, 1, "a", rev=1), delete(1, 2, 3, rev=2),
                           put(1, 4, 5, "b", cond=prev_rev(2))])
    assert "Revision 2 was reported for an operation that did not write the key" in text


# --- keys -----------------------------------------------------------------------------


def test_keys_are_checked_independently() -> None:
    # As one register this would be a stale read; as two keys it is fine.
    history = [
        put(1, 0, 1, "a", key="x"),
        put(1, 2, 3, "b", key="y"),
        rd(2, 4, 5, "a", key="x"),
        rd(2, 6, 7, "b", key="y"),
    ]
    result = check(history)
    assert result.ok is True
    assert set(result.keys) == {"x", "y"}
    assert all(r.ok for r in result.keys.values())


def test_a_failing_key_is_reported_alone() -> None:
    history = [
        put(1, 0, 1, "a", key="good"),
        rd(2, 2, 3, "a", key="good"),
        put(1, 0, 1, "a", key="bad"),
        put(1, 2, 3, "b", key="bad"),
        rd(2, 4, 5, "a", key="bad"),
    ]
    result = check(history)
    assert result.ok is False
    assert result.keys["good"].ok is True
    assert result.keys["bad"].ok is False
    assert result.counterexample is not None and "'bad'" in result.counterexample


# --- results, timeouts, counterexamples -----------------------------------------------


def test_timeout_leaves_the_verdict_undecided() -> None:
    result = check([put(1, 0, 1, "a"), rd(2, 2, 3, "a")], timeout=0)
    assert result.ok is None
    assert result.keys["x"].ok is None


def test_counterexample_of_a_simple_pattern_names_the_operations() -> None:
    history = []
    t = 0.0
    for i in range(200):
        history.append(put(1, t, t + 1, f"v{i}"))
        history.append(rd(2, t + 1.5, t + 2.5, f"v{i}"))
        t += 3
    history.append(rd(2, t, t + 1, "v150"))  # stale
    history.append(put(1, t + 2, t + 3, "tail"))
    result = check(history)
    assert result.ok is False
    assert result.counterexample == "\n".join([
        "key 'x' is not linearizable.",
        "'v150' was observed after another write surely replaced it:",
        "  c1 put 'x'='v150' -> ok [450, 451]",
        "  c1 put 'x'='v151' -> ok [453, 454]",
        "  c2 read 'x' -> 'v150' [600, 601]",
    ])


def test_counterexample_found_by_search_is_shrunk() -> None:
    history = []
    t = 0.0
    for i in range(300):
        history.append(put(1, t, t + 1, f"v{i}"))
        history.append(rd(2, t + 1.5, t + 2.5, f"v{i}"))
        t += 3
    # Both conditional writes claim to have replaced v299.
    history.append(put(3, t, t + 2, "x1", cond=prev("v299")))
    history.append(put(4, t, t + 2, "x2", cond=prev("v299")))
    for i in range(100):
        history.append(rd(2, t + 3 + i, t + 3.5 + i, "x2"))
    result = check(history)
    assert result.ok is False
    text = result.counterexample or ""
    assert "A sub-history of 302 of its 702 operations already fails" in text
    assert "read 'x'" not in text  # no observation was needed
    assert "put 'x'='x1' if prev_value='v299' -> ok" in text
    assert "it would replace 'v299', written once" in text


# --- the history format and the command line ------------------------------------------


SAMPLE = [
    put(1, 0.5, 1.25, "a", rev=3),
    put(2, 1.0, None, "b", outcome="unknown", cond=prev_rev(3)),
    delete(3, 1.0, 2.0, outcome="fail"),
    cas_failed(1, 2.0, 3.0, ABSENT, Seen("a", 3)),
    cas_failed(1, 2.0, 3.0, prev("q"), None, value=None),
    rd(2, 4.0, 5.0, None, key="other"),
    rd(2, 6.0, 7.0, "b", rev=9),
]


def test_history_round_trips_through_json_lines() -> None:
    buf = io.StringIO()
    dump_history(SAMPLE, buf)
    text = buf.getvalue()
    assert len(text.splitlines()) == len(SAMPLE)
    assert load_history(io.StringIO("# a comment\n\n" + text)) == SAMPLE
    assert [op_from_dict(op_to_dict(op)) for op in SAMPLE] == SAMPLE


@pytest.mark.parametrize("line", [
    '{"client": 1, "key": "x", "kind": "read", "invoke": 0, "complete": 1}',  # ok read, no seen
    '{"client": 1, "key": "x", "kind": "put", "invoke": 0, "complete": 1}',  # no value
    '{"client": 1, "key": "x", "kind": "read", "invoke": 2, "complete": 1, "seen": {"value": null}}',
    '{"client": 1, "key": "x", "kind": "put", "value": "a", "invoke": 0, "complete": null}',
    '{"client": 1, "key": "x", "kind": "put", "value": "a", "invoke": 0, "complete": 1, "bogus": 1}',
    '{"client": 1, "key": "x", "kind": "put", "value": "a", "invoke": 0, "complete": 1,'
    ' "condition": {"prev_value": "a", "must_be_absent": true}}',
    '{"client": 1, "key": "x", "kind": "put", "value": "a", "invoke": 0, "complete": 1,'
    ' "outcome": "fail", "condition_failed": true}',  # 412 without a condition
    '{"client": 1, "key": "x", "kind": "read", "invoke": 0, "complete": 1,'
    ' "seen": {"value": null, "revision": 3}}',
    'not json',
])
def test_malformed_lines_are_rejected(line: str) -> None:
    with pytest.raises(HistoryError):
        load_history(io.StringIO(line + "\n"))


def test_command_line_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.jsonl"
    bad = tmp_path / "bad.jsonl"
    with good.open("w") as f:
        dump_history([put(1, 0, 1, "a"), rd(2, 2, 3, "a")], f)
    with bad.open("w") as f:
        dump_history([put(1, 0, 1, "a"), rd(2, 2, 3, "b")], f)
    assert main([str(good)]) == 0
    assert "linearizable" in capsys.readouterr().out
    assert main([str(bad)]) == 1
    assert "NOT linearizable" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert main([str(good), "--timeout", "0"]) == 3


def test_module_runs_from_the_command_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    with bad.open("w") as f:
        dump_history([put(1, 0, 1, "a"), put(1, 2, 3, "b"), rd(2, 4, 5, "a")], f)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.faults.linearizability", str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "key 'x' is not linearizable" in proc.stdout


# --- generated histories --------------------------------------------------------------


def generate(rng: random.Random, n_ops: int, keys: int, clients: int, *,
             p_unknown: float = 0.08, p_unavailable: float = 0.04,
             p_report: float = 0.7, sloppy: bool = False) -> list[Op]:
    """A history produced by a real sequential store: every operation takes effect at a
    random point inside its interval (an unknown write maybe later, maybe never), so the
    history is linearizable by construction.

    Values are unique. Revisions are reported with probability ``p_report``. Clients name
    revisions in prev_revision that some answer reported and 412s carry the current value,
    unless ``sloppy``: then prev_revision is often a random number and a fifth of the 412s
    say nothing, which keeps the checker from simplifying unknown writes (slow; keep small).
    """
    free_at = [0.0] * clients
    slots = []
    for _ in range(n_ops):
        c = rng.randrange(clients)
        invoke = free_at[c] + rng.expovariate(2.0)
        complete = invoke + rng.expovariate(0.5)
        free_at[c] = complete
        slots.append((c, invoke, complete))
    # Choose what each slot does and when it takes effect.
    plans = []
    for c, invoke, complete in slots:
        roll = rng.random()
        if roll < p_unknown:
            outcome = "unknown"
            point = invoke + rng.expovariate(0.2)  # may be long after the timeout
            applies = rng.random() < 0.5
            end = rng.choice([complete, None])
        elif roll < p_unknown + p_unavailable:
            outcome, point, applies, end = "fail", rng.uniform(invoke, complete), False, complete
        else:
            outcome, point, applies, end = "ok", rng.uniform(invoke, complete), True, complete
        plans.append((point, c, invoke, end, outcome, applies))
    plans.sort()

    store: dict[str, tuple[str, int]] = {}
    log_index = 0
    history: list[Op] = []
    names = [f"k{i}" for i in range(keys)]
    written: dict[str, list[str]] = {k: [] for k in names}
    reported: dict[str, list[int]] = {k: [] for k in names}  # revisions some answer showed
    for n, (_, c, invoke, end, outcome, applies) in enumerate(plans):
        key = rng.choice(names)
        current = store.get(key)
        roll = rng.random()
        if roll < 0.4:
            if outcome == "ok":
                rev = current[1] if current and rng.random() < p_report else None
                seen = Seen(current[0], rev) if current else Seen(None)
                if rev is not None:
                    reported[key].append(rev)
                history.append(Op(c, key, "read", invoke, end, seen=seen))
            else:
                history.append(Op(c, key, "read", invoke, end, outcome=outcome))  # type: ignore[arg-type]
            continue
        kind = "delete" if roll < 0.5 else "put"
        value = f"v{n}" if kind == "put" else None
        cond = None
        if roll >= 0.75:  # conditional
            pick = rng.random()
            if pick < 0.4:
                if current and rng.random() < 0.7:
                    target = current[0]
                else:
                    target = rng.choice(written[key] or ["none"])
                cond = Condition(prev_value=target)
            elif pick < 0.8:
                if sloppy:
                    if current and rng.random() < 0.7:
                        target_rev = current[1]
                    else:
                        target_rev = rng.randint(1, log_index + 2)
                elif current and current[1] in reported[key] and rng.random() < 0.7:
                    target_rev = current[1]
                elif reported[key]:
                    target_rev = rng.choice(reported[key])
                else:
                    target_rev = None
                cond = None if target_rev is None else Condition(prev_revision=target_rev)
            else:
                cond = Condition(must_be_absent=True)
        if not applies:
            history.append(Op(c, key, kind, invoke, end, outcome=outcome,  # type: ignore[arg-type]
                              value=value, condition=cond))
            continue
        if cond is None:
            holds = True
        elif cond.prev_value is not None:
            holds = current is not None and current[0] == cond.prev_value
        elif cond.prev_revision is not None:
            holds = current is not None and current[1] == cond.prev_revision
        else:
            holds = current is None
        log_index += 1
        report = outcome == "ok" and rng.random() < p_report
        if holds:
            if report:
                reported[key].append(log_index)
            if value is None:
                store.pop(key, None)
            else:
                store[key] = (value, log_index)
                written[key].append(value)
            history.append(Op(c, key, kind, invoke, end, outcome=outcome,  # type: ignore[arg-type]
                              value=value, condition=cond, revision=log_index if report else None))
        elif outcome == "unknown":
            history.append(Op(c, key, kind, invoke, end, outcome="unknown",  # type: ignore[arg-type]
                              value=value, condition=cond))
        else:
            seen = None
            if not sloppy or rng.random() < 0.8:
                rev = current[1] if current and rng.random() < p_report else None
                seen = Seen(current[0], rev) if current else Seen(None)
                if rev is not None:
                    reported[key].append(rev)
            history.append(Op(c, key, kind, invoke, end, outcome="fail",  # type: ignore[arg-type]
                              value=value, condition=cond, seen=seen, condition_failed=True))
    rng.shuffle(history)  # the checker must not depend on the order of the list
    return history


def test_generated_histories_are_linearizable() -> None:
    rng = random.Random(20261126)
    for _ in range(60):
        history = generate(rng, rng.randint(20, 150), rng.randint(1, 3), rng.randint(2, 6))
        result = check(history, timeout=30)
        assert result.ok is True, result.summary()


def test_generated_histories_with_sloppy_clients_are_linearizable() -> None:
    # 412s without the current value and made-up prev_revisions keep every unknown write
    # in the search: a harder search, so smaller histories.
    rng = random.Random(5)
    for _ in range(40):
        history = generate(rng, rng.randint(20, 80), rng.randint(1, 2), rng.randint(2, 5), sloppy=True)
        result = check(history, timeout=30)
        assert result.ok is True, result.summary()


def stale_read(history: list[Op], rng: random.Random) -> list[Op] | None:
    """Make one ok read return a value that was overwritten before the read began: the
    value of a plain put that completed before another plain put began, which completed
    before the read began."""
    puts = [op for op in history if op.kind == "put" and op.outcome == "ok" and op.condition is None]
    reads = [i for i, op in enumerate(history) if op.kind == "read" and op.outcome == "ok"]
    rng.shuffle(reads)
    for i in reads:
        r = history[i]
        done = [p for p in puts if p.key == r.key and p.complete < r.invoke]  # type: ignore[operator]
        for old in done:
            if any(p.invoke > old.complete for p in done):  # type: ignore[operator]
                history = list(history)
                history[i] = replace(r, seen=Seen(old.value))
                return history
    return None


def test_generated_histories_with_a_stale_read_are_not() -> None:
    rng = random.Random(13)
    mutated = 0
    for _ in range(40):
        history = stale_read(generate(rng, rng.randint(40, 200), rng.randint(1, 3), rng.randint(2, 6)), rng)
        if history is None:
            continue
        result = check(history, timeout=30)
        assert result.ok is False, result.summary()
        mutated += 1
    assert mutated > 30


def test_generated_histories_with_a_read_of_a_ghost_value_are_not() -> None:
    rng = random.Random(7)
    mutated = 0
    for _ in range(60):
        history = generate(rng, rng.randint(20, 150), rng.randint(1, 3), rng.randint(2, 6))
        reads = [i for i, op in enumerate(history) if op.kind == "read" and op.outcome == "ok"]
        if not reads:
            continue
        i = rng.choice(reads)
        history[i] = replace(history[i], seen=Seen("never-written"))
        result = check(history, timeout=30)
        assert result.ok is False, result.summary()
        assert "never-written" in (result.counterexample or "")
        mutated += 1
    assert mutated > 40


def test_generated_histories_with_a_read_of_a_wrong_revision_are_not() -> None:
    rng = random.Random(11)
    mutated = 0
    for _ in range(60):
        history = generate(rng, rng.randint(40, 150), rng.randint(1, 3), rng.randint(2, 6), p_report=1.0)
        writes = [op for op in history if op.kind == "put" and op.revision is not None]
        reads = [i for i, op in enumerate(history)
                 if op.kind == "read" and op.outcome == "ok" and op.seen and op.seen.revision]
        seen = {i: history[i].seen for i in reads}
        pairs = [(i, w) for i in reads for w in writes
                 if w.key == history[i].key and w.value != seen[i].value]  # type: ignore[union-attr]
        if not pairs:
            continue
        i, w = rng.choice(pairs)
        history[i] = replace(history[i], seen=Seen(seen[i].value, w.revision))  # type: ignore[union-attr]
        result = check(history, timeout=30)
        assert result.ok is False, result.summary()
        mutated += 1
    assert mutated > 30


def test_a_thousand_operations_on_five_keys_check_quickly() -> None:
    rng = random.Random(1000)
    history = generate(rng, 1000, 5, 5)
    result = check(history, timeout=60)
    assert result.ok is True, result.summary()
    assert len(result.keys) == 5
    assert sum(r.ops + r.dropped for r in result.keys.values()) == 1000


# --- agreement with a brute-force reference -------------------------------------------


def reference(history: list[Op]) -> bool:
    """Brute-force linearizability of a small one-key history: every order of the
    operations that respects real time, with each unknown write applied or not.
    Revisions not reported are free real numbers, so a 412 on prev_revision is judged
    exactly (the checker accepts it against an unknown revision)."""
    ops = [op for op in history
           if not (op.outcome == "fail" and not op.condition_failed)
           and not (op.outcome == "unknown" and op.kind == "read")]
    n = len(ops)
    end = [op.complete if op.outcome != "unknown" and op.complete is not None else float("inf")
           for op in ops]
    must_follow = [[j for j in range(n) if end[j] < ops[i].invoke] for i in range(n)]
    required = [op.outcome != "unknown" for op in ops]

    def resolve(term: tuple, binds: dict) -> int | None:
        return term[1] if term[0] == "k" else binds.get(term[1])

    def equal(term: tuple | None, r: int, binds: dict) -> dict | None:
        if term is None:
            return None
        if term[0] == "k":
            return binds if term[1] == r else None
        if binds.get(term[1], r) != r:
            return None
        return {**binds, term[1]: r}

    def consistent(seq: list, binds: dict, unequal: list) -> bool:
        fixed = [v for v in (resolve(t, binds) for t in seq) if v is not None]
        if any(a >= b for a, b in zip(fixed, fixed[1:])):
            return False
        return all(resolve(t, binds) != r for t, r in unequal)

    def apply(op: Op, value: str | None, term: tuple | None, seq: list, binds: dict,
              unequal: list, index: int):
        if op.seen is not None:
            if op.seen.value != value:
                return None
            if op.seen.revision is not None:
                binds = equal(term, op.seen.revision, binds)
                if binds is None:
                    return None
        if op.kind == "read":
            return value, term, seq, binds, unequal
        cond = op.condition
        if op.condition_failed:
            assert cond is not None
            if cond.prev_value is not None and value == cond.prev_value:
                return None
            if cond.must_be_absent and value is None:
                return None
            if cond.prev_revision is not None and value is not None:
                unequal = unequal + [(term, cond.prev_revision)]
            if op.revision is not None:
                seq = seq + [("k", op.revision)]
            return value, term, seq, binds, unequal
        if cond is not None:
            if cond.prev_value is not None and value != cond.prev_value:
                return None
            if cond.must_be_absent and value is not None:
                return None
            if cond.prev_revision is not None:
                if value is None:
                    return None
                binds = equal(term, cond.prev_revision, binds)
                if binds is None:
                    return None
        new_term = ("k", op.revision) if op.revision is not None else ("v", index)
        return op.value, (new_term if op.value is not None else None), seq + [new_term], binds, unequal

    def search(placed: int, value, term, seq, binds, unequal) -> bool:
        if not consistent(seq, binds, unequal):
            return False
        if all(placed >> i & 1 or not required[i] for i in range(n)):
            return True
        for i in range(n):
            if placed >> i & 1 or any(not placed >> j & 1 for j in must_follow[i]):
                continue
            nxt = apply(ops[i], value, term, seq, binds, unequal, i)
            if nxt is not None and search(placed | 1 << i, *nxt):
                return True
        return False

    return search(0, None, None, [], {}, [])


def mutate(history: list[Op], rng: random.Random) -> list[Op]:
    """Small random changes that may or may not break linearizability."""
    history = list(history)
    values = sorted({op.value for op in history if op.value is not None}) + [None]
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(history))
        op = history[i]
        try:
            pick = rng.random()
            if op.seen is not None and pick < 0.4:
                value = rng.choice(values)
                rev = op.seen.revision if value is not None and rng.random() < 0.5 else None
                history[i] = replace(op, seen=Seen(value, rev))
            elif op.seen is not None and op.seen.value is not None and pick < 0.6:
                history[i] = replace(op, seen=Seen(op.seen.value, rng.randint(1, 8)))
            elif op.kind != "read" and op.outcome == "ok" and pick < 0.7:
                history[i] = replace(op, revision=rng.choice([None, rng.randint(1, 8)]))
            elif op.kind == "put" and pick < 0.85:  # two writes of one value
                history[i] = replace(op, value=rng.choice(values[:-1]))
            else:
                shift = rng.uniform(-2, 2)
                history[i] = replace(op, invoke=op.invoke + shift,
                                     complete=None if op.complete is None else op.complete + shift)
        except HistoryError:
            pass
    return history


def test_checker_agrees_with_a_brute_force_reference() -> None:
    rng = random.Random(2026)
    verdicts = {True: 0, False: 0}
    for round_ in range(2000):
        base = generate(rng, rng.randint(3, 8), 1, rng.randint(2, 3), p_unknown=0.25,
                        p_report=0.5, sloppy=round_ % 2 == 0)
        history = mutate(base, rng)
        expected = reference(history)
        got = check(history, timeout=10, shrink_timeout=0).ok
        lenient = any(op.condition_failed and op.condition and op.condition.prev_revision
                      for op in history)
        if expected or not lenient:
            assert got is expected, "\n".join(op.describe() for op in history)
        else:
            assert got is not None
        verdicts[expected] += 1
    assert min(verdicts.values()) > 500, verdicts


def test_three_thousand_operations_on_one_busy_key_check_quickly() -> None:
    rng = random.Random(3010)
    history = generate(rng, 3000, 1, 10, p_unknown=0.05)
    result = check(history, timeout=60)
    assert result.ok is True, result.summary()
    stale = stale_read(history, rng)
    assert stale is not None
    assert check(stale, timeout=60).ok is False


# --- transactions ------------------------------------------------------------------------

from tests.faults.history import Compare, Txn, TxnOp  # noqa: E402


def txn(client: int, t0: float, t1: float | None, compare: list[tuple], success: list[tuple],
        failure: list[tuple], succeeded: bool | None = None, results: tuple | None = None,
        rev: int | None = None, outcome: str = "ok") -> Op:
    t = Txn(tuple(Compare(*c) for c in compare), tuple(TxnOp(*o) for o in success),
            tuple(TxnOp(*o) for o in failure))
    return Op(client, ",".join(t.keys()), "txn", t0, t1, outcome=outcome,  # type: ignore[arg-type]
              txn=t, succeeded=succeeded, results=results, revision=rev)


def create_both(client: int, t0: float, t1: float | None, a: str, b: str, succeeded: bool | None,
                results: tuple | None = None, rev: int | None = None, outcome: str = "ok") -> Op:
    """Create x=a and y=b if both are absent, else read both."""
    if succeeded and results is None:
        results = (None, None)
    return txn(client, t0, t1, [("x", "exists", "equal", False), ("y", "exists", "equal", False)],
               [("put", "x", a), ("put", "y", b)], [("get", "x"), ("get", "y")],
               succeeded, results, rev, outcome)


def read_both(client: int, t0: float, t1: float, x: Seen, y: Seen) -> Op:
    return txn(client, t0, t1, [], [("get", "x"), ("get", "y")], [], True, (x, y))


def test_transactions_tie_their_keys_into_groups() -> None:
    from tests.faults.linearizability import groups
    history = [
        create_both(0, 0, 1, "a", "b", True, rev=1),
        rd(1, 0, 1, None, key="z"),
        put(2, 0, 1, "w", key="w"),
        txn(3, 0, 1, [("w", "exists", "equal", True)], [("get", "v")], [], outcome="unknown"),
    ]
    found = {keys: len(ops) for keys, ops in groups(history)}
    # The unknown read-only transaction constrains nothing, so it ties nothing.
    assert found == {("x", "y"): 1, ("z",): 1, ("w",): 1, ("v",): 1}
    result = check(history)
    assert result.ok is True, result.summary()
    assert "x+y" in result.keys


def test_valid_transaction_histories() -> None:
    assert_valid([
        create_both(0, 0, 1, "a", "b", True, rev=1),
        create_both(1, 0.5, 2, "c", "d", False, (Seen("a", 1), Seen("b", 1)), rev=2),
        read_both(2, 3, 4, Seen("a", 1), Seen("b", 1)),
        txn(0, 5, 6, [("x", "value", "equal", "a"), ("y", "revision", "equal", 1)],
            [("put", "x", "a2"), ("delete", "y"), ("get", "y")], [("get", "x")],
            True, (None, True, Seen(None)), rev=7),
        rd(1, 7, 8, "a2", 7, key="x"),
        rd(1, 7, 8, None, key="y"),
    ])
    # Concurrent: the read-only transaction may come before or after the creation.
    assert_valid([
        create_both(0, 0, 10, "a", "b", True, rev=3),
        read_both(1, 1, 2, Seen(None), Seen(None)),
        read_both(2, 1, 9, Seen("a", 3), Seen("b", 3)),
    ])
    # An unknown transaction may apply late, or never.
    assert_valid([
        create_both(0, 0, 1, "a", "b", None, outcome="unknown"),
        read_both(1, 2, 3, Seen(None), Seen(None)),
        read_both(1, 4, 5, Seen("a"), Seen("b")),
    ])
    assert_valid([
        create_both(0, 0, 1, "a", "b", None, outcome="unknown"),
        read_both(1, 2, 3, Seen(None), Seen(None)),
    ])


def test_a_transaction_applied_partially_is_a_violation() -> None:
    text = assert_invalid([
        create_both(0, 0, 1, "a", "b", True, rev=1),
        rd(1, 2, 3, "a", 1, key="x"),
        rd(1, 2, 3, None, key="y"),
    ])
    assert "tied together by transactions" in text
    # Also when the transaction's outcome is unknown: it applies whole or not at all.
    assert_invalid([
        create_both(0, 0, 1, "a", "b", None, outcome="unknown"),
        rd(1, 2, 3, "a", key="x"),
        rd(1, 4, 5, None, key="y"),
    ])
    # And as seen by a read-only transaction.
    assert_invalid([
        create_both(0, 0, 1, "a", "b", None, outcome="unknown"),
        read_both(1, 2, 3, Seen("a"), Seen(None)),
    ])


def test_a_succeeded_flag_that_contradicts_the_state_is_a_violation() -> None:
    # y exists (put before), yet "create both if absent" says it succeeded.
    assert_invalid([
        put(0, 0, 1, "old", 1, key="y"),
        create_both(1, 2, 3, "a", "b", True, rev=2),
    ])
    # Both absent, yet it says the compare failed.
    assert_invalid([
        create_both(1, 2, 3, "a", "b", False, (Seen(None), Seen(None)), rev=2),
    ])
    # A CAS across two keys whose expected values were there, yet "failed".
    assert_invalid([
        create_both(0, 0, 1, "a", "b", True, rev=1),
        txn(1, 2, 3, [("x", "value", "equal", "a"), ("y", "value", "equal", "b")],
            [("put", "x", "a2"), ("put", "y", "b2")], [], False, (), rev=4),
    ])


def test_a_stale_read_inside_a_read_only_transaction_is_a_violation() -> None:
    assert_invalid([
        create_both(0, 0, 1, "a", "b", True, rev=1),
        txn(1, 2, 3, [("x", "value", "equal", "a")], [("put", "x", "a2"), ("put", "y", "b2")],
            [], True, (None, None), rev=2),
        read_both(2, 4, 5, Seen("a2", 2), Seen("b", 1)),
    ])
    assert_invalid([
        create_both(0, 0, 1, "a", "b", True, rev=1),
        put(1, 2, 3, "b2", 2, key="y"),
        read_both(2, 4, 5, Seen("a", 1), Seen("b", 1)),
    ])


def test_a_lost_transaction_write_is_a_violation() -> None:
    assert_invalid([
        create_both(0, 0, 1, "a", "b", True, rev=1),
        read_both(1, 2, 3, Seen(None), Seen(None)),
    ])
    assert_invalid([
        create_both(0, 0, 1, "a", "b", True, rev=1),
        txn(1, 2, 3, [], [("put", "x", "a2"), ("delete", "y")], [], True, (None, True), rev=2),
        read_both(2, 4, 5, Seen("a", 1), Seen(None)),
    ])


def test_transaction_results_are_checked() -> None:
    # A delete's deleted flag says whether the key existed.
    assert_invalid([
        txn(0, 0, 1, [], [("delete", "x"), ("put", "y", "b")], [], True, (True, None), rev=1),
    ])
    # A get after a put in the same branch sees that put, at the transaction's revision.
    assert_valid([
        txn(0, 0, 1, [], [("put", "x", "a"), ("get", "x"), ("put", "y", "b")], [], True,
            (None, Seen("a", 5), None), rev=5),
    ])
    assert_invalid([
        txn(0, 0, 1, [], [("put", "x", "a"), ("get", "x"), ("put", "y", "b")], [], True,
            (None, Seen("a", 4), None), rev=5),
    ])
    # Every key one transaction wrote has its revision.
    assert_invalid([
        create_both(0, 0, 1, "a", "b", None, outcome="unknown"),
        read_both(1, 2, 3, Seen("a", 4), Seen("b", 6)),
    ])
    assert_valid([
        create_both(0, 0, 1, "a", "b", None, outcome="unknown"),
        read_both(1, 2, 3, Seen("a", 4), Seen("b", 4)),
    ])


def test_unknown_revisions_of_two_writes_keep_their_order() -> None:
    # x's write went first (y's began after it completed), so its revision is the lower.
    base = [
        create_both(9, 0, 0.5, "x0", "y0", True, rev=1),
        put(0, 1, 2, "a", key="x"),
        put(1, 3, 4, "b", key="y"),
    ]
    assert_valid(base + [read_both(2, 5, 6, Seen("a", 5), Seen("b", 7))])
    assert_invalid(base + [read_both(2, 5, 6, Seen("a", 7), Seen("b", 5))])


def generate_txns(rng: random.Random, n_ops: int, clients: int, *, p_unknown: float = 0.1,
                  p_unavailable: float = 0.04, p_report: float = 0.7,
                  keys: tuple[str, ...] = ("x", "y"), like_clients: bool = False) -> list[Op]:
    """Like ``generate``, on ``keys`` (all tied together) with transactions among the
    operations: a history of a real sequential store, so linearizable by construction.
    ``like_clients``: only the transaction shapes the fault test's clients send (CAS of
    two keys, create both, delete both, revision CAS, read both), instead of also random
    ones."""
    free_at = [0.0] * clients
    plans = []
    for _ in range(n_ops):
        c = rng.randrange(clients)
        invoke = free_at[c] + rng.expovariate(2.0)
        complete = invoke + rng.expovariate(0.5)
        free_at[c] = complete
        roll = rng.random()
        if roll < p_unknown:
            plans.append((invoke + rng.expovariate(0.2), c, invoke, rng.choice([complete, None]),
                          "unknown", rng.random() < 0.5))
        elif roll < p_unknown + p_unavailable:
            plans.append((rng.uniform(invoke, complete), c, invoke, complete, "fail", False))
        else:
            plans.append((rng.uniform(invoke, complete), c, invoke, complete, "ok", True))
    plans.sort()
    store: dict[str, tuple[str, int]] = {}
    log_index = 0
    history: list[Op] = []
    written: dict[str, list[str]] = {k: [] for k in keys}
    reported: list[int] = []

    def current_value(k: str) -> str:
        if k in store and rng.random() < 0.7:
            return store[k][0]
        return rng.choice(written[k] or ["none"])

    for n, (_, c, invoke, end, outcome, applies) in enumerate(plans):
        roll = rng.random()
        if roll < 0.45:  # single-key operations, as in generate()
            key = rng.choice(keys)
            cur = store.get(key)
            if roll < 0.2:
                if outcome == "ok":
                    rev = cur[1] if cur and rng.random() < p_report else None
                    history.append(Op(c, key, "read", invoke, end,
                                      seen=Seen(cur[0], rev) if cur else Seen(None)))
                else:
                    history.append(Op(c, key, "read", invoke, end, outcome=outcome))  # type: ignore[arg-type]
                continue
            kind = "delete" if roll < 0.27 else "put"
            value = f"v{n}" if kind == "put" else None
            cond = None
            if roll > 0.37:
                cond = rng.choice([Condition(prev_value=current_value(key)), Condition(must_be_absent=True)]
                                  + ([Condition(prev_revision=rng.choice(reported))] if reported else []))
            if not applies:
                history.append(Op(c, key, kind, invoke, end, outcome=outcome,  # type: ignore[arg-type]
                                  value=value, condition=cond))
                continue
            log_index += 1
            holds = (cond is None or (cond.prev_value is not None and cur is not None and cur[0] == cond.prev_value)
                     or (cond.must_be_absent and cur is None)
                     or (cond.prev_revision is not None and cur is not None and cur[1] == cond.prev_revision))
            report = outcome == "ok" and rng.random() < p_report
            if holds:
                if value is None:
                    store.pop(key, None)
                else:
                    store[key] = (value, log_index)
                    written[key].append(value)
                if report:
                    reported.append(log_index)
                history.append(Op(c, key, kind, invoke, end, outcome=outcome,  # type: ignore[arg-type]
                                  value=value, condition=cond, revision=log_index if report else None))
            elif outcome == "unknown":
                history.append(Op(c, key, kind, invoke, end, outcome="unknown",  # type: ignore[arg-type]
                                  value=value, condition=cond))
            else:
                rev = cur[1] if cur and rng.random() < p_report else None
                history.append(Op(c, key, kind, invoke, end, outcome="fail",  # type: ignore[arg-type]
                                  value=value, condition=cond, condition_failed=True,
                                  seen=Seen(cur[0], rev) if cur else Seen(None)))
            continue
        # A transaction on two keys.
        a, b = rng.sample(keys, 2)
        shape = rng.random()
        if shape < 0.25:  # CAS across both keys
            compare = [Compare(a, "value", "equal", current_value(a)),
                       Compare(b, "value", "equal", current_value(b))]
            success = [TxnOp("put", a, f"v{n}a"), TxnOp("put", b, f"v{n}b")]
            failure = [TxnOp("get", a), TxnOp("get", b)]
        elif shape < 0.45:  # create both or none
            compare = [Compare(a, "exists", "equal", False), Compare(b, "exists", "equal", False)]
            success = [TxnOp("put", a, f"v{n}a"), TxnOp("put", b, f"v{n}b")]
            failure = [TxnOp("get", a), TxnOp("get", b)] if like_clients or rng.random() < 0.8 else []
        elif shape < 0.6:  # read-only
            compare, success, failure = [], [TxnOp("get", a), TxnOp("get", b)], []
        elif like_clients and shape < 0.75:  # CAS on a revision
            cur = store.get(a)
            r = cur[1] if cur and cur[1] in reported else rng.choice(reported or [0])
            compare = [Compare(a, "revision", "equal", r)]
            success = [TxnOp("put", a, f"v{n}a"), TxnOp("get", b)]
            failure = [TxnOp("get", a), TxnOp("get", b)]
        elif like_clients:  # delete both
            compare = [Compare(a, "value", "equal", current_value(a)),
                       Compare(b, "value", "equal", current_value(b))]
            success = [TxnOp("delete", a), TxnOp("delete", b)]
            failure = [TxnOp("get", a), TxnOp("get", b)]
        else:  # anything
            compare = []
            for k in rng.sample([a, b], rng.randint(1, 2)):
                target = rng.choice(["value", "exists", "revision"])
                if target == "value":
                    compare.append(Compare(k, "value", rng.choice(["equal", "not_equal"]), current_value(k)))
                elif target == "exists":
                    compare.append(Compare(k, "exists", rng.choice(["equal", "not_equal"]), rng.random() < 0.5))
                else:
                    r = store[k][1] if k in store and rng.random() < 0.7 else rng.choice(reported or [0])
                    compare.append(Compare(k, "revision", "equal", r))

            def branch(tag: str) -> list[TxnOp]:
                ops: list[TxnOp] = []
                for k in rng.sample([a, b], rng.randint(0, 2)):
                    what = rng.choice(["put", "delete", "get", "get_put"])
                    if what == "get_put":
                        ops += [TxnOp("get", k), TxnOp("put", k, f"v{n}{tag}{k}")]
                    elif what == "put":
                        ops.append(TxnOp("put", k, f"v{n}{tag}{k}"))
                    else:
                        ops.append(TxnOp(what, k))
                    if rng.random() < 0.3:
                        ops.append(TxnOp("get", k))
                return ops

            success, failure = branch("s"), branch("f")
        t = Txn(tuple(compare), tuple(success), tuple(failure))
        label = ",".join(t.keys())
        if not applies:
            history.append(Op(c, label, "txn", invoke, end, outcome=outcome, txn=t))  # type: ignore[arg-type]
            continue

        def holds(cmp: Compare) -> bool:
            cur = store.get(cmp.key)
            if cmp.target == "exists":
                have: object = cur is not None
            elif cmp.target == "revision":
                have = cur[1] if cur else 0
            elif cur is None:
                return False
            else:
                have = cur[0]
            return (have == cmp.value) == (cmp.op == "equal")

        succeeded = all(holds(cmp) for cmp in compare)
        if not t.read_only:
            log_index += 1
        results: list = []
        for o in t.branch(succeeded):
            cur = store.get(o.key)
            if o.op == "get":
                rev = cur[1] if cur and rng.random() < p_report else None
                results.append(Seen(cur[0], rev) if cur else Seen(None))
            elif o.op == "delete":
                results.append(cur is not None)
                store.pop(o.key, None)
            else:
                store[o.key] = (o.value, log_index)  # type: ignore[assignment]
                written[o.key].append(o.value)  # type: ignore[arg-type]
                results.append(None)
        if outcome == "unknown":
            history.append(Op(c, label, "txn", invoke, end, outcome="unknown", txn=t))
            continue
        report = not t.read_only and rng.random() < p_report
        if report:
            reported.append(log_index)
        history.append(Op(c, label, "txn", invoke, end, txn=t, succeeded=succeeded,
                          results=tuple(results), revision=log_index if report else None))
    rng.shuffle(history)
    return history


def test_generated_transaction_histories_are_linearizable() -> None:
    rng = random.Random(99)
    for round_ in range(60):
        keys = ("x", "y") if round_ % 2 else ("x", "y", "z")
        history = generate_txns(rng, rng.randint(20, 150), rng.randint(2, 6), keys=keys)
        result = check(history, timeout=30)
        assert result.ok is True, result.summary() + "\n" + "\n".join(op.describe() for op in history)


def reference_multi(history: list[Op]) -> bool:
    """Brute-force linearizability of a small history over a few keys, transactions
    included: every order that respects real time, each unknown write or transaction
    applied or not (either branch its compares allow). Revisions not reported are free
    real numbers, as in ``reference``."""
    from tests.faults.multikey import informative
    ops = [op for op in history if informative(op)]
    n = len(ops)
    end = [op.complete if op.outcome != "unknown" and op.complete is not None else float("inf")
           for op in ops]
    must_follow = [[j for j in range(n) if end[j] < ops[i].invoke] for i in range(n)]
    required = [op.outcome != "unknown" for op in ops]

    def resolve(term: tuple, binds: dict) -> int | None:
        return term[1] if term[0] == "k" else binds.get(term[1])

    def equal(term: tuple, r: int, binds: dict) -> dict | None:
        if term[0] == "k":
            return binds if term[1] == r else None
        if r <= 0 or binds.get(term[1], r) != r:
            return None
        return {**binds, term[1]: r}

    def consistent(seq: list, binds: dict, unequal: list) -> bool:
        fixed = [v for v in (resolve(t, binds) for t in seq) if v is not None]
        if any(a >= b for a, b in zip(fixed, fixed[1:])):
            return False
        return all(resolve(t, binds) != r for t, r in unequal)

    def observe(state: dict, key: str, seen: Seen, binds: dict) -> dict | None:
        cur = state.get(key)
        if (cur[0] if cur else None) != seen.value:
            return None
        if seen.revision is None:
            return binds
        assert cur is not None
        return equal(cur[1], seen.revision, binds)

    def compares(state: dict, cmps: tuple, binds: dict, unequal: list) -> list:
        """(all hold, binds, unequal) for every way the compares can turn out."""
        out = [(True, binds, unequal)]
        for c in cmps:
            cur = state.get(c.key)
            nxt = []
            for holds, b, u in out:
                if c.target == "exists":
                    nxt.append((holds and ((cur is not None) == c.value) == (c.op == "equal"), b, u))
                elif c.target == "value":
                    res = cur is not None and (cur[0] == c.value) == (c.op == "equal")
                    nxt.append((holds and res, b, u))
                else:
                    assert c.op in ("equal", "not_equal")
                    term = cur[1] if cur else ("k", 0)
                    same = equal(term, c.value, b)  # type: ignore[arg-type]
                    if same is not None:
                        nxt.append((holds and c.op == "equal", same, u))
                    if resolve(term, b) != c.value:
                        nxt.append((holds and c.op != "equal", b, u + [(term, c.value)]))
            out = nxt
        return out

    def apply(op: Op, i: int, state: dict, seq: list, binds: dict, unequal: list) -> list:
        if op.seen is not None:
            binds = observe(state, op.key, op.seen, binds)  # type: ignore[assignment]
            if binds is None:
                return []
        cur = state.get(op.key)
        if op.kind == "read":
            return [(state, seq, binds, unequal)]
        own = ("k", op.revision) if op.revision is not None else ("v", i)
        if op.kind == "txn":
            txn = op.txn
            assert txn is not None
            if not txn.read_only:
                seq = seq + [own]
            out = []
            for holds, b, u in compares(state, txn.compare, binds, unequal):
                if op.outcome == "ok" and holds != op.succeeded:
                    continue
                st = dict(state)
                ok = True
                for n_, t in enumerate(txn.branch(holds)):
                    res = op.results[n_] if op.outcome == "ok" else None  # type: ignore[index]
                    if t.op == "get":
                        if res is not None:
                            b = observe(st, t.key, res, b)  # type: ignore[arg-type, assignment]
                            if b is None:
                                ok = False
                                break
                    elif t.op == "delete":
                        if res is not None and res != (t.key in st):
                            ok = False
                            break
                        st.pop(t.key, None)
                    else:
                        st[t.key] = (t.value, own)
                if ok:
                    out.append((st, seq, b, u))
            return out
        cond = op.condition
        if op.condition_failed:
            assert cond is not None
            if cond.prev_value is not None and cur and cur[0] == cond.prev_value:
                return []
            if cond.must_be_absent and cur is None:
                return []
            if cond.prev_revision is not None and cur is not None:
                unequal = unequal + [(cur[1], cond.prev_revision)]
            if op.revision is not None:
                seq = seq + [own]
            return [(state, seq, binds, unequal)]
        if cond is not None:
            if cond.prev_value is not None and not (cur and cur[0] == cond.prev_value):
                return []
            if cond.must_be_absent and cur is not None:
                return []
            if cond.prev_revision is not None:
                if cur is None:
                    return []
                binds = equal(cur[1], cond.prev_revision, binds)  # type: ignore[assignment]
                if binds is None:
                    return []
        st = dict(state)
        if op.kind == "put":
            st[op.key] = (op.value, own)
        else:
            st.pop(op.key, None)
        return [(st, seq + [own], binds, unequal)]

    def search(placed: int, state: dict, seq: list, binds: dict, unequal: list) -> bool:
        if not consistent(seq, binds, unequal):
            return False
        if all(placed >> i & 1 or not required[i] for i in range(n)):
            return True
        for i in range(n):
            if placed >> i & 1 or any(not placed >> j & 1 for j in must_follow[i]):
                continue
            for nxt in apply(ops[i], i, state, seq, binds, unequal):
                if search(placed | 1 << i, *nxt):
                    return True
        return False

    return search(0, {}, [], {}, [])


def mutate_txn(history: list[Op], rng: random.Random) -> list[Op]:
    """``mutate``, plus changes to transactions' results."""
    history = mutate(history, rng)
    values = sorted({v for op in history for _, v in _puts_of(op)}) + [None]
    for _ in range(rng.randint(0, 2)):
        i = rng.randrange(len(history))
        op = history[i]
        if op.kind != "txn" or op.outcome != "ok" or not op.results:
            continue
        results = list(op.results)
        m = rng.randrange(len(results))
        res = results[m]
        try:
            if isinstance(res, bool):
                results[m] = not res
            elif isinstance(res, Seen):
                value = rng.choice(values)
                rev = rng.choice([None, rng.randint(1, 8)]) if value is not None else None
                results[m] = Seen(value, rev)
            else:
                history[i] = replace(op, succeeded=not op.succeeded,
                                     results=tuple(None if t.op == "put" else (Seen(None) if t.op == "get" else False)
                                                   for t in op.txn.branch(not op.succeeded)))  # type: ignore[union-attr]
                continue
            history[i] = replace(op, results=tuple(results))
        except HistoryError:
            pass
    return history


def _puts_of(op: Op) -> list[tuple[str, str]]:
    from tests.faults.multikey import _puts
    return _puts(op) if op.outcome != "fail" or op.kind != "txn" else []


def test_checker_agrees_with_a_brute_force_reference_on_transactions() -> None:
    rng = random.Random(4242)
    verdicts = {True: 0, False: 0}
    for _ in range(1500):
        base = generate_txns(rng, rng.randint(3, 7), rng.randint(2, 3), p_unknown=0.25, p_report=0.5)
        history = mutate_txn(base, rng)
        expected = reference_multi(history)
        got = check(history, timeout=10, shrink_timeout=0).ok
        lenient = any(op.condition_failed and op.condition and op.condition.prev_revision
                      for op in history) or any(
            op.txn is not None and any(c.target == "revision" for c in op.txn.compare)
            for op in history)
        if expected or not lenient:
            assert got is expected, "\n".join(op.describe() for op in history)
        else:
            assert got is not None
        verdicts[expected] += 1
    assert min(verdicts.values()) > 300, verdicts


def test_a_thousand_client_like_transaction_operations_check_quickly() -> None:
    rng = random.Random(1500)
    history = generate_txns(rng, 1500, 5, p_unknown=0.08, p_report=0.95, like_clients=True)
    result = check(history, timeout=60)
    assert result.ok is True, result.summary()
    assert set(result.keys) == {"x+y"}, result.keys
    assert result.elapsed < 10, result.summary()
    stale = stale_read(history, rng)
    assert stale is not None
    assert check(stale, timeout=60).ok is False
