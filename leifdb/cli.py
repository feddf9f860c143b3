"""``leifdb``: the command-line client (blocking ``leifdb.client.Client``).

    leifdb [--endpoints URLS] [-o table|json|value] COMMAND ...

Exit codes: 0 ok, 1 error, 2 usage, 3 condition failed (also a transaction whose compares
failed, a write refused by ``--fence``), 4 key not found (``get``; ``elect NAME``: no
leader), 5 outcome unknown (a write may or may not have been applied), 6 the lock (or
leadership) was not acquired within ``--timeout``, 7 the lease is gone (revoked, expired,
never granted) or was lost while ``lease keepalive``, ``lock`` or ``elect`` kept it alive,
130 interrupted. ``lock ... -- COMMAND`` and ``elect ... -- COMMAND`` exit with COMMAND's
exit code once it ran (128 + N if a signal N ended it; 126/127 if it could not be started).
Errors are one line on stderr: ``leifdb: error: ...``.

``lock`` and ``elect`` grant a lease of ``--ttl``, keep it alive on a background thread,
wait for the lock (leadership), then run COMMAND with ``LEIFDB_LEASE``,
``LEIFDB_LOCK_KEY``, ``LEIFDB_FENCE_TOKEN`` and ``LEIFDB_FENCE`` (``NAME:TOKEN``, for
``put --fence``) in its environment (``elect``: ``LEIFDB_ELECTION_KEY`` and
``LEIFDB_ELECTION_TOKEN``), or without COMMAND print the holder and hold on until
interrupted. If the lease is lost meanwhile COMMAND gets SIGTERM (SIGKILL 10 s later) and
the exit code is 7. Then they release (unlock or resign) and revoke the lease.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence, TextIO

from leifdb.client import (
    Client, ClientError, ConditionFailed, Fenced, Holder, Lease, LeaseExpired, LeaseKeeper,
    LeaseNotFound, LockTimeout, NotHolder, OutcomeUnknown, parse_duration,
)
from leifdb.client.types import Event, Item, LeaderChange, Status

__all__ = ["EXIT_CONDITION", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_LEASE", "EXIT_LOCKED",
           "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_UNKNOWN", "EXIT_USAGE", "main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONDITION, EXIT_NOT_FOUND, EXIT_UNKNOWN = 0, 1, 2, 3, 4, 5
EXIT_LOCKED, EXIT_LEASE, EXIT_INTERRUPTED = 6, 7, 130
DEFAULT_ENDPOINTS = "http://127.0.0.1:8080"
KILL_AFTER = 10.0  # seconds between SIGTERM and SIGKILL for a COMMAND whose lease was lost
CAMPAIGN_ROUND = 600.0  # ``elect`` without --timeout campaigns in rounds of the server's
# longest wait, for ever


class UsageError(Exception):
    pass


class KeyNotFound(Exception):
    pass


class LeaseLost(Exception):
    """A lease that ``lock``, ``elect`` or ``lease keepalive`` kept alive was lost."""


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _lease_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a lease id is a positive integer, not {text!r}")
    return int(text)


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2
        raise UsageError(message)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """An ``etcdctl -w table`` style box."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = [rule, "|" + "|".join(f" {h.center(w)} " for h, w in zip(cells[0], widths)) + "|",
             rule]
    lines += ["|" + "|".join(f" {c.ljust(w)} " for c, w in zip(r, widths)) + "|"
              for r in cells[1:]]
    lines.append(rule)
    return "\n".join(lines)


