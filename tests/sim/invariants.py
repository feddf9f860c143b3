"""Safety properties of Raft (Figure 3 of the paper), checked on a simulated cluster.

``SafetyChecker`` watches every node after every simulated event and keeps the history
the properties need (who led which term, every entry ever known committed, every
acknowledged proposal). It reads each core's log and state but never changes anything.

Checked:
  * Election Safety: at most one leader per term, over the whole history.
  * Leader Append-Only: a leader never overwrites or deletes entries of its own log.
  * Log Matching: two logs holding an entry with the same index and term are identical up
    to it.
  * Leader Completeness: every committed entry is in the log of every leader of a later
    term.
  * State Machine Safety: every node applies the same entry at each index, exactly once and
    in order; a committed prefix never changes; snapshots restore exactly that prefix.
  * No acknowledged proposal is lost (an ack is a committed entry, so the above cover it;
    ``check_acked_applied`` states it directly once the cluster has converged).
  * Election quorum: every leader won the votes of a majority of the voters of its own
    configuration (the newest in its log), counting only granted votes delivered to it
    (and its own vote only if it is one of them: a leader that removed itself may lead).
    With at most one leader per term, no two majorities ever elect in one term, whatever
    the configurations (learners never count).
  * Commit quorum: when a leader advances its commit index, a majority of the voters of
    its configuration hold that entry (in the log, durable on a crashed node, or in a
    snapshot).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

from leifdb.raft.messages import Entry, Role
from leifdb.raft.quorum import majority

if TYPE_CHECKING:
    from tests.sim.cluster import SimNode


class Violation(AssertionError):
    """A Raft property failed. The message names the property and the nodes involved."""


@dataclass
class _Shadow:
    """What the checker saw of one node incarnation at its previous check."""

    incarnation: int
    snapshot_index: int
    entries: list[Entry]
    commit_index: int
    verified_upto: int
    leader_term: int | None = None


@dataclass
class SafetyChecker:
    """History-keeping checker; call ``check(nodes)`` after every event.

    ``committed`` holds entry ``i`` at position ``i - 1``: every entry any node has applied,
    restored from a snapshot, or holds at or below its commit index. ``_bound[i - 1]`` is an
    upper bound on the term in which entry ``i`` was committed (the smallest term of any node
    that learned of it, over this and every later index): every leader of that term or a
    later one must hold it.
    """

    committed: list[Entry] = field(default_factory=list)
    acked: dict[int, Entry] = field(default_factory=dict)
    leader_of_term: dict[int, tuple[str, int]] = field(default_factory=dict)
    votes: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    _bound: list[int] = field(default_factory=list)
    _shadows: dict[str, _Shadow] = field(default_factory=dict)

    # ------------------------------------------------------------------ events from nodes

    def on_apply(self, node: "SimNode", entry: Entry) -> None:
        """``node`` is about to apply ``entry`` to its state machine."""
        expected = node.applied_index + 1
        if entry.index != expected:
            raise Violation(
                f"state machine safety: {node.id} applied index {entry.index}, expected {expected} "
                f"(applied twice, skipped or out of order)"
            )
        self._register(entry, node.core_term(), f"{node.id} applied")

    def on_restore(self, node: "SimNode", entries: Sequence[Entry]) -> None:
        """``node`` restored its state machine to ``entries`` (a snapshot)."""
        for n, entry in enumerate(entries, start=1):
            if entry.index != n:
                raise Violation(f"snapshot on {node.id} is not the contiguous prefix 1..: entry {entry}")
            self._register(entry, node.core_term(), f"{node.id} restored a snapshot holding")

    def on_vote(self, candidate: str, term: int, voter: str) -> None:
        """A granted vote of ``voter`` for ``candidate`` in ``term`` reached the candidate."""
        self.votes.setdefault((candidate, term), set()).add(voter)

    def on_ack(self, node_id: str, entry: Entry) -> None:
        """The leader ``node_id`` acknowledged ``entry`` to its client."""
        if self.committed[entry.index - 1] != entry:
            raise Violation(f"ack of {entry} by {node_id} is not the committed entry")
        self.acked[entry.index] = entry

    # ------------------------------------------------------------------ the checks

    def check(self, nodes: Iterable["SimNode"]) -> None:
        """Check every property on the live nodes; raises ``Violation``."""
        nodes = list(nodes)
        up = [n for n in nodes if n.core is not None]
        changed: list["SimNode"] = []
        for node in up:
            sh = self._shadows.get(node.id)
            was = (sh.commit_index, sh.leader_term) if sh is not None and sh.incarnation == node.incarnation else None
            if self._check_node(node):
                changed.append(node)
            if was is not None and node.core.commit_index > was[0] and (
                node.core.role is Role.LEADER or was[1] == node.core.term
            ):
                self._check_commit_quorum(node, nodes)
        for node in up:
            if node.core.role is Role.LEADER:
                self._check_leader_completeness(node)
        if changed:
            for a in changed:
                for b in up:
                    if b is not a and (b not in changed or b.id > a.id):
                        self._check_log_matching(a, b)

    def check_acked_applied(self, nodes: Iterable["SimNode"]) -> None:
        """Every acknowledged entry is applied by every live node that has caught up."""
        for node in nodes:
            if node.core is None:
                continue
            for index, entry in self.acked.items():
                if index <= node.applied_index and node.applied[index - 1] != entry:
                    raise Violation(f"acknowledged {entry} lost on {node.id}: applied {node.applied[index - 1]}")

    def forget_node(self, node_id: str) -> None:
        self._shadows.pop(node_id, None)

    # ------------------------------------------------------------------ internals

    def _register(self, entry: Entry, term: int, why: str) -> None:
        index = entry.index
        known = len(self.committed)
        if index <= known:
            if self.committed[index - 1] != entry:
                raise Violation(
                    f"state machine safety: {why} {entry}, but {self.committed[index - 1]} was "
                    f"committed at index {index}"
                )
        elif index == known + 1:
            self.committed.append(entry)
            self._bound.append(term)
        else:
            raise Violation(f"{why} {entry} but entries {known + 1}..{index - 1} were never seen committed")
        n = index - 1
        while n >= 0 and self._bound[n] > term:
            self._bound[n] = term
            n -= 1

    def _committed_upto(self, term: int) -> int:
        """Highest index that every leader of ``term`` must hold."""
        return bisect.bisect_right(self._bound, term)

    def _check_node(self, node: "SimNode") -> bool:
        """Per-node properties; returns whether the node's log changed since last time."""
        core = node.core
        log = core.log
        sh = self._shadows.get(node.id)
        changed = False
        if sh is None or sh.incarnation != node.incarnation:
            sh = _Shadow(node.incarnation, log.snapshot_index, list(log.entries), 0, log.snapshot_index)
            self._shadows[node.id] = sh
            changed = True
        elif log.snapshot_index != sh.snapshot_index or log.entries != sh.entries:
            if sh.leader_term is not None and core.role is Role.LEADER and core.term == sh.leader_term:
                self._check_append_only(node, sh)
            self._check_committed_prefix_kept(node, sh)
            sh.snapshot_index = log.snapshot_index
            sh.entries = list(log.entries)
            changed = True
        if core.role is Role.LEADER:
            if core.term not in self.leader_of_term:
                self._check_election_quorum(node)
            owner = self.leader_of_term.setdefault(core.term, (node.id, node.incarnation))
            if owner != (node.id, node.incarnation):
                raise Violation(
                    f"election safety: two leaders in term {core.term}: {owner[0]} "
                    f"(incarnation {owner[1]}) and {node.id} (incarnation {node.incarnation})"
                )
            sh.leader_term = core.term
        else:
            sh.leader_term = None
        if core.commit_index < sh.commit_index:
            raise Violation(f"{node.id} commit index went back from {sh.commit_index} to {core.commit_index}")
        sh.commit_index = core.commit_index
        if core.commit_index > log.last_index():
            raise Violation(f"{node.id} commit index {core.commit_index} is past its log ({log.last_index()})")
        start = max(sh.verified_upto, log.snapshot_index)
        for index in range(start + 1, core.commit_index + 1):
            self._register(log.entry(index), core.term, f"{node.id} holds at or below its commit index")
        sh.verified_upto = max(sh.verified_upto, core.commit_index)
        return changed

    def _check_election_quorum(self, node: "SimNode") -> None:
        core = node.core
        voters = core.configuration().voters
        won = (self.votes.get((node.id, core.term), set()) | {node.id}) & voters
        if len(won) < majority(len(voters)):
            raise Violation(
                f"election quorum: {node.id} leads term {core.term} with the votes of {sorted(won)}, "
                f"not a majority of its voters {sorted(voters)}"
            )

    def _check_commit_quorum(self, leader: "SimNode", nodes: list["SimNode"]) -> None:
        core = leader.core
        index = core.commit_index
        term = core.log.term_at(index)
        voters = core.configuration().voters
        seen = {n.id: _holds(n, index, term) for n in nodes if n.id in voters}
        holders = sorted(v for v, held in seen.items() if held)
        unknown = sum(v not in seen or seen[v] is None for v in voters)
        if len(holders) + unknown < majority(len(voters)):
            raise Violation(
                f"commit quorum: leader {leader.id} (term {core.term}) committed index {index} "
                f"(term {term}) held only by {holders} of its voters {sorted(voters)}"
            )

    def _check_append_only(self, node: "SimNode", sh: _Shadow) -> None:
        log = node.core.log
        offset = log.snapshot_index - sh.snapshot_index
        if offset < 0:
            raise Violation(f"leader append-only: {node.id}'s snapshot moved back")
        old = sh.entries[offset:]
        if log.entries[: len(old)] != old:
            for n, entry in enumerate(old):
                now = log.entries[n] if n < len(log.entries) else None
                if now != entry:
                    raise Violation(
                        f"leader append-only: leader {node.id} (term {node.core.term}) replaced {entry} "
                        f"with {now}"
                    )

    def _check_committed_prefix_kept(self, node: "SimNode", sh: _Shadow) -> None:
        """Entries the checker already verified as committed on this node must not change."""
        log = node.core.log
        upto = sh.verified_upto
        lo = max(log.snapshot_index, sh.snapshot_index)
        if upto <= lo:
            return
        old = sh.entries[lo - sh.snapshot_index : upto - sh.snapshot_index]
        new = log.entries[lo - log.snapshot_index : upto - log.snapshot_index]
        if old != new:
            raise Violation(
                f"committed entries changed on {node.id} in {lo + 1}..{upto}: {old[-3:]} became {new[-3:]}"
            )

    def _check_leader_completeness(self, node: "SimNode") -> None:
        core = node.core
        log = core.log
        must = self._committed_upto(core.term)
        if must > log.last_index():
            raise Violation(
                f"leader completeness: leader {node.id} (term {core.term}) lacks committed entries "
                f"{log.last_index() + 1}..{must}: {self.committed[log.last_index()]}"
            )
        lo = log.snapshot_index
        if must <= lo:
            return
        ours = log.entries[: must - lo]
        theirs = self.committed[lo:must]
        if ours != theirs:
            for a, b in zip(ours, theirs):
                if a != b:
                    raise Violation(
                        f"leader completeness: leader {node.id} (term {core.term}) holds {a} where "
                        f"{b} was committed"
                    )

    def _check_log_matching(self, a: "SimNode", b: "SimNode") -> None:
        la, lb = a.core.log, b.core.log
        lo = max(la.snapshot_index, lb.snapshot_index) + 1
        hi = min(la.last_index(), lb.last_index())
        i = hi
        while i >= lo and la.term_at(i) != lb.term_at(i):
            i -= 1
        if i < lo:
            return
        sa = la.entries[lo - la.snapshot_index - 1 : i - la.snapshot_index]
        sb = lb.entries[lo - lb.snapshot_index - 1 : i - lb.snapshot_index]
        if sa != sb:
            for x, y in zip(sa, sb):
                if x != y:
                    raise Violation(
                        f"log matching: {a.id} and {b.id} agree on entry {i} (term {la.term_at(i)}) "
                        f"but differ earlier: {x} vs {y}"
                    )


def _holds(node: "SimNode", index: int, term: int | None) -> bool | None:
    """Whether ``node`` has entry ``index`` of ``term`` in its log (on disk when it is down)
    or in a snapshot past it; None when that cannot be seen (a down node without a
    ``storage`` the checker can read)."""
    if node.core is not None:
        log = node.core.log
        return log.snapshot_index >= index or log.term_at(index) == term
    storage = getattr(node, "storage", None)
    if storage is None:
        return None
    state = storage.load()
    if state.snapshot.last_included_index >= index:
        return True
    return any(e.index == index and e.term == term for e in state.entries)
