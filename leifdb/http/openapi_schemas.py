"""The OpenAPI 2.0 schemas of transactions, leases, locks, elections and cluster
membership, and the small pieces every schema uses (``ref``, the integer types, the
examples Swagger UI's "Try it out" runs with); ``openapi_parts`` adds the key, watch and
error schemas, the responses and the parameters."""

from __future__ import annotations

from typing import Any

from leifdb.service.api import ADDRESS_PATTERN, MEMBER_ID_MAX_BYTES, MEMBER_ID_PATTERN

__all__ = ["CLUSTER_SCHEMAS", "COUNT", "ITEM_EXAMPLE", "LEASE_ID", "LEASE_SCHEMAS", "REVISION", "SECONDS", "TTL_DOC", "TXN_SCHEMAS", "ref"]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


REVISION = {"type": "integer", "format": "int64", "minimum": 1}
COUNT = {"type": "integer", "format": "int64", "minimum": 0}
LEASE_ID = {"type": "integer", "format": "int64", "minimum": 1}
SECONDS = {"type": "number", "minimum": 0}
ITEM_EXAMPLE = {"key": "greeting", "value": "hello", "revision": 7, "create_revision": 7,
                "lease": 0}
# Swagger UI's "Try it out" on a fresh node runs: grant (lease 1), lock (token 2),
# campaign (token 3), proclaim and resign with token 3.
_EXAMPLE_LEASE = 1
_EXAMPLE_TOKEN = 3
TTL_DOC = ("Seconds (a number) or a duration string (`30s`, `500ms`, `2m`), from 2 s to "
           "30 days.")

TXN_SCHEMAS: dict[str, dict[str, Any]] = {
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
            "lease": {**LEASE_ID, "description": "put: attach the key to this lease."},
            "prefix": {"type": "string"},
            "start_after": {"type": "string", "x-nullable": True},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "x-nullable": True},
        },
    },
    "TxnBody": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "compare": {"type": "array", "items": ref("Compare")},
            "success": {"type": "array", "items": ref("TxnOp")},
            "failure": {"type": "array", "items": ref("TxnOp")},
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
            "revision": REVISION,
            "deleted": {"type": "boolean"},
            "item": {**ref("Item"), "x-nullable": True},
            "prefix": {"type": "string"},
            "items": {"type": "array", "items": ref("Item")},
            "more": {"type": "boolean"},
        },
    },
    "TxnAnswer": {
        "type": "object",
        "required": ["succeeded", "revision", "results"],
        "properties": {
            "succeeded": {"type": "boolean",
                          "description": "false: the compares failed, `failure` ran."},
            "revision": {**REVISION, "description": "The transaction's revision; for a "
                                                     "read-only one, the revision it read."},
            "results": {"type": "array", "items": ref("TxnOpResult")},
        },
    },
}

_LEASE = {
    "id": LEASE_ID,
    "ttl": {**SECONDS, "description": "Seconds granted."},
    "remaining": {**SECONDS, "description": "Seconds left before the leader expires it."},
}
_HOLDER_EXAMPLE = {"name": "jobs", "key": "_lock/jobs/1", "token": 2, "lease": 1,
                   "value": "worker-1", "revision": 2}

LEASE_SCHEMAS: dict[str, dict[str, Any]] = {
    "LeaseGrantBody": {
        "type": "object",
        "required": ["ttl"],
        "additionalProperties": False,
        "properties": {"ttl": {"description": TTL_DOC}},
        "example": {"ttl": 30},
    },
    "Lease": {
        "type": "object",
        "required": ["id", "ttl", "remaining", "revision"],
        "properties": {**_LEASE, "revision": COUNT},
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
            "leases": {"type": "array", "items": ref("LeaseSummary")},
            "revision": COUNT,
        },
    },
    "LeaseDetail": {
        "type": "object",
        "required": ["id", "ttl", "remaining", "keys", "revision"],
        "properties": {
            **_LEASE,
            "keys": {"type": "array", "items": {"type": "string"},
                     "description": "The keys attached to the lease, in key order."},
            "revision": COUNT,
        },
    },
    "LeaseRevoked": {
        "type": "object",
        "required": ["id", "revision"],
        "properties": {"id": LEASE_ID, "revision": {
            **REVISION, "description": "The revision that deleted the lease and its keys."}},
    },
    "OwnerBody": {
        "type": "object",
        "required": ["lease"],
        "additionalProperties": False,
        "properties": {
            "lease": {**LEASE_ID, "description": "The lease that will hold the lock."},
            "value": {"type": "string", "description": "Who holds it (default empty)."},
        },
        "example": {"lease": _EXAMPLE_LEASE, "value": "worker-1"},
    },
    "CandidateBody": {
        "type": "object",
        "required": ["lease"],
        "additionalProperties": False,
        "properties": {
            "lease": {**LEASE_ID, "description": "The candidate's lease."},
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
            "token": {**LEASE_ID, "description": "The leader's token (from its campaign)."},
            "value": {"type": "string", "description": "The new value."},
        },
        "example": {"token": _EXAMPLE_TOKEN, "value": "node-a, at 10.0.0.1:8080"},
    },
    "ResignBody": {
        "type": "object",
        "required": ["token"],
        "additionalProperties": False,
        "properties": {
            "token": {**LEASE_ID, "description": "The leader's token (from its campaign)."},
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
            "token": {**REVISION, "description": "The key's create revision: larger at "
                                                  "every acquisition; the fencing token."},
            "lease": LEASE_ID,
            "value": {"type": "string"},
            "revision": {**REVISION, "description": "The key's current revision."},
        },
        "example": _HOLDER_EXAMPLE,
    },
    "Resigned": {
        "type": "object",
        "required": ["revision"],
        "properties": {"revision": REVISION},
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

CLUSTER_SCHEMAS: dict[str, dict[str, Any]] = {
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
            "match_index": {**COUNT, "x-nullable": True,
                            "description": "The last log index the leader knows the member "
                                           "has; null unless the answering node leads."},
            "last_contact_seconds": {**SECONDS, "x-nullable": True,
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
            "members": {"type": "array", "items": ref("Member")},
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
