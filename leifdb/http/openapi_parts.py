"""The shared pieces of the OpenAPI 2.0 document: schemas, responses and parameters that
the route docstrings name. Examples are chosen so that Swagger UI's "Try it out" works
with its defaults (a body example of ``{"value": "hello"}``, not ``"prev": "string"``).
"""

from __future__ import annotations

from typing import Any

from leifdb.http.failures import RETRY_AFTER_SECONDS
from leifdb.service.api import ADDRESS_PATTERN, MEMBER_ID_MAX_BYTES, MEMBER_ID_PATTERN

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


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


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
_REVISION = {"type": "integer", "format": "int64", "minimum": 1}
_COUNT = {"type": "integer", "format": "int64", "minimum": 0}
_LEASE_ID = {"type": "integer", "format": "int64", "minimum": 1}
_SECONDS = {"type": "number", "minimum": 0}
_ITEM_EXAMPLE = {"key": "greeting", "value": "hello", "revision": 7, "create_revision": 7,
                 "lease": 0}
# Swagger UI's "Try it out" on a fresh node runs: grant (lease 1), lock (token 2),
# campaign (token 3), proclaim and resign with token 3.
_EXAMPLE_LEASE = 1
_EXAMPLE_TOKEN = 3
_TTL_DOC = ("Seconds (a number) or a duration string (`30s`, `500ms`, `2m`), from 2 s to "
            "30 days.")

_TXN_SCHEMAS: dict[str, dict[str, Any]] = {
    "Compare": {
        "type": "object",
        "required": ["key", "target", "op", "value"],
        "additionalProperties": False,
        "properties": {
            "key": {"type": "string"},
            "target": {"type": "string", "enum": ["value", "revision", "create_revision",
                                                  "lease", "exists"]},
            "op": {"type": "string", "enum": ["equal", "not_equal", "greater", "less"]},
            "value": {
                "description": "A string for `value` (an absent key fails every op), an "
                               "integer for `revision`, `create_revision` and `lease` (an "
                               "absent key has 0; `lease` 0: none), a boolean for `exists`.",
            },
        },
    },
    "TxnOp": {
        "type": "object",
        "required": ["op"],
        "additionalProperties": False,
        "description": "`put` {key, value, lease (optional)}, `delete` {key}, `get` {key} "
                       "or `range` {prefix, start_after, limit}.",
        "properties": {
            "op": {"type": "string", "enum": ["put", "delete", "get", "range"]},
            "key": {"type": "string"},
            "value": {"type": "string"},
            "lease": {**_LEASE_ID, "description": "put: attach the key to this lease."},
            "prefix": {"type": "string"},
            "start_after": {"type": "string", "x-nullable": True},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "x-nullable": True},
        },
    },
    "TxnBody": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "compare": {"type": "array", "items": _ref("Compare")},
            "success": {"type": "array", "items": _ref("TxnOp")},
            "failure": {"type": "array", "items": _ref("TxnOp")},
        },
        "example": {
            "compare": [{"key": "greeting", "target": "exists", "op": "equal",
                         "value": False}],
            "success": [{"op": "put", "key": "greeting", "value": "hello"}],
            "failure": [{"op": "get", "key": "greeting"}],
        },
    },
    "TxnOpResult": {
        "type": "object",
        "required": ["op"],
        "description": "`put`: key, revision. `delete`: key, deleted, revision. `get`: "
                       "key, item (null if absent). `range`: prefix, items, more.",
        "properties": {
            "op": {"type": "string", "enum": ["put", "delete", "get", "range"]},
            "key": {"type": "string"},
            "revision": _REVISION,
            "deleted": {"type": "boolean"},
            "item": {**_ref("Item"), "x-nullable": True},
            "prefix": {"type": "string"},
            "items": {"type": "array", "items": _ref("Item")},
            "more": {"type": "boolean"},
        },
    },
    "TxnAnswer": {
        "type": "object",
        "required": ["succeeded", "revision", "results"],
        "properties": {
            "succeeded": {"type": "boolean",
                          "description": "false: the compares failed, `failure` ran."},
            "revision": {**_REVISION, "description": "The transaction's revision; for a "
                                                     "read-only one, the revision it read."},
            "results": {"type": "array", "items": _ref("TxnOpResult")},
        },
    },
}

