"""Property tests of recovery: cut the log anywhere, zero its tail, flip bits, scribble.

Recovery must give back exactly a prefix of what was written, never less than what was
synced before the damage, and never data that was not written (detected corruption is
the only other outcome).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leifdb.raft.messages import Entry, EntryType, SnapshotMeta
from leifdb.storage import DiskStorage, StorageCorruption
from leifdb.storage.fs import REAL_FS
from leifdb.storage.records import SECTOR, scan

from tests.storage.helpers import load_state

SETTINGS = settings(
    derandomize=True,
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SEGMENT = 4096


@pytest.fixture(autouse=True, scope="module")
def no_fsync():
    """These tests damage files by hand after writing them: whether the bytes reached the
    platter never matters here, and skipping fsync keeps hundreds of examples fast. (The
    real-process crash test and the unit tests keep fsync.)"""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(REAL_FS, "fsync", lambda fd: None)
        patch.setattr(REAL_FS, "fdatasync", lambda fd: None)
        yield


def scratch_dir() -> tempfile.TemporaryDirectory:
    """A throw-away directory, in RAM when the machine has /dev/shm (removing a file on
    the CI disk costs milliseconds; these tests create thousands)."""
    shm = Path("/dev/shm")
    usable = shm.is_dir() and os.access(shm, os.W_OK)
    return tempfile.TemporaryDirectory(dir=shm if usable else None)


@dataclass
class Written:
    directory: Path
    log: list[Entry]


def nonzero(data: bytes) -> bytes:
    return data.replace(b"\x00", b"\x01")


# A history: batches of (rewind, [data...]); rewind > 0 overwrites that many entries of the
# tail with a higher term (a conflict truncation), 0 appends after the end.
batches = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6),
        st.lists(st.binary(max_size=300), min_size=1, max_size=12),
    ),
    min_size=1,
    max_size=10,
)


def write_history(
    directory: Path, history, segment_size: int, *, zero_free: bool = False
) -> Written:
    """Write ``history`` through DiskStorage (one sync per batch); return the model log."""
    log: list[Entry] = []
    term = 1
    storage = DiskStorage.open(directory, segment_size=segment_size)
    storage.load()
    for rewind, payloads in history:
        start = max(1, len(log) + 1 - rewind)
        if start <= len(log):
            term += 1
        new = [
            Entry(term, start + i, EntryType.NORMAL, nonzero(p) if zero_free else p)
            for i, p in enumerate(payloads)
        ]
        storage.append(new)
        storage.sync()
        log = log[: start - 1] + new
    storage.close()
    return Written(directory, log)


def segments(directory: Path) -> list[Path]:
    return sorted((directory / "log").glob("*.seg"))


def record_ends(path: Path) -> list[int]:
    """Where each record of a segment ends."""
    result = scan(path.read_bytes())
    assert result.problem is None
    return list(result.offsets[1:]) + [result.end]


def entries_before(directory: Path, last: Path) -> int:
    return sum(len(scan(p.read_bytes()).entries) for p in segments(directory) if p != last)


@SETTINGS
@given(history=batches, data=st.data())
def test_a_cut_anywhere_in_the_newest_segment_recovers_exactly_the_intact_prefix(history, data):
    check_cut(history, data, SEGMENT)


@SETTINGS
@given(history=batches, data=st.data())
def test_a_cut_anywhere_in_a_single_segment_log_recovers_exactly_the_intact_prefix(history, data):
    check_cut(history, data, 1 << 20)


def check_cut(history, data, segment_size: int) -> None:
    with scratch_dir() as tmp:
        written = write_history(Path(tmp), history, segment_size)
        assert load_state(written.directory, segment_size).entries == written.log
        last = segments(written.directory)[-1]
        ends = record_ends(last)
        cut = data.draw(st.integers(min_value=0, max_value=last.stat().st_size), label="cut")
        with open(last, "r+b") as f:
            f.truncate(cut)

        recovered = load_state(written.directory, segment_size).entries

        intact = entries_before(written.directory, last) + sum(1 for end in ends if end <= cut)
        assert recovered == written.log[:intact]
        # Recovery is itself durable and idempotent, and appends carry on from it.
        assert load_state(written.directory, segment_size).entries == written.log[:intact]


@SETTINGS
@given(history=batches, data=st.data())
def test_zeroed_sectors_at_the_tail_read_as_a_torn_write(history, data):
    """A crash can leave a file's tail as whole sectors of zeros; that is a torn write."""
    with scratch_dir() as tmp:
        written = write_history(Path(tmp), history, SEGMENT, zero_free=True)
        last = segments(written.directory)[-1]
        before = last.read_bytes()
        size = len(before)
        start = data.draw(st.integers(min_value=0, max_value=(size - 1) // SECTOR), label="sector")
        zero_from = start * SECTOR
        to_end = data.draw(st.booleans(), label="to_end")
        zero_to = size if to_end else min(size, zero_from + SECTOR)
        after = bytearray(before)
        after[zero_from:zero_to] = bytes(zero_to - zero_from)
        last.write_bytes(bytes(after))

        recovered = load_state(written.directory, SEGMENT).entries

        # Intact: the records before the first one the zeros changed (a record whose
        # zeroed bytes were zeros already, such as high bytes of its index, is unharmed).
        scanned = scan(before)
        intact = entries_before(written.directory, last)
        for offset, end in zip(scanned.offsets, list(scanned.offsets[1:]) + [scanned.end]):
            if before[offset:end] != after[offset:end]:
                break
            intact += 1
        assert recovered == written.log[:intact]


@SETTINGS
@given(history=batches, data=st.data())
def test_a_flipped_bit_in_any_segment_is_reported_as_corruption(history, data):
    """Record headers and payloads have checksums: one flipped bit never goes unseen, and
    (with no all-zero sector around to suggest a torn write) it is never mistaken for one."""
    with scratch_dir() as tmp:
        written = write_history(Path(tmp), history, SEGMENT, zero_free=True)
        victim = data.draw(st.sampled_from(segments(written.directory)), label="segment")
        position = data.draw(
            st.integers(min_value=0, max_value=victim.stat().st_size - 1), label="byte"
        )
        bit = data.draw(st.integers(min_value=0, max_value=7), label="bit")
        raw = bytearray(victim.read_bytes())
        raw[position] ^= 1 << bit
        victim.write_bytes(bytes(raw))

        with pytest.raises(StorageCorruption) as info:
            load_state(written.directory, SEGMENT)

        assert info.value.path == victim
        assert info.value.offset <= position


@SETTINGS
@given(history=batches, data=st.data())
def test_scribbled_bytes_give_corruption_or_a_prefix_never_wrong_data(history, data):
    """Arbitrary damage (any data, zeros included): the outcome is detected corruption or
    a prefix of what was written, never an entry that was not written."""
    with scratch_dir() as tmp:
        written = write_history(Path(tmp), history, SEGMENT)
        victim = data.draw(st.sampled_from(segments(written.directory)), label="segment")
        size = victim.stat().st_size
        position = data.draw(st.integers(min_value=0, max_value=size - 1), label="at")
        junk = data.draw(st.binary(min_size=1, max_size=64), label="junk")
        raw = bytearray(victim.read_bytes())
        raw[position : position + len(junk)] = junk[: size - position]
        victim.write_bytes(bytes(raw))

        try:
            recovered = load_state(written.directory, SEGMENT).entries
        except StorageCorruption as exc:
            assert exc.path == victim
            return
        assert recovered == written.log[: len(recovered)]


@SETTINGS
@given(history=batches, data=st.data())
def test_a_compacted_log_recovers_after_the_boundary(history, data):
    with scratch_dir() as tmp:
        directory = Path(tmp)
        written = write_history(directory, history, SEGMENT)
        index = data.draw(st.integers(min_value=1, max_value=len(written.log)), label="index")
        storage = DiskStorage.open(directory, segment_size=SEGMENT)
        storage.load()
        storage.compact(SnapshotMeta(index, written.log[index - 1].term))
        storage.close()

        state = load_state(directory, SEGMENT)

        assert state.snapshot.last_included_index == index
        assert state.entries == written.log[index:]
        on_disk = sum(len(scan(p.read_bytes()).entries) for p in segments(directory))
        assert on_disk - len(state.entries) < SEGMENT  # only a straddling segment's head stays
