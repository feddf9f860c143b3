"""SnapshotStore: atomic saves, verification, chunked send and resumable receive, retention."""

from __future__ import annotations

import io
import random

import pytest

from leifdb.raft.messages import SnapshotMeta
from leifdb.storage import ChunkOffsetError, SnapshotNotFound, SnapshotStore, crc32c
from leifdb.storage.simfs import SimFileSystem
from leifdb.storage.snapshots import HEADER_SIZE, partial_name, snapshot_name

from tests.storage.helpers import ListLogger


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def store(tmp_path):
    s = SnapshotStore(tmp_path / "snap")
    yield s
    s.close()


def transfer(source: SnapshotStore, meta: SnapshotMeta, target: SnapshotStore, chunk: int) -> bool:
    offset = target.begin_receive(meta)
    while offset < meta.size:
        offset = target.write_chunk(meta, offset, source.read_chunk(meta, offset, chunk))
    return target.finish_receive(meta)


def test_save_then_latest_and_open_round_trip(store):
    data = blob(300_000)

    meta = store.save(42, 3, io.BytesIO(data))

    assert meta == SnapshotMeta(42, 3, crc32c(data), len(data))
    found, path = store.latest()
    assert found == meta and path.exists()
    with store.open(meta) as f:
        assert f.read() == data
        f.seek(10)
        assert f.read(5) == data[10:15]
        assert f.tell() == 15


def test_save_accepts_bytes_and_chunk_iterables(store):
    assert store.save(1, 1, b"abc").size == 3
    assert store.save(2, 1, [b"ab", b"", b"cd"]) == SnapshotMeta(2, 1, crc32c(b"abcd"), 4)
    assert store.save(3, 1, b"") == SnapshotMeta(3, 1, 0, 0)
    assert store.latest()[0].last_included_index == 3


def test_empty_store_has_no_latest(store):
    assert store.latest() is None


def test_a_failed_save_leaves_no_file(store):
    def chunks():
        yield b"partial"
        raise RuntimeError("state machine failed while dumping")

    with pytest.raises(RuntimeError):
        store.save(5, 1, chunks())

    assert list(store.directory.iterdir()) == []
    assert store.latest() is None


def test_read_chunk_covers_the_payload_in_bounded_pieces(store):
    data = blob(10_000)
    meta = store.save(7, 2, data)

    pieces = [store.read_chunk(meta, off, 4096) for off in range(0, meta.size, 4096)]

    assert [len(p) for p in pieces] == [4096, 4096, 1808]
    assert b"".join(pieces) == data
    assert store.read_chunk(meta, meta.size, 4096) == b""
    with pytest.raises(ValueError):
        store.read_chunk(meta, meta.size + 1, 10)


def test_unknown_or_mismatched_meta_is_not_found(store):
    meta = store.save(7, 2, b"payload")
    with pytest.raises(SnapshotNotFound):
        store.read_chunk(SnapshotMeta(8, 2, meta.checksum, meta.size), 0, 10)
    with pytest.raises(SnapshotNotFound):
        store.open(SnapshotMeta(7, 2, meta.checksum ^ 1, meta.size))


def test_latest_skips_a_corrupt_newest_snapshot_with_a_log_line(tmp_path):
    logger = ListLogger()
    store = SnapshotStore(tmp_path, logger=logger)
    good = store.save(10, 1, blob(5000, 1))
    bad = store.save(20, 1, blob(5000, 2))
    path = tmp_path / f"{20:020d}-{1:020d}.snap"
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + 1234] ^= 0x10
    path.write_bytes(bytes(raw))
    fresh = SnapshotStore(tmp_path, logger=logger)  # a restart: nothing verified yet

    assert fresh.latest()[0] == good
    assert len(logger.lines) == 1 and "corrupt" in logger.lines[0]
    assert (tmp_path / (path.name + ".corrupt")).exists()
    assert fresh.latest()[0] == good
    assert bad != good


