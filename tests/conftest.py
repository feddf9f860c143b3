"""Suite-wide settings.

Nodes started with this process's environment (the fault tests' clusters, the UI and
client tests) run one HTTP worker process each (``LEIFDB_WORKERS=1``; a flag given by a
test wins): they go through the worker path (RPC to the consensus process, forwarded
routes) under faults, at half the start-up cost of the default (each worker imports the
HTTP stack, ~0.5 s of CPU). Nodes started with ``tests.cluster.helpers.child_env`` (the
cluster and API tests), which drops every LEIFDB_* setting, run the default, one worker
per core; ``tests/worker`` also runs ``--workers 0`` and ``--workers 2`` explicitly.
(They ran ``--workers 0`` for a while: the extra load made a membership race show, a
removed node that never learned its removal committed; fixed in the Raft core since.)
"""

from __future__ import annotations

import os

os.environ.setdefault("LEIFDB_WORKERS", "1")
