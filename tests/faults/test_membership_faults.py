"""The fault test with the membership kinds (``tests.faults.nemesis.MEMBERSHIP_KINDS``), fixed
seed, about half a minute: a real 3-node cluster on the write-back file system, 4 clients
(a fifth of their operations transactions) and 2 watchers, while the nemesis

* replaces members: removes a random one through the admin API (it must stop by itself), a
  fresh node joins with ``--join`` behind its own proxy and is promoted, so the member list
  in the log changes under load;
* cuts a follower off for several election timeouts and lets it back: the leader and its
  term must be the same after (PreVote);
* and, in between, SIGKILLs the leader (a power cut on this file system) and splits the
  cluster in halves, so the new members live through crashes and partitions too.

The history must be linearizable, no acknowledged write lost, every watcher's stream right.
It is separate from ``test_fault_short`` to keep that one within its time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.faults.runner import RunConfig, run

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SEED = 20261205
KINDS = ("replace_member", "isolate_follower", "kill_leader", "partition_halves")


def test_membership_changes_and_a_returning_follower_keep_the_history_linearizable(
        tmp_path: Path) -> None:
    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    config = RunConfig(seed=SEED, nodes=3, duration=8.0, clients=4, keys=4, warmup=1.0,
                       fault_hold=(1.0, 2.0), quiet=(0.5, 1.0), check_timeout=120.0,
                       txn_share=0.2, watchers=2, lock_clients=0, faults=KINDS,
                       out_dir=tmp_path)
    result = run(config, out=out)
    report = "\n".join(lines)
    assert result.passed, report
    assert result.watch_ok, report
    assert all(result.faults[kind] >= 1 for kind in KINDS), result.faults
    assert "joined and was promoted" in report, report
    # PreVote: the isolated follower's return left the leader and its term as they were
    # (the nemesis reports a problem otherwise, which fails ``passed`` above).
    assert "leader before" in report, report
    for kind in ("read", "put", "txn"):
        assert result.kinds[(kind, "ok")] > 0, report


PLANTED = (sys.executable, "-m", "tests.faults.planted_no_prevote")


def test_the_returning_follower_check_bites_without_prevote(tmp_path: Path) -> None:
    """Nodes without PreVote (and without the vote lease): the follower cut off and back
    deposes the leader, and the nemesis says so."""
    lines: list[str] = []
    config = RunConfig(seed=SEED, nodes=3, duration=0.5, clients=2, keys=2, warmup=0.5,
                       fault_hold=(1.0, 1.0), quiet=(0.5, 0.5), check_timeout=60.0,
                       txn_share=0.0, watchers=0, lock_clients=0, faults=("isolate_follower",),
                       launcher=PLANTED, out_dir=tmp_path)
    result = run(config, out=lines.append)
    report = "\n".join(lines)
    assert result.faults["isolate_follower"] >= 1, report
    changed = [p for p in result.problems if "changed the leader" in p]
    assert changed and not result.passed, report