def test_a_snapshot_with_a_damaged_header_is_skipped(tmp_path):
    store = SnapshotStore(tmp_path, logger=ListLogger())
    good = store.save(10, 1, b"one")
    store.save(20, 1, b"two")
    path = tmp_path / f"{20:020d}-{1:020d}.snap"
    raw = bytearray(path.read_bytes())
    raw[9] ^= 0x01
    path.write_bytes(bytes(raw))

    assert SnapshotStore(tmp_path, logger=ListLogger()).latest()[0] == good


def test_retention_keeps_the_newest_n(tmp_path):
    store = SnapshotStore(tmp_path, retain=2)
    metas = [store.save(i * 10, 1, blob(100, i)) for i in range(1, 6)]

    kept = [meta for meta, _ in store.list()]

    assert kept == [metas[4], metas[3]]
    assert len(list(tmp_path.glob("*.snap"))) == 2


def test_round_trip_transfer_between_stores(tmp_path):
    leader = SnapshotStore(tmp_path / "leader")
    follower = SnapshotStore(tmp_path / "follower")
    data = blob(1_000_003)
    meta = leader.save(500, 4, data)

    assert transfer(leader, meta, follower, chunk=64 * 1024)

    got, _ = follower.latest()
    assert got == meta
    with follower.open(meta) as f:
        assert f.read() == data
    assert not list((tmp_path / "follower").glob("*.part"))


def test_a_checksum_mismatch_on_receive_is_refused_and_discarded(tmp_path):
    follower = SnapshotStore(tmp_path, logger=ListLogger())
    data = blob(50_000)
    meta = SnapshotMeta(9, 2, crc32c(data), len(data))
    follower.write_chunk(meta, 0, data[:20_000])
    damaged = bytearray(data[20_000:])
    damaged[5] ^= 1
    follower.write_chunk(meta, 20_000, bytes(damaged))

    assert follower.finish_receive(meta) is False

    assert follower.latest() is None
    assert list(tmp_path.iterdir()) == []
    assert follower.received_offset(meta) == 0


def test_a_short_transfer_is_refused(tmp_path):
    follower = SnapshotStore(tmp_path, logger=ListLogger())
    data = blob(1000)
    meta = SnapshotMeta(9, 2, crc32c(data), len(data))
    follower.write_chunk(meta, 0, data[:999])
    assert follower.finish_receive(meta) is False
    assert follower.latest() is None


def test_a_chunk_at_the_wrong_offset_names_the_expected_one(tmp_path):
    follower = SnapshotStore(tmp_path)
    data = blob(1000)
    meta = SnapshotMeta(9, 2, crc32c(data), len(data))
    follower.write_chunk(meta, 0, data[:100])

    with pytest.raises(ChunkOffsetError) as info:
        follower.write_chunk(meta, 300, data[300:400])
    assert info.value.expected == 100
    with pytest.raises(ValueError):
        follower.write_chunk(meta, 100, data[100:] + b"extra")


def test_a_receive_resumes_after_a_restart(tmp_path):
    leader = SnapshotStore(tmp_path / "leader")
    data = blob(200_000)
    meta = leader.save(77, 5, data)
    first = SnapshotStore(tmp_path / "follower")
    for offset in range(0, 120_000, 40_000):
        first.write_chunk(meta, offset, leader.read_chunk(meta, offset, 40_000))
    first.close()  # connection dropped, node restarted

    second = SnapshotStore(tmp_path / "follower")
    assert second.received_offset(meta) == 120_000
    assert second.begin_receive(meta) == 120_000
    assert transfer(leader, meta, second, chunk=40_000)
    with second.open(meta) as f:
        assert f.read() == data


