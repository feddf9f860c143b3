"""DiskStorage: append, sync, truncate, reload, segment roll, compaction and recovery."""

from __future__ import annotations

import shutil

import pytest

from leifdb.raft.messages import Entry, HardState, SnapshotMeta
from leifdb.storage import DiskStorage, StorageClosed, StorageCorruption, StorageFailed
from leifdb.storage.disklog import BOUNDARY_NAME

from tests.storage.helpers import ListLogger, entries, entry, load_entries, load_state, reopen

SMALL = 4096


@pytest.fixture
def store(tmp_path):
    storage = DiskStorage.open(tmp_path, segment_size=SMALL)
    storage.load()
    yield storage
    storage.close()


def seg_names(storage: DiskStorage) -> list[str]:
    return [p.name for p in storage.segment_paths()]


def files_in_log(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "log").iterdir() if p.suffix == ".seg")


# ---------------------------------------------------------------- basics


def test_fresh_directory_loads_empty_state(tmp_path):
    storage = DiskStorage.open(tmp_path)
    state = storage.load()
    storage.close()

    assert state.hard_state == HardState()
    assert state.snapshot == SnapshotMeta()
    assert state.entries == []


def test_synced_entries_and_hard_state_survive_reopen(tmp_path, store):
    store.append(entries(1, 50))
    store.set_hard_state(HardState(3, "n2", commit_index=40))
    store.sync()
    store.close()

    state = load_state(tmp_path)

    assert state.entries == entries(1, 50)
    assert state.hard_state == HardState(3, "n2", 0)


def test_vote_none_and_empty_string_are_distinct(tmp_path, store):
    store.set_hard_state(HardState(1, ""))
    store.sync()
    store.close()
    assert load_state(tmp_path).hard_state.voted_for == ""


def test_unsynced_writes_are_lost_on_reopen(tmp_path, store):
    store.append(entries(1, 5))
    store.sync()
    store.append(entries(6, 9))
    store.set_hard_state(HardState(7, "x"))
    store.close()

    state = load_state(tmp_path)

    assert state.entries == entries(1, 5)
    assert state.hard_state == HardState()


def test_load_again_forgets_staged_writes(store):
    store.append(entries(1, 3))
    store.sync()
    store.append(entries(4, 6))

    assert store.load().entries == entries(1, 3)


def test_writing_before_load_or_after_close_is_refused(tmp_path):
    storage = DiskStorage.open(tmp_path)
    with pytest.raises(StorageClosed):
        storage.append(entries(1, 1))
    storage.load()
    storage.close()
    with pytest.raises(StorageClosed):
        storage.sync()
    storage.close()  # idempotent


# ---------------------------------------------------------------- contract checks


def test_append_leaving_a_gap_is_rejected(store):
    store.append(entries(1, 3))
    with pytest.raises(ValueError, match="gap"):
        store.append(entries(5, 6))


def test_non_consecutive_entries_are_rejected(store):
    with pytest.raises(ValueError):
        store.append([entry(1), entry(3)])


def test_term_below_predecessor_is_rejected(store):
    store.append(entries(1, 3, term=2))
    store.sync()
    with pytest.raises(ValueError, match="term"):
        store.append(entries(4, 4, term=1))


# ---------------------------------------------------------------- truncation


def test_conflict_truncation_replaces_the_suffix_durably(tmp_path, store):
    store.append(entries(1, 10, term=1))
    store.sync()

    store.append(entries(6, 8, term=2))
    store.sync()
    store.close()

    assert load_entries(tmp_path) == entries(1, 5, 1) + entries(6, 8, 2)


def test_truncation_across_segments_removes_later_files(tmp_path, store):
    store.append(entries(1, 400))
    store.sync()
    assert len(store.segment_paths()) > 4

    store.append(entries(30, 31, term=2))
    store.sync()
    store.close()

    assert files_in_log(tmp_path) == ["000000000001.seg"]
    assert load_entries(tmp_path, SMALL) == entries(1, 29) + entries(30, 31, 2)


def test_truncation_at_a_segment_start_removes_that_segment(tmp_path, store):
    store.append(entries(1, 200))
    store.sync()
    second = store.segment_paths()[1]
    first_of_second = int(second.stem)

    store.append(entries(first_of_second, first_of_second, term=3))
    store.sync()

    assert store.segment_paths()[-1] == second
    store.close()
    assert load_entries(tmp_path, SMALL)[-2:] == [
        entry(first_of_second - 1),
        entry(first_of_second, 3),
    ]


