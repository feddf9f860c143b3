"""Routes on locks: acquire (waiting in line) and read the holder.

A lock is etcd's recipe: each owner puts its key ``_lock/{name}/{lease}`` attached to its
lease, and the key with the lowest create revision holds the lock; that revision is the
fencing token. Release by deleting the key (``DELETE /db/{key}``) or by the lease ending.

Each handler's docstring ends with its OpenAPI 2.0 operation in YAML after ``---``.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web.iweb import IRequest

from leifdb.http.errors import ApiError, respond_json
from leifdb.http.params import (
    check_name,
    check_text,
    id_field,
    parse_body,
    parse_consistency,
    parse_timeout,
    read_body,
    text_field,
)
from leifdb.http.render import holder_json
from leifdb.http.routing import Routes, accepts, api
from leifdb.service.api import ServiceLimits

__all__ = ["LockRoutes", "Owner", "parse_owner"]

_OWNER_BODY = {"lease": id_field, "value": text_field}


@dataclass(frozen=True, slots=True)
class Owner:
    """Who asks for a lock or runs in an election: its lease and its value."""

    lease: int
    value: str


def parse_owner(raw: bytes, limits: ServiceLimits, what: str) -> Owner:
    """The body of a lock or a campaign: ``{"lease": ID, "value": "..."}`` (``value``
    optional, empty by default)."""
    body = parse_body(raw, _OWNER_BODY)
    if "lease" not in body:
        raise ApiError(400, f'missing lease: {what} takes JSON {{"lease": ID, "value": '
                            f'"..."}} (grant one with POST /lease)')
    value = body.get("value", "")
    check_text(value, "value", limits.max_value_bytes)
    return Owner(body["lease"], value)


class LockRoutes(Routes):
    """``/lock/{name}``."""

    @api.route("/lock/<key:name>", methods=["POST"], merge_slashes=False)
    @accepts("timeout")
    async def lock(self, request: IRequest, name: str) -> bytes:
        """Wait in line until the lease holds the lock, or the timeout.

        ---
        post:
          tags: [locks]
          summary: Acquire a lock (waits)
          description: >-
            Puts the key `_lock/{name}/{lease}` and waits, in order of arrival, until it
            is the oldest key under `_lock/{name}/`: then the lease holds the lock, and
            `token` (the key's create revision, larger at every acquisition) fences
            writes made under it (`PUT /db/{key}?fence=name:token`). The same lease
            asking again gets its key back. Release by deleting `key`, or by revoking
            the lease. Not acquired within `timeout`: 423, and the waiting key is
            removed, as it is when the client goes away.
          operationId: lock
          consumes: [application/json]
          parameters:
            - AcquireTimeout
            - in: body
              name: body
              required: true
              schema: OwnerBody
          responses:
            200:
              description: The lock is held by this lease.
              schema: Holder
            307: NotLeader
            400: BadRequest
            404: LeaseNotFound
            413: TooLarge
            423: LockTimeout
            500: InternalError
            503: NoLeader
            504: OutcomeUnknown
        """
        limits = self.limits.service
        name = check_name(name, "lock", limits.max_name_bytes)
        timeout = parse_timeout(self._query(request).single("timeout"),
                                limits.default_wait_seconds, limits.max_wait_seconds)
        owner = parse_owner(read_body(request, self.limits.max_body_bytes), limits,
                            "POST /lock/{name}")
        holder = await self._acquire(request, self.service.lock, name, owner.lease,
                                     value=owner.value, timeout=timeout)
        self._stamp(request)
        return respond_json(request, 200, holder_json(holder))

    @api.route("/lock/<key:name>", methods=["GET"], merge_slashes=False)
    @accepts("consistency")
    async def lock_holder(self, request: IRequest, name: str) -> bytes:
        """Who holds the lock.

        ---
        get:
          tags: [locks]
          summary: Read a lock's holder
          operationId: getLockHolder
          parameters:
            - Consistency
          responses:
            200:
              description: The holder; `token` is its fencing token.
              schema: Holder
            307: ReadRedirect
            400: BadRequest
            404: Free
            413: TooLarge
            500: InternalError
            503: ReadUnavailable
        """
        name = check_name(name, "lock", self.limits.service.max_name_bytes)
        consistency = parse_consistency(self._query(request))
        holder = await self._read(request, self.service.lock_holder, name, consistency)
        self._stamp(request)
        if holder is None:
            raise ApiError(404, f"lock {name} is free", name=name)
        return respond_json(request, 200, holder_json(holder))
