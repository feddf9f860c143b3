"""The pure Raft core: messages and ticks go in, a ``Ready`` comes out.

No I/O, no clock, no Twisted. The caller (``leifdb.node`` in production, the simulation in
tests) turns time into ``tick()`` calls, feeds received messages to ``step()``, and drains
``ready()``: persist, send, apply, then ``advance()``. Because nothing here blocks or reads a
clock, a hypothesis test can drive thousands of crashes and partitions in seconds.

``RaftCore`` is split by concern: elections (``election``), membership changes and
transfer (``reconfig``), the leader's replication
(``replication``), ReadIndex (``reads``) and configurations (``membership``) are mixins and
helpers; this module holds the inputs, the ``Ready`` output, roles, commit and the
follower's side of AppendEntries and InstallSnapshot.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from leifdb.raft.election import ElectionMixin
from leifdb.raft.follower import FollowerMixin
from leifdb.raft.log import LogInvariantError, RaftLog
from leifdb.raft.membership import ConfigChangeRefused, ConfigTracker, ConfigurationDecoder, NotLeader
from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Configuration,
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
    TimeoutNow,
)
from leifdb.raft.progress import Progress, ProgressState
from leifdb.raft.quorum import committed_index, majority
from leifdb.raft.reads import ReadsMixin, _PendingRead
from leifdb.raft.reconfig import PeerView, ReconfigMixin
from leifdb.raft.replication import ReplicationMixin

__all__ = [
    "Config", "ConfigChangeRefused", "NotLeader", "PeerView", "PersistentState", "RaftCore",
    "Status", "_PendingRead",
]


@dataclass(frozen=True)
class Config:
    """Static configuration of one core.

    ``peers`` lists the bootstrap voters, this node included, used until the log or a
    snapshot holds a configuration; empty for a node that joins an existing cluster (it
    neither campaigns nor counts until its log makes it a voter). ``decode_configuration``
    turns a CONFIG entry's data into a ``Configuration`` (the node passes the protobuf
    decoder; the core stays free of it). The election timeout is drawn uniformly from
    ``[election_ticks, 2 * election_ticks)`` ticks on every reset; the leader sends
    heartbeats every ``heartbeat_ticks``. ``pre_vote`` and ``vote_lease`` are the
    availability rules of ``leifdb.raft.election``. A learner is promoted only when it lags
    the leader's log by at most ``max_promote_lag`` entries.
    """

    node_id: str
    peers: tuple[str, ...]
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    check_quorum: bool = True
    max_entries_per_append: int = 512
    max_append_bytes: int = 4 * 1024 * 1024
    max_inflight_appends: int = 8
    learners: tuple[str, ...] = ()
    pre_vote: bool = False
    vote_lease: bool = False
    decode_configuration: ConfigurationDecoder | None = None
    max_promote_lag: int = 1000


@dataclass
class PersistentState:
    """What a node recovered from its storage at start: the hard state, the newest snapshot's
    metadata (zeros if none) and membership (b"" if none), and the log entries after it."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: SnapshotMeta = field(default_factory=SnapshotMeta)
    entries: list[Entry] = field(default_factory=list)
    snapshot_membership: bytes = b""


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
    voter: bool = True


