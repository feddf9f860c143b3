"""KVStore against a plain dict model: values, revisions, create revisions, conditions,
fences, leases (grant, attach, renew, checkpoint, revoke, expiry-style conditional revoke,
grant with a put), transactions (every compare, every op, leased puts, read-only
evaluation), events, ranges, pagination, lock holders, snapshot/restore in the middle of a
history, and a History window fed from every applied entry."""

from __future__ import annotations

import io

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from leifdb.kv import (
    FAILED_CONDITION,
    FAILED_FENCE,
    FAILED_LEASE_NOT_FOUND,
    ApplyResult,
    Compare,
    Condition,
    Delete,
    Event,
    Fence,
    Get,
    History,
    Item,
    KVStore,
    Lease,
    LeaseCheckpoint,
    LeaseGrant,
    LeaseRenew,
    LeaseRevoke,
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
TTLS = st.integers(min_value=1, max_value=5)
NUMBER_TARGETS = ("revision", "create_revision", "lease")


class KVStoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = KVStore()
        # key -> (value, revision, create_revision, lease), the fields of an Item
        self.model: dict[str, tuple[str, int, int, int]] = {}
        # lease id -> (ttl_ms, remaining_ms, renewed_index); its keys are those items
        # whose lease is the id
        self.leases: dict[int, tuple[int, int, int]] = {}
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

    # --- leases, fences and holders, restated ---

    def draw_lease(self, data: st.DataObject) -> int:
        """A present lease most of the time, else none or one that is absent."""
        absent = max(self.leases, default=0) + 1
        choices = [0, absent] + sorted(self.leases) * 3
        return data.draw(st.sampled_from(choices))

    def draw_fence(self, data: st.DataObject) -> Fence | None:
        if data.draw(st.booleans()):
            return None
        prefix = data.draw(PREFIXES)
        creates = [now[2] for now in self.model.values()]
        return Fence(prefix, data.draw(st.sampled_from([1, self.index + 1] + creates)))

    def model_holder(self, prefix: str) -> Item | None:
        under = [k for k in sorted(self.model) if k.startswith(prefix)]
        if not under:
            return None
        return self.expected_current(min(under, key=lambda k: self.model[k][2]))

    def fence_holds(self, fence: Fence | None) -> bool:
        if fence is None:
            return True
        holder = self.model_holder(fence.prefix)
        return holder is not None and holder.create_revision == fence.token

    def lease_keys(self, lease_id: int) -> tuple[str, ...]:
        return tuple(k for k in sorted(self.model) if self.model[k][3] == lease_id)

    def failure(self, key: str, lease: int, condition: Condition | None,
                fence: Fence | None) -> str | None:
        """The documented order: lease, then condition, then fence."""
        if lease and lease not in self.leases:
            return FAILED_LEASE_NOT_FOUND
        if not self.holds(key, condition):
            return FAILED_CONDITION
        if not self.fence_holds(fence):
            return FAILED_FENCE
        return None

    @rule(key=KEYS, value=VALUES, gap=GAPS, data=st.data())
    def put(self, key: str, value: str, gap: int, data: st.DataObject) -> None:
        condition = self.draw_condition(data, key)
        fence = self.draw_fence(data)
        grant = data.draw(st.sampled_from([0, 0, 0, 7]))
        lease = 0 if grant else self.draw_lease(data)
        index = self.next_index(gap)
        error = self.failure(key, lease, condition, fence)
        events = []
        if error is None:
            if grant:
                self.leases[index] = (grant, grant, index)
                lease = index
            events = [self.model_put(index, key, value, lease)[1]]
        result = self.store.apply(index, Put(key, value, condition, lease if not grant else 0,
                                             grant, fence))
        assert result == ApplyResult(error is None, index, self.expected_current(key),
                                     tuple(events), None, error, lease if error is None else 0)
        self.record(result, events)

    @rule(key=KEYS, gap=GAPS, data=st.data())
    def delete(self, key: str, gap: int, data: st.DataObject) -> None:
        condition = self.draw_condition(data, key)
        fence = self.draw_fence(data)
        index = self.next_index(gap)
        error = self.failure(key, 0, condition, fence)
        events = []
        if error is None:
            events = self.model_delete(index, key)[1]
        result = self.store.apply(index, Delete(key, condition, fence))
        current = None if error is None else self.expected_current(key)
        assert result == ApplyResult(error is None, index, current, tuple(events), None, error)
        self.record(result, events)

    @rule(ttl=TTLS, gap=GAPS)
    def grant(self, ttl: int, gap: int) -> None:
        index = self.next_index(gap)
        self.leases[index] = (ttl, ttl, index)
        result = self.store.apply(index, LeaseGrant(ttl))
        assert result == ApplyResult(True, index, lease=index)
        self.record(result, [])

    @rule(gap=GAPS, data=st.data())
    def renew(self, gap: int, data: st.DataObject) -> None:
        ids = tuple(self.draw_lease(data) or 1 for _ in range(data.draw(st.integers(0, 3))))
        index = self.next_index(gap)
        for lease_id in ids:
            if lease_id in self.leases:
                ttl = self.leases[lease_id][0]
                self.leases[lease_id] = (ttl, ttl, index)
        result = self.store.apply(index, LeaseRenew(ids))
        assert result == ApplyResult(True, index)
        self.record(result, [])

    @rule(gap=GAPS, data=st.data())
    def checkpoint(self, gap: int, data: st.DataObject) -> None:
        pairs = tuple((self.draw_lease(data) or 1, data.draw(st.integers(0, 9)))
                      for _ in range(data.draw(st.integers(0, 3))))
        index = self.next_index(gap)
        for lease_id, remaining in pairs:
            if lease_id in self.leases:
                ttl, _, renewed = self.leases[lease_id]
                self.leases[lease_id] = (ttl, remaining, renewed)
        result = self.store.apply(index, LeaseCheckpoint(pairs))
        assert result == ApplyResult(True, index)
        self.record(result, [])

    @rule(gap=GAPS, data=st.data())
    def revoke(self, gap: int, data: st.DataObject) -> None:
        lease_id = self.draw_lease(data) or 1
        renewed = self.leases[lease_id][2] if lease_id in self.leases else 1
        if_renewed = data.draw(st.sampled_from([0, renewed, renewed, renewed + 1]))
        index = self.next_index(gap)
        events: list[Event] = []
        ok = lease_id in self.leases and if_renewed in (0, renewed)
        if ok:
            for key in self.lease_keys(lease_id):
                events += self.model_delete(index, key)[1]
            del self.leases[lease_id]
        result = self.store.apply(index, LeaseRevoke(lease_id, if_renewed))
        assert result == ApplyResult(ok, index, events=tuple(events))
        self.record(result, events)

    # --- transactions ---

    def model_put(self, index: int, key: str, value: str, lease: int = 0) -> tuple[Item, Event]:
        before = self.model.get(key)
        create = before[2] if before else index
        self.model[key] = (value, index, create, lease)
        prev_value, prev_revision = (before[0], before[1]) if before else (None, 0)
        return (Item(key, value, index, create, lease),
                Event("put", key, value, index, prev_value, prev_revision))

    def model_delete(self, index: int, key: str) -> tuple[Item | None, list[Event]]:
        before = self.model.pop(key, None)
        if before is None:
            return None, []
        return Item(key, *before), [Event("delete", key, None, index, before[0], before[1])]

    def model_compare(self, compare: Compare) -> bool:
        """The Compare docstring, restated: absent values fail, absent revision is 0."""
        now = self.model.get(compare.key)
        if compare.target == "value":
            if now is None:
                return False
            left: object = now[0]
        elif compare.target in NUMBER_TARGETS:
            left = now[1 + NUMBER_TARGETS.index(compare.target)] if now else 0
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

    def model_txn(
        self, index: int, txn: Txn
    ) -> tuple[bool, list[OpResult], list[Event]] | None:
        """None: a put of the chosen branch names an absent lease, nothing applies."""
        succeeded = all(self.model_compare(c) for c in txn.compare)
        results: list[OpResult] = []
        events: list[Event] = []
        branch = txn.success if succeeded else txn.failure
        if any(isinstance(op, Put) and op.lease and op.lease not in self.leases
               for op in branch):
            return None
        for op in branch:
            if isinstance(op, Put):
                item, event = self.model_put(index, op.key, op.value, op.lease)
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
        target = data.draw(st.sampled_from(["value", "exists", *NUMBER_TARGETS]))
        op = data.draw(st.sampled_from(["equal", "not_equal", "greater", "less"]))
        now = self.model.get(key)
        if target == "value":
            value: str | int | bool = data.draw(VALUES)
        elif target in NUMBER_TARGETS:
            field = now[1 + NUMBER_TARGETS.index(target)] if now else 0
            value = data.draw(st.sampled_from([0, 1, self.index] + [field] * 3))
        else:
            value = data.draw(st.booleans())
        return Compare(key, target, op, value)

    def draw_op(self, data: st.DataObject, writes: bool) -> TxnOp:
        kinds = ["put", "delete", "get", "range"] if writes else ["get", "range"]
        kind = data.draw(st.sampled_from(kinds))
        if kind == "put":
            return Put(data.draw(KEYS), data.draw(VALUES), lease=self.draw_lease(data))
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
        expected = self.model_txn(index, txn)
        result = self.store.apply(index, txn)
        if expected is None:
            assert result == ApplyResult(False, index, error=FAILED_LEASE_NOT_FOUND)
            self.record(result, [])
            return
        succeeded, results, events = expected
        assert result == ApplyResult(succeeded, index, None, tuple(events),
                                     TxnResult(succeeded, index, tuple(results)))
        self.record(result, events)

    @rule(data=st.data())
    def read_only_txn(self, data: st.DataObject) -> None:
        txn = self.draw_txn(data, writes=False)
        before = dict(self.model)
        expected = self.model_txn(self.index, txn)
        assert expected is not None
        succeeded, results, events = expected
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
    def leases_match_model(self) -> None:
        expected = [Lease(i, *self.leases[i]) for i in sorted(self.leases)]
        assert self.store.leases() == expected
        assert self.store.lease_count() == len(self.leases)
        for lease in expected:
            keys = self.lease_keys(lease.id)
            assert self.store.lease(lease.id) == Lease(
                lease.id, lease.ttl_ms, lease.remaining_ms, lease.renewed_index, keys
            )
            assert self.store.lease_key_count(lease.id) == len(keys)
        absent = max(self.leases, default=0) + 1
        assert self.store.lease(absent) is None and self.store.lease_key_count(absent) is None
        assert all(now[3] in self.leases for now in self.model.values() if now[3])

    @invariant()
    def holders_match_model(self) -> None:
        for prefix in ("", "a", "b", "a/", "b/", "ab"):
            assert self.store.holder(prefix) == self.model_holder(prefix)

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
        assert all(1 <= create <= rev <= self.index for _, rev, create, _ in self.model.values())


TestKVStoreModel = KVStoreModel.TestCase
TestKVStoreModel.settings = settings(
    derandomize=True, max_examples=200, stateful_step_count=50, deadline=None
)
