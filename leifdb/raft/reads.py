"""ReadIndex (dissertation §6.4): linearizable reads without writing to the log.

A mixin of ``RaftCore``: the leader records the commit index, confirms it is still leader
with a heartbeat round acknowledged by a majority of voters, and answers once an entry of
its own term has committed; a follower forwards the request to its leader.
"""

from __future__ import annotations

from dataclasses import dataclass

from leifdb.raft.messages import ReadIndexReply, ReadIndexRequest, ReadState, Role
from leifdb.raft.quorum import majority


@dataclass
class _PendingRead:
    origin: str
    read_id: int
    index: int
    seq: int


class ReadsMixin:
    """The ReadIndex half of ``RaftCore`` (state lives on the core)."""

    def _committed_in_term(self) -> bool:
        """§6.4: a new leader knows the commit index only once an entry of its term commits."""
        return self.log.term_at(self.commit_index) == self.term

    def _leader_read(self, origin: str, read_id: int) -> None:
        self._read_seq += 1
        self._pending_reads.append(_PendingRead(origin, read_id, self.commit_index, self._read_seq))
        if self._sole_voter():
            self._release_reads()
        else:
            self._read_round_pending = True

    def _release_reads(self) -> None:
        """Answer reads whose heartbeat round a majority acknowledged, once this term has
        committed an entry (so the commit index is the leader's real one)."""
        if not self._pending_reads or not self._committed_in_term():
            return
        voters = self.peers
        quorum = majority(len(voters))
        me = 1 if self.id in voters else 0
        released = 0
        for read in self._pending_reads:
            acks = me + sum(
                self._progress[p].read_seq_acked >= read.seq for p in voters if p != self.id
            )
            if acks < quorum:
                break
            index = max(read.index, self.commit_index)
            self._answer_read(read.origin, read.read_id, index, True)
            released += 1
        del self._pending_reads[:released]

    def _answer_read(self, origin: str, read_id: int, index: int, success: bool) -> None:
        if origin == self.id:
            self._read_states.append(ReadState(read_id, index, success))
        else:
            self._send(ReadIndexReply(self.id, origin, self.term, read_id, index, success))

    def _fail_pending_reads(self) -> None:
        for read in self._pending_reads:
            self._answer_read(read.origin, read.read_id, 0, False)
        self._pending_reads = []

    def _fail_forwarded_reads(self) -> None:
        for read_id in self._forwarded_reads:
            self._read_states.append(ReadState(read_id, 0, success=False))
        self._forwarded_reads = {}

    def _on_read_index_request(self, msg: ReadIndexRequest) -> None:
        if self.role is not Role.LEADER:
            self._send(ReadIndexReply(self.id, msg.src, self.term, msg.read_id, 0, False))
            return
        self._leader_read(msg.src, msg.read_id)

    def _on_read_index_reply(self, msg: ReadIndexReply) -> None:
        """Only the leader asked, in the current term, may answer a forwarded read."""
        if self._forwarded_reads.get(msg.read_id) != msg.src or msg.term != self.term:
            return
        del self._forwarded_reads[msg.read_id]
        self._read_states.append(ReadState(msg.read_id, msg.read_index, msg.success))