def _json_out(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="leifdb", description="LeifDB command-line client.",
                epilog="exit codes: 0 ok, 1 error, 2 usage, 3 condition failed, "
                       "4 key not found, 5 outcome unknown, 6 lock not acquired in time, "
                       "7 lease gone or lost, 130 interrupted; lock/elect -- COMMAND: "
                       "COMMAND's exit code")
    p.add_argument("--endpoints", default=None,
                   help="comma-separated http://host:port list (default $LEIFDB_ENDPOINTS "
                        f"or {DEFAULT_ENDPOINTS})")
    p.add_argument("-o", "--output", choices=("table", "json", "value"), default=None,
                   help="output format (default: value for get/put/del/txn/lease "
                        "grant|keepalive|revoke/lock/elect, table for ls/status/lease "
                        "list|info, json for watch and elect --listen)")
    p.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    get = sub.add_parser("get", help="read a key")
    get.add_argument("key")
    get.add_argument("--stale", action="store_true", help="serve from any node, maybe stale")

    put = sub.add_parser("put", help="write a key")
    put.add_argument("key")
    put.add_argument("value")
    cond = put.add_mutually_exclusive_group()
    cond.add_argument("--prev", help="only if the current value is this")
    cond.add_argument("--if-match", type=int, metavar="REV",
                      help="only if the key's revision is REV")
    cond.add_argument("--create", action="store_true", help="only if the key is absent")
    attach = put.add_mutually_exclusive_group()
    attach.add_argument("--lease", type=_lease_id, metavar="ID",
                        help="attach the key to lease ID (deleted when the lease ends)")
    attach.add_argument("--ttl", type=_duration, metavar="DURATION",
                        help="grant a lease for this key alone (30s, 2m...); -o json shows "
                             "its id")
    put.add_argument("--fence", metavar="NAME:TOKEN",
                     help="only while lock NAME is held with fencing token TOKEN")

    delete = sub.add_parser("del", help="delete a key (absent: not an error)")
    delete.add_argument("key")
    dcond = delete.add_mutually_exclusive_group()
    dcond.add_argument("--prev", help="only if the current value is this")
    dcond.add_argument("--if-match", type=int, metavar="REV")
    delete.add_argument("--fence", metavar="NAME:TOKEN",
                        help="only while lock NAME is held with fencing token TOKEN")

    ls = sub.add_parser("ls", help="list the keys under a prefix")
    ls.add_argument("prefix", nargs="?", default="")
    ls.add_argument("--limit", type=int, default=None, help="at most this many keys")
    ls.add_argument("--stale", action="store_true")

    watch = sub.add_parser("watch", help="print changes as they happen (Ctrl-C stops)")
    watch.add_argument("key")
    watch.add_argument("--prefix", action="store_true", help="every key under KEY")
    watch.add_argument("--from", dest="start", type=int, metavar="REV",
                       help="replay from revision REV first")
    watch.add_argument("--prev", action="store_true", help="include previous values")
    watch.add_argument("--count", type=int, default=None, help="stop after N changes")

    txn = sub.add_parser("txn", help="run a transaction from a JSON file ('-': stdin)")
    txn.add_argument("file", nargs="?", default="-")

    sub.add_parser("status", help="a table of every endpoint's Raft status")

    lease = sub.add_parser("lease", help="grant, keep alive, inspect and revoke leases")
    lsub = lease.add_subparsers(dest="lease_command", required=True, parser_class=_Parser)
    grant = lsub.add_parser("grant", help="a new lease; prints its id")
    grant.add_argument("ttl", type=_duration, metavar="TTL", help="30, 30s, 2m...")
    keep = lsub.add_parser("keepalive", help="keep a lease alive until interrupted, "
                                             "printing the seconds it has left")
    keep.add_argument("id", type=_lease_id)
    keep.add_argument("--once", action="store_true", help="one keepalive, then exit")
    revoke = lsub.add_parser("revoke", help="delete a lease and every key attached to it")
    revoke.add_argument("id", type=_lease_id)
    lsub.add_parser("list", help="every lease")
    info = lsub.add_parser("info", help="a lease's TTL, time left and keys")
    info.add_argument("id", type=_lease_id)

    lock = sub.add_parser("lock", help="hold a lock (with a fencing token) while COMMAND "
                                       "runs, or until interrupted",
                          usage="leifdb lock NAME [--ttl 10s] [--timeout 30s] [--value V] "
                                "[-- COMMAND ...]")
    lock.add_argument("name")
    lock.add_argument("--ttl", type=_duration, default=10.0, metavar="DURATION",
                      help="the lease's TTL: how long the lock outlives this process if it "
                           "dies (default 10s)")
    lock.add_argument("--timeout", dest="wait", type=_duration, default=30.0,
                      metavar="DURATION",
                      help="give up waiting after this long, exit code 6 (default 30s)")
    lock.add_argument("--value", default="", help="a description of the owner, shown to "
                                                  "others (default: empty)")

    elect = sub.add_parser("elect", help="campaign for leadership (with VALUE), show the "
                                         "leader (without), or follow it (--listen)",
                           usage="leifdb elect NAME [VALUE] [--ttl 10s] [--timeout D] "
                                 "[--listen [--count N]] [-- COMMAND ...]")
    elect.add_argument("name")
    elect.add_argument("value", nargs="?", default=None)
    elect.add_argument("--ttl", type=_duration, default=10.0, metavar="DURATION",
                       help="the lease's TTL (default 10s)")
    elect.add_argument("--timeout", dest="wait", type=_duration, default=None,
                       metavar="DURATION",
                       help="give up waiting after this long, exit code 6 (default: wait "
                            "until interrupted)")
    elect.add_argument("--listen", action="store_true",
                       help="print the leader now and at every change (Ctrl-C stops)")
    elect.add_argument("--count", type=int, default=None,
                       help="with --listen: stop after N leaders")
    return p


