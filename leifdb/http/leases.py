"""Routes on leases: grant, list, read, keep alive, revoke.

A lease is granted with a TTL; keys attached to it (``PUT /db/{key}?lease=ID``, a lock's
or a candidate's key) are deleted when it is revoked or when the leader lets it expire
without a keepalive. Only the leader keeps the deadlines, so every route here is served
by the leader: a follower answers 307 to it (503 with none known), like a write.

Each handler's docstring ends with its OpenAPI 2.0 operation in YAML after ``---``.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from leifdb.http.errors import ApiError, respond_json
from leifdb.http.params import (
    check_ttl,
    duration_field,
    parse_body,
    parse_lease_id,
    read_body,
)
from leifdb.http.render import lease_json
from leifdb.http.routing import Routes, accepts, api
from leifdb.service.api import LeaseInfo

__all__ = ["LeaseRoutes"]

_GRANT_BODY = {"ttl": duration_field}


def _with_revision(lease: LeaseInfo) -> dict[str, Any]:
    return {**lease_json(lease), "revision": lease.revision}


class LeaseRoutes(Routes):
    """``/lease`` and ``/lease/{lease_id}``."""

    @api.route("/lease", methods=["POST"], merge_slashes=False)
    @accepts()
    async def grant_lease(self, request: IRequest) -> bytes:
        """Grant a lease for ``ttl`` seconds.

        ---
        post:
          tags: [leases]
          summary: Grant a lease
          description: >-
            The lease lives `ttl` seconds after the grant and after each keepalive; then
            the leader revokes it, deleting every key attached to it. `ttl` is a number
            of seconds or a duration (`30s`, `2m`) from 2 s to 30 days. The id is the
            revision of the grant.
          operationId: grantLease
          consumes: [application/json]
          parameters:
            - in: body
              name: body
              required: true
              schema: LeaseGrantBody
          responses:
            200:
              description: Granted.
              schema: Lease
            307: NotLeader
            400: BadRequest
            413: TooLarge
            500: InternalError
            503: NoLeader
            504: OutcomeUnknown
        """
        body = parse_body(read_body(request, self.limits.max_body_bytes), _GRANT_BODY)
        if "ttl" not in body:
            raise ApiError(400, 'missing ttl: POST /lease takes JSON {"ttl": 30} (seconds, '
                                'or a duration such as "30s")')
        ttl = check_ttl(body["ttl"], self.limits.service)
        lease = await self._write(request, self.service.grant_lease, ttl)
        self._stamp(request)
        return respond_json(request, 200, _with_revision(lease))

    @api.route("/lease", methods=["GET"], merge_slashes=False)
    @accepts()
    async def list_leases(self, request: IRequest) -> bytes:
        """Every lease, by id.

        ---
        get:
          tags: [leases]
          summary: List the leases
          operationId: listLeases
          responses:
            200:
              description: Every lease the leader keeps, by id, without their keys.
              schema: LeaseList
            307: LeaderRedirect
            400: BadRequest
            413: TooLarge
            500: InternalError
            503: LeaderUnavailable
        """
        leases = await self._leader_read(request, self.service.leases)
        revision = self.service.revision
        self._stamp(request, revision)
        document = {"leases": [lease_json(lease) for lease in leases], "revision": revision}
        return respond_json(request, 200, document)

    @api.route("/lease/<lease_id>", methods=["GET"], merge_slashes=False)
    @accepts()
    async def get_lease(self, request: IRequest, lease_id: str) -> bytes:
        """One lease with the keys attached to it.

        ---
        get:
          tags: [leases]
          summary: Read a lease and its keys
          operationId: getLease
          responses:
            200:
              description: The lease; `remaining` is the seconds left before it expires.
              schema: LeaseDetail
            307: LeaderRedirect
            400: BadRequest
            404: LeaseNotFound
            413: TooLarge
            500: InternalError
            503: LeaderUnavailable
        """
        lease = await self._leader_read(
            request, self.service.lease_info, parse_lease_id(lease_id)
        )
        self._stamp(request)
        return respond_json(request, 200, {**lease_json(lease), "keys": list(lease.keys),
                                           "revision": lease.revision})

    @api.route("/lease/<lease_id>/keepalive", methods=["POST"], merge_slashes=False)
    @accepts()
    async def keepalive(self, request: IRequest, lease_id: str) -> bytes:
        """Renew a lease: it lives ``ttl`` seconds from now again.

        ---
        post:
          tags: [leases]
          summary: Keep a lease alive
          description: >-
            Answers once the renewal is committed. Send one well within the TTL (a
            third of it is usual). A lease whose time ran out is not renewed: 404.
          operationId: keepaliveLease
          responses:
            200:
              description: Renewed; `remaining` equals `ttl`.
              schema: Lease
            307: NotLeader
            400: BadRequest
            404: LeaseNotFound
            413: TooLarge
            500: InternalError
            503: NoLeader
            504: OutcomeUnknown
        """
        lease_number = parse_lease_id(lease_id)
        parse_body(read_body(request, self.limits.max_body_bytes), {})
        lease = await self._write(request, self.service.keepalive, lease_number)
        self._stamp(request)
        return respond_json(request, 200, _with_revision(lease))

    @api.route("/lease/<lease_id>", methods=["DELETE"], merge_slashes=False)
    @accepts()
    async def revoke_lease(self, request: IRequest, lease_id: str) -> bytes:
        """Revoke a lease now, deleting its keys.

        ---
        delete:
          tags: [leases]
          summary: Revoke a lease and delete its keys
          description: >-
            The lease and every key attached to it (locks it holds, candidates it runs)
            are deleted at one revision, the answer's.
          operationId: revokeLease
          responses:
            200:
              description: Revoked.
              schema: LeaseRevoked
            307: NotLeader
            400: BadRequest
            404: LeaseNotFound
            413: TooLarge
            500: InternalError
            503: NoLeader
            504: OutcomeUnknown
        """
        lease_number = parse_lease_id(lease_id)
        parse_body(read_body(request, self.limits.max_body_bytes), {})
        revision = await self._write(request, self.service.revoke_lease, lease_number)
        self._stamp(request)
        return respond_json(request, 200, {"id": lease_number, "revision": revision})
