"""Membership changes, leadership transfer and availability on real processes.

One 3-node cluster (election timeout 300 ms, heartbeat 50 ms) is shared by the tests of
this module, in order: each starts from every current voter running with a leader, and
leaves the cluster that way (``Shared.voters`` says which nodes are voters). Every wait is
bounded; every process is stopped by pid at teardown, and node logs are printed when a
test fails. Writes go through ``leifdb.client`` as an application's would (it follows
redirects and retries 503s), and every write it acknowledged is read back.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from leifdb.client import Client, ClientError, MembershipRefused, OutcomeUnknown
from leifdb.client.protocol import RetryPolicy
from leifdb.cluster import LocalCluster, free_ports, http_request
from tests.cluster.conftest import ELECTION_MS, HEARTBEAT_MS
from tests.cluster.helpers import child_env, eventually

pytestmark = pytest.mark.cluster

WAIT = 20.0  # bound of every wait for a leader, a node, a catch-up
ELECTION = ELECTION_MS / 1000
REMOVED_LINE = "was removed from cluster"
REFUSED_PEER = "known with another data directory"


@dataclass
class Shared:
    """The module's cluster and which of its nodes are voters now."""

    cluster: LocalCluster
    voters: list[int] = field(default_factory=list)

    def name(self, i: int) -> str:
        return self.cluster.nodes[i].name

    def urls(self) -> list[str]:
        return [self.cluster.url(i) for i in self.voters]

    def client(self, deadline: float = 15.0) -> Client:
        return Client(self.urls(), timeout=5.0, policy=RetryPolicy(deadline=deadline))

    def leader(self) -> int:
        return self.cluster.wait_for_leader(WAIT, among=self.voters)

    def followers(self) -> list[int]:
        leader = self.leader()
        return [i for i in self.voters if i != leader]

    def settle(self) -> int:
        """Every voter runs and answers, one of them leads, all applied its commits."""
        for i in self.voters:
            if not self.cluster.is_running(i):
                self.cluster.start_node(i)
        self.cluster.wait_until_up(WAIT, among=self.voters)
        for i in self.voters:
            self.cluster.wait_caught_up(i, WAIT)
        return self.leader()

    def member_roles(self) -> dict[str, str]:
        return {m.id: m.role for m in self.client().members().members}


class Writer(threading.Thread):
    """Writes ``<prefix><n> = <n>`` through ``leifdb.client`` until stopped: every
    acknowledged write (key -> value) and every failure, by kind."""

    def __init__(self, urls: list[str], prefix: str, pause: float = 0.005) -> None:
        super().__init__(name=f"writer-{prefix}", daemon=True)
        self.client = Client(urls, timeout=5.0, policy=RetryPolicy(deadline=20.0))
        self.prefix = prefix
        self.pause = pause
        self.acked: dict[str, str] = {}
        self.failed: list[str] = []
        self.stopping = threading.Event()
        self.last_ack = 0.0

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            key, value = f"{self.prefix}{n:06d}", str(n)
            try:
                self.client.put(key, value)
            except OutcomeUnknown as e:
                self.failed.append(f"{key}: outcome unknown: {e}")
            except ClientError as e:
                self.failed.append(f"{key}: {type(e).__name__}: {e}")
            else:
                self.acked[key] = value
                self.last_ack = time.monotonic()
            time.sleep(self.pause)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the writer did not stop"

    def __enter__(self) -> Writer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def assert_readable(shared: Shared, acked: dict[str, str], prefix: str,
                    node: int | None = None) -> None:
    """Every acknowledged write of ``prefix`` is there: a linearizable read through the
    leader, or a stale read of ``node``'s own state."""
    if node is None:
        items = shared.client().list(prefix)
    else:
        items = Client([shared.cluster.url(node)], timeout=5.0).list(prefix, stale=True)
    found = {item.key: item.value for item in items}
    missing = {k: v for k, v in acked.items() if found.get(k) != v}
    assert not missing, f"{len(missing)} acknowledged writes not readable: {sorted(missing)[:5]}"


def health_status(cluster: LocalCluster, i: int) -> tuple[int, dict]:
    """``/health`` of node ``i`` as it answers, 503 included; (0, {}) if it does not."""
    try:
        status, body, _ = cluster.request(i, "GET", "/health", timeout=1.0)
    except OSError:
        return 0, {}
    return status, body if isinstance(body, dict) else {}


def wait_exit(cluster: LocalCluster, i: int, timeout: float = WAIT) -> int | None:
    """Wait until node ``i``'s process has exited; its exit status."""
    eventually(lambda: not cluster.is_running(i), timeout, f"{cluster.nodes[i].name} to exit")
    return cluster.exit_status(i)


