"""CRC-32C (Castagnoli), the checksum of log records, state files and snapshots.

Uses the ``crc32c`` package (hardware accelerated, ~15 GB/s here) when installed; otherwise
a table-driven pure-Python fallback that gives the same values, slowly (a few MB/s). The
algorithm is part of the on-disk and wire format (``InstallSnapshot.checksum``), so every
node must compute the same function: never substitute ``zlib.crc32``.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["crc32c", "HARDWARE"]


def _make_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def crc32c_python(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """Pure-Python CRC-32C; ``value`` continues an earlier checksum like ``zlib.crc32``."""
    crc = value ^ 0xFFFFFFFF
    table = _TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


crc32c: Callable[..., int]
try:
    from crc32c import crc32c  # same signature: crc32c(data, value=0)

    HARDWARE = True
except ImportError:  # pragma: no cover - depends on the environment
    crc32c = crc32c_python
    HARDWARE = False
