"""Snapshot round trips, determinism, and detection of truncated or corrupt streams."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leifdb.kv import Delete, Item, KVStore, Put, SnapshotFormatError
from leifdb.kv.snapshot import MAGIC, VERSION

SETTINGS = settings(derandomize=True, max_examples=100, deadline=None)

OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete", "noop"]),
        st.text(max_size=6),
        st.text(max_size=12),
        st.integers(min_value=1, max_value=3),
    ),
    max_size=40,
)


def build(ops: list[tuple[str, str, str, int]]) -> KVStore:
    store = KVStore()
    index = 0
    for kind, key, value, gap in ops:
        index += gap
        if kind == "put":
            store.apply(index, Put(key, value))
        elif kind == "delete":
            store.apply(index, Delete(key))
        else:
            store.note_applied(index)
    return store


def dump(store: KVStore, metadata: bytes = b"") -> bytes:
    out = io.BytesIO()
    store.write_snapshot(out, metadata)
    return out.getvalue()


def load(data: bytes) -> tuple[KVStore, bytes]:
    return KVStore.read_snapshot(io.BytesIO(data))


def sample_snapshot() -> bytes:
    store = KVStore()
    store.apply(1, Put("a", "1"))
    store.apply(2, Put("b/é", "two"))
    store.apply(3, Put("c", ""))
    store.apply(4, Delete("c"))
    store.note_applied(5)
    return dump(store, b"members")


# --- round trips and determinism ---


def test_golden_bytes_pin_format_version_1() -> None:
    """Changing the format must be deliberate: bump VERSION and update this test."""
    assert VERSION == 1
    expected = (
        b"LEIFKVS\x00" + struct.pack(">IQQI", 1, 5, 2, 7) + b"members"
        + struct.pack(">IIQ", 1, 1, 1) + b"a1"
        + struct.pack(">IIQ", 4, 3, 2) + "b/é".encode() + b"two"
    )
    expected += struct.pack(">I", zlib.crc32(expected))
    assert sample_snapshot() == expected


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
    assert dump(restored, metadata) == data
    # the restored store keeps working, with revisions continuing from the log
    next_index = restored.applied_index + 1
    assert restored.apply(next_index, Put("new", "v")).current == Item("new", "v", next_index)


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
        load(data[:8] + struct.pack(">I", 2) + data[12:])
    with pytest.raises(SnapshotFormatError, match="magic"):
        load(b"NOTASNAP" + data[8:])
    with pytest.raises(SnapshotFormatError):
        load(b"")


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def record(key: str, value: str, revision: int) -> bytes:
    k, v = key.encode(), value.encode()
    return struct.pack(">IIQ", len(k), len(v), revision) + k + v


def header(applied_index: int, count: int) -> bytes:
    return MAGIC + struct.pack(">IQQI", VERSION, applied_index, count, 0)


@pytest.mark.parametrize(
    "body, problem",
    [
        (header(5, 2) + record("b", "", 1) + record("a", "", 2), "order"),
        (header(5, 2) + record("a", "", 1) + record("a", "", 2), "order"),
        (header(5, 1) + record("a", "", 6), "revision"),
        (header(5, 1) + record("a", "", 0), "revision"),
        (header(5, 1) + struct.pack(">IIQ", 1, 0, 1) + b"\xff", "UTF-8"),
    ],
)
def test_well_checksummed_but_invalid_content_is_rejected(body: bytes, problem: str) -> None:
    with pytest.raises(SnapshotFormatError, match=problem):
        load(with_crc(body))


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
