"""Suite-wide settings.

Nodes started with this process's environment (the fault, UI and client tests) serve HTTP
from their own process (``LEIFDB_WORKERS=0``; a flag given by a test wins): the fault
tests' clusters then run under the timing they were written for (four nodes, proxies and
clients on two cores; with a worker per node the extra load made a known membership race
show: a removed node that misses the commit of its own removal, see the issue 13 note).
Nodes started with ``tests.cluster.helpers.child_env`` (the cluster and API tests), which
drops every LEIFDB_* setting, run the default, one HTTP worker per core, and
``tests/worker`` runs ``--workers 0`` and ``--workers 2`` explicitly, so the worker path is
covered by every real-process API and cluster test.
"""

from __future__ import annotations

import os

os.environ.setdefault("LEIFDB_WORKERS", "0")
