"""``leifdb.service.wait.Waits``: pending proposals and reads, and their shared timers."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from leifdb.errors import OutcomeUnknown, Unavailable
from leifdb.kv.commands import ApplyResult
from leifdb.service.wait import Waits


def _waits(proposal_timeout: float = 5.0, read_timeout: float = 3.0) -> tuple[Clock, Waits]:
    clock = Clock()
    return clock, Waits(clock, proposal_timeout=proposal_timeout, read_timeout=read_timeout)


class _Outcome:
    """Where a Deferred landed: ``value`` or ``error`` (the exception)."""

    def __init__(self, d) -> None:
        self.value = self.error = None
        self.fired = False
        d.addCallbacks(self._ok, self._failed)

    def _ok(self, value) -> None:
        self.fired, self.value = True, value

    def _failed(self, failure) -> None:
        self.fired, self.error = True, failure.value


def _result(index: int) -> ApplyResult:
    return ApplyResult(ok=True, revision=index)


# -- proposals


def test_a_proposal_fires_with_the_result_of_its_entry():
    _, waits = _waits()
    out = _Outcome(waits.proposed(3, 2))
    waits.applied(2, 2, _result(2))
    assert not out.fired
    waits.applied(3, 2, _result(3))
    assert out.value == _result(3) and waits.pending_proposals == 0


@pytest.mark.parametrize("term, result", [(3, _result(4)), (2, None)], ids=["other term", "not a command"])
def test_another_entry_at_the_proposals_index_makes_its_outcome_unknown(term, result):
    """A new leader overwrote the proposal (another term at its index), or the entry there
    is no command (a no-op)."""
    _, waits = _waits()
    out = _Outcome(waits.proposed(4, 2))
    waits.applied(4, term, result)
    assert isinstance(out.error, OutcomeUnknown)


def test_a_second_proposal_at_the_same_index_ends_the_first():
    """A node that lost leadership and won it again with a shorter log hands out an index
    twice: the first proposal was overwritten, and must not wait forever."""
    clock, waits = _waits()
    first = _Outcome(waits.proposed(5, 2))
    second = _Outcome(waits.proposed(5, 4))
    assert isinstance(first.error, OutcomeUnknown)
    waits.applied(5, 4, _result(5))
    assert second.value == _result(5)
    clock.advance(10)
    assert waits.pending_proposals == 0


def test_proposal_timeouts_share_one_timer_and_expire_in_order():
    clock, waits = _waits(proposal_timeout=5.0)
    a = _Outcome(waits.proposed(1, 1))
    clock.advance(1)
    b = _Outcome(waits.proposed(2, 1))
    clock.advance(1)
    c = _Outcome(waits.proposed(3, 1))
    assert len(clock.getDelayedCalls()) == 1
    waits.applied(2, 1, _result(2))
    assert b.value == _result(2)
    clock.advance(3)  # t=5: a's deadline
    assert isinstance(a.error, OutcomeUnknown) and not c.fired
    assert len(clock.getDelayedCalls()) == 1  # re-armed for c
    clock.advance(1.9)
    assert not c.fired
    clock.advance(0.1)  # t=7
    assert isinstance(c.error, OutcomeUnknown)
    assert clock.getDelayedCalls() == [] and waits.pending_proposals == 0


def test_a_timeout_for_an_index_re_proposed_in_another_term_leaves_the_new_proposal():
    clock, waits = _waits(proposal_timeout=5.0)
    _Outcome(waits.proposed(1, 1))
    waits.leadership_lost()
    clock.advance(2)
    new = _Outcome(waits.proposed(1, 2))
    clock.advance(3)  # the old deadline: for (1, term 1), not (1, term 2)
    assert not new.fired
    clock.advance(2)
    assert isinstance(new.error, OutcomeUnknown)


def test_leadership_lost_fails_every_pending_proposal():
    _, waits = _waits()
    outs = [_Outcome(waits.proposed(i, 1)) for i in (1, 2, 3)]
    waits.leadership_lost()
    assert all(isinstance(o.error, OutcomeUnknown) for o in outs)
    waits.applied(1, 1, _result(1))  # nothing left to answer
    assert waits.pending_proposals == 0


# -- reads


def test_a_confirmed_read_fires_at_once_when_its_index_is_applied():
    _, waits = _waits()
    out = _Outcome(waits.read_requested(7))
    waits.read_confirmed(7, read_index=5, applied_index=5)
    assert out.fired and out.error is None


def test_a_confirmed_read_waits_for_the_state_machine_to_apply_its_index():
    _, waits = _waits()
    late = _Outcome(waits.read_requested(1))
    later = _Outcome(waits.read_requested(2))
    waits.read_confirmed(2, read_index=9, applied_index=4)
    waits.read_confirmed(1, read_index=6, applied_index=4)
    waits.applied_to(5)
    assert not late.fired and not later.fired
    waits.applied_to(8)
    assert late.fired and not later.fired
    waits.applied_to(9)
    assert later.fired and later.error is None


def test_a_refused_or_unconfirmed_read_fails():
    clock, waits = _waits(read_timeout=3.0)
    refused = _Outcome(waits.read_requested(1))
    slow = _Outcome(waits.read_requested(2))
    waits.read_refused(1, Unavailable("no leader"))
    assert isinstance(refused.error, Unavailable)
    clock.advance(3)
    assert isinstance(slow.error, Unavailable)
    waits.read_confirmed(2, 1, 1)  # too late: ignored
    assert clock.getDelayedCalls() == []


def test_fail_all_fails_everything_pending_and_stops_the_timers():
    clock, waits = _waits()
    proposal = _Outcome(waits.proposed(1, 1))
    unconfirmed = _Outcome(waits.read_requested(1))
    applying = _Outcome(waits.read_requested(2))
    waits.read_confirmed(2, read_index=10, applied_index=1)
    write_error, read_error = OutcomeUnknown("stopping"), Unavailable("stopping")
    waits.fail_all(write_error, read_error)
    assert proposal.error is write_error
    assert unconfirmed.error is read_error and applying.error is read_error
    assert clock.getDelayedCalls() == []
    waits.applied_to(10)  # nothing fires twice
