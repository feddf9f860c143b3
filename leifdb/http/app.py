"""``make_app``: the client API as one Twisted resource, ready for ``make_site``."""

from __future__ import annotations

from typing import Any

from leifdb.http.errors import json_body
from leifdb.http.limits import HttpLimits
from leifdb.http.openapi import openapi_document
from leifdb.http.resource import ApiRoot
from leifdb.http.routes import ClientApi
from leifdb.http.swagger_ui import SwaggerUi
from leifdb.http.ui import WebUi
from leifdb.metrics import NodeMetrics
from leifdb.service.api import Service

__all__ = ["make_app"]


def make_app(service: Service, *, version: str, metrics: NodeMetrics | None = None,
             **http_limits: Any) -> ApiRoot:
    """The whole client API for ``service``: serve it with ``make_site(app)``.

    ``/metrics`` serves ``metrics`` (default: a ``NodeMetrics`` of its own reading
    ``service``'s status); give the same object to ``make_site`` to time the requests.

    Limits come from ``service.limits``; ``http_limits`` override the HTTP-only ones of
    ``HttpLimits`` (``max_body_bytes``, ``max_request_line_bytes``, ``max_header_bytes``,
    ``max_headers``). ValueError for a limit that is not positive.
    """
    limits = HttpLimits.derive(service.limits, **http_limits)
    document = json_body(openapi_document(version=version, limits=limits))
    api = ClientApi(
        service,
        version=version,
        limits=limits,
        document=document,
        swagger_ui=SwaggerUi(document_url="/"),
        web_ui=WebUi(),
        metrics=metrics if metrics is not None else NodeMetrics(service, process=False),
    )
    return ApiRoot(api.app.resource(), limits, service, handlers=api)