def test_overlap_inside_the_staged_batch_needs_no_disk_truncation(tmp_path, store):
    store.append(entries(1, 10))
    store.append(entries(5, 7, term=2))
    store.sync()
    store.close()

    assert load_entries(tmp_path) == entries(1, 4) + entries(5, 7, 2)


def test_overlap_reaching_below_the_staged_batch_truncates_the_disk(tmp_path, store):
    store.append(entries(1, 10))
    store.sync()
    store.append(entries(8, 12, term=2))
    store.append(entries(5, 6, term=3))
    store.sync()
    store.close()

    assert load_entries(tmp_path) == entries(1, 4) + entries(5, 6, 3)


def test_truncation_alone_is_durable(tmp_path, store):
    """A batch whose last append overwrote and then shrank: what remains is exact."""
    store.append(entries(1, 10))
    store.sync()
    store.append(entries(3, 3, term=2))
    store.sync()
    store.close()

    assert load_entries(tmp_path) == entries(1, 2) + [entry(3, 2)]


# ---------------------------------------------------------------- segments


def test_segments_roll_at_the_configured_size_and_reload(tmp_path, store):
    store.append(entries(1, 300))
    store.sync()
    paths = store.segment_paths()
    store.close()

    assert len(paths) > 5
    assert all(p.stat().st_size <= SMALL for p in paths)
    firsts = [int(p.stem) for p in paths]
    assert firsts[0] == 1 and firsts == sorted(firsts)
    assert load_entries(tmp_path, SMALL) == entries(1, 300)


def test_an_entry_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path, store):
    store.append(entries(1, 2) + [entry(3, size=3 * SMALL)] + entries(4, 5))
    store.sync()
    store.close()

    assert files_in_log(tmp_path) == ["000000000001.seg", "000000000003.seg", "000000000004.seg"]
    assert len(load_entries(tmp_path, SMALL)) == 5


def test_default_segment_size_is_64_mib(tmp_path):
    storage = DiskStorage.open(tmp_path)
    assert storage.segment_size == 64 * 1024 * 1024
    storage.close()


def test_a_sync_costs_one_fdatasync_and_nothing_else(store, monkeypatch):
    store.append(entries(1, 3))
    store.set_hard_state(HardState(1, "a"))
    store.sync()
    calls = []
    fs = store.fs
    real_fdatasync, real_fsync = fs.fdatasync, fs.fsync
    monkeypatch.setattr(fs, "fdatasync", lambda fd: calls.append("fdatasync") or real_fdatasync(fd))
    monkeypatch.setattr(fs, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))

    store.append(entries(4, 20))
    store.append(entries(21, 40))
    store.sync()

    assert calls == ["fdatasync"]


def test_a_staged_hard_state_is_written_atomically(tmp_path, store):
    """The core decides when the hard state changed (term or vote); storage writes what
    it is given, by temp file and rename, leaving no temp file behind."""
    store.set_hard_state(HardState(2, None))
    store.sync()
    store.set_hard_state(HardState(2, "n1"))
    store.sync()
    assert store.stats.hard_state_writes == 2
    assert not list(tmp_path.glob("*.tmp"))
    store.close()


def test_a_sync_with_nothing_staged_writes_nothing(store, monkeypatch):
    calls = []
    monkeypatch.setattr(store.fs, "fdatasync", lambda fd: calls.append(fd))
    store.sync()
    assert calls == []


def test_an_io_error_makes_the_storage_refuse_further_work(store, monkeypatch):
    def broken(fd):
        raise OSError(5, "Input/output error")

    store.append(entries(1, 2))
    monkeypatch.setattr(store.fs, "fdatasync", broken)
    with pytest.raises(StorageFailed):
        store.sync()
    monkeypatch.undo()

    with pytest.raises(StorageFailed):
        store.append(entries(3, 3))
    with pytest.raises(StorageFailed):
        store.sync()


# ---------------------------------------------------------------- compaction


def test_compaction_deletes_covered_segments_only(tmp_path, store):
    store.append(entries(1, 300))
    store.sync()
    before = store.segment_paths()
    second_first = int(before[1].stem)
    meta = SnapshotMeta(second_first + 3, 1, 0xABC, 99)

    store.compact(meta)

    assert store.segment_paths() == before[1:]  # the straddling segment stays
    store.close()
    state = load_state(tmp_path, SMALL)
    assert state.snapshot == meta
    assert state.entries == entries(second_first + 4, 300)


