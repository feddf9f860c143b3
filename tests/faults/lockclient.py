"""A lock client of the fault test: one OS process, so the nemesis can SIGSTOP a lock
holder for longer than its lease's TTL (as a long GC pause or a hung VM would) and SIGKILL
it, while everything else goes on.

Each round: grant a lease (``POST /lease``) and keep it alive from a second thread
(``POST /lease/ID/keepalive`` every third of the TTL); acquire one of the locks with it
(``POST /lock/NAME?timeout=...``, retried with the same lease after an unknown answer: the
same lease gets its own key back); then a few fenced writes
(``PUT /db/fenced/NAME?fence=NAME:TOKEN``) with values ``lcC-tT-S`` (client, token,
sequence number), some reads of the fenced key, and finally one of: delete the holder's key
and revoke the lease, revoke the lease, or stop the keepalives and let the lease lapse.
The client never checks whether it still holds the lock before a write: fencing is what
must keep a paused, stale holder from doing damage.

Every request is written to the event file as an ``invoke`` line before it is sent and a
``complete`` line when its answer is classified (``tests.faults.locks.lock_ops_from_events``
reads them; an invoke without completion is an unknown outcome, so a killed client leaves
a sound history). Times are ``time.monotonic() - T0`` with the runner's ``T0`` (the
monotonic clock is the same for every process of the machine).

HTTP is raw (``tests.faults.clients.http_call``, a fresh ``http.client`` connection per
request, redirects followed here) rather than ``leifdb.client``: the fault test needs to
see every answer and every timeout as it is, without a library's retries, to classify
outcomes as ok, failed or unknown.

Run as ``python -m tests.faults.lockclient --id N --addresses H:P,... --locks a,b --out FILE``;
the end of its standard input ends it after the current request (so it also ends when the
runner dies); SIGTERM or SIGKILL end it at once (an unanswered request is unknown).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Sequence
from urllib.parse import quote, urlencode, urlsplit

from tests.faults.clients import Answer, http_call
from tests.faults.locks import fenced_key, holder_key, write_value

__all__ = [
    "EventLog",
    "LockClient",
    "Outcome",
    "call",
    "classify_grant",
    "classify_keepalive",
    "classify_lock",
    "classify_read",
    "classify_revoke",
    "classify_write",
    "main",
]


@dataclass(frozen=True)
class Outcome:
    """How one answer is recorded: ``outcome`` ok/fail/unknown, ``why`` (status or error),
    the fields it carried, and ``unexpected`` when no correct server answers so."""

    outcome: str
    why: str
    fields: dict[str, Any]
    unexpected: str | None = None


def _pos_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _common(answer: Answer) -> Outcome | None:
    """No answer, an unfollowed redirect, or a 5xx: the same for every request."""
    status, body = answer.status, answer.body or {}
    if status is None:
        return Outcome("unknown" if answer.sent else "fail", answer.error or "", {})
    if status == 307:
        return Outcome("fail", "307 not followed", {})
    if status == 503:
        if body.get("applied") is False:
            return Outcome("fail", "503", {})
        return Outcome("unknown", "503 applied unknown", {})
    if status >= 500:
        return Outcome("unknown", str(status), {})
    return None


def classify_grant(answer: Answer) -> Outcome:
    found = _common(answer)
    if found is not None:
        return found
    body = answer.body or {}
    if answer.status == 200 and _pos_int(body.get("id")):
        return Outcome("ok", "200",
                       {"lease": body["id"], "revision": _pos_int(body.get("revision"))})
    return Outcome("unknown", str(answer.status), {},
                   unexpected=f"POST /lease answered {answer.status}: {body}")


def classify_keepalive(answer: Answer) -> Outcome:
    found = _common(answer)
    if found is not None:
        return found
    if answer.status == 200:
        return Outcome("ok", "200", {})
    if answer.status == 404:
        return Outcome("fail", "404", {})  # the lease is gone
    return Outcome("unknown", str(answer.status), {},
                   unexpected=f"keepalive answered {answer.status}: {answer.body}")


def classify_lock(answer: Answer, lock: str, lease: int) -> Outcome:
    """200 with a holder for ``lease``: ok; 423 (not acquired in time) and 404 (the lease is
    gone): fail."""
    found = _common(answer)
    if found is not None:
        return found
    body = answer.body or {}
    if answer.status == 200:
        token = _pos_int(body.get("token"))
        if token is None or body.get("lease") != lease or body.get("name") != lock \
                or not isinstance(body.get("key"), str):
            return Outcome("unknown", "200", {},
                           unexpected=f"lock {lock!r} with lease {lease} answered 200 {body}")
        return Outcome("ok", "200", {"token": token, "key": body["key"],
                                     "revision": _pos_int(body.get("revision"))})
    if answer.status in (423, 404):
        return Outcome("fail", str(answer.status), {})
    return Outcome("unknown", str(answer.status), {},
                   unexpected=f"lock {lock!r} answered {answer.status}: {body}")


def classify_write(answer: Answer) -> Outcome:
    """A fenced put or a delete: 200 with its revision ok; 412 from the fence fail."""
    found = _common(answer)
    if found is not None:
        return found
    body = answer.body or {}
    if answer.status == 200 and _pos_int(body.get("revision")):
        return Outcome("ok", "200", {"revision": body["revision"]})
    if answer.status == 412 and "fence" in body:
        return Outcome("fail", "412", {"fenced": True})
    return Outcome("unknown", str(answer.status), {},
                   unexpected=f"fenced write answered {answer.status}: {body}")


def classify_revoke(answer: Answer) -> Outcome:
    found = _common(answer)
    if found is not None:
        return found
    body = answer.body or {}
    if answer.status == 200 and _pos_int(body.get("revision")):
        return Outcome("ok", "200", {"revision": body["revision"]})
    if answer.status == 404:
        return Outcome("fail", "404", {})
    return Outcome("unknown", str(answer.status), {},
                   unexpected=f"revoke answered {answer.status}: {body}")


def classify_read(answer: Answer) -> Outcome:
    status, body = answer.status, answer.body or {}
    if status == 200:
        value, revision = body.get("value"), _pos_int(body.get("revision"))
        if not isinstance(value, str) or revision is None:
            return Outcome("fail", "200", {}, unexpected=f"read answered 200 {body}")
        return Outcome("ok", "200", {"value": value, "revision": revision})
    if status == 404 and body.get("error") == "key not found":
        return Outcome("ok", "404", {"value": None})
    if status in (None, 307, 500, 503, 504):
        return Outcome("fail", str(status or answer.error), {})
    return Outcome("fail", str(status), {}, unexpected=f"read answered {status}: {body}")


def call(address: str, method: str, target: str, body: dict[str, Any] | None,
         timeout: float, max_redirects: int = 3) -> Answer:
    """One request (``body`` sent as JSON) starting at ``address``, following up to
    ``max_redirects`` 307s to the leader (same method and body)."""
    raw = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if raw is not None else {}
    answer = http_call(address, method, target, headers, timeout, raw)
    hops = 0
    while answer.status == 307 and answer.location and hops < max_redirects:
        hops += 1
        parts = urlsplit(answer.location)
        target = parts.path + ("?" + parts.query if parts.query else "")
        answer = http_call(parts.netloc, method, target, headers, timeout, raw)
    return answer


class EventLog:
    """The event file: one JSON object per line, flushed at once (a SIGKILL loses at most
    the line being written), written by both threads."""

    def __init__(self, out: IO[str], client: int, clock: Callable[[], float]) -> None:
        self.out = out
        self.client = client
        self.clock = clock
        self._lock = threading.Lock()
        self._next = 0

    def _write(self, data: dict[str, Any]) -> None:
        with self._lock:
            self.out.write(json.dumps(data) + "\n")
            self.out.flush()

    def invoke(self, kind: str, **fields: Any) -> int:
        with self._lock:
            self._next += 1
            n = self._next
        self._write({"ev": "invoke", "op": n, "client": self.client, "kind": kind,
                     "t": self.clock(), **fields})
        return n

    def complete(self, n: int, outcome: Outcome, answer: Answer) -> None:
        error = (answer.body or {}).get("error") if answer.status != 200 else None
        self._write({"ev": "complete", "op": n, "t": self.clock(), "outcome": outcome.outcome,
                     "why": outcome.why, "status": answer.status, **outcome.fields,
                     **({"error": str(error)[:200]} if error else {}),
                     **({"at": answer.revision_header} if answer.revision_header else {})})
        if outcome.unexpected:
            self._write({"ev": "unexpected", "client": self.client, "text": outcome.unexpected})


class LockClient:
    """The client's loop (see the module doc). ``stop`` ends it between requests."""

    def __init__(self, client_id: int, addresses: Sequence[str], locks: Sequence[str],
                 events: EventLog, rng: random.Random, *, ttl: float, timeout: float,
                 lock_wait: float, stop: threading.Event) -> None:
        self.client_id = client_id
        self.addresses = list(addresses)
        self.locks = list(locks)
        self.events = events
        self.rng = rng
        self.ttl = ttl
        self.timeout = timeout
        self.lock_wait = lock_wait
        self.stop = stop
        self._lease_lost = threading.Event()
        self._keepalive_stop = threading.Event()
        self._seq = 0
        self._keepalive_rng = random.Random(rng.randrange(1 << 30))  # the other thread's

    # -- HTTP ------------------------------------------------------------------------------

    def request(self, kind: str, classify: Callable[[Answer], Outcome], method: str,
                target: str, body: dict[str, Any] | None = None, timeout: float | None = None,
                rng: random.Random | None = None, **fields: Any) -> Outcome:
        """Send one request to a random node (following redirects), recording it."""
        n = self.events.invoke(kind, **fields)
        address = (rng or self.rng).choice(self.addresses)
        answer = call(address, method, target, body, self.timeout if timeout is None else timeout)
        outcome = classify(answer)
        self.events.complete(n, outcome, answer)
        return outcome

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        while not self.stop.is_set():
            lock = self.rng.choice(self.locks)
            lease = self.grant()
            if lease is None:
                return
            keepalive = threading.Thread(target=self._keepalive, args=(lease,), daemon=True)
            self._lease_lost.clear()
            self._keepalive_stop.clear()
            keepalive.start()
            token = self.acquire(lock, lease)
            end = "revoke"
            if token is not None:
                self.hold(lock, token)
                end = self.rng.choices(("release", "revoke", "lapse"), weights=(7, 2, 1))[0]
            self._keepalive_stop.set()
            keepalive.join()
            if self.stop.is_set():
                return
            if end == "release":
                self.request("release", classify_write, "DELETE",
                             "/db/" + quote(holder_key(lock, lease), safe=""),
                             lock=lock, lease=lease)
            if end in ("release", "revoke"):
                self.request("revoke", classify_revoke, "DELETE", f"/lease/{lease}", lease=lease)
            self.stop.wait(self.rng.uniform(0.0, 0.3))

    def grant(self) -> int | None:
        """A new lease; None once stopped."""
        while not self.stop.is_set():
            got = self.request("grant", classify_grant, "POST", "/lease", {"ttl": self.ttl})
            if got.outcome == "ok":
                return int(got.fields["lease"])
            self.stop.wait(self.rng.uniform(0.1, 0.3))
        return None

    def acquire(self, lock: str, lease: int) -> int | None:
        """The token once ``lease`` holds ``lock``; None when not acquired (timed out, the
        lease is gone, or too many failed attempts)."""
        target = f"/lock/{quote(lock, safe='')}?" + urlencode({"timeout": f"{self.lock_wait:g}s"})
        for _ in range(5):
            if self.stop.is_set() or self._lease_lost.is_set():
                return None
            got = self.request(
                "lock", lambda a: classify_lock(a, lock, lease), "POST", target,
                {"lease": lease, "value": f"lc{self.client_id}"},
                timeout=self.lock_wait + self.timeout, lock=lock, lease=lease)
            if got.outcome == "ok":
                return int(got.fields["token"])
            if got.why in ("423", "404"):
                return None
            self.stop.wait(self.rng.uniform(0.1, 0.3))
        return None

    def hold(self, lock: str, token: int) -> None:
        """A few fenced writes (whether or not the lock is still held), and reads."""
        key = "/db/" + quote(fenced_key(lock), safe="")
        for _ in range(self.rng.randint(2, 5)):
            if self.stop.is_set():
                return
            if self.rng.random() < 0.3:
                self.read(lock, key)
            self._seq += 1
            value = write_value(self.client_id, token, self._seq)
            query = urlencode({"value": value, "fence": f"{lock}:{token}"})
            self.request("write", classify_write, "PUT", f"{key}?{query}", lock=lock,
                         token=token, value=value)
            self.stop.wait(self.rng.uniform(0.05, 0.4))
        if self.rng.random() < 0.5:
            self.read(lock, key)

    def read(self, lock: str, key: str) -> None:
        self.request("read", classify_read, "GET", key, lock=lock)

    def _keepalive(self, lease: int) -> None:
        """Renew every third of the TTL until told to stop or the lease is gone."""
        while not self._keepalive_stop.wait(self.ttl / 3):
            got = self.request("keepalive", classify_keepalive, "POST",
                               f"/lease/{lease}/keepalive", rng=self._keepalive_rng, lease=lease)
            if got.outcome == "fail" and got.why == "404":
                self._lease_lost.set()
                return


