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

Opt-in kinds (``MEMBERSHIP_KINDS``: not in the default mix, see ``fault_kinds``):

* ``replace_member``: remove a random member through the admin API (``force`` only if the
  leader refuses for want of a quorum it hears from); it must stop by itself once it
  applied its removal. Then a fresh node (a new name, an empty data directory) starts with
  ``--join``, adds itself as a learner and is promoted once it caught up. Nothing to heal.
* ``isolate_follower``: cut one follower off from every node for several election
  timeouts; after healing, the leader and its term must be what they were before: the
  returning node's PreVote fails and it does not depose a healthy leader. A change is a
  problem (``Nemesis.problems``).

Partitions cut links either by resetting connections or by silently swallowing their
bytes (chosen at random). Every choice comes from the nemesis' own ``random.Random``. Only
live nodes (``cluster.live``: members) are chosen.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from leifdb.client import Client, ClientError, MembershipRefused, OutcomeUnknown
from leifdb.client.protocol import RetryPolicy
from tests.faults.cluster import ProxiedCluster

__all__ = ["FAULT_KINDS", "MEMBERSHIP_KINDS", "POWER_CUT_KINDS", "Fault", "Nemesis",
           "fault_kinds"]

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
MEMBERSHIP_KINDS: tuple[str, ...] = ("replace_member", "isolate_follower")
#: How long a replace_member waits for each step (the removed node to stop, the new one
#: to answer, to be listed, to catch up and be promoted).
MEMBERSHIP_STEP_TIMEOUT = 20.0
#: A removal refused for want of a quorum is forced after being refused this long.
FORCE_AFTER = 5.0


def fault_kinds(power_cuts: bool, membership: bool = False) -> tuple[str, ...]:
    """Every fault kind a run injects: with or without power cuts, with or without the
    membership kinds."""
    return (FAULT_KINDS + (POWER_CUT_KINDS if power_cuts else ())
            + (MEMBERSHIP_KINDS if membership else ()))


@dataclass
class Fault:
    """One injected fault: what was done, and what healing must undo."""

    kind: str
    description: str
    started: float
    killed: list[int] = field(default_factory=list)
    paused: list[int] = field(default_factory=list)
    network: bool = False
    removed: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    # isolate_follower: the leader and its term before the fault
    leader_before: tuple[str, int] | None = None
    healed: float | None = None
    recovered: float | None = None  # seconds from healing to the next acknowledged write


