"""Locks and elections on leases and transactions: etcd's recipe, plus fencing tokens.

Each owner (a lease) of a lock or election ``name`` writes one key,
``{prefix}{name}/{lease id}``, attached to its lease. The key with the lowest create
revision holds; the others wait, in order of arrival, until every key created before
theirs is gone (released, resigned, or deleted with its lease). The holder's create
revision is its **token**: it strictly increases with every acquisition, and a write
fenced with it (``Fence``) applies only while that key still holds.

Nothing here keeps state of its own: the keys are the state, so any node can serve the
waiting (it follows the applied log) and a lock survives leader changes.
"""

from __future__ import annotations

from typing import Callable, Protocol

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

from leifdb.errors import (
    Compacted,
    InvalidRequest,
    LeaseNotFound,
    LockTimeout,
    NotHolder,
    OutcomeUnknown,
)
from leifdb.kv.commands import Compare, Delete, Event, Item, Put, Txn, TxnResult
from leifdb.kv.store import KVStore
from leifdb.service.api import CONSISTENCY_LINEARIZABLE, Holder, ObserveSink
from leifdb.service.watch import Watcher, WatchHub

__all__ = ["Coordination"]

log = Logger(namespace="leifdb.service.locks")


class _Service(Protocol):
    def txn(self, txn: Txn, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[TxnResult]:
        ...

    def barrier(self, consistency: str = CONSISTENCY_LINEARIZABLE) -> Deferred[None]:
        ...


class Coordination:
    """Locks and elections of one node's service."""

    def __init__(
        self,
        service: _Service,
        store: Callable[[], KVStore],
        hub: WatchHub,
        now: Callable[[], float],
        max_name_bytes: int,
    ) -> None:
        self._service = service
        self._store = store
        self._hub = hub
        self._now = now
        self._max_name_bytes = max_name_bytes

    def check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidRequest("the name is empty")
        if "/" in name:
            raise InvalidRequest("a lock or election name must not contain '/'")
        if len(name.encode("utf-8")) > self._max_name_bytes:
            raise InvalidRequest(f"a name is at most {self._max_name_bytes} bytes")

    # -- acquiring ---------------------------------------------------------------------

    def acquire(
        self, name: str, prefix: str, lease: int, value: str, timeout: float
    ) -> Deferred[Holder]:
        """Write this lease's key under ``prefix`` (keeping its create revision if it
        exists), then wait until it holds. On timeout a key written by this call is
        deleted again before ``LockTimeout`` is raised, so it blocks nobody behind it
        (``OutcomeUnknown`` if that delete fails); on cancellation, in the background."""
        return ensureDeferred(self._acquire(name, prefix, lease, value, timeout))

    async def _acquire(
        self, name: str, prefix: str, lease: int, value: str, timeout: float
    ) -> Holder:
        deadline = self._now() + timeout
        key = f"{prefix}{lease}"
        result = await self._service.txn(Txn(success=(Put(key, value, lease=lease),)))
        item = result.results[0].item
        assert item is not None
        token = item.create_revision
        created = token == item.revision
        try:
            while True:
                store = self._store()
                mine = store.get(key)
                if mine is None or mine.create_revision != token:
                    raise LeaseNotFound(lease)  # the lease ended while waiting
                before = _latest_before(store, prefix, token)
                if before is None:
                    return _holder(name, mine)
                left = deadline - self._now()
                if left <= 0:
                    break
                try:
                    await self._hub.wait(prefix, True, store.applied_index + 1, left)
                except Compacted:
                    # The node installed a snapshot meanwhile (its history restarts):
                    # the keys, not the history, are the state; look again.
                    continue
        except BaseException:
            # Cancelled (the client went away) or failed: nobody will be told, so
            # withdraw in the background; the lease ending removes the key otherwise.
            if created:
                self._withdraw(key, token).addErrback(
                    lambda f: log.info("Could not withdraw {key}: {error}", key=key,
                                       error=f.getErrorMessage())
                )
            raise
        if created:
            try:
                await self._withdraw(key, token)
            except Exception as e:
                # The client must not believe it queues no more: it may yet hold the
                # lock once those before it leave.
                raise OutcomeUnknown(
                    f"gave up waiting for {name!r} but could not withdraw {key} ({e}); "
                    f"revoke lease {lease} to be sure"
                ) from e
        raise LockTimeout(name, before.key)

    def _withdraw(self, key: str, token: int) -> Deferred[TxnResult]:
        """Delete a waiter's key if it is still the one this request created."""
        undo = Txn(
            compare=(Compare(key, "create_revision", "equal", token),),
            success=(Delete(key),),
        )
        return self._service.txn(undo)

    # -- reading -----------------------------------------------------------------------

    def holder(self, name: str, prefix: str, consistency: str) -> Deferred[Holder | None]:
        d = self._service.barrier(consistency)
        return d.addCallback(lambda _: self.current(name, prefix))

    def current(self, name: str, prefix: str) -> Holder | None:
        item = self._store().holder(prefix)
        return _holder(name, item) if item is not None else None

    # -- the holder's own operations ---------------------------------------------------

    def proclaim(self, name: str, prefix: str, token: int, value: str) -> Deferred[Holder]:
        return ensureDeferred(self._proclaim(name, prefix, token, value))

    async def _proclaim(self, name: str, prefix: str, token: int, value: str) -> Holder:
        await self._service.barrier()
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

    def resign(self, name: str, prefix: str, token: int) -> Deferred[int]:
        return ensureDeferred(self._resign(name, prefix, token))

    async def _resign(self, name: str, prefix: str, token: int) -> int:
        await self._service.barrier()
        held = self._held(name, prefix, token)
        result = await self._service.txn(Txn(
            compare=(Compare(held.key, "create_revision", "equal", token),),
            success=(Delete(held.key),),
        ))
        if not result.succeeded:
            raise NotHolder(f"{name!r} is no longer led with token {token}")
        return result.revision

    def _held(self, name: str, prefix: str, token: int) -> Holder:
        current = self.current(name, prefix)
        if current is None or current.token != token:
            raise NotHolder(f"{name!r} is not held with token {token}")
        return current

    # -- observing ---------------------------------------------------------------------

    def observe(self, sink: ObserveSink, name: str, prefix: str) -> Watcher:
        """The current holder at once, then every change of holder or of its value."""
        observer = _Observer(self, sink, name, prefix)
        watcher = self._hub.watch(observer, prefix, True, None)
        observer.announce(self._store().applied_index)
        return watcher


class _Observer:
    """A watch sink on an election's prefix that turns its changes into leader changes.
    Changes arrive as they apply (the hub delivers right after each entry), so the
    store's state is that of the revision being delivered."""

    def __init__(self, owner: Coordination, sink: ObserveSink, name: str, prefix: str) -> None:
        self._owner = owner
        self._sink = sink
        self._name = name
        self._prefix = prefix
        self._last: tuple[str, int] | None = None
        self._announced = False

    def announce(self, revision: int) -> None:
        holder = self._owner.current(self._name, self._prefix)
        seen = (holder.key, holder.revision) if holder is not None else None
        if self._announced and seen == self._last:
            return
        self._announced = True
        self._last = seen
        self._sink.leader(holder, revision)

    def events(self, events: list[Event]) -> bool:
        self.announce(events[-1].revision)
        return True

    def progress(self, revision: int) -> None:
        """Bookmarks mean nothing to an observer."""

    def closed(self, reason: str, compact_revision: int | None = None) -> None:
        self._sink.closed(reason, compact_revision)


def _latest_before(store: KVStore, prefix: str, token: int) -> Item | None:
    """The key under ``prefix`` created last before ``token`` (the one to wait for)."""
    best: Item | None = None
    start_after: str | None = None
    while True:
        items, more = store.range(prefix, start_after, 1000)
        for item in items:
            if item.create_revision < token and (
                best is None or item.create_revision > best.create_revision
            ):
                best = item
        if not more:
            return best
        start_after = items[-1].key


def _holder(name: str, item: Item) -> Holder:
    return Holder(name, item.key, item.create_revision, item.lease, item.value, item.revision)