def _stop_at_eof(stop: threading.Event) -> None:
    """Set ``stop`` once standard input ends (the runner closed it, or is gone)."""
    while sys.stdin.buffer.read(4096):
        pass
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.lockclient",
                                     description="One lock client of the fault test.")
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--addresses", required=True, help="HOST:PORT,... of the nodes' HTTP")
    parser.add_argument("--locks", required=True, help="lock names, comma-separated")
    parser.add_argument("--out", required=True, help="the event file (appended to)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--t0", type=float, default=0.0, help="monotonic time of the run's 0")
    parser.add_argument("--ttl", type=float, default=3.0, help="lease TTL, seconds")
    parser.add_argument("--timeout", type=float, default=2.5, help="request timeout, seconds")
    parser.add_argument("--lock-wait", type=float, default=3.0,
                        help="how long the server may wait to give the lock, seconds")
    args = parser.parse_args(argv)
    stop = threading.Event()
    threading.Thread(target=_stop_at_eof, args=(stop,), daemon=True).start()
    t0 = args.t0
    with open(args.out, "a", encoding="utf-8") as out:
        events = EventLog(out, args.id, lambda: round(time.monotonic() - t0, 6))
        client = LockClient(args.id, args.addresses.split(","), args.locks.split(","), events,
                            random.Random(args.seed), ttl=args.ttl, timeout=args.timeout,
                            lock_wait=args.lock_wait, stop=stop)
        client.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
