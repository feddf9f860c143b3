"""The fault test can fail: a deliberately broken setup yields a history the checker rejects.

The broken setup: a node is cut off from the majority; the majority keeps accepting writes;
a client reads from the cut-off node with ``consistency=stale`` and records those answers
as if they were linearizable reads. The cut-off node cannot have learned the new writes, so
a read that starts after a new write was acknowledged and returns the old value is a stale
read: the history is not linearizable, every time. The same scenario with real
(linearizable) reads from the cut-off node must pass, so the test is not merely one that
fails everything.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.clients import OpSpec, Recorder, execute
from tests.faults.cluster import ProxiedCluster
from tests.faults.history import Op
from tests.faults.linearizability import check

pytestmark = pytest.mark.cluster

TIMEOUT = 2.5
KEY = "stale-key"


def _until_ok(recorder: Recorder, spec: OpSpec, addresses: list[str], client: int,
              seconds: float = 20.0) -> Op:
    """Repeat ``spec`` on the given nodes (recording every attempt) until one is ok."""
    deadline = time.monotonic() + seconds
    attempt = 0
    while time.monotonic() < deadline:
        op, c, _ = execute(spec, addresses[attempt % len(addresses)], client=client,
                           timeout=TIMEOUT)
        recorder.add(op, c)
        attempt += 1
        if op.outcome == "ok":
            return op
        time.sleep(0.05)
    raise AssertionError(f"{spec} never succeeded in {seconds} s")


def _wait_applied(cluster: ProxiedCluster, i: int, value: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        op, _, _ = execute(OpSpec("read", KEY, consistency="stale"), cluster.http_address(i),
                           client=99, timeout=TIMEOUT)
        if op.seen is not None and op.seen.value == value:
            return
        time.sleep(0.05)
    raise AssertionError(f"{cluster.names[i]} never applied {value!r}")


@pytest.fixture
def cluster(tmp_path: Path):
    c = ProxiedCluster(tmp_path, 3, seed=7, extra_args=[
        "--election-timeout", "400", "--heartbeat-interval", "50"])
    try:
        c.start_all()
        c.wait_for_leader(30)
        yield c
    finally:
        c.close()


def _partitioned_history(cluster: ProxiedCluster, read_consistency: str | None) -> list[Op]:
    """Write v0 everywhere, cut a follower off, write v1..v3 on the majority, then read
    from the cut-off node with ``read_consistency`` (recorded as plain reads)."""
    recorder = Recorder()
    everyone = cluster.http_addresses()
    _until_ok(recorder, OpSpec("put", KEY, value="v0"), everyone, client=0)
    for i in range(len(cluster)):
        _wait_applied(cluster, i, "v0")
    leader = cluster.wait_for_leader(10)
    victim = (leader + 1) % len(cluster)
    cluster.net.isolate(cluster.names[victim], "reset")
    majority = [cluster.http_address(i) for i in range(len(cluster)) if i != victim]
    writes = [_until_ok(recorder, OpSpec("put", KEY, value=f"v{n}"), majority, client=1)
              for n in (1, 2, 3)]
    assert all(w.revision is not None for w in writes)
    reads = []
    for _ in range(5):
        op, c, _ = execute(OpSpec("read", KEY, consistency=read_consistency),
                           cluster.http_address(victim), client=2, timeout=TIMEOUT)
        recorder.add(op, c)
        reads.append(op)
    assert recorder.unexpected == []
    if read_consistency == "stale":
        # The setup really is broken: the cut-off node served the old value after the
        # majority had acknowledged newer ones.
        assert all(op.outcome == "ok" and op.seen is not None and op.seen.value == "v0"
                   and op.invoke > writes[-1].complete for op in reads), reads
    cluster.net.heal()
    return recorder.snapshot()


def test_checker_rejects_stale_reads_from_a_cut_off_node(cluster: ProxiedCluster) -> None:
    history = _partitioned_history(cluster, read_consistency="stale")
    result = check(history, timeout=60)
    assert result.ok is False, result.summary()
    assert result.counterexample is not None and KEY in result.counterexample
    assert "'v0'" in result.counterexample


def test_linearizable_reads_from_a_cut_off_node_pass(cluster: ProxiedCluster) -> None:
    history = _partitioned_history(cluster, read_consistency=None)
    reads_from_victim = [op for op in history if op.client == 2]
    assert len(reads_from_victim) == 5
    # The cut-off node must not serve a linearizable read of the old value: it refuses,
    # redirects to a leader, or answers with the latest value.
    result = check(history, timeout=60)
    assert result.ok is True, result.summary()
