"""Hypothesis settings for the simulation tests, chosen with ``HYPOTHESIS_PROFILE``.

``ci`` (default): derandomized (the same examples every run), no example database, sized
so all of tests/sim runs in about a minute on two cores. ``dev``: random and remembers
failures in ``.hypothesis/`` so they replay. ``soak``: many more and longer examples.

The profiles are applied per test (``SIM_SETTINGS``), not loaded globally, so they never
change other test directories' hypothesis settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

PROFILES: dict[str, settings] = {
    "ci": settings(derandomize=True, database=None, max_examples=200, stateful_step_count=50, **_COMMON),
    "dev": settings(max_examples=300, stateful_step_count=60, **_COMMON),
    "soak": settings(max_examples=5000, stateful_step_count=150, **_COMMON),
}

PROFILE_NAME = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SIM_SETTINGS: settings = PROFILES.get(PROFILE_NAME, PROFILES["ci"])


def scaled(fraction: float) -> settings:
    """``SIM_SETTINGS`` with a fraction of its examples (for the lighter machines)."""
    return settings(SIM_SETTINGS, max_examples=max(1, int(SIM_SETTINGS.max_examples * fraction)))


# Seeded (non-hypothesis) runs per profile, as a multiple of the ci count.
_SEED_SCALE = {"ci": 1, "dev": 5, "soak": 100}


def seeds(ci_count: int, base: int = 0) -> range:
    """The seeds of a seeded simulation test: ``ci_count`` fixed ones under ``ci``; under
    ``dev`` and ``soak`` the same first ones, then more."""
    return range(base, base + ci_count * _SEED_SCALE.get(PROFILE_NAME, 1))
