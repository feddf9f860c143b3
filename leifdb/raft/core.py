"""The pure Raft core: messages and ticks go in, a ``Ready`` comes out.

No I/O, no clock, no Twisted. The caller (``leifdb.node`` in production, the simulation in
tests) turns time into ``tick()`` calls, feeds received messages to ``step()``, and drains
``ready()``: persist, send, apply, then ``advance()``. Because nothing here blocks or reads a
clock, a hypothesis test can drive thousands of crashes and partitions in seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from leifdb.raft.log import LogInvariantError, RaftLog
from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    EntryType,
    HardState,
    InstallSnapshot,
    InstallSnapshotReply,
    Message,
    ReadIndexReply,
    ReadIndexRequest,
    ReadState,
    Ready,
    RequestVote,
    RequestVoteReply,
    Role,
    SnapshotChunk,
    SnapshotMeta,
    SoftState,
)
from leifdb.raft.progress import Progress, ProgressState
from leifdb.raft.quorum import committed_index, majority


class NotLeader(Exception):
    """A proposal reached a node that is not the leader. ``leader_id`` is the hint (or None)."""

    def __init__(self, leader_id: str | None) -> None:
        super().__init__(f"not leader; leader is {leader_id!r}")
        self.leader_id = leader_id


@dataclass(frozen=True)
class Config:
    """Static configuration of one core.

    ``peers`` lists every voting member, this node included. The election timeout is drawn
    uniformly from ``[election_ticks, 2 * election_ticks)`` ticks on every reset; the leader
    sends heartbeats every ``heartbeat_ticks``.
    """

    node_id: str
    peers: tuple[str, ...]
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    check_quorum: bool = True
    max_entries_per_append: int = 512
    max_append_bytes: int = 4 * 1024 * 1024
    max_inflight_appends: int = 8


@dataclass
class PersistentState:
    """What a node recovered from its storage at start: the hard state, the newest snapshot's
    metadata (zeros if none) and the log entries after it, in index order."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: SnapshotMeta = field(default_factory=SnapshotMeta)
    entries: list[Entry] = field(default_factory=list)


@dataclass(frozen=True)
class Status:
    node_id: str
    role: Role
    term: int
    leader_id: str | None
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int


@dataclass
class _PendingRead:
    origin: str
    read_id: int
    index: int
    seq: int


