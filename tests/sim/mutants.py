"""Known Raft bugs, each breaking exactly one rule, for proving the tests find them
(tests/sim/test_mutants.py).

Every rule of the Raft paper's Figure 2, of the InstallSnapshot receiver (Figure 13) and
the four steps of ReadIndex (dissertation §6.4) has a mutant here: a deliberately broken
copy of the one method that enforces the rule (of ``RaftCore``, or of the service's
``Waits`` where the rule is the service's: acknowledging a write once applied, serving a
read once its index applied), differing from it in exactly the way the bug does. The two
mutants that move a write to a later ``Ready`` (``follower_acks_before_persist``,
``vote_persisted_after_reply``) keep what they hold back in an attribute of the core they
run in. Mutants reach into private state on purpose.

Each mutant names the rule it breaks and what kills it (``caught_by``): the seeded hunt
(``HUNT``; the properties that count as finding it are in ``expect``) and/or test functions
``"module:function"`` that pass on the real code and must fail with a plain assertion (or a
property ``Violation``) under the mutant. The README's table of rules lists them by rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from twisted.internet.defer import Deferred, succeed

from leifdb.kv.commands import ApplyResult
from leifdb.raft.core import _HANDLERS, ConfigChangeRefused, NotLeader, RaftCore, _PendingRead
from leifdb.raft.election import ElectionMixin
from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Configuration,
    Entry,
    EntryType,
    HardState,
    InstallSnapshot,
    InstallSnapshotReply,
    ReadIndexReply,
    Ready,
    RequestVote,
    RequestVoteReply,
    Role,
    SnapshotChunk,
    SnapshotMeta,
)
from leifdb.raft.progress import Progress, ProgressState
from leifdb.raft.quorum import committed_index, majority
from leifdb.service.wait import Waits

#: Violation messages that name a Raft safety property (a mutant found by one of these was
#: found by the checker, not by an exception out of the core).
SAFETY = (
    "election safety",
    "leader append-only",
    "log matching",
    "leader completeness",
    "state machine safety",
    "committed entries changed",
    "acknowledged",
    "linearizable read",
    "election quorum",
    "commit quorum",
)
#: A healed cluster with a majority up failed to commit, or to bring every node up to date.
LIVENESS = ("liveness",)

HUNT = "hunt"

_REAL = {name: RaftCore.__dict__[name] for name in ("_answer_stale", "ready")}
_REPLIES = (AppendEntriesReply, RequestVoteReply, InstallSnapshotReply, ReadIndexReply)


# ---------------------------------------------------------------------- RequestVote receiver


def _stale_vote_granted(self: RaftCore, msg: object) -> None:
    """RV1: a RequestVote of an older term is not refused: the vote is granted in the
    candidate's (old) term whenever its log is up to date, so two candidates of one old term
    can both collect a majority."""
    if isinstance(msg, RequestVote):
        granted = self._log_is_up_to_date(msg.last_log_index, msg.last_log_term)
        self._send(RequestVoteReply(self.id, msg.src, msg.term, granted))
        return
    _REAL["_answer_stale"](self, msg)


def _second_vote_in_term(self: RaftCore, msg: RequestVote) -> None:
    """RV2 (votedFor): a follower grants a vote even though it already voted for another
    candidate in this term."""
    can_vote = self.role is not Role.LEADER
    granted = can_vote and self._log_is_up_to_date(msg.last_log_index, msg.last_log_term)
    if granted:
        self.voted_for = msg.src
        self._election_elapsed = 0
    self._send(RequestVoteReply(self.id, msg.src, self.term, granted))


def _no_election_restriction(self: RaftCore, last_log_index: int, last_log_term: int) -> bool:
    """RV2 (up-to-date log, §5.4.1): vote for any candidate, however stale its log."""
    return True


def _follower_ignores_vote_requests(self: RaftCore, msg: RequestVote) -> None:
    """Followers rule 1: RequestVote is never answered."""


def _vote_grant_keeps_timer(self: RaftCore, msg: RequestVote) -> None:
    """Followers rule 2 (granting a vote restarts the election timer): the timer runs on."""
    can_vote = self.voted_for in (None, msg.src) and self.role is not Role.LEADER
    granted = can_vote and self._log_is_up_to_date(msg.last_log_index, msg.last_log_term)
    if granted:
        self.voted_for = msg.src
    self._send(RequestVoteReply(self.id, msg.src, self.term, granted))


# ---------------------------------------------------------------------- AppendEntries receiver


def _accepts_stale_append(self: RaftCore, msg: object) -> bool:
    """AE1: AppendEntries from a lower term is accepted like a current one."""
    return isinstance(msg, AppendEntries) or msg.term >= self.term


def _append_reply_with(
    self: RaftCore, msg: AppendEntries, check_prev_term: bool, bound_by_last: bool
) -> AppendEntriesReply:
    """``RaftCore._append_reply`` with one of its two checks switchable (see the mutants)."""
    log = self.log
    if msg.prev_log_index < self.commit_index:
        match = self.commit_index
        tail = [e for e in msg.entries if e.index > match]
        if tail:
            match = self._merge_entries(tail)
        self._advance_commit(min(msg.leader_commit, log.last_index() if bound_by_last else match))
        return AppendEntriesReply(self.id, msg.src, self.term, True, match, read_seq=msg.read_seq)
    prev_term = log.term_at(msg.prev_log_index)
    mismatch = prev_term != msg.prev_log_term if check_prev_term else prev_term is None
    if mismatch:
        if prev_term is None:
            conflict_index, conflict_term = log.last_index() + 1, 0
        else:
            conflict_index = log.first_index_of_term(msg.prev_log_index)
            conflict_term = prev_term
        return AppendEntriesReply(
            self.id, msg.src, self.term, False, msg.prev_log_index, conflict_index, conflict_term, msg.read_seq
        )
    match = msg.prev_log_index
    if msg.entries:
        match = self._merge_entries(list(msg.entries))
    self._advance_commit(min(msg.leader_commit, log.last_index() if bound_by_last else match))
    return AppendEntriesReply(self.id, msg.src, self.term, True, match, read_seq=msg.read_seq)


def _prev_term_not_checked(self: RaftCore, msg: AppendEntries) -> AppendEntriesReply:
    """AE2: the consistency check looks only for an entry at prevLogIndex, not at its term,
    so entries are appended after a prefix that differs from the leader's."""
    return _append_reply_with(self, msg, check_prev_term=False, bound_by_last=False)


