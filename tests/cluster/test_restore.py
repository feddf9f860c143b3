"""``leifdb snapshot restore``: a backup becomes the data directory of a new single-node
cluster that the storage reads back as a snapshot at the bumped revision; and, with real
processes, a cluster backed up from a follower comes back with every key, revision and
lease, watchers of the old cluster get ``compacted``, and another node joins it."""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path

import pytest

from leifdb.cli import EXIT_ERROR, EXIT_OK, main
from leifdb.client import Client, Compacted, Item
from leifdb.cluster import LocalCluster, free_ports
from leifdb.kv.commands import LeaseGrant, Put
from leifdb.kv.store import KVStore
from leifdb.nodeconfig import default_of
from leifdb.raft.messages import HardState, Member
from leifdb.restore import (
    DEFAULT_BUMP_REVISION, DEFAULT_CLUSTER_ID, RESTORED_TERM, RestoreError, inspect, restore,
)
from leifdb.storage import DiskStorage, SnapshotStore
from leifdb.storage.identity import read_identity
from leifdb.wire import decode_membership, encode_membership
from tests.cluster.conftest import ELECTION_MS, HEARTBEAT_MS
from tests.cluster.helpers import child_env, eventually


def _backup(tmp_path: Path, keys: int = 20) -> tuple[Path, KVStore]:
    kv = KVStore()
    kv.apply(1, LeaseGrant(30_000))
    index = itertools.count(2)
    for i in range(keys):
        kv.apply(next(index), Put(f"k/{i:03d}", f"first {i}"))
    for i in range(0, keys, 3):
        kv.apply(next(index), Put(f"k/{i:03d}", f"second {i}", lease=1 if i % 2 else 0))
    path = tmp_path / "backup.snapshot"
    with open(path, "wb") as out:
        kv.write_snapshot(out, encode_membership([Member("old1", "10.0.0.1:16990")]))
    return path, kv


def test_the_restored_directory_holds_the_backup_at_the_bumped_revision(tmp_path):
    path, kv = _backup(tmp_path)
    target = tmp_path / "data"
    done = restore(path, target, name="a1", raft_address="127.0.0.1:17001",
                   cluster_id="restored", bump_revision=1000)

    assert done.revision == kv.applied_index + 1000 and done.data_dir == target
    assert done.member == Member("a1", "127.0.0.1:17001", "127.0.0.1:8080")
    assert [m.id for m in done.backup.members] == ["old1"]
    state = DiskStorage.open(target)
    try:
        loaded = state.load()
    finally:
        state.close()
    snapshots = SnapshotStore(target / "snap")
    meta, _ = snapshots.latest()
    assert loaded.snapshot == meta and loaded.entries == []
    assert (meta.last_included_index, meta.last_included_term) == (done.revision, RESTORED_TERM)
    assert loaded.hard_state == HardState(RESTORED_TERM)
    with snapshots.open(meta) as stream:
        restored, membership = KVStore.read_snapshot(stream)
    assert restored.applied_index == done.revision
    assert restored.range("") == kv.range("")  # values, revisions, create revisions, leases
    assert restored.leases() == kv.leases()
    assert decode_membership(membership) == [done.member]
    identity = read_identity(target)
    assert (identity.member_id, identity.cluster_id, identity.removed) == ("a1", "restored",
                                                                          False)
    assert not any(p.name.endswith(".restoring") for p in tmp_path.iterdir())


def test_the_defaults_match_the_nodes():
    assert DEFAULT_CLUSTER_ID == default_of("cluster_id")
    assert DEFAULT_BUMP_REVISION == 1_000_000


def test_a_damaged_backup_is_refused_and_nothing_is_written(tmp_path):
    path, _ = _backup(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged = tmp_path / "damaged"
    damaged.write_bytes(bytes(data))
    truncated = tmp_path / "truncated"
    truncated.write_bytes(bytes(data[:-10]))
    for bad in (damaged, truncated, tmp_path / "missing"):
        with pytest.raises(RestoreError):
            restore(bad, tmp_path / "data")
        with pytest.raises(RestoreError):
            inspect(bad)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "bad name"}, "bad member name"),
    ({"raft_address": "nohost"}, "host:port"),
    ({"raft_address": "h:1", "http_address": "other:2"}, "one --host"),
    ({"raft_address": "h:1", "http_address": "h:1"}, "must differ"),
    ({"cluster_id": "a,b"}, "cluster id"),
    ({"bump_revision": -1}, "negative"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, kwargs, message):
    path, _ = _backup(tmp_path)
    with pytest.raises(RestoreError, match=message):
        restore(path, tmp_path / "data", **kwargs)
    assert not (tmp_path / "data").exists()


