"""The key-value snapshot format: one deterministic byte stream per state.

Layout of version 2 (integers big-endian, strings UTF-8)::

    header   b"LEIFKVS\\0"  u32 version=2  u64 applied_index  u64 key_count
             u32 metadata_length  metadata
    records  key_count times, in strictly increasing key order:
             u32 key_length  u32 value_length  u64 revision  u64 create_revision
             u64 lease  key  value
    leases   u64 lease_count, then lease_count times, in strictly increasing id order:
             u64 id  u64 ttl_ms  u64 remaining_ms  u64 renewed_index
    trailer  u32 CRC-32 (zlib) of every byte before it; then end of stream

Version 1 (before leases) is still read: its records are ``u32 key_length u32
value_length u64 revision key value``, there is no lease section, and every item reads
with ``create_revision = revision`` and no lease. Only version 2 is written.

The same state always gives the same bytes. Writing and reading are streaming: memory
stays bounded by one record (plus a fixed write buffer, and the lease table, which the
store holds in memory anyway), and a corrupt length can make the reader hit end of stream,
never allocate a huge buffer.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO, Iterable, Iterator

from leifdb.kv.commands import Item

MAGIC = b"LEIFKVS\x00"
VERSION = 2
READABLE_VERSIONS = (1, 2)

# (id, ttl_ms, remaining_ms, renewed_index), as the snapshot stores a lease.
LeaseRecord = tuple[int, int, int, int]

_HEADER = struct.Struct(">8sIQQI")
_RECORD_V1 = struct.Struct(">IIQ")
_RECORD = struct.Struct(">IIQQQ")
_COUNT = struct.Struct(">Q")
_LEASE = struct.Struct(">QQQQ")
_CRC = struct.Struct(">I")
_WRITE_BUFFER = 64 * 1024
_READ_CHUNK = 1024 * 1024
_ENCODING_ERRORS = "surrogatepass"  # any Python str round-trips, even a lone surrogate


class SnapshotFormatError(Exception):
    """The stream is not a complete, intact snapshot this version can read."""


def dump(
    out: BinaryIO,
    applied_index: int,
    count: int,
    items: Iterable[Item],
    metadata: bytes,
    leases: Iterable[LeaseRecord] = (),
) -> None:
    """Write a snapshot of ``count`` items, which must come in increasing key order, and
    of ``leases``, which must come in increasing id order."""
    crc = 0
    buffer = bytearray(_HEADER.pack(MAGIC, VERSION, applied_index, count, len(metadata)))
    buffer += metadata
    written = 0
    for item in items:
        key = item.key.encode("utf-8", _ENCODING_ERRORS)
        value = item.value.encode("utf-8", _ENCODING_ERRORS)
        buffer += _RECORD.pack(
            len(key), len(value), item.revision, item.create_revision, item.lease
        )
        buffer += key
        buffer += value
        written += 1
        if len(buffer) >= _WRITE_BUFFER:
            crc = zlib.crc32(buffer, crc)
            out.write(bytes(buffer))
            buffer.clear()
    if written != count:
        raise ValueError(f"expected {count} items, got {written}")
    leases = list(leases)
    buffer += _COUNT.pack(len(leases))
    for lease in leases:
        buffer += _LEASE.pack(*lease)
    crc = zlib.crc32(buffer, crc)
    buffer += _CRC.pack(crc)
    out.write(bytes(buffer))


class SnapshotReader:
    """Reads the header on construction (so ``applied_index``, ``count``, ``version`` and
    ``metadata`` are available at once); ``items()`` then yields the records and, after
    the last one, reads the lease section into ``leases`` and checks the CRC and the end
    of stream. Every format problem is a SnapshotFormatError; errors of the underlying
    stream (OSError) pass through unchanged."""

    def __init__(self, inp: BinaryIO) -> None:
        self._inp = inp
        self._crc = 0
        magic, version, applied_index, count, metadata_length = _HEADER.unpack(
            self._read(_HEADER.size)
        )
        if magic != MAGIC:
            raise SnapshotFormatError("not a LeifDB key-value snapshot (bad magic)")
        if version not in READABLE_VERSIONS:
            raise SnapshotFormatError(f"unsupported snapshot version {version}")
        self.version: int = version
        self.applied_index: int = applied_index
        self.count: int = count
        self.metadata: bytes = self._read(metadata_length)
        # Filled once ``items()`` is exhausted: every lease, in increasing id order.
        self.leases: list[LeaseRecord] = []
        self._consumed = False

    def items(self) -> Iterator[Item]:
        """Yield each item in key order; raises SnapshotFormatError at the first problem,
        possibly only after the last item (the CRC covers everything). Call once."""
        if self._consumed:
            raise RuntimeError("items() can be consumed only once")
        self._consumed = True
        previous: str | None = None
        for _ in range(self.count):
            item = self._record()
            if previous is not None and item.key <= previous:
                raise SnapshotFormatError("keys are not in strictly increasing order")
            previous = item.key
            yield item
        if self.version >= 2:
            self.leases = self._lease_section()
        expected = self._crc
        (stored,) = _CRC.unpack(self._read(_CRC.size))
        if stored != expected:
            raise SnapshotFormatError("checksum mismatch")
        if self._inp.read(1):
            raise SnapshotFormatError("trailing bytes after the checksum")

    def _record(self) -> Item:
        if self.version == 1:
            key_length, value_length, revision = _RECORD_V1.unpack(self._read(_RECORD_V1.size))
            create_revision, lease = revision, 0
        else:
            key_length, value_length, revision, create_revision, lease = _RECORD.unpack(
                self._read(_RECORD.size)
            )
        key = self._decode(self._read(key_length))
        value = self._decode(self._read(value_length))
        if not 1 <= revision <= self.applied_index:
            raise SnapshotFormatError(f"revision {revision} outside 1..applied_index")
        if not 1 <= create_revision <= revision:
            raise SnapshotFormatError(f"create revision {create_revision} outside 1..revision")
        if lease > self.applied_index:
            raise SnapshotFormatError(f"lease {lease} after the applied index")
        return Item(key, value, revision, create_revision, lease)

    def _lease_section(self) -> list[LeaseRecord]:
        (count,) = _COUNT.unpack(self._read(_COUNT.size))
        leases: list[LeaseRecord] = []
        previous = 0
        for _ in range(count):  # each read is bounded: a bogus count hits end of stream
            lease_id, ttl_ms, remaining_ms, renewed_index = _LEASE.unpack(
                self._read(_LEASE.size)
            )
            if lease_id <= previous:
                raise SnapshotFormatError("lease ids are not strictly increasing from 1")
            if not lease_id <= renewed_index <= self.applied_index:
                raise SnapshotFormatError(
                    f"lease {lease_id}: renewed index {renewed_index} outside id..applied_index"
                )
            if ttl_ms < 1:
                raise SnapshotFormatError(f"lease {lease_id}: TTL 0")
            previous = lease_id
            leases.append((lease_id, ttl_ms, remaining_ms, renewed_index))
        return leases

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