def _commit_beyond_last_new_entry(self: RaftCore, msg: AppendEntries) -> AppendEntriesReply:
    """AE5: commitIndex = min(leaderCommit, last index of the *log*) instead of the last
    entry this append verified, so a follower commits its own unverified stale tail."""
    return _append_reply_with(self, msg, check_prev_term=True, bound_by_last=True)


def _conflict_not_truncated(self: RaftCore, entries: list[Entry]) -> int:
    """AE3: an existing entry that conflicts with the leader's is kept (only entries past
    the end are appended), yet the whole batch is acknowledged."""
    log = self.log
    new = [e for e in entries if e.index > log.last_index()]
    log.append(new)
    return entries[-1].index


def _truncate_without_conflict(self: RaftCore, entries: list[Entry]) -> int:
    """AE3 ("delete the existing entry *that conflicts*"): the log is cut at the first
    entry of every append, even when it matches, so a late or duplicated append erases
    entries the follower already acknowledged."""
    log = self.log
    first = entries[0].index
    if first <= log.last_index():
        log.truncate_from(first)
        self._unstable_from = min(self._unstable_from, first)
        self._stable_last = min(self._stable_last, first - 1)
    log.append(entries)
    return entries[-1].index


def _batch_tail_dropped(self: RaftCore, entries: list[Entry]) -> int:
    """AE4: only the first new entry of a batch is appended, the rest are acknowledged
    without being stored."""
    log = self.log
    for n, entry in enumerate(entries):
        ours = log.term_at(entry.index)
        if ours == entry.term:
            continue
        if ours is not None:
            log.truncate_from(entry.index)
            self._unstable_from = min(self._unstable_from, entry.index)
            self._stable_last = min(self._stable_last, entry.index - 1)
        log.append(entries[n : n + 1])
        break
    return entries[-1].index


# ---------------------------------------------------------------------- persistence


def _vote_not_persisted(self: RaftCore) -> HardState:
    """Persist votedFor: the vote is never made durable (the previously persisted vote is
    reported), so a restarted node may vote twice in one term."""
    return HardState(self.term, self._persisted_hard_state.voted_for, self.commit_index)


def _term_not_persisted(self: RaftCore) -> bool:
    """Persist currentTerm: the hard state is written only when the vote changes, so a
    term learned from a leader (vote still None) is lost in a crash and the restarted node
    accepts a deposed leader's appends again."""
    return self.voted_for != self._persisted_hard_state.voted_for


def _follower_acks_before_persist(self: RaftCore) -> Ready:
    """Persist the log before replying: a follower's new entries leave in the Ready *after*
    the one that carries its successful reply (they sit in ``_mutant_withheld`` meanwhile),
    so a crash between the two loses entries the leader counted."""
    withheld: list[Entry] = getattr(self, "_mutant_withheld", [])
    ready = _REAL["ready"](self)
    log = self.log
    first_new = ready.entries[0].index if ready.entries else log.last_index() + 1
    kept = [e for e in withheld if e.index < first_new and log.term_at(e.index) == e.term]
    acked = any(isinstance(m, AppendEntriesReply) and m.success for m in ready.messages)
    if self.role is Role.FOLLOWER and acked and ready.entries:
        self._mutant_withheld = kept + ready.entries
        self._unstable_from = ready.entries[-1].index + 1
        ready.entries = []
    else:
        self._mutant_withheld = []
        ready.entries = kept + ready.entries
    return ready


def _vote_persisted_after_reply(self: RaftCore) -> Ready:
    """Persist votedFor *before* replying: a granted vote leaves in one Ready and the hard
    state that records it only in the next (the core believes it written meanwhile), so a
    crash between the two forgets the vote."""
    held: HardState | None = getattr(self, "_mutant_held_state", None)
    ready = _REAL["ready"](self)
    self._mutant_held_state = None
    granted = any(isinstance(m, RequestVoteReply) and m.vote_granted for m in ready.messages)
    if ready.hard_state is not None and granted:
        self._mutant_held_state = ready.hard_state
        self._persisted_hard_state = ready.hard_state
        ready.hard_state = None
    elif ready.hard_state is None:
        ready.hard_state = held
    return ready


def _leader_counts_unpersisted_entries(self: RaftCore) -> None:
    """Persist before counting (§10.2.1, the leader's own log): the leader counts entries it
    has not yet persisted toward a majority."""
    matches = [self.log.last_index() if p == self.id else self._progress[p].match_index for p in self.peers]
    candidate = committed_index(matches)
    if candidate > self.commit_index and self.log.term_at(candidate) == self.term:
        self.commit_index = candidate
        self._needs_broadcast = True
        self._release_reads()
        self._step_down_if_removed()


# ---------------------------------------------------------------------- all servers


def _reapply_last(self: RaftCore) -> list[Entry]:
    """All servers 1: hand the last applied entry out again with the next batch."""
    if self.commit_index <= self._applying:
        return []
    start = max(self._applying, self.log.snapshot_index + 1, 1)
    return self.log.slice(start, self.commit_index)


def _apply_uncommitted(self: RaftCore) -> list[Entry]:
    """All servers 1 (apply only up to commitIndex): every entry in the log is applied as
    soon as it is there, committed or not."""
    last = self.log.last_index()
    if last <= self._applying:
        return []
    return self.log.slice(self._applying + 1, last)


