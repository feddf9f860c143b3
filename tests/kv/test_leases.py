"""KVStore leases, create revisions, fences and lock holders: each documented rule, one test
(the model test in test_store_model.py mixes them at random)."""

from __future__ import annotations

import pytest

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
    Item,
    KVStore,
    Lease,
    LeaseCheckpoint,
    LeaseGrant,
    LeaseRenew,
    LeaseRevoke,
    OpResult,
    Put,
    Txn,
    TxnResult,
    check_command,
)


def store_with_lease(ttl_ms: int = 5000) -> KVStore:
    """Lease 1 (granted at index 1)."""
    store = KVStore()
    assert store.apply(1, LeaseGrant(ttl_ms)) == ApplyResult(ok=True, revision=1, lease=1)
    return store


# --- create revisions ---


def test_create_revision_is_kept_by_later_puts_and_reset_by_a_delete() -> None:
    store = KVStore()
    assert store.apply(3, Put("k", "a")).current == Item("k", "a", 3, 3, 0)
    assert store.apply(4, Put("k", "b")).current == Item("k", "b", 4, 3, 0)
    store.apply(5, Delete("k"))
    assert store.apply(6, Put("k", "c")).current == Item("k", "c", 6, 6, 0)
    assert store.get("k") == Item("k", "c", 6, 6, 0)


def test_a_transaction_creates_and_keeps_create_revisions_too() -> None:
    store = KVStore()
    store.apply(1, Put("old", "1"))
    result = store.apply(2, Txn(success=(Put("old", "2"), Put("new", "1"), Put("new", "2"))))
    assert result.txn is not None
    assert [r.item for r in result.txn.results] == [
        Item("old", "2", 2, 1), Item("new", "1", 2, 2), Item("new", "2", 2, 2)
    ]


# --- grants and attaching ---


def test_a_grant_creates_a_lease_whose_id_is_its_index() -> None:
    store = KVStore()
    store.apply(1, Put("x", "1"))
    assert store.apply(7, LeaseGrant(3000)) == ApplyResult(ok=True, revision=7, lease=7)
    assert store.lease(7) == Lease(7, 3000, 3000, 7, ())
    assert store.leases() == [Lease(7, 3000, 3000, 7)]
    assert (store.lease_count(), store.has_lease(7), store.has_lease(1)) == (1, True, False)
    assert store.lease(1) is None and store.lease_key_count(1) is None
    assert store.applied_index == 7


def test_a_put_attaches_its_key_and_says_so() -> None:
    store = store_with_lease()
    result = store.apply(2, Put("b", "1", lease=1))
    assert result == ApplyResult(
        ok=True, revision=2, current=Item("b", "1", 2, 2, 1),
        events=(Event("put", "b", "1", 2),), lease=1,
    )
    store.apply(3, Put("a", "1", lease=1))
    assert store.lease(1) == Lease(1, 5000, 5000, 1, ("a", "b"))
    assert store.lease_key_count(1) == 2
    assert store.leases() == [Lease(1, 5000, 5000, 1, ())]  # listing leaves keys out


def test_a_put_moves_its_key_to_another_lease_or_to_none() -> None:
    store = store_with_lease()
    store.apply(2, LeaseGrant(9000))
    store.apply(3, Put("k", "1", lease=1))
    assert store.apply(4, Put("k", "2", lease=2)).lease == 2
    assert (store.lease(1).keys, store.lease(2).keys) == ((), ("k",))  # type: ignore[union-attr]
    result = store.apply(5, Put("k", "3"))
    assert result.lease == 0 and result.current == Item("k", "3", 5, 3, 0)
    assert store.lease(2).keys == ()  # type: ignore[union-attr]


def test_a_put_naming_an_absent_lease_changes_nothing() -> None:
    store = store_with_lease()
    store.apply(2, Put("k", "v", lease=1))
    for index, put in ((3, Put("k", "w", lease=9)), (4, Put("new", "x", lease=2))):
        current = store.get(put.key)
        assert store.apply(index, put) == ApplyResult(
            ok=False, revision=index, current=current, error=FAILED_LEASE_NOT_FOUND
        )
    assert store.get("k") == Item("k", "v", 2, 2, 1) and "new" not in store
    assert store.lease(1).keys == ("k",)  # type: ignore[union-attr]
    assert store.applied_index == 4


