"""Hypothesis strategies for valid wire values (shared by the wire and transport tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from leifdb.kv.commands import (
    Compare,
    Condition,
    Delete,
    Fence,
    Get,
    LeaseCheckpoint,
    LeaseGrant,
    LeaseRenew,
    LeaseRevoke,
    Put,
    Range,
    Txn,
)
from leifdb.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    Entry,
    EntryType,
    InstallSnapshot,
    InstallSnapshotReply,
    Member,
    ReadIndexReply,
    ReadIndexRequest,
    RequestVote,
    RequestVoteReply,
    TimeoutNow,
)

U64 = 2**64 - 1
# Protobuf strings are UTF-8: no lone surrogates.
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
node_ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
u64 = st.one_of(st.integers(0, 1000), st.integers(0, U64))
terms = st.one_of(st.integers(1, 1000), st.integers(1, U64))
payloads = st.binary(max_size=64)


@st.composite
def src_dst(draw):
    src = draw(node_ids)
    dst = draw(node_ids.filter(lambda d: d != src))
    return src, dst


@st.composite
def log_position(draw, term):
    """(index, term) of a log position known to a node at ``term``: (0, 0) or both >= 1."""
    index = draw(st.one_of(st.just(0), u64))
    if index == 0:
        return 0, 0
    return index, draw(st.integers(1, term))


@st.composite
def request_votes(draw):
    src, dst = draw(src_dst())
    term = draw(terms)
    index, last_term = draw(log_position(term))
    return RequestVote(src, dst, term, index, last_term, draw(st.booleans()),
                       draw(st.booleans()))


@st.composite
def request_vote_replies(draw):
    src, dst = draw(src_dst())
    return RequestVoteReply(src, dst, draw(u64), draw(st.booleans()), draw(st.booleans()))


@st.composite
def timeout_nows(draw):
    src, dst = draw(src_dst())
    return TimeoutNow(src, dst, draw(terms))


@st.composite
def entries_after(draw, prev_index, prev_term, term, max_entries=6):
    n = draw(st.integers(0, min(max_entries, U64 - prev_index)))
    entry_terms = sorted(draw(st.lists(st.integers(max(prev_term, 1), term), min_size=n,
                                       max_size=n)))
    return tuple(
        Entry(t, prev_index + 1 + i, draw(st.sampled_from(EntryType)), draw(payloads))
        for i, t in enumerate(entry_terms)
    )


@st.composite
def append_entries(draw, max_entries=6):
    src, dst = draw(src_dst())
    term = draw(terms)
    prev_index, prev_term = draw(log_position(term))
    entries = draw(entries_after(prev_index, prev_term, term, max_entries))
    return AppendEntries(src, dst, term, prev_index, prev_term, entries, draw(u64), draw(u64))


@st.composite
def append_entries_replies(draw):
    src, dst = draw(src_dst())
    return AppendEntriesReply(src, dst, draw(u64), draw(st.booleans()), draw(u64), draw(u64),
                              draw(u64), draw(u64))


@st.composite
def install_snapshots(draw):
    src, dst = draw(src_dst())
    term = draw(terms)
    data = draw(payloads)
    offset = draw(st.integers(0, 10_000))
    done = draw(st.booleans())
    total = offset + len(data) + (0 if done else draw(st.integers(0, 10_000)))
    return InstallSnapshot(src, dst, term, draw(st.integers(1, U64)), draw(st.integers(1, term)),
                           offset, data, done, draw(st.integers(0, 2**32 - 1)), total)


@st.composite
def install_snapshot_replies(draw):
    src, dst = draw(src_dst())
    return InstallSnapshotReply(src, dst, draw(u64), draw(u64), draw(u64), draw(st.booleans()))


@st.composite
def read_index_requests(draw):
    src, dst = draw(src_dst())
    return ReadIndexRequest(src, dst, draw(u64), draw(u64))


@st.composite
def read_index_replies(draw):
    src, dst = draw(src_dst())
    return ReadIndexReply(src, dst, draw(u64), draw(u64), draw(u64), draw(st.booleans()))


MESSAGES = {
    "RequestVote": request_votes(),
    "RequestVoteReply": request_vote_replies(),
    "AppendEntries": append_entries(),
    "AppendEntriesReply": append_entries_replies(),
    "InstallSnapshot": install_snapshots(),
    "InstallSnapshotReply": install_snapshot_replies(),
    "ReadIndexRequest": read_index_requests(),
    "ReadIndexReply": read_index_replies(),
    "TimeoutNow": timeout_nows(),
}
messages = st.one_of(*MESSAGES.values())

conditions = st.one_of(
    st.none(),
    st.just(Condition()),
    st.builds(Condition, prev_value=text),
    st.builds(Condition, prev_revision=u64),
    st.just(Condition(must_be_absent=True)),
)
keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24)
compare_ops = st.sampled_from(["equal", "not_equal", "greater", "less"])
compares = st.one_of(
    st.builds(Compare, keys, st.just("value"), compare_ops, text),
    st.builds(Compare, keys, st.sampled_from(["revision", "create_revision", "lease"]),
              compare_ops, u64),
    st.builds(Compare, keys, st.just("exists"), compare_ops, st.booleans()),
)
positive = st.one_of(st.integers(1, 1000), st.integers(1, U64))
leases = st.one_of(st.just(0), positive)  # a put's lease: 0 for none
fences = st.none() | st.builds(Fence, text, positive)
txn_ops = st.one_of(
    st.builds(Put, keys, text, st.none(), leases),
    st.builds(Delete, keys),
    st.builds(Get, keys),
    st.builds(Range, text, st.none() | text, st.none() | st.integers(1, U64)),
)
txns = st.builds(
    Txn,
    st.lists(compares, max_size=4).map(tuple),
    st.lists(txn_ops, max_size=5).map(tuple),
    st.lists(txn_ops, max_size=5).map(tuple),
)
lease_commands = st.one_of(
    st.builds(LeaseGrant, positive),
    st.builds(LeaseRenew, st.lists(positive, max_size=5).map(tuple)),
    st.builds(LeaseCheckpoint, st.lists(st.tuples(positive, u64), max_size=5).map(tuple)),
    st.builds(LeaseRevoke, positive, u64),
)
commands = st.one_of(
    st.builds(Put, keys, text, conditions, leases, st.just(0), fences),
    st.builds(Put, keys, text, conditions, st.just(0), positive, fences),  # grants a lease
    st.builds(Delete, keys, conditions, fences),
    txns,
    lease_commands,
)

hosts = st.one_of(st.sampled_from(["127.0.0.1", "[::1]", "node-1.example"]),
                  st.from_regex(r"[a-z][a-z0-9.-]{0,15}", fullmatch=True))
addresses = st.builds("{}:{}".format, hosts, st.integers(1, 65535))
memberships = st.lists(
    st.builds(Member, node_ids, addresses, st.one_of(st.just(""), addresses), st.booleans()),
    min_size=1, max_size=7, unique_by=lambda m: m.id,
)
incarnations = st.from_regex(r"[0-9a-f]{1,32}", fullmatch=True)
