"""Transactions in the store: every compare target and op, branch choice, op results,
events, one revision per transaction, read-only evaluation and malformed input."""

from __future__ import annotations

import io

import pytest

from leifdb.kv import (
    ApplyResult,
    Compare,
    Condition,
    Delete,
    Event,
    Get,
    Item,
    KVStore,
    OpResult,
    Put,
    Range,
    Txn,
    TxnResult,
    compare_holds,
)


def store_with(*pairs: tuple[str, str]) -> KVStore:
    """A store with ``pairs`` put at indexes 1, 2, ..."""
    store = KVStore()
    for index, (key, value) in enumerate(pairs, start=1):
        assert store.apply(index, Put(key, value)).ok
    return store


# --- compares ---

PRESENT = Item("k", "m", 3, 3)

# (target, op, value, key present as PRESENT?) -> holds?
COMPARE_CASES = [
    ("value", "equal", "m", True, True),
    ("value", "equal", "x", True, False),
    ("value", "not_equal", "x", True, True),
    ("value", "not_equal", "m", True, False),
    ("value", "greater", "a", True, True),
    ("value", "greater", "m", True, False),
    ("value", "greater", "z", True, False),
    ("value", "less", "z", True, True),
    ("value", "less", "m", True, False),
    ("value", "less", "a", True, False),
    ("value", "equal", "", False, False),
    ("value", "not_equal", "m", False, False),
    ("value", "greater", "", False, False),
    ("value", "less", "zzz", False, False),
    ("revision", "equal", 3, True, True),
    ("revision", "equal", 4, True, False),
    ("revision", "not_equal", 3, True, False),
    ("revision", "not_equal", 0, True, True),
    ("revision", "greater", 2, True, True),
    ("revision", "greater", 3, True, False),
    ("revision", "less", 4, True, True),
    ("revision", "less", 3, True, False),
    ("revision", "equal", 0, False, True),
    ("revision", "not_equal", 0, False, False),
    ("revision", "less", 1, False, True),
    ("revision", "greater", 0, False, False),
    ("revision", "greater", -1, False, True),
    ("exists", "equal", True, True, True),
    ("exists", "equal", False, True, False),
    ("exists", "not_equal", False, True, True),
    ("exists", "not_equal", True, True, False),
    ("exists", "equal", False, False, True),
    ("exists", "equal", True, False, False),
    ("exists", "not_equal", True, False, True),
    ("exists", "not_equal", False, False, False),
    # False orders before True.
    ("exists", "greater", False, True, True),
    ("exists", "greater", False, False, False),
    ("exists", "less", True, False, True),
    ("exists", "less", True, True, False),
]


@pytest.mark.parametrize("target, op, value, present, holds", COMPARE_CASES)
def test_compare_holds(target: str, op: str, value: object, present: bool, holds: bool) -> None:
    compare = Compare("k", target, op, value)  # type: ignore[arg-type]
    assert compare_holds(compare, PRESENT if present else None) is holds


@pytest.mark.parametrize("target, op, value, present, holds", COMPARE_CASES)
def test_compare_chooses_the_branch(
    target: str, op: str, value: object, present: bool, holds: bool
) -> None:
    store = KVStore()
    store.note_applied(2)
    if present:
        store.apply(3, Put("k", "m"))
    else:
        store.note_applied(3)
    txn = Txn(
        (Compare("k", target, op, value),),  # type: ignore[arg-type]
        success=(Put("branch", "success"),),
        failure=(Put("branch", "failure"),),
    )
    result = store.apply(4, txn)
    assert result.ok is holds
    assert result.txn is not None and result.txn.succeeded is holds
    assert store.get("branch") == Item("branch", "success" if holds else "failure", 4, 4)
    assert store.get("k") == (PRESENT if present else None)


