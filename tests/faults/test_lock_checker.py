"""The lock checker bites: planted violations in small lock histories are flagged, each by
the property it breaks, and the valid history they are planted in passes. Also the lock
client's event files and answer classification. Pure and fast: no processes.

The baseline: lc0 holds lock ``a`` with token 12 (lease 10) and writes twice; lc1 (lease
11) asks meanwhile and gets token 14 once lc0 is paused past its lease; lc1 writes and
reads; the woken lc0 writes with its stale token and is refused (412); lc1 releases.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

from tests.faults.clients import Answer
from tests.faults.linearizability import check
from tests.faults.lockclient import (
    classify_grant,
    classify_keepalive,
    classify_lock,
    classify_read,
    classify_revoke,
    classify_write,
)
from tests.faults.lockfleet import as_kv_ops
from tests.faults.locks import (
    LockOp,
    check_locks,
    dump_lock_history,
    holder_key,
    load_lock_history,
    lock_ops_from_events,
    write_value,
)


def _lock(client: int, lease: int, token: int, invoke: float, complete: float | None,
          outcome: str = "ok", at: int | None = None) -> LockOp:
    ok = outcome == "ok"
    return LockOp(client, "lock", "a", lease, invoke, complete, outcome,
                  token=token if ok else 0, key=holder_key("a", lease) if ok else None,
                  revision=token if ok else None, at=at)


def _write(client: int, token: int, seq: int, invoke: float, complete: float | None,
           outcome: str = "ok", revision: int | None = None, fenced: bool = False,
           status: int | None = None, why: str = "") -> LockOp:
    return LockOp(client, "write", "a", 0, invoke, complete, outcome, token=token,
                  value=write_value(client, token, seq), revision=revision, fenced=fenced,
                  status=status, why=why)


def _read(client: int, value: str | None, revision: int | None, invoke: float,
          complete: float) -> LockOp:
    return LockOp(client, "read", "a", 0, invoke, complete, "ok", value=value, revision=revision)


V1, V2, V3, V4 = (write_value(0, 12, 1), write_value(0, 12, 2), write_value(1, 14, 3),
                  write_value(0, 12, 4))


def baseline() -> list[LockOp]:
    return [
        LockOp(0, "grant", "", 10, 0.0, 0.1, "ok", revision=10),
        LockOp(1, "grant", "", 11, 0.0, 0.1, "ok", revision=11),
        _lock(0, 10, 12, 0.2, 0.3, at=12),
        _lock(1, 11, 14, 0.25, 2.0, at=18),
        _write(0, 12, 1, 0.4, 0.5, revision=13),
        _write(0, 12, 2, 0.6, 0.7, revision=15),
        LockOp(0, "keepalive", "", 10, 2.4, 2.45, "fail", status=404, why="404"),
        _write(1, 14, 3, 2.1, 2.2, revision=20),
        _read(1, V3, 20, 2.3, 2.4),
        _write(0, 12, 4, 2.5, 2.6, outcome="fail", fenced=True, status=412, why="412"),
        LockOp(1, "release", "a", 11, 2.7, 2.8, "ok", revision=22),
        LockOp(1, "revoke", "", 11, 2.8, 2.9, "ok", revision=23),
    ]


FINAL = {"a": (V3, 20)}
# What the nodes' histories hold of the fenced and lock keys: complete up to revision 23.
# Lease 10 expires at revision 18 (lc0 paused), which hands the lock to lease 11.
COMMITTED = [
    (12, "put", "_lock/a/10", "lc0"),
    (13, "put", "fenced/a", V1),
    (14, "put", "_lock/a/11", "lc1"),
    (15, "put", "fenced/a", V2),
    (18, "delete", "_lock/a/10", None),
    (20, "put", "fenced/a", V3),
    (22, "delete", "_lock/a/11", None),
]
COMPLETE_TO = 23


def _swap(ops: list[LockOp], index: int, **changes: object) -> list[LockOp]:
    out = list(ops)
    out[index] = replace(out[index], **changes)  # type: ignore[arg-type]
    return out


def test_the_baseline_passes_every_check() -> None:
    result = check_locks(baseline(), final=FINAL, committed=COMMITTED, complete_to=COMPLETE_TO)
    assert result.ok, result.summary()
    c = result.counts
    assert (c["acquired"], c["accepted"], c["rejected"]) == (2, 3, 1)
    assert (c["reads"], c["committed"]) == (1, 3)
    assert (c["fences_replayed"], c["acquisitions_replayed"]) == (3, 2)
    assert c["lease_lost"] == 1
    assert "ok" in result.summary()


def test_the_baseline_is_linearizable_as_key_value_operations() -> None:
    kv = as_kv_ops(baseline())
    assert [op.kind for op in kv] == ["put", "put", "put", "read", "put"]
    assert check(kv, timeout=10).ok is True


# Each case: a planted change to the baseline (ops, final, committed) and the words of the
# violation it must produce.
def _stale_write_accepted() -> tuple:
    # lc0's stale write (sent after lc1 acquired) is accepted at revision 21, after lc1's 20.
    ops = _swap(baseline(), 9, outcome="ok", fenced=False, revision=21, status=200, why="200")
    return ops, {"a": (V4, 21)}, COMMITTED + [(21, "put", "fenced/a", V4)]


def _interleaved_by_revision_only() -> tuple:
    # Sent before lc1's acquisition completed (so real time allows it), but committed after
    # lc1's write: only the revision order shows the two holders.
    ops = _swap(baseline(), 9, outcome="ok", fenced=False, revision=21, invoke=1.9,
                complete=2.65, status=200, why="200")
    return ops, {"a": (V4, 21)}, None


def _sent_after_newer_acquisition() -> tuple:
    # lc1 never writes; lc0's write sent after lc1 acquired is accepted.
    ops = [op for op in baseline() if not (op.client == 1 and op.kind in ("write", "read"))]
    ops = [replace(op, outcome="ok", fenced=False, revision=21, status=200) if op.value == V4
           else op for op in ops]
    return ops, {"a": (V4, 21)}, None


def _unknown_write_committed_out_of_order() -> tuple:
    # lc0's stale write timed out, yet the nodes' history has it after lc1's write.
    ops = _swap(baseline(), 9, outcome="unknown", fenced=False, complete=None, status=None)
    return ops, FINAL, COMMITTED + [(21, "put", "fenced/a", V4)]


def _token_shared() -> tuple:
    ops = _swap(baseline(), 3, token=12, revision=12)
    return ops, FINAL, None


def _token_order_against_real_time() -> tuple:
    # lc1 first asked (0.35) after lc0 had the lock (0.3), yet got a lower token.
    ops = _swap(baseline(), 3, invoke=0.35)
    ops = _swap(ops, 2, token=16, revision=16)
    ops = [replace(op, token=16, value=op.value.replace("t12", "t16")) if op.kind == "write"
           and op.token == 12 else op for op in ops]
    return ops, FINAL, None


def _token_below_lease() -> tuple:
    return _swap(baseline(), 2, lease=13, key=holder_key("a", 13)), FINAL, None


def _wrong_holder_key() -> tuple:
    return _swap(baseline(), 2, key="_lock/a/99"), FINAL, None


def _write_before_key_existed() -> tuple:
    ops = _swap(baseline(), 4, revision=11)
    return ops, FINAL, [(11, "put", "fenced/a", V1)] + COMMITTED[2:]


def _two_writes_one_revision() -> tuple:
    return _swap(baseline(), 5, revision=13), FINAL, None


def _write_after_release() -> tuple:
    ops = baseline() + [_write(1, 14, 5, 3.0, 3.1, revision=24)]
    return ops, {"a": (write_value(1, 14, 5), 24)}, None


def _rejected_value_read() -> tuple:
    ops = baseline() + [_read(1, V4, 21, 2.7, 2.75)]
    return ops, FINAL, None


def _rejected_value_final() -> tuple:
    return baseline(), {"a": (V4, 21)}, None


def _rejected_value_committed() -> tuple:
    return baseline(), FINAL, COMMITTED + [(21, "put", "fenced/a", V4)]


def _read_at_wrong_revision() -> tuple:
    return _swap(baseline(), 8, revision=19), FINAL, None


def _read_of_unwritten_value() -> tuple:
    return _swap(baseline(), 8, value="lc9-t99-9"), FINAL, None


def _final_absent() -> tuple:
    return baseline(), {"a": (None, None)}, None


def _final_lost_write() -> tuple:
    return baseline(), {"a": (V2, 15)}, None


def _fenced_key_deleted() -> tuple:
    return baseline(), FINAL, COMMITTED + [(21, "delete", "fenced/a", None)]


def _fenced_put_committed_under_another_holder() -> tuple:
    # lc1's write (sent while still waiting: a client bug) timed out, but the nodes committed
    # it at revision 16, while lease 10 still held: tokens still never decrease, yet the
    # fence let a non-holder write.
    early = _write(1, 14, 9, 0.9, None, outcome="unknown")
    return baseline() + [early], FINAL, sorted(COMMITTED + [(16, "put", "fenced/a", early.value)])


def _acquired_before_its_key_held() -> tuple:
    # lc1's answer was stamped with revision 16: lease 10's key still held then.
    return _swap(baseline(), 3, at=16), FINAL, COMMITTED


def _fenced_put_with_no_holder() -> tuple:
    # lc1 writes after its release, the answer is lost, the nodes committed it.
    late = _write(1, 14, 9, 2.85, None, outcome="unknown")
    return baseline() + [late], FINAL, COMMITTED + [(23, "put", "fenced/a", late.value)]


CASES = {
    "fenced put committed under another holder": (_fenced_put_committed_under_another_holder,
                                                  "(token 14) was committed at revision 16 with "
                                                  "token 12 holding"),
    "acquired before its key held": (_acquired_before_its_key_held,
                                     "answered at revision 16, but in the committed history its "
                                     "key held only from revision 18"),
    "fenced put with no holder": (_fenced_put_with_no_holder,
                                  "FENCE BROKEN: 'lc1-t14-9' (token 14) was committed at "
                                  "revision 23 with no holder"),
    "stale write accepted": (_stale_write_accepted, "TWO HOLDERS"),
    "interleaved by revision only": (_interleaved_by_revision_only, "TWO HOLDERS"),
    "sent after newer acquisition": (_sent_after_newer_acquisition,
                                     "sent after token 14 had acquired the lock"),
    "unknown write committed out of order": (_unknown_write_committed_out_of_order,
                                             "TWO HOLDERS: 'lc0-t12-4' (token 12) was committed"),
    "token shared": (_token_shared, "token 12 was given to two acquisitions"),
    "token order against real time": (_token_order_against_real_time,
                                      "its token 16 is not below 14"),
    "token below lease": (_token_below_lease, "token 12 is not above lease 13"),
    "wrong holder key": (_wrong_holder_key, "the holder key is '_lock/a/99'"),
    "write before key existed": (_write_before_key_existed, "before the holder's key existed"),
    "two writes one revision": (_two_writes_one_revision, "two accepted writes at revision 13"),
    "write after release": (_write_after_release, "after its holder's key was released"),
    "rejected value read": (_rejected_value_read, "rejected by its fence (412)"),
    "rejected value final": (_rejected_value_final, "the final read saw 'lc0-t12-4'"),
    "rejected value committed": (_rejected_value_committed,
                                 "the committed change at revision 21 saw 'lc0-t12-4'"),
    "read at wrong revision": (_read_at_wrong_revision,
                               "at revision 19, but its write was accepted at revision 20"),
    "read of unwritten value": (_read_of_unwritten_value, "which no fenced write wrote"),
    "final absent": (_final_absent, "absent at the end"),
    "final lost write": (_final_lost_write, "older than an accepted write"),
    "fenced key deleted": (_fenced_key_deleted, "deleted at revision 21"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_planted_violation_is_flagged(name: str) -> None:
    make, words = CASES[name]
    ops, final, committed = make()
    result = check_locks(ops, final=final, committed=committed, complete_to=COMPLETE_TO)
    assert not result.ok, name
    assert any(words in v for v in result.violations), result.summary()
    assert "VIOLATION" in result.summary()


def test_two_holders_report_shows_both_writes_and_both_acquisitions() -> None:
    ops, final, _ = _stale_write_accepted()
    text = next(v for v in check_locks(ops, final=final).violations if "TWO HOLDERS" in v)
    assert "lc1 write fenced/a='lc1-t14-3' fence t14 -> ok@20" in text
    assert "lc0 write fenced/a='lc0-t12-4' fence t12 -> ok@21" in text
    assert "lc0 lock 'a' with lease 10 -> token 12" in text
    assert "lc1 lock 'a' with lease 11 -> token 14" in text


def test_the_stale_write_breaks_linearizability_too_when_read_back() -> None:
    """A 412 write's value read back is also a read of a value never written, for the
    key-value checker (the rejected put is a failed, ignored write)."""
    ops = baseline() + [_read(1, V4, 21, 2.7, 2.75)]
    assert check(as_kv_ops(ops), timeout=10).ok is False


def test_unknown_and_failed_acquisitions_and_writes_constrain_nothing() -> None:
    ops = baseline() + [
        _lock(2, 30, 0, 1.0, None, outcome="unknown"),
        _lock(2, 31, 0, 1.0, 1.5, outcome="fail"),
        _write(1, 14, 9, 2.25, None, outcome="unknown"),
        _write(1, 14, 10, 2.25, 2.3, outcome="fail"),
    ]
    assert check_locks(ops, final=FINAL, committed=COMMITTED, complete_to=COMPLETE_TO).ok


def test_an_unknown_write_committed_in_its_holders_time_passes() -> None:
    late = _write(1, 14, 9, 2.25, None, outcome="unknown")
    committed = COMMITTED + [(21, "put", "fenced/a", late.value)]
    result = check_locks(baseline() + [late], final={"a": (late.value, 21)},
                         committed=committed, complete_to=COMPLETE_TO)
    assert result.ok, result.summary()


def test_the_replay_needs_a_history_complete_from_revision_one() -> None:
    """Without it only the facts that need no replay are checked: the same history that
    fails with ``complete_to`` passes without."""
    ops, final, committed = _acquired_before_its_key_held()
    assert not check_locks(ops, final=final, committed=committed, complete_to=COMPLETE_TO).ok
    assert check_locks(ops, final=final, committed=committed[2:]).ok
    assert not check_locks(ops, final=final, committed=committed, complete_to=17).ok
    assert check_locks(ops, final=final, committed=committed, complete_to=15).ok


def test_the_lock_history_round_trips_through_json() -> None:
    out = io.StringIO()
    dump_lock_history(baseline(), out)
    assert load_lock_history(io.StringIO(out.getvalue())) == baseline()


def test_lock_ops_from_events_pairs_invokes_with_completions() -> None:
    lines = [
        {"ev": "invoke", "op": 1, "client": 3, "kind": "grant", "t": 0.5},
        {"ev": "complete", "op": 1, "t": 0.6, "outcome": "ok", "why": "200", "status": 200,
         "lease": 40, "revision": 40},
        {"ev": "invoke", "op": 2, "client": 3, "kind": "lock", "lock": "a", "lease": 40, "t": 0.7},
        {"ev": "complete", "op": 2, "t": 0.9, "outcome": "ok", "why": "200", "status": 200,
         "token": 41, "key": "_lock/a/40", "revision": 41},
        {"ev": "invoke", "op": 3, "client": 3, "kind": "write", "lock": "a", "token": 41,
         "value": "lc3-t41-1", "t": 1.0},
        {"ev": "complete", "op": 3, "t": 1.1, "outcome": "fail", "why": "412", "status": 412,
         "fenced": True},
        {"ev": "invoke", "op": 4, "client": 3, "kind": "read", "lock": "a", "t": 1.2},
        {"ev": "complete", "op": 4, "t": 1.3, "outcome": "ok", "why": "200", "status": 200,
         "value": "lc2-t30-1", "revision": 35},
        {"ev": "unexpected", "client": 3, "text": "read answered 400"},
        {"ev": "invoke", "op": 5, "client": 3, "kind": "write", "lock": "a", "token": 41,
         "value": "lc3-t41-2", "t": 1.4},
    ]
    text = [json.dumps(x) for x in lines] + ['{"ev": "comp']  # torn by a SIGKILL
    ops, notes = lock_ops_from_events(text)
    assert notes == ["lc3: read answered 400"]
    grant, lock, rejected, read, lost = ops
    assert (grant.kind, grant.lease, grant.outcome) == ("grant", 40, "ok")
    assert (lock.token, lock.key, lock.lease, lock.complete) == (41, "_lock/a/40", 40, 0.9)
    assert rejected.fenced and rejected.outcome == "fail" and rejected.value == "lc3-t41-1"
    assert (read.value, read.revision) == ("lc2-t30-1", 35)
    assert (lost.outcome, lost.complete, lost.value) == ("unknown", None, "lc3-t41-2")


def test_a_malformed_line_before_the_last_is_a_note() -> None:
    ops, notes = lock_ops_from_events(["garbage", json.dumps(
        {"ev": "invoke", "op": 1, "client": 0, "kind": "grant", "t": 0.1})])
    assert len(ops) == 1 and notes == ["line 1: not JSON: 'garbage'"]


@pytest.mark.parametrize("answer, outcome, why", [
    (Answer(200, {"status": "Ok", "revision": 9}), "ok", "200"),
    (Answer(412, {"error": "fenced: lock a is no longer held with token 4", "fence": "a:4"}),
     "fail", "412"),
    (Answer(503, {"error": "no leader", "applied": False}), "fail", "503"),
    (Answer(503, {"error": "?", "applied": "unknown"}), "unknown", "503 applied unknown"),
    (Answer(504, {"error": "outcome unknown"}), "unknown", "504"),
    (Answer(None, error="timeout"), "unknown", "timeout"),
    (Answer(None, error="refused"), "fail", "refused"),
    (Answer(307, location=None), "fail", "307 not followed"),
])
def test_fenced_write_answers_are_classified(answer: Answer, outcome: str, why: str) -> None:
    got = classify_write(answer)
    assert (got.outcome, got.why, got.unexpected) == (outcome, why, None)
    assert got.fields.get("fenced", False) is (why == "412")


def test_answers_no_server_gives_are_unexpected() -> None:
    assert classify_write(Answer(412, {"error": "condition failed"})).unexpected
    assert classify_write(Answer(400, {"error": "bad fence"})).unexpected
    assert classify_lock(Answer(200, {"name": "a", "key": "_lock/a/7", "token": 9, "lease": 8}),
                         "a", 7).unexpected  # another lease's holder
    assert classify_grant(Answer(200, {"ttl": 3})).unexpected
    assert classify_read(Answer(200, {"value": 3})).unexpected


def test_lock_and_lease_answers_are_classified() -> None:
    holder = {"name": "a", "key": "_lock/a/7", "token": 9, "lease": 7, "value": "lc0",
              "revision": 9}
    got = classify_lock(Answer(200, holder), "a", 7)
    assert (got.outcome, got.fields["token"], got.fields["key"]) == ("ok", 9, "_lock/a/7")
    timed_out = Answer(423, {"error": "timeout", "holder": "_lock/a/5"})
    assert classify_lock(timed_out, "a", 7).why == "423"
    assert classify_lock(Answer(404, {"error": "lease 7 not found"}), "a", 7).outcome == "fail"
    assert classify_lock(Answer(None, error="lost"), "a", 7).outcome == "unknown"
    assert classify_grant(Answer(200, {"id": 5, "ttl": 3.0, "remaining": 3.0, "revision": 5})
                          ).fields == {"lease": 5, "revision": 5}
    assert classify_keepalive(Answer(404, {"error": "lease 5 not found"})).why == "404"
    assert classify_keepalive(Answer(200, {"id": 5})).outcome == "ok"
    assert classify_revoke(Answer(200, {"id": 5, "revision": 12})).fields == {"revision": 12}
    assert classify_revoke(Answer(404, {})).outcome == "fail"
    assert classify_read(Answer(404, {"error": "key not found"})).fields == {"value": None}
