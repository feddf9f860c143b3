"""SortedKeys against a plain sorted set, with a tiny chunk size so splits and merges happen."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from leifdb.kv.sortedkeys import SortedKeys

KEYS = st.text(alphabet="abcd", max_size=4)


class SortedKeysMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.keys = SortedKeys(load=4)
        self.model: set[str] = set()

    @rule(key=KEYS)
    def add(self, key: str) -> None:
        assert self.keys.add(key) == (key not in self.model)
        self.model.add(key)

    @rule(keys=st.lists(KEYS, max_size=12))
    def add_many(self, keys: list[str]) -> None:
        for key in keys:
            self.keys.add(key)
        self.model.update(keys)

    @rule(prefix=st.text(alphabet="abcd", max_size=2))
    def discard_prefix(self, prefix: str) -> None:
        for key in [k for k in self.model if k.startswith(prefix)]:
            assert self.keys.discard(key)
            self.model.discard(key)

    @rule(key=KEYS)
    def discard(self, key: str) -> None:
        assert self.keys.discard(key) == (key in self.model)
        self.model.discard(key)

    @rule(key=KEYS, inclusive=st.booleans())
    def iter_from(self, key: str, inclusive: bool) -> None:
        expected = [k for k in sorted(self.model) if (k >= key if inclusive else k > key)]
        assert list(self.keys.iter_from(key, inclusive)) == expected

    @rule(key=KEYS)
    def contains(self, key: str) -> None:
        assert (key in self.keys) == (key in self.model)

    @invariant()
    def same_keys(self) -> None:
        self.keys.check_invariants()
        assert list(self.keys) == sorted(self.model)
        assert len(self.keys) == len(self.model)


TestSortedKeysMachine = SortedKeysMachine.TestCase
TestSortedKeysMachine.settings = settings(
    derandomize=True, max_examples=150, stateful_step_count=60, deadline=None
)


@settings(derandomize=True, max_examples=100)
@given(st.sets(KEYS), st.integers(min_value=4, max_value=8))
def test_from_sorted_matches_incremental(keys: set[str], load: int) -> None:
    built = SortedKeys.from_sorted(sorted(keys), load=load)
    built.check_invariants()
    assert list(built) == sorted(keys)
    for key in sorted(keys)[::2]:
        assert built.discard(key)
    built.check_invariants()
    assert list(built) == sorted(keys)[1::2]


def test_from_sorted_rejects_unsorted_or_duplicate_keys() -> None:
    with pytest.raises(ValueError):
        SortedKeys.from_sorted(["b", "a"])
    with pytest.raises(ValueError):
        SortedKeys.from_sorted(["a", "a"])


def test_load_must_be_sensible() -> None:
    with pytest.raises(ValueError):
        SortedKeys(load=1)


def test_iter_from_on_empty_and_past_the_end() -> None:
    keys = SortedKeys()
    assert list(keys.iter_from("")) == []
    keys.add("m")
    assert list(keys.iter_from("z")) == []
    assert list(keys.iter_from("m", inclusive=False)) == []
    assert list(keys.iter_from("m")) == ["m"]
    assert 3 not in keys