class RaftCore:
    """One Raft participant (Figure 2 of the Raft paper, plus ReadIndex and snapshots).

    Inputs: ``tick``, ``step``, ``propose``, ``read_index``, ``compact``,
    ``snapshot_installed``, ``report_unreachable``. Output: ``ready`` / ``advance``.
    All randomness comes from ``rng``, so a seed replays a run exactly.
    """

    def __init__(self, config: Config, state: PersistentState, rng: random.Random) -> None:
        if config.node_id not in config.peers:
            raise ValueError(f"{config.node_id!r} is not one of the peers {config.peers}")
        self.config = config
        self.id = config.node_id
        self.peers = tuple(config.peers)
        self._rng = rng
        hs = state.hard_state
        snap = state.snapshot
        self.log = RaftLog(snap.last_included_index, snap.last_included_term, list(state.entries))
        self.snapshot_meta = snap
        self.term = hs.term
        self.voted_for = hs.voted_for
        self.commit_index = min(max(hs.commit_index, snap.last_included_index), self.log.last_index())
        self.applied = snap.last_included_index
        self._applying = self.applied
        self._stable_last = self.log.last_index()
        self._unstable_from = self.log.last_index() + 1
        self._persisted_hard_state = HardState(hs.term, hs.voted_for, hs.commit_index)
        self.role = Role.FOLLOWER
        self.leader_id: str | None = None
        self._reported_soft = SoftState(Role.FOLLOWER, self.term, None)
        self._votes: dict[str, bool] = {}
        self._progress: dict[str, Progress] = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._reset_randomized_timeout()
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._snapshot_chunks: list[SnapshotChunk] = []
        self._needs_broadcast = False
        self._read_round_pending = False
        self._read_seq = 0
        self._pending_reads: list[_PendingRead] = []
        self._forwarded_reads: dict[int, str] = {}
        self._receiving: SnapshotMeta | None = None
        self._receive_offset = 0
        self._receive_from: str | None = None
        self._awaiting_install: SnapshotMeta | None = None

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        """One unit of time has passed (election and heartbeat timers count ticks)."""
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            if self._election_elapsed >= self._randomized_timeout:
                self._campaign()

    def step(self, msg: Message) -> None:
        """Handle one received message. Messages from unknown nodes, for another ``dst``, or
        of a stale term (other than those answered to make a stale sender step down) are
        ignored."""
        if msg.dst != self.id or msg.src not in self.peers or msg.src == self.id:
            return
        if msg.term > self.term:
            leader = msg.src if isinstance(msg, (AppendEntries, InstallSnapshot)) else None
            self._become_follower(msg.term, leader)
        if not self._accepts_term(msg):
            self._answer_stale(msg)
            return
        handler = _HANDLERS.get(type(msg))
        if handler is not None:
            getattr(self, handler)(msg)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a command to the leader's log; returns its ``(index, term)``.

        Raises ``NotLeader`` on a follower or candidate. Everything proposed before the next
        ``ready()`` goes out as one append. The proposal's outcome: the committed entry at
        ``index`` has ``term`` (applied), or a different term / leadership lost (unknown)."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        return self._append_own(EntryType.NORMAL, data)

    def read_index(self, read_id: int) -> None:
        """Ask for a linearizable read point. The answer comes back as a ``ReadState`` with
        the same ``read_id`` in a later ``Ready``: serve the read once the state machine has
        applied ``read_index``. A leader confirms it with a heartbeat round to a majority; a
        follower asks the leader. ``success=False`` when no leader can answer now."""
        if self.role is Role.LEADER:
            self._leader_read(self.id, read_id)
        elif self.leader_id is not None:
            self._forwarded_reads[read_id] = self.leader_id
            self._send(ReadIndexRequest(self.id, self.leader_id, self.term, read_id))
        else:
            self._read_states.append(ReadState(read_id, 0, success=False))

    def compact(self, meta: SnapshotMeta) -> None:
        """The state machine's snapshot at ``meta.last_included_index`` (<= applied) is
        durable: forget the log up to it and use it to catch up lagging followers."""
        index = meta.last_included_index
        if index <= self.log.snapshot_index:
            return
        if index > self.applied or self.log.term_at(index) != meta.last_included_term:
            raise LogInvariantError(f"snapshot {meta} does not match applied log")
        self.log.compact_to(index, meta.last_included_term)
        self.snapshot_meta = meta

    def snapshot_installed(self, meta: SnapshotMeta, ok: bool) -> None:
        """The caller persisted and verified (``ok``) the snapshot whose last chunk the core
        emitted and restored its state machine from it; the core now replaces its log with
        it and tells the leader (or, if not ``ok``, asks the leader to start over)."""
        if self._awaiting_install != meta:
            return
        self._awaiting_install = None
        leader = self._receive_from
        self._receiving = None
        self._receive_offset = 0
        index = meta.last_included_index
        if ok:
            self.log.compact_to(index, meta.last_included_term)
            self.snapshot_meta = meta
            self.commit_index = max(self.commit_index, index)
            self.applied = self._applying = max(self.applied, index)
            last = self.log.last_index()
            self._stable_last = min(max(self._stable_last, index), last)
            self._unstable_from = min(max(self._unstable_from, index + 1), last + 1)
        if leader is not None:
            self._send(InstallSnapshotReply(self.id, leader, self.term, index, 0, done=ok))

    def report_unreachable(self, peer: str) -> None:
        """The transport lost the connection to ``peer`` or a request to it timed out:
        whatever was in flight is presumed lost, so probe again instead of waiting."""
        pr = self._progress.get(peer)
        if self.role is Role.LEADER and pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    # ------------------------------------------------------------------ output

    def has_ready(self) -> bool:
        return bool(
            self._msgs
            or self._read_states
            or self._snapshot_chunks
            or self._needs_broadcast
            or self._read_round_pending
            or self._unstable_from <= self.log.last_index()
            or self._vote_changed()
            or self.commit_index > self._applying
            or self._soft_state() != self._reported_soft
        )

    def ready(self) -> Ready:
        """Drain what must be persisted, sent and applied since the last ``advance``."""
        if self._needs_broadcast or self._read_round_pending:
            if self.role is Role.LEADER:
                self._broadcast_append(heartbeat_all=self._read_round_pending)
            self._needs_broadcast = self._read_round_pending = False
        ready = Ready()
        if self._vote_changed():
            ready.hard_state = self._hard_state()
        if self._unstable_from <= self.log.last_index():
            ready.entries = self.log.slice(self._unstable_from, self.log.last_index())
        ready.snapshot_chunks, self._snapshot_chunks = self._snapshot_chunks, []
        ready.messages, self._msgs = self._msgs, []
        ready.committed = self._committed_to_apply()
        if ready.committed:
            self._applying = ready.committed[-1].index
        ready.read_states, self._read_states = self._read_states, []
        soft = self._soft_state()
        if soft != self._reported_soft:
            ready.soft_state = soft
            self._reported_soft = soft
        return ready

    def advance(self, ready: Ready) -> None:
        """The caller has persisted, sent and applied ``ready``."""
        if ready.hard_state is not None:
            self._persisted_hard_state = ready.hard_state
        if ready.entries:
            last = ready.entries[-1]
            if self.log.term_at(last.index) == last.term:
                self._stable_last = max(self._stable_last, last.index)
                self._unstable_from = max(self._unstable_from, last.index + 1)
        if ready.committed:
            self.applied = max(self.applied, ready.committed[-1].index)
        if self.role is Role.LEADER and ready.entries:
            self._maybe_commit()

    def status(self) -> Status:
        return Status(
            node_id=self.id,
            role=self.role,
            term=self.term,
            leader_id=self.leader_id,
            commit_index=self.commit_index,
            applied_index=self.applied,
            last_index=self.log.last_index(),
            snapshot_index=self.log.snapshot_index,
        )

    # ------------------------------------------------------------------ rules (one method each)

    def _accepts_term(self, msg: Message) -> bool:
        """§5.1: a message from an older term is stale and must not change our state."""
        return msg.term >= self.term

    def _log_is_up_to_date(self, last_log_index: int, last_log_term: int) -> bool:
        """§5.4.1 election restriction: vote only for a candidate whose log is at least as
        up-to-date as ours (compare last terms, then lengths)."""
        our_term = self.log.last_term()
        return last_log_term > our_term or (
            last_log_term == our_term and last_log_index >= self.log.last_index()
        )

    def _hard_state(self) -> HardState:
        """What must be durable before messages that depend on it are sent."""
        return HardState(self.term, self.voted_for, self.commit_index)

    def _vote_changed(self) -> bool:
        """The one place that decides whether the hard state must be written: when term
        or vote changed (the commit index is recomputed after a restart, never stored)."""
        hs, persisted = self._hard_state(), self._persisted_hard_state
        return (hs.term, hs.voted_for) != (persisted.term, persisted.voted_for)

    def _maybe_commit(self) -> None:
        """§5.3/§5.4.2: commit the highest index stored on a majority, but only by counting
        replicas of an entry of the current term (Figure 8)."""
        matches = [self._stable_last if p == self.id else self._progress[p].match_index for p in self.peers]
        candidate = committed_index(matches)
        if candidate > self.commit_index and self.log.term_at(candidate) == self.term:
            self.commit_index = candidate
            self._needs_broadcast = True
            self._release_reads()

    def _committed_to_apply(self) -> list[Entry]:
        """Committed entries not yet handed out for applying, in order, each exactly once."""
        if self.commit_index <= self._applying:
            return []
        return self.log.slice(self._applying + 1, self.commit_index)

    # ------------------------------------------------------------------ roles

    def _soft_state(self) -> SoftState:
        return SoftState(self.role, self.term, self.leader_id)

    def _reset_randomized_timeout(self) -> None:
        ticks = self.config.election_ticks
        self._randomized_timeout = ticks + self._rng.randrange(ticks)

    def _become_follower(self, term: int, leader_id: str | None) -> None:
        was_leader = self.role is Role.LEADER
        if term > self.term:
            self.term = term
            self.voted_for = None
        self.role = Role.FOLLOWER
        self.leader_id = leader_id
        self._election_elapsed = 0
        self._reset_randomized_timeout()
        self._progress = {}
        self._votes = {}
        if was_leader:
            self._fail_pending_reads()
        self._fail_forwarded_reads()

    def _campaign(self) -> None:
        """§5.2: start an election for the next term, voting for ourselves."""
        self._fail_forwarded_reads()
        self.term += 1
        self.voted_for = self.id
        self.role = Role.CANDIDATE
        self.leader_id = None
        self._election_elapsed = 0
        self._reset_randomized_timeout()
        self._votes = {self.id: True}
        if self._won_election():
            self._become_leader()
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for peer in self._others():
            self._send(RequestVote(self.id, peer, self.term, last_index, last_term))

    def _won_election(self) -> bool:
        return sum(self._votes.values()) >= majority(len(self.peers))

    def _become_leader(self) -> None:
        """§5.2/§8: take over, and append a no-op so entries of earlier terms can commit."""
        self.role = Role.LEADER
        self.leader_id = self.id
        self._heartbeat_elapsed = 0
        self._election_elapsed = 0
        self._votes = {}
        last = self.log.last_index()
        self._progress = {p: Progress(next_index=last + 1) for p in self._others()}
        self._append_own(EntryType.NOOP, b"")

    def _append_own(self, entry_type: EntryType, data: bytes) -> tuple[int, int]:
        index = self.log.last_index() + 1
        self.log.append([Entry(self.term, index, entry_type, data)])
        self._needs_broadcast = True
        return index, self.term

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self.config.check_quorum and self._election_elapsed >= self.config.election_ticks:
            self._election_elapsed = 0
            if not self._quorum_active():
                self._become_follower(self.term, None)
                return
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._heartbeat_round()

    def _quorum_active(self) -> bool:
        active = 1
        for pr in self._progress.values():
            active += pr.recent_active
            pr.recent_active = False
        return active >= majority(len(self.peers))

    def _heartbeat_round(self) -> None:
        """Heartbeats assert leadership and carry the commit index; they also unstick
        followers whose appends or snapshot chunks were lost."""
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

    # ------------------------------------------------------------------ replication (leader)

    def _others(self) -> list[str]:
        return [p for p in self.peers if p != self.id]

    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)

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
        if self.role is not Role.LEADER:
            return
        pr = self._progress[msg.src]
        pr.recent_active = True
        if msg.read_seq > pr.read_seq_acked:
            pr.read_seq_acked = msg.read_seq
            self._release_reads()
        if msg.success:
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
        if self.role is not Role.LEADER:
            return
        pr = self._progress[msg.src]
        pr.recent_active = True
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

    # ------------------------------------------------------------------ follower and candidate

    def _answer_stale(self, msg: Message) -> None:
        """Tell a stale leader or candidate our term, so it steps down (§5.1)."""
        if isinstance(msg, AppendEntries):
            self._send(AppendEntriesReply(self.id, msg.src, self.term, False, msg.prev_log_index))
        elif isinstance(msg, InstallSnapshot):
            self._send(InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, 0))
        elif isinstance(msg, RequestVote):
            self._send(RequestVoteReply(self.id, msg.src, self.term, False))
        elif isinstance(msg, ReadIndexRequest):
            self._send(ReadIndexReply(self.id, msg.src, self.term, msg.read_id, 0, False))

    def _on_request_vote(self, msg: RequestVote) -> None:
        can_vote = self.voted_for in (None, msg.src) and self.role is not Role.LEADER
        granted = can_vote and self._log_is_up_to_date(msg.last_log_index, msg.last_log_term)
        if granted:
            self.voted_for = msg.src
            self._election_elapsed = 0
        self._send(RequestVoteReply(self.id, msg.src, self.term, granted))

    def _on_request_vote_reply(self, msg: RequestVoteReply) -> None:
        if self.role is not Role.CANDIDATE or msg.term != self.term:
            return
        self._votes[msg.src] = msg.vote_granted
        if self._won_election():
            self._become_leader()

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
                self._unstable_from = min(self._unstable_from, entry.index)
                self._stable_last = min(self._stable_last, entry.index - 1)
            log.append(entries[n:])
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

    # ------------------------------------------------------------------ linearizable reads

    def _committed_in_term(self) -> bool:
        """§6.4: a new leader knows the commit index only once an entry of its term commits."""
        return self.log.term_at(self.commit_index) == self.term

    def _leader_read(self, origin: str, read_id: int) -> None:
        self._read_seq += 1
        self._pending_reads.append(_PendingRead(origin, read_id, self.commit_index, self._read_seq))
        if len(self.peers) == 1:
            self._release_reads()
        else:
            self._read_round_pending = True

    def _release_reads(self) -> None:
        """Answer reads whose heartbeat round a majority acknowledged, once this term has
        committed an entry (so the commit index is the leader's real one)."""
        if not self._pending_reads or not self._committed_in_term():
            return
        quorum = majority(len(self.peers))
        released = 0
        for read in self._pending_reads:
            acks = 1 + sum(pr.read_seq_acked >= read.seq for pr in self._progress.values())
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


_HANDLERS = {
    RequestVote: "_on_request_vote",
    RequestVoteReply: "_on_request_vote_reply",
    AppendEntries: "_on_append_entries",
    AppendEntriesReply: "_on_append_entries_reply",
    InstallSnapshot: "_on_install_snapshot",
    InstallSnapshotReply: "_on_install_snapshot_reply",
    ReadIndexRequest: "_on_read_index_request",
    ReadIndexReply: "_on_read_index_reply",
}