class RaftCore(ElectionMixin, FollowerMixin, ReplicationMixin, ReadsMixin, ReconfigMixin):
    """One Raft participant (Figure 2 of the Raft paper, plus ReadIndex, snapshots,
    single-server membership changes, PreVote and leadership transfer).

    Inputs: ``tick``, ``step``, ``propose``, ``propose_membership``, ``transfer_leadership``,
    ``read_index``, ``compact``, ``snapshot_installed``, ``report_unreachable``. Output:
    ``ready`` / ``advance``. All randomness comes from ``rng``, so a seed replays a run.
    """

    def __init__(self, config: Config, state: PersistentState, rng: random.Random) -> None:
        if config.peers and config.node_id not in config.peers + config.learners:
            raise ValueError(f"{config.node_id!r} is not one of the peers {config.peers}")
        self.config = config
        self.id = config.node_id
        self._rng = rng
        hs = state.hard_state
        snap = state.snapshot
        self.log = RaftLog(snap.last_included_index, snap.last_included_term, list(state.entries))
        self._configs = ConfigTracker.start(
            config.decode_configuration,
            Configuration(frozenset(config.peers), frozenset(config.learners)),
            snap.last_included_index, state.snapshot_membership, state.entries,
        )
        self._membership_dirty = bool(self._configs.current_data)
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
        self._pre_voting = False
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
        self._transfer_to: str | None = None
        self._transfer_elapsed = 0
        self._timeout_now_sent = False
        if self._sole_voter():
            # Nobody else can vote: waiting out an election timeout would only delay.
            self._campaign()

    # ------------------------------------------------------------------ membership views

    @property
    def peers(self) -> tuple[str, ...]:
        """The voters of the newest configuration in the log (committed or not)."""
        return tuple(sorted(self._configs.current.voters))

    def leader_contact_ticks(self) -> int | None:
        """Ticks since we last heard from the leader (0 on the leader; None if none)."""
        if self.role is Role.LEADER:
            return 0
        return self._election_elapsed if self.leader_id is not None else None

    def _sole_voter(self) -> bool:
        return self._configs.current.voters == frozenset({self.id})

    def _others(self) -> list[str]:
        """Everyone the leader replicates to: voters and learners but itself."""
        return sorted(p for p in self._configs.current.members() if p != self.id)

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        """One unit of time has passed (election and heartbeat timers count ticks)."""
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def step(self, msg: Message) -> None:
        """Handle one received message. Messages for another ``dst``, from ourselves, or
        of a stale term (other than those answered to make a stale sender step down) are
        ignored. A (pre-)vote request within the vote lease is ignored before its term
        can disturb ours; a pre-vote and a granted pre-vote reply never change a term."""
        if msg.dst != self.id or msg.src == self.id:
            return
        if msg.term > self.term:
            if isinstance(msg, RequestVote):
                if self._in_vote_lease(msg):
                    return
                if not msg.pre_vote:
                    self._become_follower(msg.term, None)
            elif isinstance(msg, RequestVoteReply) and msg.pre_vote and msg.vote_granted:
                pass
            else:
                leader = msg.src if isinstance(msg, (AppendEntries, InstallSnapshot, TimeoutNow)) else None
                self._become_follower(msg.term, leader)
        if not self._accepts_term(msg):
            self._answer_stale(msg)
            return
        handler = _HANDLERS.get(type(msg))
        if handler is not None:
            getattr(self, handler)(msg)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a command to the leader's log; returns its ``(index, term)``.

        Raises ``NotLeader`` on a follower or candidate, and while the leader hands over to
        another node. Everything proposed before the next ``ready()`` goes out as one append.
        The proposal's outcome: the committed entry at ``index`` has ``term`` (applied), or a
        different term / leadership lost (unknown)."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if self._transfer_to is not None:
            raise NotLeader(None)
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
        self._configs.compacted(index)
        self.snapshot_meta = meta

    def snapshot_installed(self, meta: SnapshotMeta, ok: bool, membership: bytes = b"") -> None:
        """The caller persisted and verified (``ok``) the snapshot whose last chunk the core
        emitted and restored its state machine (and read ``membership``) from it; the core
        now replaces its log with it and tells the leader (or, if not ``ok``, asks the
        leader to start over)."""
        if self._awaiting_install != meta:
            return
        self._awaiting_install = None
        leader = self._receive_from
        self._receiving = None
        self._receive_offset = 0
        index = meta.last_included_index
        if ok:
            self.log.compact_to(index, meta.last_included_term)
            if self._configs.installed(index, membership, self.log.entries):
                self._configuration_changed()
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
            or self._membership_dirty
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
        if self._membership_dirty:
            ready.membership = self._configs.current_data
            self._membership_dirty = False
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
            self._maybe_send_timeout_now(self._transfer_to)

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
            voter=self.id in self._configs.current.voters,
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
        """§5.3/§5.4.2: commit the highest index stored on a majority of the voters, but
        only by counting replicas of an entry of the current term (Figure 8). A leader that
        is being removed counts only the others."""
        matches = [self._stable_last if p == self.id else self._progress[p].match_index for p in self.peers]
        candidate = committed_index(matches)
        if candidate > self.commit_index and self.log.term_at(candidate) == self.term:
            self.commit_index = candidate
            self._needs_broadcast = True
            self._release_reads()
            self._step_down_if_removed()

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
        self._pre_voting = False
        self._transfer_to = None
        self._election_elapsed = 0
        self._reset_randomized_timeout()
        self._progress = {}
        self._votes = {}
        if was_leader:
            self._fail_pending_reads()
        self._fail_forwarded_reads()

    def _become_leader(self) -> None:
        """§5.2/§8: take over, and append a no-op so entries of earlier terms can commit."""
        self.role = Role.LEADER
        self.leader_id = self.id
        self._pre_voting = False
        self._heartbeat_elapsed = 0
        self._election_elapsed = 0
        self._votes = {}
        last = self.log.last_index()
        # Not heard from until it answers (the strict reconfiguration check counts on it).
        never = self.config.election_ticks
        peers = set(self._others()) | self._removed_by_newest_change()
        self._progress = {p: Progress(next_index=last + 1, contact_elapsed=never) for p in sorted(peers)}
        self._append_own(EntryType.NOOP, b"")

    def _removed_by_newest_change(self) -> set[str]:
        """The server the newest configuration change removed: the leader that committed
        it may have gone before telling it so, and a removed server stops only once it
        learns that (``_prune_departed`` lets it go once it answered, or after a grace)."""
        index = self._configs.current_index
        if index == 0:
            return set()
        before = self._configs.configuration_before(index).members()
        return set(before) - set(self._configs.current.members()) - {self.id}

    def _append_own(self, entry_type: EntryType, data: bytes) -> tuple[int, int]:
        index = self.log.last_index() + 1
        entry = Entry(self.term, index, entry_type, data)
        self.log.append([entry])
        if entry_type is EntryType.CONFIG:
            self._track_appended([entry])
        self._needs_broadcast = True
        return index, self.term

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        for pr in self._progress.values():
            pr.contact_elapsed += 1
        if self._transfer_to is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self.config.election_ticks:
                self._transfer_to = None
                if self._removed_and_committed():
                    self._become_follower(self.term, None)
                    return
        if self.config.check_quorum and self._election_elapsed >= self.config.election_ticks:
            self._election_elapsed = 0
            if not self._quorum_active():
                self._become_follower(self.term, None)
                return
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._heartbeat_round()

    def _quorum_active(self) -> bool:
        """Check-quorum: a leader that has not heard from a majority of voters within an
        election timeout steps down (a partitioned leader stops serving reads and lets
        the majority's side elect without waiting on it)."""
        voters = self.peers
        active = 1 if self.id in voters else 0
        for peer, pr in self._progress.items():
            if peer in voters:
                active += pr.recent_active
            pr.recent_active = False
        return active >= majority(len(voters))

    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)

    # ------------------------------------------------------------------ follower and candidate

    def _answer_stale(self, msg: Message) -> None:
        """Tell a stale leader or candidate our term, so it steps down (§5.1)."""
        if isinstance(msg, AppendEntries):
            self._send(AppendEntriesReply(self.id, msg.src, self.term, False, msg.prev_log_index))
        elif isinstance(msg, InstallSnapshot):
            self._send(InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, 0))
        elif isinstance(msg, RequestVote):
            self._send(RequestVoteReply(self.id, msg.src, self.term, False, pre_vote=msg.pre_vote))
        elif isinstance(msg, ReadIndexRequest):
            self._send(ReadIndexReply(self.id, msg.src, self.term, msg.read_id, 0, False))


_HANDLERS = {
    RequestVote: "_on_request_vote",
    RequestVoteReply: "_on_request_vote_reply",
    AppendEntries: "_on_append_entries",
    AppendEntriesReply: "_on_append_entries_reply",
    InstallSnapshot: "_on_install_snapshot",
    InstallSnapshotReply: "_on_install_snapshot_reply",
    ReadIndexRequest: "_on_read_index_request",
    ReadIndexReply: "_on_read_index_reply",
    TimeoutNow: "_on_timeout_now",
}
