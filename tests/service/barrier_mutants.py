"""The read barrier's rules in the service, each broken by one mutant: a read path that
answers from the local state without the barrier, a confirmed read served before the
state machine applied its read index, a refused read served anyway.

A mutant is a deliberately broken copy of one ``KVService``/``Coordination``/``Waits``
method (reaching into private helpers on purpose), installed with ``monkeypatch``;
``paths`` are the read paths of ``tests.service.read_paths.READ_PATHS`` whose ``check``
(``linearizable`` or ``refused``) must then fail (tests/service/test_read_barrier_mutants.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, succeed

from leifdb.errors import InvalidRequest, NotHolder
from leifdb.kv.commands import Compare, Delete, Put, Txn
from leifdb.raft.messages import ReadState
from leifdb.service.api import CONSISTENCY_LINEARIZABLE, Holder
from leifdb.service.kvservice import KVService
from leifdb.service.locks import Coordination, _holder
from leifdb.service.wait import Waits

__all__ = ["SERVICE_MUTANTS", "ServiceMutant"]


def _get_without_barrier(self: KVService, key: str, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred:
    try:
        self._check_key(key)
    except Exception:
        return fail()
    return succeed(self._kv.get(key))


def _range_without_barrier(self: KVService, prefix: str, start_after: str | None = None,
                           limit: int | None = None, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred:
    try:
        self._check_key(prefix, allow_empty=True)
        if limit is None:
            limit = self.limits.default_page_size
        if not 1 <= limit <= self.limits.max_page_size:
            raise InvalidRequest("bad limit")
    except Exception:
        return fail()
    return succeed(self._page(prefix, start_after, limit))


def _txn_reading_without_barrier(self: KVService, txn: Txn,
                                 consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred:
    try:
        self._check_txn(txn)
        if txn.read_only:
            return succeed(self._kv.evaluate_txn(txn))
        d = self._propose(txn)
    except Exception:
        return fail()
    return d.addCallback(self._txn_result, txn)


def _barrier_without_read_index(self: KVService, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred:
    return succeed(None)


def _leader_read_without_barrier(self: KVService) -> Deferred:
    try:
        self._leader_or_refuse()
    except Exception:
        return fail()
    return succeed(None)


def _holder_without_barrier(self: Coordination, name: str, prefix: str, consistency: str) -> Deferred:
    return succeed(self.current(name, prefix))


async def _proclaim_without_barrier(self: Coordination, name: str, prefix: str, token: int, value: str) -> Holder:
    held = self._held(name, prefix, token)
    result = await self._service.txn(Txn(
        compare=(Compare(held.key, "create_revision", "equal", token),),
        success=(Put(held.key, value, lease=held.lease),),
    ))
    if not result.succeeded:
        raise NotHolder(f"{name!r} is no longer led with token {token}")
    item = result.results[0].item
    assert item is not None
    return _holder(name, item)


async def _resign_without_barrier(self: Coordination, name: str, prefix: str, token: int) -> int:
    held = self._held(name, prefix, token)
    result = await self._service.txn(Txn(
        compare=(Compare(held.key, "create_revision", "equal", token),),
        success=(Delete(held.key),),
    ))
    if not result.succeeded:
        raise NotHolder(f"{name!r} is no longer led with token {token}")
    return result.revision


def _read_served_when_confirmed(self: Waits, read_id: int, read_index: int, applied_index: int) -> None:
    d = self._reads.pop(read_id, None)
    if d is not None:
        d.callback(None)


def _read_states_ignoring_refusals(self: KVService, states: list[ReadState], leader_http: str | None) -> None:
    for state in states:
        self._waits.read_confirmed(state.read_id, state.read_index, self._kv.applied_index)


@dataclass(frozen=True)
class ServiceMutant:
    name: str
    rule: str
    where: str
    target: Any
    attribute: str
    replacement: Callable[..., Any]
    paths: tuple[str, ...]
    check: str = "linearizable"


SERVICE_MUTANTS = (
    ServiceMutant("get_without_barrier", "a linearizable get waits for the read barrier",
                  "kvservice.py: KVService.get", KVService, "get", _get_without_barrier, ("get",)),
    ServiceMutant("range_without_barrier", "a linearizable range waits for the read barrier",
                  "kvservice.py: KVService.range", KVService, "range", _range_without_barrier, ("range",)),
    ServiceMutant("read_only_txn_without_barrier", "a read-only transaction waits for the read barrier",
                  "kvservice.py: KVService.txn", KVService, "txn", _txn_reading_without_barrier,
                  ("read_only_txn",)),
    ServiceMutant("barrier_without_read_index",
                  "barrier() (watch, long poll and observe starts; holder reads; proclaim, resign) "
                  "waits for a confirmed read index",
                  "kvservice.py: KVService.barrier", KVService, "barrier", _barrier_without_read_index,
                  ("barrier", "lock_holder", "election_leader", "proclaim", "resign")),
    ServiceMutant("lease_read_without_barrier", "lease reads on the leader wait for the read barrier",
                  "kvservice.py: KVService._leader_read", KVService, "_leader_read",
                  _leader_read_without_barrier, ("lease_info", "leases")),
    ServiceMutant("holder_read_without_barrier", "lock holder / election leader reads wait for the read barrier",
                  "locks.py: Coordination.holder", Coordination, "holder", _holder_without_barrier,
                  ("lock_holder", "election_leader")),
    ServiceMutant("proclaim_checks_without_barrier",
                  "proclaim checks the election's leader only after the read barrier",
                  "locks.py: Coordination._proclaim", Coordination, "_proclaim", _proclaim_without_barrier,
                  ("proclaim",)),
    ServiceMutant("resign_checks_without_barrier",
                  "resign checks the election's leader only after the read barrier",
                  "locks.py: Coordination._resign", Coordination, "_resign", _resign_without_barrier,
                  ("resign",)),
    ServiceMutant("read_served_before_apply",
                  "a confirmed read waits until the state machine applied its read index (ReadIndex step 4)",
                  "wait.py: Waits.read_confirmed/applied_to", Waits, "read_confirmed",
                  _read_served_when_confirmed,
                  ("get", "range", "read_only_txn", "barrier", "lock_holder", "election_leader",
                   "lease_info", "leases", "proclaim", "resign")),
    ServiceMutant("refused_read_served", "a read the node could not confirm fails, it is never served",
                  "kvservice.py: KVService.read_states", KVService, "read_states",
                  _read_states_ignoring_refusals,
                  ("get", "range", "read_only_txn", "barrier", "lock_holder", "election_leader",
                   "lease_info", "leases", "proclaim", "resign"), check="refused"),
)
