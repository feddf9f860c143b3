"""``SimFileSystem``: an in-memory ``FileSystem`` that knows what a power cut keeps.

TEST-ONLY (nothing here is durable past the process). In the spirit of LazyFS and of
dragonboat's power-loss tests, it keeps apart, per file and per directory, what is durable
and what is only cached, with the strict POSIX rules the storage must not rely on beating:

- a file's bytes and size become durable only on ``fsync``/``fdatasync`` of that file;
- a name created, renamed or removed (file or directory) becomes durable only on
  ``fsync_dir`` of its directory. A file fsynced under a name that is not durable is lost.

``power_cut()`` keeps exactly the durable state. ``power_cut(rng, keep_unsynced=True)`` also
keeps, per file and per directory independently, a random prefix of the operations since
its last sync, the next write possibly torn at any byte (``zero_fill=True``: torn at a
sector boundary with the file's size already extended, so the rest reads as zeros).
``crash()`` is a process crash (``kill -9``): descriptors and locks go, the page cache stays.

To crash in the middle of an operation, ``crash_after(n)`` lets ``n`` more mutating calls
through (creating opens, writes, truncations, syncs, renames, removals, mkdirs) and makes
the next one raise ``SimulatedCrash`` instead of running (``only=SYNC_CALLS``: count and
stop only syncs, the moments where cached and durable state differ most).
``SimulatedCrash`` derives from ``BaseException`` so no ``except OSError``/``except
Exception`` in the storage swallows it; every call then raises it again until the test
calls ``power_cut()`` or ``crash()``.

Paths are POSIX paths in the simulated tree (relative ones start at its root ``/``); ``..``
is not supported. Only stdlib imports: the node-level simulation can use it as a storage
mode without pytest.
"""

from __future__ import annotations

import errno
import functools
import os
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Union

from leifdb.storage.fs import StrPath

__all__ = ["SECTOR", "SYNC_CALLS", "SimFileSystem", "SimStat", "SimulatedCrash"]

SECTOR = 512
SYNC_CALLS = frozenset({"fsync", "fdatasync", "fsync_dir"})
_FIRST_FD = 10_000  # far from real descriptors, so a mix-up fails loudly
_SUPPORTED_FLAGS = (
    os.O_ACCMODE | os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
)


class SimulatedCrash(BaseException):
    """The simulated machine (or process) died during this call; it did not happen."""

    def __init__(self, call: str, path: str) -> None:
        super().__init__(f"simulated crash at {call} {path}")
        self.call = call
        self.path = path


@dataclass(frozen=True)
class SimStat:
    st_size: int
    st_mtime_ns: int
    is_dir: bool


class _File:
    __slots__ = ("data", "durable", "pending", "version")

    def __init__(self) -> None:
        self.data = bytearray()  # what reads see (the page cache)
        self.durable = b""  # what a power cut keeps
        # since the last sync, in order: ("w", offset, bytes) or ("t", size)
        self.pending: list[tuple] = []
        self.version = 0


_Node = Union[_File, "_Dir"]


class _Dir:
    __slots__ = ("entries", "durable", "pending")

    def __init__(self) -> None:
        self.entries: dict[str, _Node] = {}
        self.durable: dict[str, _Node] = {}
        # since the last fsync, in order; each is one atomic change of several names
        # (a rename sets one and removes the other), None meaning removed.
        self.pending: list[tuple[tuple[str, _Node | None], ...]] = []

    def change(self, *changes: tuple[str, _Node | None]) -> None:
        for name, node in changes:
            if node is None:
                del self.entries[name]
            else:
                self.entries[name] = node
        self.pending.append(changes)


class _Handle:
    __slots__ = ("node", "path", "readable", "writable", "append", "pos")

    def __init__(self, node: _File, path: str, flags: int) -> None:
        access = flags & os.O_ACCMODE
        self.node = node
        self.path = path
        self.readable = access in (os.O_RDONLY, os.O_RDWR)
        self.writable = access in (os.O_WRONLY, os.O_RDWR)
        self.append = bool(flags & os.O_APPEND)
        self.pos = 0


