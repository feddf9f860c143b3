"""``--join`` against fake clusters (twisted.web on 127.0.0.1): fetch the members, add this
node as a learner through redirects and retries, refuse what must not join, and the
identity checks that run before any of it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import Site

from leifdb.nodeconfig import NodeConfig
from leifdb.raft.messages import Member
from leifdb.service.kvservice import KVService
from leifdb.storage.identity import IdentityRefused, load_or_create_identity, read_identity
from leifdb.tap import ClusterJoin, JoinError, NodeLauncher

VOTERS = [
    {"id": "n1", "raft_address": "127.0.0.1:17001", "http_address": "127.0.0.1:18001",
     "role": "voter"},
    {"id": "n2", "raft_address": "127.0.0.1:17002", "http_address": "127.0.0.1:18002",
     "role": "voter"},
]
ME = Member("n4", "127.0.0.1:17004", "127.0.0.1:18004", learner=True)


def reactor():
    from twisted.internet import reactor as r

    return r


@dataclass
class FakeNode:
    """What a LeifDB node answers on /cluster/members, scripted."""

    members: list[dict] = field(default_factory=lambda: [dict(m) for m in VOTERS])
    cluster_id: str = "leifdb"
    unavailable: int = 0  # answer 503 to this many requests first
    redirect_to: str | None = None  # answer POSTs with 307 to this URL
    refuse: str | None = None  # answer POSTs with 409 and this reason
    requests: list[tuple[str, dict | None]] = field(default_factory=list)
    config_index: int = 3

    def listing(self) -> dict:
        return {"cluster_id": self.cluster_id, "node": "n1", "leader": "n1",
                "members": self.members, "config_index": self.config_index}


class MembersResource(Resource):
    isLeaf = True

    def __init__(self, node: FakeNode) -> None:
        super().__init__()
        self.node = node

    def render_GET(self, request):
        self.node.requests.append(("GET", None))
        if self.node.unavailable:
            self.node.unavailable -= 1
            return self._answer(request, 503, {"error": "no leader"})
        return self._answer(request, 200, self.node.listing())

    def render_POST(self, request):
        body = json.loads(request.content.read())
        self.node.requests.append(("POST", body))
        if self.node.unavailable:
            self.node.unavailable -= 1
            return self._answer(request, 503, {"error": "no leader"})
        if self.node.redirect_to:
            request.setResponseCode(307)
            request.setHeader("Location", self.node.redirect_to + "/cluster/members")
            return b""
        if self.node.refuse:
            return self._answer(request, 409, {"error": self.node.refuse})
        self.node.members.append({**body, "role": "learner"})
        self.node.config_index += 40
        return self._answer(request, 201, self.node.listing())

    def _answer(self, request, status: int, data: dict) -> bytes:
        request.setResponseCode(status)
        request.setHeader("Content-Type", "application/json")
        return json.dumps(data).encode()


@pytest.fixture
def serve():
    """``serve(node) -> url`` of a fake node on 127.0.0.1; all stopped at teardown."""
    ports = []

    def start(node: FakeNode) -> str:
        root = Resource()
        cluster = Resource()
        root.putChild(b"cluster", cluster)
        cluster.putChild(b"members", MembersResource(node))
        port = reactor().listenTCP(0, Site(root), interface="127.0.0.1")
        ports.append(port)
        return f"http://127.0.0.1:{port.getHost().port}"

    yield start
    for port in ports:
        port.stopListening()


def joining(tmp_path: Path, url: str, **overrides) -> NodeConfig:
    values = dict(node_id="n4", members=(ME,), http_address=ME.http_address, http_port=18004,
                  raft_listen_port=17004, data_dir=tmp_path, join=url, bootstrap=False)
    values.update(overrides)
    return NodeConfig(**values)


async def join(config: NodeConfig, deadline: float = 5.0) -> NodeConfig:
    return await ClusterJoin(config, reactor(), deadline=deadline, timeout=2.0).run()


@pytest_twisted.ensureDeferred
async def test_a_new_node_fetches_the_members_and_adds_itself_as_a_learner(tmp_path, serve):
    node = FakeNode()
    joined = await join(joining(tmp_path, serve(node)))

    assert node.requests == [("GET", None), ("POST", {
        "id": "n4", "raft_address": "127.0.0.1:17004", "http_address": "127.0.0.1:18004"})]
    assert joined.members == (Member("n1", "127.0.0.1:17001", "127.0.0.1:18001"),
                              Member("n2", "127.0.0.1:17002", "127.0.0.1:18002"), ME)
    assert joined.bootstrap is False and joined.node_id == "n4"
    # the index of the configuration that added it: older removals of n4 are not its own
    assert joined.joined_index == 43


@pytest_twisted.ensureDeferred
async def test_the_addition_follows_the_redirect_to_the_leader(tmp_path, serve):
    leader = FakeNode()
    follower = FakeNode(redirect_to=serve(leader))
    joined = await join(joining(tmp_path, serve(follower)))
    assert [method for method, _ in follower.requests] == ["GET", "POST"]
    assert [method for method, _ in leader.requests] == ["POST"]
    assert joined.member("n4") == ME


@pytest_twisted.ensureDeferred
async def test_no_leader_yet_is_retried_until_there_is_one(tmp_path, serve):
    node = FakeNode(unavailable=3)
    joined = await join(joining(tmp_path, serve(node)))
    assert joined.member("n4") == ME
    assert [method for method, _ in node.requests] == ["GET"] * 4 + ["POST"]


@pytest_twisted.ensureDeferred
async def test_the_first_url_that_answers_serves(tmp_path, serve):
    url = serve(FakeNode())
    joined = await join(joining(tmp_path, f"http://127.0.0.1:1,{url}"))
    assert joined.member("n4") == ME


@pytest_twisted.ensureDeferred
async def test_a_node_already_added_does_not_add_itself_again(tmp_path, serve):
    """E.g. it was added, then stopped before it wrote its identity."""
    node = FakeNode()
    node.members.append({"id": "n4", "raft_address": "127.0.0.1:17004",
                         "http_address": "", "role": "learner"})
    joined = await join(joining(tmp_path, serve(node)))
    assert node.requests == [("GET", None)]
    assert joined.member("n4") == ME  # its own addresses, as configured


@pytest_twisted.ensureDeferred
async def test_a_refused_addition_starts_the_node_to_wait_for_an_operator(tmp_path, serve):
    node = FakeNode(refuse="adding members by themselves is disabled")
    joined = await join(joining(tmp_path, serve(node)))
    assert joined.member("n4") == ME
    assert [m.id for m in joined.members] == ["n1", "n2", "n4"]


@pytest.mark.parametrize("listed, error", [
    ({"raft_address": "127.0.0.1:17004", "role": "voter"},
     "n4 is a voter of cluster 'leifdb', but this data directory is new: its old data was "
     "lost. Remove it (leifdb member remove n4), then start it again with --join"),
    ({"raft_address": "10.0.0.9:17004", "role": "learner"},
     "member n4 of cluster 'leifdb' is at 10.0.0.9:17004, not 127.0.0.1:17004"),
])
@pytest_twisted.ensureDeferred
async def test_an_id_taken_by_a_voter_or_by_another_address_is_refused(
        tmp_path, serve, listed, error):
    node = FakeNode()
    node.members.append({"id": "n4", "http_address": "", **listed})
    with pytest.raises(JoinError) as caught:
        await join(joining(tmp_path, serve(node)))
    assert error in str(caught.value)
    assert [method for method, _ in node.requests] == ["GET"]


@pytest_twisted.ensureDeferred
async def test_another_cluster_is_refused(tmp_path, serve):
    url = serve(FakeNode(cluster_id="prod"))
    with pytest.raises(JoinError, match="is 'prod', but this node's cluster id is 'leifdb': "
                                        "start it with --cluster-id prod"):
        await join(joining(tmp_path, url))


@pytest_twisted.ensureDeferred
async def test_nothing_answering_gives_up_after_the_deadline(tmp_path, serve):
    with pytest.raises(JoinError, match="cannot fetch the members at http://127.0.0.1:1"):
        await join(joining(tmp_path, "http://127.0.0.1:1"), deadline=0.5)


@pytest_twisted.ensureDeferred
async def test_a_nonsense_member_list_is_refused(tmp_path, serve):
    node = FakeNode()
    node.members = [{"id": "n1", "raft_address": "no-port", "role": "voter"}]
    with pytest.raises(JoinError, match="unexpected member list"):
        await join(joining(tmp_path, serve(node)))


# --- the launcher: identity first, then the join -----------------------------------------

def launcher(config: NodeConfig, joins: list[NodeConfig],
             outcome: Exception | None = None) -> NodeLauncher:
    def fake_join(cfg: NodeConfig):
        joins.append(cfg)
        return defer.fail(outcome) if outcome else defer.succeed(cfg)

    service = KVService(reactor())
    return NodeLauncher(config, reactor(), service, join=fake_join)


@pytest_twisted.ensureDeferred
async def test_a_failed_join_leaves_no_identity_so_a_restart_joins_again(tmp_path):
    joins: list[NodeConfig] = []
    config = joining(tmp_path, "http://127.0.0.1:1")
    with pytest.raises(JoinError):
        await launcher(config, joins, JoinError("no leader")).start()
    assert len(joins) == 1
    assert read_identity(tmp_path) is None
    with pytest.raises(JoinError):  # the data directory's lock was released
        await launcher(config, joins, JoinError("no leader")).start()


@pytest_twisted.ensureDeferred
async def test_a_data_directory_with_an_identity_ignores_join(tmp_path):
    """Restarting a member that once joined: it comes back from its data directory (here
    one that was removed, so the start stops at the identity check)."""
    load_or_create_identity(tmp_path, "n4", "leifdb").mark_removed()
    joins: list[NodeConfig] = []
    with pytest.raises(IdentityRefused, match="n4 was removed from cluster 'leifdb'"):
        await launcher(joining(tmp_path, "http://127.0.0.1:1"), joins).start()
    assert joins == []


@pytest_twisted.ensureDeferred
async def test_another_members_data_directory_is_refused_before_anything_starts(tmp_path):
    load_or_create_identity(tmp_path, "n1", "leifdb")
    config = joining(tmp_path, "http://127.0.0.1:1", join=None, bootstrap=True)
    with pytest.raises(IdentityRefused, match="belongs to member 'n1', not 'n4'"):
        await launcher(config, []).start()
