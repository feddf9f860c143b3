"""The nemesis: injects one fault at a time into a ``ProxiedCluster`` and undoes it.

Fault kinds (``FAULT_KINDS``):

* ``kill``: SIGKILL a random node; healing restarts it on its data.
* ``kill_leader``: the same, for the current leader.
* ``pause``: SIGSTOP a random node (the leader half of the time) for longer than the
  election timeout; healing sends SIGCONT.
* ``kill_all``: SIGKILL every node; healing restarts them all.
* ``partition_leader``: cut the leader off from every other node.
* ``partition_halves``: split the nodes into a majority and a minority (the leader on
  either side).
* ``partition_bridge``: two groups that cannot talk to each other and one node that talks
  to both (the Jepsen "bridge").
* ``delay``: add 50-300 ms (plus jitter) to the links out of one node or of all nodes.
* ``power_cut`` (``POWER_CUT_KINDS``; only when the nodes run on the write-back file system,
  ``ProxiedCluster(writeback=True)``): cut the power of every node at the same instant (the
  first power cut of a run always, later ones half of the time), else of one node (the leader
  half of the time): SIGKILL, which on that file system loses exactly what the node had not
  synced. Healing restarts them. On such a cluster the ``kill`` kinds are power cuts too (of
  one node, of the leader, of every node one after another).

Partitions cut links either by resetting connections or by silently swallowing their
bytes (chosen at random). Every choice comes from the nemesis' own ``random.Random``.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from tests.faults.cluster import ProxiedCluster

__all__ = ["FAULT_KINDS", "POWER_CUT_KINDS", "Fault", "Nemesis", "fault_kinds"]

FAULT_KINDS: tuple[str, ...] = (
    "kill",
    "kill_leader",
    "pause",
    "kill_all",
    "partition_leader",
    "partition_halves",
    "partition_bridge",
    "delay",
)
POWER_CUT_KINDS: tuple[str, ...] = ("power_cut",)


def fault_kinds(power_cuts: bool) -> tuple[str, ...]:
    """Every fault kind a run injects, with or without power cuts."""
    return FAULT_KINDS + (POWER_CUT_KINDS if power_cuts else ())


@dataclass
class Fault:
    """One injected fault: what was done, and what healing must undo."""

    kind: str
    description: str
    started: float
    killed: list[int] = field(default_factory=list)
    paused: list[int] = field(default_factory=list)
    network: bool = False
    healed: float | None = None
    recovered: float | None = None  # seconds from healing to the next acknowledged write


class Nemesis:
    """Injects faults into ``cluster``; ``log`` receives one line per action."""

    def __init__(self, cluster: ProxiedCluster, rng: random.Random, *,
                 log: Callable[[str], None] = lambda line: None) -> None:
        self.cluster = cluster
        self.rng = rng
        self.log = log
        self.counts: Counter[str] = Counter()
        self.history: list[Fault] = []
        self.active: Fault | None = None
        # What a SIGKILL is on this cluster, for the timeline.
        self._kill_is = " (a power cut: write-back fs)" if cluster.writeback else ""

    # -- choosing ----------------------------------------------------------------------

    def _leader_or_random(self) -> int:
        leader = self.cluster.leader()
        if leader is None or not self.cluster.is_running(leader):
            running = [i for i in range(len(self.cluster)) if self.cluster.is_running(i)]
            return self.rng.choice(running or list(range(len(self.cluster))))
        return leader

    def _shuffled(self) -> list[str]:
        names = list(self.cluster.names)
        self.rng.shuffle(names)
        return names

    # -- injecting ---------------------------------------------------------------------

    def inject(self, kind: str) -> Fault:
        """Inject a fault of ``kind``; the previous one must have been healed."""
        if self.active is not None:
            raise RuntimeError(f"fault {self.active.kind} is still active")
        fault = getattr(self, f"_inject_{kind}")()
        self.counts[kind] += 1
        self.history.append(fault)
        self.active = fault
        self.log(f"fault {kind}: {fault.description}")
        return fault

    def _inject_kill(self) -> Fault:
        i = self.rng.randrange(len(self.cluster))
        self.cluster.kill(i)
        return Fault("kill", f"SIGKILL {self.cluster.names[i]}{self._kill_is}", time.monotonic(),
                     killed=[i])

    def _inject_kill_leader(self) -> Fault:
        i = self._leader_or_random()
        self.cluster.kill(i)
        return Fault("kill_leader", f"SIGKILL leader {self.cluster.names[i]}{self._kill_is}",
                     time.monotonic(), killed=[i])

    def _inject_pause(self) -> Fault:
        if self.rng.random() < 0.5:
            i, who = self._leader_or_random(), "leader "
        else:
            i, who = self.rng.randrange(len(self.cluster)), ""
        self.cluster.pause(i)
        return Fault("pause", f"SIGSTOP {who}{self.cluster.names[i]}", time.monotonic(), paused=[i])

    def _inject_kill_all(self) -> Fault:
        order = list(range(len(self.cluster)))
        self.rng.shuffle(order)
        for i in order:
            self.cluster.kill(i)
        return Fault("kill_all", f"SIGKILL every node{self._kill_is}", time.monotonic(),
                     killed=order)

    def _inject_power_cut(self) -> Fault:
        if not self.cluster.writeback:
            raise RuntimeError("a power cut needs nodes on the write-back file system "
                               "(ProxiedCluster(writeback=True)): on the real one, SIGKILL "
                               "keeps the page cache")
        first = not self.counts["power_cut"]
        if first or self.rng.random() < 0.5:
            targets, what = list(range(len(self.cluster))), "every node at once"
        else:
            i = self._leader_or_random() if self.rng.random() < 0.5 else self.rng.randrange(
                len(self.cluster))
            targets, what = [i], self.cluster.names[i]
        self.cluster.kill_together(targets)
        return Fault("power_cut", f"power cut of {what}", time.monotonic(), killed=targets)

    def _mode(self) -> str:
        return self.rng.choice(("reset", "blackhole"))

    def _inject_partition_leader(self) -> Fault:
        leader = self.cluster.names[self._leader_or_random()]
        mode = self._mode()
        self.cluster.net.isolate(leader, mode)
        return Fault("partition_leader", f"isolate leader {leader} ({mode})", time.monotonic(),
                     network=True)

    def _inject_partition_halves(self) -> Fault:
        names = self._shuffled()
        leader = self.cluster.leader()
        minority_size = (len(names) - 1) // 2
        if leader is not None and self.rng.random() < 0.5:
            name = self.cluster.names[leader]  # the leader in the minority
            names.remove(name)
            names.insert(0, name)
        minority, majority = names[:minority_size], names[minority_size:]
        mode = self._mode()
        self.cluster.net.partition([minority, majority], mode)
        return Fault("partition_halves", f"{sorted(minority)} | {sorted(majority)} ({mode})",
                     time.monotonic(), network=True)

    def _inject_partition_bridge(self) -> Fault:
        names = self._shuffled()
        bridge, rest = names[0], names[1:]
        left, right = rest[: len(rest) // 2], rest[len(rest) // 2:]
        cut = [(a, b) for a in left for b in right] + [(b, a) for a in left for b in right]
        mode = self._mode()
        self.cluster.net.cut(cut, mode)
        return Fault("partition_bridge",
                     f"{sorted(left)} | {sorted(right)} bridged by {bridge} ({mode})",
                     time.monotonic(), network=True)

    def _inject_delay(self) -> Fault:
        delay = self.rng.uniform(0.05, 0.3)
        jitter = self.rng.uniform(0, 0.05)
        net = self.cluster.net
        if self.rng.random() < 0.5:
            links, what = net.links(), "all links"
        else:
            src = self.rng.choice(self.cluster.names)
            links, what = [(a, b) for a, b in net.links() if a == src], f"links out of {src}"
        net.set_delay(links, delay, jitter)
        return Fault("delay", f"+{delay * 1000:.0f} ms (jitter {jitter * 1000:.0f} ms) on {what}",
                     time.monotonic(), network=True)

    def unexpected_exits(self) -> list[str]:
        """Nodes that are down although no fault killed them (a crash: a bug), each as
        ``name (exit status)``; they are restarted so the run can go on."""
        expected = set(self.active.killed) if self.active is not None else set()
        crashed = []
        for i in range(len(self.cluster)):
            if i not in expected and not self.cluster.is_running(i):
                status = self.cluster.exit_status(i)
                crashed.append(f"{self.cluster.names[i]} (exit status {status})")
                self.log(f"{self.cluster.names[i]} exited by itself (status {status}); "
                         "restarting it")
                self.cluster.start_node(i)
        return crashed

    # -- healing -----------------------------------------------------------------------

    def heal(self) -> Fault | None:
        """Undo the active fault: heal the network, SIGCONT paused nodes, restart killed
        ones. Returns the fault healed (None if none was active)."""
        fault, self.active = self.active, None
        if fault is None:
            return None
        if fault.network:
            self.cluster.net.heal()
        for i in fault.paused:
            if self.cluster.is_running(i):
                self.cluster.resume(i)
        for i in fault.killed:
            if not self.cluster.is_running(i):
                self.cluster.start_node(i)
        fault.healed = time.monotonic()
        self.log(f"healed {fault.kind}")
        return fault

    def heal_everything(self) -> None:
        """Whatever state the run is in: network up, every node running and resumed."""
        self.heal()
        self.cluster.net.heal()
        for i in range(len(self.cluster)):
            if self.cluster.is_running(i):
                self.cluster.resume(i)  # harmless if it was not paused
            else:
                self.cluster.start_node(i)
