"""The HTTP layer's own limits, derived from the service's.

``ServiceLimits`` (``leifdb.service.api``) is the one place the shared limits and their
defaults are defined; this module adds only what exists because of HTTP: how large a
request body, request line and header block may be.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from leifdb.http.paths import TXN_PATH
from leifdb.service.api import ServiceLimits

__all__ = ["HttpLimits"]

# Room for a JSON body's syntax and the small fields next to a value and ``prev``.
_BODY_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """``service``: the service's limits. ``max_body_bytes`` bounds a key-API body (room
    for a full-size value and ``prev``); ``POST /txn`` bodies are bounded by
    ``service.max_txn_bytes`` instead. The request line and the header block (all header
    lines after it) are bounded apart, as are the number of header fields."""

    service: ServiceLimits
    max_body_bytes: int
    max_request_line_bytes: int = 16 * 1024
    max_header_bytes: int = 16 * 1024
    max_headers: int = 500

    @classmethod
    def derive(cls, service: ServiceLimits | None = None, **overrides: Any) -> HttpLimits:
        """The limits for ``service`` (default: ``ServiceLimits()``), with HTTP-specific
        ``overrides``. ValueError if any limit is not positive."""
        service = service if service is not None else ServiceLimits()
        overrides.setdefault("max_body_bytes", 2 * service.max_value_bytes + _BODY_OVERHEAD_BYTES)
        limits = cls(service=service, **overrides)
        limits._check()
        return limits

    @property
    def max_txn_body_bytes(self) -> int:
        return self.service.max_txn_bytes

    def body_limit(self, path: str | None) -> int:
        """The body limit of the route at ``path`` (the decoded path; None if unknown)."""
        return self.max_txn_body_bytes if path == TXN_PATH else self.max_body_bytes

    def _check(self) -> None:
        values = [(f.name, getattr(self.service, f.name)) for f in dataclasses.fields(self.service)]
        values += [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
                   if f.name != "service"]
        for name, value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number, not {value!r}")
