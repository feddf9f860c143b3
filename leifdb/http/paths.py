"""Which paths belong to the key API, shared by the routes, the outer resource and the
channel (which sees only the raw request target)."""

from __future__ import annotations

__all__ = ["REVISION_HEADER", "TXN_PATH", "is_key_api"]

TXN_PATH = "/txn"
REVISION_HEADER = b"X-LeifDB-Revision"


def is_key_api(path: str) -> bool:
    """``/db``, ``/db/...``, ``/txn`` and ``/watch/...``: the responses that carry
    ``X-LeifDB-Revision``."""
    return (
        path in ("/db", TXN_PATH)
        or path.startswith("/db/")
        or path.startswith("/watch/")
    )

