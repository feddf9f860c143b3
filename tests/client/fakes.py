"""A transport that answers by request kind, for tests of the lease helpers and the CLI
without a cluster (thread-safe: a keeper thread sends while the test's thread does)."""

from __future__ import annotations

import json
import threading
from typing import Any

from leifdb.client.protocol import Request, Response, Send


def answer(status: int, body: Any = None) -> Response:
    return Response(status, {}, b"" if body is None else json.dumps(body).encode())


def lease_json(lease_id: int = 5, ttl: float = 10.0, remaining: float | None = None) -> dict:
    return {"id": lease_id, "ttl": ttl, "remaining": ttl if remaining is None else remaining,
            "revision": 3}


def holder_json(name: str = "job", lease_id: int = 5, token: int = 7,
                prefix: str = "_lock/", value: str = "") -> dict:
    return {"name": name, "key": f"{prefix}{name}/{lease_id}", "token": token,
            "lease": lease_id, "value": value, "revision": token}


class ByKind:
    """``ByKind(grant=answer(...), keepalive=[a, b, ...], lock=callable)``: a fixed answer,
    a list used in turn (its last answer repeated), or ``callable(request)``. An exception
    instance is raised (``ConnectFailed``, ``NoAnswer``). ``sent`` records every request,
    ``timeouts`` its transport timeout."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.sent: list[Request] = []
        self.timeouts: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, action: Send) -> Response:
        with self._lock:
            self.sent.append(action.request)
            self.timeouts.append(action.timeout)
            given = self.answers[action.request.kind]
            if isinstance(given, list):
                result = given.pop(0) if len(given) > 1 else given[0]
            elif callable(given) and not isinstance(given, Response):
                result = given(action.request)
            else:
                result = given
        if isinstance(result, Exception):
            raise result
        return result

    def kinds(self) -> list[str]:
        with self._lock:
            return [r.kind for r in self.sent]

    def count(self, kind: str) -> int:
        return self.kinds().count(kind)


class AsyncByKind(ByKind):
    """The same, as an ``AsyncClient`` transport."""

    async def send(self, action: Send) -> Response:
        return self(action)

