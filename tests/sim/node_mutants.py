"""Rules of the node's Ready driver (``leifdb.node.Node``), each with a mutant that breaks
exactly that rule and a scripted scenario that catches it (tests/sim/test_node_mutants.py).

The rules are those of persist -> send -> apply: what a follower, a voter, a candidate and
a leader may send before their own fsync returns, that the Ready loop waits for the fsync
before it applies and advances, that a received snapshot is acknowledged only once it is
verified and durable and installed before the entries that follow it are applied, and that
the log forgets entries only once the snapshot that holds them is durable.

Random search seldom reaches the moment these rules matter (a crash inside one node's
fsync window, right after it replied), so each scenario steers a ``NodeSim`` there: it
makes one fsync slow, cuts the links that would let the cluster recover by luck, crashes
the node inside the window, and lets the survivors elect. A scenario raises ``Violation``
(from the simulation's own checks, or its own) when the rule is broken; with the real
node it completes. Each takes a seed, so a mutant is hunted over a few schedules, as
tests/sim/test_mutants.py does for the core.

A mutant is a deliberately broken copy of a ``Node`` method; it reaches into the node's
private helpers on purpose.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from twisted.internet.defer import succeed

from leifdb.kv.commands import Item, Put
from leifdb.kv.store import KVStore
from leifdb.node import _LEADER_MESSAGES, Node
from leifdb.nodeconfig import NodeConfig
from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    InstallSnapshot,
    InstallSnapshotReply,
    Member,
    Message,
    Ready,
    RequestVote,
    RequestVoteReply,
    Role,
    SnapshotMeta,
)
from leifdb.raft.storage import MemoryStorage
from leifdb.service.kvservice import KVService
from leifdb.storage import DiskStorage
from leifdb.storage.checksum import crc32c
from leifdb.storage.memory import MemorySnapshotStore
from leifdb.wire import encode_command, encode_membership
from tests.sim.node_sim import (
    NodeReactor,
    NodeSim,
    SimAsyncStorage,
    SimClock,
    SimOptions,
    Violation,
)

__all__ = ["NODE_MUTANTS", "NodeMutant", "SCENARIOS"]

SLOW_FSYNC = 0.3  # seconds: the window a scenario crashes a node in
WINDOW = 0.05  # how long the cluster runs inside that window before the crash


# ---------------------------------------------------------------------------- mutants


def _persist_sending_early(also_early: Callable[[Message], bool]) -> Callable[..., Any]:
    """``Node._persist`` that sends the messages ``also_early`` picks before the fsync,
    besides the leader's own appends (which may leave early)."""

    def _persist(self: Node, ready: Ready, installed: tuple | None) -> Any:
        early: list[Message] = []
        late: list[Message] = []
        leading = self.core.role is Role.LEADER
        for msg in ready.messages:
            leader_sent = leading and isinstance(msg, _LEADER_MESSAGES) and msg.term == self.core.term
            (early if leader_sent or also_early(msg) else late).append(msg)
        self._send_all(early)
        if not ready.entries and ready.hard_state is None:
            self._after_persist(ready, installed, late)
            return None
        d = self.storage.persist(ready.hard_state, ready.entries)
        d.addCallback(lambda _: self._after_persist(ready, installed, late))
        return d

    return _persist


_REAL_PERSIST = Node._persist


def _persist_counting_itself_early(self: Node, ready: Ready, installed: tuple | None) -> Any:
    """``Node._persist`` that tells a leader's core its new entries are stable before
    the fsync, so it counts itself toward a commit early (the Ready loop still waits)."""
    if self.core.role is Role.LEADER and ready.entries:
        self.core.advance(Ready(entries=ready.entries))
    return _REAL_PERSIST(self, ready, installed)


