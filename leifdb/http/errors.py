"""JSON responses and the one exception type handlers raise to answer with an error.

Every response body the API writes, errors included, goes through ``json_body`` so that
clients never see HTML.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from twisted.web.iweb import IRequest

__all__ = ["ApiError", "JSON_CONTENT_TYPE", "json_body", "respond_error", "respond_json"]

JSON_CONTENT_TYPE = b"application/json"
# Built once: ``json.dumps`` with options builds an encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class ApiError(Exception):
    """Answer the request with ``status`` and ``{"error": message, **fields}``.

    ``headers`` are set on the response as given (for ``Location``, ``Retry-After``,
    ``Allow``, ``ETag``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.fields = fields

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.fields}


def json_body(document: Any) -> bytes:
    """Compact UTF-8 JSON. Strings reaching here are valid Unicode (inputs are checked),
    so encoding cannot fail on surrogates."""
    return _ENCODER.encode(document).encode("utf-8")


def respond_json(
    request: IRequest,
    status: int,
    document: Any,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """Set status, content type and ``headers`` on ``request``; return the body to write."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", JSON_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        request.setHeader(name.encode("ascii"), value.encode("latin-1"))
    body = json_body(document)
    # A known length spares clients chunked decoding; HEAD gets the same headers.
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body


def respond_error(request: IRequest, error: ApiError) -> bytes:
    return respond_json(request, error.status, error.body(), error.headers)
