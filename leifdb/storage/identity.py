"""Who a data directory belongs to, and which incarnation of each peer it trusts.

Raft's safety rests on every voter remembering its term and vote. A node whose data
directory was wiped and that comes back under its old id has forgotten both, and could vote
twice in one term. Two small files in the data directory close that hole:

- ``identity`` (``Identity``): the member id, the cluster id, a random 64-bit
  ``incarnation`` made when the directory is first used, ``removed``, set when the node
  applies its own removal, and ``joined_index``, the index of the CONFIG entry that made
  a joining node a member (0 for a node that bootstrapped the cluster), so that the older
  configurations it replays without itself are not taken for its removal. A node refuses
  to start on the directory of another member or cluster, or on one that was removed
  (``IdentityRefused``).
- ``peers`` (``PeerPins``): the incarnation first seen of each peer. The transport refuses
  a peer whose Hello carries another one, so a wiped voter is never heard, and its votes
  never counted, until it was removed and re-added (which clears its pin).

Both are JSON in the checksummed envelope of the hard state, replaced atomically through
the storage's ``FileSystem``: a crash leaves the old or the new file, and a damaged one is
``StorageCorruption``, never a guess. Writes are rare (first start, a peer's first Hello,
a removal) and small, so they are made synchronously by the caller.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from leifdb.storage._files import read_state_file, write_state_file
from leifdb.storage.errors import StorageCorruption, StorageError
from leifdb.storage.fs import REAL_FS, FileSystem

__all__ = [
    "IDENTITY_NAME",
    "PEERS_NAME",
    "Identity",
    "IdentityRefused",
    "PeerPins",
    "load_or_create_identity",
    "new_incarnation",
    "read_identity",
]

IDENTITY_NAME = "identity"
PEERS_NAME = "peers"
_IDENTITY_MAGIC = b"LEIFID\x00\x01"
_PEERS_MAGIC = b"LEIFPP\x00\x01"
_PAYLOAD_OFFSET = 16  # after the state file's header
_FIX = "restore it from a backup, or wipe the data directory and add the node again"


class IdentityRefused(StorageError):
    """The data directory belongs to another member or cluster, or to a removed member:
    starting on it could count a vote twice or resurrect a removed node."""


def new_incarnation() -> str:
    """64 random bits in hex: tells this data directory apart from any other ever made."""
    return secrets.token_hex(8)


class Identity:
    """The ``identity`` file of one data directory (``member_id``, ``cluster_id``,
    ``incarnation``, ``removed``, ``joined_index``). Only ``mark_removed`` and
    ``mark_joined`` change it, durably before they return."""

    def __init__(
        self,
        member_id: str,
        cluster_id: str,
        incarnation: str,
        removed: bool = False,
        joined_index: int = 0,
        *,
        path: Path,
        fs: FileSystem = REAL_FS,
    ) -> None:
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.incarnation = incarnation
        self.removed = removed
        self.joined_index = joined_index
        self.path = path
        self._fs = fs

    def __repr__(self) -> str:
        return (f"Identity(member_id={self.member_id!r}, cluster_id={self.cluster_id!r}, "
                f"incarnation={self.incarnation!r}, removed={self.removed!r}, "
                f"joined_index={self.joined_index!r})")

    def check(self, member_id: str, cluster_id: str) -> None:
        """Raise ``IdentityRefused`` unless a node ``member_id`` of ``cluster_id`` may
        start on this directory."""
        where = self.path.parent
        if self.removed:
            raise IdentityRefused(
                f"member {self.member_id} was removed from cluster {self.cluster_id!r} and "
                f"must not start again on its data directory {where}: wipe the data "
                "directory and add the node again (--join)"
            )
        if self.member_id != member_id:
            raise IdentityRefused(
                f"data directory {where} belongs to member {self.member_id!r}, not "
                f"{member_id!r}: start it with --name {self.member_id}, or wipe the data "
                "directory and add the node again"
            )
        if self.cluster_id != cluster_id:
            raise IdentityRefused(
                f"data directory {where} belongs to cluster {self.cluster_id!r}, not "
                f"{cluster_id!r}: set --cluster-id {self.cluster_id}, or wipe the data "
                "directory and add the node again"
            )

    def mark_removed(self) -> None:
        """Durably record that this member was removed (idempotent): the directory will
        never start a node again."""
        if self.removed:
            return
        _write_json(self._fs, self.path, _IDENTITY_MAGIC, self._payload(removed=True))
        self.removed = True

    def mark_joined(self, index: int) -> None:
        """Durably record ``index``, the CONFIG entry that made this joining node a member
        (only the first one counts: later calls change nothing)."""
        if index < 1:
            raise ValueError(f"joined_index must be at least 1, not {index}")
        if self.joined_index:
            return
        _write_json(self._fs, self.path, _IDENTITY_MAGIC, self._payload(joined_index=index))
        self.joined_index = index

    def save(self) -> None:
        """Write the file (atomically, durably)."""
        _write_json(self._fs, self.path, _IDENTITY_MAGIC, self._payload())

    def _payload(self, *, removed: bool | None = None,
                 joined_index: int | None = None) -> dict[str, Any]:
        return {"member_id": self.member_id, "cluster_id": self.cluster_id,
                "incarnation": self.incarnation,
                "removed": self.removed if removed is None else removed,
                "joined_index": self.joined_index if joined_index is None else joined_index}


def read_identity(data_dir: Path, *, fs: FileSystem = REAL_FS) -> Identity | None:
    """The data directory's identity, or None if it has none yet (a new directory, or one
    written before identities existed). ``StorageCorruption`` if the file is damaged."""
    path = Path(data_dir) / IDENTITY_NAME
    data = _read_json(fs, path, _IDENTITY_MAGIC)
    if data is None:
        return None
    fields = {"member_id": str, "cluster_id": str, "incarnation": str, "removed": bool,
              "joined_index": int}
    if not isinstance(data, dict) or set(data) != set(fields) or not all(
            type(data[name]) is kind for name, kind in fields.items()):
        raise _corrupt(path, f"not an identity: {data!r:.200}")
    if (not data["member_id"] or not data["cluster_id"] or not _is_hex(data["incarnation"])
            or data["joined_index"] < 0):
        raise _corrupt(path, f"empty member or cluster id, bad incarnation or joined index: "
                             f"{data!r:.200}")
    return Identity(data["member_id"], data["cluster_id"], data["incarnation"],
                    data["removed"], data["joined_index"], path=path, fs=fs)


def load_or_create_identity(
    data_dir: Path,
    member_id: str,
    cluster_id: str,
    *,
    fs: FileSystem = REAL_FS,
    incarnation: str | None = None,
) -> Identity:
    """The identity of ``data_dir``, made (with a new ``incarnation`` unless one is given)
    and written if it has none. ``IdentityRefused`` if it belongs to another member or
    cluster, or was removed; ``StorageCorruption`` if the file is damaged."""
    identity = read_identity(data_dir, fs=fs)
    if identity is None:
        if not member_id or not cluster_id:
            raise ValueError("member_id and cluster_id must be non-empty")
        identity = Identity(member_id, cluster_id, incarnation or new_incarnation(),
                            path=Path(data_dir) / IDENTITY_NAME, fs=fs)
        identity.save()
    identity.check(member_id, cluster_id)
    return identity


class PeerPins:
    """The ``peers`` file: peer id -> the incarnation first seen in its Hello.

    ``check`` pins an unknown peer's incarnation (durably, before it answers True), and
    answers False for a pinned peer showing another one; ``clear`` forgets a peer's pin
    (it was removed and is being added again, so its new data directory is legitimate)."""

    def __init__(self, path: Path, pins: dict[str, str], *, fs: FileSystem = REAL_FS) -> None:
        self.path = path
        self._pins = dict(pins)
        self._fs = fs

    @classmethod
    def open(cls, data_dir: Path, *, fs: FileSystem = REAL_FS) -> PeerPins:
        """The data directory's pins (none if it has no ``peers`` file yet).
        ``StorageCorruption`` if the file is damaged."""
        path = Path(data_dir) / PEERS_NAME
        data = _read_json(fs, path, _PEERS_MAGIC)
        if data is None:
            return cls(path, {}, fs=fs)
        pins = data.get("pins") if isinstance(data, dict) else None
        if not isinstance(pins, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str) and _is_hex(v)
                for k, v in pins.items()):
            raise _corrupt(path, f"not a table of peer incarnations: {data!r:.200}")
        return cls(path, pins, fs=fs)

    def get(self, peer_id: str) -> str | None:
        return self._pins.get(peer_id)

    def pinned(self) -> dict[str, str]:
        return dict(self._pins)

    def check(self, peer_id: str, incarnation: str) -> bool:
        """True if ``incarnation`` is ``peer_id``'s pinned one, pinning it first if the
        peer has none. An empty incarnation (a node older than incarnations) passes and
        pins nothing. Raises what the write raises if a new pin cannot be stored."""
        if not incarnation:
            return True
        pinned = self._pins.get(peer_id)
        if pinned is not None:
            return pinned == incarnation
        self._store({**self._pins, peer_id: incarnation})
        return True

    def clear(self, peer_id: str) -> None:
        """Forget ``peer_id``'s pin (durably); its next Hello pins again."""
        if peer_id in self._pins:
            self._store({k: v for k, v in self._pins.items() if k != peer_id})

    def _store(self, pins: dict[str, str]) -> None:
        _write_json(self._fs, self.path, _PEERS_MAGIC, {"pins": pins})
        self._pins = pins


def _is_hex(text: str) -> bool:
    return 1 <= len(text) <= 32 and all(c in "0123456789abcdef" for c in text)


def _write_json(fs: FileSystem, path: Path, magic: bytes, data: dict[str, Any]) -> None:
    payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")
    write_state_file(fs, path, magic, payload)


def _read_json(fs: FileSystem, path: Path, magic: bytes) -> Any:
    """The JSON in a state file, or None if there is no file."""
    try:
        payload = read_state_file(fs, path, magic)
    except StorageCorruption as e:
        raise StorageCorruption(e.path, e.offset, f"{e.reason}; {_FIX}") from None
    if payload is None:
        return None
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _corrupt(path, f"undecodable JSON: {e}") from None


def _corrupt(path: Path, reason: str) -> StorageCorruption:
    return StorageCorruption(path, _PAYLOAD_OFFSET, f"{reason}; {_FIX}")