def _persist_without_waiting(self: Node, ready: Ready, installed: tuple | None) -> None:
    """``Node._persist`` that starts the fsync but carries on at once: sends, applies and
    advances the core (which then counts the leader's own entries toward a commit)
    before they are durable."""
    late = ready.messages
    if self.core.role is Role.LEADER:
        early: list[Message] = []
        late = []
        for msg in ready.messages:
            leader_sent = isinstance(msg, _LEADER_MESSAGES) and msg.term == self.core.term
            (early if leader_sent else late).append(msg)
        self._send_all(early)
    if ready.entries or ready.hard_state is not None:
        self.storage.persist(ready.hard_state, ready.entries).addErrback(self._fatal)
    self._after_persist(ready, installed, late)


def _after_persist_with(*, apply_first: bool = False, trust_snapshot: bool = False) -> Callable[..., None]:
    """``Node._after_persist`` with one rule broken: ``apply_first`` applies the committed
    entries before installing a received snapshot (so the snapshot overwrites them);
    ``trust_snapshot`` tells the core a received snapshot was installed even when its
    verification failed."""

    def _after_persist(self: Node, ready: Ready, installed: tuple | None, messages: list[Message]) -> None:
        if self._stopping:
            return
        self._send_all(messages)
        if apply_first:
            self.application.apply(ready.committed)
        if installed is not None and installed[1]:
            meta, _ok, restored, _membership = installed
            self.application.install_snapshot(restored)
            self._snapshot_meta = meta
        if not apply_first:
            self.application.apply(ready.committed)
        if ready.read_states:
            leader = None
            if self.core.role is not Role.LEADER:
                leader = self.http_address(self.core.leader_id)
            self.application.read_states(ready.read_states, leader)
        if ready.soft_state is not None:
            self.application.role_changed(ready.soft_state)
        self.core.advance(ready)
        if installed is not None:
            self.core.snapshot_installed(installed[0], installed[1] or trust_snapshot, installed[3])
        self._busy = False
        self._maybe_snapshot()
        self._schedule_drain()

    return _after_persist


def _compact_before_snapshot_is_durable(self: Node) -> None:
    """``Node._maybe_snapshot`` that queues the log's compaction before the snapshot's
    save, so for a while the log has forgotten entries no durable snapshot holds."""
    applied = self.application.applied_index
    since = applied - self._snapshot_meta.last_included_index
    if self._snapshotting or self._stopping or since < self.config.snapshot_entries:
        return
    term = self.core.log.term_at(applied)
    if term is None:
        return
    buffer = io.BytesIO()
    self.application.write_snapshot(buffer, encode_membership(self.config.members))
    data = buffer.getvalue()
    self._snapshotting = True
    self.storage.compact(SnapshotMeta(applied, term, crc32c(data), len(data))).addErrback(self._fatal)
    d = self.storage.call(self.snapshots.save, applied, term, data)
    d.addCallback(self._snapshot_saved)
    d.addErrback(self._fatal)


# ---------------------------------------------------------------------------- helpers


def _leader(sim: NodeSim) -> str:
    if not sim.run_until(lambda: sim.leader() is not None, 10 * sim.options.election_timeout):
        raise AssertionError("no leader elected")
    return sim.leader().config.node_id


def _candidate(sim: NodeSim) -> str | None:
    for node_id in sim.ids:
        node = sim.node(node_id)
        if node is not None and node.core is not None and node.core.role is Role.CANDIDATE:
            return node_id
    return None


def _slow_fsync(sim: NodeSim, node_id: str, when: Callable[[Any], bool] = lambda core: True) -> None:
    """Make the fsyncs of ``node_id``'s current incarnation take ``SLOW_FSYNC`` while
    ``when(core)`` holds at the moment the storage worker takes the job."""
    node = sim.node(node_id)
    storage = node.storage
    normal = storage._delay
    storage._delay = lambda: SLOW_FSYNC if node.core is not None and when(node.core) else normal()


def _until_other_leader(sim: NodeSim, not_this: str) -> None:
    sim.run_until(
        lambda: sim.leader() is not None and sim.leader().config.node_id != not_this,
        20 * sim.options.election_timeout,
    )


# ---------------------------------------------------------------------------- scenarios


