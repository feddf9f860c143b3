"""The follower's side of replication: AppendEntries and InstallSnapshot receivers.

A mixin of ``RaftCore``: Figure 2's AppendEntries receiver rules (consistency check,
conflict truncation, commit index) and Figure 13's InstallSnapshot receiver, chunk by chunk.
"""

from __future__ import annotations

from leifdb.raft.log import LogInvariantError
from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    InstallSnapshot,
    InstallSnapshotReply,
    Role,
    SnapshotChunk,
    SnapshotMeta,
)


class FollowerMixin:
    """Receiving the leader's log (state lives on the core)."""

    def _follow(self, leader: str) -> None:
        """A valid message from the current term's leader: it is our leader."""
        if self.role is not Role.FOLLOWER or self.leader_id != leader:
            self._become_follower(self.term, leader)
        self._election_elapsed = 0

    def _on_append_entries(self, msg: AppendEntries) -> None:
        if self.role is Role.LEADER:
            return
        self._follow(msg.src)
        reply = self._append_reply(msg)
        self._send(reply)

    def _append_reply(self, msg: AppendEntries) -> AppendEntriesReply:
        log = self.log
        if msg.prev_log_index < self.commit_index:
            # Our committed prefix is in every later leader's log (leader completeness), so
            # the entries past it follow a matching prefix.
            match = self.commit_index
            tail = [e for e in msg.entries if e.index > match]
            if tail:
                match = self._merge_entries(tail)
            self._advance_commit(min(msg.leader_commit, match))
            return AppendEntriesReply(self.id, msg.src, self.term, True, match, read_seq=msg.read_seq)
        prev_term = log.term_at(msg.prev_log_index)
        if prev_term != msg.prev_log_term:
            if prev_term is None:
                conflict_index, conflict_term = log.last_index() + 1, 0
            else:
                conflict_index = log.first_index_of_term(msg.prev_log_index)
                conflict_term = prev_term
            return AppendEntriesReply(
                self.id, msg.src, self.term, False, msg.prev_log_index,
                conflict_index, conflict_term, msg.read_seq,
            )
        match = msg.prev_log_index
        if msg.entries:
            match = self._merge_entries(list(msg.entries))
        self._advance_commit(min(msg.leader_commit, match))
        return AppendEntriesReply(self.id, msg.src, self.term, True, match, read_seq=msg.read_seq)

    def _merge_entries(self, entries: list[Entry]) -> int:
        """Append ``entries`` (which follow a matching prefix), truncating a conflicting
        uncommitted suffix first (§5.3). Returns the index of the last entry verified."""
        log = self.log
        for n, entry in enumerate(entries):
            ours = log.term_at(entry.index)
            if ours == entry.term:
                continue
            if ours is not None:
                if entry.index <= self.commit_index:
                    raise LogInvariantError(f"leader conflicts with committed entry {entry.index}")
                log.truncate_from(entry.index)
                if self._configs.truncated(entry.index):
                    self._configuration_changed()
                self._unstable_from = min(self._unstable_from, entry.index)
                self._stable_last = min(self._stable_last, entry.index - 1)
            log.append(entries[n:])
            self._track_appended(entries[n:])
            break
        return entries[-1].index

    def _advance_commit(self, index: int) -> None:
        if index > self.commit_index:
            self.commit_index = index

    def _on_install_snapshot(self, msg: InstallSnapshot) -> None:
        if self.role is Role.LEADER:
            return
        self._follow(msg.src)
        meta = SnapshotMeta(msg.last_included_index, msg.last_included_term, msg.checksum, msg.total_size)
        if msg.last_included_index <= self.commit_index:
            self._send(InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, 0, done=True))
            return
        if self._awaiting_install is not None:
            return
        if self._receiving != meta:
            if msg.offset != 0:
                self._send(InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, 0))
                return
            self._receiving = meta
            self._receive_offset = 0
        self._receive_from = msg.src
        if msg.offset != self._receive_offset:
            self._send(
                InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, self._receive_offset)
            )
            return
        self._snapshot_chunks.append(SnapshotChunk(meta, msg.offset, msg.data, msg.done))
        self._receive_offset += len(msg.data)
        if msg.done:
            self._awaiting_install = meta
        else:
            self._send(
                InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, self._receive_offset)
            )