def _step_ignoring_higher_term(self: RaftCore, msg: object, kinds: tuple[type, ...]) -> None:
    """``RaftCore.step`` where a higher term in a message of one of ``kinds`` is not adopted."""
    if msg.dst != self.id or msg.src not in self.peers or msg.src == self.id:
        return
    if msg.term > self.term and not isinstance(msg, kinds):
        leader = msg.src if isinstance(msg, (AppendEntries, InstallSnapshot)) else None
        self._become_follower(msg.term, leader)
    if not self._accepts_term(msg):
        self._answer_stale(msg)
        return
    handler = _HANDLERS.get(type(msg))
    if handler is not None:
        getattr(self, handler)(msg)


def _higher_term_reply_ignored(self: RaftCore, msg: object) -> None:
    """All servers 2 (responses): a reply carrying a higher term does not make the node a
    follower of that term, so a deposed leader keeps leading."""
    _step_ignoring_higher_term(self, msg, _REPLIES)


def _higher_term_request_ignored(self: RaftCore, msg: object) -> None:
    """All servers 2 (requests): an AppendEntries, RequestVote, InstallSnapshot or read
    request of a higher term is handled without adopting that term."""
    requests = tuple(kind for kind in _HANDLERS if kind not in _REPLIES)
    _step_ignoring_higher_term(self, msg, requests)


# ---------------------------------------------------------------------- followers and candidates


def _tick_without_timeout(self: RaftCore, candidates_retry: bool) -> None:
    if self.role is Role.LEADER:
        self._tick_leader()
        return
    self._election_elapsed += 1
    allowed = self.role is Role.CANDIDATE if candidates_retry else self.role is Role.FOLLOWER
    if allowed and self._election_elapsed >= self._randomized_timeout:
        self._campaign()


def _follower_never_times_out(self: RaftCore) -> None:
    """Followers rule 2: a follower whose election timeout elapses stays a follower."""
    _tick_without_timeout(self, candidates_retry=True)


def _candidate_never_retries(self: RaftCore) -> None:
    """Candidates rule 4: a candidate whose election times out waits for ever instead of
    starting a new election."""
    _tick_without_timeout(self, candidates_retry=False)


def _follow_without_timer_reset(self: RaftCore, leader: str) -> None:
    """Followers rule 2 (AppendEntries from the current leader restarts the election
    timer): the timer is not reset, so followers depose a healthy leader."""
    if self.role is not Role.FOLLOWER or self.leader_id != leader:
        self._become_follower(self.term, leader)


def _candidate_ignores_leader(self: RaftCore, leader: str) -> None:
    """Candidates rule 3: AppendEntries from the leader of the candidate's term does not
    make it a follower."""
    if self.role is Role.FOLLOWER and self.leader_id != leader:
        self._become_follower(self.term, leader)
    self._election_elapsed = 0


def _campaign_with(
    self: RaftCore, new_term: bool = True, vote_for_self: bool = True, ask_all: bool = True, reset_timer: bool = True
) -> None:
    """``RaftCore._campaign`` with one of its steps switchable (see the mutants)."""
    self._fail_forwarded_reads()
    if new_term:
        self.term += 1
        self.voted_for = None
    self.voted_for = self.id if vote_for_self else self.voted_for
    self.role = Role.CANDIDATE
    self.leader_id = None
    if reset_timer:
        self._election_elapsed = 0
        self._reset_randomized_timeout()
    self._votes = {self.id: True}
    if self._won_election():
        self._become_leader()
        return
    last_index, last_term = self.log.last_index(), self.log.last_term()
    peers = self._others() if ask_all else self._others()[:1]
    for peer in peers:
        self._send(RequestVote(self.id, peer, self.term, last_index, last_term))


def _campaign_in_same_term(self: RaftCore) -> None:
    """Candidates rule 1 (increment currentTerm): the election runs in the current term,
    where the candidate (and others) may already have voted."""
    _campaign_with(self, new_term=False)


def _campaign_without_own_vote(self: RaftCore) -> None:
    """Candidates rule 1 (vote for self): the candidate counts its own vote but does not
    record it, so it can still grant its vote to a rival of the same term."""
    _campaign_with(self, vote_for_self=False)


def _campaign_asks_one_peer(self: RaftCore) -> None:
    """Candidates rule 1 (send RequestVote to all other servers): only the first peer is
    asked."""
    _campaign_with(self, ask_all=False)


def _campaign_keeps_timer(self: RaftCore) -> None:
    """Candidates rule 1 (reset election timer): the timer is not restarted, so the
    candidate gives up on its election at the very next tick."""
    _campaign_with(self, reset_timer=False)


def _won_by_replies(self: RaftCore) -> bool:
    """Candidates rule 2: a candidate counts replies, not granted votes."""
    return len(self._votes) >= majority(len(self.peers))


# ---------------------------------------------------------------------- leaders


def _heartbeat_round_without_heartbeats(self: RaftCore) -> None:
    """Leaders rule 1 (heartbeats during idle periods): the heartbeat round sends only
    entries, so an idle leader falls silent."""
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
        self._send_append(peer, pr)


def _entries_never_sent(self: RaftCore, peer: str, pr: Progress) -> bool:
    """Leaders rule 3 (send entries from nextIndex): followers get heartbeats only."""
    return False


def _on_append_reply_with(self: RaftCore, msg: AppendEntriesReply, optimistic_match: bool, backtrack: bool) -> None:
    """``RaftCore._on_append_entries_reply`` with one of its two updates switchable."""
    if self.role is not Role.LEADER:
        return
    pr = self._progress[msg.src]
    pr.recent_active = True
    if msg.read_seq > pr.read_seq_acked:
        pr.read_seq_acked = msg.read_seq
        self._release_reads()
    if msg.success:
        match = max(msg.match_index, pr.next_index - 1) if optimistic_match else msg.match_index
        if match > pr.match_index:
            pr.match_index = match
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
    if not backtrack:
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


