"""A minimal synchronous driver for core unit tests: no clock, no Twisted, no faults.

The hypothesis simulation in tests/sim is the heavy machinery; this is for short, exact
scenarios named after the paper's rules. ``membership`` and ``decode_configuration`` are
the CONFIG entry codec the membership tests (and the simulation) give the cores.
"""

from __future__ import annotations

import random
from typing import Callable, Iterable

from leifdb.raft.core import Config, PersistentState, RaftCore
from leifdb.raft.messages import Configuration, Entry, Member, Role
from leifdb.raft.storage import MemoryStorage
from leifdb.wire import decode_membership, encode_membership


def membership(voters: Iterable[str], learners: Iterable[str] = ()) -> bytes:
    """The data of a CONFIG entry: the whole member list, learners flagged."""
    members = [Member(v, raft_address="127.0.0.1:1") for v in sorted(voters)]
    members += [Member(x, raft_address="127.0.0.1:1", learner=True) for x in sorted(learners)]
    return encode_membership(members)


def decode_configuration(data: bytes) -> Configuration:
    return Configuration.of(decode_membership(data))


def configuration_data(config: Configuration) -> bytes:
    return membership(config.voters, config.learners)


class Net:
    """Cores named ``ids`` (bootstrap voters; ``learners`` listen only) exchanging messages
    through a FIFO queue, with per-link cuts. ``join`` adds a node with empty storage that
    waits to be added by a CONFIG entry."""

    def __init__(
        self,
        ids: list[str],
        election_ticks: int = 10,
        seed: int = 1,
        learners: tuple[str, ...] = (),
        pre_vote: bool = False,
        vote_lease: bool = False,
        check_quorum: bool = True,
        max_promote_lag: int = 1000,
    ) -> None:
        self.ids = list(ids) + list(learners)
        self.voters = tuple(ids)
        self.learners = tuple(learners)
        self.joined: set[str] = set()
        self.options = dict(
            election_ticks=election_ticks, pre_vote=pre_vote, vote_lease=vote_lease,
            check_quorum=check_quorum, max_promote_lag=max_promote_lag,
        )
        self.seed = seed
        self.storage = {i: MemoryStorage() for i in self.ids}
        self.applied: dict[str, list[Entry]] = {i: [] for i in self.ids}
        self.memberships: dict[str, list[bytes]] = {i: [] for i in self.ids}
        self.cores: dict[str, RaftCore] = {}
        self.inflight: list = []
        self.cut: set[tuple[str, str]] = set()
        self.sent: list = []
        for i in self.ids:
            self.cores[i] = self._make(i, seed)
            self.drain(i)

    def _make(self, node_id: str, seed: int, state: PersistentState | None = None) -> RaftCore:
        joining = node_id in self.joined
        config = Config(
            node_id,
            () if joining else self.voters,
            learners=() if joining else self.learners,
            decode_configuration=decode_configuration,
            **self.options,
        )
        if state is None:
            state = self.storage[node_id].load()
        return RaftCore(config, state, random.Random(f"{seed}-{node_id}"))

    def join(self, node_id: str) -> RaftCore:
        """Start a fresh node with an empty data directory, not yet a member."""
        self.joined.add(node_id)
        self.ids.append(node_id)
        self.storage[node_id] = MemoryStorage()
        self.applied[node_id] = []
        self.memberships[node_id] = []
        self.cores[node_id] = self._make(node_id, self.seed)
        return self.cores[node_id]

    def drain(self, node_id: str) -> None:
        core = self.cores[node_id]
        while core.has_ready():
            ready = core.ready()
            store = self.storage[node_id]
            store.append(ready.entries)
            if ready.hard_state is not None:
                store.set_hard_state(ready.hard_state)
            store.sync()
            for msg in ready.messages:
                self.sent.append(msg)
                if (msg.src, msg.dst) not in self.cut:
                    self.inflight.append(msg)
            self.applied[node_id].extend(ready.committed)
            if ready.membership is not None:
                self.memberships[node_id].append(ready.membership)
            core.advance(ready)

    def deliver_all(self, limit: int = 10_000) -> None:
        for node_id in self.ids:
            self.drain(node_id)
        steps = 0
        while self.inflight and steps < limit:
            msg = self.inflight.pop(0)
            if msg.dst in self.cores and (msg.src, msg.dst) not in self.cut:
                self.cores[msg.dst].step(msg)
                self.drain(msg.dst)
            steps += 1

    def deliver_until(self, predicate: Callable[[], bool], limit: int = 10_000) -> bool:
        """Deliver queued messages one at a time until ``predicate()`` holds."""
        for node_id in self.ids:
            self.drain(node_id)
        for _ in range(limit):
            if predicate():
                return True
            if not self.inflight:
                return False
            msg = self.inflight.pop(0)
            if msg.dst in self.cores and (msg.src, msg.dst) not in self.cut:
                self.cores[msg.dst].step(msg)
                self.drain(msg.dst)
        return predicate()

    def tick(self, node_id: str, times: int = 1) -> None:
        for _ in range(times):
            self.cores[node_id].tick()
            self.drain(node_id)

    def tick_all(self, times: int = 1) -> None:
        """Every node ticks, delivering everything after each round."""
        for _ in range(times):
            for node_id in self.ids:
                self.tick(node_id)
            self.deliver_all()

    def rounds(self, node_id: str, times: int = 6) -> None:
        """``times`` heartbeat rounds of ``node_id``, everything delivered after each: long
        enough for a leader to re-probe a follower whose appends were lost."""
        for _ in range(times):
            self.tick(node_id)
            self.deliver_all()

    def isolate(self, node_id: str) -> None:
        for other in self.ids:
            if other != node_id:
                self.cut |= {(node_id, other), (other, node_id)}

    def heal(self) -> None:
        self.cut.clear()

    def elect(self, node_id: str) -> None:
        """Time out ``node_id`` alone and deliver until it is leader."""
        core = self.cores[node_id]
        for _ in range(10 * core.config.election_ticks):
            if core.role is Role.LEADER:
                break
            self.tick(node_id)
            if core.role is Role.CANDIDATE:
                self.deliver_all()
        self.deliver_all()
        assert core.role is Role.LEADER, core.status()

    def leaders(self) -> list[str]:
        return [i for i, c in self.cores.items() if c.role is Role.LEADER]

    def restart(self, node_id: str, seed: int = 2) -> None:
        self.storage[node_id].crash()
        self.cores[node_id] = self._make(node_id, seed)
        self.applied[node_id] = []