def test_lease_is_checked_before_the_condition_and_the_condition_before_the_fence() -> None:
    store = KVStore()
    store.apply(1, Put("_lock/a/1", "me"))
    bad_condition, bad_fence = Condition(must_be_absent=True), Fence("_lock/a/", 99)
    both = Put("_lock/a/1", "x", bad_condition, lease=5, fence=bad_fence)
    assert store.apply(2, both).error == FAILED_LEASE_NOT_FOUND
    assert store.apply(3, Put("_lock/a/1", "x", bad_condition, fence=bad_fence)).error == (
        FAILED_CONDITION
    )
    assert store.apply(4, Put("_lock/a/1", "x", fence=bad_fence)).error == FAILED_FENCE


def test_a_put_with_grant_ttl_grants_a_lease_for_its_key_in_the_same_entry() -> None:
    store = KVStore()
    result = store.apply(4, Put("k", "v", grant_ttl_ms=2500))
    assert result.ok and result.lease == 4 and result.current == Item("k", "v", 4, 4, 4)
    assert store.lease(4) == Lease(4, 2500, 2500, 4, ("k",))


@pytest.mark.parametrize("put, error", [
    (Put("k", "v", Condition(prev_value="other"), grant_ttl_ms=2500), FAILED_CONDITION),
    (Put("k", "v", grant_ttl_ms=2500, fence=Fence("_lock/", 1)), FAILED_FENCE),
])
def test_a_grant_that_does_not_apply_grants_nothing(put: Put, error: str) -> None:
    store = KVStore()
    result = store.apply(4, put)
    assert result == ApplyResult(ok=False, revision=4, error=error)
    assert store.lease_count() == 0 and store.lease(4) is None


def test_a_delete_detaches_its_key_and_the_lease_stays() -> None:
    store = store_with_lease()
    store.apply(2, Put("k", "v", lease=1))
    store.apply(3, Delete("k"))
    assert store.lease(1) == Lease(1, 5000, 5000, 1, ())
    # the lease ending later deletes nothing, even if the key was created again
    store.apply(4, Put("k", "again"))
    assert store.apply(5, LeaseRevoke(1)) == ApplyResult(ok=True, revision=5)
    assert store.get("k") == Item("k", "again", 4, 4, 0)


# --- renewals, checkpoints, revocations ---


def test_renew_resets_remaining_and_notes_the_index_for_present_leases_only() -> None:
    store = store_with_lease(5000)
    store.apply(2, LeaseCheckpoint(((1, 1200),)))
    assert store.apply(3, LeaseRenew((1, 99))) == ApplyResult(ok=True, revision=3)
    assert store.lease(1) == Lease(1, 5000, 5000, 3, ())
    assert store.lease_count() == 1 and store.lease(99) is None


def test_checkpoint_writes_down_remaining_and_keeps_renewed_index() -> None:
    store = store_with_lease(5000)
    store.apply(2, LeaseGrant(800))
    assert store.apply(3, LeaseCheckpoint(((1, 10), (2, 0), (42, 5)))) == ApplyResult(
        ok=True, revision=3
    )
    assert store.leases() == [Lease(1, 5000, 10, 1), Lease(2, 800, 0, 2)]


def test_revoke_deletes_the_lease_and_its_keys_in_key_order_at_one_revision() -> None:
    store = store_with_lease()
    store.apply(2, Put("b", "2", lease=1))
    store.apply(3, Put("a", "1", lease=1))
    store.apply(4, Put("a", "1b", lease=1))
    store.apply(5, Put("c", "free"))
    assert store.apply(6, LeaseRevoke(1)) == ApplyResult(
        ok=True, revision=6,
        events=(Event("delete", "a", None, 6, "1b", 4), Event("delete", "b", None, 6, "2", 2)),
    )
    assert store.lease(1) is None and store.lease_count() == 0
    assert store.range() == ([Item("c", "free", 5, 5)], False)


def test_revoking_an_absent_lease_changes_nothing() -> None:
    store = store_with_lease()
    assert store.apply(2, LeaseRevoke(7)) == ApplyResult(ok=False, revision=2)
    assert store.lease_count() == 1 and store.applied_index == 2


def test_an_expiry_loses_to_a_renewal_that_committed_first() -> None:
    """The leader decided to expire lease 1 as renewed at index 1; a keepalive at 3 won."""
    store = store_with_lease()
    store.apply(2, Put("k", "v", lease=1))
    store.apply(3, LeaseRenew((1,)))
    assert store.apply(4, LeaseRevoke(1, if_renewed_index=1)) == ApplyResult(ok=False, revision=4)
    assert store.get("k") is not None and store.lease(1) is not None
    assert store.apply(5, LeaseRevoke(1, if_renewed_index=3)).ok
    assert store.get("k") is None and store.lease(1) is None


