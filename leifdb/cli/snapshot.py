"""``leifdb snapshot save|status|restore``: backups.

``save FILE`` downloads ``GET /snapshot`` from the endpoints (any node; linearizable
unless ``--stale``), checks its length and CRC-32C and only then puts it at FILE
(atomically: FILE is the old file or the whole new snapshot). ``status FILE`` verifies a
backup and says what it holds. ``restore FILE --data-dir DIR`` turns it into the data
directory of a new single-node cluster (``leifdb.restore``) and prints the command that
starts it. A bad file or destination is exit 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, TextIO

from leifdb.cli.common import EXIT_OK, Parser, show
from leifdb.client import Client, ClientError
from leifdb.restore import (
    DEFAULT_BUMP_REVISION, DEFAULT_CLUSTER_ID, DEFAULT_NAME, DEFAULT_RAFT_ADDRESS,
    BackupInfo, RestoreError, inspect, restore,
)

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("snapshot",)
_HEADERS = ["REVISION", "KEYS", "LEASES", "SIZE", "CRC32C"]


class BackupError(ClientError):
    """A backup file or a restore's destination is not usable (exit 1)."""


def add_parsers(sub: Any) -> None:
    """The ``snapshot`` command and its subcommands on ``sub`` (the top-level subparsers)."""
    snapshot = sub.add_parser("snapshot", help="save a backup, check one, restore one")
    ssub = snapshot.add_subparsers(dest="snapshot_command", required=True, parser_class=Parser)
    save = ssub.add_parser("save", help="download a consistent snapshot of every key and "
                                        "lease into FILE (replaced atomically)")
    save.add_argument("file", metavar="FILE")
    save.add_argument("--stale", action="store_true",
                      help="from the node's own state, without the read barrier")
    status = ssub.add_parser("status", help="verify a backup and show what it holds")
    status.add_argument("file", metavar="FILE")
    rest = ssub.add_parser(
        "restore", help="make DIR the data directory of a new single-node cluster holding "
                        "the backup FILE, then start a node on it")
    rest.add_argument("file", metavar="FILE")
    rest.add_argument("--data-dir", required=True, metavar="DIR",
                      help="the new data directory (must not exist, or be empty)")
    rest.add_argument("--name", default=DEFAULT_NAME,
                      help=f"the new member's name, its --name (default {DEFAULT_NAME})")
    rest.add_argument("--raft-address", default=DEFAULT_RAFT_ADDRESS, metavar="HOST:PORT",
                      help="where the node will listen for Raft, as in --members (default "
                           f"{DEFAULT_RAFT_ADDRESS})")
    rest.add_argument("--http-address", default=None, metavar="HOST:PORT",
                      help="its client API (default: port 8080 on the Raft address's host)")
    rest.add_argument("--cluster-id", default=DEFAULT_CLUSTER_ID,
                      help=f"the new cluster's id (default {DEFAULT_CLUSTER_ID})")
    rest.add_argument("--bump-revision", type=_count, default=DEFAULT_BUMP_REVISION,
                      metavar="N",
                      help="start the restored revision N above the backup's, so watchers of "
                           "the old cluster get 'compacted' instead of wrong changes "
                           f"(default {DEFAULT_BUMP_REVISION})")


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a revision count is a whole number, not {text!r}")
    return int(text)


def _row(revision: int, keys: int, leases: int, size: int, crc: int) -> list[Any]:
    return [revision, keys, leases, size, f"{crc:08x}"]


def run(args: argparse.Namespace, client: Client, out: TextIO) -> int:
    """Run one of ``COMMANDS``: its exit code."""
    cmd = args.snapshot_command
    try:
        if cmd == "save":
            info = client.snapshot(args.file, stale=args.stale)
            show(out, args.output or "value", {"file": args.file, **info.to_json()}, _HEADERS,
                 [_row(info.revision, info.keys, info.leases, info.size, info.crc32c)],
                 f"saved {args.file}: revision {info.revision}, {info.keys} keys, "
                 f"{info.leases} leases, {info.size} bytes, crc32c {info.crc32c:08x}")
            return EXIT_OK
        if cmd == "status":
            backup = inspect(args.file)
            show(out, args.output or "table", _backup_json(backup), _HEADERS,
                 [_row(backup.revision, backup.keys, backup.leases, backup.size,
                       backup.crc32c)],
                 f"{backup.revision} {backup.keys} {backup.leases} {backup.size} "
                 f"{backup.crc32c:08x}")
            return EXIT_OK
        done = restore(args.file, args.data_dir, name=args.name,
                       raft_address=args.raft_address, http_address=args.http_address,
                       cluster_id=args.cluster_id, bump_revision=args.bump_revision)
    except RestoreError as e:
        raise BackupError(str(e)) from None
    except OSError as e:
        raise BackupError(f"cannot write {args.file}: {e.strerror or e}") from None
    command = shlex.join(done.start_command())
    data = {**_backup_json(done.backup), "data_dir": str(done.data_dir),
            "member": done.member.id, "raft_address": done.member.raft_address,
            "http_address": done.member.http_address, "cluster_id": done.cluster_id,
            "restored_revision": done.revision, "start": command}
    show(out, args.output or "value", data,
         ["DATA DIR", "MEMBER", "BACKUP REVISION", "RESTORED REVISION", "KEYS", "LEASES"],
         [[done.data_dir, done.member.id, done.backup.revision, done.revision,
           done.backup.keys, done.backup.leases]],
         f"restored {done.backup.keys} keys and {done.backup.leases} leases of revision "
         f"{done.backup.revision} into {done.data_dir} at revision {done.revision}: a new "
         f"cluster {done.cluster_id!r} whose only member is {done.member.id} "
         f"({done.member.raft_address}). Start it with:\n  {command}\n"
         "then add nodes with --join.")
    return EXIT_OK


def _backup_json(backup: BackupInfo) -> dict[str, Any]:
    return {"file": str(backup.path), "revision": backup.revision, "keys": backup.keys,
            "leases": backup.leases, "size": backup.size, "crc32c": f"{backup.crc32c:08x}",
            "members": [m.id for m in backup.members]}
