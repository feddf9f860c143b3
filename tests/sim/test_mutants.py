"""The simulation bites: each known Raft bug, patched into the core as a one-method
mutant, is caught by the safety checker within a bounded, deterministic search.

The search is the seeded random fault schedule of ``tests.sim.chaos`` with a hunting mix
(rotating leader isolation, crashes right after a vote, single-entry appends so an old
entry can reach a majority before the new leader's no-op). A mutant counts as found only
by a violated Raft property, not by an exception out of the core.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from leifdb.raft.core import RaftCore
from tests.sim.chaos import run_seed
from tests.sim.cluster import Cluster, SimOptions
from tests.sim.invariants import Violation
from tests.sim.mutants import MUTANTS, Mutant
from tests.sim.test_properties import FiveNodes, ThreeNodes

HUNT_OPTIONS = SimOptions(nodes=3, max_entries_per_append=1, max_inflight_appends=1)
HUNT_WEIGHTS = {
    "leader_churn": 10,
    "bounce_voter": 10,
    "isolate_new_leader": 5,
    "read_at_deposed_leader": 3,
    "read": 0,
    "crash_mid_ready": 0,
}
HUNT_STEPS = 300
HUNT_BUDGET = 150

PROPERTIES = (
    "election safety",
    "leader append-only",
    "log matching",
    "leader completeness",
    "state machine safety",
    "committed entries changed",
    "acknowledged",
    "linearizable read",
)


def hunt(seed: int) -> None:
    run_seed(seed, HUNT_STEPS, HUNT_OPTIONS, weights=HUNT_WEIGHTS, fault_level="chaos")


def first_property_violation(budget: int) -> tuple[int, str] | None:
    for seed in range(budget):
        try:
            hunt(seed)
        except Violation as exc:
            message = str(exc)
            if message.startswith(PROPERTIES):
                return seed, message
    return None


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_simulation_finds_mutant(mutant: Mutant, monkeypatch: pytest.MonkeyPatch):
    assert callable(getattr(RaftCore, mutant.method, None)), f"RaftCore.{mutant.method} is gone: update the mutant"
    monkeypatch.setattr(RaftCore, mutant.method, mutant.replacement)
    found = first_property_violation(HUNT_BUDGET)
    assert found is not None, f"{mutant.name} survived {HUNT_BUDGET} seeded runs"
    print(f"{mutant.name}: seed {found[0]}: {found[1].splitlines()[0]}")


def test_unmutated_core_survives_the_same_hunt():
    """Control: the violations above come from the mutants, not from the hunt itself."""
    for seed in range(20):
        hunt(seed)


@pytest.mark.parametrize(
    "machine, mutant",
    [(ThreeNodes, MUTANTS[0]), (FiveNodes, MUTANTS[4])],
    ids=["3-nodes-no-election-restriction", "5-nodes-entry-applied-twice"],
)
def test_hypothesis_machine_finds_mutant(machine, mutant: Mutant, monkeypatch: pytest.MonkeyPatch):
    """The property-based machine bites too (no shrinking here, just finding)."""
    monkeypatch.setattr(RaftCore, mutant.method, mutant.replacement)
    quick = settings(derandomize=True, database=None, max_examples=100, deadline=None, phases=[Phase.generate])
    with pytest.raises(Violation):
        run_state_machine_as_test(machine, settings=quick)


def test_figure8_script_catches_commit_by_counting_replicas(monkeypatch: pytest.MonkeyPatch):
    """With the Figure 8 mutant, S1 commits its term-2 entry in (c) and S5 erases it in (d):
    the checker reports the lost committed entry."""
    from tests.sim.test_paper_scenarios import figure8_c, figure8_cluster, figure8_d

    mutant = next(m for m in MUTANTS if m.name == "commit_previous_term_by_counting")
    monkeypatch.setattr(RaftCore, mutant.method, mutant.replacement)
    cluster = figure8_cluster()
    figure8_c(cluster)
    assert cluster.nodes["n1"].core.commit_index == 2  # the bug: committed by counting
    with pytest.raises(Violation, match="leader completeness"):
        figure8_d(cluster)


def test_deposed_leader_read_script_catches_read_without_leadership_check(monkeypatch: pytest.MonkeyPatch):
    from tests.sim.test_paper_scenarios import deposed_leader_read

    mutant = next(m for m in MUTANTS if m.name == "read_without_leadership_check")
    monkeypatch.setattr(RaftCore, mutant.method, mutant.replacement)
    cluster = Cluster(SimOptions(nodes=3, check_quorum=False), seed=16)
    with pytest.raises(Violation, match="linearizable read"):
        deposed_leader_read(cluster)
