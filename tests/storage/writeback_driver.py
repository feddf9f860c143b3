"""Kill-test driver for ``WritebackFileSystem``: a process that syncs some writes, leaves
others only in its cache, holds the data directory's lock, says ``ready`` and waits to be
SIGKILLed.

Run as ``python -m tests.storage.writeback_driver ROOT``. After the kill, ``ROOT`` must hold
exactly the ``SYNCED`` state (see ``tests/storage/test_writeback.py``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from leifdb.storage import DiskStorage, records
from leifdb.storage._files import atomic_write
from leifdb.storage.writeback import WritebackFileSystem

from tests.storage.helpers import entries

SYNCED_ENTRIES = 30
CACHED_ENTRIES = 10
STATE = b"synced state"


def main(argv: list[str] | None = None) -> int:
    root = Path((argv or sys.argv[1:])[0])
    fs = WritebackFileSystem(root)
    storage = DiskStorage.open(root / "data", fs=fs)  # holds the lock until the kill
    storage.load()
    storage.append(entries(1, SYNCED_ENTRIES))
    storage.sync()
    atomic_write(fs, root / "state", STATE)
    # Only in this process: whole records written without their fdatasync, a rename
    # without the directory's fsync, a file never synced at all.
    fd = fs.open(storage.segment_paths()[-1], os.O_WRONLY | os.O_APPEND)
    for entry in entries(SYNCED_ENTRIES + 1, SYNCED_ENTRIES + CACHED_ENTRIES):
        fs.write(fd, records.encode(entry))
    fs.replace(root / "state", root / "renamed")
    fd = fs.open(root / "cached-only", os.O_WRONLY | os.O_CREAT)
    fs.write(fd, b"never synced")
    print("ready", flush=True)
    time.sleep(60)
    return 1


if __name__ == "__main__":
    sys.exit(main())
