"""The InstallSnapshot receiver (Figure 13 of the Raft paper), rule by rule, on one core.

The core receives chunks and hands them to its caller in ``Ready.snapshot_chunks`` (rules
2-3 are the caller's writes: a chunk at offset 0 starts a new file, the rest append); the
caller saves, verifies and installs the snapshot, then calls ``snapshot_installed``, and
only then does the core reply that it is done (rules 5-8). tests/sim/test_mutants.py runs
each test with its rule broken and requires it to fail.
"""

from __future__ import annotations

import random

from leifdb.raft.core import Config, PersistentState, RaftCore
from leifdb.raft.messages import (
    Entry,
    HardState,
    InstallSnapshot,
    InstallSnapshotReply,
    Ready,
    SnapshotChunk,
    SnapshotMeta,
)

IDS = ("a", "b", "c")
DATA = bytes(range(150))  # three chunks: 64 + 64 + 22 bytes
META = SnapshotMeta(10, 2, checksum=1234, size=len(DATA))


def follower(entries: list[Entry] | None = None, term: int = 2, commit: int = 0) -> RaftCore:
    state = PersistentState(HardState(term, None, commit), entries=entries or [])
    return RaftCore(Config("b", IDS), state, random.Random(1))


def chunk(offset: int, size: int = 64, term: int = 2, meta: SnapshotMeta = META) -> InstallSnapshot:
    data = DATA[offset : offset + size]
    return InstallSnapshot(
        "a", "b", term, meta.last_included_index, meta.last_included_term,
        offset=offset, data=data, done=offset + len(data) >= meta.size,
        checksum=meta.checksum, total_size=meta.size,
    )


def drain(core: RaftCore) -> Ready:
    ready = core.ready()
    core.advance(ready)
    return ready


def replies(ready: Ready) -> list[tuple[int, bool]]:
    """``(next_offset, done)`` of every InstallSnapshotReply in ``ready``."""
    return [(m.next_offset, m.done) for m in ready.messages if isinstance(m, InstallSnapshotReply)]


def receive_all(core: RaftCore) -> None:
    for offset in (0, 64, 128):
        core.step(chunk(offset))
        drain(core)


def test_chunk_from_an_older_term_is_refused_with_the_current_term():
    """Rule 1: reply immediately if term < currentTerm (nothing written, no new leader)."""
    core = follower(term=3)

    core.step(chunk(0, term=2))
    ready = drain(core)

    assert ready.snapshot_chunks == []
    (reply,) = ready.messages
    assert isinstance(reply, InstallSnapshotReply) and reply.term == 3 and not reply.done
    assert core.leader_id is None


def test_a_new_snapshot_starts_only_at_offset_zero():
    """Rule 2: a new snapshot file is created by its first chunk (offset 0); a later chunk
    of a snapshot not being received is answered with "start at 0"."""
    core = follower()

    core.step(chunk(64))
    refused = drain(core)
    core.step(chunk(0))
    started = drain(core)

    assert refused.snapshot_chunks == [] and replies(refused) == [(0, False)]
    assert started.snapshot_chunks == [SnapshotChunk(META, 0, DATA[:64], False)]
    assert replies(started) == [(64, False)]


def test_a_chunk_is_taken_only_at_the_expected_offset():
    """Rule 3: data is written at its offset, in order: a duplicated chunk is not written
    twice and a chunk past a gap is not written; both are answered with the offset
    expected next."""
    core = follower()
    core.step(chunk(0))
    drain(core)

    core.step(chunk(0))
    duplicate = drain(core)
    core.step(chunk(128))
    gap = drain(core)

    assert duplicate.snapshot_chunks == [] and replies(duplicate) == [(64, False)]
    assert gap.snapshot_chunks == [] and replies(gap) == [(64, False)]


def test_each_chunk_but_the_last_is_acknowledged_with_the_next_offset():
    """Rule 4: reply and wait for more data chunks if done is false."""
    core = follower()
    answers = []
    for offset in (0, 64):
        core.step(chunk(offset))
        answers += replies(drain(core))
    assert answers == [(64, False), (128, False)]


def test_a_snapshot_older_than_the_commit_index_is_not_installed():
    """Rule 5: a snapshot older than what the follower has (it committed index 12, and may
    have applied it) is not installed over it; the leader hears "done" and moves on."""
    core = follower(entries=[Entry(2, i) for i in range(1, 13)], commit=12)

    core.step(chunk(0))
    ready = drain(core)

    assert ready.snapshot_chunks == []
    assert replies(ready) == [(0, True)]


def test_the_last_chunk_is_answered_only_once_installed():
    """Rules 5-8: the follower says "done" only after the caller saved, verified and
    installed the snapshot; a snapshot that failed verification is asked for again."""
    core = follower()
    for offset in (0, 64):
        core.step(chunk(offset))
        drain(core)

    core.step(chunk(128))
    last = drain(core)
    assert last.snapshot_chunks[-1].done and replies(last) == []

    core.snapshot_installed(META, ok=False)
    assert replies(drain(core)) == [(0, False)]
    receive_all(core)
    core.snapshot_installed(META, ok=True)
    assert replies(drain(core)) == [(0, True)]


def test_entries_following_the_snapshots_last_entry_are_kept():
    """Rule 6: the log holds the snapshot's last entry (same index and term), so the
    entries after it stay (the follower may have acknowledged them)."""
    core = follower(entries=[Entry(2, i) for i in range(1, 16)])
    receive_all(core)

    core.snapshot_installed(META, ok=True)

    assert core.log.snapshot_index == 10
    assert [e.index for e in core.log.entries] == [11, 12, 13, 14, 15]


def test_a_log_that_conflicts_with_the_snapshot_is_discarded():
    """Rule 7: the log's entry at the snapshot's index has another term, so nothing after
    it is known to follow the snapshot: the whole log goes."""
    core = follower(entries=[Entry(1, i) for i in range(1, 16)])
    receive_all(core)

    core.snapshot_installed(META, ok=True)

    assert core.log.snapshot_index == 10 and core.log.entries == []
    assert core.log.last_index() == 10 and core.log.last_term() == 2


def test_an_installed_snapshot_becomes_the_applied_state():
    """Rule 8: the state machine was reset from the snapshot, so the core counts it as
    applied and committed, and hands out only entries after it."""
    core = follower(entries=[Entry(2, i) for i in range(1, 13)])
    receive_all(core)

    core.snapshot_installed(META, ok=True)
    status = core.status()

    assert status.applied_index == status.commit_index == 10
    assert drain(core).committed == []


def test_a_newer_snapshot_replaces_a_partial_one():
    """Rule 5: a partial snapshot is discarded when the leader starts sending a newer one
    (it compacted again meanwhile and no longer has the old one)."""
    newer = SnapshotMeta(12, 2, checksum=99, size=len(DATA))
    core = follower()
    core.step(chunk(0))
    drain(core)

    core.step(chunk(0, meta=newer))
    started = drain(core)

    assert started.snapshot_chunks == [SnapshotChunk(newer, 0, DATA[:64], False)]
    assert replies(started) == [(64, False)]