def test_values_compare_by_code_point() -> None:
    # UTF-16 would order U+FFFF after U+1F600; code points (and UTF-8) do not.
    astral = Item("k", "\U0001f600", 1, 1)
    assert compare_holds(Compare("k", "value", "greater", "\uffff"), astral)
    assert compare_holds(Compare("k", "value", "less", "\U0001f600"), Item("k", "\uffff", 1, 1))
    assert compare_holds(Compare("k", "value", "greater", "z"), Item("k", "é", 1, 1))


def test_every_compare_must_hold() -> None:
    store = store_with(("a", "1"), ("b", "2"))
    good = (Compare("a", "value", "equal", "1"), Compare("b", "revision", "equal", 2))
    bad = good + (Compare("c", "exists", "equal", True),)
    assert store.apply(3, Txn(good)).ok
    assert not store.apply(4, Txn(bad)).ok
    assert not store.apply(5, Txn(bad[::-1])).ok
    assert store.apply(6, Txn()).ok  # no compare: success


def test_compares_see_the_state_before_the_entry_not_the_branch() -> None:
    store = store_with(("a", "1"))
    txn = Txn(
        (Compare("a", "value", "equal", "1"), Compare("a", "revision", "equal", 1)),
        success=(Put("a", "2"), Put("a", "3")),
    )
    result = store.apply(2, txn)
    assert result.ok
    assert store.get("a") == Item("a", "3", 2, 1)


# --- branches, results and events ---


def test_success_branch_runs_every_op_kind_in_order_at_one_revision() -> None:
    store = store_with(("a", "1"), ("b", "2"), ("x/1", "p"), ("x/2", "q"))
    txn = Txn(
        compare=(Compare("a", "value", "equal", "1"),),
        success=(
            Put("a", "2"),
            Delete("b"),
            Delete("nope"),
            Get("a"),
            Get("b"),
            Put("x/3", "r"),
            Range("x/", None, None),
            Range("x/", "x/1", 1),
        ),
        failure=(Put("never", "!"),),
    )
    result = store.apply(9, txn)
    a9, x3 = Item("a", "2", 9, 1), Item("x/3", "r", 9, 9)
    x1, x2 = Item("x/1", "p", 3, 3), Item("x/2", "q", 4, 4)
    assert result == ApplyResult(
        ok=True,
        revision=9,
        current=None,
        events=(
            Event("put", "a", "2", 9, "1", 1),
            Event("delete", "b", None, 9, "2", 2),
            Event("put", "x/3", "r", 9, None, 0),
        ),
        txn=TxnResult(True, 9, (
            OpResult("put", item=a9),
            OpResult("delete", item=Item("b", "2", 2, 2)),
            OpResult("delete", item=None),
            OpResult("get", item=a9),
            OpResult("get", item=None),
            OpResult("put", item=x3),
            OpResult("range", items=(x1, x2, x3), more=False),
            OpResult("range", items=(x2,), more=True),
        )),
    )
    assert store.applied_index == 9
    assert store.get("never") is None
    assert store.range()[0] == [a9, x1, x2, x3]


def test_failed_compares_run_the_failure_branch_and_say_so() -> None:
    store = store_with(("a", "1"))
    txn = Txn(
        (Compare("a", "value", "equal", "other"),),
        success=(Put("a", "2"),),
        failure=(Get("a"), Delete("a"), Get("a")),
    )
    result = store.apply(2, txn)
    assert result == ApplyResult(
        ok=False,
        revision=2,
        events=(Event("delete", "a", None, 2, "1", 1),),
        txn=TxnResult(False, 2, (
            OpResult("get", item=Item("a", "1", 1, 1)),
            OpResult("delete", item=Item("a", "1", 1, 1)),
            OpResult("get", item=None),
        )),
    )
    assert len(store) == 0


