"""The tests bite: every rule of Figure 2, of the InstallSnapshot receiver and of ReadIndex,
broken alone by a mutant (tests/sim/mutants.py), is caught.

Each mutant names what kills it. ``HUNT``: the seeded random fault schedule of
``tests.sim.chaos`` with a hunting mix (rotating leader isolation, crashes right after a
vote) on one of two cluster shapes (``HUNT_SHAPES``) must report the violated property the mutant is expected to break (a safety
property, or liveness for rules that only keep the cluster making progress) within
``HUNT_BUDGET`` seeds; an exception out of the core does not count. A named test (unit
test, paper scenario or scripted rule scenario) must pass on the real code and fail under
the mutant with a plain assertion or a property violation. The unmutated core passes the
same hunt on every seed a mutant may be found at (and, under ``HYPOTHESIS_PROFILE=soak``,
on 100 times as many).
"""

from __future__ import annotations

import importlib
import time
from typing import Callable

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from leifdb.raft.messages import Role
from tests.sim.chaos import MODES, run_membership_seed, run_seed
from tests.sim.cluster import Cluster, SimOptions
from tests.sim.invariants import Violation
from tests.sim.mutants import HUNT, LIVENESS, MUTANTS, SAFETY, Mutant, by_name
from tests.sim.profiles import seeds
from tests.sim.test_membership_scenarios import FIVE, ongaro_2015, ongaro_cluster
from tests.sim.test_paper_scenarios import deposed_leader_read, figure8_c, figure8_cluster, figure8_d
from tests.sim.test_properties import FiveNodes, ThreeNodes

#: Cluster shapes of the hunt. ``default``: single-entry appends, one in flight, no
#: snapshots (an old entry can reach a majority before the new leader's no-op).
#: ``batched_snapshots``: two-entry appends, snapshots every 3 entries sent in 16-byte chunks.
#: ``membership``: PreVote and the vote lease on, membership changes among the faults
#: (``tests.sim.chaos.run_membership_seed``), starting from 3 voters.
HUNT_SHAPES = {
    "default": SimOptions(nodes=3, max_entries_per_append=1, max_inflight_appends=1),
    "batched_snapshots": SimOptions(
        nodes=3, max_entries_per_append=2, max_inflight_appends=2, snapshot_every=3, chunk_size=16
    ),
    "membership": SimOptions(
        nodes=3, max_entries_per_append=1, max_inflight_appends=1, snapshot_every=10, **MODES["available"]
    ),
}
HUNT_WEIGHTS = {
    "leader_churn": 10,
    "bounce_voter": 10,
    "isolate_new_leader": 5,
    "read_at_deposed_leader": 3,
    "read": 0,
    "crash_mid_ready": 0,
}
HUNT_STEPS = 300
#: Seeds tried per mutant, and the seeds the unmutated core must survive.
HUNT_BUDGET = 40

HUNTED = [m for m in MUTANTS if HUNT in m.caught_by]
KILLS = [(m, ref) for m in MUTANTS for ref in m.caught_by if ref != HUNT]


def hunt(seed: int, shape: str = "default") -> None:
    if shape == "membership":
        run_membership_seed(seed, HUNT_STEPS, options=HUNT_SHAPES[shape], weights=HUNT_WEIGHTS)
    else:
        run_seed(seed, HUNT_STEPS, HUNT_SHAPES[shape], weights=HUNT_WEIGHTS, fault_level="chaos")


def first_violation(budget: int, expect: tuple[str, ...] = SAFETY, shape: str = "default") -> tuple[int, str] | None:
    """The first seed whose hunt violates one of the ``expect`` properties, and the message."""
    for seed in range(budget):
        try:
            hunt(seed, shape)
        except Violation as exc:
            message = str(exc)
            if message.startswith(expect):
                return seed, message
    return None


def apply(mutant: Mutant, monkeypatch: pytest.MonkeyPatch) -> None:
    original = getattr(mutant.target, mutant.method, None)
    assert callable(original), f"{mutant.target.__name__}.{mutant.method} is gone: update the mutant"
    monkeypatch.setattr(mutant.target, mutant.method, mutant.replacement)


def resolve(ref: str) -> Callable[[], None]:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def is_kill(exc: BaseException) -> bool:
    """A failed check, not a crash: a plain assertion of the test, or a property violation
    reported by the simulation's checker."""
    if isinstance(exc, Violation):
        return str(exc).startswith(SAFETY + LIVENESS)
    return type(exc) is AssertionError


