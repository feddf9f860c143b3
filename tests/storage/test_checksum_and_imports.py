"""CRC-32C values, and that only the threaded wrapper pulls Twisted in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from leifdb.storage.checksum import crc32c, crc32c_python

ROOT = Path(__file__).resolve().parents[2]


def test_crc32c_check_value():
    # The standard check value of CRC-32C (Castagnoli) for "123456789" (RFC 3720).
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c_python(b"123456789") == 0xE3069283


@settings(derandomize=True, max_examples=200)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_fallback_agrees_and_checksums_continue(a, b):
    assert crc32c_python(a) == crc32c(a)
    assert crc32c(b, crc32c(a)) == crc32c(a + b) == crc32c_python(b, crc32c_python(a))


def test_storage_without_the_wrapper_does_not_import_twisted():
    code = (
        "import sys, leifdb.storage, leifdb.storage.disklog, leifdb.storage.snapshots;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
    import leifdb.storage

    assert not hasattr(leifdb.storage, "ThreadedStorage")  # import it from .threaded
