"""Request/reply correlation and request timeouts on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from leifdb.raft.messages import AppendEntries, RequestVote
from leifdb.transport.correlation import PendingRequests, ReplyStamps


def pending(timeout=5.0):
    clock = Clock()
    timeouts = []
    return clock, timeouts, PendingRequests(clock, timeout, timeouts.append)


def test_an_unanswered_request_times_out_once():
    clock, timeouts, reqs = pending()
    reqs.sent("b", AppendEntries, 1)
    reqs.sent("b", AppendEntries, 2)
    clock.advance(4.9)
    assert timeouts == []
    clock.advance(0.2)
    assert timeouts == ["b"]
    clock.advance(100)
    assert timeouts == ["b"] and clock.getDelayedCalls() == []


def test_a_reply_answers_every_request_of_its_type_up_to_its_id():
    clock, timeouts, reqs = pending()
    for i in (1, 2, 3):
        reqs.sent("b", AppendEntries, i)
    reqs.answered("b", AppendEntries, 2)
    assert reqs.count("b") == 1
    reqs.answered("b", AppendEntries, 3)
    clock.advance(10)
    assert timeouts == []
    assert clock.getDelayedCalls() == []


def test_a_reply_of_another_type_answers_nothing():
    clock, timeouts, reqs = pending()
    reqs.sent("b", RequestVote, 1)
    reqs.answered("b", AppendEntries, 1)
    clock.advance(6)
    assert timeouts == ["b"]


def test_the_deadline_follows_the_oldest_unanswered_request():
    clock, timeouts, reqs = pending()
    reqs.sent("b", AppendEntries, 1)
    clock.advance(3)
    reqs.sent("b", AppendEntries, 2)
    reqs.answered("b", AppendEntries, 1)
    clock.advance(2.5)  # request 1's deadline passed, but it was answered
    assert timeouts == []
    clock.advance(3)  # request 2 is 5.5 s old
    assert timeouts == ["b"]


def test_peers_time_out_independently():
    clock, timeouts, reqs = pending()
    reqs.sent("b", AppendEntries, 1)
    reqs.sent("c", AppendEntries, 2)
    reqs.answered("c", AppendEntries, 2)
    clock.advance(6)
    assert timeouts == ["b"]


def test_forget_and_clear_cancel_the_timers():
    clock, timeouts, reqs = pending()
    reqs.sent("b", AppendEntries, 1)
    reqs.sent("c", AppendEntries, 2)
    reqs.forget("b")
    assert reqs.count("b") == 0
    reqs.clear()
    clock.advance(10)
    assert timeouts == [] and clock.getDelayedCalls() == []


def test_pending_requests_per_peer_are_bounded():
    clock = Clock()
    reqs = PendingRequests(clock, 5.0, lambda peer: None, max_pending_per_peer=3)
    for i in range(10):
        reqs.sent("b", AppendEntries, i)
    assert reqs.count("b") == 3


def test_reply_stamps_carry_the_newest_request_once():
    stamps = ReplyStamps()
    stamps.request_received("a", AppendEntries, 4)
    stamps.request_received("a", AppendEntries, 5)
    stamps.request_received("a", RequestVote, 9)
    assert stamps.take("a", AppendEntries) == 5
    assert stamps.take("a", AppendEntries) == 0
    assert stamps.take("b", RequestVote) == 0
    stamps.forget("a")
    assert stamps.take("a", RequestVote) == 0