def test_every_mutant_is_sound():
    """Names are unique, each mutant replaces an existing method with something else and
    has at least one killer, and every named killer exists and takes no arguments."""
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    for mutant in MUTANTS:
        assert mutant.caught_by, mutant.name
        assert mutant.replacement is not getattr(mutant.target, mutant.method), mutant.name
        assert mutant.expect in (SAFETY, LIVENESS), mutant.name
        assert mutant.hunt in HUNT_SHAPES, mutant.name
    for _, ref in KILLS:
        assert resolve(ref).__code__.co_argcount == 0, ref


@pytest.mark.parametrize("mutant", HUNTED, ids=lambda m: m.name)
def test_simulation_finds_mutant(mutant: Mutant, monkeypatch: pytest.MonkeyPatch):
    apply(mutant, monkeypatch)
    start = time.monotonic()
    found = first_violation(HUNT_BUDGET, mutant.expect, mutant.hunt)
    took = time.monotonic() - start
    assert found is not None, f"{mutant.name} survived {HUNT_BUDGET} seeded runs"
    print(f"{mutant.name}: seed {found[0]} in {took:.1f}s: {found[1].splitlines()[0][:160]}")


@pytest.mark.parametrize(
    "mutant, killer", KILLS, ids=[f"{m.name}-by-{ref.split(':')[1]}" for m, ref in KILLS]
)
def test_named_test_kills_mutant(mutant: Mutant, killer: str, monkeypatch: pytest.MonkeyPatch):
    test = resolve(killer)
    test()  # the real code passes it
    apply(mutant, monkeypatch)
    with pytest.raises(AssertionError) as info:
        test()
    assert is_kill(info.value), f"{killer} did not catch {mutant.name} by a check: {info.value!r}"


@pytest.mark.parametrize("shape", sorted({m.hunt for m in HUNTED}))
def test_unmutated_core_survives_the_same_hunt(shape: str):
    """Control: the violations above come from the mutants, not from the hunt itself. Every
    seed a mutant may be found at is run (``HUNT_BUDGET``); the dev and soak profiles run
    5 and 100 times as many, a deeper hunt for bugs of the real core."""
    for seed in seeds(HUNT_BUDGET):
        hunt(seed, shape)


@pytest.mark.parametrize(
    "machine, mutant",
    [(ThreeNodes, MUTANTS[0]), (FiveNodes, MUTANTS[4])],
    ids=["3-nodes-no-election-restriction", "5-nodes-entry-applied-twice"],
)
def test_hypothesis_machine_finds_mutant(machine, mutant: Mutant, monkeypatch: pytest.MonkeyPatch):
    """The property-based machine bites too (no shrinking here, just finding)."""
    apply(mutant, monkeypatch)
    quick = settings(derandomize=True, database=None, max_examples=100, deadline=None, phases=[Phase.generate])
    with pytest.raises(Violation):
        run_state_machine_as_test(machine, settings=quick)


def test_figure8_script_catches_commit_by_counting_replicas(monkeypatch: pytest.MonkeyPatch):
    """With the Figure 8 mutant, S1 commits its term-2 entry in (c) and S5 erases it in (d):
    the checker reports the lost committed entry."""
    apply(by_name("commit_previous_term_by_counting"), monkeypatch)
    cluster = figure8_cluster()
    figure8_c(cluster)
    assert cluster.nodes["n1"].core.commit_index == 2  # the bug: committed by counting
    with pytest.raises(Violation, match="leader completeness"):
        figure8_d(cluster)


def test_deposed_leader_read_script_catches_read_without_leadership_check(monkeypatch: pytest.MonkeyPatch):
    apply(by_name("read_without_leadership_check"), monkeypatch)
    cluster = Cluster(SimOptions(nodes=3, check_quorum=False), seed=16)
    with pytest.raises(Violation, match="linearizable read"):
        deposed_leader_read(cluster)



def test_ongaro_2015_script_catches_a_change_before_the_new_leaders_first_commit(monkeypatch: pytest.MonkeyPatch):
    """Without the 2015 rule S2 removes S1 at once and commits it with S3 (a majority of
    S2-S4), then S1 wins term 3 with S4 and S5 (a majority of S1-S5): two disjoint
    majorities, and S1 lacks what S2 committed."""
    apply(by_name("config_change_before_own_term_commit"), monkeypatch)
    cluster = ongaro_cluster()
    with pytest.raises(Violation, match="leader completeness") as info:
        ongaro_2015(cluster)
    n1, n2, n3 = (cluster.nodes[i].core for i in ("n1", "n2", "n3"))
    removal = n2.configuration()
    assert removal.voters == {"n2", "n3", "n4"} and n2.commit_index == n3.commit_index == n2.log.last_index()
    assert n1.role is Role.LEADER and n1.term == 3 and n1.configuration().voters == set(FIVE)
    assert cluster.checker.votes[("n1", 3)] == {"n4", "n5"}
    assert "leader n1 (term 3) holds Entry(term=1, index=4, type=<EntryType.CONFIG" in str(info.value)
