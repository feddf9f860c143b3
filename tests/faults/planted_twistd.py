"""``twistd`` with a planted durability bug, for the test that shows the power-cut nemesis
bites: the log's group commit writes its records but skips their ``fdatasync``.

Run as ``python -m tests.faults.planted_twistd <twistd arguments>`` (``RunConfig.launcher``).
On the real file system nothing shows (a SIGKILL keeps the page cache); on the write-back
file system (``--unsafe-test-writeback-fs``) a power cut loses acknowledged entries.
"""

from __future__ import annotations

import sys

from twisted.scripts.twistd import run

from leifdb.storage.disklog import DiskStorage

_flush = DiskStorage._flush


def flush_without_fdatasync(self: DiskStorage, buffer: bytearray, *, durable: bool) -> None:
    """``DiskStorage._flush`` as if its ``fdatasync`` had been deleted."""
    _flush(self, buffer, durable=False)


def main(argv: list[str]) -> int | None:
    DiskStorage._flush = flush_without_fdatasync  # type: ignore[method-assign]
    sys.argv = ["twistd", *argv]
    return run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
