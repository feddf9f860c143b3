"""Snapshot round trips, determinism, and detection of truncated or corrupt streams."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leifdb.kv import (
    Delete,
    Item,
    KVStore,
    Lease,
    LeaseCheckpoint,
    LeaseGrant,
    LeaseRenew,
    LeaseRevoke,
    Put,
    SnapshotFormatError,
)
from leifdb.kv.snapshot import MAGIC, VERSION

SETTINGS = settings(derandomize=True, max_examples=100, deadline=None)

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["put", "delete", "noop", "grant", "lease_put", "renew", "checkpoint", "revoke"]
        ),
        st.text(max_size=6),
        st.text(max_size=12),
        st.integers(min_value=1, max_value=3),
    ),
    max_size=40,
)


def build(ops: list[tuple[str, str, str, int]]) -> KVStore:
    """Lease commands pick their lease among the present ones by the value's length."""
    store = KVStore()
    index = 0
    for kind, key, value, gap in ops:
        index += gap
        present = [lease.id for lease in store.leases()]
        lease = present[len(value) % len(present)] if present else 0
        if kind == "put":
            store.apply(index, Put(key, value))
        elif kind == "delete":
            store.apply(index, Delete(key))
        elif kind == "grant":
            store.apply(index, LeaseGrant(1000 + len(value)))
        elif kind == "lease_put":
            store.apply(index, Put(key, value, lease=lease))
        elif kind == "renew" and lease:
            store.apply(index, LeaseRenew((lease,)))
        elif kind == "checkpoint" and lease:
            store.apply(index, LeaseCheckpoint(((lease, len(key)),)))
        elif kind == "revoke" and lease:
            store.apply(index, LeaseRevoke(lease))
        else:
            store.note_applied(index)
    return store


def dump(store: KVStore, metadata: bytes = b"") -> bytes:
    out = io.BytesIO()
    store.write_snapshot(out, metadata)
    return out.getvalue()


def load(data: bytes) -> tuple[KVStore, bytes]:
    return KVStore.read_snapshot(io.BytesIO(data))


def sample_store() -> KVStore:
    store = KVStore()
    store.apply(1, Put("a", "1"))
    store.apply(2, Put("b/é", "two"))
    store.apply(3, Put("c", ""))
    store.apply(4, Delete("c"))
    store.apply(5, LeaseGrant(5000))
    store.apply(6, Put("a", "one", lease=5))
    store.apply(7, LeaseGrant(3000))
    store.apply(8, LeaseCheckpoint(((5, 1234),)))
    store.note_applied(9)
    return store


def sample_snapshot() -> bytes:
    return dump(sample_store(), b"members")


# Version 1 of the same data as ``sample_store`` before its leases (index 5 a no-op).
GOLDEN_V1 = (
    b"LEIFKVS\x00" + struct.pack(">IQQI", 1, 5, 2, 7) + b"members"
    + struct.pack(">IIQ", 1, 1, 1) + b"a1"
    + struct.pack(">IIQ", 4, 3, 2) + "b/é".encode() + b"two"
)
GOLDEN_V1 += struct.pack(">I", zlib.crc32(GOLDEN_V1))


# --- round trips and determinism ---


def test_golden_bytes_pin_format_version_2() -> None:
    """Changing the format must be deliberate: bump VERSION and update this test."""
    assert VERSION == 2
    expected = (
        b"LEIFKVS\x00" + struct.pack(">IQQI", 2, 9, 2, 7) + b"members"
        + struct.pack(">IIQQQ", 1, 3, 6, 1, 5) + b"aone"
        + struct.pack(">IIQQQ", 4, 3, 2, 2, 0) + "b/é".encode() + b"two"
        + struct.pack(">Q", 2)
        + struct.pack(">QQQQ", 5, 5000, 1234, 5)
        + struct.pack(">QQQQ", 7, 3000, 3000, 7)
    )
    expected += struct.pack(">I", zlib.crc32(expected))
    assert sample_snapshot() == expected


def test_version_1_snapshots_still_load() -> None:
    """Items of a version 1 snapshot were created at their revision, without a lease."""
    store, metadata = load(GOLDEN_V1)
    assert metadata == b"members"
    assert store.applied_index == 5
    assert store.range() == ([Item("a", "1", 1, 1, 0), Item("b/é", "two", 2, 2, 0)], False)
    assert store.leases() == [] and store.lease_count() == 0
    # and it is written back as version 2
    assert dump(store, b"members")[8:12] == struct.pack(">I", 2)


def test_corrupt_version_1_snapshot_is_rejected() -> None:
    corrupt = bytearray(GOLDEN_V1)
    corrupt[-10] ^= 1
    with pytest.raises(SnapshotFormatError):
        load(bytes(corrupt))


