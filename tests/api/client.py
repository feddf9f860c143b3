"""A tiny blocking HTTP client for the real-cluster API tests (standard library only).

Unlike ``LocalCluster.request`` it sends arbitrary headers (``If-None-Match``, ``If-Match``)
and can follow 307 redirects the way ``curl -L`` does: same method, same body, to the
``Location`` given. Statuses are returned, never raised; an unreachable node raises
``OSError`` (``TimeoutError`` and ``ConnectionError`` are subclasses).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from leifdb.cluster import http_request

__all__ = ["Reply", "key_path", "put_until_ok", "request", "request_following"]

MAX_HOPS = 3


@dataclass
class Reply:
    """One HTTP answer: status, decoded JSON body (None if not JSON), lower-case headers,
    and the base URLs visited on the way (the last one answered)."""

    status: int
    body: Any
    headers: dict[str, str]
    visited: list[str] = field(default_factory=list)

    @property
    def value(self) -> Any:
        """The ``value`` field of a 200 read; None otherwise."""
        if self.status == 200 and isinstance(self.body, dict):
            return self.body.get("value")
        return None


def key_path(key: str, query: str = "") -> str:
    """``/db/<key>`` with the key percent-encoded (slashes too), plus ``?query``."""
    path = "/db/" + quote(key, safe="")
    return f"{path}?{query}" if query else path


def request(
    base_url: str,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    """``method base_url+path`` once; ``body`` is sent as JSON when given."""
    status, decoded, reply_headers = http_request(
        base_url, method, path, body, timeout=timeout, headers=headers
    )
    parts = urlsplit(base_url)
    return Reply(status, decoded, reply_headers, [f"http://{parts.netloc}"])


def request_following(
    base_url: str,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
    max_hops: int = MAX_HOPS,
) -> Reply:
    """Like ``request``, but a 307 is followed (at most ``max_hops`` times) by resending
    the same method, body and headers to its ``Location``, as ``curl -L`` does."""
    visited: list[str] = []
    for _ in range(max_hops + 1):
        reply = request(base_url, method, path, body=body, headers=headers, timeout=timeout)
        visited.extend(reply.visited)
        location = reply.headers.get("location")
        if reply.status != 307 or not location:
            break
        target = urlsplit(location)
        base_url = f"{target.scheme}://{target.netloc}"
        path = target.path + (f"?{target.query}" if target.query else "")
    reply.visited = visited
    return reply


def put_until_ok(
    base_urls: list[str], key: str, value: str, timeout: float = 15.0
) -> Reply:
    """PUT ``key=value`` (following redirects) until a 200, trying the nodes in turn on
    503, 504 or no answer (an election may be under way); AssertionError after
    ``timeout`` s or on any other status. Safe to repeat: the same value each time."""
    deadline = time.monotonic() + timeout
    last: object = None
    for attempt in range(10_000):
        url = base_urls[attempt % len(base_urls)]
        try:
            reply = request_following(url, "PUT", key_path(key), body={"value": value})
        except OSError as exc:
            last = exc
        else:
            if reply.status == 200:
                return reply
            assert reply.status in (503, 504), reply
            last = reply
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"PUT {key} not acknowledged within {timeout} s: {last}")
