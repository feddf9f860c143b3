"""The client HTTP API: Klein routes, their OpenAPI 2.0 document, Swagger UI and CORS.

Imports only ``leifdb.kv.commands`` and ``leifdb.errors`` of ours; the node is reached
through the ``Backend`` protocol.
"""

from leifdb.http.app import make_app
from leifdb.http.backend import Backend, KVReader
from leifdb.http.openapi import openapi_document
from leifdb.http.resource import BoundedRequest, make_site

__all__ = ["Backend", "BoundedRequest", "KVReader", "make_app", "make_site", "openapi_document"]