def test_leases_round_trip_with_their_keys() -> None:
    restored, _ = load(sample_snapshot())
    assert restored.leases() == [Lease(5, 5000, 1234, 5), Lease(7, 3000, 3000, 7)]
    assert restored.lease(5) == Lease(5, 5000, 1234, 5, ("a",))
    assert restored.lease(7) == Lease(7, 3000, 3000, 7, ())
    assert restored.get("a") == Item("a", "one", 6, 1, 5)
    # the rebuilt lease -> keys sets work: revoking deletes the key
    result = restored.apply(10, LeaseRevoke(5))
    assert result.ok and [e.key for e in result.events] == ["a"]
    assert restored.get("a") is None and restored.lease(5) is None


def test_empty_store_round_trip() -> None:
    store, metadata = load(dump(KVStore()))
    assert (store.applied_index, len(store), store.range(), metadata) == (0, 0, ([], False), b"")


@SETTINGS
@given(OPS, st.binary(max_size=64))
def test_round_trip_preserves_everything(ops, metadata: bytes) -> None:
    original = build(ops)
    data = dump(original, metadata)
    restored, got = load(data)
    assert got == metadata
    assert restored.applied_index == original.applied_index
    assert len(restored) == len(original)
    assert restored.range() == original.range()
    for item in original.range()[0]:
        assert restored.get(item.key) == item
    assert restored.leases() == original.leases()
    for lease in original.leases():
        assert restored.lease(lease.id) == original.lease(lease.id)
    assert dump(restored, metadata) == data
    # the restored store keeps working, with revisions continuing from the log
    next_index = restored.applied_index + 1
    assert restored.apply(next_index, Put("new", "v")).current == Item(
        "new", "v", next_index, next_index
    )


def test_round_trip_of_keys_python_cannot_encode_strictly() -> None:
    store = KVStore()
    store.apply(1, Put("\ud800lone", "\udfff"))
    store.apply(2, Put("\x00", "\U0010ffff"))
    restored, _ = load(dump(store))
    assert restored.range() == store.range()


@SETTINGS
@given(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=30), st.data())
def test_same_state_through_different_histories_gives_same_bytes(
    target: dict[str, str], data: st.DataObject
) -> None:
    """Each target key is written at index 3i; the indexes between are no-ops in one
    history and writes to scratch keys (later deleted) in the other."""
    keys = data.draw(st.permutations(sorted(target)))
    quiet, busy = KVStore(), KVStore()
    for i, key in enumerate(keys, start=1):
        for store in (quiet, busy):
            store.apply(3 * i, Put(key, target[key]))
        quiet.note_applied(3 * i + 1)
        quiet.note_applied(3 * i + 2)
        scratch = "\uffff-scratch"
        busy.apply(3 * i + 1, Put(scratch, "tmp"))
        busy.apply(3 * i + 2, Delete(scratch))
    assert dump(quiet, b"m") == dump(busy, b"m")


# --- corruption ---


def test_every_truncation_is_detected() -> None:
    data = sample_snapshot()
    for cut in range(len(data)):
        with pytest.raises(SnapshotFormatError):
            load(data[:cut])