class SimFileSystem:
    """In-memory ``leifdb.storage.fs.FileSystem`` with durable and cached state (see the
    module docstring). ``calls`` counts every call by name; ``trace`` (if enabled) lists
    ``(call, path)`` of every mutating call in order."""

    def __init__(self, *, trace: bool = False) -> None:
        self._root = _Dir()
        self._fds: dict[int, _Handle] = {}
        self._next_fd = _FIRST_FD
        self._locks: dict[int, int] = {}  # id(file) -> fd holding the flock
        self._clock = 0
        self._crash_in: int | None = None
        self._crash_only: frozenset[str] | None = None
        self._dead: SimulatedCrash | None = None
        self._mutex = threading.RLock()
        self.calls: Counter[str] = Counter()
        self.trace: list[tuple[str, str]] | None = [] if trace else None
        self.mutations = 0
        self.syncs = 0
        self.power_cuts = 0
        self.crashes = 0

    # ------------------------------------------------------------------ fault control

    def crash_after(self, calls: int | None, *, only: frozenset[str] | None = None) -> None:
        """Let ``calls`` more mutating calls run (or only calls named in ``only``); the
        next raises ``SimulatedCrash``. ``None`` cancels. ``mutations`` and ``syncs`` count
        the calls made so far."""
        if calls is not None and calls < 0:
            raise ValueError("calls must be >= 0")
        self._crash_in = calls
        self._crash_only = only

    @property
    def dead(self) -> bool:
        """A scheduled crash fired and neither ``power_cut`` nor ``crash`` followed yet."""
        return self._dead is not None

    def crash(self) -> None:
        """A process crash: every descriptor closes and every lock drops; the page cache
        (all written data and names, synced or not) stays."""
        with self._mutex:
            self._reboot()
            self.crashes += 1

    def power_cut(
        self,
        rng: random.Random | None = None,
        *,
        keep_unsynced: bool = False,
        zero_fill: bool = False,
    ) -> None:
        """A power loss: only durable state stays (descriptors and locks go too).

        With ``keep_unsynced`` (needs ``rng``), each file and each directory independently
        also keeps a random prefix of its operations since its last sync (writeback that
        happened to run), and the next write of a file may be torn: cut at any byte, or
        with ``zero_fill`` at a sector boundary inside it, the file's size extended past
        it so that the lost sectors read as zeros."""
        if keep_unsynced and rng is None:
            raise ValueError("keep_unsynced needs an rng")
        with self._mutex:
            self._clock += 1
            seen: set[int] = set()
            self._settle_dir(self._root, rng if keep_unsynced else None, zero_fill, seen)
            self._reboot()
            self.power_cuts += 1

    def tree(self, *, durable: bool = False) -> dict[str, bytes | None]:
        """Every path in the tree (``None`` for directories) and its content: as reads
        see it, or (``durable``) as a power cut would leave it (unsynced ops dropped)."""
        with self._mutex:
            found: dict[str, bytes | None] = {}
            self._walk(self._root, "", durable, found, set())
            return found

    @property
    def open_descriptors(self) -> int:
        return len(self._fds)

    # ------------------------------------------------------------------ FileSystem

    def open(self, path: StrPath, flags: int, mode: int = 0o777) -> int:
        if flags & ~_SUPPORTED_FLAGS:
            raise ValueError(f"SimFileSystem.open: unsupported flags {flags:#o}")
        with self._mutex:
            key = _key(path)
            creating = bool(flags & (os.O_CREAT | os.O_TRUNC))
            if creating:
                self._mutating("open", key)
            else:
                self._reading("open")
            parent, name = self._parent(key)
            node = parent.entries.get(name)
            if node is None:
                if not flags & os.O_CREAT:
                    raise _error(FileNotFoundError, errno.ENOENT, key)
                node = _File()
                node.version = self._clock
                parent.change((name, node))
            elif flags & os.O_CREAT and flags & os.O_EXCL:
                raise _error(FileExistsError, errno.EEXIST, key)
            if isinstance(node, _Dir):
                raise _error(IsADirectoryError, errno.EISDIR, key)
            handle = _Handle(node, key, flags)
            if flags & os.O_TRUNC and handle.writable:
                self._truncate(node, 0)
            fd = self._next_fd
            self._next_fd += 1
            self._fds[fd] = handle
            return fd

    def close(self, fd: int) -> None:
        with self._mutex:
            self._reading("close")
            handle = self._handle(fd)
            del self._fds[fd]
            if self._locks.get(id(handle.node)) == fd:
                del self._locks[id(handle.node)]

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        with self._mutex:
            handle = self._handle(fd)
            self._mutating("write", handle.path)
            if not handle.writable:
                raise _error(OSError, errno.EBADF, handle.path)
            offset = len(handle.node.data) if handle.append else handle.pos
            written = self._write(handle.node, offset, bytes(data))
            handle.pos = offset + written
            return written

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> int:
        with self._mutex:
            handle = self._handle(fd)
            self._mutating("pwrite", handle.path)
            if not handle.writable:
                raise _error(OSError, errno.EBADF, handle.path)
            if handle.append:  # Linux: pwrite on an O_APPEND descriptor appends
                offset = len(handle.node.data)
            return self._write(handle.node, offset, bytes(data))

    def pread(self, fd: int, count: int, offset: int) -> bytes:
        with self._mutex:
            self._reading("pread")
            handle = self._handle(fd)
            if not handle.readable:
                raise _error(OSError, errno.EBADF, handle.path)
            return bytes(handle.node.data[offset : offset + count])

    def ftruncate(self, fd: int, length: int) -> None:
        with self._mutex:
            handle = self._handle(fd)
            self._mutating("ftruncate", handle.path)
            if not handle.writable:
                raise _error(OSError, errno.EINVAL, handle.path)
            self._truncate(handle.node, length)

    def fdatasync(self, fd: int) -> None:
        with self._mutex:
            handle = self._handle(fd)
            self._mutating("fdatasync", handle.path)
            self._sync(handle.node)

    def fsync(self, fd: int) -> None:
        with self._mutex:
            handle = self._handle(fd)
            self._mutating("fsync", handle.path)
            self._sync(handle.node)

    def flock(self, fd: int) -> None:
        with self._mutex:
            self._reading("flock")
            handle = self._handle(fd)
            holder = self._locks.setdefault(id(handle.node), fd)
            if holder != fd:
                raise _error(BlockingIOError, errno.EWOULDBLOCK, handle.path)

    def read_file(self, path: StrPath) -> bytes:
        with self._mutex:
            self._reading("read_file")
            key = _key(path)
            node = self._lookup(key)
            if isinstance(node, _Dir):
                raise _error(IsADirectoryError, errno.EISDIR, key)
            return bytes(node.data)

    def stat(self, path: StrPath) -> SimStat:
        with self._mutex:
            self._reading("stat")
            node = self._lookup(_key(path))
            if isinstance(node, _Dir):
                return SimStat(0, 0, True)
            return SimStat(len(node.data), node.version, False)

    def exists(self, path: StrPath) -> bool:
        with self._mutex:
            self._reading("exists")
            try:
                self._lookup(_key(path))
            except (FileNotFoundError, NotADirectoryError):
                return False
            return True

    def is_dir(self, path: StrPath) -> bool:
        with self._mutex:
            self._reading("is_dir")
            try:
                return isinstance(self._lookup(_key(path)), _Dir)
            except (FileNotFoundError, NotADirectoryError):
                return False

    def listdir(self, path: StrPath) -> list[str]:
        with self._mutex:
            self._reading("listdir")
            key = _key(path)
            node = self._lookup(key)
            if not isinstance(node, _Dir):
                raise _error(NotADirectoryError, errno.ENOTDIR, key)
            return sorted(node.entries)

    def mkdir(self, path: StrPath) -> None:
        with self._mutex:
            key = _key(path)
            self._mutating("mkdir", key)
            parent, name = self._parent(key)
            if name in parent.entries:
                raise _error(FileExistsError, errno.EEXIST, key)
            parent.change((name, _Dir()))

    def replace(self, source: StrPath, target: StrPath) -> None:
        with self._mutex:
            src, dst = _key(source), _key(target)
            self._mutating("replace", f"{src} -> {dst}")
            src_dir, src_name = self._parent(src)
            dst_dir, dst_name = self._parent(dst)
            node = src_dir.entries.get(src_name)
            if node is None:
                raise _error(FileNotFoundError, errno.ENOENT, src)
            existing = dst_dir.entries.get(dst_name)
            if isinstance(existing, _Dir) and not isinstance(node, _Dir):
                raise _error(IsADirectoryError, errno.EISDIR, dst)
            if isinstance(node, _Dir) and existing is not None:
                raise _error(OSError, errno.ENOTEMPTY, dst)  # not needed by the storage
            if existing is node:
                return
            if src_dir is dst_dir:
                src_dir.change((dst_name, node), (src_name, None))
            else:
                dst_dir.change((dst_name, node))
                src_dir.change((src_name, None))

    def unlink(self, path: StrPath) -> None:
        with self._mutex:
            key = _key(path)
            self._mutating("unlink", key)
            parent, name = self._parent(key)
            node = parent.entries.get(name)
            if node is None:
                raise _error(FileNotFoundError, errno.ENOENT, key)
            if isinstance(node, _Dir):
                raise _error(IsADirectoryError, errno.EISDIR, key)
            parent.change((name, None))

    def fsync_dir(self, path: StrPath) -> None:
        with self._mutex:
            key = _key(path)
            self._mutating("fsync_dir", key)
            node = self._lookup(key)
            if not isinstance(node, _Dir):
                raise _error(NotADirectoryError, errno.ENOTDIR, key)
            node.durable = dict(node.entries)
            node.pending = []

    def __repr__(self) -> str:
        return f"SimFileSystem(mutations={self.mutations}, power_cuts={self.power_cuts})"

    # ------------------------------------------------------------------ internals

    def _mutating(self, call: str, path: str) -> None:
        if self._dead is not None:
            raise SimulatedCrash(call, path) from self._dead
        if self._crash_in is not None and (self._crash_only is None or call in self._crash_only):
            if self._crash_in == 0:
                self._crash_in = None
                self._dead = SimulatedCrash(call, path)
                raise self._dead
            self._crash_in -= 1
        self.mutations += 1
        if call in SYNC_CALLS:
            self.syncs += 1
        self._clock += 1
        self.calls[call] += 1
        if self.trace is not None:
            self.trace.append((call, path))

    def _reading(self, call: str) -> None:
        if self._dead is not None:
            raise SimulatedCrash(call, "") from self._dead
        self.calls[call] += 1

    def _reboot(self) -> None:
        self._fds.clear()
        self._locks.clear()
        self._dead = None
        self._crash_in = None

    def _handle(self, fd: int) -> _Handle:
        handle = self._fds.get(fd)
        if handle is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return handle

    def _lookup(self, key: str) -> _Node:
        return self._lookup_parts(_split(key), key)

    def _lookup_parts(self, parts: tuple[str, ...], key: str) -> _Node:
        node: _Node = self._root
        for name in parts:
            if not isinstance(node, _Dir):
                raise _error(NotADirectoryError, errno.ENOTDIR, key)
            child = node.entries.get(name)
            if child is None:
                raise _error(FileNotFoundError, errno.ENOENT, key)
            node = child
        return node

    def _parent(self, key: str) -> tuple[_Dir, str]:
        parts = _split(key)
        if not parts:
            raise _error(OSError, errno.EBUSY, key)  # the root itself
        parent = self._lookup_parts(parts[:-1], key)
        if not isinstance(parent, _Dir):
            raise _error(NotADirectoryError, errno.ENOTDIR, key)
        return parent, parts[-1]

    def _write(self, node: _File, offset: int, data: bytes) -> int:
        if data:
            _apply(node.data, ("w", offset, data))
            node.pending.append(("w", offset, data))
            node.version = self._clock
        return len(data)

    def _truncate(self, node: _File, size: int) -> None:
        _apply(node.data, ("t", size))
        node.pending.append(("t", size))
        node.version = self._clock

    @staticmethod
    def _sync(node: _File) -> None:
        node.durable = bytes(node.data)
        node.pending = []

    def _settle_dir(
        self, d: _Dir, rng: random.Random | None, zero_fill: bool, seen: set[int]
    ) -> None:
        """Power cut: ``d`` keeps its durable names (plus a random prefix of the pending
        changes); then the same for everything still reachable below it."""
        if id(d) in seen:
            return
        seen.add(id(d))
        entries = dict(d.durable)
        if rng is not None and d.pending:
            for changes in d.pending[: rng.randint(0, len(d.pending))]:
                for name, node in changes:
                    if node is None:
                        entries.pop(name, None)
                    else:
                        entries[name] = node
        d.entries, d.durable, d.pending = entries, dict(entries), []
        for name in sorted(entries):
            child = entries[name]
            if isinstance(child, _Dir):
                self._settle_dir(child, rng, zero_fill, seen)
            elif id(child) not in seen:
                seen.add(id(child))
                self._settle_file(child, rng, zero_fill)

    def _settle_file(self, f: _File, rng: random.Random | None, zero_fill: bool) -> None:
        content = bytearray(f.durable)
        if rng is not None and f.pending:
            kept = rng.randint(0, len(f.pending))
            for op in f.pending[:kept]:
                _apply(content, op)
            if kept < len(f.pending) and f.pending[kept][0] == "w" and rng.random() < 0.5:
                _, offset, data = f.pending[kept]
                _tear(content, offset, data, rng, zero_fill)
        f.durable = bytes(content)
        f.data = content
        f.pending = []
        f.version = self._clock

    def _walk(
        self, d: _Dir, prefix: str, durable: bool, found: dict[str, bytes | None], seen: set
    ) -> None:
        if id(d) in seen:
            return
        seen.add(id(d))
        entries = d.durable if durable else d.entries
        for name in sorted(entries):
            node = entries[name]
            path = f"{prefix}/{name}"
            if isinstance(node, _Dir):
                found[path] = None
                self._walk(node, path, durable, found, seen)
            else:
                found[path] = node.durable if durable else bytes(node.data)


