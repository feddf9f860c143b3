"""Which configuration a Raft node uses, and which changes a leader may make to it.

Dissertation §4.1: a server uses the newest configuration in its log, committed or not, so
the configuration can move backwards when an uncommitted suffix is truncated. A change
adds or removes (or promotes) one server at a time, so any majority of the old and any
majority of the new configuration overlap, and only one change is uncommitted at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from leifdb.raft.messages import Configuration, Entry, EntryType

ConfigurationDecoder = Callable[[bytes], Configuration]


class NotLeader(Exception):
    """A proposal reached a node that is not the leader. ``leader_id`` is the hint (or None;
    also None while the leader hands over to another node)."""

    def __init__(self, leader_id: str | None) -> None:
        super().__init__(f"not leader; leader is {leader_id!r}")
        self.leader_id = leader_id


class ConfigChangeRefused(Exception):
    """A membership change or leadership transfer the leader will not make now.
    ``retryable`` when it may succeed later unchanged (the leader has not yet committed
    an entry of its term, another change is in flight); ``unknown_member`` when the
    change names a server that is not a member."""

    def __init__(self, reason: str, *, retryable: bool = False, unknown_member: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.unknown_member = unknown_member


@dataclass(frozen=True)
class _Known:
    """A configuration and where it comes from (the log index of its CONFIG entry, or of
    the snapshot that carried it; ``data`` is b"" for the bootstrap list)."""

    index: int
    data: bytes
    configuration: Configuration


class ConfigTracker:
    """The configurations in a node's log after its snapshot, and the one at the snapshot.

    ``current`` is the newest. The core calls ``appended`` for every entry it adds,
    ``truncated`` and ``compacted`` when the log loses entries, ``installed`` when a
    snapshot replaces it. Decoding is injected, so the core needs no protobuf."""

    def __init__(self, decode: ConfigurationDecoder | None, base: _Known) -> None:
        self._decode = decode
        self._base = base
        self._in_log: list[_Known] = []

    @classmethod
    def start(
        cls, decode: ConfigurationDecoder | None, bootstrap: Configuration,
        snapshot_index: int, snapshot_membership: bytes, entries: Iterable[Entry],
    ) -> "ConfigTracker":
        if snapshot_membership:
            if decode is None:
                raise ValueError("a snapshot holds a membership but no decoder was given")
            base = _Known(snapshot_index, snapshot_membership, decode(snapshot_membership))
        else:
            base = _Known(0, b"", bootstrap)
        tracker = cls(decode, base)
        tracker.appended(entries)
        return tracker

    @property
    def current(self) -> Configuration:
        return self._latest().configuration

    @property
    def current_index(self) -> int:
        """Log index of the newest configuration (0 for the bootstrap list)."""
        return self._latest().index

    @property
    def current_data(self) -> bytes:
        return self._latest().data

    def data_at(self, index: int) -> bytes:
        """The encoded configuration in force at ``index`` (for a snapshot taken there)."""
        known = self._base
        for entry in self._in_log:
            if entry.index > index:
                break
            known = entry
        return known.data

    def configuration_before(self, index: int) -> Configuration:
        """The configuration in force just before ``index`` (what truncating there leaves)."""
        known = self._base
        for entry in self._in_log:
            if entry.index >= index:
                break
            known = entry
        return known.configuration

    def appended(self, entries: Iterable[Entry]) -> bool:
        """Returns whether the current configuration changed."""
        changed = False
        for entry in entries:
            if entry.type is EntryType.CONFIG:
                if self._decode is None:
                    raise ValueError("a CONFIG entry arrived but no decoder was given")
                self._in_log.append(_Known(entry.index, entry.data, self._decode(entry.data)))
                changed = True
        return changed

    def truncated(self, from_index: int) -> bool:
        before = len(self._in_log)
        self._in_log = [k for k in self._in_log if k.index < from_index]
        return len(self._in_log) != before

    def compacted(self, index: int) -> None:
        """The log now starts after ``index``: the configuration there becomes the base."""
        kept = [k for k in self._in_log if k.index > index]
        older = [k for k in self._in_log if k.index <= index]
        if older:
            self._base = older[-1]
        self._in_log = kept

    def installed(self, index: int, membership: bytes, remaining: Iterable[Entry]) -> bool:
        """A snapshot through ``index`` replaced the log; ``remaining`` is what is left
        after it. Returns whether the current configuration changed."""
        before = self._latest()
        if membership and self._decode is not None:
            self._base = _Known(index, membership, self._decode(membership))
        self._in_log = []
        self.appended(remaining)
        return self._latest() != before

    def _latest(self) -> _Known:
        return self._in_log[-1] if self._in_log else self._base


def single_change(old: Configuration, new: Configuration) -> tuple[str, str]:
    """``(kind, server)`` when ``new`` is ``old`` with one server added as a learner,
    promoted from learner to voter, or removed; ``ConfigChangeRefused`` otherwise."""
    added = new.members() - old.members()
    gone = old.members() - new.members()
    if len(added) == 1 and not gone:
        server = next(iter(added))
        if new.voters == old.voters and server in new.learners:
            return "add", server
        raise ConfigChangeRefused(f"{server!r} must join as a learner, then be promoted")
    if len(gone) == 1 and not added:
        server = next(iter(gone))
        if new.voters == old.voters - {server} and new.learners == old.learners - {server}:
            if not new.voters:
                raise ConfigChangeRefused("cannot remove the last voter")
            return "remove", server
    if not added and not gone:
        promoted = new.voters - old.voters
        if len(promoted) == 1 and not (old.voters - new.voters):
            server = next(iter(promoted))
            if server in old.learners:
                return "promote", server
        if new == old:
            raise ConfigChangeRefused("the membership is unchanged")
    raise ConfigChangeRefused(
        "only one server may be added, promoted or removed per change (dissertation §4.1)"
    )
