"""Client-observed latency of one node: N sequential PUTs, then N linearizable GETs.

One client, one keep-alive connection, one request in flight: this measures latency, not
throughput. Standard library only, so it runs anywhere Python does; not ``leifdb.client``,
whose retries and redirect handling would be timed too (this measures the node):

    python bench/http_latency.py http://127.0.0.1:8080 -n 1000

A 307 from a follower is followed once and the rest of the run talks to the leader.
Keys are written under a fresh prefix (``bench/<time>-<pid>/``) and left in place.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import statistics
import sys
import time
from typing import Callable
from urllib.parse import quote, urlsplit


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sample."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Node:
    """A keep-alive connection to one node that follows a redirect to the leader."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._connect(base_url)

    def _connect(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"need an http:// base URL, not {base_url!r}")
        self.base_url = f"http://{parts.netloc}"
        self.conn = http.client.HTTPConnection(
            parts.hostname, parts.port or 80, timeout=self.timeout)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in range(3):
            headers = {"Content-Type": "application/json"} if body is not None else {}
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()  # the next request reconnects
                if attempt == 2:
                    raise
                continue
            if response.status == 307 and attempt < 2:
                location = response.getheader("Location", "")
                target = urlsplit(location)
                self.conn.close()
                self._connect(location)
                path = target.path + (f"?{target.query}" if target.query else "")
                print(f"redirected to the leader at {self.base_url}", file=sys.stderr)
                continue
            return response.status, data
        raise RuntimeError("too many redirects")

    def close(self) -> None:
        self.conn.close()


def _timed(call: Callable[[], tuple[int, bytes]], expect: int) -> float:
    start = time.perf_counter()
    status, data = call()
    elapsed = time.perf_counter() - start
    if status != expect:
        raise RuntimeError(f"expected {expect}, got {status}: {data[:200]!r}")
    return elapsed


def measure(base_url: str, n: int, value_size: int = 100,
            prefix: str | None = None) -> dict[str, list[float]]:
    """Seconds per request: ``{"put": [...], "get": [...]}``, n of each."""
    prefix = prefix if prefix is not None else f"bench/{int(time.time())}-{os.getpid()}/"
    value = "x" * value_size
    node = Node(base_url)
    try:
        paths = [f"/db/{quote(prefix + str(i), safe='/')}" for i in range(n)]
        body = json.dumps({"value": value}).encode()
        puts = [_timed(lambda p=p: node.request("PUT", p, body), 200) for p in paths]
        gets = [_timed(lambda p=p: node.request("GET", p), 200) for p in paths]
    finally:
        node.close()
    return {"put": puts, "get": gets}


def report(samples: dict[str, list[float]]) -> str:
    lines = []
    for name, values in samples.items():
        lines.append(
            f"{name.upper():4} n={len(values)}  median={statistics.median(values) * 1e3:.2f} ms"
            f"  p99={percentile(values, 99) * 1e3:.2f} ms"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", help="a node's client URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("-n", type=int, default=1000, help="requests of each kind (1000)")
    parser.add_argument("--value-size", type=int, default=100, help="value bytes (100)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("-n must be at least 1")
    print(report(measure(args.base_url, args.n, args.value_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
