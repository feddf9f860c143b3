"""Membership changes and leadership transfer: the leader's side of reconfiguration.

A mixin of ``RaftCore``. Single-server changes (dissertation §4.1): the newest configuration
in the log is the one in force (``membership.ConfigTracker``); a leader accepts one change
at a time, only after an entry of its own term committed; a removed leader hands over once
the change commits. Transfer (§3.10): no new proposals, bring the target up to date and
committed, then ``TimeoutNow``.
"""

from __future__ import annotations

from dataclasses import dataclass

from leifdb.raft.membership import ConfigChangeRefused, NotLeader, single_change
from leifdb.raft.messages import AppendEntriesReply, Configuration, Entry, EntryType, Role, TimeoutNow
from leifdb.raft.progress import Departure, Progress
from leifdb.raft.quorum import majority

#: A removed server that never shows it learned that its removal committed is given up
#: once it has been silent for an election timeout, and no sooner than this many election
#: timeouts after the leader knew the removal committed (a slow or restarting server still
#: hears of it; a dead one is not replicated to for ever).
DEPARTED_GRACE_TIMEOUTS = 10


@dataclass(frozen=True)
class PeerView:
    """What the leader knows of one member: how far its log matches, and how many ticks
    ago it last answered."""

    match_index: int
    ticks_since_contact: int
    learner: bool


