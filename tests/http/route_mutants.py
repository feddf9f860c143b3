"""The HTTP routes' half of the read barrier, each rule broken by one mutant: a route that
drops the client's ``consistency`` (reads stale by default) or starts its stream or long
poll without the barrier. Used by tests/http/test_read_barrier_routes.py.

Every read route reaches the service through ``Routes._read`` (the helper that maps the
service's refusals to 307/503), so a mutant replaces it with a copy that, for one route
(its path prefix) and one service call, passes ``consistency=stale`` instead of the
client's, or skips the ``barrier`` call altogether.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from twisted.web.iweb import IRequest

from leifdb.http.routing import Routes
from leifdb.service.api import CONSISTENCY_STALE

__all__ = ["ROUTE_MUTANTS", "RouteMutant"]

_REAL_READ = Routes._read


def _read_without_barrier(path_prefix: bytes, call_name: str) -> Callable[..., Any]:
    """``Routes._read`` that, for requests under ``path_prefix`` calling the service's
    ``call_name``, drops the barrier: the call itself (``barrier``), or the consistency
    the route passes as its last argument (anything else)."""

    async def _read(self: Routes, request: IRequest, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if request.path.startswith(path_prefix) and getattr(call, "__name__", "") == call_name:
            if call_name == "barrier":
                return None
            args = (*args[:-1], CONSISTENCY_STALE)
        return await _REAL_READ(self, request, call, *args, **kwargs)

    return _read


@dataclass(frozen=True)
class RouteMutant:
    """``Routes._read`` replaced breaks ``rule``; the checks of ``routes`` must fail."""

    name: str
    rule: str
    where: str
    replacement: Callable[..., Any]
    routes: tuple[str, ...]


ROUTE_MUTANTS = (
    RouteMutant("get_route_reads_stale", "GET /db/{key} passes the client's consistency (default linearizable)",
                "http/keys.py: KeyRoutes._get_item", _read_without_barrier(b"/db/", "get"), ("get",)),
    RouteMutant("list_route_reads_stale", "GET /db?prefix= passes the client's consistency",
                "http/keys.py: KeyRoutes.list_keys", _read_without_barrier(b"/db", "range"), ("list",)),
    RouteMutant("txn_route_reads_stale", "POST /txn (read-only) passes the client's consistency",
                "http/txn.py: TxnRoutes.txn", _read_without_barrier(b"/txn", "txn"), ("txn",)),
    RouteMutant("long_poll_starts_without_barrier",
                "GET /db/{key}?wait_revision= passes the barrier before it waits",
                "http/keys.py: KeyRoutes.get_key", _read_without_barrier(b"/db/", "barrier"), ("long_poll",)),
    RouteMutant("watch_starts_without_barrier", "GET /watch/{key} starts after the barrier",
                "http/watch.py: WatchRoutes.watch", _read_without_barrier(b"/watch/", "barrier"), ("watch",)),
    RouteMutant("observe_starts_without_barrier", "GET /election/{name}/observe starts after the barrier",
                "http/elections.py: ElectionRoutes.observe", _read_without_barrier(b"/election/", "barrier"),
                ("observe",)),
    RouteMutant("lock_holder_route_reads_stale", "GET /lock/{name} passes the client's consistency",
                "http/locks.py: LockRoutes.lock_holder", _read_without_barrier(b"/lock/", "lock_holder"),
                ("lock_holder",)),
    RouteMutant("election_leader_route_reads_stale", "GET /election/{name} passes the client's consistency",
                "http/elections.py: ElectionRoutes.election_leader",
                _read_without_barrier(b"/election/", "election_leader"), ("election_leader",)),
)