def test_a_client_revoke_is_unconditional() -> None:
    store = store_with_lease()
    store.apply(2, LeaseRenew((1,)))
    assert store.apply(3, LeaseRevoke(1)).ok and store.lease_count() == 0


def test_lease_commands_keep_the_index_order() -> None:
    store = store_with_lease()
    for command in (LeaseGrant(1), LeaseRenew((1,)), LeaseCheckpoint(()), LeaseRevoke(1)):
        with pytest.raises(ValueError):
            store.apply(1, command)
    assert store.applied_index == 1 and store.lease(1) == Lease(1, 5000, 5000, 1)


# --- holders and fences ---


def lock_store() -> KVStore:
    """Waiters on lock "a": lease 1's key created at 3, lease 2's at 4; lock "ab" apart."""
    store = KVStore()
    store.apply(1, LeaseGrant(5000))
    store.apply(2, LeaseGrant(5000))
    store.apply(3, Put("_lock/a/1", "one", lease=1))
    store.apply(4, Put("_lock/a/2", "two", lease=2))
    store.apply(5, Put("_lock/ab/9", "other"))
    return store


def test_the_holder_is_the_key_with_the_lowest_create_revision() -> None:
    store = lock_store()
    store.apply(6, Put("_lock/a/1", "one again", lease=1))  # a proclaim keeps the token
    assert store.holder("_lock/a/") == Item("_lock/a/1", "one again", 6, 3, 1)
    assert store.holder("_lock/ab/") == Item("_lock/ab/9", "other", 5, 5)
    assert store.holder("_lock/b/") is None
    store.apply(7, LeaseRevoke(1))
    assert store.holder("_lock/a/") == Item("_lock/a/2", "two", 4, 4, 2)


def test_among_keys_created_together_the_first_in_key_order_holds() -> None:
    store = KVStore()
    store.apply(1, Txn(success=(Put("p/b", "b"), Put("p/a", "a"))))
    assert store.holder("p/") == Item("p/a", "a", 1, 1)


def test_a_fence_holds_only_for_the_holders_token() -> None:
    store = lock_store()
    assert store.fence_holds(Fence("_lock/a/", 3))
    assert not store.fence_holds(Fence("_lock/a/", 4))
    assert not store.fence_holds(Fence("_lock/zz/", 3))
    ok = store.apply(6, Put("data", "x", fence=Fence("_lock/a/", 3)))
    assert ok.ok and ok.current == Item("data", "x", 6, 6)
    stale = store.apply(7, Put("data", "y", fence=Fence("_lock/a/", 4)))
    assert stale == ApplyResult(ok=False, revision=7, current=ok.current, error=FAILED_FENCE)
    store.apply(8, Delete("_lock/a/1"))  # released: the next waiter holds
    assert store.apply(9, Put("data", "z", fence=Fence("_lock/a/", 4))).ok
    assert not store.apply(10, Delete("data", fence=Fence("_lock/a/", 3))).ok


def test_a_fenced_delete() -> None:
    store = lock_store()
    store.apply(6, Put("data", "x"))
    assert store.apply(7, Delete("data", fence=Fence("_lock/a/", 4))) == ApplyResult(
        ok=False, revision=7, current=Item("data", "x", 6, 6), error=FAILED_FENCE
    )
    assert store.apply(8, Delete("data", fence=Fence("_lock/a/", 3))).events == (
        Event("delete", "data", None, 8, "x", 6),
    )


def test_a_failed_condition_says_so() -> None:
    store = KVStore()
    store.apply(1, Put("k", "v"))
    assert store.apply(2, Delete("k", Condition(prev_revision=9))) == ApplyResult(
        ok=False, revision=2, current=Item("k", "v", 1, 1), error=FAILED_CONDITION
    )


# --- transactions ---


def test_a_transaction_put_attaches_a_lease_and_compares_see_leases() -> None:
    store = store_with_lease()
    result = store.apply(2, Txn(
        (Compare("k", "lease", "equal", 0), Compare("k", "create_revision", "equal", 0)),
        (Put("k", "v", lease=1), Get("k")),
    ))
    assert result.txn == TxnResult(True, 2, (
        OpResult("put", Item("k", "v", 2, 2, 1)), OpResult("get", Item("k", "v", 2, 2, 1)),
    ))
    assert store.lease(1).keys == ("k",)  # type: ignore[union-attr]
    later = store.apply(3, Txn(
        (Compare("k", "lease", "equal", 1), Compare("k", "create_revision", "less", 3)),
        (Put("k", "w"),),
    ))
    assert later.ok and store.get("k") == Item("k", "w", 3, 2, 0)
    assert store.lease(1).keys == ()  # type: ignore[union-attr]


