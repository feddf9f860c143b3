"""The power-cut nemesis bites: nodes whose log skips its ``fdatasync``
(``tests/faults/planted_twistd.py``) lose acknowledged writes at a cluster-wide power cut,
and the checkers say so. The real code passes the same run (and the short fault run, which
cuts the power too)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.faults.runner import RunConfig, run

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PLANTED = (sys.executable, "-m", "tests.faults.planted_twistd")


def config(launcher: tuple[str, ...], out_dir: Path) -> RunConfig:
    """A second of writes, then one fault: a power cut of every node at once. No snapshot
    (which is fsynced) comes to save the writes the log did not sync."""
    return RunConfig(seed=14, nodes=3, duration=0.5, clients=4, keys=4, faults=("power_cut",),
                     snapshot_entries=1_000_000,
                     warmup=1.0, fault_hold=(0.5, 0.5), quiet=(0.5, 0.5), check_timeout=60.0,
                     txn_share=0.0, watchers=0, lock_clients=0, launcher=launcher,
                     out_dir=out_dir)


@pytest.mark.parametrize("planted", [True, False], ids=["without fdatasync", "real code"])
def test_a_missing_fdatasync_loses_acknowledged_writes_at_a_power_cut(
    planted: bool, tmp_path: Path
) -> None:
    lines: list[str] = []
    result = run(config(PLANTED if planted else (), tmp_path), out=lines.append)
    report = "\n".join(lines)
    assert result.faults["power_cut"] == 1 and "power cut of every node at once" in report
    assert result.kinds[("put", "ok")] > 0, report
    if planted:
        lost = [p for p in result.problems if p.startswith("lost write")]
        assert not result.passed, report
        assert lost or result.verdict is False, report
    else:
        assert result.passed, report