def log_since(cluster: LocalCluster, i: int, offset: int) -> str:
    return cluster.nodes[i].log_path.read_bytes()[offset:].decode(errors="replace")


def log_size(cluster: LocalCluster, i: int) -> int:
    path = cluster.nodes[i].log_path
    return path.stat().st_size if path.exists() else 0


def join_and_promote(shared: Shared, i: int) -> None:
    """Start node ``i`` with ``--join`` (it adds itself as a learner), then promote it as
    soon as it has caught up (the leader refuses a lagging learner)."""
    cluster = shared.cluster
    cluster.start_node(i)
    cluster.wait_for_health(i, WAIT)
    name = shared.name(i)
    eventually(lambda: shared.member_roles().get(name) == "learner", WAIT,
               f"{name} listed as a learner")
    cluster.wait_caught_up(i, WAIT)

    def promoted() -> bool:
        try:
            shared.client().promote_member(name)
        except MembershipRefused:
            return False  # still catching up
        return True

    eventually(promoted, WAIT, f"{name} promoted", interval=0.1)
    assert shared.member_roles()[name] == "voter"
    shared.voters.append(i)


def leifdb_cli(shared: Shared, *args: str) -> subprocess.CompletedProcess:
    """The ``leifdb`` command against the voters, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "leifdb.cli", "--endpoints", ",".join(shared.urls()), *args],
        env=child_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    ports = free_ports(6)
    cluster = LocalCluster(
        tmp_path_factory.mktemp("membership"), ports[:3], ports[3:],
        extra_args=["--election-timeout", str(ELECTION_MS),
                    "--heartbeat-interval", str(HEARTBEAT_MS)],
        env=child_env(),
    )
    try:
        cluster.start()
        cluster.wait_until_up(30)
        yield Shared(cluster, [0, 1, 2])
    finally:
        cluster.stop(timeout=10)


@pytest.fixture(autouse=True)
def logs_on_failure(request: pytest.FixtureRequest, shared: Shared) -> Iterator[None]:
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        cluster = shared.cluster
        for i, node in enumerate(cluster.nodes):
            print(f"----- {node.name} ({node.log_path}) -----")
            print(cluster.log_tail(i, 60))


def test_leadership_transfer_takes_well_under_an_election_timeout_and_fails_no_write(
        shared: Shared) -> None:
    cluster = shared.cluster
    shared.settle()
    took = []
    with Writer(shared.urls(), "transfer/") as writer:
        eventually(lambda: len(writer.acked) >= 20, WAIT, "writes flowing")
        for how in ("http", "client"):
            leader = shared.leader()
            target = next(i for i in shared.voters if i != leader)
            name = shared.name(target)
            started = time.monotonic()
            if how == "http":  # straight to the leader
                status, body, _ = cluster.request(leader, "POST", "/cluster/leader",
                                                  {"to": name}, timeout=5.0)
                assert status == 200 and body["leader"] == name, (status, body)
            else:  # through the client, from wherever it starts (followers redirect)
                assert shared.client().transfer_leader(name) == name
            took.append(time.monotonic() - started)
            assert cluster.wait_for_leader(WAIT, among=shared.voters) == target
            acked = len(writer.acked)
            eventually(lambda: len(writer.acked) >= acked + 10, WAIT, "writes to the new leader")
    assert not writer.failed, "\n".join(writer.failed)
    # The answer comes once another node leads: one round of TimeoutNow and votes.
    assert max(took) < ELECTION, f"transfers took {took} s; the election timeout is {ELECTION} s"
    assert_readable(shared, writer.acked, "transfer/")


def test_health_is_503_on_a_node_cut_off_and_200_again_after(shared: Shared) -> None:
    cluster = shared.cluster
    leader = shared.settle()
    for lone in (leader, shared.followers()[0]):
        others = [i for i in shared.voters if i != lone]
        assert health_status(cluster, lone)[0] == 200
        for i in others:
            cluster.pause(i)
        try:
            status, body = eventually(
                lambda: (answer := health_status(cluster, lone))[0] == 503 and answer,
                3 * ELECTION + 5, f"/health of {shared.name(lone)} to answer 503")
            assert body["healthy"] is False and body["reason"], body
            assert {"node", "role", "term", "commit_index", "applied_index"} <= body.keys()
        finally:
            for i in others:
                cluster.resume(i)
        eventually(lambda: health_status(cluster, lone)[0] == 200, WAIT,
                   f"/health of {shared.name(lone)} to answer 200 again")
        shared.settle()


def test_rolling_restart_of_every_node_fails_no_write(shared: Shared) -> None:
    cluster = shared.cluster
    shared.settle()
    with Writer(shared.urls(), "rolling/") as writer:
        eventually(lambda: len(writer.acked) >= 20, WAIT, "writes flowing")
        for i in list(shared.voters):
            assert cluster.terminate(i) == 0, cluster.log_tail(i)
            cluster.start_node(i)
            cluster.wait_for_health(i, WAIT)
            cluster.wait_caught_up(i, WAIT)
            acked = len(writer.acked)
            eventually(lambda: len(writer.acked) >= acked + 10, WAIT, "writes going on")
    assert not writer.failed, "\n".join(writer.failed)
    assert len(writer.acked) >= 50
    assert_readable(shared, writer.acked, "rolling/")


def test_grow_from_three_to_five_voters_that_keep_a_quorum_with_two_down(shared: Shared) -> None:
    cluster = shared.cluster
    shared.settle()
    ports = free_ports(4)
    new = [cluster.add_node(ports[0], ports[1]), cluster.add_node(ports[2], ports[3])]
    with Writer(shared.urls(), "grow/") as writer:
        eventually(lambda: len(writer.acked) >= 20, WAIT, "writes flowing")
        for i in new:
            join_and_promote(shared, i)
        acked = len(writer.acked)
        eventually(lambda: len(writer.acked) >= acked + 10, WAIT, "writes going on")
    assert not writer.failed, "\n".join(writer.failed)
    assert set(shared.member_roles().values()) == {"voter"} and len(shared.voters) == 5
    for i in new:  # the writes replicated to the new voters
        cluster.wait_caught_up(i, WAIT)
        assert_readable(shared, writer.acked, "grow/", node=i)

    leader = shared.leader()
    down = [leader, next(i for i in range(cluster.bootstrap) if i != leader)]
    for i in down:  # two of the original nodes, the leader among them
        cluster.kill(i)
    client = shared.client(deadline=WAIT)
    client.put("grow/two-down", "still a quorum")
    assert client.get("grow/two-down").value == "still a quorum"
    assert cluster.wait_for_leader(WAIT, among=shared.voters) not in down
    shared.settle()  # restarts them


def test_shrink_from_five_to_three_voters_and_removed_nodes_refuse_to_restart(
        shared: Shared) -> None:
    cluster = shared.cluster
    leader = shared.settle()
    assert len(shared.voters) == 5
    followers = [i for i in shared.voters if i != leader]
    gone = [next(i for i in followers if i < cluster.bootstrap),
            next(i for i in followers if i >= cluster.bootstrap)]
    with Writer(shared.urls(), "shrink/") as writer:
        eventually(lambda: len(writer.acked) >= 20, WAIT, "writes flowing")
        for i in gone:
            offset = log_size(cluster, i)
            members = shared.client().remove_member(shared.name(i))
            assert shared.name(i) not in {m.id for m in members.members}
            shared.voters.remove(i)
            wait_exit(cluster, i)  # it applied its own removal and stopped
            assert "was removed from the cluster" in log_since(cluster, i, offset)
        acked = len(writer.acked)
        eventually(lambda: len(writer.acked) >= acked + 10, WAIT, "writes going on")
    assert not writer.failed, "\n".join(writer.failed)
    assert shared.member_roles() == {shared.name(i): "voter" for i in shared.voters}
    assert_readable(shared, writer.acked, "shrink/")

    for i in gone:  # a removed node's data directory refuses to start: one clear line
        offset = log_size(cluster, i)
        cluster.start_node(i)
        assert wait_exit(cluster, i) != 0
        text = log_since(cluster, i, offset)
        refusals = [line for line in text.splitlines() if REMOVED_LINE in line]
        assert len(refusals) == 1 and "Traceback" not in text, text
        assert "wipe the data directory" in refusals[0]


def test_replace_a_node_whose_data_directory_was_wiped(shared: Shared) -> None:
    cluster = shared.cluster
    leader = shared.settle()
    followers = shared.followers()
    victim = next(i for i in followers if i < cluster.bootstrap)  # it has --members
    other = next(i for i in followers if i != victim)
    name = shared.name(victim)
    shared.client().put("replace/before", "1")
    cluster.kill(victim)
    cluster.wipe(victim)
    shared.voters.remove(victim)

    # Restarted on the empty directory under its old name: its peers refuse it (those it
    # knows from --members, which it dials)...
    offsets = {i: log_size(cluster, i) for i in shared.voters}
    cluster.start_node(victim)
    eventually(lambda: any(REFUSED_PEER in log_since(cluster, i, offsets[i])
                           for i in shared.voters), WAIT, f"a peer refusing the wiped {name}")
    # ...and it never counts: the leader and it are no quorum with the other voter frozen.
    cluster.pause(other)
    try:
        eventually(lambda: health_status(cluster, leader)[0] == 503, 3 * ELECTION + 5,
                   "the leader to lose its quorum")
        status, _, _ = http_request(cluster.url(leader), "PUT", "/db/replace/no-quorum",
                                    {"value": "x"}, timeout=2 * ELECTION + 1)
        assert status != 200
        for _ in range(int(4 * ELECTION / 0.05)):  # four election timeouts: no leader
            assert cluster.leaders([leader, victim]) == []
            time.sleep(0.05)
    finally:
        cluster.resume(other)

    # The operator's way: remove it, start it on an empty directory with --join, promote.
    shared.settle()
    cluster.kill(victim)
    cluster.wipe(victim)
    removed = leifdb_cli(shared, "member", "remove", name)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert name not in shared.member_roles()
    cluster.set_join(victim)
    join_and_promote(shared, victim)
    assert_readable(shared, {"replace/before": "1"}, "replace/", node=victim)
    # It counts again: with the other follower frozen, the leader and it are a quorum.
    leader = shared.settle()
    other = next(i for i in shared.voters if i not in (leader, victim))
    cluster.pause(other)
    try:  # (a client trying the frozen node first would wait out its timeout)
        Client([cluster.url(leader)], timeout=5.0).put("replace/after", "2")
    finally:
        cluster.resume(other)
    shared.settle()
    assert_readable(shared, {"replace/before": "1", "replace/after": "2"}, "replace/",
                    node=victim)


def test_removing_the_leader_hands_over_and_it_exits(shared: Shared) -> None:
    cluster = shared.cluster
    leader = shared.settle()
    name = shared.name(leader)
    with Writer(shared.urls(), "unlead/") as writer:
        eventually(lambda: len(writer.acked) >= 20, WAIT, "writes flowing")
        members = shared.client().remove_member(name)
        assert name not in {m.id for m in members.members}
        shared.voters.remove(leader)
        wait_exit(cluster, leader)
        new = cluster.wait_for_leader(WAIT, among=shared.voters)
        acked = len(writer.acked)
        eventually(lambda: len(writer.acked) >= acked + 10, WAIT,
                   f"writes to the new leader {shared.name(new)}")
    # The removed leader hands over like a transfer (everything it accepted commits before
    # it steps down). Left with two voters, though, one slow voter stalls commits, and a
    # write pending when the handover times out is answered 504 (outcome unknown): an
    # honest answer. Nothing else may fail.
    errors = [f for f in writer.failed if ": outcome unknown: " not in f]
    assert not errors, "\n".join(errors)
    assert shared.member_roles() == {shared.name(i): "voter" for i in shared.voters}
    assert_readable(shared, writer.acked, "unlead/")


def test_command_line_adds_a_node_that_joins_as_a_learner(tmp_path: Path) -> None:
    base_dir = tmp_path / "cli"
    http_base = free_ports(4, consecutive=True)[0]
    raft_base = http_base + 2  # n1 on the bases, the added n2 one above each

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "leifdb.cluster", *args, "--dir", str(base_dir)],
            env=child_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=60,
        )

    try:
        started = cli("start", "--nodes", "1", "--http-base", str(http_base),
                      "--raft-base", str(raft_base), "--election-timeout", str(ELECTION_MS),
                      "--heartbeat-interval", str(HEARTBEAT_MS))
        assert started.returncode == 0, started.stdout + started.stderr
        added = cli("add")
        assert added.returncode == 0, added.stdout + added.stderr
        assert "n2 joined as a learner" in added.stdout, added.stdout
        client = Client([f"http://127.0.0.1:{http_base}"], timeout=5.0)
        eventually(lambda: {m.id: m.role for m in client.members().members}
                   == {"n1": "voter", "n2": "learner"}, WAIT, "n2 listed as a learner")
        status = cli("status")
        assert [line.split()[:2] for line in status.stdout.splitlines()] == [
            ["n1", f"http://127.0.0.1:{http_base}"], ["n2", f"http://127.0.0.1:{http_base + 1}"]]
    finally:
        if (base_dir / "cluster.json").exists():
            LocalCluster.load(base_dir).stop(timeout=10)