def _match_index_from_next_index(self: RaftCore, msg: AppendEntriesReply) -> None:
    """Leaders rule 3 (matchIndex from the reply): on any success the leader takes
    everything it has sent (nextIndex - 1) as replicated, not what the follower
    acknowledged, so an append lost in flight counts toward a commit."""
    _on_append_reply_with(self, msg, optimistic_match=True, backtrack=True)


def _no_backtrack_on_reject(self: RaftCore, msg: AppendEntriesReply) -> None:
    """Leaders rule 3 (decrement nextIndex and retry): a rejection is ignored, so a
    follower with a conflicting log never catches up."""
    _on_append_reply_with(self, msg, optimistic_match=False, backtrack=False)


def _become_leader_trusting_followers(self: RaftCore) -> None:
    """Leaders' volatile state (matchIndex starts at 0): a new leader assumes every
    follower already holds its whole log."""
    self.role = Role.LEADER
    self.leader_id = self.id
    self._pre_voting = False
    self._heartbeat_elapsed = 0
    self._election_elapsed = 0
    self._votes = {}
    last = self.log.last_index()
    never = self.config.election_ticks
    self._progress = {
        p: Progress(next_index=last + 1, match_index=last, contact_elapsed=never) for p in self._others()
    }
    self._append_own(EntryType.NOOP, b"")


def _become_leader_without_noop(self: RaftCore) -> None:
    """Leaders 1 / §8: a new leader starts its term without appending (and sending) an
    entry of its own, so nothing tells it which earlier entries are committed."""
    self.role = Role.LEADER
    self.leader_id = self.id
    self._pre_voting = False
    self._heartbeat_elapsed = 0
    self._election_elapsed = 0
    self._votes = {}
    last = self.log.last_index()
    never = self.config.election_ticks
    self._progress = {p: Progress(next_index=last + 1, contact_elapsed=never) for p in self._others()}
    self._needs_broadcast = True


def _propose_without_append(self: RaftCore, data: bytes) -> tuple[int, int]:
    """Leaders 2 (append the command to the local log): the leader hands out the next
    index for the command but never appends it."""
    if self.role is not Role.LEADER:
        raise NotLeader(self.leader_id)
    return self.log.last_index() + 1, self.term


def _proposal_acked_on_receipt(self: Waits, index: int, term: int) -> Deferred:
    """Leaders 2 (respond after the entry is applied): a proposal is answered as soon as
    the leader appended it."""
    return succeed(ApplyResult(ok=True, revision=index))


def _commit_by_counting_any_term(self: RaftCore) -> None:
    """Leaders rule 4, current-term restriction: commit whatever a majority stores, even an
    entry of an earlier term (the Figure 8 bug)."""
    matches = [self._stable_last if p == self.id else self._progress[p].match_index for p in self.peers]
    candidate = committed_index(matches)
    if candidate > self.commit_index:
        self.commit_index = candidate
        self._needs_broadcast = True
        self._release_reads()
        self._step_down_if_removed()


def _commit_on_half(self: RaftCore) -> None:
    """Leaders rule 4, majority: an index stored on half the servers (rounded down: the
    leader alone in a 3-node cluster) is taken as committed."""
    matches = [self._stable_last if p == self.id else self._progress[p].match_index for p in self.peers]
    ordered = sorted(matches, reverse=True)
    candidate = ordered[max(0, len(ordered) // 2 - 1)]
    if candidate > self.commit_index and self.log.term_at(candidate) == self.term:
        self.commit_index = candidate
        self._needs_broadcast = True
        self._release_reads()
        self._step_down_if_removed()


# ---------------------------------------------------------------------- ReadIndex (§6.4)


def _read_before_own_term_commit(self: RaftCore) -> bool:
    """ReadIndex step 1: a new leader serves reads before an entry of its own term has
    committed, from a commit index that may lag behind its predecessor's."""
    return True


def _read_index_from_applied(self: RaftCore) -> None:
    """ReadIndex step 2: the read index is the leader's applied index, not its commit
    index (they differ while a commit has not been applied yet)."""
    if not self._pending_reads or not self._committed_in_term():
        return
    quorum = majority(len(self.peers))
    released = 0
    for read in self._pending_reads:
        acks = 1 + sum(pr.read_seq_acked >= read.seq for pr in self._progress.values())
        if acks < quorum:
            break
        self._answer_read(read.origin, read.read_id, self.applied, True)
        released += 1
    del self._pending_reads[:released]


def _read_without_confirmation(self: RaftCore, origin: str, read_id: int) -> None:
    """ReadIndex step 3: a leader answers a linearizable read from its own commit index
    without a heartbeat round to confirm it still leads, so a deposed leader that has not
    noticed yet serves stale reads."""
    if self._committed_in_term():
        self._answer_read(origin, read_id, self.commit_index, True)
    else:
        self._read_seq += 1
        self._pending_reads.append(_PendingRead(origin, read_id, self.commit_index, self._read_seq))
        self._read_round_pending = True


def _read_served_before_apply(self: Waits, read_id: int, read_index: int, applied_index: int) -> None:
    """ReadIndex step 4: a confirmed read is served at once, before the state machine has
    applied its read index."""
    d = self._reads.pop(read_id, None)
    if d is not None:
        d.callback(None)


# ---------------------------------------------------------------------- InstallSnapshot receiver


def _accepts_stale_snapshot(self: RaftCore, msg: object) -> bool:
    """Figure 13 rule 1: an InstallSnapshot chunk from a lower term is handled like a
    current one."""
    return isinstance(msg, InstallSnapshot) or msg.term >= self.term


def _on_install_snapshot_with(
    self: RaftCore,
    msg: InstallSnapshot,
    *,
    skip_covered: bool = True,
    start_at_zero: bool = True,
    check_offset: bool = True,
    ack_chunks: bool = True,
    done_on_receipt: bool = False,
    keep_partial: bool = False,
) -> None:
    """``RaftCore._on_install_snapshot`` with one of its checks switchable."""
    if self.role is Role.LEADER:
        return
    self._follow(msg.src)
    meta = SnapshotMeta(msg.last_included_index, msg.last_included_term, msg.checksum, msg.total_size)
    if skip_covered and msg.last_included_index <= self.commit_index:
        self._send(InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, 0, done=True))
        return
    if self._awaiting_install is not None:
        return
    if keep_partial and self._receiving is not None and self._receiving != meta:
        self._send(InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, self._receive_offset))
        return
    if self._receiving != meta:
        if msg.offset != 0 and start_at_zero:
            self._send(InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, 0))
            return
        self._receiving = meta
        self._receive_offset = 0 if start_at_zero else msg.offset
    self._receive_from = msg.src
    if check_offset and msg.offset != self._receive_offset:
        self._send(InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, self._receive_offset))
        return
    self._snapshot_chunks.append(SnapshotChunk(meta, msg.offset, msg.data, msg.done))
    self._receive_offset = msg.offset + len(msg.data)
    if msg.done:
        self._awaiting_install = meta
        if done_on_receipt:
            self._send(InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, 0, done=True))
    elif ack_chunks:
        self._send(InstallSnapshotReply(self.id, msg.src, self.term, msg.last_included_index, self._receive_offset))


