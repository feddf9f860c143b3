"""The OpenAPI 2.0 (Swagger) document, generated from the Klein route table.

Paths come from ``ClientApi.app.url_map``; each operation from the YAML in its handler's
docstring (``apispec.yaml_utils``); the shared pieces (schemas, responses, parameters)
are declared once in ``leifdb.http.openapi_parts``. A test checks that routes and document
agree both ways, query parameters included.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
from typing import Any

from apispec import APISpec
from apispec.yaml_utils import load_operations_from_docstring

from leifdb.http.limits import HttpLimits
from leifdb.http.openapi_parts import (
    PARAMETERS,
    PATH_PARAMETERS,
    RESPONSES,
    REVISION_HEADER_DOC,
    SCHEMAS,
)
from leifdb.http.paths import REVISION_HEADER, is_key_api
from leifdb.http.routes import ClientApi

__all__ = ["TITLE", "openapi_document", "swagger_path"]

TITLE = "LeifDb Client API"
_ROUTE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_UNDOCUMENTED_METHODS = {"HEAD", "OPTIONS"}

_DESCRIPTION = """\
A distributed, consistent key-value store on Raft.

**Web UI:** [/ui/](/ui/) on every node: browse, edit and watch keys; see members and leases.

**Keys** are non-empty UTF-8 strings of at most {max_key_bytes} bytes and may contain `/`.
**Values** are UTF-8 strings of at most {max_value_bytes} bytes. A request body may be at
most {max_body_bytes} bytes ({max_txn_bytes} for `POST /txn`). Larger keys, values or bodies
get 413; a declared `Content-Length` over the limit is answered at once. A request line over
{max_request_line_bytes} bytes gets 414, header fields over {max_header_bytes} bytes 431.
Every endpoint refuses query parameters it does not know with 400.

**Revisions.** Every write is a Raft log entry; a key's revision is the log index of the
write that last set it. Reads and writes return it in the body and as a quoted `ETag`.
Every key-API response (`/db`, `/txn`, `/watch`, `/lease`, `/lock`, `/election`), errors
included, carries
`X-LeifDB-Revision`: the node's applied revision when it answered. Read, then watch from
that revision + 1 to miss nothing. History is kept for a while: asking for an older
revision gets 410 with `compact_revision`.

**Consistency.** Reads are linearizable by default: the node confirms with a majority that
it has every committed write before answering. `?consistency=stale` answers at once from the
node's local state, which may lag. A node that cannot serve a linearizable read answers 307
to the leader when it knows one, else 503 with `Retry-After`.

**Writes on a follower** get `307 Temporary Redirect` with `Location` set to the same path
and query on the leader (`curl -L` follows it, resending method and body). With no known
leader: 503 with `Retry-After` and `"applied": false`. If the outcome of a write is unknown
(leadership lost before commit, or timeout): 504 with `"applied": "unknown"`.

**Watching.** `GET /watch/{{key}}` streams changes as Server-Sent Events;
`GET /db/{{key}}?wait_revision=N` waits for a change, then reads (long poll).

**Leases, locks, elections.** `POST /lease` grants a lease; keys attached to it
(`PUT /db/{{key}}?lease=ID`, or `?ttl=30s` for a lease of their own) are deleted when it
is revoked or expires without a keepalive. `POST /lock/{{name}}` waits until a lease holds
the lock and answers its fencing `token`; writes with `?fence=NAME:TOKEN` apply only while
it is still held so. `POST /election/{{name}}/campaign` waits until elected;
`GET /election/{{name}}/observe` streams the leader. These are served by the leader (a
follower answers 307, as for writes); their keys live under `_lock/` and `_election/`.

**Cluster.** `GET /health` answers 503 while the node knows no leader or has not heard
from it within an election timeout. `GET /cluster/members` lists voters and learners;
`POST /cluster/members` adds a learner, `POST /cluster/members/{{member_id}}/promote` makes
it a voter, `DELETE /cluster/members/{{member_id}}` removes a member and `POST
/cluster/leader` hands leadership over. Changes go through the leader (307 elsewhere), one
at a time, and answer once applied; a refusal is 409 with the reason.

**Errors** are always JSON `{{"error": "..."}}`, with extra fields where useful. An unknown
path is 404; a known path with another method is 405 with an `Allow` header. `HEAD` is
accepted wherever `GET` is, and `OPTIONS` answers with `Allow`.