_LEASE = {
    "id": _LEASE_ID,
    "ttl": {**_SECONDS, "description": "Seconds granted."},
    "remaining": {**_SECONDS, "description": "Seconds left before the leader expires it."},
}
_HOLDER_EXAMPLE = {"name": "jobs", "key": "_lock/jobs/1", "token": 2, "lease": 1,
                   "value": "worker-1", "revision": 2}

_LEASE_SCHEMAS: dict[str, dict[str, Any]] = {
    "LeaseGrantBody": {
        "type": "object",
        "required": ["ttl"],
        "additionalProperties": False,
        "properties": {"ttl": {"description": _TTL_DOC}},
        "example": {"ttl": 30},
    },
    "Lease": {
        "type": "object",
        "required": ["id", "ttl", "remaining", "revision"],
        "properties": {**_LEASE, "revision": _COUNT},
        "example": {"id": 1, "ttl": 30.0, "remaining": 30.0, "revision": 1},
    },
    "LeaseSummary": {
        "type": "object",
        "required": ["id", "ttl", "remaining"],
        "properties": _LEASE,
    },
    "LeaseList": {
        "type": "object",
        "required": ["leases", "revision"],
        "properties": {
            "leases": {"type": "array", "items": _ref("LeaseSummary")},
            "revision": _COUNT,
        },
    },
    "LeaseDetail": {
        "type": "object",
        "required": ["id", "ttl", "remaining", "keys", "revision"],
        "properties": {
            **_LEASE,
            "keys": {"type": "array", "items": {"type": "string"},
                     "description": "The keys attached to the lease, in key order."},
            "revision": _COUNT,
        },
    },
    "LeaseRevoked": {
        "type": "object",
        "required": ["id", "revision"],
        "properties": {"id": _LEASE_ID, "revision": {
            **_REVISION, "description": "The revision that deleted the lease and its keys."}},
    },
    "OwnerBody": {
        "type": "object",
        "required": ["lease"],
        "additionalProperties": False,
        "properties": {
            "lease": {**_LEASE_ID, "description": "The lease that will hold the lock."},
            "value": {"type": "string", "description": "Who holds it (default empty)."},
        },
        "example": {"lease": _EXAMPLE_LEASE, "value": "worker-1"},
    },
    "CandidateBody": {
        "type": "object",
        "required": ["lease"],
        "additionalProperties": False,
        "properties": {
            "lease": {**_LEASE_ID, "description": "The candidate's lease."},
            "value": {"type": "string",
                      "description": "What the candidate announces as leader (default "
                                     "empty), such as its address."},
        },
        "example": {"lease": _EXAMPLE_LEASE, "value": "node-a"},
    },
    "ProclaimBody": {
        "type": "object",
        "required": ["token", "value"],
        "additionalProperties": False,
        "properties": {
            "token": {**_LEASE_ID, "description": "The leader's token (from its campaign)."},
            "value": {"type": "string", "description": "The new value."},
        },
        "example": {"token": _EXAMPLE_TOKEN, "value": "node-a, at 10.0.0.1:8080"},
    },
    "ResignBody": {
        "type": "object",
        "required": ["token"],
        "additionalProperties": False,
        "properties": {
            "token": {**_LEASE_ID, "description": "The leader's token (from its campaign)."},
        },
        "example": {"token": _EXAMPLE_TOKEN},
    },
    "Holder": {
        "type": "object",
        "required": ["name", "key", "token", "lease", "value", "revision"],
        "properties": {
            "name": {"type": "string"},
            "key": {"type": "string", "description": "The holder's key (delete it to "
                                                     "release a lock)."},
            "token": {**_REVISION, "description": "The key's create revision: larger at "
                                                  "every acquisition; the fencing token."},
            "lease": _LEASE_ID,
            "value": {"type": "string"},
            "revision": {**_REVISION, "description": "The key's current revision."},
        },
        "example": _HOLDER_EXAMPLE,
    },
    "Resigned": {
        "type": "object",
        "required": ["revision"],
        "properties": {"revision": _REVISION},
    },
    "LockTimeout": {
        "type": "object",
        "required": ["error", "holder"],
        "properties": {
            "error": {"type": "string"},
            "holder": {"type": "string", "x-nullable": True,
                       "description": "The key holding it when the wait ended; null: none."},
        },
    },
}