def _snapshot_started_mid_stream(self: RaftCore, msg: InstallSnapshot) -> None:
    """Figure 13 rule 2: a new snapshot starts at whatever offset its first chunk to arrive
    has, not only at offset 0."""
    _on_install_snapshot_with(self, msg, start_at_zero=False)


def _chunk_offset_not_checked(self: RaftCore, msg: InstallSnapshot) -> None:
    """Figure 13 rule 3: a chunk is written wherever it says, even when it repeats or skips
    data (a duplicated or reordered chunk)."""
    _on_install_snapshot_with(self, msg, check_offset=False)


def _chunk_not_acknowledged(self: RaftCore, msg: InstallSnapshot) -> None:
    """Figure 13 rule 4: a chunk that is not the last gets no reply."""
    _on_install_snapshot_with(self, msg, ack_chunks=False)


def _older_snapshot_installed(self: RaftCore, msg: InstallSnapshot) -> None:
    """Figure 13 rule 5: a snapshot older than what the follower has committed (and may
    have applied) is installed anyway, rolling the state machine back."""
    _on_install_snapshot_with(self, msg, skip_covered=False)


def _partial_snapshot_kept(self: RaftCore, msg: InstallSnapshot) -> None:
    """Figure 13 rule 5 (discard a partial snapshot): while one transfer is incomplete,
    the first chunk of another snapshot is refused, so a leader that compacted again can
    never finish sending."""
    _on_install_snapshot_with(self, msg, keep_partial=True)


def _done_before_install(self: RaftCore, msg: InstallSnapshot) -> None:
    """Figure 13 rules 5-8 ("save ... reset state machine ... reply"): the last chunk is
    acknowledged as installed on receipt, before the snapshot was saved and verified."""
    _on_install_snapshot_with(self, msg, done_on_receipt=True)


def _installed_with(
    self: RaftCore, meta: SnapshotMeta, ok: bool, keep: str, move_applied: bool, membership: bytes = b""
) -> None:
    """``RaftCore.snapshot_installed`` with its log rule (``keep``: "matching" is the real
    one, "none" drops every later entry, "all" keeps them even after a conflict) and its
    state-machine reset switchable."""
    if self._awaiting_install != meta:
        return
    self._awaiting_install = None
    leader = self._receive_from
    self._receiving = None
    self._receive_offset = 0
    index = meta.last_included_index
    if ok:
        later = [e for e in self.log.entries if e.index > index]
        self.log.compact_to(index, meta.last_included_term)
        if keep == "none":
            self.log.entries = []
        elif keep == "all":
            self.log.entries = later
        if self._configs.installed(index, membership, self.log.entries):
            self._configuration_changed()
        self.snapshot_meta = meta
        self.commit_index = max(self.commit_index, index)
        if move_applied:
            self.applied = self._applying = max(self.applied, index)
        last = self.log.last_index()
        self._stable_last = min(max(self._stable_last, index), last)
        self._unstable_from = min(max(self._unstable_from, index + 1), last + 1)
    if leader is not None:
        self._send(InstallSnapshotReply(self.id, leader, self.term, index, 0, done=ok))


def _log_after_snapshot_discarded(self: RaftCore, meta: SnapshotMeta, ok: bool, membership: bytes = b"") -> None:
    """Figure 13 rule 6: entries after the snapshot are dropped even when the log holds
    the snapshot's last entry (same index and term), losing entries the follower had
    acknowledged."""
    _installed_with(self, meta, ok, keep="none", move_applied=True, membership=membership)


def _conflicting_log_kept(self: RaftCore, meta: SnapshotMeta, ok: bool, membership: bytes = b"") -> None:
    """Figure 13 rule 7: entries after the snapshot are kept even though the log's entry
    at the snapshot's index has another term (they do not follow the snapshot)."""
    _installed_with(self, meta, ok, keep="all", move_applied=True, membership=membership)


def _applied_not_reset(self: RaftCore, meta: SnapshotMeta, ok: bool, membership: bytes = b"") -> None:
    """Figure 13 rule 8: the core does not take the snapshot as its applied state (the
    state machine was reset from it, but the core still counts the old applied index)."""
    _installed_with(self, meta, ok, keep="matching", move_applied=False, membership=membership)


# ---------------------------------------------------------------------- membership and elections (issue 11)


