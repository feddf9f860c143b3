"""KVStore against a plain dict model: values, revisions, conditions, ranges, pagination,
and snapshot/restore in the middle of a history."""

from __future__ import annotations

import io

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from leifdb.kv import ApplyResult, Condition, Delete, Item, KVStore, Put

KEYS = st.text(alphabet="ab/", max_size=3)
VALUES = st.sampled_from(["", "x", "y"])
GAPS = st.integers(min_value=1, max_value=3)


class KVStoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = KVStore()
        self.model: dict[str, tuple[str, int]] = {}
        self.index = 0

    def next_index(self, gap: int) -> int:
        self.index += gap
        return self.index

    def holds(self, key: str, condition: Condition | None) -> bool:
        """The documented rules, restated independently of the implementation."""
        if condition is None:
            return True
        now = self.model.get(key)
        checks = []
        if condition.prev_value is not None:
            checks.append(now is not None and now[0] == condition.prev_value)
        if condition.prev_revision is not None:
            checks.append((now[1] if now else 0) == condition.prev_revision)
        if condition.must_be_absent:
            checks.append(now is None)
        return all(checks)

    def draw_condition(self, data: st.DataObject, key: str) -> Condition | None:
        kind = data.draw(
            st.sampled_from(["none", "empty", "value", "revision", "absent", "two"])
        )
        now = self.model.get(key)
        revisions = [0, 1, self.index] + ([now[1]] * 3 if now else [])
        if kind == "none":
            return None
        if kind == "empty":
            return Condition()
        if kind == "value":
            return Condition(prev_value=data.draw(VALUES))
        if kind == "revision":
            return Condition(prev_revision=data.draw(st.sampled_from(revisions)))
        if kind == "absent":
            return Condition(must_be_absent=True)
        return Condition(
            prev_value=data.draw(VALUES), prev_revision=data.draw(st.sampled_from(revisions))
        )

    def expected_current(self, key: str) -> Item | None:
        now = self.model.get(key)
        return Item(key, *now) if now else None

    @rule(key=KEYS, value=VALUES, gap=GAPS, data=st.data())
    def put(self, key: str, value: str, gap: int, data: st.DataObject) -> None:
        condition = self.draw_condition(data, key)
        index = self.next_index(gap)
        holds = self.holds(key, condition)
        if holds:
            self.model[key] = (value, index)
        result = self.store.apply(index, Put(key, value, condition))
        assert result == ApplyResult(holds, index, self.expected_current(key))

    @rule(key=KEYS, gap=GAPS, data=st.data())
    def delete(self, key: str, gap: int, data: st.DataObject) -> None:
        condition = self.draw_condition(data, key)
        index = self.next_index(gap)
        holds = self.holds(key, condition)
        if holds:
            self.model.pop(key, None)
        result = self.store.apply(index, Delete(key, condition))
        assert result == ApplyResult(holds, index, None if holds else self.expected_current(key))

    @rule(gap=GAPS)
    def note_applied(self, gap: int) -> None:
        self.store.note_applied(self.next_index(gap))

    @rule(back=st.integers(min_value=0, max_value=2), key=KEYS)
    def stale_index_is_rejected(self, back: int, key: str) -> None:
        with pytest.raises(ValueError):
            self.store.apply(self.index - back, Put(key, "stale"))

    @rule(prefix=st.text(alphabet="ab/", max_size=2), page=st.integers(1, 4))
    def paginate(self, prefix: str, page: int) -> None:
        expected = [self.expected_current(k) for k in sorted(self.model) if k.startswith(prefix)]
        assert self.store.range(prefix) == (expected, False)
        walked: list[Item] = []
        start_after = None
        for _ in range(len(expected) + 1):
            items, more = self.store.range(prefix, start_after=start_after, limit=page)
            assert more == (len(walked) + len(items) < len(expected))
            walked += items
            if not more:
                break
            start_after = items[-1].key
        assert walked == expected

    @rule(prefix=st.text(alphabet="ab/", max_size=2), start_after=KEYS, limit=st.integers(1, 4))
    def range_from_anywhere(self, prefix: str, start_after: str, limit: int) -> None:
        matching = [k for k in sorted(self.model) if k.startswith(prefix) and k > start_after]
        items, more = self.store.range(prefix, start_after, limit)
        assert items == [self.expected_current(k) for k in matching[:limit]]
        assert more == (len(matching) > limit)

    @rule(metadata=st.binary(max_size=8))
    def snapshot_and_restore(self, metadata: bytes) -> None:
        out = io.BytesIO()
        self.store.write_snapshot(out, metadata)
        restored, got = KVStore.read_snapshot(io.BytesIO(out.getvalue()))
        assert got == metadata
        again = io.BytesIO()
        restored.write_snapshot(again, metadata)
        assert again.getvalue() == out.getvalue()
        self.store = restored

    @invariant()
    def matches_model(self) -> None:
        assert self.store.applied_index == self.index
        assert len(self.store) == len(self.model)
        for key in self.model:
            assert self.store.get(key) == self.expected_current(key)
        assert self.store.get("absent-key") is None

    @invariant()
    def revisions_are_unique_and_applied(self) -> None:
        revisions = [rev for _, rev in self.model.values()]
        assert len(set(revisions)) == len(revisions)
        assert all(1 <= rev <= self.index for rev in revisions)


TestKVStoreModel = KVStoreModel.TestCase
TestKVStoreModel.settings = settings(
    derandomize=True, max_examples=200, stateful_step_count=50, deadline=None
)
