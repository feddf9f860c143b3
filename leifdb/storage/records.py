"""Framing of log records and the scan that tells a torn tail from corruption.

A segment file is ``SEGMENT_MAGIC`` followed by records. A record is a 12-byte header and
a payload (integers little-endian)::

    u32 length          of the payload
    u32 payload_crc     CRC-32C of the payload
    u32 header_crc      CRC-32C of the 8 bytes above
    payload             u64 index, u64 term, u8 type, data

The header has its own checksum so that a damaged length is caught before it is trusted:
otherwise one flipped bit in a length could make a record seem to run past the end of the
file and pass for a torn tail, silently dropping the good records after it.

A record is *torn* (written by a crash, never acknowledged) when it runs past the end of the
file, or its bytes fail a checksum and it overlaps a 512-byte sector that is entirely zero,
the trace a disk leaves of a write it did not finish (the rule etcd's WAL uses). Any other
failure is corruption. Only the newest segment can end in a torn record.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field

from leifdb.raft.messages import Entry, EntryType
from leifdb.storage.checksum import crc32c

SEGMENT_MAGIC = b"LEIFLOG\x01"
HEADER = struct.Struct("<III")
_LENGTH_AND_CRC = struct.Struct("<II")
PAYLOAD = struct.Struct("<QQB")
SECTOR = 512
MAX_RECORD = 1 << 31
_ENTRY_TYPES = frozenset(int(t) for t in EntryType)


def encode(entry: Entry) -> bytes:
    """One framed record for ``entry``."""
    payload = PAYLOAD.pack(entry.index, entry.term, int(entry.type)) + entry.data
    if len(payload) > MAX_RECORD:
        raise ValueError(f"entry {entry.index} is too large ({len(entry.data)} bytes)")
    head = _LENGTH_AND_CRC.pack(len(payload), crc32c(payload))
    return head + crc32c(head).to_bytes(4, "little") + payload


@dataclass
class Scan:
    """The result of reading one segment's bytes.

    ``entries``/``offsets``: the intact records, in order, and where each starts.
    ``end``: the byte just after the last intact record. ``problem``: None when the file
    ended cleanly at ``end``; else a description of the record at ``end`` and whether it
    is ``torn`` (see the module docstring) or corrupt."""

    entries: list[Entry] = field(default_factory=list)
    offsets: array = field(default_factory=lambda: array("Q"))
    end: int = 0
    problem: str | None = None
    torn: bool = False


def scan(buf: bytes) -> Scan:
    """Decode the records of a segment file (magic included) up to the first defect."""
    result = Scan()
    size = len(buf)
    if size < len(SEGMENT_MAGIC):
        result.problem = f"file is {size} bytes, shorter than the segment header"
        result.torn = SEGMENT_MAGIC.startswith(buf) or _is_zero(buf)
        return result
    if buf[: len(SEGMENT_MAGIC)] != SEGMENT_MAGIC:
        result.problem = "bad segment magic"
        result.torn = _is_zero(buf[:SECTOR])
        return result
    view = memoryview(buf)
    pos = len(SEGMENT_MAGIC)
    entries = result.entries
    offsets = result.offsets
    unpack_header = HEADER.unpack_from
    unpack_payload = PAYLOAD.unpack_from
    while pos < size:
        if size - pos < HEADER.size:
            result.problem = f"partial record header ({size - pos} bytes)"
            result.torn = True
            break
        length, payload_crc, header_crc = unpack_header(buf, pos)
        if crc32c(view[pos : pos + 8]) != header_crc:
            result.problem = "record header checksum mismatch"
            # Torn: the header lies on a zeroed sector, or everything from it to the end
            # is zero (the file's new size survived a power cut, its data did not, from
            # mid-sector on: ext4 data=writeback, XFS).
            result.torn = _overlaps_zero_sector(buf, pos, pos + HEADER.size) or _is_zero(
                buf[pos:]
            )
            break
        start = pos + HEADER.size
        stop = start + length
        if length < PAYLOAD.size:
            result.problem = f"record length {length} is too small"
            break
        if stop > size:
            result.problem = f"record of {length} bytes runs past the end of the file"
            result.torn = True
            break
        if crc32c(view[start:stop]) != payload_crc:
            result.problem = "record checksum mismatch"
            result.torn = _overlaps_zero_sector(buf, pos, stop) or _is_zero(buf[start:])
            break
        index, term, kind = unpack_payload(buf, start)
        if kind not in _ENTRY_TYPES:
            result.problem = f"unknown entry type {kind}"
            break
        data = bytes(view[start + PAYLOAD.size : stop])
        entries.append(Entry(term, index, EntryType(kind), data))
        offsets.append(pos)
        pos = stop
    result.end = pos
    return result


def _overlaps_zero_sector(buf: bytes, start: int, stop: int) -> bool:
    """Does ``[start, stop)`` overlap a 512-byte-aligned sector (cut short only by the end
    of the file) whose every byte is zero?"""
    size = len(buf)
    sector = start - start % SECTOR
    while sector < stop and sector < size:
        if _is_zero(buf[sector : min(sector + SECTOR, size)]):
            return True
        sector += SECTOR
    return False


def _is_zero(chunk: bytes) -> bool:
    return chunk.count(0) == len(chunk)
