"""The key-value snapshot format: one deterministic byte stream per state.

Layout (integers big-endian, strings UTF-8)::

    header   b"LEIFKVS\\0"  u32 version=1  u64 applied_index  u64 key_count
             u32 metadata_length  metadata
    records  key_count times, in strictly increasing key order:
             u32 key_length  u32 value_length  u64 revision  key  value
    trailer  u32 CRC-32 (zlib) of every byte before it; then end of stream

The same state always gives the same bytes. Writing and reading are streaming: memory
stays bounded by one record (plus a fixed write buffer), and a corrupt length can make the
reader hit end of stream, never allocate a huge buffer.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO, Iterable, Iterator

from leifdb.kv.commands import Item

MAGIC = b"LEIFKVS\x00"
VERSION = 1

_HEADER = struct.Struct(">8sIQQI")
_RECORD = struct.Struct(">IIQ")
_CRC = struct.Struct(">I")
_WRITE_BUFFER = 64 * 1024
_READ_CHUNK = 1024 * 1024
_ENCODING_ERRORS = "surrogatepass"  # any Python str round-trips, even a lone surrogate


class SnapshotFormatError(Exception):
    """The stream is not a complete, intact snapshot this version can read."""


def dump(
    out: BinaryIO, applied_index: int, count: int, items: Iterable[Item], metadata: bytes
) -> None:
    """Write a snapshot of ``count`` items, which must come in increasing key order."""
    crc = 0
    buffer = bytearray(_HEADER.pack(MAGIC, VERSION, applied_index, count, len(metadata)))
    buffer += metadata
    written = 0
    for item in items:
        key = item.key.encode("utf-8", _ENCODING_ERRORS)
        value = item.value.encode("utf-8", _ENCODING_ERRORS)
        buffer += _RECORD.pack(len(key), len(value), item.revision)
        buffer += key
        buffer += value
        written += 1
        if len(buffer) >= _WRITE_BUFFER:
            crc = zlib.crc32(buffer, crc)
            out.write(bytes(buffer))
            buffer.clear()
    if written != count:
        raise ValueError(f"expected {count} items, got {written}")
    crc = zlib.crc32(buffer, crc)
    buffer += _CRC.pack(crc)
    out.write(bytes(buffer))


class SnapshotReader:
    """Reads the header on construction (so ``applied_index``, ``count`` and ``metadata``
    are available at once); ``items()`` then yields the records and, after the last one,
    checks the CRC and the end of stream. Every format problem is a SnapshotFormatError;
    errors of the underlying stream (OSError) pass through unchanged."""

    def __init__(self, inp: BinaryIO) -> None:
        self._inp = inp
        self._crc = 0
        magic, version, applied_index, count, metadata_length = _HEADER.unpack(
            self._read(_HEADER.size)
        )
        if magic != MAGIC:
            raise SnapshotFormatError("not a LeifDB key-value snapshot (bad magic)")
        if version != VERSION:
            raise SnapshotFormatError(f"unsupported snapshot version {version}")
        self.applied_index: int = applied_index
        self.count: int = count
        self.metadata: bytes = self._read(metadata_length)
        self._consumed = False

    def items(self) -> Iterator[Item]:
        """Yield each item in key order; raises SnapshotFormatError at the first problem,
        possibly only after the last item (the CRC covers everything). Call once."""
        if self._consumed:
            raise RuntimeError("items() can be consumed only once")
        self._consumed = True
        previous: str | None = None
        for _ in range(self.count):
            key_length, value_length, revision = _RECORD.unpack(self._read(_RECORD.size))
            key = self._decode(self._read(key_length))
            value = self._decode(self._read(value_length))
            if previous is not None and key <= previous:
                raise SnapshotFormatError("keys are not in strictly increasing order")
            if not 1 <= revision <= self.applied_index:
                raise SnapshotFormatError(f"revision {revision} outside 1..applied_index")
            previous = key
            yield Item(key, value, revision)
        expected = self._crc
        (stored,) = _CRC.unpack(self._read(_CRC.size))
        if stored != expected:
            raise SnapshotFormatError("checksum mismatch")
        if self._inp.read(1):
            raise SnapshotFormatError("trailing bytes after the checksum")

    def _read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, read in bounded pieces so a bogus length cannot allocate."""
        parts = []
        remaining = n
        while remaining:
            piece = self._inp.read(min(remaining, _READ_CHUNK))
            if not piece:
                raise SnapshotFormatError("truncated snapshot")
            parts.append(piece)
            remaining -= len(piece)
        data = b"".join(parts)
        self._crc = zlib.crc32(data, self._crc)
        return data

    @staticmethod
    def _decode(raw: bytes) -> str:
        try:
            return raw.decode("utf-8", _ENCODING_ERRORS)
        except UnicodeDecodeError as e:
            raise SnapshotFormatError("invalid UTF-8 in a key or value") from e
