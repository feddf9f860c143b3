"""The one Klein app every route registers on, the declared query parameters of each route,
and ``Routes``: what the route classes share (the service, limits and call helpers).

Route handlers are split over a few classes by subject (keys, transactions, watches, the
rest); ``leifdb.http.routes.ClientApi`` combines them, and Klein binds them to it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, TypeVar

from klein import Klein
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from leifdb.http.errors import ApiError
from leifdb.http.failures import (
    leader_read_failure,
    membership_failure,
    read_failure,
    shield,
    write_failure,
)
from leifdb.http.limits import HttpLimits
from leifdb.http.params import Query, parse_query, split_uri
from leifdb.http.paths import REVISION_HEADER
from leifdb.service.api import Service

__all__ = [
    "ELECTION_VERBS",
    "ElectionConverter",
    "KeyConverter",
    "Routes",
    "accepts",
    "api",
    "declared_query",
    "match_endpoint",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class KeyConverter(BaseConverter):
    """The rest of the path, slashes included, possibly empty (the handler answers 400
    for an empty key rather than a puzzling 404)."""

    part_isolating = False
    regex = r"[\s\S]*"
    weight = 200


# What ``/election/{name}/...`` offers besides the election itself.
ELECTION_VERBS = ("campaign", "proclaim", "resign", "observe")


class ElectionConverter(KeyConverter):
    """An election's name: like ``KeyConverter`` (a name with ``/`` reaches the handler,
    which answers 400), except that a path ending in one of ``ELECTION_VERBS`` belongs to
    that verb's route, so ``GET /election/db/campaign`` is 405 (POST only), not a bad name."""

    regex = r"[\s\S]*?" + "".join(f"(?<!/{verb})" for verb in ELECTION_VERBS)


api = Klein()
api.url_map.converters["key"] = KeyConverter
api.url_map.converters["election"] = ElectionConverter

_DECLARED: dict[str, frozenset[str]] = {}


def accepts(*names: str) -> Callable[[F], F]:
    """Declare a handler's query parameters (place it under ``@api.route``); any other
    parameter is answered with 400 before the handler runs."""

    def declare(handler: F) -> F:
        _DECLARED[handler.__name__] = frozenset(names)
        return handler

    return declare


def declared_query(endpoint: str) -> frozenset[str]:
    """The query parameters ``endpoint`` accepts (none unless declared)."""
    return _DECLARED.get(endpoint, frozenset())


def match_endpoint(path: str, method: bytes) -> str | None:
    """The endpoint serving ``method path``, or None when routing would answer 3xx/4xx."""
    adapter = api.url_map.bind("localhost", path_info=path)
    try:
        endpoint, _ = adapter.match(method=method.decode("ascii", "replace"))
    except HTTPException:
        return None
    return str(endpoint)


def methods_for(path: str) -> Iterable[str]:
    """The methods some route serves at ``path`` (empty: no such route)."""
    return api.url_map.bind("localhost", path_info=path).allowed_methods()


class Routes:
    """State and helpers shared by the route classes; see ``ClientApi``."""

    service: Service
    limits: HttpLimits

    def _query(self, request: IRequest) -> Query:
        return parse_query(split_uri(request.uri)[1])

    def _stamp(self, request: IRequest, revision: int | None = None) -> None:
        """Set ``X-LeifDB-Revision``: the revision this answer reflects (default: the
        node's applied revision now)."""
        if revision is None:
            revision = self.service.revision
        request.setHeader(REVISION_HEADER, b"%d" % revision)

    async def _read(
        self, request: IRequest, call: Callable[..., Deferred[T]], *args: Any, **kwargs: Any
    ) -> T:
        """Call the service for a read; its refusals become 307/410/413/503 answers. The
        service's Deferred is shielded from Klein's cancellation on disconnect."""
        d = shield(maybeDeferred(call, *args, **kwargs))
        return await _answer(request, d, read_failure)

    async def _wait(
        self, request: IRequest, call: Callable[..., Deferred[T]], *args: Any, **kwargs: Any
    ) -> T:
        """Like ``_read`` but not shielded: when the client goes away, Klein's
        cancellation reaches the service, which frees the waiter."""
        return await _answer(request, maybeDeferred(call, *args, **kwargs), read_failure)

    async def _leader_read(
        self, request: IRequest, call: Callable[..., Deferred[T]], *args: Any, **kwargs: Any
    ) -> T:
        """Like ``_read`` for what only the leader knows (leases): 307 to it, 503 without
        one, worded without the ``consistency=stale`` these reads do not offer."""
        d = shield(maybeDeferred(call, *args, **kwargs))
        return await _answer(request, d, leader_read_failure)

    async def _write(
        self, request: IRequest, call: Callable[..., Deferred[T]], *args: Any, **kwargs: Any
    ) -> T:
        """Call the service for a write; its failures become 307/503/504 answers telling
        whether the write was applied."""
        d = shield(maybeDeferred(call, *args, **kwargs))
        return await _answer(request, d, write_failure)

    async def _reconfigure(
        self, request: IRequest, call: Callable[..., Deferred[T]], *args: Any, **kwargs: Any
    ) -> T:
        """Like ``_write`` for membership changes and leadership transfers, whose refusals
        (409, 404) and unknown outcomes are worded for the member list."""
        d = shield(maybeDeferred(call, *args, **kwargs))
        return await _answer(request, d, membership_failure)

    async def _acquire(
        self, request: IRequest, call: Callable[..., Deferred[T]], *args: Any, **kwargs: Any
    ) -> T:
        """Like ``_write`` but not shielded, for a lock or campaign that waits: when the
        client goes away, Klein's cancellation reaches the service, which removes the
        waiter's key rather than leave it queued for nobody."""
        return await _answer(request, maybeDeferred(call, *args, **kwargs), write_failure)


async def _answer(
    request: IRequest,
    d: Deferred[T],
    mapping: Callable[[IRequest, Exception], ApiError | None],
) -> T:
    """``d``'s result; a failure the mapping knows becomes its ``ApiError``, any other
    (a bug: logged, 500) passes as it is."""
    try:
        return await d
    except Exception as e:
        answer = mapping(request, e)
        if answer is None:
            raise
        raise answer from None