def _apply(content: bytearray, op: tuple) -> None:
    if op[0] == "w":
        _, offset, data = op
        if offset > len(content):
            content.extend(bytes(offset - len(content)))
        content[offset : offset + len(data)] = data
    else:
        size = op[1]
        if size < len(content):
            del content[size:]
        else:
            content.extend(bytes(size - len(content)))


def _tear(
    content: bytearray, offset: int, data: bytes, rng: random.Random, zero_fill: bool
) -> None:
    """Apply part of the write ``data`` at ``offset``: a prefix cut at any byte, or (with
    ``zero_fill``, when a sector boundary falls inside it) the sectors before a boundary,
    the file's size covering the whole write and its never-written bytes zero."""
    end = offset + len(data)
    first_boundary = (offset // SECTOR + 1) * SECTOR
    if zero_fill and first_boundary < end:
        cut = rng.randrange(first_boundary, end, SECTOR)
        if len(content) < end:
            content.extend(bytes(end - len(content)))
        content[offset:cut] = data[: cut - offset]
        return
    if len(data) > 1:
        _apply(content, ("w", offset, data[: rng.randint(1, len(data) - 1)]))


def _key(path: StrPath) -> str:
    """The normalised absolute path (``/a/b``), the key the tree is walked by."""
    raw = os.fspath(path)
    if isinstance(raw, bytes):
        raw = raw.decode()
    return _normalise(raw)


@functools.lru_cache(maxsize=4096)
def _normalise(raw: str) -> str:
    return "/" + "/".join(_split(raw))


@functools.lru_cache(maxsize=4096)
def _split(path: str) -> tuple[str, ...]:
    parts = tuple(p for p in path.split("/") if p and p != ".")
    if ".." in parts:
        raise ValueError(f"SimFileSystem does not resolve '..': {path}")
    return parts


def _error(cls: type[OSError], code: int, path: str) -> OSError:
    return cls(code, os.strerror(code), path)
