"""``make_app``: the client API as one Twisted resource, ready for a ``Site``."""

from __future__ import annotations

from twisted.web.resource import IResource

from leifdb.http.backend import Backend
from leifdb.http.errors import json_body
from leifdb.http.openapi import openapi_document
from leifdb.http.params import DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_VALUE_BYTES, Limits
from leifdb.http.resource import ApiRoot
from leifdb.http.routes import ClientApi
from leifdb.http.swagger_ui import SwaggerUi

__all__ = ["make_app"]


def make_app(
    backend: Backend,
    *,
    version: str,
    max_key_bytes: int = DEFAULT_MAX_KEY_BYTES,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    max_body_bytes: int | None = None,
) -> IResource:
    """The whole client API for ``backend``: serve it as the root of a ``Site``.

    Limits are in bytes of UTF-8. ``max_body_bytes`` defaults to
    ``2 * max_value_bytes + 64 KiB``. Serve it with ``make_site(resource,
    max_body_bytes=...)`` (same value) so large bodies are refused while they arrive
    instead of being spooled to a temporary file. ValueError for a non-positive limit.
    """
    limits = Limits.create(max_key_bytes, max_value_bytes, max_body_bytes)
    document = json_body(openapi_document(version=version, limits=limits))
    api = ClientApi(
        backend,
        version=version,
        limits=limits,
        document=document,
        swagger_ui=SwaggerUi(document_url="/"),
    )
    return ApiRoot(api.app.resource(), limits)
