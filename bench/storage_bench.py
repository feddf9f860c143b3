"""Group-commit benchmark of the durable log.

Many simulated proposers (default 100) each append one entry at a time and wait for it to
be durable before proposing the next, all on the Twisted reactor:

- ``group``: through ``ThreadedStorage``: persists that queue while an fsync is in flight
  are merged into one append + one fdatasync.
- ``naive``: the same proposers, but every entry gets its own append + sync job on the
  same single worker thread (one fsync per entry), the baseline group commit replaces.

Reports appends/s, syncs/s and fsyncs/s (every fsync/fdatasync call, directory fsyncs
included), entries per sync (mean/p50/p99), persist latency and the longest reactor stall
(how late a 1 ms timer fired), which shows the reactor never waits for the disk.

``--fs-overhead`` instead measures what the ``leifdb.storage.fs.FileSystem`` indirection
costs: ``DiskStorage`` appends and syncs (1 or 100 entries per sync) through the default
``RealFileSystem`` and through ``DirectOS`` (calls looked up on ``os`` as before the
interface), and with ``--baseline`` also the storage of another source tree (the code before
the change), each run in a fresh process, rounds interleaved, on the given directory and on
/dev/shm (tmpfs: fdatasync almost free, the worst case for a relative overhead). Also the
cost of one call: ``os.write`` vs ``self.fs.write`` to /dev/null.

    PYTHONPATH=. .venv/bin/python bench/storage_bench.py [--writers 100] [--entries 20000]
    PYTHONPATH=. .venv/bin/python bench/storage_bench.py --fs-overhead [--dir DIR] \
        [--baseline OLD_TREE]   # e.g. git archive HEAD leifdb | tar -x -C OLD_TREE
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from leifdb.raft.messages import Entry
from leifdb.storage import DiskStorage
from leifdb.storage.threaded import ThreadedStorage


class CountingStorage:
    """Forwards to a DiskStorage and records how many entries each sync made durable."""

    def __init__(self, inner: DiskStorage) -> None:
        self.inner = inner
        self.batch_sizes: list[int] = []
        self.sync_seconds: list[float] = []
        self._staged = 0

    def load(self):
        return self.inner.load()

    def append(self, entries):
        self._staged += len(entries)
        self.inner.append(entries)

    def set_hard_state(self, hard_state):
        self.inner.set_hard_state(hard_state)

    def sync(self):
        start = time.perf_counter()
        self.inner.sync()
        self.sync_seconds.append(time.perf_counter() - start)
        self.batch_sizes.append(self._staged)
        self._staged = 0

    def compact(self, meta):
        self.inner.compact(meta)

    def close(self):
        self.inner.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


class StallMeter:
    """A 1 ms LoopingCall; the worst lateness is how long the reactor was blocked."""

    def __init__(self, reactor) -> None:
        self._reactor = reactor
        self._last = time.perf_counter()
        self.worst = 0.0
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = reactor

    def start(self) -> None:
        self._last = time.perf_counter()
        self._loop.start(0.001, now=False)

    def stop(self) -> None:
        self._loop.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self._last - 0.001)
        self._last = now


async def run(reactor, mode: str, directory: Path, writers: int, total: int, size: int) -> dict:
    storage = CountingStorage(DiskStorage.open(directory))
    storage.load()
    counter = {"next": 1}
    latencies: list[float] = []
    payload = b"x" * size
    meter = StallMeter(reactor)

    if mode == "group":
        front = ThreadedStorage(storage, reactor)

        def persist_one(entry: Entry):
            return front.persist(None, [entry])

        async def shutdown():
            await front.close()

    else:
        pool = ThreadPool(minthreads=1, maxthreads=1, name="naive")
        pool.start()

        def write_one(entry: Entry) -> None:
            storage.append([entry])
            storage.sync()

        def persist_one(entry: Entry):
            return deferToThreadPool(reactor, pool, write_one, entry)

        async def shutdown():
            pool.stop()
            storage.close()

    async def proposer() -> None:
        while counter["next"] <= total:
            index = counter["next"]
            counter["next"] += 1
            start = time.perf_counter()
            await persist_one(Entry(1, index, data=payload))
            latencies.append(time.perf_counter() - start)

    meter.start()
    fsyncs_before = storage.inner.stats.fsyncs
    start = time.perf_counter()
    await defer.gatherResults(
        [defer.ensureDeferred(proposer()) for _ in range(writers)], consumeErrors=True
    )
    elapsed = time.perf_counter() - start
    meter.stop()
    fsyncs = storage.inner.stats.fsyncs - fsyncs_before
    await shutdown()
    batches = storage.batch_sizes
    return {
        "mode": mode,
        "appends": total,
        "seconds": elapsed,
        "appends_per_s": total / elapsed,
        "syncs_per_s": len(batches) / elapsed,
        "fsyncs_per_s": fsyncs / elapsed,
        "batch_mean": statistics.fmean(batches),
        "batch_p50": percentile(batches, 0.50),
        "batch_p99": percentile(batches, 0.99),
        "sync_ms_p50": percentile(storage.sync_seconds, 0.50) * 1e3,
        "latency_ms_p50": percentile(latencies, 0.50) * 1e3,
        "latency_ms_p99": percentile(latencies, 0.99) * 1e3,
        "stall_ms_max": meter.worst * 1e3,
    }


def report(rows: list[dict]) -> str:
    header = (
        "| mode | appends | s | appends/s | syncs/s | fsyncs/s | batch mean | p50 | p99 "
        "| sync p50 ms | latency p50 ms | p99 ms | max reactor stall ms |"
    )
    lines = [header, "|" + "---|" * 13]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['appends']} | {r['seconds']:.2f} | {r['appends_per_s']:,.0f} "
            f"| {r['syncs_per_s']:,.0f} | {r['fsyncs_per_s']:,.0f} | {r['batch_mean']:.1f} "
            f"| {r['batch_p50']:.0f} | {r['batch_p99']:.0f} | {r['sync_ms_p50']:.2f} "
            f"| {r['latency_ms_p50']:.2f} | {r['latency_ms_p99']:.2f} | {r['stall_ms_max']:.2f} |"
        )
    return "\n".join(lines)


async def main(reactor, args) -> None:
    rows = []
    base = Path(args.dir) if args.dir else None
    for mode, total in (("group", args.entries), ("naive", args.naive_entries)):
        with tempfile.TemporaryDirectory(dir=base, prefix=f"leifdb-bench-{mode}-") as tmp:
            rows.append(await run(reactor, mode, Path(tmp), args.writers, total, args.entry_size))
    print(f"{args.writers} writers, {args.entry_size}-byte entries, directory "
          f"{base or tempfile.gettempdir()}")
    print(report(rows))
    group, naive = rows
    print(f"group commit: {group['appends_per_s'] / naive['appends_per_s']:.1f}x the appends/s "
          f"of one fsync per entry")


# ------------------------------------------------------------------ --fs-overhead


def direct_os() -> types.SimpleNamespace:
    """A FileSystem whose calls are looked up on ``os`` itself (as the storage did before
    the interface): the hot-path ones the builtins, the rare rest RealFileSystem's."""
    from leifdb.storage.fs import RealFileSystem  # not in trees from before the interface

    real = RealFileSystem()
    calls = {name: getattr(real, name) for name in dir(real) if not name.startswith("_")}
    for name in ("open", "close", "write", "pwrite", "pread", "ftruncate", "fdatasync",
                 "fsync", "listdir", "mkdir", "replace", "unlink", "stat"):
        calls[name] = getattr(os, name)
    return types.SimpleNamespace(**calls)


