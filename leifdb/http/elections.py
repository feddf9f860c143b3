"""Routes on elections: campaign, read the leader, proclaim, resign, observe.

An election is a lock whose holder is the leader and whose value the leader announces:
candidates put ``_election/{name}/{lease}``; the oldest key leads. ``ObserveStream`` is
the service's ``ObserveSink`` for one SSE response.

Each handler's docstring ends with its OpenAPI 2.0 operation in YAML after ``---``.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.web.iweb import IRequest

from leifdb.http.errors import ApiError, json_body, respond_json
from leifdb.http.locks import parse_owner
from leifdb.http.params import (
    Field,
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
from leifdb.http.routing import accepts, api
from leifdb.http.sse import EventStream, StreamRoutes
from leifdb.service.api import CONSISTENCY_LINEARIZABLE, Holder

__all__ = ["ElectionRoutes", "ObserveStream", "format_leader"]

_PROCLAIM_BODY = {"token": id_field, "value": text_field}
_RESIGN_BODY = {"token": id_field}


def format_leader(holder: Holder | None, revision: int) -> bytes:
    """One observe message: the leader (null: none) as of ``revision``."""
    data = {"leader": holder_json(holder) if holder is not None else None,
            "revision": revision}
    return b"event: leader\ndata: %s\n\n" % json_body(data)


class ObserveStream(EventStream):
    """One observe response. Only the latest leader matters, so while the transport is
    paused a new message replaces the one waiting instead of piling up."""

    def __init__(self, request: IRequest) -> None:
        super().__init__(request)
        self._held: bytes | None = None

    def leader(self, holder: Holder | None, revision: int) -> None:
        if not self._open:
            return
        message = format_leader(holder, revision)
        if self._paused:
            self._held = message
        else:
            self._write(message)

    def closed(self, reason: str, compact_revision: int | None = None) -> None:
        self._release_held()
        super().closed(reason, compact_revision)

    def resumeProducing(self) -> None:
        self._paused = False
        self._release_held()
        super().resumeProducing()

    def _release_held(self) -> None:
        held, self._held = self._held, None
        if held is not None and self._open:
            self._write(held)


def _token_body(raw: bytes, fields: Mapping[str, Field], what: str) -> dict[str, Any]:
    """A proclaim's or resign's body: every field required."""
    body = parse_body(raw, fields)
    missing = [name for name in fields if name not in body]
    if missing:
        raise ApiError(400, f"missing {', '.join(missing)}: {what} takes JSON with "
                            f"{', '.join(fields)} (the token is the leader's, from its "
                            "campaign)")
    return body


class ElectionRoutes(StreamRoutes):
    """``/election/{name}`` and its ``campaign``, ``proclaim``, ``resign``, ``observe``."""

    def _election(self, name: str) -> str:
        return check_name(name, "election", self.limits.service.max_name_bytes)

    @api.route("/election/<election:name>/campaign", methods=["POST"], merge_slashes=False)
    @accepts("timeout")
    async def campaign(self, request: IRequest, name: str) -> bytes:
        """Run for leader: wait in line until elected, or the timeout.

        ---
        post:
          tags: [elections]
          summary: Campaign in an election (waits)
          description: >-
            Puts the candidate's key `_election/{name}/{lease}` with its `value` and
            waits, in order of arrival, until it is the oldest key: then it leads, until
            it resigns or its lease ends. `token` identifies this leadership in proclaim
            and resign. Not elected within `timeout`: 423, and the candidate's key is
            removed, as it is when the client goes away.
          operationId: campaign
          consumes: [application/json]
          parameters:
            - AcquireTimeout
            - in: body
              name: body
              required: true
              schema: CandidateBody
          responses:
            200:
              description: Elected; this is the leader.
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
        name = self._election(name)
        timeout = parse_timeout(self._query(request).single("timeout"),
                                limits.default_wait_seconds, limits.max_wait_seconds)
        owner = parse_owner(read_body(request, self.limits.max_body_bytes), limits,
                            "POST /election/{name}/campaign")
        holder = await self._acquire(request, self.service.campaign, name, owner.lease,
                                     owner.value, timeout=timeout)
        self._stamp(request)
        return respond_json(request, 200, holder_json(holder))

    @api.route("/election/<election:name>", methods=["GET"], merge_slashes=False)
    @accepts("consistency")
    async def election_leader(self, request: IRequest, name: str) -> bytes:
        """The election's leader.

        ---
        get:
          tags: [elections]
          summary: Read an election's leader
          operationId: getElectionLeader
          parameters:
            - Consistency
          responses:
            200:
              description: The leader and the value it proclaims.
              schema: Holder
            307: ReadRedirect
            400: BadRequest
            404: NoElectionLeader
            413: TooLarge
            500: InternalError
            503: ReadUnavailable
        """
        name = self._election(name)
        consistency = parse_consistency(self._query(request))
        holder = await self._read(request, self.service.election_leader, name, consistency)
        self._stamp(request)
        if holder is None:
            raise ApiError(404, f"election {name} has no leader", name=name)
        return respond_json(request, 200, holder_json(holder))

    @api.route("/election/<election:name>/proclaim", methods=["POST"], merge_slashes=False)
    @accepts()
    async def proclaim(self, request: IRequest, name: str) -> bytes:
        """The leader announces a new value.

        ---
        post:
          tags: [elections]
          summary: Announce a new value as the leader
          operationId: proclaim
          consumes: [application/json]
          parameters:
            - in: body
              name: body
              required: true
              schema: ProclaimBody
          responses:
            200:
              description: Announced; the token stays, the revision changes.
              schema: Holder
            307: NotLeader
            400: BadRequest
            412: NotHolder
            413: TooLarge
            500: InternalError
            503: NoLeader
            504: OutcomeUnknown
        """
        name = self._election(name)
        body = _token_body(read_body(request, self.limits.max_body_bytes), _PROCLAIM_BODY,
                           "proclaim")
        value = body["value"]
        check_text(value, "value", self.limits.service.max_value_bytes)
        holder = await self._write(request, self.service.proclaim, name, body["token"], value)
        self._stamp(request)
        return respond_json(request, 200, holder_json(holder))

    @api.route("/election/<election:name>/resign", methods=["POST"], merge_slashes=False)
    @accepts()
    async def resign(self, request: IRequest, name: str) -> bytes:
        """The leader steps down; the next candidate in line leads.

        ---
        post:
          tags: [elections]
          summary: Resign as the leader
          operationId: resign
          consumes: [application/json]
          parameters:
            - in: body
              name: body
              required: true
              schema: ResignBody
          responses:
            200:
              description: Resigned at `revision` (the leader's key was deleted then).
              schema: Resigned
            307: NotLeader
            400: BadRequest
            412: NotHolder
            413: TooLarge
            500: InternalError
            503: NoLeader
            504: OutcomeUnknown
        """
        name = self._election(name)
        body = _token_body(read_body(request, self.limits.max_body_bytes), _RESIGN_BODY,
                           "resign")
        revision = await self._write(request, self.service.resign, name, body["token"])
        self._stamp(request)
        return respond_json(request, 200, {"revision": revision})

    @api.route("/election/<election:name>/observe", methods=["GET"], merge_slashes=False)
    @accepts("consistency")
    async def observe(self, request: IRequest, name: str) -> None:
        """Stream the election's leader as Server-Sent Events.

        ---
        get:
          tags: [elections]
          summary: Observe an election's leader (Server-Sent Events)
          description: >-
            The stream starts with `retry: 1000`, then `event: leader` with `data:
            {"leader": {...} or null, "revision"}` at once and again at every change of
            leader or of the leader's value. The server ends a stream with `event:
            compacted` or `shutdown` and a JSON `data` saying why. It starts after a read
            barrier unless `consistency=stale`. Errors before the stream starts are JSON.
            Swagger UI cannot show a stream that never ends: use `curl -N`.
          operationId: observe
          produces: [text/event-stream, application/json]
          parameters:
            - Consistency
          responses:
            200:
              description: >-
                The event stream (`text/event-stream`); it has no JSON schema.
            307: ReadRedirect
            400: BadRequest
            410: Gone
            413: TooLarge
            500: InternalError
            503: WatchUnavailable
        """
        name = self._election(name)
        consistency = parse_consistency(self._query(request))
        if consistency == CONSISTENCY_LINEARIZABLE:
            # The first leader sent is no older than a linearizable read made now.
            await self._read(request, self.service.barrier, CONSISTENCY_LINEARIZABLE)
        stream = ObserveStream(request)
        await self._serve_stream(request, stream, lambda: self.service.observe(stream, name))
