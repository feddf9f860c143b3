"""KVStore against a plain dict model: values, revisions, conditions, transactions (every
compare, every op, read-only evaluation), events, ranges, pagination, snapshot/restore in
the middle of a history, and a History window fed from every applied entry."""

from __future__ import annotations

import io

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from leifdb.kv import (
    ApplyResult,
    Compare,
    Condition,
    Delete,
    Event,
    Get,
    History,
    Item,
    KVStore,
    OpResult,
    Put,
    Range,
    Txn,
    TxnOp,
    TxnResult,
)

KEYS = st.text(alphabet="ab/", max_size=3)
VALUES = st.sampled_from(["", "x", "y"])
GAPS = st.integers(min_value=1, max_value=3)
PREFIXES = st.text(alphabet="ab/", max_size=2)
HISTORY_EVENTS = 6


class KVStoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = KVStore()
        self.model: dict[str, tuple[str, int]] = {}
        self.index = 0
        self.history = History(HISTORY_EVENTS, 10**9)
        self.all_events: list[Event] = []  # every change since the last restore

    def record(self, result: ApplyResult, expected_events: list[Event]) -> None:
        assert list(result.events) == expected_events
        self.history.record(self.index, result.events)
        self.all_events += expected_events

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
        events = []
        if holds:
            events = [self.model_put(index, key, value)[1]]
        result = self.store.apply(index, Put(key, value, condition))
        assert result == ApplyResult(holds, index, self.expected_current(key), tuple(events))
        self.record(result, events)

    @rule(key=KEYS, gap=GAPS, data=st.data())
    def delete(self, key: str, gap: int, data: st.DataObject) -> None:
        condition = self.draw_condition(data, key)
        index = self.next_index(gap)
        holds = self.holds(key, condition)
        events = []
        if holds:
            events = self.model_delete(index, key)[1]
        result = self.store.apply(index, Delete(key, condition))
        current = None if holds else self.expected_current(key)
        assert result == ApplyResult(holds, index, current, tuple(events))
        self.record(result, events)

    # --- transactions ---

    def model_put(self, index: int, key: str, value: str) -> tuple[Item, Event]:
        before = self.model.get(key)
        self.model[key] = (value, index)
        prev_value, prev_revision = before if before else (None, 0)
        return Item(key, value, index), Event("put", key, value, index, prev_value, prev_revision)

    def model_delete(self, index: int, key: str) -> tuple[Item | None, list[Event]]:
        before = self.model.pop(key, None)
        if before is None:
            return None, []
        return Item(key, *before), [Event("delete", key, None, index, *before)]

    def model_compare(self, compare: Compare) -> bool:
        """The Compare docstring, restated: absent values fail, absent revision is 0."""
        now = self.model.get(compare.key)
        if compare.target == "value":
            if now is None:
                return False
            left: object = now[0]
        elif compare.target == "revision":
            left = now[1] if now else 0
        else:
            left = int(now is not None)
        right = compare.value
        return {
            "equal": left == right,
            "not_equal": left != right,
            "greater": left > right,  # type: ignore[operator]
            "less": left < right,  # type: ignore[operator]
        }[compare.op]

    def model_read(self, op: TxnOp) -> OpResult:
        if isinstance(op, Get):
            return OpResult("get", item=self.expected_current(op.key))
        assert isinstance(op, Range)
        keys = [k for k in sorted(self.model) if k.startswith(op.prefix)
                and (op.start_after is None or k > op.start_after)]
        shown = keys if op.limit is None else keys[: op.limit]
        return OpResult("range", items=tuple(self.expected_current(k) for k in shown),
                        more=len(shown) < len(keys))

    def model_txn(self, index: int, txn: Txn) -> tuple[bool, list[OpResult], list[Event]]:
        succeeded = all(self.model_compare(c) for c in txn.compare)
        results: list[OpResult] = []
        events: list[Event] = []
        for op in txn.success if succeeded else txn.failure:
            if isinstance(op, Put):
                item, event = self.model_put(index, op.key, op.value)
                results.append(OpResult("put", item=item))
                events.append(event)
            elif isinstance(op, Delete):
                item, deleted = self.model_delete(index, op.key)
                results.append(OpResult("delete", item=item))
                events += deleted
            else:
                results.append(self.model_read(op))
        return succeeded, results, events

    def draw_compare(self, data: st.DataObject) -> Compare:
        key = data.draw(KEYS)
        target = data.draw(st.sampled_from(["value", "revision", "exists"]))
        op = data.draw(st.sampled_from(["equal", "not_equal", "greater", "less"]))
        now = self.model.get(key)
        if target == "value":
            value: str | int | bool = data.draw(VALUES)
        elif target == "revision":
            value = data.draw(st.sampled_from([0, 1, self.index] + ([now[1]] * 3 if now else [])))
        else:
            value = data.draw(st.booleans())
        return Compare(key, target, op, value)

    def draw_op(self, data: st.DataObject, writes: bool) -> TxnOp:
        kinds = ["put", "delete", "get", "range"] if writes else ["get", "range"]
        kind = data.draw(st.sampled_from(kinds))
        if kind == "put":
            return Put(data.draw(KEYS), data.draw(VALUES))
        if kind == "delete":
            return Delete(data.draw(KEYS))
        if kind == "get":
            return Get(data.draw(KEYS))
        return Range(data.draw(PREFIXES), data.draw(st.none() | KEYS),
                     data.draw(st.none() | st.integers(1, 3)))

    def draw_txn(self, data: st.DataObject, writes: bool) -> Txn:
        compares = tuple(self.draw_compare(data) for _ in range(data.draw(st.integers(0, 3))))
        branches = [tuple(self.draw_op(data, writes) for _ in range(data.draw(st.integers(0, 4))))
                    for _ in range(2)]
        return Txn(compares, branches[0], branches[1])

    @rule(gap=GAPS, data=st.data())
    def txn(self, gap: int, data: st.DataObject) -> None:
        txn = self.draw_txn(data, writes=True)
        index = self.next_index(gap)
        succeeded, results, events = self.model_txn(index, txn)
        result = self.store.apply(index, txn)
        assert result == ApplyResult(succeeded, index, None, tuple(events),
                                     TxnResult(succeeded, index, tuple(results)))
        self.record(result, events)

    @rule(data=st.data())
    def read_only_txn(self, data: st.DataObject) -> None:
        txn = self.draw_txn(data, writes=False)
        before = dict(self.model)
        succeeded, results, events = self.model_txn(self.index, txn)
        assert events == [] and self.model == before
        assert self.store.evaluate_txn(txn) == TxnResult(succeeded, self.index, tuple(results))

    @rule(gap=GAPS)
    def note_applied(self, gap: int) -> None:
        self.store.note_applied(self.next_index(gap))
        self.history.record(self.index, ())

    @rule(back=st.integers(min_value=0, max_value=2), key=KEYS)
    def stale_index_is_rejected(self, back: int, key: str) -> None:
        with pytest.raises(ValueError):
            self.store.apply(self.index - back, Put(key, "stale"))

    @rule(prefix=PREFIXES, page=st.integers(1, 4))
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

    @rule(prefix=PREFIXES, start_after=KEYS, limit=st.integers(1, 4))
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
        self.history.reset(restored.applied_index)
        self.all_events = []

    @invariant()
    def matches_model(self) -> None:
        assert self.store.applied_index == self.index
        assert len(self.store) == len(self.model)
        for key in self.model:
            assert self.store.get(key) == self.expected_current(key)
        assert self.store.get("absent-key") is None

    @invariant()
    def history_keeps_the_latest_whole_revisions(self) -> None:
        assert self.history.revision == self.index
        compact = self.history.compact_revision
        kept = [e for e in self.all_events if e.revision >= compact]
        assert len(kept) <= HISTORY_EVENTS
        dropped = self.all_events[: len(self.all_events) - len(kept)]
        if dropped:  # the newest dropped revision did not fit beside the kept ones
            assert compact == dropped[-1].revision + 1
            last = [e for e in dropped if e.revision == dropped[-1].revision]
            assert len(kept) + len(last) > HISTORY_EVENTS
        groups = self.history.since(compact, "", prefix=True)
        assert groups is not None
        assert [e for _, group in groups for e in group] == kept
        assert all(e.revision == rev for rev, group in groups for e in group)
        assert self.history.since(compact - 1, "", prefix=True) is None or compact == 1

    @invariant()
    def revisions_are_applied_indexes(self) -> None:
        """Only a transaction gives several keys one revision, so none is unique here."""
        revisions = [rev for _, rev in self.model.values()]
        assert all(1 <= rev <= self.index for rev in revisions)


TestKVStoreModel = KVStoreModel.TestCase
TestKVStoreModel.settings = settings(
    derandomize=True, max_examples=200, stateful_step_count=50, deadline=None
)