def _change_before_own_term_commit(self: RaftCore, kind: str, server: str, new: Configuration, force: bool) -> None:
    """Membership, the 2015 fix: a new leader accepts a configuration change before an
    entry of its own term committed (the single-server algorithm as first published: a
    change of a configuration an earlier leader had already replaced, uncommitted, makes
    two majorities that need not overlap)."""
    if self._configs.current_index > self.commit_index:
        raise ConfigChangeRefused("another membership change is not yet committed", retryable=True)
    if self._transfer_to is not None:
        raise ConfigChangeRefused("a leadership transfer is in progress", retryable=True)
    if kind == "promote":
        pr = self._progress.get(server)
        lag = self.log.last_index() - (pr.match_index if pr is not None else 0)
        if lag > self.config.max_promote_lag:
            raise ConfigChangeRefused(f"learner {server!r} lags {lag} entries", retryable=True)
    if force or kind == "add":
        return
    heard = {p for p in new.voters if p == self.id or self._recently_heard(p)}
    if len(heard) < majority(len(new.voters)):
        raise ConfigChangeRefused(f"only {len(heard)} of {len(new.voters)} voters reachable")


def _learner_counted_toward_quorum(self: RaftCore) -> None:
    """Learners: the leader counts a learner's acknowledgement toward the majority that
    commits an entry (and the majority's size), as if it were a voter."""
    members = sorted(self._configs.current.members())
    matches = [self._stable_last if p == self.id else self._progress[p].match_index for p in members]
    candidate = committed_index(matches)
    if candidate > self.commit_index and self.log.term_at(candidate) == self.term:
        self.commit_index = candidate
        self._needs_broadcast = True
        self._release_reads()
        self._step_down_if_removed()


def _pre_vote_bumps_term(self: RaftCore) -> None:
    """PreVote (§9.6): the pre-candidate raises its own term before asking, so a node cut
    off by a partition comes back with a higher term and deposes the leader."""
    self.term += 1
    self.voted_for = None
    ElectionMixin._pre_campaign(self)


def _vote_lease_ignored(self: RaftCore, msg: RequestVote) -> bool:
    """Vote lease (§4.2.3): a server that just heard from its leader still answers (and
    adopts the term of) a disruptive candidate's vote requests."""
    return False


def _departed_pruned_once_it_holds_its_removal(self: RaftCore) -> None:
    """Removals: the leader stops replicating to a removed server as soon as it holds the
    CONFIG entry that removes it (or has been silent for one election timeout), though the
    append that carried it had an older commit index: if the message carrying the newer one
    is lost, the server never learns that it was removed and never stops."""
    members = self._configs.current.members()
    since = self._configs.current_index
    if since > self.commit_index:
        return
    for peer in [p for p in self._progress if p not in members]:
        pr = self._progress[peer]
        if pr.match_index >= since or pr.contact_elapsed >= self.config.election_ticks:
            del self._progress[peer]
            self._membership_dirty = True


# ---------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Mutant:
    """One broken rule: ``target.method`` replaced by ``replacement``.

    ``caught_by`` lists what kills it: ``HUNT`` (the seeded hunt of test_mutants.py, on
    the cluster shape named ``hunt``, must report a violation whose message starts with
    one of ``expect``) and/or test functions ``"module:function"`` that pass on the real
    code and must fail under the mutant."""

    name: str
    method: str
    replacement: Callable
    rule: str
    caught_by: tuple[str, ...] = (HUNT,)
    expect: tuple[str, ...] = SAFETY
    hunt: str = "default"
    target: type = RaftCore


_UNIT = "tests.raft.test_rule_checks"
_CORE = "tests.raft.test_core_rules"
_SNAP = "tests.raft.test_snapshot_receiver"
_PAPER = "tests.sim.test_paper_scenarios"
_SCRIPT = "tests.sim.test_rule_scenarios"
_MEMBERS = "tests.raft.test_membership"
_PREVOTE = "tests.raft.test_prevote"
_RECONFIG = "tests.sim.test_membership_scenarios"

