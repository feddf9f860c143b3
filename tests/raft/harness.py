"""A minimal synchronous driver for core unit tests: no clock, no Twisted, no faults.

The hypothesis simulation in tests/sim is the heavy machinery; this is for short, exact
scenarios named after the paper's rules.
"""

from __future__ import annotations

import random

from leifdb.raft.core import Config, PersistentState, RaftCore
from leifdb.raft.messages import Entry, Role
from leifdb.raft.storage import MemoryStorage


class Net:
    def __init__(self, ids: list[str], election_ticks: int = 10, seed: int = 1) -> None:
        self.ids = ids
        self.storage = {i: MemoryStorage() for i in ids}
        self.applied: dict[str, list[Entry]] = {i: [] for i in ids}
        self.cores = {i: self._make(i, election_ticks, seed) for i in ids}
        self.inflight: list = []
        self.cut: set[tuple[str, str]] = set()
        self.sent: list = []

    def _make(self, node_id: str, election_ticks: int, seed: int) -> RaftCore:
        config = Config(node_id, tuple(self.ids), election_ticks=election_ticks)
        state: PersistentState = self.storage[node_id].load()
        return RaftCore(config, state, random.Random(f"{seed}-{node_id}"))

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

    def tick(self, node_id: str, times: int = 1) -> None:
        for _ in range(times):
            self.cores[node_id].tick()
            self.drain(node_id)

    def isolate(self, node_id: str) -> None:
        for other in self.ids:
            if other != node_id:
                self.cut |= {(node_id, other), (other, node_id)}

    def heal(self) -> None:
        self.cut.clear()

    def elect(self, node_id: str) -> None:
        """Time out ``node_id`` alone and deliver until it is leader."""
        core = self.cores[node_id]
        while core.role is Role.FOLLOWER:
            self.tick(node_id)
        self.deliver_all()
        assert core.role is Role.LEADER, core.status()

    def leaders(self) -> list[str]:
        return [i for i, c in self.cores.items() if c.role is Role.LEADER]

    def restart(self, node_id: str, seed: int = 2) -> None:
        self.storage[node_id].crash()
        self.cores[node_id] = self._make(node_id, self.cores[node_id].config.election_ticks, seed)
        self.applied[node_id] = []
