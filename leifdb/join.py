"""``--join``: how a node with an empty data directory becomes a member of a running
cluster, through the client package (its retry and redirect policy over Twisted)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from leifdb.client.aio import TwistedTransport
from leifdb.client.errors import ClientError, OutcomeUnknown
from leifdb.client.protocol import (
    JSON_HEADERS,
    ConnectFailed,
    Endpoints,
    NoAnswer,
    Request,
    Response,
    RetryPolicy,
    Sleep,
    execute,
    json_body,
)
from leifdb.nodeconfig import NodeConfig
from leifdb.raft.messages import Member
from leifdb.wire import EncodeError, encode_membership

__all__ = ["ClusterJoin", "JOIN_DEADLINE_SECONDS", "JoinError"]

log = Logger(namespace="leifdb.tap")

#: How long ``--join`` keeps trying to reach the cluster (no leader, nodes starting...).
JOIN_DEADLINE_SECONDS = 30.0


class JoinError(Exception):
    """``--join`` could not get this node into the cluster; the message says what to do."""


class ClusterJoin:
    """``--join``: make a node with an empty data directory a member of a running cluster.

    Asks the ``config.join`` endpoints for the members (``GET /cluster/members``, retried
    for ``deadline`` seconds while no node answers or none knows a leader), and unless
    this node is among them, adds it as a learner (``POST /cluster/members``, redirected
    to the leader). ``run`` fires with ``config`` whose ``members`` are the cluster's (this
    node included) and whose ``cluster_id`` is checked against the cluster's. If the
    cluster refuses the addition, the node starts anyway and waits for an operator to add
    it. ``JoinError`` (one line) when this node cannot or must not join: nothing
    answered, another cluster, its id already taken by a member elsewhere, or by a voter
    (its old data was lost: it must be removed first)."""

    def __init__(self, config: NodeConfig, reactor: Any, *, http: Any = None,
                 deadline: float = JOIN_DEADLINE_SECONDS, timeout: float = 5.0) -> None:
        if config.join is None:
            raise ValueError("ClusterJoin needs a config with join")
        self.config = config
        self.reactor = reactor
        self.where = config.join
        self._endpoints = Endpoints(config.join)
        self._http = http or TwistedTransport(reactor, connect_timeout=timeout)
        self._policy = RetryPolicy(attempts=1_000_000, cap=1.0, deadline=deadline,
                                   clock=reactor.seconds)
        self._timeout = timeout

    def run(self) -> Deferred:
        return ensureDeferred(self._run())

    async def _run(self) -> NodeConfig:
        config = self.config
        me = config.member(config.node_id)
        cluster_id, members, config_index = await self._members()
        if cluster_id != config.cluster_id:
            raise JoinError(
                f"the cluster at {self.where} is {cluster_id!r}, but this node's cluster id is "
                f"{config.cluster_id!r}: start it with --cluster-id {cluster_id}"
            )
        listed = _find(members, me.id)
        if listed is None:
            members, config_index = await self._add(me, members)
            listed = _find(members, me.id) or Member(me.id, me.raft_address, me.http_address,
                                                     learner=True)
        elif listed.raft_address != me.raft_address:
            raise JoinError(
                f"member {me.id} of cluster {cluster_id!r} is at {listed.raft_address}, not "
                f"{me.raft_address}: remove it first (leifdb member remove {me.id}) or start "
                "this node under another --name"
            )
        elif not listed.learner:
            raise JoinError(
                f"{me.id} is a voter of cluster {cluster_id!r}, but this data directory is "
                f"new: its old data was lost. Remove it (leifdb member remove {me.id}), then "
                "start it again with --join"
            )
        else:
            log.info("Joining cluster {cluster} as learner {id} (already added)",
                     cluster=cluster_id, id=me.id)
        mine = Member(me.id, me.raft_address, me.http_address, learner=listed.learner)
        others = tuple(m for m in members if m.id != me.id)
        return replace(config, members=(*others, mine), joined_index=config_index)

    async def _members(self) -> tuple[str, tuple[Member, ...], int]:
        request = Request("cluster_members", "GET", "/cluster/members", leader=False)
        try:
            return self._parse(await self._call(request))
        except ClientError as e:
            raise JoinError(f"cannot fetch the members at {self.where}: {e}") from None

    async def _add(self, me: Member, members: tuple[Member, ...]
                   ) -> tuple[tuple[Member, ...], int]:
        """This node as a learner: the cluster's new member list and its configuration
        index, or the old one plus this node and 0 if the cluster refused (an operator adds
        it later)."""
        request = Request(
            "member_add", "POST", "/cluster/members",
            json_body({"id": me.id, "raft_address": me.raft_address,
                       "http_address": me.http_address}),
            JSON_HEADERS, idempotent=False,
        )
        try:
            answer = await self._call(request)
        except OutcomeUnknown:
            _, members, index = await self._members()  # did the addition happen after all?
            if _find(members, me.id) is None:
                raise JoinError(f"adding {me.id} at {self.where} timed out and it is not a "
                                "member: start it again to retry") from None
            return members, index
        except ClientError as e:
            if e.status is None or not 400 <= e.status < 500:
                raise JoinError(f"cannot add {me.id} at {self.where}: {e}") from None
            log.warn(
                "The cluster did not add {id} ({error}); waiting for an operator to add it: "
                "leifdb member add {id} {raft} {http}", id=me.id, error=str(e),
                raft=me.raft_address, http=me.http_address,
            )
            return (*members, Member(me.id, me.raft_address, me.http_address, learner=True)), 0
        log.info("Joined cluster at {where} as learner {id}", where=self.where, id=me.id)
        _, members, index = self._parse(answer)
        return members, index

    async def _call(self, request: Request) -> Any:
        """One API call under the client's policy (redirects, retries, backoff); its
        ``leifdb.client.errors`` as they are."""
        steps = execute(request, self._endpoints, self._policy, self._timeout)
        reply: Any = None
        try:
            while True:
                action = steps.send(reply)
                if isinstance(action, Sleep):
                    reply = await deferLater(self.reactor, action.seconds)
                    continue
                try:
                    reply = await self._http.send(action)
                except (ConnectFailed, NoAnswer) as e:
                    reply = e
                if isinstance(reply, Response) and reply.status == 201:
                    reply = Response(200, reply.headers, reply.body)  # Created: a success
        except StopIteration as done:
            return done.value

    def _parse(self, answer: Any) -> tuple[str, tuple[Member, ...], int]:
        """``(cluster_id, members, config_index)`` of a ``/cluster/members`` answer."""
        try:
            cluster_id = answer["cluster_id"]
            config_index = int(answer.get("config_index", 0))
            members = tuple(
                Member(m["id"], m["raft_address"], m.get("http_address") or "",
                       learner={"voter": False, "learner": True}[m["role"]])
                for m in answer["members"]
            )
            if not isinstance(cluster_id, str) or not cluster_id:
                raise ValueError("no cluster_id")
            encode_membership(members)  # the checks every configuration passes
        except (KeyError, TypeError, ValueError, EncodeError) as e:
            raise JoinError(f"unexpected member list from {self.where}: "
                            f"{json.dumps(answer)[:200]} ({e})") from None
        return cluster_id, members, config_index


def _find(members: tuple[Member, ...], member_id: str) -> Member | None:
    return next((m for m in members if m.id == member_id), None)
