"""Crash-test driver: appends through DiskStorage in a loop and reports what is durable.

Run as ``python -m tests.storage.append_driver DATA_DIR [--seed N] [--max-index N]``. Each
stdout line ``<last_index> <term>`` is printed (and flushed) only after the ``sync()`` that
made entries up to ``last_index`` durable, so a test may SIGKILL the process at any moment
and then demand that every reported index is on disk. Batches sometimes overwrite the tail
with a newer term (conflict truncation) and sometimes bump the term in the hard state.
Entry data is ``payload(index, term)``, so the test can check every byte it reads back.
"""

from __future__ import annotations

import argparse
import random
import sys

from leifdb.raft.messages import Entry, HardState
from leifdb.storage import DiskStorage


def payload(index: int, term: int) -> bytes:
    return (f"{index}:{term};" * (1 + index % 7)).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-index", type=int, default=20_000)
    parser.add_argument("--segment-size", type=int, default=16 * 1024)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    storage = DiskStorage.open(args.data_dir, segment_size=args.segment_size)
    state = storage.load()
    last = state.entries[-1].index if state.entries else 0
    term = max(state.hard_state.term, state.entries[-1].term if state.entries else 0, 1)
    print(f"ready {last} {term}", flush=True)
    while last < args.max_index:
        size = rng.randint(1, 30)
        rewind = rng.randint(0, min(size - 1, last, 5)) if rng.random() < 0.1 else 0
        if rewind or rng.random() < 0.05:
            term += 1
            storage.set_hard_state(HardState(term, "driver"))
        first = last + 1 - rewind
        storage.append([Entry(term, i, data=payload(i, term)) for i in range(first, first + size)])
        storage.sync()
        last = first + size - 1
        sys.stdout.write(f"{last} {term}\n")
        sys.stdout.flush()
    storage.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