@pytest.mark.parametrize("target, value, holds", [
    ("create_revision", 0, True), ("create_revision", 1, False),
    ("lease", 0, True), ("lease", 1, False),
])
def test_an_absent_key_has_create_revision_and_lease_0(target: str, value: int,
                                                       holds: bool) -> None:
    store = KVStore()
    assert store.evaluate_txn(Txn((Compare("nope", target, "equal", value),))).succeeded is holds


def test_a_transaction_whose_branch_names_an_absent_lease_applies_nothing() -> None:
    store = store_with_lease()
    txn = Txn((), (Put("a", "1"), Put("b", "2", lease=1), Put("c", "3", lease=8)))
    assert store.apply(2, txn) == ApplyResult(ok=False, revision=2, error=FAILED_LEASE_NOT_FOUND)
    assert len(store) == 0 and store.lease(1).keys == ()  # type: ignore[union-attr]
    assert store.applied_index == 2


def test_an_absent_lease_in_the_branch_not_taken_does_not_matter() -> None:
    store = store_with_lease()
    txn = Txn((Compare("a", "exists", "equal", False),), (Put("a", "1", lease=1),),
              (Put("a", "2", lease=8),))
    assert store.apply(2, txn).ok and store.get("a") == Item("a", "1", 2, 2, 1)
    # now the failure branch is taken, and its lease is absent
    assert store.apply(3, txn) == ApplyResult(ok=False, revision=3, error=FAILED_LEASE_NOT_FOUND)


def test_revoking_a_lease_deletes_keys_a_transaction_attached() -> None:
    store = store_with_lease()
    store.apply(2, Txn(success=(Put("x", "1", lease=1), Put("y", "2", lease=1))))
    result = store.apply(3, LeaseRevoke(1))
    assert [e.key for e in result.events] == ["x", "y"] and len(store) == 0


# --- what apply refuses ---


@pytest.mark.parametrize("command", [
    Put("k", "v", lease=-1),
    Put("k", "v", lease=True),
    Put("k", "v", lease="1"),  # type: ignore[arg-type]
    Put("k", "v", grant_ttl_ms=-1),
    Put("k", "v", lease=1, grant_ttl_ms=100),
    Put("k", "v", fence=Fence("p", 0)),
    Put("k", "v", fence=Fence(None, 1)),  # type: ignore[arg-type]
    Put("k", "v", fence=("p", 1)),  # type: ignore[arg-type]
    Delete("k", fence=Fence("p", False)),
    LeaseGrant(0),
    LeaseGrant(1.0),  # type: ignore[arg-type]
    LeaseRenew((1, 0)),
    LeaseRenew([1]),  # type: ignore[arg-type]
    LeaseCheckpoint(((1, -1),)),
    LeaseCheckpoint(((0, 1),)),
    LeaseCheckpoint(([1, 1],)),  # type: ignore[arg-type]
    LeaseRevoke(0),
    LeaseRevoke(1, -1),
    Txn(success=(Put("k", "v", fence=Fence("p", 1)),)),
    Txn(success=(Put("k", "v", grant_ttl_ms=100),)),
    Txn(success=(Put("k", "v", lease=-2),)),
    Txn(failure=(Delete("k", fence=Fence("p", 1)),)),
    Txn(success=(LeaseRevoke(1),)),
    Txn((Compare("k", "lease", "equal", "1"),)),
    Txn((Compare("k", "create_revision", "equal", None),)),
], ids=lambda c: repr(c)[:70])
def test_malformed_commands_are_refused_before_anything_changes(command: object) -> None:
    store = store_with_lease()
    store.apply(2, Put("k", "v", lease=1))
    with pytest.raises(TypeError):
        check_command(command)
    with pytest.raises(TypeError):
        store.apply(3, command)  # type: ignore[arg-type]
    assert store.applied_index == 2 and store.lease(1) == Lease(1, 5000, 5000, 1, ("k",))


@pytest.mark.parametrize("command", [
    Put("k", "v", lease=0, grant_ttl_ms=1),
    Put("k", "v", fence=Fence("", 1)),
    LeaseRenew(()),
    LeaseCheckpoint(()),
    LeaseCheckpoint(((1, 0),)),
    LeaseRevoke(1, 0),
    Txn(success=(Put("k", "v", lease=1),)),
    Txn((Compare("k", "create_revision", "greater", 0), Compare("k", "lease", "less", 9)),),
], ids=lambda c: repr(c)[:70])
def test_well_formed_edge_commands_pass(command: object) -> None:
    check_command(command)
