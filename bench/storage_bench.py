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

    PYTHONPATH=. .venv/bin/python bench/storage_bench.py [--writers 100] [--entries 20000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=100)
    parser.add_argument("--entries", type=int, default=20_000, help="appends, group commit")
    parser.add_argument("--naive-entries", type=int, default=2_000, help="appends, baseline")
    parser.add_argument("--entry-size", type=int, default=100)
    parser.add_argument("--dir", default=None, help="where to write (default: system temp)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