def test_offset_zero_restarts_a_transfer(tmp_path):
    follower = SnapshotStore(tmp_path)
    data = blob(1000)
    meta = SnapshotMeta(9, 2, crc32c(data), len(data))
    follower.write_chunk(meta, 0, b"\xff" * 500)  # junk from an earlier attempt

    follower.write_chunk(meta, 0, data[:600])
    follower.write_chunk(meta, 600, data[600:])

    assert follower.finish_receive(meta)
    assert follower.latest()[0] == meta


def test_a_new_transfer_discards_the_partial_of_another_snapshot(tmp_path):
    follower = SnapshotStore(tmp_path)
    old = SnapshotMeta(9, 2, 1, 1000)
    new = SnapshotMeta(12, 3, crc32c(b"x" * 10), 10)
    follower.write_chunk(old, 0, b"a" * 100)

    assert follower.begin_receive(new) == 0
    assert follower.received_offset(old) == 0
    follower.write_chunk(new, 0, b"x" * 10)
    assert follower.finish_receive(new)
    assert [p.suffix for p in tmp_path.iterdir()] == [".snap"]


def test_received_snapshots_count_for_retention(tmp_path):
    follower = SnapshotStore(tmp_path, retain=2)
    follower.save(1, 1, b"a")
    follower.save(2, 1, b"b")
    meta = SnapshotMeta(3, 1, crc32c(b"c"), 1)
    follower.write_chunk(meta, 0, b"c")
    assert follower.finish_receive(meta)
    assert [m.last_included_index for m, _ in follower.list()] == [3, 2]


def test_finish_without_any_chunk_is_false(tmp_path):
    assert SnapshotStore(tmp_path).finish_receive(SnapshotMeta(1, 1, 0, 0)) is False


def test_stale_temporary_files_are_cleaned_on_start(tmp_path):
    (tmp_path / f"{5:020d}-{1:020d}.snap.tmp").write_bytes(b"half")
    SnapshotStore(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_snapshot_file_is_fsynced_before_it_is_renamed(tmp_path, monkeypatch):
    events = []
    store = SnapshotStore(tmp_path)
    fs = store.fs
    real_fsync, real_replace = fs.fsync, fs.replace
    monkeypatch.setattr(fs, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(fs, "replace", lambda a, b: events.append("rename") or real_replace(a, b))

    store.save(1, 1, b"data")

    assert events[:3] == ["fsync", "rename", "fsync"]  # file, rename, directory


def test_save_and_receive_order_writes_syncs_and_renames():
    fs = SimFileSystem(trace=True)
    store = SnapshotStore("/snap", fs=fs)
    fs.trace.clear()
    data = blob(300)
    meta = store.save(1, 1, data)
    tmp, final = f"/snap/{snapshot_name(meta)}.tmp", f"/snap/{snapshot_name(meta)}"
    assert fs.trace == [
        ("open", tmp),
        ("write", tmp),
        ("write", tmp),
        ("pwrite", tmp),
        ("fsync", tmp),
        ("replace", f"{tmp} -> {final}"),
        ("fsync_dir", "/snap"),
    ]

    other = SnapshotStore("/other", fs=fs)
    other.begin_receive(meta)
    other.write_chunk(meta, 0, data)
    fs.trace.clear()
    assert other.finish_receive(meta)
    part = f"/other/{partial_name(meta)}"
    assert fs.trace == [
        ("fsync", part),
        ("replace", f"{part} -> /other/{snapshot_name(meta)}"),
        ("fsync_dir", "/other"),
    ]
    assert fs.open_descriptors == 0  # nothing is left open once the transfer is done
    fs.power_cut()
    assert SnapshotStore("/other", fs=fs).latest()[0] == meta


def test_pruning_is_durable():
    fs = SimFileSystem()
    store = SnapshotStore("/snap", fs=fs, retain=1)
    store.save(1, 1, b"one")
    second = store.save(2, 1, b"two")
    fs.power_cut()
    assert [m for m, _ in SnapshotStore("/snap", fs=fs).list()] == [second]