def test_compaction_syncs_staged_entries_first(tmp_path, store):
    store.append(entries(1, 10))
    store.compact(SnapshotMeta(5, 1))
    store.close()
    assert load_entries(tmp_path) == entries(6, 10)


def test_compaction_past_the_log_empties_it_and_appends_continue(tmp_path, store):
    store.append(entries(1, 20))
    store.sync()

    store.compact(SnapshotMeta(100, 4))

    assert store.segment_paths() == []
    assert store.last_index == 100
    with pytest.raises(ValueError, match="gap"):
        store.append([entry(102, 4)])
    store.append(entries(101, 103, term=4))
    store.sync()
    store.close()
    state = load_state(tmp_path)
    assert state.snapshot.last_included_index == 100
    assert state.entries == entries(101, 103, 4)
    assert files_in_log(tmp_path) == ["000000000101.seg"]


def test_compaction_with_a_different_term_drops_the_whole_log(tmp_path, store):
    """A follower installing a leader's snapshot over a divergent log (Raft §7)."""
    store.append(entries(1, 10, term=1) + entries(11, 20, term=2))
    store.sync()

    store.compact(SnapshotMeta(15, 3))
    store.append(entries(16, 17, term=3))
    store.sync()
    store.close()

    state = load_state(tmp_path)
    assert state.snapshot.last_included_index == 15
    assert state.entries == entries(16, 17, 3)


def test_compaction_with_the_same_term_keeps_the_following_entries(tmp_path, store):
    store.append(entries(1, 20, term=2))
    store.sync()
    store.compact(SnapshotMeta(15, 2))
    store.close()
    assert load_entries(tmp_path) == entries(16, 20, 2)


def test_an_older_snapshot_does_not_move_the_boundary_back(tmp_path, store):
    store.append(entries(1, 20))
    store.compact(SnapshotMeta(15, 1))
    store.compact(SnapshotMeta(10, 1))
    assert store.snapshot.last_included_index == 15


def test_appends_at_or_below_the_boundary_are_ignored(tmp_path, store):
    store.append(entries(1, 10))
    store.compact(SnapshotMeta(10, 1))
    store.append(entries(8, 12))
    store.sync()
    store.close()
    assert load_entries(tmp_path) == entries(11, 12)


def test_a_crash_during_compaction_finishes_it_on_load(tmp_path, store):
    store.append(entries(1, 300))
    store.sync()
    saved = tmp_path.parent / "saved"
    shutil.copytree(tmp_path / "log", saved)
    store.compact(SnapshotMeta(200, 1))
    store.close()
    for seg in saved.glob("*.seg"):  # the deletions "did not reach the disk"
        if not (tmp_path / "log" / seg.name).exists() and int(seg.stem) > 1:
            shutil.copy(seg, tmp_path / "log" / seg.name)

    storage = reopen(tmp_path, SMALL)
    assert storage.load().entries == entries(201, 300)
    assert int(storage.segment_paths()[0].stem) <= 201
    assert all(int(p.stem) <= 201 for p in storage.segment_paths()[:1])
    storage.close()


def test_disk_use_stays_bounded_with_periodic_compaction(tmp_path):
    """100,000 appends, a compaction every 10,000: only a few MB of log remain."""
    storage = DiskStorage.open(tmp_path, segment_size=1024 * 1024)
    storage.load()
    peak = 0
    for first in range(1, 100_001, 500):
        storage.append(entries(first, first + 499, size=60))
        storage.sync()
        last = first + 499
        if last % 10_000 == 0:
            storage.compact(SnapshotMeta(last - 1000, 1))
        peak = max(peak, storage.log_bytes())
    on_disk = sum(p.stat().st_size for p in (tmp_path / "log").iterdir())
    storage.close()

    assert storage.stats.entries_written == 100_000
    assert storage.stats.bytes_written > 8_500_000  # about 9 MB went through the log
    assert on_disk < 3 * 1024 * 1024
    assert peak < 4 * 1024 * 1024


# ---------------------------------------------------------------- recovery


def test_a_torn_tail_is_cut_with_one_log_line(tmp_path, store):
    store.append(entries(1, 20))
    store.sync()
    last = store.segment_paths()[-1]
    store.close()
    size = last.stat().st_size
    with open(last, "ab") as f:
        f.write(b"\x30\x00\x00\x00\x99\x99")  # half a record header

    logger = ListLogger()
    storage = DiskStorage.open(tmp_path, segment_size=SMALL, logger=logger)
    state = storage.load()
    storage.close()

    assert state.entries == entries(1, 20)
    assert last.stat().st_size == size
    assert len(logger.lines) == 1
    assert "torn tail" in logger.lines[0] and str(last) in logger.lines[0]
    assert load_entries(tmp_path, SMALL) == entries(1, 20)


