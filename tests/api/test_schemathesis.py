"""Schemathesis fuzzes real nodes from the node's own OpenAPI (Swagger 2.0) document.

The CLI runs in a subprocess (never inside pytest-twisted's reactor) against nodes of a
3-node cluster of twistd processes: the leader, a follower (whose writes answer 307),
and, in a second cluster, the only node started, which has no leader (writes and
linearizable reads answer 503). Bounded and reproducible: a fixed seed, a few examples per operation,
one worker (schemathesis 4.32's coverage phase is not thread-safe), no example database,
redirects not followed (so every 307 itself is checked against the document).

Leases, locks and elections are fuzzed like the rest; a lock or campaign waits for its
lock, so those run with ``timeout=1s`` (``schemathesis.toml`` written for the run) to stay
well inside the request timeout, and the election's observe stream is left out as
``/watch`` is. Membership changes and leadership transfers (``CLUSTER_CHANGES``) would
really reconfigure the leader's cluster (even ``--mode negative`` sends the documented
examples, which are valid), so they are fuzzed on the follower (307) and on the node
without a leader (503) only; tests/http/test_cluster.py covers the leader's answers. The
leader's member list must come out of the fuzzing unchanged.

Checks: the answer's status code is documented for the operation, its body matches the
documented schema, its content type and documented headers (``Location``,
``Retry-After``, ``ETag``) conform, input that violates the document is rejected, and,
with a leader, nothing answers 5xx. ``positive_data_acceptance`` is left out on purpose:
Swagger 2.0 cannot express the documented 400s (``value`` in both query and body, two
conditions at once) nor that a failed condition is a 412. Known leniency that
``negative_data_rejection`` can flag with other seeds or ``--mode negative``: a body of
only whitespace counts as no body (so ``curl -d ''`` works), by design of
``leifdb.http.params.parse_body``.

Reproduce a run by hand against any node: ``python -m schemathesis.cli run
http://127.0.0.1:8080/ --seed 20261126 --max-examples 5 --workers 1 --max-redirects 0
--checks not_a_server_error,status_code_conformance,response_schema_conformance``
(with ``--exclude-path-regex`` as ``STREAMS`` and the config of ``SCHEMATHESIS_CONFIG``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from leifdb.cluster import LocalCluster
from tests.api.client import key_path, request, request_following
from tests.api.conftest import LEADER_TIMEOUT, STEADY
from tests.cluster.helpers import child_env, eventually

pytest.importorskip("schemathesis", reason="a dev dependency: pip install '.[dev]'")

pytestmark = pytest.mark.cluster

SEED = 20261126
MAX_EXAMPLES = 5
RUN_TIMEOUT = 240.0
CONFORMANCE = [
    "status_code_conformance",
    "response_schema_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
]
# Keys the generator tends to produce, so some reads find an item (ETag, Item schema).
SEEDED_KEYS = ("0", "a", "AAA", "key")
# Endless Server-Sent Event streams, which request/response fuzzing cannot judge (each
# case would wait for the request timeout); tests/http/test_watch.py and
# tests/http/test_elections.py cover them, and the fault test's watchers the watch.
STREAMS = r"^/watch/|^/election/[^/]*/observe$"
STREAM_OPERATIONS = "watch|observe"
# The operations whose answers depend on the node's role (leader, follower, no leader).
ROLE_DEPENDENT = r"^/(db|lease|lock|election|cluster)"
# The operations that change the cluster itself when given valid input.
CLUSTER_CHANGES = "addMember|promoteMember|removeMember|transferLeader"
# Operation filters. Schemathesis ANDs filters of different kinds (an operation is left
# out only if it matches every --exclude-* given), so each selection uses one kind.
EVERYTHING = ("--exclude-path-regex", STREAMS)
ROLE_ONLY = ("--include-path-regex", ROLE_DEPENDENT, "--exclude-path-regex", STREAMS)
ALL_BUT_CLUSTER_CHANGES = ("--exclude-operation-id-regex",
                           f"^({STREAM_OPERATIONS}|{CLUSTER_CHANGES})$")
# A lock or campaign on a held lock waits up to its timeout (default 60 s): keep it short.
SCHEMATHESIS_CONFIG = """\
[[operations]]
include-operation-id = ["lock", "campaign"]
parameters = { "query.timeout" = "1s" }
"""


def schemathesis(
    base_url: str, workdir: Path, checks: list[str], *, seed: int = SEED,
    select: tuple[str, ...] = EVERYTHING,
) -> None:
    """Run the schemathesis CLI against ``base_url`` on the operations ``select`` picks
    (``EVERYTHING``, ``ROLE_ONLY``...); fail with its report unless every check passed."""
    config = workdir / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
        "run", f"{base_url}/",
        "--checks", ",".join(checks),
        "--seed", str(seed),
        "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1",
        "--max-redirects", "0",
        "--request-timeout", "10",
        "--generation-database", "none",
        "--phases", "examples,coverage,fuzzing",
        "--no-color",
        *select,
    ]
    try:
        done = subprocess.run(
            command, cwd=workdir, env=child_env(), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run killed it
        pytest.fail(f"schemathesis did not finish in {RUN_TIMEOUT} s:\n{exc.stdout}")
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"schemathesis found problems:\n{report[-6000:]}"
    passed = re.search(r"(\d+) generated, (\d+) passed", report)
    assert passed and int(passed.group(2)) > 0, f"schemathesis ran no test case:\n{report}"


def _seed_keys(cluster: LocalCluster) -> None:
    for key in SEEDED_KEYS:
        reply = request_following(cluster.url(0), "PUT", key_path(key), body={"value": key})
        assert reply.status == 200, reply


def test_schemathesis_against_leader_and_follower(make_cluster, tmp_path):
    cluster = make_cluster(3, timing=STEADY)  # a spurious election would be a 503
    leader = cluster.wait_for_leader(LEADER_TIMEOUT)
    _seed_keys(cluster)
    follower = next(i for i in range(len(cluster)) if i != leader)
    leader_http = cluster.url(leader).removeprefix("http://")
    eventually(lambda: (cluster.health(follower) or {}).get("leader_http") == leader_http,
               10.0, "the follower to know the leader")

    members_before = request(cluster.url(leader), "GET", "/cluster/members").body["members"]

    schemathesis(cluster.url(leader), tmp_path, ["not_a_server_error", *CONFORMANCE],
                 select=ALL_BUT_CLUSTER_CHANGES)
    schemathesis(cluster.url(follower), tmp_path, ["not_a_server_error", *CONFORMANCE],
                 seed=SEED + 1, select=ROLE_ONLY)

    assert cluster.leaders() == [leader], "the cluster must stay healthy while fuzzed"
    members_after = request(cluster.url(leader), "GET", "/cluster/members").body["members"]
    assert [(m["id"], m["role"]) for m in members_after] == [
        (m["id"], m["role"]) for m in members_before], "fuzzing must not change the members"


def test_schemathesis_against_a_node_without_leader(make_cluster, tmp_path):
    """One node of three running: every write and linearizable read is a documented 503
    (so ``not_a_server_error`` does not apply); everything else must still conform."""
    cluster = make_cluster(3, start=False)
    cluster.start_node(0)
    health = cluster.wait_for_health(0, LEADER_TIMEOUT)
    assert health["leader"] is None
    probe = request(cluster.url(0), "PUT", key_path("k"), body={"value": "v"})
    assert probe.status == 503 and probe.body["applied"] is False, probe

    schemathesis(cluster.url(0), tmp_path, CONFORMANCE, select=ROLE_ONLY)