_MEMBER_ID = {"type": "string", "pattern": f"^{MEMBER_ID_PATTERN}$", "minLength": 1,
              "maxLength": MEMBER_ID_MAX_BYTES}
_ADDRESS = {"type": "string", "pattern": f"^{ADDRESS_PATTERN}$",
            "description": "`host:port`, the port from 1 to 65535."}
_MEMBER_EXAMPLE = {"id": "n1", "raft_address": "10.0.0.1:16990",
                   "http_address": "10.0.0.1:8080", "role": "voter", "match_index": 42,
                   "last_contact_seconds": 0.0, "is_leader": True}

_CLUSTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Member": {
        "type": "object",
        "required": ["id", "raft_address", "http_address", "role", "match_index",
                     "last_contact_seconds", "is_leader"],
        "properties": {
            "id": {"type": "string"},
            "raft_address": {"type": "string", "description": "Where peers reach it."},
            "http_address": {"type": "string",
                             "description": "Its client API `host:port`; empty if unknown."},
            "role": {"type": "string", "enum": ["voter", "learner"],
                     "description": "A learner receives the log but does not vote."},
            "match_index": {**_COUNT, "x-nullable": True,
                            "description": "The last log index the leader knows the member "
                                           "has; null unless the answering node leads."},
            "last_contact_seconds": {**_SECONDS, "x-nullable": True,
                                     "description": "Seconds since the leader last heard "
                                                    "from it; null unless the answering "
                                                    "node leads."},
            "is_leader": {"type": "boolean"},
        },
        "example": _MEMBER_EXAMPLE,
    },
    "ClusterMembers": {
        "type": "object",
        "required": ["cluster_id", "node", "leader", "members", "config_index"],
        "properties": {
            "cluster_id": {"type": "string"},
            "node": {"type": "string", "description": "The id of the node that answered."},
            "leader": {"type": "string", "x-nullable": True,
                       "description": "The leader's id; null when none is known."},
            "members": {"type": "array", "items": _ref("Member")},
            "config_index": {"type": "integer", "minimum": 0,
                             "description": "Log index of this configuration's entry (0: "
                                            "the bootstrap `--members` list). A node that "
                                            "joins records it: removals of its id before it "
                                            "are not its own."},
        },
    },
    "AddMemberBody": {
        "type": "object",
        "required": ["id", "raft_address"],
        "additionalProperties": False,
        "properties": {
            "id": {**_MEMBER_ID, "description": "The new member's name (its `--name`)."},
            "raft_address": {**_ADDRESS, "description": "Where peers reach its Raft port, "
                                                        "`host:port`."},
            "http_address": {"type": "string", "pattern": f"^({ADDRESS_PATTERN})?$",
                             "description": "Its client API `host:port` (optional: learned "
                                            "when it connects)."},
        },
        "example": {"id": "n9", "raft_address": "127.0.0.1:16999",
                    "http_address": "127.0.0.1:8089"},
    },
    "TransferBody": {
        "type": "object",
        "required": ["to"],
        "additionalProperties": False,
        "properties": {"to": {**_MEMBER_ID, "description": "The voter that should lead."}},
        "example": {"to": "n2"},
    },
    "TransferDone": {
        "type": "object",
        "required": ["leader", "leader_http"],
        "properties": {
            "leader": {"type": "string", "description": "The new leader's id."},
            "leader_http": {"type": "string", "x-nullable": True,
                            "description": "Its client address, when known."},
        },
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Item": {
        "type": "object",
        "required": ["key", "value", "revision", "create_revision", "lease"],
        "properties": {
            "key": {"type": "string"},
            "value": {"type": "string"},
            "revision": {**_REVISION, "description": "The write that last changed the key."},
            "create_revision": {**_REVISION,
                                "description": "The write that created the key (a lock "
                                               "key's fencing token)."},
            "lease": {**_COUNT, "description": "The lease the key is attached to; 0: none."},
        },
        "example": _ITEM_EXAMPLE,
    },
    "Page": {
        "type": "object",
        "required": ["prefix", "items", "more", "next_start_after"],
        "properties": {
            "prefix": {"type": "string"},
            "items": {"type": "array", "items": _ref("Item")},
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
            "lease": {**_LEASE_ID, "description": "Attach the key to this lease."},
            "ttl": {"description": "Grant a lease for this key alone: " + _TTL_DOC},
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
            "revision": _REVISION,
        },
    },
    "PutOk": {
        "type": "object",
        "required": ["status", "revision", "lease"],
        "properties": {
            "status": {"type": "string", "enum": ["Ok"]},
            "revision": _REVISION,
            "lease": {**_COUNT, "description": "The key's lease (with `ttl`: the new "
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
                **_SECONDS, "x-nullable": True,
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
            "compact_revision": {**_REVISION, "description": "The oldest revision kept."},
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
    **_TXN_SCHEMAS,
    **_LEASE_SCHEMAS,
    **_CLUSTER_SCHEMAS,
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
        "schema": _ref("LockTimeout"),
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
        "schema": _ref("Gone"),
    },
    "InternalError": _error("An unexpected error; it is logged on the node."),
    "ConditionFailed": {
        "description": "The condition did not hold; nothing changed. The body holds the key's "
                       "current value and revision, also sent as `ETag` when it exists. "
                       "Or the `fence` did not hold: the lock is not held with that token.",
        "schema": _ref("ConditionFailed"),
        "headers": {"ETag": {"type": "string"}},
    },
    "NotLeader": {
        "description": "This node is not the leader: resend to `Location` (`curl -L`).",
        "schema": _ref("WriteError"),
        "headers": _LOCATION,
    },
    "ReadRedirect": _error(
        "This node cannot serve a linearizable read itself: read from `Location` (the "
        "leader), or add `consistency=stale`.",
        headers=_LOCATION,
    ),
    "NoLeader": {
        "description": "No leader is known; the write was not applied (`applied: false`).",
        "schema": _ref("WriteError"),
        "headers": _RETRY_AFTER,
    },
    "OutcomeUnknown": {
        "description": 'The write may or may not have been applied (`applied: "unknown"`); '
                       "read the key before retrying.",
        "schema": _ref("WriteError"),
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
        "schema": _ref("WriteError"),
        "headers": _LOCATION,
    },
    "MembershipRefused": {
        "description": "Refused, nothing changed; `error` says why: another change is still "
                       "in progress, the id or address is taken, the member is already a "
                       "voter, the learner lags too far behind, or the change would leave "
                       "too few reachable voters (use `force=true` to remove anyway).",
        "schema": _ref("WriteError"),
    },
    "MemberNotFound": {
        "description": "No member has this id; nothing changed.",
        "schema": _ref("WriteError"),
    },
    "MembershipUnavailable": {
        "description": "No leader is known, the cluster cannot change right now (a new "
                       "leader has not committed an entry of its term yet), or leadership "
                       "did not move in time; nothing was changed. Retry.",
        "schema": _ref("WriteError"),
        "headers": _RETRY_AFTER,
    },
    "MembershipOutcomeUnknown": {
        "description": 'The change may or may not have been applied (`applied: "unknown"`): '
                       "list the members before retrying.",
        "schema": _ref("WriteError"),
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
                       "`lease`): " + _TTL_DOC,
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