def test_failed_compares_with_an_empty_failure_branch_change_nothing() -> None:
    store = store_with(("a", "1"))
    result = store.apply(5, Txn((Compare("a", "exists", "equal", False),), (Put("a", "x"),)))
    assert result == ApplyResult(ok=False, revision=5, txn=TxnResult(False, 5, ()))
    assert store.get("a") == Item("a", "1", 1, 1)
    assert store.applied_index == 5


def test_empty_txn_applies_and_changes_nothing() -> None:
    store = store_with(("a", "1"))
    assert store.apply(2, Txn()) == ApplyResult(ok=True, revision=2, txn=TxnResult(True, 2, ()))
    assert store.range() == ([Item("a", "1", 1, 1)], False)


def test_two_writes_to_one_key_each_make_an_event_the_second_seeing_the_first() -> None:
    store = KVStore()
    result = store.apply(4, Txn(success=(Put("k", "1"), Put("k", "2"), Delete("k"), Put("k", "3"))))
    assert result.events == (
        Event("put", "k", "1", 4, None, 0),
        Event("put", "k", "2", 4, "1", 4),
        Event("delete", "k", None, 4, "2", 4),
        Event("put", "k", "3", 4, None, 0),
    )
    assert store.get("k") == Item("k", "3", 4, 4)
    assert len(store) == 1 and store.range() == ([Item("k", "3", 4, 4)], False)


def test_ranges_see_earlier_writes_and_deletes_of_the_branch() -> None:
    store = store_with(("p/a", "1"), ("p/b", "2"), ("p/c", "3"))
    result = store.apply(4, Txn(success=(
        Delete("p/a"), Put("p/bb", "x"), Range("p/", "p/a", 2), Range("p/", "p/bb"),
        Range("p/", limit=10),
    )))
    assert result.txn is not None
    _, _, first, rest, everything = result.txn.results
    assert [i.key for i in first.items] == ["p/b", "p/bb"] and first.more
    assert [i.key for i in rest.items] == ["p/c"] and not rest.more
    assert [i.key for i in everything.items] == ["p/b", "p/bb", "p/c"] and not everything.more
    assert everything.items[1] == Item("p/bb", "x", 4, 4)


def test_txn_obeys_the_apply_ordering_contract() -> None:
    store = store_with(("a", "1"), ("b", "2"))
    with pytest.raises(ValueError):
        store.apply(2, Txn(success=(Put("a", "x"),)))
    assert store.get("a") == Item("a", "1", 1, 1) and store.applied_index == 2
    assert store.apply(7, Txn(success=(Get("a"),))).revision == 7
    assert store.applied_index == 7


def test_snapshot_after_txn_keeps_its_revisions() -> None:
    store = store_with(("a", "1"))
    store.apply(3, Txn(success=(Put("b", "2"), Put("c", "3"), Delete("a"))))
    out = io.BytesIO()
    store.write_snapshot(out)
    restored, _ = KVStore.read_snapshot(io.BytesIO(out.getvalue()))
    assert restored.applied_index == 3
    assert restored.range() == ([Item("b", "2", 3, 3), Item("c", "3", 3, 3)], False)


# --- malformed transactions: refused before anything changes ---