**CORS.** Any origin may call the API: responses to requests with an `Origin` carry
`Access-Control-Allow-Origin: *` and expose `ETag`, `Location`, `Retry-After` and
`X-LeifDB-Revision`. A preflight (`OPTIONS` with `Access-Control-Request-Method`) on any
path gets 200 with an empty body, echoing the requested method and headers.
"""


def swagger_path(rule: str) -> str:
    """A Werkzeug rule (``/db/<key:key>``) as a Swagger path (``/db/{key}``)."""
    return _ROUTE_ARGUMENT.sub(r"{\1}", rule)


def _sizes(limits: HttpLimits) -> dict[str, int]:
    return {
        "max_key_bytes": limits.service.max_key_bytes,
        "max_value_bytes": limits.service.max_value_bytes,
        "max_body_bytes": limits.max_body_bytes,
        "max_txn_bytes": limits.max_txn_body_bytes,
        "max_request_line_bytes": limits.max_request_line_bytes,
        "max_header_bytes": limits.max_header_bytes,
        "max_name_bytes": limits.service.max_name_bytes,
    }


def openapi_document(*, version: str, limits: HttpLimits | None = None) -> dict[str, Any]:
    """The Swagger 2.0 document for the routes of ``ClientApi``, stating these limits
    (default: those of ``HttpLimits.derive()``)."""
    limits = limits if limits is not None else HttpLimits.derive()
    sizes = _sizes(limits)
    spec = APISpec(
        title=TITLE,
        version=version,
        openapi_version="2.0",
        info={"description": _DESCRIPTION.format(**sizes)},
        basePath="/",
        consumes=["application/json"],
        produces=["application/json"],
        tags=[
            {"name": "keys", "description": "Read and write keys, alone or in transactions."},
            {"name": "watch", "description": "Follow changes as they happen."},
            {"name": "leases", "description": "Keys that live as long as their owner."},
            {"name": "locks", "description": "Mutual exclusion with fencing tokens."},
            {"name": "elections", "description": "One leader among candidates."},
            {"name": "cluster", "description": "Node health, members and leadership."},
            {"name": "docs", "description": "This document and its UI."},
        ],
    )
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, copy.deepcopy(schema))
    for name, response in RESPONSES.items():
        spec.components.response(name, copy.deepcopy(response))
    for name, parameter in PARAMETERS.items():
        spec.components.parameter(name, parameter["in"], copy.deepcopy(parameter))

    paths: dict[str, dict[str, Any]] = {}
    path_parameters: dict[str, list[dict[str, Any]]] = {}
    for rule in ClientApi.app.url_map.iter_rules():
        path = swagger_path(rule.rule)
        operations = _operations(rule.endpoint)
        methods = {m.lower() for m in (rule.methods or ()) if m not in _UNDOCUMENTED_METHODS}
        if set(operations) != methods:
            raise ValueError(
                f"route {rule.rule} ({rule.endpoint}) handles {sorted(methods)} but its "
                f"docstring documents {sorted(operations)}"
            )
        paths.setdefault(path, {}).update(operations)
        path_parameters[path] = [
            _path_parameter(argument, sizes) for argument in sorted(rule.arguments)
        ]
    for path in sorted(paths):
        spec.path(path=path, operations=paths[path], parameters=path_parameters[path])
    document = spec.to_dict()
    _document_revision_header(document)
    return document


@functools.cache
def _parsed_operations(endpoint: str) -> dict[str, Any]:
    docstring = inspect.getdoc(getattr(ClientApi, endpoint)) or ""
    return load_operations_from_docstring(docstring)


def _operations(endpoint: str) -> dict[str, Any]:
    """The operations documented in ``endpoint``'s docstring (parsed once: YAML is slow,
    and a document is built per app)."""
    return copy.deepcopy(_parsed_operations(endpoint))


def _path_parameter(argument: str, sizes: dict[str, int]) -> dict[str, Any]:
    parameter = dict(PATH_PARAMETERS[argument])
    parameter["description"] = parameter["description"].format(**sizes)
    return parameter


def _document_revision_header(document: dict[str, Any]) -> None:
    """Add ``X-LeifDB-Revision`` to every response of the key API. Shared responses are
    inlined there (a ``$ref`` response cannot take extra headers in Swagger 2.0)."""
    header = REVISION_HEADER.decode()
    for path, item in document["paths"].items():
        if not is_key_api(path.replace("{key}", "k")):
            continue
        for method, operation in item.items():
            if method == "parameters":
                continue
            for code, response in list(operation["responses"].items()):
                if "$ref" in response:
                    name = response["$ref"].rsplit("/", 1)[1]
                    response = copy.deepcopy(document["responses"][name])
                    operation["responses"][code] = response
                response.setdefault("headers", {})[header] = dict(REVISION_HEADER_DOC)