def _item_row(item: Item) -> list[Any]:
    return [item.key, item.value, item.revision]


def _write(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def run(args: argparse.Namespace, client: Client, out: TextIO) -> int:
    fmt = args.output
    cmd = args.command
    if cmd == "get":
        item = client.get(args.key, stale=args.stale)
        if item is None:
            raise KeyNotFound(f"key not found: {args.key}")
        fmt = fmt or "value"
        if fmt == "json":
            _write(out, _json_out(item.to_json()))
        elif fmt == "table":
            _write(out, table(["KEY", "VALUE", "REVISION"], [_item_row(item)]))
        else:
            _write(out, item.value)
        return EXIT_OK
    if cmd in ("put", "del"):
        try:
            if cmd == "put":
                result = client.put(args.key, args.value, prev=args.prev,
                                    if_match=args.if_match, create=args.create,
                                    lease=args.lease or 0, ttl=args.ttl, fence=args.fence)
            else:
                result = client.delete(args.key, prev=args.prev, if_match=args.if_match,
                                       fence=args.fence)
        except ValueError as e:  # a malformed --fence
            raise UsageError(str(e)) from None
        fmt = fmt or "value"
        answer: dict[str, Any] = {"key": args.key, "revision": result.revision}
        if cmd == "put":
            answer["lease"] = result.lease
        if fmt == "json":
            _write(out, _json_out(answer))
        elif fmt == "table":
            _write(out, table([k.upper() for k in answer], [list(answer.values())]))
        else:
            _write(out, str(result.revision))
        return EXIT_OK
    if cmd == "ls":
        items = client.list(args.prefix, stale=args.stale, limit=args.limit)
        fmt = fmt or "table"
        if fmt == "json":
            _write(out, _json_out([i.to_json() for i in items]))
        elif fmt == "table":
            _write(out, table(["KEY", "VALUE", "REVISION"], [_item_row(i) for i in items]))
        else:
            for i in items:
                _write(out, i.key)
        return EXIT_OK
    if cmd == "watch":
        return _watch(args, client, out, fmt or "json")
    if cmd == "txn":
        return _txn(args, client, out, fmt or "value")
    if cmd == "status":
        return _status(client, out, fmt or "table")
    if cmd == "lease":
        return _lease(args, client, out, fmt)
    if cmd == "lock":
        return _lock(args, client, out, fmt or "value")
    if cmd == "elect":
        return _elect(args, client, out, fmt)
    raise UsageError(f"unknown command {cmd!r}")  # pragma: no cover


def _event_line(event: Event, fmt: str) -> str:
    if fmt == "json":
        return _json_out(event.to_json())
    if fmt == "value":
        return "" if event.value is None else event.value
    return "\t".join([str(event.revision), event.type.upper(), event.key,
                      "" if event.value is None else event.value])


def _watch(args: argparse.Namespace, client: Client, out: TextIO, fmt: str) -> int:
    seen = 0
    if args.count is not None and args.count <= 0:
        return EXIT_OK
    with client.watch(args.key, prefix=args.prefix, prev=args.prev,
                      start_revision=args.start) as events:
        for event in events:
            _write(out, _event_line(event, fmt))
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    return EXIT_OK


def _txn(args: argparse.Namespace, client: Client, out: TextIO, fmt: str) -> int:
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
        body = json.loads(text)
    except OSError as e:
        raise UsageError(f"cannot read {args.file}: {e.strerror or e}") from None
    except ValueError as e:
        raise UsageError(f"the transaction is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise UsageError("the transaction must be a JSON object")
    result = client.txn(body)
    if fmt == "json":
        results = [{k: (v.to_json() if isinstance(v, Item) else
                        [i.to_json() for i in v] if k == "items" else v)
                    for k, v in r.items()} for r in result.results]
        _write(out, _json_out({"succeeded": result.succeeded, "revision": result.revision,
                               "results": results}))
    elif fmt == "table":
        rows = []
        for r in result.results:
            item = r.get("item")
            detail = (f"{item.value} (rev {item.revision})" if isinstance(item, Item) else
                      "deleted" if r.get("deleted") else
                      f"{len(r['items'])} items" if "items" in r else
                      f"rev {r['revision']}" if "revision" in r else "-")
            rows.append([r.get("op"), r.get("key", r.get("prefix", "")), detail])
        _write(out, ("SUCCEEDED" if result.succeeded else "FAILED") +
               f" at revision {result.revision}")
        if rows:
            _write(out, table(["OP", "KEY", "RESULT"], rows))
    else:
        _write(out, "SUCCEEDED" if result.succeeded else "FAILED")
        for r in result.results:
            item = r.get("item")
            if isinstance(item, Item):
                _write(out, item.value)
            for i in r.get("items") or []:
                _write(out, f"{i.key}={i.value}")
    return EXIT_OK if result.succeeded else EXIT_CONDITION


def _status(client: Client, out: TextIO, fmt: str) -> int:
    results = client.statuses()
    failed = [(url, r) for url, r in zip(client.endpoints.urls, results)
              if isinstance(r, Exception)]
    ok = [r for r in results if isinstance(r, Status)]
    if fmt == "json":
        _write(out, _json_out([r.to_json() if isinstance(r, Status) else
                               {"endpoint": url, "error": str(r)}
                               for url, r in zip(client.endpoints.urls, results)]))
    elif fmt == "table":
        _write(out, table(
            ["ENDPOINT", "ID", "ROLE", "TERM", "LEADER", "COMMIT INDEX", "APPLIED INDEX",
             "VERSION"],
            [[s.endpoint, s.node, s.role, s.term, s.leader or "", s.commit_index,
              s.applied_index, s.version] for s in ok]))
    else:
        for s in ok:
            _write(out, f"{s.endpoint} {s.role}")
    if failed:
        print(f"leifdb: error: {len(failed)} of {len(results)} endpoints did not answer: " +
              "; ".join(_one_line(error) for _, error in failed), file=sys.stderr)
    return EXIT_ERROR if failed else EXIT_OK


# --- leases ---------------------------------------------------------------------------

LEASE_HEADERS = ["ID", "TTL", "REMAINING"]


def _lease_row(lease: Lease) -> list[Any]:
    return [lease.id, _seconds(lease.ttl), _seconds(lease.remaining)]


def _lease_line(lease: Lease, fmt: str) -> str:
    """One renewal of ``lease keepalive`` (a line per renewal, like ``watch``)."""
    if fmt == "json":
        return _json_out(lease.to_json())
    if fmt == "table":
        return "\t".join(str(c) for c in _lease_row(lease))
    return _seconds(lease.remaining)


def _lease(args: argparse.Namespace, client: Client, out: TextIO, fmt: str | None) -> int:
    sub = args.lease_command
    if sub == "grant":
        lease = client.grant(args.ttl)
        _show(out, fmt or "value", lease.to_json(), LEASE_HEADERS, [_lease_row(lease)],
              str(lease.id))
    elif sub == "keepalive":
        return _keepalive(args, client, out, fmt or "value")
    elif sub == "revoke":
        result = client.revoke(args.id)
        _show(out, fmt or "value", {"id": args.id, "revision": result.revision},
              ["ID", "REVISION"], [[args.id, result.revision]], str(result.revision))
    elif sub == "list":
        leases = client.leases()
        fmt = fmt or "table"
        if fmt == "json":
            _write(out, _json_out([lease.to_json() for lease in leases]))
        elif fmt == "table":
            _write(out, table(LEASE_HEADERS, [_lease_row(lease) for lease in leases]))
        else:
            for lease in leases:
                _write(out, str(lease.id))
    else:
        lease = client.lease_info(args.id)
        _show(out, fmt or "table", {**lease.to_json(), "keys": list(lease.keys)},
              [*LEASE_HEADERS, "KEYS"], [[*_lease_row(lease), " ".join(lease.keys)]],
              _seconds(lease.remaining))
    return EXIT_OK


def _show(out: TextIO, fmt: str, data: dict[str, Any], headers: list[str],
          rows: list[list[Any]], value: str) -> None:
    if fmt == "json":
        _write(out, _json_out(data))
    elif fmt == "table":
        _write(out, table(headers, rows))
    else:
        _write(out, value)


def _keepalive(args: argparse.Namespace, client: Client, out: TextIO, fmt: str) -> int:
    if args.once:
        _write(out, _lease_line(client.keepalive(args.id), fmt))
        return EXIT_OK
    with client.keep_alive(args.id, on_renew=lambda lease: _write(out, _lease_line(lease, fmt))
                           ) as keeper:
        lost = keeper.wait()
    raise LeaseLost(f"lease {args.id} lost: {_one_line(lost)}" if lost else
                    f"lease {args.id}: keepalives stopped")


# --- locks and elections ---------------------------------------------------------------

HOLDER_HEADERS = ["NAME", "KEY", "TOKEN", "LEASE", "VALUE", "REVISION"]


def _holder_row(holder: Holder) -> list[Any]:
    return [holder.name, holder.key, holder.token, holder.lease, holder.value, holder.revision]


def _show_holder(out: TextIO, fmt: str, holder: Holder, value: str) -> None:
    _show(out, fmt, holder.to_json(), HOLDER_HEADERS, [_holder_row(holder)], value)


class _Leased:
    """A lease granted for one ``lock`` or ``elect`` and kept alive in the background;
    leaving the block revokes it (its lock or candidate key goes with it)."""

    def __init__(self, client: Client, ttl: float) -> None:
        self.client = client
        self.lease = client.grant(ttl)
        self.keeper: LeaseKeeper = client.keep_alive(self.lease)

    def __enter__(self) -> _Leased:
        return self

    @property
    def gone(self) -> bool:
        """The cluster said the lease is gone: its keys went with it, nothing to release."""
        lost = self.keeper.lost
        return isinstance(lost, LeaseNotFound) and not isinstance(lost, LeaseExpired)

    def __exit__(self, *exc: object) -> None:
        self.keeper.close()
        if self.gone:
            return
        try:
            self.client.revoke(self.lease.id)
        except LeaseNotFound:
            pass
        except ClientError as e:
            print(f"leifdb: warning: could not revoke lease {self.lease.id} "
                  f"({_one_line(e)}); it expires within its TTL", file=sys.stderr)

    def lost(self, timeout: float | None) -> Exception | None:
        return self.keeper.wait(timeout)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # clean up (release, revoke) as on Ctrl-C


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a supervisor stopping ``lock``/``elect``) cleans up like Ctrl-C."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _holding(leased: _Leased, command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` (or, without one, wait until interrupted) while the lease lives:
    its exit code, or ``LeaseLost`` once the lease is lost (the command is stopped)."""
    proc: subprocess.Popen | None = None
    try:
        if not command:
            lost = leased.lost(None)
            raise LeaseLost(f"lease {leased.lease.id} lost: {_one_line(lost)}")
        try:
            proc = subprocess.Popen(command, env={**os.environ, **env})
        except FileNotFoundError as e:
            print(f"leifdb: error: {command[0]}: {e.strerror}", file=sys.stderr)
            return 127
        except PermissionError as e:
            print(f"leifdb: error: {command[0]}: {e.strerror}", file=sys.stderr)
            return 126
        while True:
            try:
                code = proc.wait(timeout=0.2)
                return 128 - code if code < 0 else code
            except subprocess.TimeoutExpired:
                pass
            if leased.keeper.lost is not None:
                raise LeaseLost(f"lease {leased.lease.id} lost while {command[0]} ran "
                                f"(stopped it): {_one_line(leased.keeper.lost)}")
    finally:
        if proc is not None and proc.poll() is None:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(KILL_AFTER)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _base_env(client: Client, lease: Lease) -> dict[str, str]:
    return {"LEIFDB_ENDPOINTS": ",".join(client.endpoints.urls), "LEIFDB_LEASE": str(lease.id)}


def _lock(args: argparse.Namespace, client: Client, out: TextIO, fmt: str) -> int:
    with _sigterm_interrupts(), _Leased(client, args.ttl) as leased:
        holder = client.lock(args.name, leased.lease.id, value=args.value,
                             timeout=args.wait)
        try:
            if not args.exec:
                _show_holder(out, fmt, holder, holder.key)
            env = {**_base_env(client, leased.lease), "LEIFDB_LOCK_KEY": holder.key,
                   "LEIFDB_FENCE_TOKEN": str(holder.token), "LEIFDB_FENCE": holder.fence}
            return _holding(leased, args.exec, env)
        finally:
            if not leased.gone:
                _release(lambda: client.unlock(holder), f"lock {args.name}")


def _release(release: Callable[[], Any], what: str) -> None:
    try:
        release()
    except ClientError as e:
        print(f"leifdb: warning: could not release {what} ({_one_line(e)}); revoking "
              "its lease", file=sys.stderr)


def _elect(args: argparse.Namespace, client: Client, out: TextIO, fmt: str | None) -> int:
    if args.listen:
        return _listen(args, client, out, fmt or "json")
    if args.value is None:
        if args.exec:
            raise UsageError("elect NAME -- COMMAND needs a VALUE to campaign with")
        holder = client.leader(args.name)
        if holder is None:
            raise KeyNotFound(f"election {args.name} has no leader")
        _show_holder(out, fmt or "value", holder, holder.value)
        return EXIT_OK
    with _sigterm_interrupts(), _Leased(client, args.ttl) as leased:
        holder = _campaign(client, args.name, leased, args.value, args.wait)
        try:
            if not args.exec:
                _show_holder(out, fmt or "value", holder, holder.key)
            env = {**_base_env(client, leased.lease), "LEIFDB_ELECTION_KEY": holder.key,
                   "LEIFDB_ELECTION_TOKEN": str(holder.token)}
            return _holding(leased, args.exec, env)
        finally:
            if not leased.gone:
                _release(lambda: client.resign(args.name, holder.token),
                         f"election {args.name}")


def _campaign(client: Client, name: str, leased: _Leased, value: str,
              timeout: float | None) -> Holder:
    """Campaign within ``timeout``, or without one in rounds until leader (or the lease is
    lost)."""
    while True:
        try:
            return client.campaign(name, leased.lease.id, value,
                                   timeout=CAMPAIGN_ROUND if timeout is None else timeout)
        except LockTimeout:
            if timeout is not None:
                raise
        leased.keeper.check()


def _leader_line(change: LeaderChange, fmt: str) -> str:
    leader = change.leader
    if fmt == "json":
        return _json_out(change.to_json())
    if fmt == "value":
        return "" if leader is None else leader.value
    if leader is None:
        return f"{change.revision}\t-\t-\t"
    return "\t".join([str(change.revision), leader.key, str(leader.token), leader.value])


def _listen(args: argparse.Namespace, client: Client, out: TextIO, fmt: str) -> int:
    if args.value is not None or args.exec:
        raise UsageError("elect --listen takes only the election's NAME")
    if args.count is not None and args.count <= 0:
        return EXIT_OK
    seen = 0
    with client.observe(args.name) as changes:
        for change in changes:
            _write(out, _leader_line(change, fmt))
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    return EXIT_OK


def _split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """``lock``/``elect``: everything after the first ``--`` is the COMMAND to run (left to
    argparse, option names after NAME would be taken for COMMAND's)."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    head, command = _split_command(argv)
    if head != argv:
        try:
            args = parser.parse_args(head)
        except UsageError:
            if {"lock", "elect"} & set(head):
                raise
        else:
            if args.command in ("lock", "elect"):
                if not command:
                    raise UsageError(f"{args.command}: no COMMAND after --")
                args.exec = command
                return args
    args = parser.parse_args(argv)  # "--" has its usual meaning for the other commands
    args.exec = []
    return args


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    try:
        args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
        endpoints = args.endpoints or os.environ.get("LEIFDB_ENDPOINTS") or DEFAULT_ENDPOINTS
        try:
            client = Client(endpoints, timeout=args.timeout)
        except ValueError as e:
            raise UsageError(f"--endpoints: {e}") from None
        return run(args, client, out)
    except UsageError as e:
        print(f"leifdb: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyNotFound as e:
        print(f"leifdb: error: {e.args[0]}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except LockTimeout as e:
        print(f"leifdb: error: not acquired in time: {_one_line(e)}" +
              (f" (held by {e.holder})" if e.holder else ""), file=sys.stderr)
        return EXIT_LOCKED
    except (LeaseNotFound, LeaseLost) as e:
        print(f"leifdb: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_LEASE
    except Fenced as e:
        name, _, token = e.fence.rpartition(":")
        print(f"leifdb: error: fenced: lock {name} is no longer held with token {token}; "
              "nothing changed", file=sys.stderr)
        return EXIT_CONDITION
    except NotHolder as e:
        print(f"leifdb: error: not the holder: {_one_line(e)}", file=sys.stderr)
        return EXIT_CONDITION
    except ConditionFailed as e:
        current = e.current
        now = (f"; current value {current.value!r} at revision {current.revision}"
               if current is not None else "; the key is absent")
        print(f"leifdb: error: condition failed for {e.key}{now}", file=sys.stderr)
        return EXIT_CONDITION
    except OutcomeUnknown as e:
        print(f"leifdb: error: outcome unknown: {_one_line(e)}", file=sys.stderr)
        return EXIT_UNKNOWN
    except ClientError as e:
        print(f"leifdb: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


def console_main() -> None:
    """The ``leifdb`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
