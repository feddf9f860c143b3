"""A coordination-store sized workload: 100k keys, then small ranges and pagination.

Asserts behaviour only; it stays fast because range reads are O(log n + limit)."""

from __future__ import annotations

import io
import random

from leifdb.kv import Delete, KVStore, Put

N = 100_000


def test_100k_puts_in_random_order_then_ranges() -> None:
    numbers = list(range(N))
    random.Random(7).shuffle(numbers)
    store = KVStore()
    for index, n in enumerate(numbers, start=1):
        store.apply(index, Put(f"svc/{n % 10}/{n:06d}", str(n)))
    assert len(store) == N

    items, more = store.range("svc/3/", limit=100)
    assert [item.key for item in items] == [f"svc/3/{n:06d}" for n in range(3, 1000, 10)]
    assert more
    assert all(store.get(item.key) == item for item in items)

    items, more = store.range("svc/3/", start_after="svc/3/099973", limit=100)
    assert [item.key for item in items] == ["svc/3/099983", "svc/3/099993"]
    assert not more

    items, more = store.range("svc/9/", start_after="svc/9/050009", limit=100)
    assert [item.key for item in items] == [f"svc/9/{n:06d}" for n in range(50019, 51019, 10)]
    assert more

    for index, n in enumerate(range(0, N, 2), start=N + 1):
        store.apply(index, Delete(f"svc/{n % 10}/{n:06d}"))
    assert len(store) == N // 2
    items, more = store.range("svc/5/", limit=100)
    assert [item.key for item in items] == [f"svc/5/{n:06d}" for n in range(5, 1000, 10)]
    assert more

    out = io.BytesIO()
    store.write_snapshot(out)
    restored, _ = KVStore.read_snapshot(io.BytesIO(out.getvalue()))
    assert len(restored) == N // 2
    assert restored.range("svc/5/", limit=100) == (items, True)
