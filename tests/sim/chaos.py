"""Seeded random fault schedules for the simulated cluster (soak runs and mutant hunts).

``run_seed(seed, steps)`` builds a cluster from the seed, then takes ``steps`` random
actions (``DEFAULT_WEIGHTS``): advance time, propose, read, crash and restart nodes (also
part-way through a Ready, or right after a vote), partition and heal, cut off each new
leader in turn, drop, duplicate, delay, reorder or replay single messages, change the
ambient fault rates, snapshot, and now and then demand liveness. Every choice comes from the seed, so a failing seed
replays exactly (``python -m tests.sim.soak --seed S --runs 1``).

``reconfigure`` (weight 0 by default, so the classic schedules are unchanged) makes one
membership change attempt (``tests.sim.reconfig``); ``MEMBERSHIP_WEIGHTS`` turns it on, with
the leader-hunting actions that make configurations and leaders race.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from leifdb.raft.messages import Role
from tests.sim.cluster import CRASH_POINTS, Cluster, SimOptions
from tests.sim.reconfig import Reconfigurer

#: Ambient fault profiles: (drop, duplicate, delay, corrupt) rates.
FAULT_LEVELS = {
    "calm": (0.0, 0.0, 0.0, 0.0),
    "lossy": (0.05, 0.02, 0.02, 0.0),
    "chaos": (0.2, 0.1, 0.1, 0.05),
}


#: How often each action is picked (relative weights).
DEFAULT_WEIGHTS = {
    "advance": 30,
    "propose": 20,
    "read": 6,
    "read_at_deposed_leader": 1,
    "message_fault": 12,
    "crash": 5,
    "crash_new_leader": 3,
    "isolate_new_leader": 3,
    "restart": 6,
    "bounce": 2,
    "crash_mid_ready": 2,
    "bounce_voter": 2,
    "leader_churn": 2,
    "partition": 3,
    "one_way": 2,
    "heal": 4,
    "snapshot": 3,
    "fault_level": 2,
    "check_liveness": 1,
    "reconfigure": 0,  # last, so a zero weight leaves the other actions' draws unchanged
}

#: The mix of the membership runs: changes interleaved with everything else.
MEMBERSHIP_WEIGHTS = {"reconfigure": 12, "read_at_deposed_leader": 0}

#: The availability rules on or off (``classic``: the Raft paper's elections).
MODES = {
    "classic": dict(pre_vote=False, vote_lease=False),
    "available": dict(pre_vote=True, vote_lease=True),
}


def random_options(rng: random.Random) -> SimOptions:
    """A random cluster shape: size, snapshots, batching and pipelining limits."""
    return SimOptions(
        nodes=rng.choice((3, 3, 5)),
        snapshot_every=rng.choice((None, 3, 10, 40)),
        chunk_size=rng.choice((16, 64, 64, 1024)),
        max_entries_per_append=rng.choice((1, 2, 4, 512)),
        max_inflight_appends=rng.choice((1, 2, 8)),
        check_quorum=rng.random() < 0.8,
    )


@dataclass
class ChaosDriver:
    """Picks and performs one random action per ``step()``."""

    cluster: Cluster
    rng: random.Random
    liveness: bool = True
    weights: dict[str, int] | None = None
    actions: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reconfigurer = Reconfigurer(self.cluster, self.rng)
        weights = dict(DEFAULT_WEIGHTS)
        weights.update(self.weights or {})
        if not self.liveness:
            weights["check_liveness"] = 0
        self._choices = [getattr(self, name) for name in weights]
        self._weights = list(weights.values())

    def ids(self) -> list[str]:
        return list(self.cluster.nodes)

    def step(self) -> None:
        (action,) = self.rng.choices(self._choices, self._weights)
        name = action.__name__
        self.actions[name] = self.actions.get(name, 0) + 1
        action()

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    # -- actions

    def advance(self) -> None:
        rng = self.rng
        ms = rng.choice((rng.randint(1, 50), rng.randint(50, 500), rng.randint(500, 3000)))
        self.cluster.run_for(ms)

    def propose(self) -> None:
        cluster = self.cluster
        leader = cluster.leader()
        target = leader.id if leader is not None and self.rng.random() < 0.85 else self.rng.choice(self.ids())
        for _ in range(self.rng.choice((1, 1, 1, 3))):
            cluster.propose(target)

    def read(self) -> None:
        """Linearizable reads: at the leader, at one node, or at every node at once (so
        a deposed leader that has not noticed yet gets asked too)."""
        leader = self.cluster.leader()
        kind = self.rng.random()
        if kind < 0.4 and leader is not None:
            self.cluster.read(leader.id)
        elif kind < 0.7:
            self.cluster.read(self.rng.choice(self.ids()))
        else:
            for node_id in self.ids():
                self.cluster.read(node_id)

    def read_at_deposed_leader(self) -> None:
        """Cut the leader off, let the others elect and acknowledge a write, then read at
        the old leader (which may not know yet that it was deposed)."""
        cluster = self.cluster
        old = cluster.leader()
        if old is None:
            return
        cluster.heal()
        cluster.isolate(old.id)
        others_lead = lambda: any(n.core.role is Role.LEADER and n is not old for n in cluster.up())
        if not cluster.run_until(others_lead, self.rng.randint(500, 3000)):
            return
        new = max((n for n in cluster.leaders() if n is not old), key=lambda n: n.core.term)
        acked = len(cluster.acked)
        cluster.propose(new.id)
        cluster.run_until(lambda: len(cluster.acked) > acked, self.rng.randint(10, 200))
        cluster.read(old.id)

    def message_fault(self) -> None:
        net = self.cluster.network
        pick = self.rng.randrange(1 << 16)
        kind = self.rng.randrange(5)
        if kind == 4:
            net.replay(pick)
        elif kind == 0:
            net.deliver_now(pick)
        elif kind == 1:
            net.drop(pick)
        elif kind == 2:
            net.duplicate(pick)
        else:
            net.delay(pick, self.rng.randint(50, 3000))

    def crash(self) -> None:
        cluster = self.cluster
        up = cluster.up()
        if not up:
            return
        leader = cluster.leader()
        if leader is not None and self.rng.random() < 0.5:
            cluster.crash(leader.id)
        else:
            cluster.crash(self.rng.choice(up).id)

    def _wait_for_new_leader(self) -> None:
        """Run until a leader appears that was not leading before (or 3 s pass), then a
        little longer: a moment into its first replication rounds."""
        cluster = self.cluster
        known = {(n.id, n.core.term) for n in cluster.leaders()}
        cluster.run_until(lambda: any((n.id, n.core.term) not in known for n in cluster.leaders()), 3000)
        cluster.run_for(self.rng.choice((0, self.rng.randint(1, 15), self.rng.randint(1, 80))))

    def crash_new_leader(self) -> None:
        """Crash a leader moments after it appears (mid-replication of its first entries)."""
        self._wait_for_new_leader()
        leader = self.cluster.leader()
        if leader is not None:
            self.cluster.crash(leader.id)

    def isolate_new_leader(self) -> None:
        """Heal, then cut off the newest leader moments after it appears: rotating
        isolation leaves a trail of leaders whose entries reached only some nodes."""
        self._wait_for_new_leader()
        leader = self.cluster.leader()
        if leader is not None:
            self.cluster.heal()
            self.cluster.isolate(leader.id)

    def crash_mid_ready(self) -> None:
        """Crash a node part-way through its next Ready (before fsync, before or while
        sending, or before applying)."""
        up = self.cluster.up()
        if up:
            self.cluster.crash_during_next_ready(self.rng.choice(up).id, self.rng.choice(CRASH_POINTS))

    def bounce(self) -> None:
        """A quick reboot: crash a node and restart it a few milliseconds later."""
        up = self.cluster.up()
        if not up:
            return
        node = self.rng.choice(up)
        self.cluster.crash(node.id)
        self.cluster.run_for(self.rng.randint(0, 30))
        self.cluster.restart(node.id)

    def bounce_voter(self) -> None:
        """Reboot a node right after it voted in an election: its vote must survive."""
        cluster = self.cluster
        cluster.run_until(lambda: any(n.core.role is Role.CANDIDATE for n in cluster.up()), 3000)
        cluster.run_for(self.rng.randint(0, 30))
        voters = [n for n in cluster.up() if n.core.role is Role.FOLLOWER and n.core.voted_for not in (None, n.id)]
        if voters:
            node = self.rng.choice(voters)
            cluster.crash(node.id)
            cluster.restart(node.id)

    def leader_churn(self) -> None:
        """Several leaders in a row, each cut off or crashed moments into its term while the
        previous one rejoins: the histories of Figures 7 and 8."""
        cluster = self.cluster
        for _ in range(self.rng.randint(2, 5)):
            self._wait_for_new_leader()
            leader = cluster.leader()
            if leader is None:
                continue
            cluster.heal()
            for node in cluster.nodes.values():
                if not node.up and node.id != leader.id:
                    cluster.restart(node.id)
            how = self.rng.choice(("isolate", "crash", "propose_then_isolate"))
            if how == "crash":
                cluster.crash(leader.id)
                continue
            if how == "propose_then_isolate":
                cluster.propose(leader.id)
            cluster.isolate(leader.id)

    def restart(self) -> None:
        down = [n.id for n in self.cluster.nodes.values() if n.core is None]
        if down:
            self.cluster.restart(self.rng.choice(down))

    def partition(self) -> None:
        ids = self.ids()
        if len(ids) < 2:
            return
        self.rng.shuffle(ids)
        cut = self.rng.randint(1, len(ids) // 2)
        if self.rng.random() < 0.3:
            leader = self.cluster.leader()
            if leader is not None:
                self.cluster.isolate(leader.id)
                return
        self.cluster.partition([ids[:cut], ids[cut:]])

    def one_way(self) -> None:
        if len(self.ids()) < 2:
            return
        src, dst = self.rng.sample(self.ids(), 2)
        self.cluster.cut_one_way(src, dst)

    def heal(self) -> None:
        self.cluster.heal()

    def snapshot(self) -> None:
        self.cluster.snapshot(self.rng.choice(self.ids()))

    def fault_level(self) -> None:
        level = self.rng.choice(list(FAULT_LEVELS))
        self.cluster.network.set_fault_rates(*FAULT_LEVELS[level])
        self.cluster.stats[f"fault_level_{level}"] += 1

    def check_liveness(self) -> None:
        self.cluster.check_liveness()

    def reconfigure(self) -> None:
        """One membership change attempt: add a learner, promote one, or remove a member."""
        self.reconfigurer.step()


def random_membership_options(rng: random.Random, mode: str) -> SimOptions:
    """A random cluster shape for membership runs: 1 to 5 voters at the start, snapshots
    often (so new learners catch up by InstallSnapshot too), a small promotion lag."""
    return SimOptions(
        nodes=rng.choice((1, 3, 3, 4, 5)),
        snapshot_every=rng.choice((None, 3, 10)),
        chunk_size=rng.choice((16, 64, 1024)),
        max_entries_per_append=rng.choice((1, 2, 512)),
        max_inflight_appends=rng.choice((1, 8)),
        max_promote_lag=rng.choice((2, 50)),
        **MODES[mode],
    )


def run_membership_seed(
    seed: int,
    steps: int,
    mode: str = "available",
    options: SimOptions | None = None,
    weights: dict[str, int] | None = None,
) -> Cluster:
    """One random run with membership changes among all the other faults, in ``mode``;
    then liveness (everything healed and restarted, removed servers excepted), and
    liveness again with a minority of the final voters, the leader first, crashed."""
    rng = random.Random(seed)
    opts = options or random_membership_options(rng, mode)
    cluster = Cluster(opts, seed=rng.getrandbits(64))
    cluster.seed = seed
    driver = ChaosDriver(cluster, rng, weights={**MEMBERSHIP_WEIGHTS, **(weights or {})})
    cluster.network.set_fault_rates(*FAULT_LEVELS[rng.choice(list(FAULT_LEVELS))])
    driver.run(steps)
    cluster.check_liveness()
    voters = sorted(cluster.configuration().voters)
    leader = cluster.leader()
    first = [leader.id] if leader is not None and leader.id in voters else []
    up = [v for v in dict.fromkeys(first + voters) if cluster.nodes[v].up]
    for node_id in up[: (len(voters) - 1) // 2 - (len(voters) - len(up))]:
        cluster.crash(node_id)
    cluster.check_liveness(restart_crashed=False)
    return cluster


def run_seed(
    seed: int,
    steps: int,
    options: SimOptions | None = None,
    final_liveness: bool = True,
    weights: dict[str, int] | None = None,
    fault_level: str | None = None,
) -> Cluster:
    """One random run; raises ``Violation`` (with the seed in its message) on any failure."""
    rng = random.Random(seed)
    opts = options or random_options(rng)
    cluster = Cluster(opts, seed=rng.getrandbits(64))
    cluster.seed = seed
    driver = ChaosDriver(cluster, rng, weights=weights)
    level = fault_level or rng.choice(list(FAULT_LEVELS))
    cluster.network.set_fault_rates(*FAULT_LEVELS[level])
    driver.run(steps)
    if final_liveness:
        cluster.check_liveness()
    return cluster