def follower_crashes_after_replying(seed: int) -> None:
    """A follower acknowledges an entry, then crashes inside the fsync that was to make
    it durable. Only that follower got the entry (the leader's link to the third node is
    cut), so it is the leader's majority; the leader crashes too, and the two others
    elect a leader without the entry. If the follower replied before its fsync returned,
    the entry was acknowledged and is now lost (leader completeness, or the final check)."""
    sim = NodeSim(SimOptions(snapshot_entries=1000), seed=seed)
    leader = _leader(sim)
    sim.run_for(0.2)
    follower, other = [i for i in sim.ids if i != leader]
    sim.cut_one_way(leader, other)
    _slow_fsync(sim, follower)
    sim.submit(leader, Put("k", "acknowledged?"))
    sim.run_for(WINDOW)
    sim.crash(follower)
    sim.crash(leader)
    sim.heal()
    sim.restart(follower)
    _until_other_leader(sim, leader)
    sim.run_for(0.3)
    sim.restart(leader)
    sim.settle()


def leader_crashes_before_its_own_fsync(seed: int) -> None:
    """The leader's own fsync of an entry is slow; one follower stores it durably and
    replies, the third never gets it. If the leader counted itself (applied, acknowledged)
    before its fsync returned, crashing it inside the window loses an acknowledged write:
    the restarted leader and the third node elect a leader without it."""
    sim = NodeSim(SimOptions(snapshot_entries=1000), seed=seed)
    leader = _leader(sim)
    sim.run_for(0.2)
    follower, other = [i for i in sim.ids if i != leader]
    sim.cut_one_way(leader, other)
    _slow_fsync(sim, leader)
    sim.submit(leader, Put("k", "acknowledged?"))
    sim.run_for(WINDOW)
    sim.crash(leader)
    sim.isolate(follower)
    sim.restart(leader)
    _until_other_leader(sim, follower)
    sim.run_for(0.3)
    sim.settle()


def _two_votes_in_one_term(seed: int, *, slow: str) -> None:
    """The first election of a fresh cluster with its third node down: a candidate X and
    a voter V. ``slow="voter"``: V's fsync of its vote is slow; ``slow="candidate"``: X's
    fsync of its own term and self-vote is slow. The slow one crashes inside its window
    (losing the vote), the other is cut off, and the slow one and the third node elect.
    If the vote (or the candidacy) left before its fsync returned, X led the term and the
    new leader leads the same term: two leaders in one term."""
    sim = NodeSim(SimOptions(snapshot_entries=1000), seed=seed)
    third = sim.ids[2]
    sim.crash(third)
    for node_id in sim.ids[:2]:
        if slow == "voter":
            _slow_fsync(sim, node_id, lambda core: core.role is Role.FOLLOWER and core.voted_for is not None)
        else:
            _slow_fsync(sim, node_id, lambda core: core.role is Role.CANDIDATE)
    if not sim.run_until(lambda: _candidate(sim) is not None, 10 * sim.options.election_timeout):
        raise AssertionError("nobody campaigned")
    candidate = _candidate(sim)
    voter = next(i for i in sim.ids if i not in (candidate, third))
    crashed, cut_off = (voter, candidate) if slow == "voter" else (candidate, voter)
    sim.run_for(WINDOW)
    sim.crash(crashed)
    sim.isolate(cut_off)
    sim.restart(crashed)
    sim.restart(third)
    _until_other_leader(sim, cut_off)
    sim.run_for(0.3)
    sim.settle()


def voter_crashes_after_granting(seed: int) -> None:
    _two_votes_in_one_term(seed, slow="voter")


def candidate_crashes_after_asking(seed: int) -> None:
    _two_votes_in_one_term(seed, slow="candidate")


