"""``WritebackFileSystem``: the power-cut model of ``SimFileSystem`` for a real process.

TEST ONLY, UNSAFE (``twistd leifdb --unsafe-test-writeback-fs``; the Jepsen-style fault
test's power-cut nemesis). A ``SIGKILL`` of a process on the real file system loses nothing
it wrote: the kernel's page cache outlives the process, so a missing ``fsync`` never shows.
Here the process keeps its own page cache: everything the storage reads comes from an
in-memory ``SimFileSystem`` (loaded from ``root`` at start), and the real directory ``root``
receives only what the ``FileSystem`` contract makes durable (``leifdb.storage.fs``):

- a file's bytes, when that file is ``fsync``/``fdatasync``ed, if its name is on disk
  (else they wait in memory until its directory is fsynced);
- a creation, rename or removal of a name, when its directory is ``fsync_dir``ed: the
  changes pending in that directory are replayed on disk in their order, each atomically
  (a renamed file by ``os.replace``; a file that newly appears is written to a temporary
  ``*.writeback~`` and renamed into place).

So ``root`` always holds the durable state, and killing the process at any moment is a
power cut of its machine (``SimFileSystem.power_cut()`` with nothing un-synced kept). A kill
in the middle of a sync may leave that one call half done, as a power cut during it would:
a prefix of the appended bytes, or a prefix of the directory's changes.

What it does not model: un-synced writes that happen to reach the disk before the cut
(``keep_unsynced``), torn sectors inside one write, or a process crash that keeps the page
cache. Nothing is made durable against a real power loss (no real ``fsync`` is issued).
Limits, none of which the storage needs: changes outside ``root``, renames across
directories and renaming a directory are refused; symbolic links under ``root`` are refused
at load. The exclusive lock is a real ``flock`` on ``root`` itself, so two write-back
processes never share a data directory (a process on the real file system locks ``LOCK``
instead: do not mix them on one directory).
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
from typing import Union

from leifdb.storage.fs import StrPath
from leifdb.storage.simfs import SYNC_CALLS, SimFileSystem, SimStat, _Dir, _File

__all__ = ["WRITEBACK_TMP_SUFFIX", "WritebackFileSystem"]

WRITEBACK_TMP_SUFFIX = ".writeback~"
"""Suffix of the temporary files of atomic replacements on disk (removed at load)."""

_Node = Union[_File, _Dir]


class _OnDisk:
    """A node present in ``root``, and where. A file's bytes on disk are its durable bytes
    (``_File.durable``): every sync writes the difference back."""

    __slots__ = ("node", "path")

    def __init__(self, node: _Node, path: str) -> None:
        self.node = node  # keeps the node alive, so its id is not reused
        self.path = path


class WritebackFileSystem(SimFileSystem):
    """A ``FileSystem`` whose cache lives in this process and whose durable state is the
    real directory ``root`` (see the module docstring). Paths are absolute real paths;
    ``root`` must exist. ``writebacks`` counts the real files written or replaced."""

    def __init__(self, root: StrPath) -> None:
        super().__init__()
        self.root = _real(root)
        if not os.path.isdir(self.root):
            missing = not os.path.lexists(self.root)
            raise (FileNotFoundError if missing else NotADirectoryError)(
                errno.ENOENT if missing else errno.ENOTDIR, "no write-back root", self.root
            )
        self._guarded = False
        self._on_disk: dict[int, _OnDisk] = {}
        self._real_lock: int | None = None
        self._lock_holder: int | None = None
        self.writebacks = 0
        self._load()
        self._guarded = True

    # ------------------------------------------------------------------ start-up

    def _load(self) -> None:
        """Build the cache from ``root``: every file and directory under it, all durable,
        and the directories above it (outside the model: never written)."""
        ancestors = []
        path = self.root
        while path != os.path.dirname(path):
            ancestors.append(path)
            path = os.path.dirname(path)
        for directory in reversed(ancestors):
            self.mkdir(directory)
        loaded = [self.root]
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in sorted(dirnames):
                real = os.path.join(dirpath, name)
                if os.path.islink(real):
                    raise OSError(errno.ELOOP, "write-back file system: symbolic link", real)
                self.mkdir(real)
                loaded.append(real)
            for name in sorted(filenames):
                real = os.path.join(dirpath, name)
                if os.path.islink(real):
                    raise OSError(errno.ELOOP, "write-back file system: symbolic link", real)
                if name.endswith(WRITEBACK_TMP_SUFFIX):
                    os.unlink(real)  # a replacement the previous process did not finish
                    continue
                with open(real, "rb") as f:
                    content = f.read()
                fd = self.open(real, os.O_WRONLY | os.O_CREAT)
                self.write(fd, content)
                self.fsync(fd)
                self.close(fd)
        for directory in ["/", *ancestors[1:], *loaded]:
            self.fsync_dir(directory)
        self._register(self.root, self._lookup(self.root))

    def _register(self, path: str, node: _Node) -> None:
        """Record ``node`` (and, for a directory, its durable entries) as present at
        ``path`` on disk."""
        self._on_disk[id(node)] = _OnDisk(node, path)
        if isinstance(node, _Dir):
            for name, child in node.durable.items():
                self._register(os.path.join(path, name), child)

    # ------------------------------------------------------------------ FileSystem
    # Paths are real paths: relative ones start at the working directory, ``..`` is
    # resolved (``SimFileSystem`` alone would start at its own root and refuse ``..``).

    def open(self, path: StrPath, flags: int, mode: int = 0o777) -> int:
        return super().open(_real(path), flags, mode)

    def read_file(self, path: StrPath) -> bytes:
        return super().read_file(_real(path))

    def stat(self, path: StrPath) -> SimStat:
        return super().stat(_real(path))

    def exists(self, path: StrPath) -> bool:
        return super().exists(_real(path))

    def is_dir(self, path: StrPath) -> bool:
        return super().is_dir(_real(path))

    def listdir(self, path: StrPath) -> list[str]:
        return super().listdir(_real(path))

    def mkdir(self, path: StrPath) -> None:
        super().mkdir(_real(path))

    def unlink(self, path: StrPath) -> None:
        super().unlink(_real(path))

    def fsync_dir(self, path: StrPath) -> None:
        key = _real(path)
        with self._mutex:
            try:
                node = self._lookup(key)
            except OSError:
                node = None  # super() raises the right error
            changes = list(node.pending) if isinstance(node, _Dir) else []
            names = dict(node.durable) if isinstance(node, _Dir) else {}
            super().fsync_dir(key)
            record = self._on_disk.get(id(node))
            if record is not None:
                for change in changes:
                    self._replay(record.path, names, change)

    def replace(self, source: StrPath, target: StrPath) -> None:
        src, dst = _real(source), _real(target)
        if os.path.dirname(src) != os.path.dirname(dst):
            raise OSError(errno.EXDEV, "write-back file system: rename across directories",
                          f"{src} -> {dst}")
        if self.is_dir(src):
            raise IsADirectoryError(errno.EISDIR, "write-back file system: directory rename", src)
        super().replace(src, dst)

    def flock(self, fd: int) -> None:
        """The in-memory lock, and a real ``flock`` on ``root`` that goes with the same
        descriptor: another process on this data directory gets ``BlockingIOError``."""
        with self._mutex:
            taken = None
            if self._real_lock is None:
                taken = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    fcntl.flock(taken, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BaseException:
                    os.close(taken)
                    raise
            try:
                super().flock(fd)
            except BaseException:
                if taken is not None:
                    os.close(taken)
                raise
            if taken is not None:
                self._real_lock, self._lock_holder = taken, fd

    def close(self, fd: int) -> None:
        with self._mutex:
            super().close(fd)
            if fd == self._lock_holder:
                self._release_real_lock()

    def power_cut(
        self,
        rng: random.Random | None = None,
        *,
        keep_unsynced: bool = False,
        zero_fill: bool = False,
    ) -> None:
        """Only the strict cut (the cache falls back to what ``root`` holds): un-synced
        writes kept by chance would exist in memory but not on disk."""
        if keep_unsynced:
            raise ValueError("a write-back file system keeps nothing un-synced at a power cut")
        super().power_cut()

    def __repr__(self) -> str:
        return f"WritebackFileSystem({self.root!r})"

    # ------------------------------------------------------------------ write-back

    def _sync(self, node: _File) -> None:  # type: ignore[override]
        """``fsync``/``fdatasync`` of ``node``: its cached bytes become durable and, if
        its name is on disk, its file there gets them. Appends (the log's group commit)
        cost what they add, not the file's size: ``durable`` grows in place."""
        record = self._on_disk.get(id(node))
        tail = _appended(node.pending, len(node.durable))
        if tail is None:
            node.durable = bytearray(node.data)
            if record is not None:
                _replace_file(record.path, node.durable)
                self.writebacks += 1
        elif tail:
            if not isinstance(node.durable, bytearray):
                node.durable = bytearray(node.durable)
            node.durable += tail
            if record is not None:
                fd = os.open(record.path, os.O_WRONLY | os.O_APPEND)
                try:
                    _write_all(fd, tail)
                finally:
                    os.close(fd)
                self.writebacks += 1
        node.pending = []

    def _replay(self, directory: str, names: dict[str, _Node], change: tuple) -> None:
        """Apply one atomic change of a directory's names on disk; ``names`` is what the
        directory holds on disk, updated."""
        if len(change) == 2 and change[1][1] is None:
            (target, node), (source, _) = change
            if node is not None and names.get(source) is node:
                self._forget(names.get(target))
                os.replace(os.path.join(directory, source), os.path.join(directory, target))
                self._on_disk[id(node)].path = os.path.join(directory, target)
                names[target] = node
                del names[source]
                return
        for name, node in change:
            real = os.path.join(directory, name)
            old = names.get(name)
            if node is None:
                if old is not None:
                    os.unlink(real)  # directories are never removed (unlink refuses them)
                    self._forget(old)
                    del names[name]
            elif old is not node:
                self._materialize(real, node)
                self._forget(old)
                names[name] = node

    def _materialize(self, path: str, node: _Node) -> None:
        """Put ``node``'s durable state at ``path`` on disk (a file atomically)."""
        if isinstance(node, _Dir):
            os.mkdir(path)
            self._on_disk[id(node)] = _OnDisk(node, path)
            for name, child in node.durable.items():
                self._materialize(os.path.join(path, name), child)
        else:
            _replace_file(path, node.durable)
            self.writebacks += 1
            self._on_disk[id(node)] = _OnDisk(node, path)

    def _forget(self, node: _Node | None) -> None:
        if node is not None:
            self._on_disk.pop(id(node), None)

    # ------------------------------------------------------------------ guards

    def _mutating(self, call: str, path: str) -> None:
        if self._guarded and call not in SYNC_CALLS:
            for one in path.split(" -> "):
                if one != self.root and not one.startswith(self.root + "/"):
                    raise PermissionError(
                        errno.EACCES, f"write-back file system: {call} outside {self.root}", one
                    )
        super()._mutating(call, path)

    def _reboot(self) -> None:
        super()._reboot()
        self._release_real_lock()

    def _release_real_lock(self) -> None:
        if self._real_lock is not None:
            real, self._real_lock, self._lock_holder = self._real_lock, None, None
            os.close(real)


def _real(path: StrPath) -> str:
    """The absolute, normalised path (the key of the in-memory tree)."""
    raw = os.fspath(path)
    return os.path.abspath(raw.decode() if isinstance(raw, bytes) else raw)


def _appended(pending: list[tuple], size: int) -> bytes | None:
    """The bytes ``pending`` appends to a file of ``size`` bytes, or None if it does
    anything but append (an overwrite, a truncation, a write past the end)."""
    tail = []
    for op in pending:
        if op[0] != "w" or op[1] != size:
            return None
        tail.append(op[2])
        size += len(op[2])
    return b"".join(tail)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    """``os.write`` until all is written; the views are released even on an error, so a
    ``durable`` bytearray written here can still grow afterwards."""
    with memoryview(data) as whole:
        done = 0
        while done < len(whole):
            with whole[done:] as rest:
                done += os.write(fd, rest)


def _replace_file(path: str, content: bytes | bytearray) -> None:
    """Make ``path`` hold ``content``, atomically for a process that is killed meanwhile."""
    tmp = path + WRITEBACK_TMP_SUFFIX
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, content)
    finally:
        os.close(fd)
    os.replace(tmp, path)