def test_a_used_directory_or_an_interrupted_restore_is_refused(tmp_path):
    path, _ = _backup(tmp_path)
    used = tmp_path / "used"
    used.mkdir()
    (used / "hardstate").write_bytes(b"x")
    with pytest.raises(RestoreError, match="not an empty directory"):
        restore(path, used)
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / ".empty.restoring").mkdir()
    with pytest.raises(RestoreError, match="interrupted restore"):
        restore(path, empty)
    os.rmdir(tmp_path / ".empty.restoring")
    assert restore(path, empty).data_dir == empty  # an empty directory is fine


def test_no_bump_keeps_the_revision_but_an_empty_cluster_needs_one(tmp_path):
    path, kv = _backup(tmp_path)
    assert restore(path, tmp_path / "same", bump_revision=0).revision == kv.applied_index
    empty = tmp_path / "empty.snapshot"
    with open(empty, "wb") as out:
        KVStore().write_snapshot(out)
    with pytest.raises(RestoreError, match="revision 0"):
        restore(empty, tmp_path / "d", bump_revision=0)
    assert restore(empty, tmp_path / "d", bump_revision=1).revision == 1


def test_the_cli_restores_and_prints_how_to_start_and_refuses_in_one_line(tmp_path, capsys):
    path, kv = _backup(tmp_path)
    out = io.StringIO()
    code = main(["snapshot", "restore", str(path), "--data-dir", str(tmp_path / "d"),
                 "--name", "z9", "--raft-address", "127.0.0.1:17009",
                 "--http-address", "127.0.0.1:18009", "--bump-revision", "10"], out=out)
    assert code == EXIT_OK
    text = out.getvalue()
    assert f"revision {kv.applied_index} into {tmp_path / 'd'} at revision " \
           f"{kv.applied_index + 10}" in text
    assert (f"twistd -n leifdb --mode multi --name z9 --members z9=127.0.0.1:17009 "
            f"--http-port 18009 --data-dir {tmp_path / 'd'}") in text
    code = main(["snapshot", "restore", str(path), "--data-dir", str(tmp_path / "d")])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("leifdb: error: ") and err.count("\n") == 1
    out = io.StringIO()
    assert main(["-o", "json", "snapshot", "status", str(path)], out=out) == EXIT_OK
    assert f'"revision": {kv.applied_index}' in out.getvalue()


# -- real processes


def _items(client: Client) -> list[Item]:
    return client.list("")


@pytest.mark.cluster
def test_a_backup_restores_into_a_new_cluster_that_keeps_every_key_and_fools_no_watcher(
        make_cluster, tmp_path):
    old = make_cluster(3)
    leader = old.wait_for_leader(20)
    client = Client([old.url(i) for i in range(3)])
    lease = client.grant(60)
    for i in range(30):
        client.put(f"k/{i:02d}", f"first {i}")
    for i in range(0, 30, 4):
        client.put(f"k/{i:02d}", f"second {i}", lease=lease.id if i % 8 else 0)
    client.delete("k/01")
    before = _items(client)
    follower = next(i for i in range(3) if i != leader)

    backup = tmp_path / "backup.snapshot"
    out = io.StringIO()
    assert main(["--endpoints", old.url(follower), "snapshot", "save", str(backup)],
                out=out) == EXIT_OK
    saved = inspect(backup)
    assert out.getvalue().startswith(f"saved {backup}: revision {saved.revision}, 29 keys")
    assert saved.revision >= max(item.revision for item in before)
    lost = client.put("after/backup", "lost by the restore")  # the old cluster goes on
    old.stop()

    http, raft = free_ports(2)
    new = LocalCluster(tmp_path / "restored", [http], [raft],
                       extra_args=["--election-timeout", str(ELECTION_MS),
                                   "--heartbeat-interval", str(HEARTBEAT_MS)],
                       env=child_env())
    assert main(["snapshot", "restore", str(backup), "--data-dir", str(new.nodes[0].data_dir),
                 "--name", "n1", "--raft-address", f"127.0.0.1:{raft}",
                 "--http-address", f"127.0.0.1:{http}"], out=io.StringIO()) == EXIT_OK
    try:
        new.start()
        new.wait_for_leader(20)
        restored = Client([new.url(0)])
        assert _items(restored) == before
        assert restored.lease_info(lease.id).keys == tuple(
            item.key for item in before if item.lease == lease.id)
        restored_revision = saved.revision + DEFAULT_BUMP_REVISION
        for start in (saved.revision, saved.revision + 1, lost.revision + 1):
            with pytest.raises(Compacted):
                next(iter(restored.watch("", prefix=True, start_revision=start)))
        assert restored.put("new", "v").revision > restored_revision

        joiner = new.add_node(*free_ports(2))
        new.start_node(joiner)
        joined = Client([new.url(joiner)])
        eventually(lambda: joined.get("new", stale=True), 30, "the joined node to catch up")
        assert joined.list("k/", stale=True) == [i for i in before if i.key.startswith("k/")]
    finally:
        new.stop()