def append_rate(directory: Path, syncs: int, batch: int, size: int, direct: bool,
                trials: int = 1) -> float:
    """Appends/s of ``syncs`` rounds of ``batch`` entries + one sync, the best of
    ``trials`` (works on any tree: without ``direct`` it passes no ``fs``, so a tree from
    before the interface runs too)."""
    if direct:
        storage = DiskStorage.open(directory, fs=direct_os())
    else:
        storage = DiskStorage.open(directory)
    storage.load()
    payload = b"x" * size
    index = 1
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(syncs):
            storage.append([Entry(1, i, data=payload) for i in range(index, index + batch)])
            storage.sync()
            index += batch
        best = min(best, time.perf_counter() - start)
    storage.close()
    return syncs * batch / best


def call_overhead_ns(calls: int = 300_000) -> tuple[float, float]:
    """ns per 1-byte write to /dev/null: ``os.write`` (the storage before) and
    ``self.fs.write`` through RealFileSystem (the storage now); best of 7."""
    from leifdb.storage.fs import RealFileSystem

    holder = types.SimpleNamespace(fs=RealFileSystem())
    fd = os.open(os.devnull, os.O_WRONLY)
    data = b"x"
    try:
        best_direct = best_through = float("inf")
        for _ in range(7):
            start = time.perf_counter_ns()
            for _ in range(calls):
                os.write(fd, data)
            best_direct = min(best_direct, (time.perf_counter_ns() - start) / calls)
            start = time.perf_counter_ns()
            for _ in range(calls):
                holder.fs.write(fd, data)
            best_through = min(best_through, (time.perf_counter_ns() - start) / calls)
    finally:
        os.close(fd)
    return best_direct, best_through


