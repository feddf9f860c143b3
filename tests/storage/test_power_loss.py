"""Power loss: every index, term, vote and snapshot reported durable survives a power cut
at any file-system call, with or without a random prefix of the unsynced writes (torn at
any byte, or zero-filled past a sector boundary) and after process kills.

The storage runs on ``SimFileSystem`` (durable vs cached state per file and directory); see
``tests/storage/power_harness.py`` for the history, the faults and the check. The planted-bug
tests at the end show the check is not vacuous: dropping any one class of fsync is caught.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from leifdb.raft.messages import Entry, HardState, SnapshotMeta
from leifdb.storage import DiskStorage, SnapshotStore, crc32c
from leifdb.storage.fs import REAL_FS
from leifdb.storage.simfs import SimFileSystem, SimulatedCrash

from tests.storage.power_harness import (
    ROOT,
    SEGMENT,
    Append,
    Fault,
    Install,
    Lost,
    Restart,
    Snapshot,
    Vote,
    calls_of,
    run_history,
)
from tests.storage.profiles import storage_settings

# ---------------------------------------------------------------- strategies

appends = st.builds(
    Append,
    rewind=st.sampled_from([0, 0, 0, 1, 2, 5]),
    count=st.integers(1, 8),
    size=st.integers(10, 400),
    bump=st.booleans(),
)
others = st.one_of(
    st.builds(Vote, bump=st.booleans(), vote=st.sampled_from([None, "n1", "n2"])),
    st.builds(Snapshot, at=st.integers(0, 1000), size=st.integers(0, 300)),
    st.builds(
        Install,
        at=st.integers(0, 1000),
        ahead=st.integers(0, 6),
        matching=st.booleans(),
        size=st.integers(0, 300),
    ),
    st.builds(Restart, kill=st.booleans()),
)
# About two appends in three operations, so the log grows, rolls segments, is compacted.
operations = st.integers(0, 2).flatmap(lambda n: others if n == 0 else appends)
histories = st.lists(operations, min_size=3, max_size=24)


@st.composite
def faults(draw, mutations: int, syncs: int) -> list[Fault]:
    """One to three faults in history order, anywhere in it (uniformly). A kill strikes at
    a sync call (the moment the page cache holds the most that is not durable); a power
    cut at any mutating call or at a sync call."""
    places = random.Random(draw(st.integers(0, 2**32), label="places"))  # uniform
    drawn = []
    for where in sorted(places.random() for _ in range(draw(st.integers(1, 3), label="n"))):
        power = draw(st.booleans(), label="power")
        keep = power and draw(st.booleans(), label="keep unsynced")
        on_sync = not power or draw(st.booleans(), label="at a sync")
        drawn.append(
            Fault(
                at=round(where * (syncs if on_sync else mutations)),
                on_sync=on_sync,
                power=power,
                keep_unsynced=keep,
                zero_fill=keep and draw(st.booleans(), label="zero fill"),
                seed=draw(st.integers(0, 2**16), label="seed"),
                in_recovery=draw(st.none() | st.none() | st.integers(0, 12), label="again"),
            )
        )
    return drawn


def final_cut(draw) -> Fault:
    keep = draw(st.booleans())
    return Fault(
        0,
        keep_unsynced=keep,
        zero_fill=keep and draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


def run_drawn(data, fs_factory=SimFileSystem) -> None:
    history = data.draw(histories, label="history")
    mutations, syncs = calls_of(history, fs_factory)
    drawn = data.draw(faults(mutations, syncs), label="faults")
    cut = final_cut(data.draw)
    run_history(history, drawn, fs_factory(), final_cut=cut)


# ---------------------------------------------------------------- the property


@storage_settings(500)
@given(data=st.data())
def test_power_cuts_anywhere_keep_everything_reported_durable(data):
    run_drawn(data)


# ---------------------------------------------------------------- targeted scenarios


def test_a_power_cut_at_each_call_and_a_kill_at_each_sync_of_a_busy_history():
    """Every cut point of one fixed history (a regression net independent of hypothesis):
    a power cut before each mutating call (dropping or keeping unsynced writes), and a
    kill before each sync followed by recovery and a power cut."""
    history = [
        Append(0, 8, 300, False),
        Vote(True, "n2"),
        Append(2, 6, 200, False),
        Snapshot(5, 100),
        Append(0, 20, 350, False),
        Install(3, 2, False, 150),
        Append(0, 5, 50, True),
        Restart(kill=True),
        Snapshot(1, 0),
        Install(0, 0, True, 70),
    ]
    mutations, syncs = calls_of(history)
    assert mutations > 100 and syncs > 40
    for at in range(mutations + 1):
        for keep in (False, True):
            run_history(
                history,
                [Fault(at, keep_unsynced=keep, zero_fill=keep and at % 2 == 0, seed=at)],
                SimFileSystem(),
            )
    for at in range(syncs + 1):
        run_history(history, [Fault(at, on_sync=True, power=False)], SimFileSystem())


@pytest.mark.parametrize("killed_at", ["fdatasync", "fsync_dir"])
def test_recovery_makes_what_it_read_after_a_kill_durable(killed_at):
    """A process killed before the fdatasync of records it wrote (or before the directory
    fsync after renaming the hard state into place) leaves them in the page cache only;
    the restarted process reads them and acts on them (acknowledges the entries, keeps the
    vote), so recovery must make them durable before returning."""
    fs = SimFileSystem()
    disk = DiskStorage.open(ROOT, fs=fs)
    disk.load()
    disk.append([Entry(1, i, data=b"x" * 300) for i in range(1, 40)])
    disk.set_hard_state(HardState(1, "n1"))
    if killed_at == "fsync_dir":
        disk.sync()
        disk.set_hard_state(HardState(2, "n2"))
    fs.crash_after(0, only=frozenset({killed_at}))
    with pytest.raises(SimulatedCrash):
        disk.sync()
    fs.crash()
    state = DiskStorage.open(ROOT, fs=fs).load()
    assert len(state.entries) == 39
    assert state.hard_state.voted_for == ("n1" if killed_at == "fdatasync" else "n2")

    fs.power_cut()

    after = DiskStorage.open(ROOT, fs=fs).load()
    assert after.entries == state.entries
    assert after.hard_state == state.hard_state


def test_a_snapshot_renamed_by_a_killed_process_is_made_durable_before_use():
    fs = SimFileSystem()
    store = SnapshotStore(ROOT / "snap", fs=fs)
    store.save(10, 1, b"first")
    fs.crash_after(0, only=frozenset({"fsync_dir"}))  # killed right after the rename
    with pytest.raises(SimulatedCrash):
        store.save(20, 2, b"second")
    fs.crash()
    found = SnapshotStore(ROOT / "snap", fs=fs).latest()
    assert found is not None and found[0].last_included_index == 20

    fs.power_cut()

    found = SnapshotStore(ROOT / "snap", fs=fs).latest()
    assert found is not None and found[0].last_included_index == 20


def test_a_fresh_data_directory_survives_a_power_cut():
    """The data directory, log/ and snap/ are created durably: a file fsynced into a
    directory whose own name was never made durable vanishes with it."""
    fs = SimFileSystem()
    disk = DiskStorage.open("/srv/a/b/node", segment_size=SEGMENT, fs=fs)
    disk.load()
    disk.append([Entry(1, 1, data=b"one")])
    disk.sync()
    SnapshotStore("/srv/a/b/node/snapshots-elsewhere", fs=fs).save(1, 1, b"s")

    fs.power_cut()

    assert DiskStorage.open("/srv/a/b/node", fs=fs).load().entries == [Entry(1, 1, data=b"one")]
    assert SnapshotStore("/srv/a/b/node/snapshots-elsewhere", fs=fs).latest() is not None


def test_the_unsynced_tail_may_be_kept_torn_and_recovery_cuts_it():
    rng = random.Random(7)
    outcomes = set()
    for seed in range(60):
        fs = SimFileSystem()
        disk = DiskStorage.open(ROOT, segment_size=SEGMENT, fs=fs)
        disk.load()
        disk.append([Entry(1, i, data=bytes([65 + i]) * 100) for i in range(1, 6)])
        disk.sync()
        disk.append([Entry(1, i, data=bytes([65 + i]) * 100) for i in range(6, 12)])
        fs.fdatasync = lambda fd: None  # the second sync never reaches the disk
        disk.sync()
        del fs.fdatasync
        fs.power_cut(rng, keep_unsynced=True, zero_fill=seed % 2 == 0)
        entries = DiskStorage.open(ROOT, segment_size=SEGMENT, fs=fs).load().entries
        assert [e.index for e in entries] == list(range(1, len(entries) + 1))
        assert len(entries) >= 5
        outcomes.add(len(entries))
    assert len(outcomes) > 3  # the prefix kept really varies


# ---------------------------------------------------------------- the sim itself


def _busy_storage_work(path, fs) -> None:
    disk = DiskStorage.open(path, segment_size=SEGMENT, fs=fs)
    disk.load()
    snaps = SnapshotStore(f"{path}/snap", fs=fs)
    disk.append([Entry(1, i, data=bytes([i]) * 150) for i in range(1, 60)])
    disk.set_hard_state(HardState(1, "n1"))
    disk.sync()
    disk.append([Entry(2, i, data=b"two" * 40) for i in range(50, 55)])  # truncates
    disk.set_hard_state(HardState(2, None))
    disk.sync()
    meta = snaps.save(30, 1, b"state" * 500)
    disk.compact(meta)
    leader = SnapshotMeta(70, 3, crc32c(b"L" * 999), 999)
    snaps.begin_receive(leader)
    for offset in range(0, 999, 100):
        snaps.write_chunk(leader, offset, b"L" * min(100, 999 - offset))
    assert snaps.finish_receive(leader)
    disk.compact(leader)
    disk.append([Entry(3, i, data=b"three") for i in range(71, 80)])
    disk.sync()
    disk.close()
    snaps.close()
    DiskStorage.open(path, segment_size=SEGMENT, fs=fs).load()  # recovery on top


def test_the_sim_leaves_the_same_files_as_the_real_file_system(tmp_path):
    """Fidelity: one history through RealFileSystem and through SimFileSystem gives
    byte-identical files (O_APPEND, pwrite, truncation, renames behave the same)."""
    real = tmp_path / "node"
    _busy_storage_work(real, REAL_FS)
    sim = SimFileSystem()
    _busy_storage_work("/node", sim)

    on_disk = {
        "/node/" + str(p.relative_to(real)): (None if p.is_dir() else p.read_bytes())
        for p in real.rglob("*")
        if p.name != "LOCK"
    }
    simulated = {k: v for k, v in sim.tree().items() if k.startswith("/node/")}
    simulated.pop("/node/LOCK")
    assert simulated == on_disk
    durable, cached = sim.tree(durable=True), sim.tree()
    del durable["/node/LOCK"], cached["/node/LOCK"]  # holds a pid, never synced
    assert durable == cached  # everything else is durable once the calls return


def test_names_become_durable_only_with_their_directory():
    fs = SimFileSystem()
    fs.mkdir("/d")
    fs.fsync_dir("/")
    fd = fs.open("/d/f", os.O_WRONLY | os.O_CREAT)
    fs.write(fd, b"data")
    fs.fsync(fd)
    assert fs.tree(durable=True) == {"/d": None}
    fs.fsync_dir("/d")
    assert fs.tree(durable=True) == {"/d": None, "/d/f": b"data"}
    fs.write(fd, b"more")
    fs.replace("/d/f", "/d/g")
    fs.power_cut()
    assert fs.tree() == {"/d": None, "/d/f": b"data"}
    with pytest.raises(OSError):
        fs.write(fd, b"x")  # the process died with the power


def test_fdatasync_makes_size_durable_and_truncation_is_an_unsynced_op():
    fs = SimFileSystem()
    fd = fs.open("/f", os.O_RDWR | os.O_CREAT)
    fs.fsync_dir("/")
    fs.write(fd, b"0123456789")
    fs.fdatasync(fd)
    fs.ftruncate(fd, 4)
    fs.pwrite(fd, b"ab", 8)
    assert fs.read_file("/f") == b"0123\0\0\0\0ab"
    fs.power_cut()
    assert fs.read_file("/f") == b"0123456789"


def test_a_crash_keeps_the_cache_and_drops_locks():
    fs = SimFileSystem()
    fd = fs.open("/lock", os.O_RDWR | os.O_CREAT)
    fs.flock(fd)
    other = fs.open("/lock", os.O_RDWR)
    with pytest.raises(BlockingIOError):
        fs.flock(other)
    fs.write(fd, b"cached")
    fs.crash()
    assert fs.read_file("/lock") == b"cached"
    fs.flock(fs.open("/lock", os.O_RDWR))


def test_crash_after_stops_the_nth_mutation_and_everything_after():
    fs = SimFileSystem()
    fs.crash_after(2)
    fs.mkdir("/a")
    fs.mkdir("/b")
    with pytest.raises(SimulatedCrash):
        fs.mkdir("/c")
    with pytest.raises(SimulatedCrash):
        fs.listdir("/")
    fs.crash()
    assert fs.listdir("/") == ["a", "b"]


def test_keep_unsynced_keeps_a_prefix_of_each_files_writes():
    seen = set()
    for seed in range(200):
        fs = SimFileSystem()
        fd = fs.open("/f", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        fs.fsync_dir("/")
        for chunk in (b"aaaa", b"bbbb", b"cccc"):
            fs.write(fd, chunk)
        fs.power_cut(random.Random(seed), keep_unsynced=True)
        content = fs.read_file("/f")
        assert b"aaaabbbbcccc".startswith(content)
        seen.add(len(content))
    assert seen == set(range(13))  # every prefix, torn at any byte


def test_zero_fill_tears_at_sector_boundaries_with_the_size_extended():
    for seed in range(50):
        fs = SimFileSystem()
        fd = fs.open("/f", os.O_WRONLY | os.O_CREAT)
        fs.fsync_dir("/")
        fs.write(fd, b"x" * 100)
        fs.fdatasync(fd)
        fs.write(fd, b"y" * 2000)
        fs.power_cut(random.Random(seed), keep_unsynced=True, zero_fill=True)
        content = fs.read_file("/f")
        if len(content) == 2100:
            cut = content.find(b"\0")
            assert cut == -1 or (cut % 512 == 0 and content[cut:] == bytes(2100 - cut))


# ---------------------------------------------------------------- planted bugs


class DropsSyncs(SimFileSystem):
    """A file system on which some syncs silently do nothing: the storage with one fsync
    removed, as the property test would see it. ``drop(call, path)`` says which; for a
    directory, ``path`` is followed by the kind of the last change its fsync would make
    durable (``create``, ``rename``, ``delete``): the fsync that follows that change."""

    def __init__(self, drop) -> None:
        super().__init__()
        self._drop = drop

    def fsync_dir(self, path) -> None:
        try:
            pending = self._lookup(str(path)).pending
        except OSError:
            pending = []
        kind = ""
        if pending:
            last = pending[-1]
            kind = "rename" if len(last) == 2 else "delete" if last[0][1] is None else "create"
        if not self._drop("fsync_dir", f"{path} {kind}"):
            super().fsync_dir(path)

    def fsync(self, fd: int) -> None:
        if not self._drop("fsync", self._fds[fd].path if fd in self._fds else ""):
            super().fsync(fd)

    def fdatasync(self, fd: int) -> None:
        if not self._drop("fdatasync", self._fds[fd].path if fd in self._fds else ""):
            super().fdatasync(fd)


def _dir_fsync(directory: str = "", kind: str = ""):
    def drop(call: str, path: str) -> bool:
        where, _, last = path.partition(" ")
        return (
            call == "fsync_dir"
            and (not directory or where == directory)
            and (not kind or kind == last)
        )

    return drop


PLANTED = {
    "no directory fsync at all": _dir_fsync(),
    "no directory fsync after a create": _dir_fsync(kind="create"),
    "no directory fsync after a rename": _dir_fsync(kind="rename"),
    "no directory fsync after a delete": _dir_fsync(kind="delete"),
    "no fsync of the log directory": _dir_fsync(f"{ROOT}/log"),
    "no fsync of the data directory (hard state rename)": _dir_fsync(str(ROOT)),
    "no fsync of the snapshot directory": _dir_fsync(f"{ROOT}/snap"),
    "no fsync of the data directory's parent": _dir_fsync(str(ROOT.parent)),
    "no fdatasync of log segments": lambda call, path: call == "fdatasync",
    "no fsync of a temporary file before its rename": lambda call, path: call == "fsync"
    and path.endswith(".tmp"),
}


@pytest.mark.parametrize("bug", sorted(PLANTED))
def test_the_property_catches_a_planted_missing_fsync(bug):
    drop = PLANTED[bug]

    @settings(  # the same examples under every profile: a meta-test must not be flaky
        derandomize=True,
        database=None,
        max_examples=400,
        deadline=None,
        phases=[Phase.generate],  # no shrinking: finding one failure is enough
        report_multiple_bugs=False,
    )
    @given(data=st.data())
    def property_with_the_bug(data):
        run_drawn(data, lambda: DropsSyncs(drop))

    with pytest.raises(Lost):
        property_with_the_bug()


def test_the_planted_file_system_is_harmless_when_it_drops_nothing():
    @settings(storage_settings(25), phases=[Phase.generate])
    @given(data=st.data())
    def property_without_bugs(data):
        run_drawn(data, lambda: DropsSyncs(lambda call, path: False))

    property_without_bugs()


def test_dropping_the_recovery_fsyncs_is_caught(monkeypatch):
    """Recovery that trusts the page cache (no fsync of what it read) loses acknowledged
    data at the next power cut; the kill-then-power-cut faults see it."""

    def careless_load(self):
        fs = self.fs
        self.fs = NoSync(fs)
        try:
            return real_load(self)
        finally:
            self.fs = fs

    class NoSync:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            if name in ("fsync_dir", "fdatasync"):
                return lambda *a: None
            return getattr(self._inner, name)

    real_load = DiskStorage.load
    monkeypatch.setattr(DiskStorage, "load", careless_load)
    history = [Append(0, 3, 100, False), Vote(False, "n1")]
    with pytest.raises(Lost, match="not durable|durable"):
        for at in range(calls_of(history)[1] + 1):
            run_history(history, [Fault(at, on_sync=True, power=False)], SimFileSystem())