MUTANTS = (
    # The first six, kept in their order (other tests pick them by position or name).
    Mutant("no_election_restriction", "_log_is_up_to_date", _no_election_restriction,
           "RequestVote 2: candidate's log at least as up-to-date"),
    Mutant("commit_previous_term_by_counting", "_maybe_commit", _commit_by_counting_any_term,
           "Leaders 4: only an entry of the current term commits by counting"),
    Mutant("vote_not_persisted", "_hard_state", _vote_not_persisted, "Persistent votedFor"),
    Mutant("stale_term_append_accepted", "_accepts_term", _accepts_stale_append, "AppendEntries 1"),
    Mutant("entry_applied_twice", "_committed_to_apply", _reapply_last,
           "All servers 1: apply each entry once, in order"),
    Mutant("read_without_leadership_check", "_leader_read", _read_without_confirmation, "ReadIndex 3"),
    # RequestVote receiver
    Mutant("stale_term_vote_granted", "_answer_stale", _stale_vote_granted, "RequestVote 1"),
    Mutant("second_vote_in_term", "_on_request_vote", _second_vote_in_term,
           "RequestVote 2: votedFor null or candidateId"),
    # AppendEntries receiver
    Mutant("prev_term_not_checked", "_append_reply", _prev_term_not_checked, "AppendEntries 2"),
    Mutant("conflict_not_truncated", "_merge_entries", _conflict_not_truncated, "AppendEntries 3: delete on conflict",
           caught_by=(f"{_CORE}:test_consistency_check_rejects_with_conflict_hint_and_truncates_conflicts",)),
    Mutant("truncate_without_conflict", "_merge_entries", _truncate_without_conflict,
           "AppendEntries 3: delete only on conflict",
           caught_by=(f"{_SCRIPT}:test_late_duplicate_append_does_not_erase_acknowledged_entries",)),
    Mutant("batch_tail_dropped", "_merge_entries", _batch_tail_dropped, "AppendEntries 4",
           caught_by=(HUNT, f"{_UNIT}:test_follower_appends_every_new_entry_of_a_batch"), hunt="batched_snapshots"),
    Mutant("commit_beyond_last_new_entry", "_append_reply", _commit_beyond_last_new_entry, "AppendEntries 5"),
    # Persistent state, durable before responding
    Mutant("term_not_persisted", "_vote_changed", _term_not_persisted, "Persistent currentTerm",
           caught_by=(HUNT, f"{_SCRIPT}:test_term_learned_from_a_leader_survives_a_crash")),
    Mutant("follower_acks_before_persist", "ready", _follower_acks_before_persist, "Persistent log[] (follower)",
           caught_by=(HUNT, f"{_SCRIPT}:test_follower_crash_in_fsync_window_after_replying_loses_nothing")),
    Mutant("vote_persisted_after_reply", "ready", _vote_persisted_after_reply, "Persistent votedFor, before replying",
           caught_by=(HUNT, f"{_PAPER}:test_request_vote_receiver_grants_one_vote_per_term_even_across_restart")),
    Mutant("leader_counts_unpersisted_entries", "_maybe_commit", _leader_counts_unpersisted_entries,
           "Persistent log[] (leader, §10.2.1)",
           caught_by=(f"{_UNIT}:test_leader_counts_itself_only_for_entries_it_has_persisted",)),
    # All servers
    Mutant("apply_uncommitted", "_committed_to_apply", _apply_uncommitted,
           "All servers 1: apply only up to commitIndex"),
    Mutant("higher_term_reply_ignored", "step", _higher_term_reply_ignored, "All servers 2: term in a response",
           caught_by=(f"{_CORE}:test_higher_term_makes_leader_step_down",)),
    Mutant("higher_term_request_ignored", "step", _higher_term_request_ignored, "All servers 2: term in a request",
           caught_by=(HUNT, f"{_PAPER}:test_all_servers_convert_to_follower_on_higher_term"), expect=LIVENESS),
    # Followers
    Mutant("follower_ignores_vote_requests", "_on_request_vote", _follower_ignores_vote_requests,
           "Followers 1: respond to RPCs", expect=LIVENESS),
    Mutant("follower_never_times_out", "tick", _follower_never_times_out, "Followers 2: time out, become candidate",
           expect=LIVENESS),
    Mutant("leader_contact_keeps_timer", "_follow", _follow_without_timer_reset,
           "Followers 2: AppendEntries from the leader restarts the timer",
           caught_by=(f"{_PAPER}:test_leader_heartbeats_suppress_elections",)),
    Mutant("vote_grant_keeps_timer", "_on_request_vote", _vote_grant_keeps_timer,
           "Followers 2: granting a vote restarts the timer",
           caught_by=(f"{_UNIT}:test_granting_a_vote_restarts_the_election_timer",)),
    # Candidates
    Mutant("campaign_in_same_term", "_campaign", _campaign_in_same_term, "Candidates 1: increment currentTerm",
           caught_by=(HUNT, f"{_CORE}:test_election_timeout_makes_follower_a_candidate_that_votes_for_itself"),
           expect=LIVENESS),
    Mutant("campaign_without_own_vote", "_campaign", _campaign_without_own_vote, "Candidates 1: vote for self"),
    Mutant("campaign_asks_one_peer", "_campaign", _campaign_asks_one_peer, "Candidates 1: RequestVote to all others",
           caught_by=(f"{_CORE}:test_election_timeout_makes_follower_a_candidate_that_votes_for_itself",)),
    Mutant("campaign_keeps_timer", "_campaign", _campaign_keeps_timer, "Candidates 1: reset election timer",
           caught_by=(HUNT, f"{_UNIT}:test_candidate_waits_a_whole_election_timeout_before_trying_again"),
           expect=LIVENESS),
    Mutant("won_by_replies_not_grants", "_won_election", _won_by_replies, "Candidates 2: majority of votes"),
    Mutant("candidate_ignores_leader", "_follow", _candidate_ignores_leader, "Candidates 3",
           caught_by=(f"{_PAPER}:test_candidate_steps_down_on_append_entries_from_leader_of_its_term",)),
    Mutant("candidate_never_retries", "tick", _candidate_never_retries, "Candidates 4", expect=LIVENESS),
    # Leaders
    Mutant("leader_silent_when_idle", "_heartbeat_round", _heartbeat_round_without_heartbeats, "Leaders 1",
           caught_by=(f"{_PAPER}:test_leader_heartbeats_suppress_elections",)),
    Mutant("leader_without_noop", "_become_leader", _become_leader_without_noop,
           "Leaders 1 (§8): an entry of the new term at once",
           caught_by=(f"{_SCRIPT}:test_new_leader_with_lagging_commit_index_waits_for_its_own_term",)),
    Mutant("proposal_not_appended", "propose", _propose_without_append,
           "Leaders 2: append the command to the local log",
           caught_by=(f"{_CORE}:test_single_node_cluster_elects_itself_and_commits",
                      f"{_CORE}:test_committed_entries_apply_in_order_exactly_once_everywhere")),
    Mutant("proposal_acked_on_receipt", "proposed", _proposal_acked_on_receipt,
           "Leaders 2: respond after the entry is applied",
           caught_by=("tests.service.test_wait:test_a_proposal_fires_with_the_result_of_its_entry",), target=Waits),
    Mutant("entries_never_sent", "_send_append", _entries_never_sent, "Leaders 3: send entries from nextIndex",
           expect=LIVENESS),
    Mutant("match_index_from_next_index", "_on_append_entries_reply", _match_index_from_next_index,
           "Leaders 3: on success update matchIndex (from the reply)",
           caught_by=(f"{_SCRIPT}:test_append_lost_in_flight_is_not_counted_as_replicated",)),
    Mutant("no_backtrack_on_reject", "_on_append_entries_reply", _no_backtrack_on_reject,
           "Leaders 3: on rejection decrement nextIndex and retry", expect=LIVENESS),
    Mutant("match_index_starts_at_last", "_become_leader", _become_leader_trusting_followers,
           "Leaders: matchIndex initialized to 0 on election",
           caught_by=(f"{_UNIT}:test_new_leader_brings_a_follower_with_a_shorter_log_up_to_date",)),
    Mutant("commit_on_half", "_maybe_commit", _commit_on_half, "Leaders 4: a majority of matchIndex"),
    # ReadIndex (§6.4)
    Mutant("read_before_own_term_commit", "_committed_in_term", _read_before_own_term_commit, "ReadIndex 1",
           caught_by=(f"{_SCRIPT}:test_new_leader_with_lagging_commit_index_waits_for_its_own_term",)),
    Mutant("read_index_from_applied", "_release_reads", _read_index_from_applied, "ReadIndex 2",
           caught_by=(f"{_SCRIPT}:test_new_leader_with_lagging_commit_index_waits_for_its_own_term",)),
    Mutant("read_served_before_apply", "read_confirmed", _read_served_before_apply, "ReadIndex 4",
           caught_by=("tests.service.test_wait:test_a_confirmed_read_waits_for_the_state_machine_to_apply_its_index",),
           target=Waits),
    # InstallSnapshot receiver (Figure 13)
    Mutant("stale_term_snapshot_accepted", "_accepts_term", _accepts_stale_snapshot, "InstallSnapshot 1",
           caught_by=(f"{_SNAP}:test_chunk_from_an_older_term_is_refused_with_the_current_term",)),
    Mutant("snapshot_started_mid_stream", "_on_install_snapshot", _snapshot_started_mid_stream, "InstallSnapshot 2",
           caught_by=(f"{_SNAP}:test_a_new_snapshot_starts_only_at_offset_zero",)),
    Mutant("chunk_offset_not_checked", "_on_install_snapshot", _chunk_offset_not_checked, "InstallSnapshot 3",
           caught_by=(f"{_SNAP}:test_a_chunk_is_taken_only_at_the_expected_offset",)),
    Mutant("chunk_not_acknowledged", "_on_install_snapshot", _chunk_not_acknowledged, "InstallSnapshot 4",
           caught_by=(f"{_SNAP}:test_each_chunk_but_the_last_is_acknowledged_with_the_next_offset",)),
    Mutant("older_snapshot_installed", "_on_install_snapshot", _older_snapshot_installed, "InstallSnapshot 5",
           caught_by=(f"{_SNAP}:test_a_snapshot_older_than_the_commit_index_is_not_installed",)),
    Mutant("partial_snapshot_kept", "_on_install_snapshot", _partial_snapshot_kept,
           "InstallSnapshot 5: discard a partial snapshot",
           caught_by=(HUNT, f"{_SNAP}:test_a_newer_snapshot_replaces_a_partial_one"), expect=LIVENESS,
           hunt="batched_snapshots"),
    Mutant("done_before_install", "_on_install_snapshot", _done_before_install,
           "InstallSnapshot 5-8: reply only once saved and installed",
           caught_by=(f"{_SNAP}:test_the_last_chunk_is_answered_only_once_installed",)),
    Mutant("log_after_snapshot_discarded", "snapshot_installed", _log_after_snapshot_discarded, "InstallSnapshot 6",
           caught_by=(f"{_SNAP}:test_entries_following_the_snapshots_last_entry_are_kept",)),
    Mutant("conflicting_log_kept", "snapshot_installed", _conflicting_log_kept, "InstallSnapshot 7",
           caught_by=(f"{_SNAP}:test_a_log_that_conflicts_with_the_snapshot_is_discarded",)),
    Mutant("applied_not_reset", "snapshot_installed", _applied_not_reset, "InstallSnapshot 8",
           caught_by=(f"{_SNAP}:test_an_installed_snapshot_becomes_the_applied_state",)),
    # Membership changes, PreVote and the vote lease (issue 11)
    Mutant("config_change_before_own_term_commit", "_check_change_allowed", _change_before_own_term_commit,
           "Membership (2015): no change before an entry of the leader's term committed",
           caught_by=(f"{_RECONFIG}:test_a_new_leader_changes_no_configuration_before_committing_an_entry_of_its_term",
                      f"{_MEMBERS}:test_a_new_leader_accepts_no_change_before_an_entry_of_its_term_committed")),
    Mutant("learner_counted_toward_quorum", "_maybe_commit", _learner_counted_toward_quorum,
           "Learners: never counted toward a majority",
           caught_by=(HUNT, f"{_MEMBERS}:test_a_learners_acknowledgement_does_not_count_toward_commit"),
           hunt="membership"),
    Mutant("departed_pruned_once_it_holds_its_removal", "_prune_departed", _departed_pruned_once_it_holds_its_removal,
           "Removals: replicate to a removed server until it learned that its removal committed",
           caught_by=(f"{_RECONFIG}:test_a_removed_server_learns_that_its_removal_committed_when_that_news_is_lost",
                      f"{_RECONFIG}:test_removed_servers_learn_of_their_removal_among_message_faults",
                      f"{_MEMBERS}:test_a_removed_server_gets_appends_until_it_learns_its_removal_committed")),
    Mutant("pre_vote_bumps_term", "_pre_campaign", _pre_vote_bumps_term, "PreVote: a pre-vote changes no term",
           caught_by=(f"{_PREVOTE}:test_pre_vote_keeps_a_partitioned_node_from_deposing_the_leader",)),
    Mutant("vote_lease_ignored", "_in_vote_lease", _vote_lease_ignored,
           "Vote lease: ignore vote requests while hearing from a leader",
           caught_by=(f"{_PREVOTE}:test_with_the_vote_lease_a_returning_node_with_an_equal_log_is_ignored",)),
)


def by_name(name: str) -> Mutant:
    return next(m for m in MUTANTS if m.name == name)
