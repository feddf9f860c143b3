"""The OpenAPI 2.0 (Swagger) document, generated from the Klein route table.

Paths come from ``ClientApi.app.url_map``; each operation from the YAML in its handler's
docstring (``apispec.yaml_utils``); the shared pieces (schemas, responses, parameters)
are declared once here. A test checks that routes and document agree both ways.
"""

from __future__ import annotations

import copy
import inspect
import re
from typing import Any

from apispec import APISpec
from apispec.yaml_utils import load_operations_from_docstring

from leifdb.http.params import Limits
from leifdb.http.routes import RETRY_AFTER_SECONDS, ClientApi

__all__ = ["TITLE", "openapi_document", "swagger_path"]

TITLE = "LeifDb Client API"
_ROUTE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_UNDOCUMENTED_METHODS = {"HEAD", "OPTIONS"}

_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "key": {
        "in": "path",
        "name": "key",
        "required": True,
        "type": "string",
        "description": (
            "The key: a non-empty UTF-8 string, at most {max_key_bytes} bytes. It may "
            "contain `/` (`config/db/url`); the path is percent-decoded before routing, so "
            "`%2F` is the same as `/`. Percent-encode `?`, `#`, `%` and spaces."
        ),
    },
    "name": {
        "in": "path",
        "name": "name",
        "required": True,
        "type": "string",
        "description": "A file name of the Swagger UI.",
    },
}

_DESCRIPTION = """\
A distributed, consistent key-value store on Raft.

**Keys** are non-empty UTF-8 strings of at most {max_key_bytes} bytes and may contain `/`.
**Values** are UTF-8 strings of at most {max_value_bytes} bytes. A request body may be at
most {max_body_bytes} bytes. Larger keys, values or bodies get 413.

**Revisions.** Every write is a Raft log entry; a key's revision is the log index of the
write that last set it. Reads and writes return it in the body and as a quoted `ETag`.

**Consistency.** Reads are linearizable by default: the node confirms with a majority that
it has every committed write before answering. `?consistency=stale` answers at once from the
node's local state, which may lag. A node that cannot serve a linearizable read answers 307
to the leader when it knows one, else 503 with `Retry-After`.

**Writes on a follower** get `307 Temporary Redirect` with `Location` set to the same path
and query on the leader (`curl -L` follows it, resending method and body). With no known
leader: 503 with `Retry-After` and `"applied": false`. If the outcome of a write is unknown
(leadership lost before commit, or timeout): 504 with `"applied": "unknown"`.

**Errors** are always JSON `{{"error": "..."}}`, with extra fields where useful. An unknown
path is 404; a known path with another method is 405 with an `Allow` header. `HEAD` is
accepted wherever `GET` is, and `OPTIONS` answers with `Allow`.

**CORS.** Any origin may call the API: responses to requests with an `Origin` carry
`Access-Control-Allow-Origin: *` and expose `ETag`, `Location` and `Retry-After`. A
preflight (`OPTIONS` with `Access-Control-Request-Method`) on any path gets 200 with an
empty body, echoing the requested method and headers.
"""


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "schema": {"$ref": "#/definitions/Error"}, **extra}


_RETRY_AFTER = {
    "Retry-After": {
        "type": "integer",
        "description": f"Seconds to wait before retrying ({RETRY_AFTER_SECONDS}).",
    }
}
_LOCATION = {
    "Location": {
        "type": "string",
        "description": "The same path and query on the leader: `http://<leader>/...`.",
    }
}

