"""A real process is SIGKILLed at random moments while appending; nothing it reported as
synced may be missing afterwards, and what is there must be exactly what it wrote."""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from leifdb.storage import DataDirLocked, DiskStorage

from tests.storage.append_driver import payload
from tests.storage.helpers import load_state

ROOT = Path(__file__).resolve().parents[2]
SEGMENT = 16 * 1024
RUNS = 6


def start_driver(data_dir: Path, seed: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.storage.append_driver", str(data_dir),
         "--seed", str(seed), "--segment-size", str(SEGMENT)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


def read_lines(proc: subprocess.Popen, count: int, timeout: float) -> list[str]:
    """Up to ``count`` lines of the driver's stdout, giving up after ``timeout`` seconds."""
    lines: list[str] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while len(lines) < count and time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines += [line.decode() for line in complete]
    return lines


def check_durable(data_dir: Path, reported: list[tuple[int, int]]) -> int:
    state = load_state(data_dir, SEGMENT)
    log = state.entries
    assert [e.index for e in log] == list(range(1, len(log) + 1))
    for e in log:
        assert e.data == payload(e.index, e.term), f"entry {e.index} holds wrong data"
    for (a, b) in zip(log, log[1:]):
        assert a.term <= b.term
    if reported:
        last, term = max(reported)
        assert len(log) >= last, f"driver reported index {last} durable, only {len(log)} found"
        assert log[last - 1].term >= term
        assert state.hard_state.term >= term
    return len(log)


def test_every_index_reported_synced_survives_sigkill(tmp_path):
    rng = random.Random(20261126)
    data_dir = tmp_path / "node"
    total_reported = 0
    for run in range(RUNS):
        proc = start_driver(data_dir, seed=run)
        try:
            ready = read_lines(proc, 1, timeout=20)
            assert ready and ready[0].startswith("ready"), ready
            lines = read_lines(proc, rng.randint(1, 120), timeout=20)
            if rng.random() < 0.5:
                time.sleep(rng.random() * 0.02)  # land the kill anywhere in a batch
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=20)
            proc.stdout.close()
        assert lines, "the driver reported nothing"
        reported = [(int(i), int(t)) for i, t in (line.split() for line in lines)]
        total_reported += len(reported)
        have = check_durable(data_dir, reported)
        assert have >= max(i for i, _ in reported)
    assert total_reported >= RUNS


def test_a_second_process_cannot_open_a_locked_directory(tmp_path):
    data_dir = tmp_path / "node"
    proc = start_driver(data_dir, seed=99)
    try:
        assert read_lines(proc, 1, timeout=20)[0].startswith("ready")
        try:
            DiskStorage.open(data_dir)
        except DataDirLocked as exc:
            assert str(proc.pid) in str(exc)
        else:
            raise AssertionError("a second open of a locked data directory succeeded")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
        proc.stdout.close()
    DiskStorage.open(data_dir).close()  # the kernel dropped the dead process's lock
