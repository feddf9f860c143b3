"""Small file-system helpers shared by the storage modules: durable writes, directory
fsync, atomically replaced state files, and the logger the storage writes to.

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


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until every byte is written (a regular file may take fewer)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(path: Path) -> None:
    """Make creations, renames and removals of entries in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves either the old or the new content:
    write a temporary file, fsync it, rename it over ``path``, fsync the directory."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


# A state file: magic (8 bytes), payload length (u32), CRC-32C of the payload (u32), payload.
_ENVELOPE = struct.Struct("<8sII")


def write_state_file(path: Path, magic: bytes, payload: bytes) -> None:
    """Atomically write a small checksummed file (hard state, snapshot boundary)."""
    atomic_write(path, _ENVELOPE.pack(magic, len(payload), crc32c(payload)) + payload)


def read_state_file(path: Path, magic: bytes) -> bytes | None:
    """The payload of a file written by ``write_state_file``, or None if there is none.

    Written atomically, such a file is never torn, so any defect is corruption."""
    try:
        raw = path.read_bytes()
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


def remove_stale_tmp(directory: Path) -> None:
    """Delete temporary files a crash left behind (they were never renamed into place)."""
    for tmp in directory.glob("*" + TMP_SUFFIX):
        tmp.unlink(missing_ok=True)
