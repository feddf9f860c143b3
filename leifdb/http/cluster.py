"""Routes on the cluster itself: list, add, promote and remove members, hand over
leadership.

Any node lists its view of the members; only the leader's shows how far each member's
log matches and when it last heard from it. Changes and transfers are served by the
leader (a follower answers 307 to it, 503 with none known, like a key write) and answered
once the change is applied: one change at a time, each adding a learner, promoting one
to voter or removing one member. A refusal (409, 404) says why in ``error``.

Each handler's docstring ends with its OpenAPI 2.0 operation in YAML after ``---``.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from leifdb.errors import Unavailable
from leifdb.http.errors import ApiError, respond_json
from leifdb.http.failures import RETRY_AFTER_SECONDS
from leifdb.http.params import parse_body, parse_bool, read_body, text_field
from leifdb.http.render import members_json
from leifdb.http.routing import Routes, accepts, api

__all__ = ["ClusterRoutes"]

_ADD_BODY = {"id": text_field, "raft_address": text_field, "http_address": text_field}
_TRANSFER_BODY = {"to": text_field}


def _required(body: dict[str, Any], name: str, usage: str) -> Any:
    if name not in body:
        raise ApiError(400, f"missing {name}: {usage}")
    return body[name]


class ClusterRoutes(Routes):
    """``/cluster/members``, ``/cluster/members/{member_id}`` and ``/cluster/leader``."""

    @api.route("/cluster/members", methods=["GET"], merge_slashes=False)
    @accepts()
    def list_members(self, request: IRequest) -> bytes:
        """This node's view of the members.

        ---
        get:
          tags: [cluster]
          summary: List the members
          description: >-
            The latest configuration this node knows (Raft uses it before it commits).
            Any node answers; `match_index` and `last_contact_seconds` are known to the
            leader only (null elsewhere): ask the node whose member has `is_leader`.
          operationId: listMembers
          responses:
            200:
              description: The members, voters and learners.
              schema: ClusterMembers
            400: BadRequest
            413: TooLarge
            500: InternalError
            503: NotStarted
        """
        try:
            members = self.service.members()
        except Unavailable as e:
            raise ApiError(503, f"{e}; retry",
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        return respond_json(request, 200, members_json(members))

    @api.route("/cluster/members", methods=["POST"], merge_slashes=False)
    @accepts()
    async def add_member(self, request: IRequest) -> bytes:
        """Add a member as a learner.

        ---
        post:
          tags: [cluster]
          summary: Add a learner
          description: >-
            The new member receives the log and snapshots but does not vote until it is
            promoted. Start it with `--join` (or empty `--members`) and its name, then add
            it here. Answers once the change is applied on the leader.
          operationId: addMember
          consumes: [application/json]
          parameters:
            - in: body
              name: body
              required: true
              schema: AddMemberBody
          responses:
            201:
              description: Added; the new member list.
              schema: ClusterMembers
            307: MembershipRedirect
            400: BadRequest
            409: MembershipRefused
            413: TooLarge
            500: InternalError
            503: MembershipUnavailable
            504: MembershipOutcomeUnknown
        """
        body = parse_body(read_body(request, self.limits.max_body_bytes), _ADD_BODY)
        usage = 'POST /cluster/members takes {"id": "n4", "raft_address": "host:port", ' \
                '"http_address": "host:port"}'
        member_id = _required(body, "id", usage)
        raft_address = _required(body, "raft_address", usage)
        members = await self._reconfigure(
            request, self.service.add_member, member_id, raft_address,
            body.get("http_address", ""),
        )
        return respond_json(request, 201, members_json(members))

    @api.route("/cluster/members/<member_id>/promote", methods=["POST"], merge_slashes=False)
    @accepts()
    async def promote_member(self, request: IRequest, member_id: str) -> bytes:
        """Make a learner a voter.

        ---
        post:
          tags: [cluster]
          summary: Promote a learner to voter
          description: >-
            Refused (409) while the learner's log lags too far behind the leader's: wait
            until its `match_index` is close, then retry. Answers once applied.
          operationId: promoteMember
          responses:
            200:
              description: Promoted; the new member list.
              schema: ClusterMembers
            307: MembershipRedirect
            400: BadRequest
            404: MemberNotFound
            409: MembershipRefused
            413: TooLarge
            500: InternalError
            503: MembershipUnavailable
            504: MembershipOutcomeUnknown
        """
        parse_body(read_body(request, self.limits.max_body_bytes), {})
        members = await self._reconfigure(request, self.service.promote_member, member_id)
        return respond_json(request, 200, members_json(members))

    @api.route("/cluster/members/<member_id>", methods=["DELETE"], merge_slashes=False)
    @accepts("force")
    async def remove_member(self, request: IRequest, member_id: str) -> bytes:
        """Remove a member.

        ---
        delete:
          tags: [cluster]
          summary: Remove a member
          description: >-
            Removing the leader makes it hand over to the most caught-up voter once the
            change commits. A change that would leave fewer voters than a quorum among
            those the leader hears from is refused (409) unless `force=true`.
          operationId: removeMember
          parameters:
            - in: query
              name: force
              type: boolean
              default: false
              description: Skip the check that a quorum of the remaining voters is reachable.
          responses:
            200:
              description: Removed; the new member list.
              schema: ClusterMembers
            307: MembershipRedirect
            400: BadRequest
            404: MemberNotFound
            409: MembershipRefused
            413: TooLarge
            500: InternalError
            503: MembershipUnavailable
            504: MembershipOutcomeUnknown
        """
        force = parse_bool(self._query(request), "force") or False
        parse_body(read_body(request, self.limits.max_body_bytes), {})
        members = await self._reconfigure(
            request, self.service.remove_member, member_id, force
        )
        return respond_json(request, 200, members_json(members))

    @api.route("/cluster/leader", methods=["POST"], merge_slashes=False)
    @accepts()
    async def transfer_leader(self, request: IRequest) -> bytes:
        """Hand leadership to another voter.

        ---
        post:
          tags: [cluster]
          summary: Transfer leadership
          description: >-
            The leader brings `to` up to date, tells it to campaign at once and answers
            once another node leads (without waiting an election timeout), or 503 if
            that did not happen within an election timeout.
          operationId: transferLeader
          consumes: [application/json]
          parameters:
            - in: body
              name: body
              required: true
              schema: TransferBody
          responses:
            200:
              description: The new leader.
              schema: TransferDone
            307: MembershipRedirect
            400: BadRequest
            404: MemberNotFound
            409: MembershipRefused
            413: TooLarge
            500: InternalError
            503: MembershipUnavailable
        """
        body = parse_body(read_body(request, self.limits.max_body_bytes), _TRANSFER_BODY)
        to = _required(body, "to", 'POST /cluster/leader takes {"to": "n2"}')
        leader = await self._reconfigure(request, self.service.transfer_leader, to)
        status = self.service.status()
        leader_http = status.leader_http if status.leader == leader else None
        return respond_json(request, 200, {"leader": leader, "leader_http": leader_http})
