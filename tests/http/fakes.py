"""An in-memory stand-in for the node, shaped like ``leifdb.http.backend.Backend``."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed

from leifdb.kv.commands import ApplyResult, Condition, Delete, Item, Put


def _holds(condition: Condition | None, current: Item | None) -> bool:
    if condition is None:
        return True
    if condition.prev_value is not None:
        return current is not None and current.value == condition.prev_value
    if condition.prev_revision is not None:
        return (current.revision if current else 0) == condition.prev_revision
    if condition.must_be_absent:
        return current is None
    return True


class FakeKV:
    """Keys to items; ``range`` sorts on every call (fine for tests)."""

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}

    def get(self, key: str) -> Item | None:
        return self.items.get(key)

    def range(
        self, prefix: str = "", start_after: str | None = None, limit: int | None = None
    ) -> tuple[list[Item], bool]:
        keys = sorted(k for k in self.items if k.startswith(prefix)
                      and (start_after is None or k > start_after))
        chosen = keys if limit is None else keys[:limit]
        return [self.items[k] for k in chosen], len(keys) > len(chosen)


class FakeBackend:
    """Applies writes at once (log index = a counter) unless told otherwise.

    ``submit_error`` / ``barrier_error``: exception to fail with instead. ``hold``: keep
    Deferreds in ``pending`` for the test to fire. Every call is recorded.
    """

    def __init__(self) -> None:
        self.kv = FakeKV()
        self.index = 0
        self.submitted: list[Put | Delete] = []
        self.barriers = 0
        self.submit_error: Exception | None = None
        self.barrier_error: Exception | None = None
        self.hold = False
        self.pending: list[Deferred[Any]] = []
        self.status_fields: dict[str, Any] = {
            "node": "127.0.0.1:16990", "role": "leader", "term": 3,
            "leader": "127.0.0.1:16990", "leader_http": "127.0.0.1:8080",
            "commit_index": 0, "applied_index": 0,
        }

    def apply(self, command: Put | Delete) -> ApplyResult:
        self.index += 1
        current = self.kv.items.get(command.key)
        if not _holds(command.condition, current):
            return ApplyResult(ok=False, revision=self.index, current=current)
        if isinstance(command, Put):
            item = Item(command.key, command.value, self.index)
            self.kv.items[command.key] = item
            return ApplyResult(ok=True, revision=self.index, current=item)
        self.kv.items.pop(command.key, None)
        return ApplyResult(ok=True, revision=self.index)

    def put(self, key: str, value: str) -> Item:
        """Set a key directly, as if replicated earlier."""
        result = self.apply(Put(key, value))
        assert result.current is not None
        return result.current

    def submit(self, command: Put | Delete) -> Deferred[ApplyResult]:
        self.submitted.append(command)
        if self.submit_error is not None:
            return fail(self.submit_error)
        if self.hold:
            d: Deferred[ApplyResult] = Deferred()
            d.addCallback(lambda _: self.apply(command))
            self.pending.append(d)
            return d
        return succeed(self.apply(command))

    def read_barrier(self) -> Deferred[None]:
        self.barriers += 1
        if self.barrier_error is not None:
            return fail(self.barrier_error)
        if self.hold:
            d: Deferred[None] = Deferred()
            self.pending.append(d)
            return d
        return succeed(None)

    def status(self) -> dict[str, Any]:
        return dict(self.status_fields, commit_index=self.index, applied_index=self.index)
