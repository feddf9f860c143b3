"""Known Raft bugs, each a one-method replacement on ``RaftCore``, for proving the
simulation finds them (tests/sim/test_mutants.py).

Each mutant names the method it replaces and a replacement that differs from the real rule
in exactly the way the bug does. They reach into the core's private state on purpose: a
mutant is a deliberately broken copy of a core rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from leifdb.raft.core import RaftCore, _PendingRead
from leifdb.raft.messages import AppendEntries, Entry, HardState
from leifdb.raft.quorum import committed_index


def _no_election_restriction(self: RaftCore, last_log_index: int, last_log_term: int) -> bool:
    """Mutant 1: vote for any candidate, however stale its log (breaks §5.4.1)."""
    return True


def _commit_by_counting_any_term(self: RaftCore) -> None:
    """Mutant 2: commit whatever a majority stores, even an entry of an earlier term
    (the Figure 8 bug)."""
    matches = [self._stable_last if p == self.id else self._progress[p].match_index for p in self.peers]
    candidate = committed_index(matches)
    if candidate > self.commit_index:
        self.commit_index = candidate
        self._needs_broadcast = True
        self._release_reads()


def _vote_not_persisted(self: RaftCore) -> HardState:
    """Mutant 3: the vote is never made durable (report the previously persisted vote), so a
    restarted node may vote twice in one term."""
    return HardState(self.term, self._persisted_hard_state.voted_for, self.commit_index)


def _accepts_stale_append(self: RaftCore, msg: object) -> bool:
    """Mutant 4: AppendEntries from a lower term is accepted like a current one."""
    return isinstance(msg, AppendEntries) or msg.term >= self.term


def _reapply_last(self: RaftCore) -> list[Entry]:
    """Mutant 5: hand the last applied entry out again with the next batch."""
    if self.commit_index <= self._applying:
        return []
    start = max(self._applying, self.log.snapshot_index + 1, 1)
    return self.log.slice(start, self.commit_index)


def _read_without_confirmation(self: RaftCore, origin: str, read_id: int) -> None:
    """Mutant 6: a leader answers a linearizable read from its own commit index without a
    heartbeat round to confirm it still leads, so a deposed leader that has not noticed
    yet serves stale reads."""
    if self._committed_in_term():
        self._answer_read(origin, read_id, self.commit_index, True)
    else:
        self._read_seq += 1
        self._pending_reads.append(_PendingRead(origin, read_id, self.commit_index, self._read_seq))
        self._read_round_pending = True


@dataclass(frozen=True)
class Mutant:
    name: str
    method: str
    replacement: Callable


MUTANTS = (
    Mutant("no_election_restriction", "_log_is_up_to_date", _no_election_restriction),
    Mutant("commit_previous_term_by_counting", "_maybe_commit", _commit_by_counting_any_term),
    Mutant("vote_not_persisted", "_hard_state", _vote_not_persisted),
    Mutant("stale_term_append_accepted", "_accepts_term", _accepts_stale_append),
    Mutant("entry_applied_twice", "_committed_to_apply", _reapply_last),
    Mutant("read_without_leadership_check", "_leader_read", _read_without_confirmation),
)
