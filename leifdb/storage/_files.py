"""Small file-system helpers shared by the storage modules: durable writes, directory
creation and fsync, atomically replaced state files, and the logger the storage writes to.
Every call goes through a ``leifdb.storage.fs.FileSystem``.

The storage layer must not import Twisted, so it logs through ``StorageLogger``: anything
with ``info``/``warn`` taking a PEP 3101 format and keyword fields. ``twisted.logger.Logger``
fits as is; the default forwards to the standard library's ``logging``.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Protocol

from leifdb.storage.checksum import crc32c
from leifdb.storage.errors import StorageCorruption
from leifdb.storage.fs import FileSystem

TMP_SUFFIX = ".tmp"


class StorageLogger(Protocol):
    def info(self, format: str, **kwargs: object) -> None: ...

    def warn(self, format: str, **kwargs: object) -> None: ...


class StdlibLogger:
    """Default ``StorageLogger``: formats and hands the line to ``logging``."""

    def __init__(self, name: str = "leifdb.storage") -> None:
        self._log = logging.getLogger(name)

    def info(self, format: str, **kwargs: object) -> None:
        self._log.info(format.format(**kwargs))

    def warn(self, format: str, **kwargs: object) -> None:
        self._log.warning(format.format(**kwargs))


def write_all(fs: FileSystem, fd: int, data: bytes | bytearray | memoryview) -> None:
    """``write`` until every byte is written (a regular file may take fewer)."""
    view = memoryview(data)
    while view:
        written = fs.write(fd, view)
        view = view[written:]


def make_dirs(fs: FileSystem, path: Path) -> bool:
    """Create ``path`` and any missing parents, each creation made durable (the parent's
    directory fsynced) before anything is put inside it. True if anything was created."""
    if fs.is_dir(path):
        return False
    parent = path.parent
    if parent != path:
        make_dirs(fs, parent)
    try:
        fs.mkdir(path)
    except FileExistsError:
        if not fs.is_dir(path):
            raise
        return False
    fs.fsync_dir(parent)
    return True


def atomic_write(fs: FileSystem, path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves either the old or the new content:
    write a temporary file, fsync it, rename it over ``path``, fsync the directory."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fs, fd, data)
        fs.fsync(fd)
    finally:
        fs.close(fd)
    fs.replace(tmp, path)
    fs.fsync_dir(path.parent)


# A state file: magic (8 bytes), payload length (u32), CRC-32C of the payload (u32), payload.
_ENVELOPE = struct.Struct("<8sII")


def write_state_file(fs: FileSystem, path: Path, magic: bytes, payload: bytes) -> None:
    """Atomically write a small checksummed file (hard state, snapshot boundary)."""
    atomic_write(fs, path, _ENVELOPE.pack(magic, len(payload), crc32c(payload)) + payload)


def read_state_file(fs: FileSystem, path: Path, magic: bytes) -> bytes | None:
    """The payload of a file written by ``write_state_file``, or None if there is none.

    Written atomically, such a file is never torn, so any defect is corruption."""
    try:
        raw = fs.read_file(path)
    except FileNotFoundError:
        return None
    if len(raw) < _ENVELOPE.size:
        raise StorageCorruption(path, 0, f"file is {len(raw)} bytes, shorter than its header")
    found, length, crc = _ENVELOPE.unpack_from(raw)
    if found != magic:
        raise StorageCorruption(path, 0, f"bad magic {found!r}, expected {magic!r}")
    payload = raw[_ENVELOPE.size :]
    if len(payload) != length:
        raise StorageCorruption(path, 8, f"payload is {len(payload)} bytes, header says {length}")
    if crc32c(payload) != crc:
        raise StorageCorruption(path, _ENVELOPE.size, "checksum mismatch")
    return payload


def names_ending(fs: FileSystem, directory: Path, suffix: str) -> list[Path]:
    """The entries of ``directory`` whose name ends with ``suffix``, sorted."""
    return [directory / name for name in sorted(fs.listdir(directory)) if name.endswith(suffix)]


def remove_stale_tmp(fs: FileSystem, directory: Path) -> None:
    """Delete temporary files a crash left behind (they were never renamed into place).
    Not made durable here: one that comes back after a power loss is removed again."""
    for tmp in names_ending(fs, directory, TMP_SUFFIX):
        try:
            fs.unlink(tmp)
        except FileNotFoundError:
            pass
