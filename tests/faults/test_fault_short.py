"""The short fault test (about a minute): a real 3-node cluster, 5 clients (a fifth of their
operations are transactions on the key pairs k0+k1 and k2+k3), 3 watchers whose streams are
checked against the nodes' watch history, 3 lock client processes taking turns at one lock
and writing under its fencing token while their holders are SIGSTOPped past their leases'
TTL or SIGKILLed, every fault kind at least once, fixed seed. The nodes run on the write-back
file system, so every SIGKILL is a power cut of that node and the ``power_cut`` fault cuts
every node at once. ``make chaos`` runs the long version (``tests.faults.runner``, same mix by
default).

On failure the history, the seed, the nemesis' timeline and the node logs are kept in
``fault-runs/<timestamp>-<seed>/`` (the assertion message names the folder).
"""

from __future__ import annotations

import pytest

from tests.faults.lockfleet import LOCK_FAULT_KINDS
from tests.faults.nemesis import fault_kinds
from tests.faults.runner import RunConfig, run

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SEED = 20261126


def test_short_fault_run_is_linearizable_and_recovers() -> None:
    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    config = RunConfig(seed=SEED, nodes=3, duration=30.0, clients=5, keys=5, warmup=1.0,
                       fault_hold=(1.0, 3.0), quiet=(1.0, 2.0), check_timeout=120.0,
                       txn_share=0.2, watchers=3, lock_clients=3, locks=1, lease_ttl=2.0)
    result = run(config, out=out)
    report = "\n".join(lines)
    assert result.passed, report
    assert result.watch_ok, report  # every watcher has the six properties
    assert config.power_cuts and "power_cut" in config.kinds
    assert all(result.faults[kind] >= 1 for kind in fault_kinds(True)), result.faults
    assert "power cut of every node at once" in report, report
    assert result.recovery is not None and result.recovery <= config.recovery_timeout
    for kind in ("read", "put", "delete", "txn"):
        assert result.kinds[(kind, "ok")] > 0, report
    assert result.outcomes["fail"] > 0, report  # the faults did bite
    assert len(result.watches) == 3 and result.events_checked > 0, report
    assert sum(w.resumes for w in result.watches) > 0, report  # streams were resumed
    locks = result.locks
    assert locks is not None and locks.ok, report  # tokens, fencing, visibility
    assert sum(result.faults[kind] for kind in LOCK_FAULT_KINDS) >= 2, result.faults
    assert result.faults["pause_holder"] >= 1, result.faults
    c = locks.counts
    assert c["acquired"] >= 3 and c["accepted"] > 0 and c["committed"] > 0, report
    assert c["rejected"] > 0, report  # stale holders' writes were refused by their fence
