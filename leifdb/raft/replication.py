"""The leader's half of log replication: appends, heartbeats, snapshots, and the replies.

A mixin of ``RaftCore``. Per follower (voter or learner) the leader keeps a ``Progress``:
probe one append at a time until the follower's log position is found, then pipeline up to
``max_inflight_appends``; a follower behind the snapshot gets the snapshot in chunks.
"""

from __future__ import annotations

from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    InstallSnapshot,
    InstallSnapshotReply,
    Role,
)
from leifdb.raft.progress import Progress, ProgressState


class ReplicationMixin:
    """Leader-side replication of ``RaftCore`` (state lives on the core)."""

    def _heartbeat_round(self) -> None:
        """Heartbeats assert leadership and carry the commit index; they also unstick
        followers whose appends or snapshot chunks were lost."""
        self._prune_departed()
        stall_limit = max(2, self.config.election_ticks // 2)
        for peer, pr in self._progress.items():
            if pr.state is ProgressState.PROBE:
                pr.paused = False
            elif pr.state is ProgressState.REPLICATE and pr.match_index < self.log.last_index():
                pr.stalled_ticks += self.config.heartbeat_ticks
                if pr.stalled_ticks >= stall_limit:
                    pr.become_probe()
            elif pr.state is ProgressState.SNAPSHOT:
                pr.snapshot_idle_ticks += self.config.heartbeat_ticks
                if pr.snapshot_idle_ticks >= stall_limit:
                    pr.snapshot_idle_ticks = 0
                    self._send_snapshot_chunk(peer, pr)
            self._send_heartbeat(peer, pr)
            self._send_append(peer, pr)

    def _broadcast_append(self, heartbeat_all: bool = False) -> None:
        """One append per follower for everything proposed since the last drain; followers
        with nothing new get a heartbeat (new commit index, or a read round when asked)."""
        for peer, pr in self._progress.items():
            if not self._send_append(peer, pr) or heartbeat_all:
                self._send_heartbeat(peer, pr)

    def _send_heartbeat(self, peer: str, pr: Progress) -> None:
        """An empty append anchored at the follower's known match, so it never fails the
        consistency check and only ever moves the follower's commit up to what matches."""
        prev = pr.match_index
        prev_term = self.log.term_at(prev)
        if prev_term is None:
            prev, prev_term = 0, 0
        self._send(
            AppendEntries(self.id, peer, self.term, prev, prev_term, (), self.commit_index, self._read_seq)
        )

    def _send_append(self, peer: str, pr: Progress) -> bool:
        """Send entries the follower lacks, respecting the probe/pipelining window.
        Returns whether anything was sent."""
        if pr.state is ProgressState.SNAPSHOT:
            return False
        last = self.log.last_index()
        sent = False
        while pr.next_index <= last:
            if pr.state is ProgressState.PROBE and pr.paused:
                break
            if pr.state is ProgressState.REPLICATE and len(pr.inflight) >= self.config.max_inflight_appends:
                break
            prev = pr.next_index - 1
            prev_term = self.log.term_at(prev)
            if prev_term is None:
                pr.become_snapshot(self.log.snapshot_index)
                self._send_snapshot_chunk(peer, pr)
                return True
            entries = self._batch_from(pr.next_index, last)
            self._send(
                AppendEntries(
                    self.id, peer, self.term, prev, prev_term, tuple(entries), self.commit_index, self._read_seq
                )
            )
            sent = True
            if pr.state is ProgressState.PROBE:
                pr.paused = True
                break
            pr.next_index = entries[-1].index + 1
            pr.inflight.append(entries[-1].index)
        return sent

    def _batch_from(self, lo: int, last: int) -> list[Entry]:
        hi = min(last, lo + self.config.max_entries_per_append - 1)
        entries = self.log.slice(lo, hi)
        size = 0
        for n, entry in enumerate(entries):
            size += len(entry.data) + 32
            if size > self.config.max_append_bytes and n > 0:
                return entries[:n]
        return entries

    def _send_snapshot_chunk(self, peer: str, pr: Progress) -> None:
        meta = self.snapshot_meta
        if pr.snapshot_index != meta.last_included_index:
            pr.snapshot_index = meta.last_included_index
            pr.snapshot_offset = 0
        self._send(
            InstallSnapshot(
                self.id,
                peer,
                self.term,
                meta.last_included_index,
                meta.last_included_term,
                offset=pr.snapshot_offset,
                checksum=meta.checksum,
                total_size=meta.size,
            )
        )

    def _on_append_entries_reply(self, msg: AppendEntriesReply) -> None:
        pr = self._progress.get(msg.src)
        if self.role is not Role.LEADER or pr is None:
            return
        pr.heard_from()
        if msg.read_seq > pr.read_seq_acked:
            pr.read_seq_acked = msg.read_seq
            self._release_reads()
        if msg.success:
            self._departed_answered(pr, msg)
            if msg.match_index > pr.match_index:
                pr.match_index = msg.match_index
                pr.stalled_ticks = 0
                if pr.state is ProgressState.PROBE:
                    pr.become_replicate()
                elif pr.state is ProgressState.SNAPSHOT:
                    if pr.match_index >= pr.snapshot_index:
                        pr.become_probe()
                else:
                    pr.free_inflight_upto(pr.match_index)
                pr.next_index = max(pr.next_index, pr.match_index + 1)
                self._maybe_commit()
                self._maybe_send_timeout_now(self._transfer_to)
            elif pr.state is ProgressState.PROBE:
                pr.paused = False
            self._send_append(msg.src, pr)
            return
        rejected = msg.match_index
        if pr.state is ProgressState.SNAPSHOT:
            return
        if pr.state is ProgressState.REPLICATE and rejected <= pr.match_index:
            return
        if pr.state is ProgressState.PROBE and rejected != pr.next_index - 1:
            return
        next_index = msg.conflict_index
        if msg.conflict_term:
            ours = self.log.last_index_of_term(msg.conflict_term)
            if ours is not None:
                next_index = ours + 1
        next_index = max(pr.match_index + 1, min(next_index, rejected))
        pr.become_probe()
        pr.next_index = next_index
        self._send_append(msg.src, pr)

    def _on_install_snapshot_reply(self, msg: InstallSnapshotReply) -> None:
        pr = self._progress.get(msg.src)
        if self.role is not Role.LEADER or pr is None:
            return
        pr.heard_from()
        if pr.state is not ProgressState.SNAPSHOT:
            return
        pr.snapshot_idle_ticks = 0
        if msg.done:
            if msg.last_included_index > pr.match_index:
                pr.match_index = msg.last_included_index
            pr.become_probe()
            self._maybe_commit()
            self._send_append(msg.src, pr)
            return
        if msg.last_included_index != self.snapshot_meta.last_included_index:
            pr.snapshot_offset = 0
        else:
            pr.snapshot_offset = msg.next_offset
        self._send_snapshot_chunk(msg.src, pr)
