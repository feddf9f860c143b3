"""The shared pieces of the OpenAPI 2.0 document: schemas, responses and parameters that
the route docstrings name. Examples are chosen so that Swagger UI's "Try it out" works
with its defaults (a body example of ``{"value": "hello"}``, not ``"prev": "string"``).
"""

from __future__ import annotations

from typing import Any

from leifdb.http.failures import RETRY_AFTER_SECONDS
from leifdb.http.openapi_schemas import (
    CLUSTER_SCHEMAS, COUNT, ITEM_EXAMPLE, LEASE_ID, LEASE_SCHEMAS, REVISION, SECONDS, TTL_DOC,
    TXN_SCHEMAS, ref,
)
from leifdb.service.api import MEMBER_ID_MAX_BYTES, MEMBER_ID_PATTERN

__all__ = ["PARAMETERS", "PATH_PARAMETERS", "RESPONSES", "REVISION_HEADER_DOC", "SCHEMAS"]

PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "key": {
        "in": "path",
        "name": "key",
        "required": True,
        "type": "string",
        "x-example": "greeting",
        "description": (
            "The key: a non-empty UTF-8 string, at most {max_key_bytes} bytes. It may "
            "contain `/` (`config/db/url`); the path is percent-decoded before routing, so "
            "`%2F` is the same as `/`. Percent-encode `?`, `#`, `%` and spaces. Where a "
            "prefix is meant (`prefix=true`) it may be empty."
        ),
    },
    "file": {
        "in": "path",
        "name": "file",
        "required": True,
        "type": "string",
        "x-example": "index.html",
        "description": "A file name of the Swagger UI.",
    },
    "lease_id": {
        "in": "path",
        "name": "lease_id",
        "required": True,
        "type": "integer",
        "format": "int64",
        "minimum": 1,
        "x-example": 1,
        "description": "A lease's id, as `POST /lease` answered it.",
    },
    "member_id": {
        "in": "path",
        "name": "member_id",
        "required": True,
        "type": "string",
        "pattern": f"^{MEMBER_ID_PATTERN}$",
        "maxLength": MEMBER_ID_MAX_BYTES,
        "x-example": "n9",
        "description": (
            "A member's id: its name (`n4`), or `host:port` for a member started without "
            "one, as `GET /cluster/members` lists it."
        ),
    },
    "name": {
        "in": "path",
        "name": "name",
        "required": True,
        "type": "string",
        "x-example": "jobs",
        "description": (
            "A lock's or an election's name: non-empty, without `/`, at most "
            "{max_name_bytes} bytes. Its owners' keys are `_lock/{{name}}/{{lease}}` "
            "(`_election/{{name}}/{{lease}}`)."
        ),
    },
}

