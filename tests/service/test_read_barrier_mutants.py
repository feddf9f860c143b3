"""Every read path of the service passes the read barrier unless the client asked for a
stale read (``tests.service.read_paths``), and each mutant of
``tests.service.barrier_mutants`` that breaks that rule for some paths is caught on
exactly those paths.

The barrier is the service's half of ReadIndex (Raft dissertation §6.4): ask the node for
a read index (the node's core does the leader's own-term commit and the heartbeat round),
then wait until the state machine applied it (step 4, ``Waits``). The HTTP routes' half
(passing ``consistency`` through, the barrier before a stream) is
tests/http/test_read_barrier_routes.py.
"""

from __future__ import annotations

import pytest

from tests.service.barrier_mutants import SERVICE_MUTANTS, ServiceMutant
from tests.service.read_paths import (
    READ_PATHS,
    ReadPath,
    check_default_is_linearizable,
    check_linearizable,
    check_refused,
    check_stale,
)

CHECKS = {"linearizable": check_linearizable, "refused": check_refused}
WITH_CONSISTENCY = [p for p in READ_PATHS if p.has_consistency]


def _name(path: ReadPath) -> str:
    return path.name


@pytest.mark.parametrize("path", READ_PATHS, ids=_name)
def test_a_read_answers_only_after_its_read_index_is_confirmed_and_applied(path: ReadPath) -> None:
    check_linearizable(path)


@pytest.mark.parametrize("path", READ_PATHS, ids=_name)
def test_a_read_the_node_cannot_confirm_fails(path: ReadPath) -> None:
    check_refused(path)


@pytest.mark.parametrize("path", WITH_CONSISTENCY, ids=_name)
def test_a_stale_read_answers_at_once_from_the_local_state(path: ReadPath) -> None:
    check_stale(path)


@pytest.mark.parametrize("path", WITH_CONSISTENCY, ids=_name)
def test_linearizable_by_name_is_the_default(path: ReadPath) -> None:
    check_default_is_linearizable(path)


@pytest.mark.parametrize("mutant", SERVICE_MUTANTS, ids=lambda m: m.name)
def test_each_barrier_mutant_is_caught_on_the_paths_it_breaks(
    mutant: ServiceMutant, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert callable(getattr(mutant.target, mutant.attribute, None)), f"{mutant.where} is gone"
    assert set(mutant.paths) <= {p.name for p in READ_PATHS}
    monkeypatch.setattr(mutant.target, mutant.attribute, mutant.replacement)
    caught = set()
    for path in READ_PATHS:
        try:
            CHECKS[mutant.check](path)
        except AssertionError:
            caught.add(path.name)
    assert caught == set(mutant.paths)