def test_every_single_bit_flip_is_detected() -> None:
    data = sample_snapshot()
    for position in range(len(data) * 8):
        corrupt = bytearray(data)
        corrupt[position // 8] ^= 1 << (position % 8)
        with pytest.raises(SnapshotFormatError):
            load(bytes(corrupt))


@SETTINGS
@given(OPS, st.binary(max_size=16), st.data())
def test_random_corruption_of_larger_snapshots_is_detected(ops, metadata, data) -> None:
    snapshot = bytearray(dump(build(ops), metadata))
    position = data.draw(st.integers(0, len(snapshot) - 1))
    flip = data.draw(st.integers(1, 255))
    snapshot[position] ^= flip
    with pytest.raises(SnapshotFormatError):
        load(bytes(snapshot))


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(SnapshotFormatError, match="trailing"):
        load(sample_snapshot() + b"\x00")


def test_unknown_version_and_magic_are_rejected() -> None:
    data = sample_snapshot()
    with pytest.raises(SnapshotFormatError, match="version"):
        load(data[:8] + struct.pack(">I", 3) + data[12:])
    with pytest.raises(SnapshotFormatError, match="version"):
        load(data[:8] + struct.pack(">I", 0) + data[12:])
    with pytest.raises(SnapshotFormatError, match="magic"):
        load(b"NOTASNAP" + data[8:])
    with pytest.raises(SnapshotFormatError):
        load(b"")


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def record(key: str, value: str, revision: int, create: int = 0, lease: int = 0) -> bytes:
    k, v = key.encode(), value.encode()
    return struct.pack(">IIQQQ", len(k), len(v), revision, create or revision, lease) + k + v


def header(applied_index: int, count: int) -> bytes:
    return MAGIC + struct.pack(">IQQI", VERSION, applied_index, count, 0)


def leases(*table: tuple[int, int, int, int]) -> bytes:
    return struct.pack(">Q", len(table)) + b"".join(struct.pack(">QQQQ", *t) for t in table)


NO_LEASES = leases()


@pytest.mark.parametrize(
    "body, problem",
    [
        (header(5, 2) + record("b", "", 1) + record("a", "", 2) + NO_LEASES, "order"),
        (header(5, 2) + record("a", "", 1) + record("a", "", 2) + NO_LEASES, "order"),
        (header(5, 1) + record("a", "", 6) + NO_LEASES, "revision"),
        (header(5, 1) + record("a", "", 0) + NO_LEASES, "revision"),
        (header(5, 1) + record("a", "", 3, create=4) + NO_LEASES, "create revision"),
        (header(5, 1) + record("a", "", 3, lease=6) + NO_LEASES, "lease 6"),
        (header(5, 1) + record("a", "", 3, lease=2) + NO_LEASES, "lease 2"),
        (header(5, 1) + record("a", "", 3, lease=2) + leases((1, 9, 9, 1)), "lease 2"),
        (header(5, 0) + leases((2, 9, 9, 2), (1, 9, 9, 1)), "increasing"),
        (header(5, 0) + leases((2, 9, 9, 2), (2, 9, 9, 2)), "increasing"),
        (header(5, 0) + leases((0, 9, 9, 1)), "increasing"),
        (header(5, 0) + leases((2, 9, 9, 1)), "renewed index"),
        (header(5, 0) + leases((2, 9, 9, 6)), "renewed index"),
        (header(5, 0) + leases((2, 0, 0, 2)), "TTL"),
        (header(5, 1) + struct.pack(">IIQQQ", 1, 0, 1, 1, 0) + b"\xff" + NO_LEASES, "UTF-8"),
    ],
)
def test_well_checksummed_but_invalid_content_is_rejected(body: bytes, problem: str) -> None:
    with pytest.raises(SnapshotFormatError, match=problem):
        load(with_crc(body))


def test_a_valid_hand_built_snapshot_loads() -> None:
    """The counterpart of the invalid cases above: the same helpers build a good one."""
    body = header(5, 2) + record("a", "", 3, create=2, lease=1) + record("b", "", 4)
    store, _ = load(with_crc(body + leases((1, 9, 7, 4), (5, 8, 8, 5))))
    assert store.get("a") == Item("a", "", 3, 2, 1)
    assert store.lease(1) == Lease(1, 9, 7, 4, ("a",))
    assert store.lease(5) == Lease(5, 8, 8, 5, ())


def test_huge_bogus_lease_count_fails_without_a_huge_read() -> None:
    inp = Recording(with_crc(header(1, 0) + struct.pack(">Q", 2**63)) + b"x" * 100)
    with pytest.raises(SnapshotFormatError):
        KVStore.read_snapshot(inp)
    assert 0 < inp.largest <= 1024 * 1024


class Recording(io.BytesIO):
    """Remembers the largest read or write request."""

    largest = 0

    def read(self, n: int | None = -1) -> bytes:
        self.largest = max(self.largest, n if n is not None and n >= 0 else 1 << 62)
        return super().read(n)

    def write(self, b) -> int:  # type: ignore[override]
        self.largest = max(self.largest, len(b))
        return super().write(b)


def test_huge_bogus_length_fails_without_a_huge_read() -> None:
    inp = Recording(MAGIC + struct.pack(">IQQI", VERSION, 1, 1, 0xFFFFFFFF) + b"x" * 100)
    with pytest.raises(SnapshotFormatError, match="truncated"):
        KVStore.read_snapshot(inp)
    assert 0 < inp.largest <= 1024 * 1024


def test_writing_streams_in_bounded_pieces() -> None:
    store = KVStore()
    for i in range(3000):
        store.apply(i + 1, Put(f"key/{i:05d}", "v" * 100))
    out = Recording()
    store.write_snapshot(out)
    assert out.largest <= 64 * 1024 + 200
    assert len(out.getvalue()) > 5 * 64 * 1024
    restored, _ = load(out.getvalue())
    assert restored.range() == store.range()


def test_stream_errors_pass_through() -> None:
    class Broken(io.RawIOBase):
        def read(self, n: int = -1) -> bytes:
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        KVStore.read_snapshot(Broken())  # type: ignore[arg-type]