@pytest.mark.parametrize("txn", [
    Txn(success=(Put("a", "x", Condition(prev_value="1")),)),
    Txn(failure=(Delete("a", Condition(must_be_absent=True)),)),
    Txn(success=(Range("", limit=0),)),
    Txn(success=(Range("", limit=-1),)),
    Txn(success=(Range("", limit=True),)),  # type: ignore[arg-type]
    Txn(success=(Range(3),)),  # type: ignore[arg-type]
    Txn(success=(Range("", start_after=3),)),  # type: ignore[arg-type]
    Txn((Compare("a", "value", "equal", 1),)),
    Txn((Compare("a", "revision", "equal", "1"),)),
    Txn((Compare("a", "revision", "equal", True),)),
    Txn((Compare("a", "exists", "equal", 1),)),
    Txn((Compare("a", "version", "equal", 1),)),
    Txn((Compare("a", "value", "like", "1"),)),
    Txn((Compare(1, "value", "equal", "1"),)),  # type: ignore[arg-type]
    Txn(("a",)),  # type: ignore[arg-type]
    Txn(success=("put a 1",)),  # type: ignore[arg-type]
    Txn(success=(Txn(),)),  # type: ignore[arg-type]
    Txn(success=(Put(1, "x"),)),  # type: ignore[arg-type]
    Txn(success=(Put("a", None),)),  # type: ignore[arg-type]
    Txn(success=(Get(None),)),  # type: ignore[arg-type]
    Txn(success=[Put("a", "x")]),  # type: ignore[arg-type]
    Txn(compare=[]),  # type: ignore[arg-type]
], ids=lambda txn: repr(txn)[:60])
def test_malformed_txn_raises_type_error_and_changes_nothing(txn: Txn) -> None:
    store = store_with(("a", "1"))
    # Valid ops first, so a late failure would leave a visible half-applied change.
    bad = Txn(txn.compare, (Put("z", "half"),) + tuple(txn.success), txn.failure) if isinstance(
        txn.success, tuple) else txn
    for candidate in (txn, bad):
        with pytest.raises(TypeError):
            store.apply(2, candidate)
        assert store.applied_index == 1
        assert store.range() == ([Item("a", "1", 1, 1)], False)


def test_non_string_top_level_commands_are_refused_without_advancing() -> None:
    store = KVStore()
    for bad in (Put(1, "x"), Put("a", 2), Delete(None), Put("a", "x", "cond")):  # type: ignore
        with pytest.raises(TypeError):
            store.apply(1, bad)
    assert store.applied_index == 0 and len(store) == 0


# --- read-only evaluation ---


def test_evaluate_txn_reads_at_the_applied_index_and_changes_nothing() -> None:
    store = store_with(("a", "1"), ("p/1", "x"), ("p/2", "y"))
    store.note_applied(10)
    txn = Txn(
        (Compare("a", "value", "equal", "1"), Compare("p/2", "revision", "equal", 3)),
        success=(Get("a"), Range("p/", limit=1), Get("zz")),
        failure=(Get("p/1"),),
    )
    assert store.evaluate_txn(txn) == TxnResult(True, 10, (
        OpResult("get", item=Item("a", "1", 1, 1)),
        OpResult("range", items=(Item("p/1", "x", 2, 2),), more=True),
        OpResult("get", item=None),
    ))
    failing = Txn((Compare("a", "exists", "equal", False),), txn.success, txn.failure)
    assert store.evaluate_txn(failing) == TxnResult(False, 10, (
        OpResult("get", item=Item("p/1", "x", 2, 2)),
    ))
    assert store.applied_index == 10 and len(store) == 3


def test_evaluate_txn_matches_apply_for_the_same_read_only_txn() -> None:
    store = store_with(("a", "1"), ("b", "2"))
    txn = Txn((Compare("b", "revision", "greater", 1),), (Range(""), Get("b")), (Get("a"),))
    evaluated = store.evaluate_txn(txn)
    applied = store.apply(3, txn)
    assert applied.txn == TxnResult(evaluated.succeeded, 3, evaluated.results)
    assert applied.events == ()


@pytest.mark.parametrize("txn", [
    Txn(success=(Get("a"), Put("a", "x"))),
    Txn(failure=(Delete("a"),)),  # even in the branch that would not run
])
def test_evaluate_txn_refuses_writes(txn: Txn) -> None:
    store = store_with(("a", "1"))
    with pytest.raises(ValueError):
        store.evaluate_txn(txn)
    assert store.get("a") == Item("a", "1", 1, 1) and store.applied_index == 1


def test_evaluate_txn_refuses_malformed_txns() -> None:
    with pytest.raises(TypeError):
        KVStore().evaluate_txn(Txn(success=(Range("", limit=0),)))
