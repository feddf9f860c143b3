"""Hypothesis settings for the storage property tests, chosen with ``HYPOTHESIS_PROFILE``
(the same names as ``tests/sim/profiles.py``).

``ci`` (default): derandomized (the same examples every run), no example database, sized so
all of tests/storage runs in well under a minute on two cores. ``dev``: random, remembers
failures in ``.hypothesis/`` so they replay. ``soak``: many more examples.

Applied per test (``storage_settings``), never loaded globally.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_SCALE = {"ci": 1.0, "dev": 1.5, "soak": 25.0}

PROFILE_NAME = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE_NAME not in _SCALE:
    PROFILE_NAME = "ci"


def storage_settings(ci_examples: int) -> settings:
    """``ci_examples`` examples under ``ci`` (derandomized), scaled for the others."""
    examples = max(1, int(ci_examples * _SCALE[PROFILE_NAME]))
    if PROFILE_NAME == "ci":
        return settings(derandomize=True, database=None, max_examples=examples, **_COMMON)
    return settings(max_examples=examples, **_COMMON)