class Nemesis:
    """Injects faults into ``cluster``; ``log`` receives one line per action."""

    def __init__(self, cluster: ProxiedCluster, rng: random.Random, *,
                 log: Callable[[str], None] = lambda line: None,
                 election_timeout: float = 0.4) -> None:
        self.cluster = cluster
        self.rng = rng
        self.log = log
        self.election_timeout = election_timeout
        self.counts: Counter[str] = Counter()
        self.history: list[Fault] = []
        self.active: Fault | None = None
        # What a fault showed to be wrong (not a crash): the runner reports them.
        self.problems: list[str] = []
        # What a SIGKILL is on this cluster, for the timeline.
        self._kill_is = " (a power cut: write-back fs)" if cluster.writeback else ""

    # -- choosing ----------------------------------------------------------------------

    def _leader_or_random(self) -> int:
        leader = self.cluster.leader()
        if leader is None or not self.cluster.is_running(leader):
            running = [i for i in self.cluster.live if self.cluster.is_running(i)]
            return self.rng.choice(running or list(self.cluster.live))
        return leader

    def _live_names(self) -> list[str]:
        return [self.cluster.names[i] for i in self.cluster.live]

    def _shuffled(self) -> list[str]:
        names = self._live_names()
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
        i = self.rng.choice(self.cluster.live)
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
            i, who = self.rng.choice(self.cluster.live), ""
        self.cluster.pause(i)
        return Fault("pause", f"SIGSTOP {who}{self.cluster.names[i]}", time.monotonic(), paused=[i])

    def _inject_kill_all(self) -> Fault:
        order = list(self.cluster.live)
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
            targets, what = list(self.cluster.live), "every node at once"
        else:
            i = self._leader_or_random() if self.rng.random() < 0.5 else self.rng.choice(
                self.cluster.live)
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
            src = self.rng.choice(self._live_names())
            links, what = [(a, b) for a, b in net.links() if a == src], f"links out of {src}"
        net.set_delay(links, delay, jitter)
        return Fault("delay", f"+{delay * 1000:.0f} ms (jitter {jitter * 1000:.0f} ms) on {what}",
                     time.monotonic(), network=True)

    # -- membership -------------------------------------------------------------------

    def _client(self) -> Client:
        return Client([f"http://{a}" for a in self.cluster.http_addresses()], timeout=5.0,
                      policy=RetryPolicy(deadline=MEMBERSHIP_STEP_TIMEOUT))

    def _inject_replace_member(self) -> Fault:
        cluster = self.cluster
        i = self.rng.choice(cluster.live)
        name = cluster.names[i]
        forced = self._remove(name)
        cluster.remove(i)
        if not _wait(lambda: not cluster.is_running(i), MEMBERSHIP_STEP_TIMEOUT):
            self.problems.append(f"{name} did not stop within {MEMBERSHIP_STEP_TIMEOUT:.0f} s "
                                 "of its removal")
            cluster.kill(i)
        new = cluster.add_node()
        cluster.start_node(new)
        added = cluster.names[new]
        self._promote(added, new)
        how = " (forced)" if forced else ""
        return Fault("replace_member", f"removed {name}{how}, {added} joined and was promoted",
                     time.monotonic(), removed=[i], added=[new])

    def _remove(self, name: str) -> bool:
        """Remove member ``name``; forced only if the leader keeps refusing for want of a
        quorum it hears from (a node restarted a moment ago may not have answered yet).
        Whether it was forced. RuntimeError if it cannot be removed."""
        start = time.monotonic()
        deadline = start + MEMBERSHIP_STEP_TIMEOUT
        force = False
        while True:
            try:
                self._client().remove_member(name, force=force)
                return force
            except OutcomeUnknown:
                pass  # the member list tells
            except MembershipRefused as e:
                force = "quorum" in str(e) and time.monotonic() - start > FORCE_AFTER
                self.log(f"removing {name} refused: {e}" + ("; forcing it" if force else ""))
            except ClientError as e:
                self.log(f"removing {name}: {e}")
            if self._role(name) is None:
                return force
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not remove {name} in {MEMBERSHIP_STEP_TIMEOUT:.0f} s")
            time.sleep(0.2)

    def _promote(self, name: str, i: int) -> None:
        """Wait until ``name`` (node ``i``) is a listed learner that caught up, and promote
        it. RuntimeError if that takes too long."""
        deadline = time.monotonic() + 2 * MEMBERSHIP_STEP_TIMEOUT
        while time.monotonic() < deadline:
            if self._role(name) == "learner":
                try:
                    self._client().promote_member(name)
                except (MembershipRefused, OutcomeUnknown, ClientError):
                    pass  # still catching up, or ask the member list
            if self._role(name) == "voter":
                return
            if not self.cluster.is_running(i):
                raise RuntimeError(f"{name} exited while joining: "
                                   f"{self.cluster.log_tail(i, 3)}")
            time.sleep(0.2)
        raise RuntimeError(f"{name} was not promoted within {2 * MEMBERSHIP_STEP_TIMEOUT:.0f} s")

    def _role(self, name: str) -> str | None:
        """``voter``, ``learner`` or None (not a member) as the cluster lists it now."""
        try:
            member = self._client().members().get(name)
        except ClientError:
            return "unknown"
        return None if member is None else member.role

    def _inject_isolate_follower(self) -> Fault:
        cluster = self.cluster
        leader = cluster.leader()
        if leader is None:
            raise RuntimeError("isolate_follower needs a leader")
        term = int((cluster.health(leader) or {}).get("term") or 0)
        follower = cluster.names[self.rng.choice([i for i in cluster.live if i != leader])]
        mode = self._mode()
        cluster.net.isolate(follower, mode)
        return Fault("isolate_follower",
                     f"isolate follower {follower} ({mode}); leader {cluster.names[leader]} "
                     f"in term {term}", time.monotonic(), network=True,
                     leader_before=(cluster.names[leader], term))

    def _check_leader_kept(self, fault: Fault) -> None:
        """After an isolated follower returned: the same leader in the same term."""
        assert fault.leader_before is not None
        time.sleep(3 * self.election_timeout)  # let the returning node try its worst
        leader = self.cluster.leader()
        deadline = time.monotonic() + 10 * self.election_timeout
        while leader is None and time.monotonic() < deadline:  # an election under way
            time.sleep(0.05)
            leader = self.cluster.leader()
        health = self.cluster.health(leader) if leader is not None else None
        now = (self.cluster.names[leader] if leader is not None else None,
               int((health or {}).get("term") or 0))
        self.log(f"leader before {fault.leader_before[0]} term {fault.leader_before[1]}, "
                 f"after {now[0]} term {now[1]}")
        if now != fault.leader_before:
            self.problems.append(
                f"a follower cut off and back changed the leader: {fault.description}; now "
                f"{now[0]} in term {now[1]}")

    def unexpected_exits(self) -> list[str]:
        """Nodes that are down although no fault killed them (a crash: a bug), each as
        ``name (exit status)``; they are restarted so the run can go on."""
        expected = set(self.active.killed) if self.active is not None else set()
        crashed = []
        for i in self.cluster.live:
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
        if fault.leader_before is not None:
            self._check_leader_kept(fault)
        return fault

    def heal_everything(self) -> None:
        """Whatever state the run is in: network up, every live node running and resumed."""
        self.heal()
        self.cluster.net.heal()
        for i in self.cluster.live:
            if self.cluster.is_running(i):
                self.cluster.resume(i)  # harmless if it was not paused
            else:
                self.cluster.start_node(i)


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