REVISION_HEADER_DOC = {
    "type": "integer",
    "format": "int64",
    "description": "The node's applied revision when it answered; watch from it + 1, or "
                   "long poll with `wait_revision` = it + 1, to miss nothing.",
}


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
SCHEMAS: dict[str, dict[str, Any]] = {
    "Item": {
        "type": "object",
        "required": ["key", "value", "revision", "create_revision", "lease"],
        "properties": {
            "key": {"type": "string"},
            "value": {"type": "string"},
            "revision": {**REVISION, "description": "The write that last changed the key."},
            "create_revision": {**REVISION,
                                "description": "The write that created the key (a lock "
                                               "key's fencing token)."},
            "lease": {**COUNT, "description": "The lease the key is attached to; 0: none."},
        },
        "example": ITEM_EXAMPLE,
    },
    "Page": {
        "type": "object",
        "required": ["prefix", "items", "more", "next_start_after"],
        "properties": {
            "prefix": {"type": "string"},
            "items": {"type": "array", "items": ref("Item")},
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
            "lease": {**LEASE_ID, "description": "Attach the key to this lease."},
            "ttl": {"description": "Grant a lease for this key alone: " + TTL_DOC},
        },
        "example": {"value": "hello"},
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
        "example": {},
    },
    "WriteOk": {
        "type": "object",
        "required": ["status", "revision"],
        "properties": {
            "status": {"type": "string", "enum": ["Ok"]},
            "revision": REVISION,
        },
    },
    "PutOk": {
        "type": "object",
        "required": ["status", "revision", "lease"],
        "properties": {
            "status": {"type": "string", "enum": ["Ok"]},
            "revision": REVISION,
            "lease": {**COUNT, "description": "The key's lease (with `ttl`: the new "
                                               "lease's id); 0: none."},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "node", "role", "term", "leader",
                     "leader_http", "commit_index", "applied_index", "cluster_id",
                     "healthy", "reason", "leader_contact_seconds"],
        "properties": {
            "status": {"type": "string", "enum": ["OK", "UNAVAILABLE"],
                       "description": "OK when `healthy`."},
            "version": {"type": "string"},
            "node": {"type": "string", "description": "This node's id (`host:raftport`)."},
            "role": {"type": "string", "description": "leader, follower, learner (a "
                                                      "follower without a vote), candidate "
                                                      "or starting."},
            "term": {"type": "integer", "format": "int64"},
            "leader": {"type": "string", "x-nullable": True,
                       "description": "The leader's id, null when none is known."},
            "leader_http": {"type": "string", "x-nullable": True,
                            "description": "The leader's client address `host:port`."},
            "commit_index": {"type": "integer", "format": "int64"},
            "applied_index": {"type": "integer", "format": "int64"},
            "cluster_id": {"type": "string"},
            "healthy": {"type": "boolean",
                        "description": "A leader is known and was heard from within an "
                                       "election timeout (or this node leads)."},
            "reason": {"type": "string", "x-nullable": True,
                       "description": "Why the node is not healthy; null when it is."},
            "leader_contact_seconds": {
                **SECONDS, "x-nullable": True,
                "description": "Seconds since this node last heard from the leader (0 on "
                               "the leader); null when no leader is known."},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
        "additionalProperties": True,
    },
    "Gone": {
        "type": "object",
        "required": ["error", "compact_revision"],
        "properties": {
            "error": {"type": "string"},
            "compact_revision": {**REVISION, "description": "The oldest revision kept."},
        },
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
        "required": ["error"],
        "description": "A failed condition has `key`, `value` and `revision`; a failed "
                       "fence has `fence`.",
        "properties": {
            "error": {"type": "string"},
            "fence": {"type": "string", "description": "The fence that failed, NAME:TOKEN."},
            "key": {"type": "string"},
            "value": {"type": "string", "x-nullable": True,
                      "description": "The current value; null if the key is absent."},
            "revision": {"type": "integer", "format": "int64", "x-nullable": True,
                         "description": "The current revision; null if the key is absent."},
        },
    },
    **TXN_SCHEMAS,
    **LEASE_SCHEMAS,
    **CLUSTER_SCHEMAS,
}

RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": _error(
        "Bad input: an unknown query parameter (named in `parameter`), invalid JSON, a "
        "missing or mistyped field, invalid percent-encoding or UTF-8, an empty key, an "
        "unknown `consistency`, a bad `limit`, conflicting conditions."
    ),
    "KeyNotFound": _error("The key does not exist (`key` in the body)."),
    "LeaseNotFound": _error(
        "The lease does not exist: never granted, revoked or expired (`lease` in the "
        "body). Nothing was changed."
    ),
    "Free": _error("Nobody holds the lock (`name` in the body)."),
    "NoElectionLeader": _error("The election has no leader (`name` in the body)."),
    "NotHolder": _error(
        "The token is not the election's leader (any more); nothing was changed."
    ),
    "LockTimeout": {
        "description": "Not acquired within the timeout; the waiting key was removed.",
        "schema": ref("LockTimeout"),
    },
    "LeaderRedirect": _error(
        "Only the leader keeps leases: ask `Location` (the leader).", headers=_LOCATION
    ),
    "LeaderUnavailable": _error(
        "No leader is known, or it cannot answer now; retry.", headers=_RETRY_AFTER
    ),
    "NotStarted": _error("The node has not started yet; retry.", headers=_RETRY_AFTER),
    "RouteNotFound": _error("No such route or file."),
    "TooLarge": _error(
        "The key, value, request body or transaction is larger than its limit (`limit`). "
        "A declared `Content-Length` over the limit is answered at once."
    ),
    "Gone": {
        "description": "The revision asked for is older than the history the node keeps: "
                       "read again, then continue from the revision of that read.",
        "schema": ref("Gone"),
    },
    "InternalError": _error("An unexpected error; it is logged on the node."),
    "ConditionFailed": {
        "description": "The condition did not hold; nothing changed. The body holds the key's "
                       "current value and revision, also sent as `ETag` when it exists. "
                       "Or the `fence` did not hold: the lock is not held with that token.",
        "schema": ref("ConditionFailed"),
        "headers": {"ETag": {"type": "string"}},
    },
    "NotLeader": {
        "description": "This node is not the leader: resend to `Location` (`curl -L`).",
        "schema": ref("WriteError"),
        "headers": _LOCATION,
    },
    "ReadRedirect": _error(
        "This node cannot serve a linearizable read itself: read from `Location` (the "
        "leader), or add `consistency=stale`.",
        headers=_LOCATION,
    ),
    "NoLeader": {
        "description": "No leader is known; the write was not applied (`applied: false`).",
        "schema": ref("WriteError"),
        "headers": _RETRY_AFTER,
    },
    "OutcomeUnknown": {
        "description": 'The write may or may not have been applied (`applied: "unknown"`); '
                       "read the key before retrying.",
        "schema": ref("WriteError"),
    },
    "ReadUnavailable": _error(
        "A linearizable read cannot be served now (no leader or no majority); retry, or "
        "use `consistency=stale`.",
        headers=_RETRY_AFTER,
    ),
    "WatchUnavailable": _error(
        "No leader for the read barrier (use `consistency=stale`), or this node serves "
        "too many watches; retry.",
        headers=_RETRY_AFTER,
    ),
    "MembershipRedirect": {
        "description": "This node is not the leader: resend to `Location` (`curl -L`); "
                       "nothing was changed (`applied: false`).",
        "schema": ref("WriteError"),
        "headers": _LOCATION,
    },
    "MembershipRefused": {
        "description": "Refused, nothing changed; `error` says why: another change is still "
                       "in progress, the id or address is taken, the member is already a "
                       "voter, the learner lags too far behind, or the change would leave "
                       "too few reachable voters (use `force=true` to remove anyway).",
        "schema": ref("WriteError"),
    },
    "MemberNotFound": {
        "description": "No member has this id; nothing changed.",
        "schema": ref("WriteError"),
    },
    "MembershipUnavailable": {
        "description": "No leader is known, the cluster cannot change right now (a new "
                       "leader has not committed an entry of its term yet), or leadership "
                       "did not move in time; nothing was changed. Retry.",
        "schema": ref("WriteError"),
        "headers": _RETRY_AFTER,
    },
    "MembershipOutcomeUnknown": {
        "description": 'The change may or may not have been applied (`applied: "unknown"`): '
                       "list the members before retrying.",
        "schema": ref("WriteError"),
    },
    "MethodNotAllowed": _error(
        "The path exists but not with this method (any path).",
        headers={"Allow": {"type": "string", "description": "The allowed methods."}},
    ),
}

PARAMETERS: dict[str, dict[str, Any]] = {
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
    "LeaseQuery": {
        "in": "query",
        "name": "lease",
        "type": "integer",
        "format": "int64",
        "minimum": 1,
        "description": "Attach the key to this lease (also a body field; not with `ttl`).",
    },
    "TtlQuery": {
        "in": "query",
        "name": "ttl",
        "type": "string",
        "pattern": "^[0-9]{1,9}([.][0-9]{1,6})?(ms|s|m)?$",
        "description": "Grant a lease for this key alone (also a body field; not with "
                       "`lease`): " + TTL_DOC,
    },
    "FenceQuery": {
        "in": "query",
        "name": "fence",
        "type": "string",
        "pattern": "^[^/]+:[1-9][0-9]{0,18}$",
        "description": "`NAME:TOKEN`: apply only while lock NAME is held with fencing "
                       "token TOKEN (412 otherwise).",
    },
    "AcquireTimeout": {
        "in": "query",
        "name": "timeout",
        "type": "string",
        "description": "How long to wait: `30s`, `500ms`, `2m` or seconds (default 60s, at "
                       "most 600s); then 423.",
    },
}
