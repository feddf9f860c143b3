"""``GET /metrics`` (Prometheus text format, or OpenMetrics when asked), and how a finished
request is named for its latency histogram: by route template, never by its raw path,
so keys and names never become label values."""

from __future__ import annotations

import re
from typing import Any, Callable

from klein.interfaces import IKleinRequest
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule

from leifdb.http.params import lenient_path
from leifdb.http.routing import Routes, api
from leifdb.metrics import NodeMetrics

__all__ = ["MetricsRoutes", "UNMATCHED_ROUTE", "route_template", "target_route"]

#: The route label of requests no route serves (404, 405, preflights, early refusals).
UNMATCHED_ROUTE = "unmatched"
_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_TEMPLATES: dict[str, str] = {}  # Werkzeug rule -> its OpenAPI form; as many as routes


class MetricsRoutes(Routes):
    """The scrape endpoint of this node's ``NodeMetrics``."""

    metrics: NodeMetrics

    @api.route("/metrics", methods=["GET"], merge_slashes=False)
    def prometheus_metrics(self, request: IRequest) -> bytes:
        """This node's metrics for Prometheus, read at the time of the scrape.

        ---
        get:
          tags: [cluster]
          summary: Prometheus metrics of this node
          description: >-
            Raft term, role, commit and applied index, proposals, fsync and Ready batch
            histograms, HTTP latency by route template, peer round trips, snapshots,
            watchers, leases and members, all prefixed `leifdb_`. Prometheus text format
            0.0.4; OpenMetrics when the `Accept` header asks for it.
          operationId: getMetrics
          produces: [text/plain, application/openmetrics-text]
          responses:
            200:
              description: The metrics, one sample per line.
              schema:
                type: string
            400: BadRequest
            500: InternalError
        """
        accept = request.getHeader(b"accept")
        body, content_type = self.metrics.exposition(
            accept.decode("latin-1") if accept is not None else None
        )
        request.setHeader(b"Content-Type", content_type.encode("latin-1"))
        request.setHeader(b"Content-Length", b"%d" % len(body))
        request.setHeader(b"Cache-Control", b"no-store")
        return body


def route_template(request: IRequest) -> str:
    """The template of the route that served ``request`` (``/db/{key}``), as the OpenAPI
    document writes it; ``UNMATCHED_ROUTE`` when no route serves its path and method.
    Reuses the route ``ApiRoot`` dispatched it to, or the URL map Klein bound for it."""
    route = getattr(request, "route", None)
    if route is not None:
        return route
    mapper = getattr(IKleinRequest(request), "mapper", None)
    if mapper is None:  # answered before Klein (OPTIONS, a bad target...)
        return target_route(request.uri, request.method)
    return _matched(lambda: mapper.match(return_rule=True))


def target_route(uri: bytes, method: bytes) -> str:
    """``route_template`` of a raw request target and method."""
    return _matched(lambda: api.url_map.bind("localhost", path_info=lenient_path(uri)).match(
        method=method.decode("ascii", "replace"), return_rule=True))


def _matched(match: Callable[[], tuple[Rule, Any]]) -> str:
    try:
        rule, _ = match()
    except (HTTPException, ValueError):
        return UNMATCHED_ROUTE
    template = _TEMPLATES.get(rule.rule)
    if template is None:
        template = _TEMPLATES[rule.rule] = _ARGUMENT.sub(r"{\1}", rule.rule)
    return template