def power_cut_after_a_compaction(seed: int) -> None:
    """Every node on ``DiskStorage`` over a ``SimFileSystem``. The first time a node's log
    is compacted after its own snapshot, the node loses power right after the compaction
    returned. It must start again: a log that forgot entries the durable snapshots do not
    hold makes it refuse to start (the simulation reports the failed start)."""
    sim = NodeSim(SimOptions(storage="simfs", snapshot_entries=5), seed=seed)
    leader = _leader(sim)
    armed = [True]
    real_compact = DiskStorage.compact

    def compact_then_cut(disk: DiskStorage, meta: SnapshotMeta) -> None:
        real_compact(disk, meta)
        if armed[0] and meta.last_included_index > 0:
            victim = next((i for i, slot in sim.slots.items() if slot.disk is disk), None)
            if victim is not None and sim.node(victim) is not None:
                armed[0] = False
                sim.clock.callLater(0, sim.power_cut, victim)

    DiskStorage.compact = compact_then_cut  # type: ignore[method-assign]
    try:
        for i in range(8):
            sim.submit(leader, Put(f"k{i % 3}", f"v{i}"))
        sim.run_for(0.5)
    finally:
        DiskStorage.compact = real_compact  # type: ignore[method-assign]
    if armed[0]:
        raise AssertionError("no node compacted its log")
    sim.settle()


