"""Membership changes as a simulated operator makes them, one at a time.

``Reconfigurer.step()`` makes one attempt at the leader: add a fresh server (empty disk)
as a learner, promote a learner, or remove a random member (voter, learner, or the
leader itself). It keeps one intent until the leader's configuration shows it done or
the leader refuses it for good; a retryable refusal (no entry of the leader's term
committed yet, another change uncommitted, a learner still catching up) is retried on the
next step, as the admin API's client would. Now and then a change that fails the
leader's quorum check is forced. All choices come from the given ``rng``.

``check_removals_learned`` is the liveness of removals: once the network heals, every
live server a committed change removed learns that it committed (applies it and stops).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from leifdb.raft.core import ConfigChangeRefused
from leifdb.raft.messages import Configuration, EntryType
from tests.raft.harness import decode_configuration
from tests.sim.cluster import Cluster
from tests.sim.invariants import Violation

ADD, PROMOTE, REMOVE = "add", "promote", "remove"


@dataclass
class Reconfigurer:
    """Drives membership changes on ``cluster``; ``max_members`` bounds voters plus
    learners, ``min_voters`` the voters a removal may leave."""

    cluster: Cluster
    rng: random.Random
    max_members: int = 6
    min_voters: int = 1
    force_rate: float = 0.2
    intent: tuple[str, str] | None = None

    def step(self) -> None:
        cluster = self.cluster
        leader = cluster.leader()
        if leader is None:
            return
        current = leader.core.configuration()
        if self.intent is None or self._done(self.intent, current):
            self.intent = self._choose(current, leader.id)
        if self.intent is None:
            return
        kind, server = self.intent
        if kind == ADD and server not in cluster.nodes:
            server = cluster.add_node().id
            self.intent = (ADD, server)
        voters, learners = _after(current, kind, server)
        result = cluster.change_membership(leader.id, voters, learners)
        if isinstance(result, ConfigChangeRefused) and not result.retryable:
            if self.rng.random() < self.force_rate:
                cluster.stats["membership_forced"] += 1
                result = cluster.change_membership(leader.id, voters, learners, force=True)
            if isinstance(result, ConfigChangeRefused) and not result.retryable:
                self.intent = None
        elif isinstance(result, tuple):
            cluster.stats[f"membership_{kind}"] += 1

    def _done(self, intent: tuple[str, str], current: Configuration) -> bool:
        kind, server = intent
        if kind == ADD:
            return server in current.members()
        if kind == PROMOTE:
            return server in current.voters or server not in current.members()
        return server not in current.members()

    def _choose(self, current: Configuration, leader: str) -> tuple[str, str] | None:
        rng = self.rng
        learners = sorted(current.learners)
        if learners and rng.random() < 0.7:
            return PROMOTE, rng.choice(learners)
        members = current.members()
        can_add = len(members) < self.max_members
        removable = sorted(
            m for m in members if m in current.learners or len(current.voters) > self.min_voters
        )
        if can_add and (not removable or rng.random() < 0.5):
            return ADD, self._spare(members)
        if not removable:
            return None
        if leader in removable and rng.random() < 0.3:
            return REMOVE, leader
        return REMOVE, rng.choice(removable)

    def _spare(self, members: frozenset[str]) -> str:
        """A server to add: one started earlier whose addition was lost (never in a
        committed configuration: an id that was removed is never reused, as a real
        node's identity refuses), or a new one."""
        ever = self._ever_committed()
        spare = sorted(
            n.id for n in self.cluster.nodes.values()
            if not n.bootstrap and not n.removed and n.up and n.id not in members and n.id not in ever
        )
        return spare[0] if spare else f"n{len(self.cluster.nodes) + 1}"

    def _ever_committed(self) -> set[str]:
        ids: set[str] = set()
        for entry in self.cluster.checker.committed:
            if entry.type is EntryType.CONFIG:
                ids |= decode_configuration(entry.data).members()
        return ids


def _after(current: Configuration, kind: str, server: str) -> tuple[set[str], set[str]]:
    voters, learners = set(current.voters), set(current.learners)
    if kind == ADD:
        learners.add(server)
    elif kind == PROMOTE:
        learners.discard(server)
        voters.add(server)
    else:
        voters.discard(server)
        learners.discard(server)
    return voters, learners


def removed_but_unaware(cluster: Cluster) -> list[str]:
    """Live servers that were members of a committed configuration (or of the bootstrap
    list) and are not in the newest committed one, yet have not applied their removal."""
    ever = set(cluster.bootstrap)
    for entry in cluster.checker.committed:
        if entry.type is EntryType.CONFIG:
            ever |= decode_configuration(entry.data).members()
    gone = ever - cluster.committed_members()
    return sorted(n.id for n in cluster.up() if n.id in gone)


def check_removals_learned(cluster: Cluster, budget_ms: float | None = None) -> None:
    """Heal the network and stop ambient faults; then every live server a committed change
    removed must learn that the change committed, and stop, within ``budget_ms`` (default:
    ten of the longest election timeouts). The leader keeps replicating to a removed
    server until it has shown it learned that; it gives up only on one silent for its
    grace period (``leifdb.raft.reconfig.DEPARTED_GRACE_TIMEOUTS``), which the caller must
    not have cut off that long. Raises a ``liveness`` ``Violation``."""
    cluster.heal()
    cluster.network.set_fault_rates()
    budget = budget_ms if budget_ms is not None else 10 * cluster.options.election_timeout_ms
    if not cluster.run_until(lambda: not removed_but_unaware(cluster), budget):
        leader = cluster.leader()
        raise cluster._annotate(
            Violation(
                f"liveness: removed servers {removed_but_unaware(cluster)} never learned that their "
                f"removal committed within {budget}ms of healing (leader {leader.id if leader else None} "
                f"replicates to {sorted(leader.core.replicating_to()) if leader else []})"
            )
        )
