"""Majority arithmetic, kept apart so it is tested once and trusted everywhere."""

from __future__ import annotations

from typing import Iterable


def majority(voters: int) -> int:
    """The smallest number of voters that forms a quorum (3 of 5, 2 of 3, 3 of 4)."""
    return voters // 2 + 1


def committed_index(match_indexes: Iterable[int]) -> int:
    """The highest index stored on a majority: the median-from-top of the match indexes."""
    ordered = sorted(match_indexes, reverse=True)
    return ordered[majority(len(ordered)) - 1]
