"""Suite-wide settings.

Nodes started by the tests run one HTTP worker process each (``LEIFDB_WORKERS=1``; a flag
given by a test wins): every real-process test then goes through the worker path (RPC to
the consensus process, forwarded routes) at a third of the start-up cost of the default
(one worker per core: each worker imports the HTTP stack, ~0.5 s of CPU). ``tests/worker``
starts nodes with ``--workers 2`` and ``--workers 0`` explicitly.
"""

from __future__ import annotations

import os

os.environ.setdefault("LEIFDB_WORKERS", "1")
