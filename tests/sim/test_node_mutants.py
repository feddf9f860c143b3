"""The node-level simulation bites on the node's own rules: each mutant of
``tests.sim.node_mutants`` (a ``Node`` method with one rule of persist -> send -> apply
broken) is caught by its scripted scenario on at least one of a few seeds, and the real
node passes every scenario on every one of them.

The scenarios steer real ``Node`` objects (``tests.sim.node_sim.NodeSim``) to the moment
the rule matters: a crash inside one node's fsync window right after it replied, voted or
asked for votes, the leader's own fsync outlasting its followers', a power cut right
after a compaction. A mutant counts as caught only by a ``Violation`` of the simulation's
checks (election safety, leader completeness, acknowledged writes, state machine safety,
a node that cannot start), not by an exception from the node.
"""

from __future__ import annotations

import pytest

from leifdb.node import Node
from tests.sim.node_mutants import NODE_MUTANTS, SCENARIOS, NodeMutant
from tests.sim.node_sim import Violation
from tests.sim.profiles import seeds

HUNT_SEEDS = seeds(6)


def first_violation(scenario, hunt=HUNT_SEEDS) -> tuple[int, str] | None:
    for seed in hunt:
        try:
            scenario(seed)
        except Violation as exc:
            return seed, str(exc).splitlines()[0]
    return None


@pytest.mark.parametrize("mutant", NODE_MUTANTS, ids=lambda m: m.name)
def test_each_node_mutant_is_caught_by_its_scenario(mutant: NodeMutant, monkeypatch: pytest.MonkeyPatch) -> None:
    assert callable(getattr(Node, mutant.method, None)), f"Node.{mutant.method} is gone: update the mutant"
    monkeypatch.setattr(Node, mutant.method, mutant.replacement)
    found = first_violation(mutant.scenario)
    assert found is not None, f"{mutant.name} survived seeds {list(HUNT_SEEDS)} of {mutant.scenario.__name__}"
    print(f"{mutant.name}: seed {found[0]}: {found[1]}")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_the_real_node_passes_every_scenario_on_every_seed(scenario) -> None:
    """Control: the violations above come from the mutants, not from the scenarios."""
    for seed in HUNT_SEEDS:
        scenario(seed)
