"""Elections: timeouts, PreVote, votes, and the campaign a leadership transfer orders.

A mixin of ``RaftCore``. Two availability rules sit on top of §5.2 (both on in
production, off in the classic-rule tests):

- PreVote (dissertation §9.6): a node whose election timer fires first asks whether it
  *would* win, without raising its term; only a majority of yes starts a real election. A
  node cut off by a partition therefore comes back with the term it left with and cannot
  depose a healthy leader.
- The vote lease (§4.2.3, etcd's ``inLease``): a node that heard from a current leader
  within the minimum election timeout ignores (pre-)vote requests entirely, neither voting
  nor adopting their term, unless the candidate campaigns on the leader's orders
  (``transfer``).

The deadlock of etcd-io/etcd#8334 and raft-rs#84 (a node with a higher term but a shorter
log, whose vote requests the others ignore, while it rejects their lower-term messages) is
avoided as etcd does: a stale AppendEntries or (pre-)vote request is answered with our
term (``RaftCore._answer_stale``), which makes the sender adopt it; and a pre-vote never
changes anyone's term.
"""

from __future__ import annotations

from leifdb.raft.messages import RequestVote, RequestVoteReply, Role, TimeoutNow
from leifdb.raft.quorum import majority


class ElectionMixin:
    """The election half of ``RaftCore`` (state lives on the core)."""

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_timeout and self._promotable():
            if self.config.pre_vote:
                self._pre_campaign()
            else:
                self._campaign()

    def _promotable(self) -> bool:
        """A voter of its own newest configuration may stand for election; so may a voter
        that this newest configuration, not yet known committed, removes. That is a leader
        that removed itself and restarted before the change committed: its log may be the
        only one the others can elect (they lack the entry and need its vote), so it must
        lead, outside its configuration (§4.2.2), until the change commits."""
        configs = self._configs
        if self.id in configs.current.voters:
            return True
        return (
            configs.current_index > self.commit_index
            and self.id in configs.configuration_before(configs.current_index).voters
        )

    def _in_vote_lease(self, msg: RequestVote) -> bool:
        """We heard from a current leader less than an election timeout ago: a vote
        request now comes from a disruptive server (removed, or back from a partition)."""
        return (
            self.config.vote_lease
            and not msg.transfer
            and self.leader_id is not None
            and self._election_elapsed < self.config.election_ticks
        )

    def _pre_campaign(self) -> None:
        """§9.6: ask for pre-votes in the term we would campaign in; our term stays."""
        self._fail_forwarded_reads()
        self.role = Role.CANDIDATE
        self.leader_id = None
        self._pre_voting = True
        self._election_elapsed = 0
        self._reset_randomized_timeout()
        self._votes = {self.id: True}
        if self._won_election():
            self._campaign()
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for peer in self._voters_but_me():
            self._send(RequestVote(self.id, peer, self.term + 1, last_index, last_term, pre_vote=True))

    def _campaign(self, transfer: bool = False) -> None:
        """§5.2: start an election for the next term, voting for ourselves."""
        self._fail_forwarded_reads()
        self._pre_voting = False
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
        for peer in self._voters_but_me():
            self._send(RequestVote(self.id, peer, self.term, last_index, last_term, transfer=transfer))

    def _voters_but_me(self) -> list[str]:
        return sorted(p for p in self.peers if p != self.id)

    def _won_election(self) -> bool:
        voters = self.peers
        return sum(granted for p, granted in self._votes.items() if p in voters) >= majority(len(voters))

    def _lost_election(self) -> bool:
        voters = self.peers
        refused = sum(not granted for p, granted in self._votes.items() if p in voters)
        return refused >= majority(len(voters))

    def _on_request_vote(self, msg: RequestVote) -> None:
        if msg.pre_vote:
            # Would we vote for it in its next term? Nothing changes here (§9.6).
            granted = msg.term > self.term and self._log_is_up_to_date(
                msg.last_log_index, msg.last_log_term
            )
            term = msg.term if granted else self.term
            self._send(RequestVoteReply(self.id, msg.src, term, granted, pre_vote=True))
            return
        can_vote = self.voted_for in (None, msg.src) and self.role is not Role.LEADER
        granted = can_vote and self._log_is_up_to_date(msg.last_log_index, msg.last_log_term)
        if granted:
            self.voted_for = msg.src
            self._election_elapsed = 0
        self._send(RequestVoteReply(self.id, msg.src, self.term, granted))

    def _on_request_vote_reply(self, msg: RequestVoteReply) -> None:
        if self.role is not Role.CANDIDATE or msg.pre_vote != self._pre_voting:
            return
        expected = self.term + 1 if self._pre_voting else self.term
        if msg.term != expected and not (self._pre_voting and not msg.vote_granted):
            return
        self._votes[msg.src] = msg.vote_granted
        if self._won_election():
            if self._pre_voting:
                self._campaign()
            else:
                self._become_leader()
        elif self._pre_voting and self._lost_election():
            self._become_follower(self.term, None)

    def _on_timeout_now(self, msg: TimeoutNow) -> None:
        """§3.10: our leader hands over to us: campaign at once, past any vote lease."""
        if self.role is Role.LEADER or not self._promotable():
            return
        self._campaign(transfer=True)
