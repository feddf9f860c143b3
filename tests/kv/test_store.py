"""KVStore unit tests: apply ordering, every condition kind, deletes, events, get and range."""

from __future__ import annotations

import pytest

from leifdb.kv import (
    FAILED_CONDITION,
    ApplyResult,
    Condition,
    Delete,
    Event,
    Item,
    KVStore,
    Put,
    condition_holds,
)


def store_with(*pairs: tuple[str, str]) -> KVStore:
    """A store with ``pairs`` put at indexes 1, 2, ..."""
    store = KVStore()
    for index, (key, value) in enumerate(pairs, start=1):
        assert store.apply(index, Put(key, value)).ok
    return store


# --- apply ordering and results ---


def test_new_store_is_empty() -> None:
    store = KVStore()
    assert store.applied_index == 0
    assert len(store) == 0
    assert store.get("a") is None
    assert store.range() == ([], False)


def test_put_creates_item_with_revision_equal_to_index() -> None:
    store = KVStore()
    result = store.apply(7, Put("a", "1"))
    assert result == ApplyResult(
        ok=True, revision=7, current=Item("a", "1", 7, 7), events=(Event("put", "a", "1", 7),)
    )
    assert store.get("a") == Item("a", "1", 7, 7)
    assert store.applied_index == 7
    assert len(store) == 1
    assert "a" in store


def test_overwrite_bumps_revision_even_with_same_value() -> None:
    store = store_with(("a", "1"))
    assert store.apply(2, Put("a", "1")).current == Item("a", "1", 2, 1)
    assert store.apply(3, Put("a", "2")).current == Item("a", "2", 3, 1)
    assert len(store) == 1


def test_every_put_makes_an_event_with_the_previous_item() -> None:
    store = store_with(("a", "1"))
    assert store.apply(2, Put("a", "1")).events == (Event("put", "a", "1", 2, "1", 1),)
    assert store.apply(5, Put("a", "")).events == (Event("put", "a", "", 5, "1", 2),)
    assert store.apply(6, Put("b", "x")).events == (Event("put", "b", "x", 6, None, 0),)


@pytest.mark.parametrize("index", [0, -1, 5])
def test_apply_rejects_index_not_after_applied_index(index: int) -> None:
    store = KVStore()
    store.apply(5, Put("a", "1"))
    with pytest.raises(ValueError):
        store.apply(index, Put("a", "2"))
    assert store.get("a") == Item("a", "1", 5, 5)
    assert store.applied_index == 5


def test_note_applied_advances_and_enforces_order() -> None:
    store = KVStore()
    store.note_applied(1)
    assert store.applied_index == 1
    with pytest.raises(ValueError):
        store.note_applied(1)
    with pytest.raises(ValueError):
        store.apply(1, Put("a", "1"))
    assert store.apply(3, Put("a", "1")).revision == 3
    with pytest.raises(ValueError):
        store.note_applied(2)
    assert store.applied_index == 3
    assert len(store) == 1


def test_unknown_command_is_rejected_without_advancing() -> None:
    store = KVStore()
    with pytest.raises(TypeError):
        store.apply(1, "put a 1")  # type: ignore[arg-type]
    assert store.applied_index == 0


def test_delete_existing_key() -> None:
    store = store_with(("a", "1"), ("b", "2"))
    assert store.apply(3, Delete("a")) == ApplyResult(
        ok=True, revision=3, current=None, events=(Event("delete", "a", None, 3, "1", 1),)
    )
    assert store.get("a") is None
    assert "a" not in store
    assert len(store) == 1
    assert store.range() == ([Item("b", "2", 2, 2)], False)


def test_delete_absent_key_is_ok_and_changes_nothing_but_applied_index() -> None:
    store = store_with(("a", "1"))
    assert store.apply(2, Delete("zz")) == ApplyResult(ok=True, revision=2, current=None)
    assert store.range() == ([Item("a", "1", 1, 1)], False)
    assert store.applied_index == 2


def test_recreated_key_gets_a_fresh_revision() -> None:
    store = store_with(("a", "1"))
    store.apply(2, Delete("a"))
    assert store.apply(3, Put("a", "1")).current == Item("a", "1", 3, 3)


# --- conditions ---

# (condition, key present?) -> holds? ; the present key is Item("k", "v", 1, 1).
CONDITION_CASES = [
    (None, True, True),
    (None, False, True),
    (Condition(), True, True),
    (Condition(), False, True),
    (Condition(prev_value="v"), True, True),
    (Condition(prev_value="other"), True, False),
    (Condition(prev_value="v"), False, False),
    (Condition(prev_value=""), False, False),
    (Condition(prev_revision=1), True, True),
    (Condition(prev_revision=2), True, False),
    (Condition(prev_revision=1), False, False),
    (Condition(prev_revision=0), False, True),
    (Condition(prev_revision=0), True, False),
    (Condition(prev_revision=-1), False, False),
    (Condition(must_be_absent=True), False, True),
    (Condition(must_be_absent=True), True, False),
    (Condition(prev_value="v", prev_revision=1), True, True),
    (Condition(prev_value="v", prev_revision=2), True, False),
    (Condition(prev_value="v", must_be_absent=True), True, False),
    (Condition(prev_revision=0, must_be_absent=True), False, True),
]


def store_at_index_1(present: bool) -> KVStore:
    """Applied index 1, holding ``Item("k", "v", 1, 1)`` if ``present``."""
    if present:
        return store_with(("k", "v"))
    store = KVStore()
    store.note_applied(1)
    return store


@pytest.mark.parametrize("condition, present, holds", CONDITION_CASES)
def test_condition_holds(condition: Condition | None, present: bool, holds: bool) -> None:
    assert condition_holds(condition, Item("k", "v", 1, 1) if present else None) is holds


