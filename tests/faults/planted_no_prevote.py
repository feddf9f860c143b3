"""``twistd`` with PreVote and the vote lease switched off, for the test that shows the
nemesis' ``isolate_follower`` check bites: a follower cut off for a few election timeouts
campaigns in ever higher terms, and when it returns its term deposes the healthy leader.

Run as ``python -m tests.faults.planted_no_prevote <twistd arguments>`` (``RunConfig.launcher``).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.scripts.twistd import run

from leifdb import node
from leifdb.raft.core import Config


def config_without_prevote(**values: Any) -> Config:
    """``Config`` as the node makes it, minus PreVote and the vote lease."""
    return Config(**{**values, "pre_vote": False, "vote_lease": False})


def main(argv: list[str]) -> int | None:
    node.Config = config_without_prevote  # type: ignore[misc,assignment]
    sys.argv = ["twistd", *argv]
    return run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
