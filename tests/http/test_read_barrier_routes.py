"""Every HTTP read route passes the read barrier unless the client asked for
``consistency=stale``: GET /db/{key}, GET /db?prefix=, read-only POST /txn, the start of a
long poll, of a watch and of an election's observe stream, GET /lock/{name},
GET /election/{name}, GET /lease and GET /lease/{id}.

Unlike the other HTTP tests, the routes here talk to the real ``KVService``, over a node
that records its read requests (``tests.service.read_paths.Scene``): its applied state
lags the committed log, so an answer given before the barrier shows the old state. Each
route must not answer (or start its stream) before a read index was requested, confirmed
and applied, then answer the new state; a refused read index is a 307 to the leader; a
stale read answers at once from the old state. Each mutant of
``tests.http.route_mutants`` (a route that drops the consistency or the barrier) and each
of ``tests.service.barrier_mutants`` (the service's side) is caught on exactly the routes
it breaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest
from twisted.python.failure import Failure

from leifdb.http.routing import Routes
from tests.http.client import BASE, Client, Reply, Stream
from tests.http.route_mutants import ROUTE_MUTANTS, RouteMutant
from tests.service.barrier_mutants import SERVICE_MUTANTS, ServiceMutant
from tests.service.read_paths import LEADER_HTTP, READ_PATHS, Scene

_SCENES = {p.name: p for p in READ_PATHS}


class _Started:
    """A request in flight: a plain one (``Client.start``) or a stream, whose answer is
    there once its status and headers arrived."""

    def __init__(self, client: Client, method: str, path: str, body: Any, stream: bool) -> None:
        self._client = client
        self._stream = stream
        if stream:
            self._outcome: list[Any] = []
            d = client.http.request(method, BASE + path, unbuffered=True, allow_redirects=False)
            self._connection = client.agent.last
            d.addBoth(self._outcome.append)
            client.flush()
        else:
            self._pending = client.start(method, path, json=body) if body is not None else client.start(method, path)

    @property
    def done(self) -> bool:
        if self._stream:
            self._client.flush()
            return bool(self._outcome)
        return self._pending.done

    def answer(self) -> Reply | Stream:
        if not self._stream:
            return self._pending.reply()
        response = self._outcome[0]
        if isinstance(response, Failure):
            response.raiseException()
        return Stream(self._client, response, self._connection)


def _first(stream: Stream, event: str) -> dict[str, Any] | None:
    return next((m["data"] for m in stream.messages() if m.get("event") == event), None)


@dataclass(frozen=True)
class Route:
    """One read route: ``scene`` names the ``READ_PATHS`` entry whose committed entries it
    reads; ``fresh``/``stale`` say whether an answer shows the state after them / only the
    state before them (``stale`` None: the route has no ``consistency``)."""

    name: str
    method: str
    path: str
    scene: str
    fresh: Callable[[Any], bool]
    stale: Callable[[Any], bool] | None
    body: Any = None
    stream: bool = False

    def start(self, client: Client, consistency: str | None = None) -> _Started:
        path = self.path
        if consistency is not None:
            path += ("&" if "?" in path else "?") + f"consistency={consistency}"
        return _Started(client, self.method, path, self.body, self.stream)


def _value(reply: Reply) -> Any:
    return reply.json()["value"] if reply.code == 200 else reply.code


TXN = {"compare": [{"key": "k", "target": "value", "op": "equal", "value": "v2"}],
       "success": [{"op": "get", "key": "k"}]}

ROUTES = (
    Route("get", "GET", "/db/k", "get", lambda r: _value(r) == "v2", lambda r: _value(r) == "v1"),
    Route("list", "GET", "/db?prefix=k", "range",
          lambda r: [i["key"] for i in r.json()["items"]] == ["k1", "k2"],
          lambda r: [i["key"] for i in r.json()["items"]] == ["k1"]),
    Route("txn", "POST", "/txn", "read_only_txn",
          lambda r: r.json()["succeeded"] is True, lambda r: r.json()["succeeded"] is False, body=TXN),
    Route("long_poll", "GET", "/db/k?wait_revision=2&timeout=5s", "get", lambda r: _value(r) == "v2", None),
    Route("watch", "GET", "/watch/k", "get",
          lambda s: s.code == 200 and _first(s, "progress") == {"revision": 2},
          lambda s: s.code == 200 and _first(s, "progress") == {"revision": 1}, stream=True),
    Route("observe", "GET", "/election/db/observe", "election_leader",
          lambda s: s.code == 200 and (_first(s, "leader") or {}).get("leader", {}) is not None
          and _first(s, "leader")["leader"]["token"] == 2,
          lambda s: s.code == 200 and _first(s, "leader") == {"leader": None, "revision": 1}, stream=True),
    Route("lock_holder", "GET", "/lock/jobs", "lock_holder",
          lambda r: r.code == 200 and r.json()["token"] == 2, lambda r: r.code == 404),
    Route("election_leader", "GET", "/election/db", "election_leader",
          lambda r: r.code == 200 and r.json()["token"] == 2, lambda r: r.code == 404),
    Route("leases", "GET", "/lease", "leases",
          lambda r: sorted(lease["id"] for lease in r.json()["leases"]) == [1, 2], None),
    Route("lease_info", "GET", "/lease/2", "lease_info", lambda r: r.code == 200 and r.json()["id"] == 2, None),
)

# The routes each service mutant must be caught on. The long poll is not among those of
# ``read_served_before_apply``: it waits for a change at revision 2, which covers the
# barrier's own wait for the state machine; proclaim and resign are writes (their barrier
# is checked in tests/service only).
_ALL_READS = {"get", "list", "txn", "watch", "observe", "lock_holder", "election_leader", "leases", "lease_info"}
SERVICE_MUTANT_ROUTES = {
    "get_without_barrier": {"get"},
    "range_without_barrier": {"list"},
    "read_only_txn_without_barrier": {"txn"},
    "barrier_without_read_index": {"long_poll", "watch", "observe", "lock_holder", "election_leader"},
    "lease_read_without_barrier": {"leases", "lease_info"},
    "holder_read_without_barrier": {"lock_holder", "election_leader"},
    "read_served_before_apply": _ALL_READS,
}


def _scene(route: Route) -> tuple[Scene, Client]:
    path = _SCENES[route.scene]
    scene = Scene(path.before, path.after)
    return scene, Client(scene.service)


def check_route(route: Route) -> None:
    """No answer before a read index was requested, confirmed and applied; then the state
    at that read index."""
    scene, client = _scene(route)
    started = route.start(client)
    if started.done:
        raise AssertionError(f"{route.name} answered before any read index was confirmed")
    if not scene.open_reads:
        raise AssertionError(f"{route.name} asked the node for no read index")
    scene.confirm_reads()
    if started.done:
        raise AssertionError(f"{route.name} answered before the state machine applied its read index")
    scene.settle(lambda: started.done)
    if not started.done or not route.fresh(started.answer()):
        raise AssertionError(f"{route.name} did not answer the state at its read index")


def check_route_refused(route: Route) -> None:
    """A read index the node refuses is a redirect to the leader, at once."""
    scene, client = _scene(route)
    started = route.start(client)
    scene.refuse_reads()
    if not started.done:
        raise AssertionError(f"{route.name} did not answer a refused read index at once")
    answer = started.answer()
    if answer.code != 307 or answer.header("Location") != f"http://{LEADER_HTTP}{route.path}":
        raise AssertionError(f"{route.name}: a refused read index gave {answer.code} {answer.header('Location')}")


def check_route_stale(route: Route) -> None:
    scene, client = _scene(route)
    started = route.start(client, "stale")
    if scene.node.read_ids:
        raise AssertionError(f"a stale {route.name} asked the node for a read index")
    assert route.stale is not None
    if not started.done or not route.stale(started.answer()):
        raise AssertionError(f"a stale {route.name} did not answer the local state at once")


def _caught(check: Callable[[Route], None]) -> set[str]:
    caught = set()
    for route in ROUTES:
        try:
            check(route)
        except AssertionError:
            caught.add(route.name)
    return caught


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_a_read_route_answers_only_after_the_barrier(route: Route) -> None:
    check_route(route)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_a_read_route_redirects_when_the_read_index_is_refused(route: Route) -> None:
    check_route_refused(route)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.stale is not None], ids=lambda r: r.name)
def test_a_stale_read_route_answers_at_once_from_the_local_state(route: Route) -> None:
    check_route_stale(route)


def test_stale_long_poll_asks_the_node_nothing() -> None:
    route = next(r for r in ROUTES if r.name == "long_poll")
    scene, client = _scene(route)
    started = route.start(client, "stale")
    scene.apply()
    assert started.done and route.fresh(started.answer()) and scene.node.read_ids == []


@pytest.mark.parametrize("mutant", ROUTE_MUTANTS, ids=lambda m: m.name)
def test_each_route_mutant_is_caught_on_its_route(mutant: RouteMutant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Routes, "_read", mutant.replacement)
    assert _caught(check_route) == set(mutant.routes)


@pytest.mark.parametrize(
    "mutant", [m for m in SERVICE_MUTANTS if m.name in SERVICE_MUTANT_ROUTES], ids=lambda m: m.name
)
def test_each_service_barrier_mutant_is_caught_through_http(
    mutant: ServiceMutant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mutant.target, mutant.attribute, mutant.replacement)
    assert _caught(check_route) == SERVICE_MUTANT_ROUTES[mutant.name]


def test_refused_reads_are_never_served_through_http(monkeypatch: pytest.MonkeyPatch) -> None:
    mutant = next(m for m in SERVICE_MUTANTS if m.name == "refused_read_served")
    monkeypatch.setattr(mutant.target, mutant.attribute, mutant.replacement)
    assert _caught(check_route_refused) == {r.name for r in ROUTES}