class ReconfigMixin:
    """Configuration views, membership changes and transfer of ``RaftCore``."""

    def configuration(self) -> Configuration:
        return self._configs.current

    def configuration_index(self) -> int:
        """Log index of the newest configuration's CONFIG entry (0: the bootstrap list)."""
        return self._configs.current_index

    def membership_data(self) -> bytes:
        """The newest configuration as encoded in its CONFIG entry (b"" when it is still
        the bootstrap list)."""
        return self._configs.current_data

    def membership_data_at(self, index: int) -> bytes:
        """The encoded configuration in force at ``index``: stored with a snapshot there."""
        return self._configs.data_at(index)

    def peer_views(self) -> dict[str, PeerView]:
        """The leader's view of every other member (empty on a follower)."""
        current = self._configs.current
        return {
            peer: PeerView(pr.match_index, pr.contact_elapsed, peer in current.learners)
            for peer, pr in self._progress.items() if peer in current.members()
        }

    def replicating_to(self) -> frozenset[str]:
        """Servers the leader still sends to: the members and removed servers that have
        not yet learned of their removal. The node keeps transport connections to them."""
        return frozenset(self._progress)

    def _prune_departed(self) -> None:
        """Stop replicating to removed servers once their removal committed and they
        answered a message whose commit index covers it. Holding the CONFIG entry is not
        enough: the append that carried it had an older commit index, and a removed server
        stops only once it applies its removal, so the message telling it so may be the
        one that was lost. A server silent past ``DEPARTED_GRACE_TIMEOUTS`` is given up."""
        since = self._configs.current_index
        if since > self.commit_index:
            return
        members = self._configs.current.members()
        departed = [p for p in self._progress if p not in members]
        if not departed:
            return
        fresh = [p for p in departed if self._progress[p].departure is None]
        if fresh:
            # A new round: every message from now on carries a commit index of at least
            # ``since``, and followers echo the round's number (``read_seq``) in their
            # answers, so an answer can be told from one to an older message.
            self._read_seq += 1
            for peer in fresh:
                self._progress[peer].departure = Departure(since, self._read_seq)
        grace = DEPARTED_GRACE_TIMEOUTS * self.config.election_ticks
        for peer in departed:
            pr = self._progress[peer]
            departure = pr.departure
            departure.ticks += self.config.heartbeat_ticks
            silent = pr.contact_elapsed >= self.config.election_ticks
            if departure.told or (departure.ticks >= grace and silent):
                del self._progress[peer]
                self._membership_dirty = True

    def _departed_answered(self, pr: Progress, msg: AppendEntriesReply) -> None:
        """A successful answer (of a removed server) to a message sent in its departure's
        round or later, matching at least the removal: the server's commit index now
        covers its removal (the follower commits up to min(leader commit, match))."""
        departure = pr.departure
        if departure is not None and msg.read_seq >= departure.seq and msg.match_index >= departure.index:
            departure.told = True

    def _track_appended(self, entries: list[Entry]) -> None:
        if self._configs.appended(entries):
            self._configuration_changed()

    def _configuration_changed(self) -> None:
        """The newest configuration moved (appended, truncated, installed): a leader
        starts or stops replicating to the servers it adds or drops; the node learns of it
        through ``Ready.membership``."""
        self._membership_dirty = True
        if self.role is Role.LEADER:
            # A removed server keeps getting appends until it knows that the entry that
            # removes it committed (``_prune_departed``): so it learns it is out.
            # A server the change adds starts probing at the CONFIG entry just appended:
            # one past it, nothing would be sent until the next proposal.
            last = self.log.last_index()
            wanted = set(self._others())
            for peer in wanted - set(self._progress):
                self._progress[peer] = Progress(next_index=last, contact_elapsed=self.config.election_ticks)
            for peer in wanted & set(self._progress):
                self._progress[peer].departure = None  # a member again
            if self._transfer_to is not None and self._transfer_to not in self._configs.current.voters:
                self._transfer_to = None
        elif self.role is Role.CANDIDATE and not self._promotable():
            self._become_follower(self.term, None)

    def propose_membership(self, data: bytes, force: bool = False) -> tuple[int, int]:
        """Append a CONFIG entry holding the whole new membership ``data``: one server
        added as a learner, promoted, or removed (dissertation §4.1). The new configuration
        takes effect on this leader at once. Refused (``ConfigChangeRefused``) until an
        entry of this term has committed (the 2015 fix: otherwise a change of an earlier,
        uncommitted configuration can make two majorities), while another change is
        uncommitted, for a promotion of a lagging learner, and, unless ``force``, when the
        new voters the leader hears from would be no quorum."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        decode = self.config.decode_configuration
        if decode is None:
            raise ConfigChangeRefused("this core was built without a configuration decoder")
        new = decode(data)
        old = self._configs.current
        kind, server = single_change(old, new)
        self._check_change_allowed(kind, server, new, force)
        index_term = self._append_own(EntryType.CONFIG, data)
        return index_term

    def _check_change_allowed(self, kind: str, server: str, new: Configuration, force: bool) -> None:
        if not self._committed_in_term():
            raise ConfigChangeRefused(
                "the new leader has not yet committed an entry of its term", retryable=True
            )
        if self._configs.current_index > self.commit_index:
            raise ConfigChangeRefused("another membership change is not yet committed", retryable=True)
        if self._transfer_to is not None:
            raise ConfigChangeRefused("a leadership transfer is in progress", retryable=True)
        if kind == "promote":
            pr = self._progress.get(server)
            lag = self.log.last_index() - (pr.match_index if pr is not None else 0)
            if lag > self.config.max_promote_lag:
                raise ConfigChangeRefused(
                    f"learner {server!r} lags {lag} entries behind the leader (at most "
                    f"{self.config.max_promote_lag} to be promoted); retry once it caught up",
                    retryable=True,
                )
        if force or kind == "add":
            return
        heard = {p for p in new.voters if p == self.id or self._recently_heard(p)}
        if len(heard) < majority(len(new.voters)):
            raise ConfigChangeRefused(
                f"after this change only {len(heard)} of {len(new.voters)} voters would be "
                "reachable from the leader: no quorum (force to override)"
            )

    def _recently_heard(self, peer: str) -> bool:
        pr = self._progress.get(peer)
        return pr is not None and pr.contact_elapsed < self.config.election_ticks

    def transfer_leadership(self, to: str) -> None:
        """§3.10: stop taking proposals, bring ``to`` up to date, then tell it to campaign
        at once (``TimeoutNow``). Abandoned after an election timeout."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if to == self.id:
            raise ConfigChangeRefused(f"{to!r} already leads")
        if to not in self._configs.current.voters:
            raise ConfigChangeRefused(
                f"{to!r} is not a voter", unknown_member=to not in self._configs.current.members()
            )
        self._transfer_to = to
        self._transfer_elapsed = 0
        self._timeout_now_sent = False
        pr = self._progress[to]
        if not self._maybe_send_timeout_now(to):
            self._send_append(to, pr)

    def transfer_target(self) -> str | None:
        """The voter a leader that must leave would hand over to: the most caught-up one
        it has heard from recently (None when there is none)."""
        if self.role is not Role.LEADER:
            return None
        best = [
            (pr.match_index, peer) for peer, pr in self._progress.items()
            if peer in self._configs.current.voters and self._recently_heard(peer)
        ]
        return max(best)[1] if best else None

    def _maybe_send_timeout_now(self, peer: str | None) -> bool:
        """Tell the transfer target to campaign once it has our whole log and all of it
        committed: then every write this leader accepted is answered before it steps down,
        so a planned handover fails none."""
        if peer is None or self._transfer_to != peer or self.role is not Role.LEADER:
            return False
        if self._timeout_now_sent:
            return True
        last = self.log.last_index()
        if self._progress[peer].match_index < last or self.commit_index < last:
            return False
        self._send(TimeoutNow(self.id, peer, self.term))
        self._timeout_now_sent = True
        return True

    def _step_down_if_removed(self) -> None:
        """§4.2.2: a leader outside the newest configuration leads until that change
        commits, then hands over to the most caught-up voter as a transfer does (no new
        proposals; TimeoutNow once the voter has, committed, everything this leader
        accepted, so none of its writes is left unanswered) and steps down when that voter
        campaigns. With nobody to hand to, or if the handover times out, it steps down."""
        if not self._removed_and_committed() or self._transfer_to is not None:
            return
        target = self.transfer_target()
        if target is None:
            self._broadcast_append()  # the others learn the commit before we go
            self._become_follower(self.term, None)
            return
        self._transfer_to = target
        self._transfer_elapsed = 0
        self._timeout_now_sent = False
        self._needs_broadcast = True
        self._maybe_send_timeout_now(target)

    def _removed_and_committed(self) -> bool:
        return (
            self.id not in self._configs.current.voters
            and self._configs.current_index <= self.commit_index
        )