def test_a_record_cut_short_at_the_tail_is_dropped(tmp_path, store):
    store.append(entries(1, 10))
    store.sync()
    last = store.segment_paths()[-1]
    store.close()
    with open(last, "r+b") as f:
        f.truncate(last.stat().st_size - 5)

    assert load_entries(tmp_path, SMALL) == entries(1, 9)


def test_corruption_in_an_older_segment_names_file_and_offset(tmp_path, store):
    store.append(entries(1, 300))
    store.sync()
    victim = store.segment_paths()[1]
    store.close()
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x01
    victim.write_bytes(bytes(data))

    with pytest.raises(StorageCorruption) as info:
        load_state(tmp_path, SMALL)

    assert info.value.path == victim
    assert info.value.offset <= 100
    assert str(victim) in str(info.value) and f"byte {info.value.offset}" in str(info.value)


def test_corruption_before_the_tail_of_the_last_segment_is_not_repaired(tmp_path, store):
    store.append(entries(1, 20))
    store.sync()
    last = store.segment_paths()[-1]
    store.close()
    data = bytearray(last.read_bytes())
    data[60] ^= 0x40
    last.write_bytes(bytes(data))

    with pytest.raises(StorageCorruption):
        load_state(tmp_path, SMALL)
    assert last.read_bytes() == bytes(data)  # nothing was "repaired" away


def test_a_missing_segment_breaks_continuity(tmp_path, store):
    store.append(entries(1, 300))
    store.sync()
    store.segment_paths()[2].unlink()
    store.close()

    with pytest.raises(StorageCorruption, match="expected"):
        load_state(tmp_path, SMALL)


def test_a_segment_whose_name_disagrees_with_its_entries_is_corrupt(tmp_path, store):
    store.append(entries(1, 5))
    store.sync()
    path = store.segment_paths()[0]
    store.close()
    path.rename(path.with_name("000000000007.seg"))

    with pytest.raises(StorageCorruption):
        load_state(tmp_path, SMALL)


def test_a_log_starting_after_the_boundary_is_corrupt(tmp_path, store):
    store.append(entries(1, 300))
    store.sync()
    store.segment_paths()[0].unlink()
    store.close()

    with pytest.raises(StorageCorruption, match="snapshot boundary"):
        load_state(tmp_path, SMALL)


def test_a_damaged_hard_state_file_is_corruption(tmp_path, store):
    store.set_hard_state(HardState(5, "n3"))
    store.sync()
    store.close()
    raw = bytearray((tmp_path / "hardstate").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "hardstate").write_bytes(bytes(raw))

    with pytest.raises(StorageCorruption, match="hardstate"):
        load_state(tmp_path)


def test_a_damaged_boundary_file_is_corruption(tmp_path, store):
    store.append(entries(1, 10))
    store.compact(SnapshotMeta(5, 1))
    store.close()
    (tmp_path / "log" / BOUNDARY_NAME).write_bytes(b"LEIFSB\x00\x01garbage")

    with pytest.raises(StorageCorruption):
        load_state(tmp_path)


def test_an_empty_newest_segment_left_by_a_crash_is_removed(tmp_path, store):
    store.append(entries(1, 10))
    store.sync()
    store.close()
    (tmp_path / "log" / "000000000011.seg").write_bytes(b"LEIF")  # crashed while creating it

    storage = reopen(tmp_path)
    storage.append(entries(11, 12))
    storage.sync()
    storage.close()

    assert load_entries(tmp_path) == entries(1, 12)


def test_leftover_temporary_files_are_removed(tmp_path, store):
    store.close()
    (tmp_path / "hardstate.tmp").write_bytes(b"half written")
    load_state(tmp_path)
    assert not (tmp_path / "hardstate.tmp").exists()


def test_entries_keep_type_and_binary_data(tmp_path, store):
    from leifdb.raft.messages import EntryType

    written = [
        Entry(1, 1, EntryType.NOOP, b""),
        Entry(1, 2, EntryType.CONFIG, bytes(range(256))),
        Entry(2, 3, EntryType.NORMAL, b"\x00" * 2000),
    ]
    store.append(written)
    store.sync()
    store.close()
    assert load_entries(tmp_path) == written
