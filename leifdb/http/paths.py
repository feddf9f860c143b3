"""Which paths belong to the key API, shared by the routes, the outer resource and the
channel (which sees only the raw request target)."""

from __future__ import annotations

__all__ = ["LEASE_PATH", "REVISION_HEADER", "TXN_PATH", "is_key_api"]

TXN_PATH = "/txn"
LEASE_PATH = "/lease"
REVISION_HEADER = b"X-LeifDB-Revision"
# Leases, locks and elections change and read keys (their owners' keys, a lease's keys),
# so their answers say at which revision, like the key routes'.
_KEY_API_PREFIXES = ("/db/", "/watch/", "/lease/", "/lock/", "/election/")


def is_key_api(path: str) -> bool:
    """``/db``, ``/txn``, ``/lease`` and the paths under ``/db/``, ``/watch/``,
    ``/lease/``, ``/lock/`` and ``/election/``: the responses that carry
    ``X-LeifDB-Revision``."""
    return path in ("/db", TXN_PATH, LEASE_PATH) or path.startswith(_KEY_API_PREFIXES)
