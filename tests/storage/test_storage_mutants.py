"""Each storage rule observable: every mutant of ``tests.storage.mutants`` (the storage
thread's acknowledgements, the order of the log's writes and syncs, atomic state files,
the torn-tail rule, checksums, a failed fsync) must make its check in
``tests.storage.rule_checks`` fail, and the real storage must pass every check.

Missing fsyncs are planted through the file system instead (``PLANTED`` in
tests/storage/test_power_loss.py: directory fsyncs after create/rename/delete, segment
fdatasyncs, temporary files); one more is planted here: the fsync of a snapshot received
from the leader before it is renamed into place. The table of rules, mutants and the
tests that catch them is /work/notes/rules-node.md.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from leifdb.storage import DiskStorage
from leifdb.storage.simfs import SimFileSystem

from tests.storage.helpers import entries
from tests.storage.mutants import STORAGE_MUTANTS, StorageMutant
from tests.storage.power_harness import Lost
from tests.storage.rule_checks import CHECKS
from tests.storage.test_power_loss import DropsSyncs, run_drawn


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_the_real_storage_passes_every_rule_check(check: str) -> None:
    """Control: the checks fail only because of the mutants."""
    CHECKS[check]()


@pytest.mark.parametrize("mutant", STORAGE_MUTANTS, ids=lambda m: m.name)
def test_each_storage_mutant_is_caught(mutant: StorageMutant, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hasattr(mutant.target, mutant.attribute), f"{mutant.where} is gone: update the mutant"
    monkeypatch.setattr(mutant.target, mutant.attribute, mutant.replacement)
    with pytest.raises(AssertionError):
        CHECKS[mutant.check]()


def test_the_checks_cover_every_mutant_and_every_check_catches_one() -> None:
    assert {m.check for m in STORAGE_MUTANTS} <= set(CHECKS)
    assert len({m.name for m in STORAGE_MUTANTS}) == len(STORAGE_MUTANTS)


def test_a_received_snapshot_not_fsynced_before_its_rename_is_caught() -> None:
    """``SnapshotStore.finish_receive`` fsyncs the ``.part`` file before renaming it into
    place; without that fsync a power cut after the compaction that follows leaves a log
    that starts after a snapshot that is not there."""

    @settings(
        derandomize=True,
        database=None,
        max_examples=400,
        deadline=None,
        phases=[Phase.generate],
        report_multiple_bugs=False,
    )
    @given(data=st.data())
    def property_with_the_bug(data: st.DataObject) -> None:
        run_drawn(data, lambda: DropsSyncs(lambda call, path: call == "fsync" and path.endswith(".part")))

    with pytest.raises(Lost):
        property_with_the_bug()


# ---------------------------------------------------------------- a finding (fixed in records.scan)


def test_a_segment_extended_with_zeros_past_its_last_record_is_a_torn_tail() -> None:
    """A power cut during an append on a file system that made the file's new size durable
    but none of the appended data (ext4 with ``data=writeback``, XFS): the segment ends
    with zeros where the next record was to be, and that record was never reported
    durable, so recovery must cut it like any torn tail. ``records.scan`` calls a record
    torn when its bytes overlap an all-zero sector, but here the missing record's header
    lies in the sector it shares with the end of the last intact record, which is not all
    zeros: "record header checksum mismatch", ``StorageCorruption``, the node refuses to
    start. (``SimFileSystem``'s torn writes always keep the first sector of a write, so the
    power-loss property cannot produce this state; it is built by hand.)"""
    fs = SimFileSystem()
    disk = DiskStorage.open("/n", fs=fs)
    disk.load()
    written = entries(1, 10, size=100)
    disk.append(written)
    disk.sync()
    segment, end = disk.segment_paths()[-1], disk.log_bytes()
    disk.close()
    assert end % 512 not in (0, 500)  # the next record would start mid-sector
    fd = fs.open(segment, os.O_WRONLY)
    fs.ftruncate(fd, end + 2 * 129)  # the size of two more records, their bytes all zero
    fs.fsync(fd)
    fs.close(fd)

    assert DiskStorage.open("/n", fs=fs).load().entries == written
