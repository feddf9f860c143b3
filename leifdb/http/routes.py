"""The client API: ``ClientApi`` combines the route classes (keys, transactions, watches,
leases, locks, elections, cluster membership, backups, the web UI, metrics) with the
documentation, health and error handlers, bound to one service.

Each handler's docstring ends with its OpenAPI 2.0 operation in YAML after ``---``;
``leifdb.http.openapi`` builds the document from the url map and those docstrings, so a
route and its documentation live side by side. Handlers return bytes with the content type
set (Klein turns dicts into empty 200s) and signal every error by raising ``ApiError``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from leifdb.http.cluster import ClusterRoutes
from leifdb.http.elections import ElectionRoutes
from leifdb.http.errors import ApiError, respond_error, respond_json
from leifdb.http.failures import RETRY_AFTER_SECONDS
from leifdb.http.keys import KeyRoutes
from leifdb.http.leases import LeaseRoutes
from leifdb.http.limits import HttpLimits
from leifdb.http.locks import LockRoutes
from leifdb.http.metrics import MetricsRoutes
from leifdb.http.params import lenient_path
from leifdb.http.paths import is_key_api
from leifdb.http.routing import api
from leifdb.http.snapshot import SnapshotRoutes
from leifdb.http.swagger_ui import SwaggerUi
from leifdb.http.txn import TxnRoutes
from leifdb.http.ui import UiRoutes, WebUi
from leifdb.http.watch import WatchRoutes
from leifdb.metrics import NodeMetrics
from leifdb.service.api import Service

__all__ = ["ClientApi", "STATUS_FIELDS", "routing_error"]

STATUS_FIELDS = (
    "node",
    "role",
    "term",
    "leader",
    "leader_http",
    "commit_index",
    "applied_index",
    "cluster_id",
    "healthy",
    "reason",
    "leader_contact_seconds",
)


class ClientApi(KeyRoutes, TxnRoutes, WatchRoutes, LeaseRoutes, LockRoutes, ElectionRoutes,
                ClusterRoutes, SnapshotRoutes, UiRoutes, MetricsRoutes):
    """The routes, bound to one service. ``app.resource()`` on an instance serves them;
    ``ClientApi.app.url_map`` is the route table the OpenAPI document is built from."""

    app = api
    log = Logger()

    def __init__(
        self,
        service: Service,
        *,
        version: str,
        limits: HttpLimits,
        document: bytes,
        swagger_ui: SwaggerUi,
        web_ui: WebUi,
        metrics: NodeMetrics,
    ) -> None:
        self.service = service
        self.version = version
        self.limits = limits
        self.document = document
        self.swagger_ui = swagger_ui
        self.web_ui = web_ui
        self.metrics = metrics

    # -- documentation ---------------------------------------------------------------

    @api.route("/", methods=["GET"], merge_slashes=False)
    def openapi(self, request: IRequest) -> bytes:
        """The API's own description, built once at start-up.

        ---
        get:
          tags: [docs]
          summary: This OpenAPI 2.0 (Swagger) document
          operationId: getOpenApiDocument
          responses:
            200:
              description: The Swagger 2.0 document, as JSON.
              schema:
                type: object
            400: BadRequest
            500: InternalError
        """
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", b"%d" % len(self.document))
        return self.document

    @api.route("/swagger/", methods=["GET"], merge_slashes=False)
    def swagger_index(self, request: IRequest) -> bytes:
        """The Swagger UI page (``/swagger`` redirects here so relative asset URLs work).

        ---
        get:
          tags: [docs]
          summary: Interactive Swagger UI for this document
          operationId: getSwaggerUi
          produces: [text/html]
          responses:
            200:
              description: The Swagger UI page; it loads the document from `/`.
            400: BadRequest
            500: InternalError
        """
        return self._swagger_file(request, "index.html")

    @api.route("/swagger/<file>", methods=["GET"], merge_slashes=False)
    def swagger_asset(self, request: IRequest, file: str) -> bytes:
        """One Swagger UI file, shipped with the package.

        ---
        get:
          tags: [docs]
          summary: A Swagger UI file (page, script, style sheet, icon)
          operationId: getSwaggerUiFile
          produces: [text/html, text/javascript, text/css, image/png, application/json]
          responses:
            200:
              description: The file.
            400: BadRequest
            404: RouteNotFound
            500: InternalError
        """
        return self._swagger_file(request, file)

    def _swagger_file(self, request: IRequest, name: str) -> bytes:
        found = self.swagger_ui.file(name)
        if found is None:
            raise ApiError(404, f"no Swagger UI file named {name!r}")
        content, content_type = found
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Cache-Control", b"public, max-age=3600")
        request.setHeader(b"Content-Length", b"%d" % len(content))
        return content

    # -- cluster ---------------------------------------------------------------------

    @api.route("/health", methods=["GET"], merge_slashes=False)
    def health(self, request: IRequest) -> bytes:
        """Readiness and a snapshot of this node's Raft state: 200 while the node knows a
        leader it heard from within an election timeout (or leads), else 503 with the
        same body, ``reason`` saying why, so a load balancer stops routing to it.

        ---
        get:
          tags: [cluster]
          summary: Node health and Raft status
          description: >-
            503 while no leader is known or a follower has not heard from its leader for
            more than an election timeout; the body is the same, `healthy` false and
            `reason` saying why. Any answer at all means the process is alive.
          operationId: getHealth
          responses:
            200:
              description: Healthy; the node's view of the cluster.
              schema: Health
            400: BadRequest
            413: TooLarge
            500: InternalError
            503:
              description: Up but not ready to serve (`reason`); the node's view of the
                cluster.
              schema: Health
              headers:
                Retry-After:
                  type: integer
                  description: Seconds to wait before asking again.
        """
        status = self.service.status()
        document: dict[str, object] = {
            "status": "OK" if status.healthy else "UNAVAILABLE", "version": self.version,
        }
        document.update({name: getattr(status, name) for name in STATUS_FIELDS})
        if status.healthy:
            return respond_json(request, 200, document)
        return respond_json(request, 503, document,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    # -- errors ----------------------------------------------------------------------

    def answer_failure(self, request: IRequest, failure: Failure) -> bytes | None:
        """What the error handlers below answer for ``failure``: the same answers for
        the key routes, which ``ApiRoot`` dispatches without Klein."""
        if failure.check(ApiError):
            return self._api_error(request, failure)
        if failure.check(HTTPException):
            return self._routing_error(request, failure)
        return self._unexpected(request, failure)

    @api.handle_errors(ApiError)
    def _api_error(self, request: IRequest, failure: Failure) -> bytes:
        self._stamp_if_key_api(request)
        assert isinstance(failure.value, ApiError)
        return respond_error(request, failure.value)

    @api.handle_errors(HTTPException)
    def _routing_error(self, request: IRequest, failure: Failure) -> bytes:
        self._stamp_if_key_api(request)
        assert isinstance(failure.value, HTTPException)
        return respond_error(request, routing_error(failure.value, request.path))

    @api.handle_errors(Exception)
    def _unexpected(self, request: IRequest, failure: Failure) -> bytes | None:
        if failure.check(CancelledError):
            return None
        self.log.failure(
            "unexpected error answering {method} {path}",
            failure,
            method=request.method,
            path=request.path,
        )
        self._stamp_if_key_api(request)
        return respond_error(request, ApiError(500, "internal server error"))

    def _stamp_if_key_api(self, request: IRequest) -> None:
        """Errors of the key API carry ``X-LeifDB-Revision`` too, as of the answer."""
        try:
            if is_key_api(lenient_path(request.uri)):
                self._stamp(request)
        except Exception:  # never let the header hide the error being answered
            self.log.failure("cannot set X-LeifDB-Revision")


def routing_error(error: HTTPException, raw_path: bytes) -> ApiError:
    """Werkzeug's routing exceptions as JSON errors (its own pages are HTML)."""
    if isinstance(error, RequestRedirect):
        # Only /swagger -> /swagger/ and /ui -> /ui/ (strict slashes); answer with a
        # relative path.
        target = urlsplit(error.new_url)
        location = target.path + (f"?{target.query}" if target.query else "")
        return ApiError(308, "moved", headers={"Location": location}, location=location)
    if isinstance(error, MethodNotAllowed):
        allowed = sorted(set(error.valid_methods or ()) | {"OPTIONS"})
        return ApiError(
            405, "method not allowed", headers={"Allow": ", ".join(allowed)}, allowed=allowed
        )
    if isinstance(error, NotFound):
        return ApiError(404, "no such route", path=raw_path.decode("latin-1"))
    return ApiError(error.code or 500, error.name)
