"""The client HTTP API: Klein routes (keys, transactions, SSE watches, leases, locks,
elections, cluster membership and health), their OpenAPI 2.0 document, Swagger UI, CORS,
and the site that bounds requests.

Imports only ``leifdb.service.api``, ``leifdb.kv`` and ``leifdb.errors`` of ours; the node
is reached through the ``Service`` protocol.
"""

from leifdb.http.app import make_app
from leifdb.http.limits import HttpLimits
from leifdb.http.openapi import openapi_document
from leifdb.http.site import ApiChannel, ApiSite, BoundedRequest, make_site

__all__ = [
    "ApiChannel",
    "ApiSite",
    "BoundedRequest",
    "HttpLimits",
    "make_app",
    "make_site",
    "openapi_document",
]
