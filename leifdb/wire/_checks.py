"""Shared validation helper: checks raise ``Invalid``; callers turn it into their own error."""

from __future__ import annotations

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1


class Invalid(Exception):
    """A value breaks an invariant of the wire format."""


def require(condition: bool, reason: str) -> None:
    if not condition:
        raise Invalid(reason)


def require_address(address: str, what: str, *, optional: bool = False) -> None:
    """``host:port`` with a non-empty host and a port in 1..65535 (``[v6]:port`` works)."""
    if optional and address == "":
        return
    host, sep, port = address.rpartition(":")
    require(bool(sep) and bool(host), f"{what} {address!r} is not host:port")
    require(port.isascii() and port.isdigit() and 1 <= int(port) <= 65535, f"{what} {address!r} has a bad port")
