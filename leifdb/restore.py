"""``leifdb snapshot restore``: a backup becomes the data directory of a new cluster.

A backup is the body of ``GET /snapshot`` (``leifdb snapshot save``): the key-value
snapshot format of ``leifdb.kv.snapshot``, whose own CRC-32 trailer covers every byte, so
``inspect`` verifies a file on its own. ``restore`` writes, with the storage's own
writers, what a node finds in a data directory after it took a snapshot and compacted its
log: the snapshot (``SnapshotStore``) at index ``revision + bump_revision`` holding the
new cluster's single member as its membership, the log boundary at that index
(``DiskStorage.compact``), term 1, and an identity (``load_or_create_identity``). The
node started on it (``twistd leifdb --name NAME --members NAME=HOST:PORT ...``) is the
sole voter, elects itself and serves every key with its value, revision, create revision
and lease; more nodes join with ``--join``.

Why the jump (etcd's ``--bump-revision`` lesson): a revision is a log index, and the new
cluster's log would otherwise continue from the backup's revision. A watcher of the old
cluster that saw revision R > backup (writes made after the backup, lost by the restore)
would resume at R + 1 and silently get different writes under numbers it believes it
knows. With the jump, every revision the old cluster can have reached (fewer than
``bump_revision`` writes after the backup) lies below the restored one, and the restored
node's watch history starts after it: a watch from any of them gets 410 ``compacted`` and
reads again. Keys keep their revisions; new writes get revisions above the jump.

The directory is built beside its destination (``.<name>.restoring``) and renamed into
place once complete and durable: an interrupted restore never leaves a half-made data
directory under the name a node would start on.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from leifdb.kv.snapshot import SnapshotFormatError
from leifdb.kv.store import KVStore
from leifdb.raft.messages import HardState, Member
from leifdb.storage.checksum import crc32c
from leifdb.storage.disklog import DiskStorage
from leifdb.storage.errors import StorageError
from leifdb.storage.fs import REAL_FS
from leifdb.storage.identity import load_or_create_identity
from leifdb.storage.snapshots import SnapshotStore
from leifdb.wire import DecodeError, EncodeError, decode_membership, encode_membership

__all__ = [
    "BackupInfo", "DEFAULT_BUMP_REVISION", "DEFAULT_CLUSTER_ID", "DEFAULT_HTTP_PORT",
    "DEFAULT_NAME", "DEFAULT_RAFT_ADDRESS", "RESTORED_TERM", "RestoreError", "Restored",
    "inspect", "read_backup", "restore",
]

# etcd's documentation restores with --bump-revision 1000000000; a million is more writes
# than a LeifDB cluster makes between a backup and a restore in any plausible outage
# (hours at a hundred writes a second), and keeps revisions readable. Raise it if yours
# writes faster.
DEFAULT_BUMP_REVISION = 1_000_000
DEFAULT_NAME = "n1"
DEFAULT_RAFT_ADDRESS = "127.0.0.1:16990"
DEFAULT_HTTP_PORT = 8080
DEFAULT_CLUSTER_ID = "leifdb"  # leifdb.nodeconfig.NodeConfig.cluster_id's default
RESTORED_TERM = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CHUNK = 1024 * 1024


class RestoreError(Exception):
    """The backup or the destination is not usable; the message (one line) says why."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """A verified backup file: the ``revision`` it was taken at, what it holds, its size
    and CRC-32C (as ``GET /snapshot`` announced them), and the members of the cluster it
    came from (empty if it did not say)."""

    path: Path
    revision: int
    keys: int
    leases: int
    size: int
    crc32c: int
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Restored:
    """A data directory made by ``restore``: ``member`` of ``cluster_id``, at
    ``revision`` (the backup's plus the jump)."""

    data_dir: Path
    member: Member
    cluster_id: str
    revision: int
    backup: BackupInfo

    def start_command(self) -> list[str]:
        """The command that starts the restored node (without ``twistd -n``'s path)."""
        http_port = self.member.http_address.rpartition(":")[2]
        command = ["twistd", "-n", "leifdb", "--mode", "multi", "--name", self.member.id,
                   "--members", f"{self.member.id}={self.member.raft_address}",
                   "--http-port", http_port, "--data-dir", str(self.data_dir)]
        if self.cluster_id != DEFAULT_CLUSTER_ID:
            command += ["--cluster-id", self.cluster_id]
        return command


class _Checksummed:
    """A reader that keeps the CRC-32C and count of every byte read through it."""

    def __init__(self, inp: BinaryIO) -> None:
        self._inp = inp
        self.crc = 0
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._inp.read(n)
        self.crc = crc32c(data, self.crc)
        self.size += len(data)
        return data


def read_backup(path: Path | str) -> tuple[KVStore, BackupInfo]:
    """The store a backup holds, after checking every byte of it (its CRC-32 trailer,
    its structure, that no item names a missing lease). ``RestoreError`` otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            counted = _Checksummed(raw)
            store, metadata = KVStore.read_snapshot(counted)  # type: ignore[arg-type]
    except OSError as e:
        raise RestoreError(f"cannot read {path}: {e.strerror or e}") from None
    except SnapshotFormatError as e:
        raise RestoreError(f"{path} is not an intact LeifDB snapshot: {e}") from None
    try:
        members = tuple(decode_membership(metadata)) if metadata else ()
    except DecodeError:
        members = ()
    info = BackupInfo(path, store.applied_index, len(store), store.lease_count(),
                      counted.size, counted.crc, members)
    return store, info


def inspect(path: Path | str) -> BackupInfo:
    """Verify a backup file and say what it holds (``leifdb snapshot status``)."""
    return read_backup(path)[1]


def restore(
    backup: Path | str,
    data_dir: Path | str,
    *,
    name: str = DEFAULT_NAME,
    raft_address: str = DEFAULT_RAFT_ADDRESS,
    http_address: str | None = None,
    cluster_id: str = DEFAULT_CLUSTER_ID,
    bump_revision: int = DEFAULT_BUMP_REVISION,
) -> Restored:
    """Make ``data_dir`` (absent or empty) the data directory of member ``name`` of a new
    single-node cluster ``cluster_id`` holding the backup, at revision backup +
    ``bump_revision``. ``http_address`` defaults to port 8080 on the Raft address's host.
    ``RestoreError`` (nothing written) when the backup or an argument is bad."""
    member = _member(name, raft_address, http_address)
    if not cluster_id or re.search(r"[\s,=/]", cluster_id):
        raise RestoreError(f"bad cluster id {cluster_id!r} (no spaces or ',=/')")
    if bump_revision < 0:
        raise RestoreError(f"--bump-revision must not be negative, not {bump_revision}")
    target = Path(data_dir).expanduser().absolute()
    staging = target.with_name(f".{target.name}.restoring")
    _check_destination(target, staging)
    store, info = read_backup(backup)
    revision = info.revision + bump_revision
    if revision < 1:
        raise RestoreError("the backup is of an empty cluster at revision 0: restore it "
                           "with --bump-revision 1 or more")
    if revision > info.revision:
        store.note_applied(revision)
    try:
        _build(staging, store, member, cluster_id)
        os.replace(staging, target)
        REAL_FS.fsync_dir(target.parent)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, (OSError, StorageError)):
            raise RestoreError(f"cannot write the data directory {target}: {e}") from None
        raise
    return Restored(target, member, cluster_id, revision, info)


def _member(name: str, raft_address: str, http_address: str | None) -> Member:
    if not _NAME.fullmatch(name):
        raise RestoreError(f"bad member name {name!r} (use letters, digits, '.', '_', '-')")
    host, sep, port = raft_address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RestoreError(f"the Raft address must be host:port, not {raft_address!r}")
    if http_address is None:
        http_address = f"{host}:{DEFAULT_HTTP_PORT}"
    elif http_address.rpartition(":")[0] != host:
        raise RestoreError(
            f"the HTTP address {http_address!r} must be on the Raft address's host {host!r}: "
            "a node has one --host")
    member = Member(name, raft_address, http_address)
    try:
        encode_membership([member])
    except EncodeError as e:
        raise RestoreError(str(e)) from None
    if raft_address == http_address:
        raise RestoreError("the HTTP and the Raft address must differ")
    return member


def _check_destination(target: Path, staging: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RestoreError(
            f"{target} exists and is not an empty directory: restore into a new one (a "
            "node's data directory is never overwritten)")
    if staging.exists():
        raise RestoreError(
            f"{staging} is left from an interrupted restore: delete it and try again")


def _build(staging: Path, store: KVStore, member: Member, cluster_id: str) -> None:
    """The data directory in ``staging``: snapshot, log boundary, term, identity."""
    disk = DiskStorage.open(staging)
    try:
        disk.load()
        snapshots = SnapshotStore(disk.data_dir.snap_dir)
        with tempfile.TemporaryFile(dir=staging) as encoded:
            store.write_snapshot(encoded, encode_membership([member]))
            encoded.seek(0)
            meta = snapshots.save(store.applied_index, RESTORED_TERM, encoded)
        disk.set_hard_state(HardState(RESTORED_TERM))
        disk.sync()
        disk.compact(meta)
        latest = snapshots.latest()
        if latest is None or latest[0] != meta or disk.snapshot != meta:
            raise StorageError(f"the snapshot written does not read back as {meta}")
        snapshots.close()
    finally:
        disk.close()
    load_or_create_identity(staging, member.id, cluster_id)