@pytest.mark.parametrize("condition, present, holds", CONDITION_CASES)
def test_conditional_put(condition: Condition | None, present: bool, holds: bool) -> None:
    store = store_at_index_1(present)
    before = store.get("k")
    result = store.apply(2, Put("k", "new", condition))
    assert result.ok is holds
    assert result.revision == 2
    assert store.applied_index == 2
    if holds:
        assert result.current == Item("k", "new", 2, 1 if present else 2) == store.get("k")
        assert result.events == (
            Event("put", "k", "new", 2, "v" if present else None, 1 if present else 0),
        )
    else:
        assert result.current == before == store.get("k")
        assert result.events == ()


@pytest.mark.parametrize("condition, present, holds", CONDITION_CASES)
def test_conditional_delete(condition: Condition | None, present: bool, holds: bool) -> None:
    store = store_at_index_1(present)
    before = store.get("k")
    result = store.apply(2, Delete("k", condition))
    assert result.ok is holds
    assert result.revision == 2
    assert store.applied_index == 2
    if holds:
        assert result.current is None
        assert store.get("k") is None
        assert result.events == ((Event("delete", "k", None, 2, "v", 1),) if present else ())
    else:
        assert result.current == before == store.get("k")
        assert result.events == ()


def test_failed_condition_keeps_other_keys_and_index() -> None:
    store = store_with(("a", "1"), ("b", "2"))
    result = store.apply(3, Put("a", "x", Condition(prev_revision=2)))
    assert result == ApplyResult(
        ok=False, revision=3, current=Item("a", "1", 1, 1), error=FAILED_CONDITION
    )
    assert store.range() == ([Item("a", "1", 1, 1), Item("b", "2", 2, 2)], False)


def test_compare_and_swap_loop() -> None:
    """The usual client pattern: read, then write guarded by the revision read."""
    store = store_with(("counter", "0"))
    index = 1
    for expected in range(1, 6):
        seen = store.get("counter")
        assert seen is not None
        index += 1
        result = store.apply(
            index, Put("counter", str(int(seen.value) + 1), Condition(prev_revision=seen.revision))
        )
        assert result.ok and result.current == Item("counter", str(expected), index, 1)
    stale = Condition(prev_revision=1)
    assert not store.apply(index + 1, Put("counter", "bad", stale)).ok
    assert store.get("counter") == Item("counter", "5", index, 1)


# --- range ---


def keys_of(items: list[Item]) -> list[str]:
    return [item.key for item in items]


@pytest.fixture
def tree() -> KVStore:
    return store_with(
        ("a", "1"), ("app/1", "2"), ("app/2", "3"), ("app/3", "4"), ("apple", "5"),
        ("b", "6"), ("ap", "7"), ("", "8"),
    )


def test_range_all_in_key_order(tree: KVStore) -> None:
    items, more = tree.range()
    assert keys_of(items) == ["", "a", "ap", "app/1", "app/2", "app/3", "apple", "b"]
    assert not more
    assert items[3] == Item("app/1", "2", 2, 2)


def test_range_prefix(tree: KVStore) -> None:
    assert keys_of(tree.range("app/")[0]) == ["app/1", "app/2", "app/3"]
    assert keys_of(tree.range("ap")[0]) == ["ap", "app/1", "app/2", "app/3", "apple"]
    assert tree.range("c") == ([], False)
    assert tree.range("apple/") == ([], False)
    assert keys_of(tree.range("b")[0]) == ["b"]


def test_range_limit_and_more(tree: KVStore) -> None:
    assert (keys_of(tree.range("app/", limit=2)[0]), tree.range("app/", limit=2)[1]) == (
        ["app/1", "app/2"], True,
    )
    assert tree.range("app/", limit=3)[1] is False
    assert tree.range("app/", limit=4)[1] is False
    assert keys_of(tree.range("", limit=1)[0]) == [""]


@pytest.mark.parametrize("limit", [0, -1])
def test_range_rejects_non_positive_limit(tree: KVStore, limit: int) -> None:
    with pytest.raises(ValueError):
        tree.range(limit=limit)


def test_range_start_after(tree: KVStore) -> None:
    assert keys_of(tree.range("app/", start_after="app/1")[0]) == ["app/2", "app/3"]
    # start_after need not be an existing key
    assert keys_of(tree.range("app/", start_after="app/15")[0]) == ["app/2", "app/3"]
    # before the prefix: the whole prefix; after it: nothing
    assert keys_of(tree.range("app/", start_after="a")[0]) == ["app/1", "app/2", "app/3"]
    assert tree.range("app/", start_after="app0") == ([], False)
    assert tree.range("app/", start_after="app/3") == ([], False)
    assert keys_of(tree.range(start_after="")[0])[0] == "a"


def test_range_pagination_walks_everything(tree: KVStore) -> None:
    walked: list[str] = []
    start_after = None
    for _ in range(10):
        items, more = tree.range("ap", start_after=start_after, limit=2)
        walked += keys_of(items)
        if not more:
            break
        start_after = items[-1].key
    assert walked == keys_of(tree.range("ap")[0])


def test_range_reflects_deletes(tree: KVStore) -> None:
    tree.apply(9, Delete("app/2"))
    assert keys_of(tree.range("app/")[0]) == ["app/1", "app/3"]


def test_range_orders_by_code_point_which_is_utf8_byte_order() -> None:
    keys = ["z", "é", "\U0001f600", "\uffff", "A", "\x00", "日本"]
    store = store_with(*[(k, k) for k in keys])
    listed = keys_of(store.range()[0])
    assert listed == sorted(keys)
    assert listed == sorted(keys, key=lambda k: k.encode("utf-8"))