_SCHEMAS: dict[str, dict[str, Any]] = {
    "Item": {
        "type": "object",
        "required": ["key", "value", "revision"],
        "properties": {
            "key": {"type": "string"},
            "value": {"type": "string"},
            "revision": {"type": "integer", "format": "int64", "minimum": 1},
        },
    },
    "Page": {
        "type": "object",
        "required": ["prefix", "items", "more", "next_start_after"],
        "properties": {
            "prefix": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": "#/definitions/Item"}},
            "more": {
                "type": "boolean",
                "description": "True when more keys under the prefix follow this page.",
            },
            "next_start_after": {
                "type": "string",
                "x-nullable": True,
                "description": "The `start_after` for the next page; null when `more` is false.",
            },
        },
    },
    "PutBody": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "value": {"type": "string", "description": "The new value."},
            "prev": {
                "type": "string",
                "description": "Write only if the current value equals this.",
            },
        },
    },
    "DeleteBody": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "prev": {
                "type": "string",
                "description": "Delete only if the current value equals this.",
            },
        },
    },
    "WriteOk": {
        "type": "object",
        "required": ["status", "revision"],
        "properties": {
            "status": {"type": "string", "enum": ["Ok"]},
            "revision": {"type": "integer", "format": "int64", "minimum": 1},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "node", "role", "term", "leader",
                     "leader_http", "commit_index", "applied_index"],
        "properties": {
            "status": {"type": "string", "enum": ["OK"]},
            "version": {"type": "string"},
            "node": {"type": "string", "description": "This node's id (`host:raftport`)."},
            "role": {"type": "string", "description": "leader, follower or candidate."},
            "term": {"type": "integer", "format": "int64"},
            "leader": {"type": "string", "x-nullable": True,
                       "description": "The leader's id, null when none is known."},
            "leader_http": {"type": "string", "x-nullable": True,
                            "description": "The leader's client address `host:port`."},
            "commit_index": {"type": "integer", "format": "int64"},
            "applied_index": {"type": "integer", "format": "int64"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
        "additionalProperties": True,
    },
    "WriteError": {
        "type": "object",
        "required": ["error", "applied"],
        "properties": {
            "error": {"type": "string"},
            "applied": {
                "description": "false: not applied, safe to retry; "
                               '"unknown": may have been applied.',
            },
            "leader": {"type": "string", "description": "The leader's base URL (307)."},
        },
    },
    "ConditionFailed": {
        "type": "object",
        "required": ["error", "key", "value", "revision"],
        "properties": {
            "error": {"type": "string"},
            "key": {"type": "string"},
            "value": {"type": "string", "x-nullable": True,
                      "description": "The current value; null if the key is absent."},
            "revision": {"type": "integer", "format": "int64", "x-nullable": True,
                         "description": "The current revision; null if the key is absent."},
        },
    },
}

_RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": _error(
        "Bad input: invalid JSON, missing or mistyped field, invalid percent-encoding or "
        "UTF-8, empty key, unknown `consistency`, bad `limit`, conflicting conditions."
    ),
    "KeyNotFound": _error("The key does not exist (`key` in the body)."),
    "RouteNotFound": _error("No such route or file."),
    "TooLarge": _error("The key, value or request body is larger than its limit (`limit`)."),
    "InternalError": _error("An unexpected error; it is logged on the node."),
    "ConditionFailed": {
        "description": "The condition did not hold; nothing changed. The body holds the key's "
                       "current value and revision, also sent as `ETag` when it exists.",
        "schema": {"$ref": "#/definitions/ConditionFailed"},
        "headers": {"ETag": {"type": "string"}},
    },
    "NotLeader": {
        "description": "This node is not the leader: resend to `Location` (`curl -L`).",
        "schema": {"$ref": "#/definitions/WriteError"},
        "headers": _LOCATION,
    },
    "ReadRedirect": _error(
        "This node cannot serve a linearizable read itself: read from `Location` (the "
        "leader), or add `consistency=stale`.",
        headers=_LOCATION,
    ),
    "NoLeader": {
        "description": "No leader is known; the write was not applied (`applied: false`).",
        "schema": {"$ref": "#/definitions/WriteError"},
        "headers": _RETRY_AFTER,
    },
    "OutcomeUnknown": {
        "description": 'The write may or may not have been applied (`applied: "unknown"`); '
                       "read the key before retrying.",
        "schema": {"$ref": "#/definitions/WriteError"},
    },
    "ReadUnavailable": _error(
        "A linearizable read cannot be served now (no leader or no majority); retry, or "
        "use `consistency=stale`.",
        headers=_RETRY_AFTER,
    ),
    "MethodNotAllowed": _error(
        "The path exists but not with this method (any path).",
        headers={"Allow": {"type": "string", "description": "The allowed methods."}},
    ),
}

_PARAMETERS: dict[str, dict[str, Any]] = {
    "Consistency": {
        "in": "query",
        "name": "consistency",
        "type": "string",
        "enum": ["linearizable", "stale"],
        "default": "linearizable",
        "description": "`stale` answers from this node's state at once; it may lag.",
    },
    "IfMatch": {
        "in": "header",
        "name": "If-Match",
        "type": "string",
        "description": 'Apply only if the key\'s revision is this ETag (`"42"`).',
    },
    "IfNoneMatch": {
        "in": "header",
        "name": "If-None-Match",
        "type": "string",
        "enum": ["*"],
        "description": "`*`: apply only if the key is absent.",
    },
}


def swagger_path(rule: str) -> str:
    """A Werkzeug rule (``/db/<key:key>``) as a Swagger path (``/db/{key}``)."""
    return _ROUTE_ARGUMENT.sub(r"{\1}", rule)


def openapi_document(
    *,
    version: str,
    max_key_bytes: int | None = None,
    max_value_bytes: int | None = None,
    max_body_bytes: int | None = None,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """The Swagger 2.0 document for the routes of ``ClientApi``, stating these limits.

    Pass either ``limits`` or the byte options (defaults as in ``make_app``).
    """
    if limits is None:
        options = {
            name: value
            for name, value in (
                ("max_key_bytes", max_key_bytes),
                ("max_value_bytes", max_value_bytes),
                ("max_body_bytes", max_body_bytes),
            )
            if value is not None
        }
        limits = Limits.create(**options)
    sizes = {
        "max_key_bytes": limits.max_key_bytes,
        "max_value_bytes": limits.max_value_bytes,
        "max_body_bytes": limits.max_body_bytes,
    }
    spec = APISpec(
        title=TITLE,
        version=version,
        openapi_version="2.0",
        info={"description": _DESCRIPTION.format(**sizes)},
        basePath="/",
        consumes=["application/json"],
        produces=["application/json"],
        tags=[
            {"name": "keys", "description": "Read and write keys."},
            {"name": "cluster", "description": "Node and cluster status."},
            {"name": "docs", "description": "This document and its UI."},
        ],
    )
    for name, schema in _SCHEMAS.items():
        spec.components.schema(name, copy.deepcopy(schema))
    for name, response in _RESPONSES.items():
        spec.components.response(name, copy.deepcopy(response))
    for name, parameter in _PARAMETERS.items():
        spec.components.parameter(name, parameter["in"], copy.deepcopy(parameter))

    paths: dict[str, dict[str, Any]] = {}
    path_parameters: dict[str, list[dict[str, Any]]] = {}
    for rule in ClientApi.app.url_map.iter_rules():
        path = swagger_path(rule.rule)
        docstring = inspect.getdoc(getattr(ClientApi, rule.endpoint)) or ""
        operations = load_operations_from_docstring(docstring)
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
    return spec.to_dict()


def _path_parameter(argument: str, sizes: dict[str, int]) -> dict[str, Any]:
    parameter = dict(_PATH_PARAMETERS[argument])
    parameter["description"] = parameter["description"].format(**sizes)
    return parameter