class _Recorder:
    """A transport that only records what the node sends."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def attach(self, on_message: Any, on_peer_unreachable: Any) -> None:
        pass

    def send(self, msg: Message) -> None:
        self.sent.append(msg)

    def update_peers(self, peers: Any) -> None:
        pass

    def stop(self) -> Any:
        return succeed(None)


def _lone_follower(seed: int) -> tuple[SimClock, Node, KVService, _Recorder]:
    """Node n2 of a 3-node cluster whose peers the scenario plays (long timeouts: it never
    campaigns meanwhile)."""
    members = tuple(Member(i, f"{i}:7000", f"{i}:8000") for i in ("n1", "n2", "n3"))
    config = NodeConfig(
        node_id="n2", members=members, http_address="n2:8000", http_port=8000, raft_listen_port=7000,
        data_dir=Path("/nonexistent"), election_timeout_ms=10_000, heartbeat_interval_ms=1_000,
    )
    clock = SimClock()
    reactor = NodeReactor(clock)
    service = KVService(reactor)
    transport = _Recorder()
    node = Node(
        config,
        reactor=reactor,
        storage=SimAsyncStorage(MemoryStorage(), reactor, lambda: 0.001 * (1 + seed % 5)),
        snapshots=MemorySnapshotStore(),
        transport=transport,
        application=service,
    )
    service.attach(node)
    node.start()
    _run(clock, 0.1)
    return clock, node, service, transport


def _run(clock: SimClock, seconds: float) -> None:
    target = clock.seconds() + seconds
    while (when := clock.next_time()) is not None and when <= target:
        clock.step()


def _snapshot_of(commands: list[Put], members: tuple[Member, ...]) -> tuple[list[Entry], bytes]:
    entries = [Entry(1, i, data=encode_command(c)) for i, c in enumerate(commands, 1)]
    store = KVStore()
    for entry, command in zip(entries, commands):
        store.apply(entry.index, command)
    buffer = io.BytesIO()
    store.write_snapshot(buffer, encode_membership(members))
    return entries, buffer.getvalue()


def snapshot_then_later_entries_in_one_ready(seed: int) -> None:
    """One Ready holds the last chunk of snapshot 3 and committed entries up to 5: the
    snapshot must replace the state machine first, then 4 and 5 apply on top of it."""
    clock, node, service, _ = _lone_follower(seed)
    commands = [Put(f"k{i}", f"v{i}") for i in range(1, 6)]
    entries, _ = _snapshot_of(commands, node.config.members)
    _, data = _snapshot_of(commands[:3], node.config.members)
    node.receive(AppendEntries("n1", "n2", 1, 0, 0, tuple(entries[:3]), 0), "n1:8000")
    node.receive(InstallSnapshot("n1", "n2", 1, 3, 1, 0, data, True, crc32c(data), len(data)), "n1:8000")
    node.receive(AppendEntries("n1", "n2", 1, 3, 1, tuple(entries[3:]), 5), "n1:8000")
    _run(clock, 1.0)
    kv = service.kv
    if kv.applied_index != 5 or kv.get("k5") != Item("k5", "v5", 5, 5):
        raise Violation(
            f"state machine safety: committed 1..5 with snapshot 3 in one Ready, the state machine "
            f"holds applied index {kv.applied_index}, k4={kv.get('k4')}, k5={kv.get('k5')}"
        )


def a_snapshot_that_fails_verification(seed: int) -> None:
    """A snapshot whose bytes do not match its checksum (damaged in transit) must be
    refused: the follower asks for it again (``done=False``) and neither its log nor its
    state machine moves."""
    clock, node, service, transport = _lone_follower(seed)
    commands = [Put(f"k{i}", f"v{i}") for i in range(1, 4)]
    _, data = _snapshot_of(commands, node.config.members)
    damaged = data[:-1] + bytes([data[-1] ^ 0x40])
    node.receive(InstallSnapshot("n1", "n2", 1, 3, 1, 0, damaged, True, crc32c(data), len(data)), "n1:8000")
    _run(clock, 1.0)
    replies = [m for m in transport.sent if isinstance(m, InstallSnapshotReply)]
    if not replies or replies[-1].done:
        raise Violation(f"a snapshot that failed its checksum was acknowledged: {replies}")
    st = node.raft_status()
    if st.snapshot_index != 0 or st.applied_index != 0 or service.kv.applied_index != 0:
        raise Violation(f"a snapshot that failed its checksum moved the node to {st}")


# ---------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class NodeMutant:
    """``Node.<method>`` replaced by ``replacement`` breaks ``rule``; ``scenario(seed)``
    catches it on at least one of the hunted seeds."""

    name: str
    rule: str
    method: str
    replacement: Callable[..., Any]
    scenario: Callable[[int], None]


NODE_MUTANTS = (
    NodeMutant(
        "follower_replies_before_fsync",
        "a follower's AppendEntries reply waits for the entries' fsync",
        "_persist", _persist_sending_early(lambda m: isinstance(m, AppendEntriesReply)),
        follower_crashes_after_replying,
    ),
    NodeMutant(
        "vote_granted_before_fsync",
        "a vote is sent only once the voter's term and vote are durable",
        "_persist", _persist_sending_early(lambda m: isinstance(m, RequestVoteReply)),
        voter_crashes_after_granting,
    ),
    NodeMutant(
        "vote_requested_before_fsync",
        "a candidate asks for votes only once its new term and self-vote are durable",
        "_persist", _persist_sending_early(lambda m: isinstance(m, RequestVote)),
        candidate_crashes_after_asking,
    ),
    NodeMutant(
        "leader_counts_itself_before_fsync",
        "the leader counts its own entries toward a commit only once its fsync returned",
        "_persist", _persist_counting_itself_early,
        leader_crashes_before_its_own_fsync,
    ),
    NodeMutant(
        "ready_loop_skips_own_fsync",
        "the leader counts, applies and acknowledges its own entries only after its fsync",
        "_persist", _persist_without_waiting,
        leader_crashes_before_its_own_fsync,
    ),
    NodeMutant(
        "committed_applied_before_snapshot_install",
        "a received snapshot replaces the state machine before the committed entries after it apply",
        "_after_persist", _after_persist_with(apply_first=True),
        snapshot_then_later_entries_in_one_ready,
    ),
    NodeMutant(
        "unverified_snapshot_acknowledged",
        "a received snapshot is acknowledged and replaces the log only once verified and durable",
        "_after_persist", _after_persist_with(trust_snapshot=True),
        a_snapshot_that_fails_verification,
    ),
    NodeMutant(
        "log_compacted_before_snapshot_durable",
        "the log forgets entries only once the snapshot holding them is durable",
        "_maybe_snapshot", _compact_before_snapshot_is_durable,
        power_cut_after_a_compaction,
    ),
)

SCENARIOS = tuple(dict.fromkeys(m.scenario for m in NODE_MUTANTS))
"""Every scenario once: the unmutated node must pass each on every hunted seed."""