def _rate_in_subprocess(root: Path, directory: Path, args, batch: int, syncs: int,
                        direct: bool) -> float:
    """One ``append_rate`` in a fresh interpreter importing ``leifdb`` from ``root``."""
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "sys.path.insert(0, sys.argv[2]); import storage_bench as b; "
        "print(b.append_rate(Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), "
        "int(sys.argv[6]), sys.argv[7] == '1', int(sys.argv[8])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(root), str(directory),
         str(syncs), str(batch), str(args.entry_size), "1" if direct else "0",
         str(args.trials)],
        check=True, capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    return float(out.stdout.strip().splitlines()[-1])


def fs_overhead(args) -> None:
    direct_ns, through_ns = call_overhead_ns()
    print(f"1-byte write to /dev/null: os.write {direct_ns:.0f} ns, self.fs.write through "
          f"RealFileSystem {through_ns:.0f} ns ({through_ns - direct_ns:+.0f} ns per call; "
          f"a sync makes 2 calls: write, fdatasync)")
    here = Path(__file__).resolve().parents[1]
    variants = [("os.* looked up directly (DirectOS)", here, True),
                ("RealFileSystem (default)", here, False)]
    if args.baseline:
        variants.insert(0, ("baseline tree (before)", Path(args.baseline).resolve(), False))
    places = [("disk", Path(args.dir) if args.dir else None)]
    if Path("/dev/shm").is_dir():
        places.append(("tmpfs", Path("/dev/shm")))
    names = [name for name, _, _ in variants]
    print("| where | entries/sync | " + " | ".join(f"{n} appends/s" for n in names)
          + " | RealFileSystem vs first |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for where, base in places:
        for batch, syncs in ((1, args.overhead_syncs), (100, max(1, args.overhead_syncs // 10))):
            rates: dict[str, list[float]] = {name: [] for name in names}
            for round_ in range(args.rounds):
                order = variants if round_ % 2 == 0 else list(reversed(variants))
                for name, root, direct in order:
                    with tempfile.TemporaryDirectory(dir=base, prefix="leifdb-fs-") as tmp:
                        rates[name].append(
                            _rate_in_subprocess(root, Path(tmp), args, batch, syncs, direct)
                        )
            best = [max(rates[name]) for name in names]
            diff = 100 * (best[-1] - best[0]) / best[0]
            print(f"| {where} | {batch} | " + " | ".join(f"{m:,.0f}" for m in best)
                  + f" | {diff:+.1f}% |")
    print(f"(best of {args.rounds} interleaved rounds, each a fresh process taking the best "
          f"of {args.trials} trials of {args.overhead_syncs} single-entry syncs or "
          f"{args.overhead_syncs // 10} syncs of 100 entries)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=100)
    parser.add_argument("--entries", type=int, default=20_000, help="appends, group commit")
    parser.add_argument("--naive-entries", type=int, default=2_000, help="appends, baseline")
    parser.add_argument("--entry-size", type=int, default=100)
    parser.add_argument("--dir", default=None, help="where to write (default: system temp)")
    parser.add_argument("--fs-overhead", action="store_true",
                        help="measure the FileSystem indirection instead (see above)")
    parser.add_argument("--overhead-syncs", type=int, default=200,
                        help="syncs per trial of --fs-overhead (single-entry batches)")
    parser.add_argument("--trials", type=int, default=20, help="trials per --fs-overhead run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --fs-overhead")
    parser.add_argument("--baseline", default=None,
                        help="--fs-overhead: also run the storage of this source tree (a "
                        "directory holding leifdb/, e.g. from `git archive`)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.fs_overhead:
        fs_overhead(arguments)
    else:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
