"""``WritebackFileSystem``: a real directory that holds only what was synced, and a process
cache that holds the rest, so that losing the process is a power cut.

"Crash" here is: drop the object (or SIGKILL the process) and open a new one on the same
directory. The property test runs the same random operations on a ``SimFileSystem`` and
requires the directory to hold exactly what ``SimFileSystem.power_cut()`` keeps.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leifdb import tap
from leifdb.config import Options
from leifdb.raft.messages import HardState
from leifdb.storage import DataDirLocked, DiskStorage, SnapshotStore
from leifdb.storage._files import atomic_write
from leifdb.storage.datadir import DataDir
from leifdb.storage.fs import REAL_FS
from leifdb.storage.simfs import SimFileSystem
from leifdb.storage.writeback import WRITEBACK_TMP_SUFFIX, WritebackFileSystem

from tests.storage import writeback_driver
from tests.storage.helpers import entries
from tests.storage.profiles import storage_settings

ROOT_OF_REPO = Path(__file__).resolve().parents[2]
W, C, A = os.O_WRONLY, os.O_CREAT, os.O_APPEND


def on_disk(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (relative) and its bytes, ``None`` for a directory: what
    the real file system holds, read without the write-back layer."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def cached(fs: SimFileSystem, root: str, *, durable: bool = False) -> dict[str, bytes | None]:
    """``fs.tree()`` below ``root``, relative to it."""
    prefix = root.rstrip("/") + "/"
    return {path[len(prefix):]: content for path, content in fs.tree(durable=durable).items()
            if path.startswith(prefix)}


def write_file(fs, path, data: bytes, *, sync: bool) -> None:
    fd = fs.open(path, W | C | A, 0o644)
    try:
        fs.write(fd, data)
        if sync:
            fs.fdatasync(fd)
    finally:
        fs.close(fd)


# ---------------------------------------------------------------- what survives a crash


def test_an_unsynced_append_is_gone_after_a_crash_and_a_synced_one_stays(tmp_path):
    fs = WritebackFileSystem(tmp_path)
    write_file(fs, tmp_path / "f", b"synced", sync=True)
    fs.fsync_dir(tmp_path)
    write_file(fs, tmp_path / "f", b"+cached", sync=False)

    assert fs.read_file(tmp_path / "f") == b"synced+cached"  # the process sees its writes
    assert fs.stat(tmp_path / "f").st_size == 13
    assert on_disk(tmp_path) == {"f": b"synced"}
    assert cached(WritebackFileSystem(tmp_path), str(tmp_path)) == {"f": b"synced"}


def test_a_synced_file_whose_name_was_never_made_durable_is_gone(tmp_path):
    fs = WritebackFileSystem(tmp_path)
    write_file(fs, tmp_path / "f", b"data", sync=True)
    assert fs.exists(tmp_path / "f") and on_disk(tmp_path) == {}

    fs.fsync_dir(tmp_path)
    assert on_disk(tmp_path) == {"f": b"data"}


def test_a_rename_without_the_directory_fsync_is_gone(tmp_path):
    fs = WritebackFileSystem(tmp_path)
    write_file(fs, tmp_path / "state", b"old", sync=True)
    fs.fsync_dir(tmp_path)
    write_file(fs, tmp_path / "state.tmp", b"new", sync=True)
    fs.replace(tmp_path / "state.tmp", tmp_path / "state")

    assert fs.read_file(tmp_path / "state") == b"new"
    assert on_disk(tmp_path) == {"state": b"old"}
    assert cached(WritebackFileSystem(tmp_path), str(tmp_path)) == {"state": b"old"}

    fs.fsync_dir(tmp_path)
    assert on_disk(tmp_path) == {"state": b"new"}


def test_a_renamed_file_on_disk_is_moved_not_rewritten(tmp_path):
    fs = WritebackFileSystem(tmp_path)
    write_file(fs, tmp_path / "a", b"x" * 1000, sync=True)
    fs.fsync_dir(tmp_path)
    inode = os.stat(tmp_path / "a").st_ino
    fs.replace(tmp_path / "a", tmp_path / "b")
    fs.fsync_dir(tmp_path)
    assert on_disk(tmp_path) == {"b": b"x" * 1000}
    assert os.stat(tmp_path / "b").st_ino == inode


def test_a_delete_without_the_directory_fsync_comes_back(tmp_path):
    fs = WritebackFileSystem(tmp_path)
    write_file(fs, tmp_path / "f", b"data", sync=True)
    fs.fsync_dir(tmp_path)
    fs.unlink(tmp_path / "f")
    assert not fs.exists(tmp_path / "f")
    assert cached(WritebackFileSystem(tmp_path), str(tmp_path)) == {"f": b"data"}
    fs.fsync_dir(tmp_path)
    assert on_disk(tmp_path) == {}


def test_a_file_synced_through_a_descriptor_after_its_rename_lands_under_the_durable_name(
    tmp_path,
):
    fs = WritebackFileSystem(tmp_path)
    fd = fs.open(tmp_path / "a", W | C | A)
    fs.write(fd, b"one")
    fs.fsync(fd)
    fs.fsync_dir(tmp_path)
    fs.replace(tmp_path / "a", tmp_path / "b")
    fs.write(fd, b"two")
    fs.fsync(fd)  # the name "b" is not durable yet: on disk, "a" has the new bytes
    assert on_disk(tmp_path) == {"a": b"onetwo"}
    fs.fsync_dir(tmp_path)
    assert on_disk(tmp_path) == {"b": b"onetwo"}
    fs.close(fd)


def test_a_new_directory_reaches_the_disk_with_its_parent_fsync_and_keeps_its_synced_files(
    tmp_path,
):
    fs = WritebackFileSystem(tmp_path)
    fs.mkdir(tmp_path / "sub")
    write_file(fs, tmp_path / "sub" / "f", b"data", sync=True)
    fs.fsync_dir(tmp_path / "sub")
    write_file(fs, tmp_path / "sub" / "g", b"no name", sync=True)
    assert on_disk(tmp_path) == {}  # "sub" itself is not durable in its parent

    fs.fsync_dir(tmp_path)
    assert on_disk(tmp_path) == {"sub": None, "sub/f": b"data"}


def test_truncation_and_overwrite_are_written_back_whole(tmp_path):
    fs = WritebackFileSystem(tmp_path)
    write_file(fs, tmp_path / "f", b"0123456789", sync=True)
    fs.fsync_dir(tmp_path)
    fd = fs.open(tmp_path / "f", W)
    fs.ftruncate(fd, 4)
    fs.pwrite(fd, b"ab", 1)
    assert on_disk(tmp_path) == {"f": b"0123456789"}
    fs.fdatasync(fd)
    assert on_disk(tmp_path) == {"f": b"0ab3"}
    fs.pwrite(fd, b"c", 0)
    fs.pwrite(fd, b"d", 4)  # an append, but after an overwrite
    fs.fdatasync(fd)
    fs.close(fd)
    assert on_disk(tmp_path) == {"f": b"cab3d"}


def test_leftovers_of_an_interrupted_write_back_are_removed_at_start(tmp_path):
    (tmp_path / "f").write_bytes(b"old")
    (tmp_path / ("f" + WRITEBACK_TMP_SUFFIX)).write_bytes(b"half")
    fs = WritebackFileSystem(tmp_path)
    assert cached(fs, str(tmp_path)) == {"f": b"old"}
    assert on_disk(tmp_path) == {"f": b"old"}


def test_relative_paths_and_dot_dot_are_real_paths(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    monkeypatch.chdir(tmp_path)
    fs = WritebackFileSystem("d")
    write_file(fs, "d/../d/f", b"x", sync=True)
    fs.fsync_dir("d")
    assert fs.read_file(tmp_path / "d" / "f") == b"x"
    assert on_disk(tmp_path / "d") == {"f": b"x"}


def test_what_the_storage_does_not_need_is_refused(tmp_path):
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "root" / "b").mkdir()
    fs = WritebackFileSystem(tmp_path / "root")
    with pytest.raises(PermissionError):
        fs.mkdir(tmp_path / "elsewhere")
    write_file(fs, tmp_path / "root" / "a" / "f", b"x", sync=False)
    with pytest.raises(OSError) as across:
        fs.replace(tmp_path / "root" / "a" / "f", tmp_path / "root" / "b" / "f")
    assert across.value.errno == errno.EXDEV
    with pytest.raises(IsADirectoryError):
        fs.replace(tmp_path / "root" / "a", tmp_path / "root" / "c")
    with pytest.raises(ValueError):
        fs.power_cut(keep_unsynced=True)
    fs.fsync_dir(tmp_path)  # a sync outside the root is allowed (and changes nothing)


def test_the_strict_power_cut_leaves_the_cache_equal_to_the_disk(tmp_path):
    fs = WritebackFileSystem(tmp_path)
    write_file(fs, tmp_path / "f", b"synced", sync=True)
    fs.fsync_dir(tmp_path)
    write_file(fs, tmp_path / "f", b"+more", sync=False)
    fs.power_cut()
    assert cached(fs, str(tmp_path)) == on_disk(tmp_path) == {"f": b"synced"}
    write_file(fs, tmp_path / "f", b"!", sync=True)
    assert on_disk(tmp_path) == {"f": b"synced!"}


# ---------------------------------------------------------------- the same model as simfs

NAMES = ("a", "b", "c", "s/x")
DATA = st.binary(min_size=1, max_size=12)
FILE_OPS = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(NAMES), DATA),
    st.tuples(st.just("pwrite"), st.sampled_from(NAMES), DATA, st.integers(0, 20)),
    st.tuples(st.just("truncate"), st.sampled_from(NAMES), st.integers(0, 20)),
    st.tuples(st.just("open"), st.sampled_from(NAMES)),
    st.tuples(st.just("write_open"), st.integers(0, 3), DATA),
)
SYNCS = st.one_of(
    st.tuples(st.just("sync"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(st.just("sync_open"), st.integers(0, 3)),
    st.tuples(st.just("fsync_dir"), st.sampled_from(("", "", "s"))),
)
NAME_OPS = st.one_of(
    st.tuples(st.just("rename"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("unlink"), st.sampled_from(NAMES)),
    st.tuples(st.just("mkdir"),),
)
# Syncs as often as the rest: what reaches the disk is decided at the syncs.
OPERATIONS = st.lists(
    st.integers(0, 3).flatmap(lambda n: SYNCS if n < 2 else FILE_OPS if n == 2 else NAME_OPS),
    min_size=10,
    max_size=50,
)


class Twin:
    """One file system and where its tree starts; ``run`` applies an operation and
    returns its outcome (the name of the error, or None)."""

    def __init__(self, fs: SimFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root
        self.fds: list[int] = []

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def run(self, op: tuple) -> str | None:
        fs, kind = self.fs, op[0]
        try:
            if kind in ("append", "pwrite", "truncate", "sync"):
                fd = fs.open(self.path(op[1]), W | C | (A if kind == "append" else 0))
                try:
                    if kind == "append":
                        fs.write(fd, op[2])
                    elif kind == "pwrite":
                        fs.pwrite(fd, op[2], op[3])
                    elif kind == "truncate":
                        fs.ftruncate(fd, op[2])
                    elif op[2]:
                        fs.fdatasync(fd)
                    else:
                        fs.fsync(fd)
                finally:
                    fs.close(fd)
            elif kind == "open":
                self.fds.append(fs.open(self.path(op[1]), W | C | A))
            elif kind in ("write_open", "sync_open"):
                if self.fds:
                    fd = self.fds[op[1] % len(self.fds)]
                    fs.write(fd, op[2]) if kind == "write_open" else fs.fdatasync(fd)
            elif kind == "fsync_dir":
                fs.fsync_dir(self.path(op[1]))
            elif kind == "rename":
                fs.replace(self.path(op[1]), self.path(op[2]))
            elif kind == "unlink":
                fs.unlink(self.path(op[1]))
            else:
                fs.mkdir(self.path("s"))
        except OSError as exc:
            return type(exc).__name__
        return None


@storage_settings(200)
@given(operations=OPERATIONS)
def test_the_disk_holds_exactly_what_a_simfs_power_cut_keeps(operations):
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "root")
        os.mkdir(root)
        sim = SimFileSystem()
        sim.mkdir("/root")
        sim.fsync_dir("/")
        model = Twin(sim, "/root")
        real = Twin(WritebackFileSystem(root), root)
        for op in operations:
            if op[0] == "rename" and op[1].startswith("s/") != op[2].startswith("s/"):
                continue  # across directories: refused by the write-back file system
            assert real.run(op) == model.run(op), op
            assert cached(real.fs, root) == cached(sim, "/root"), op
            assert on_disk(Path(root)) == cached(sim, "/root", durable=True), op
        sim.power_cut()
        kept = cached(sim, "/root")
        assert on_disk(Path(root)) == kept
        assert cached(WritebackFileSystem(root), root) == kept


# ---------------------------------------------------------------- the storage on it


def test_the_storage_on_it_keeps_what_it_synced_and_loses_what_it_staged(tmp_path):
    fs = WritebackFileSystem(tmp_path)
    storage = DiskStorage.open(tmp_path / "data", fs=fs, segment_size=4096)
    storage.load()
    storage.set_hard_state(HardState(2, "n1"))
    storage.append(entries(1, 120, term=2))
    storage.sync()
    snapshots = SnapshotStore(storage.data_dir.snap_dir, fs=fs)
    meta = snapshots.save(60, 2, b"state" * 100)
    storage.compact(meta)
    storage.append(entries(121, 130, term=2))  # staged, never synced
    storage.close()

    again = WritebackFileSystem(tmp_path)
    reopened = DiskStorage.open(tmp_path / "data", fs=again, segment_size=4096)
    state = reopened.load()
    assert state.hard_state == HardState(2, "n1")
    assert state.snapshot == meta
    assert [e.index for e in state.entries] == list(range(61, 121))
    assert SnapshotStore(reopened.data_dir.snap_dir, fs=again).latest()[0] == meta
    # the real file system reads the same: the directory is an ordinary data directory
    reopened.close()
    on_real = DiskStorage.open(tmp_path / "data", segment_size=4096)
    assert [e.index for e in on_real.load().entries] == list(range(61, 121))
    on_real.close()


def test_a_planted_missing_fdatasync_loses_the_log_while_the_real_code_keeps_it(
    tmp_path, monkeypatch
):
    """The log's group commit without its ``fdatasync``: on the real file system nothing
    shows after a process crash; on the write-back file system the records are gone."""

    def run(directory: Path, fs_factory) -> list[int]:
        directory.parent.mkdir()
        storage = DiskStorage.open(directory, fs=fs_factory(directory.parent))
        storage.load()
        storage.append(entries(1, 20))
        storage.sync()  # reported durable
        storage.close()
        reopened = DiskStorage.open(directory, fs=fs_factory(directory.parent))
        try:
            return [e.index for e in reopened.load().entries]
        finally:
            reopened.close()

    assert run(tmp_path / "good" / "data", WritebackFileSystem) == list(range(1, 21))
    flush = DiskStorage._flush
    monkeypatch.setattr(
        DiskStorage, "_flush", lambda self, buffer, *, durable: flush(self, buffer, durable=False)
    )
    assert run(tmp_path / "real" / "data", lambda _: REAL_FS) == list(range(1, 21))
    assert run(tmp_path / "planted" / "data", WritebackFileSystem) == []


def test_a_second_process_cannot_take_the_directory_and_a_kill_keeps_only_what_was_synced(
    tmp_path,
):
    env = dict(os.environ, PYTHONPATH=str(ROOT_OF_REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.writeback_driver", str(tmp_path)],
        stdout=subprocess.PIPE, cwd=ROOT_OF_REPO, env=env,
    )
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=30), "the driver did not get ready"
        assert proc.stdout.readline() == b"ready\n"
        with pytest.raises(DataDirLocked):
            DataDir.open(tmp_path / "data", fs=WritebackFileSystem(tmp_path))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()

    fs = WritebackFileSystem(tmp_path)
    assert fs.read_file(tmp_path / "state") == writeback_driver.STATE
    assert not fs.exists(tmp_path / "renamed") and not fs.exists(tmp_path / "cached-only")
    storage = DiskStorage.open(tmp_path / "data", fs=fs)  # the kill released the lock
    loaded = [e.index for e in storage.load().entries]
    assert loaded == list(range(1, writeback_driver.SYNCED_ENTRIES + 1))
    storage.close()


def test_the_lock_goes_with_the_descriptor_that_took_it(tmp_path):
    fs = WritebackFileSystem(tmp_path)
    held = DataDir.open(tmp_path / "data", fs=fs)
    with pytest.raises(DataDirLocked):
        DataDir.open(tmp_path / "data", fs=WritebackFileSystem(tmp_path))
    with pytest.raises(DataDirLocked):
        DataDir.open(tmp_path / "data", fs=fs)  # a second open in the same process
    held.close()
    DataDir.open(tmp_path / "data", fs=WritebackFileSystem(tmp_path)).close()


# ---------------------------------------------------------------- the start-up option


def parse(args: list[str]):
    options = Options(environ={"LEIFDB_UNSAFE_TEST_WRITEBACK_FS": "1"})
    options.parseOptions(["--host", "127.0.0.1", *args])
    return options.config


def test_the_option_is_off_by_default_and_no_environment_turns_it_on(tmp_path):
    config = parse(["--data-dir", str(tmp_path / "d")])
    assert config.unsafe_test_writeback_fs is False
    assert tap.storage_file_system(config) is REAL_FS


def test_the_option_puts_the_storage_on_the_write_back_file_system(tmp_path):
    config = parse(["--data-dir", str(tmp_path / "d"), "--unsafe-test-writeback-fs"])
    assert config.unsafe_test_writeback_fs is True
    fs = tap.storage_file_system(config)
    assert isinstance(fs, WritebackFileSystem) and fs.root == str(tmp_path / "d")


def test_the_help_says_the_option_is_for_tests_only():
    text = " ".join(str(Options(environ={})).split())
    assert "--unsafe-test-writeback-fs TEST ONLY, NEVER IN PRODUCTION" in text


@pytest.mark.parametrize(
    ("killed_at", "kept"),
    [
        (1, {"f": b"old"}),  # while writing the created "f.tmp" back
        (2, {"f": b"old", "f.tmp": b"new"}),  # after the creation, before the rename
        (None, {"f": b"new"}),
    ],
)
def test_a_kill_during_a_directory_fsync_leaves_a_prefix_of_its_changes(
    tmp_path, monkeypatch, killed_at, kept
):
    """The directory's changes are written back in order, each atomically (a file by a
    temporary ``*.writeback~`` renamed into place): a kill between two real calls leaves
    a prefix of them, as a power cut during the fsync may."""
    fs = WritebackFileSystem(tmp_path)
    atomic_write(fs, tmp_path / "f", b"old")
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(Path(dst).name)
        if len(calls) == killed_at:
            raise KeyboardInterrupt  # the process dies here
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    if killed_at is None:
        atomic_write(fs, tmp_path / "f", b"new")
    else:
        with pytest.raises(KeyboardInterrupt):
            atomic_write(fs, tmp_path / "f", b"new")
    monkeypatch.undo()
    assert calls == ["f.tmp", "f"][: killed_at or 2]
    assert cached(WritebackFileSystem(tmp_path), str(tmp_path)) == kept
    assert on_disk(tmp_path) == kept
