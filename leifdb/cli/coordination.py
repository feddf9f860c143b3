"""The ``leifdb`` commands on leases, locks and elections: ``lease``, ``lock`` and
``elect``.

``lock`` and ``elect`` hold a lease of their own for as long as they run (``_Leased``),
run COMMAND while it lives and stop COMMAND once it is lost; see ``leifdb.cli``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TextIO

from leifdb.cli.common import (
    EXIT_OK, KeyNotFound, LeaseLost, Parser, UsageError, duration_arg, json_out, lease_id_arg,
    one_line, seconds_text, show, table, write,
)
from leifdb.client import (
    Client, ClientError, Holder, Lease, LeaseExpired, LeaseKeeper, LeaseNotFound, LockTimeout,
)
from leifdb.client.types import LeaderChange

__all__ = ["CAMPAIGN_ROUND", "COMMANDS", "KILL_AFTER", "add_parsers", "run"]

COMMANDS = ("lease", "lock", "elect")
KILL_AFTER = 10.0  # seconds between SIGTERM and SIGKILL for a COMMAND whose lease was lost
CAMPAIGN_ROUND = 600.0  # ``elect`` without --timeout campaigns in rounds of the server's
# longest wait, for ever


def add_parsers(sub: Any) -> None:
    """The subcommands of ``COMMANDS`` on ``sub`` (the top-level subparsers)."""
    lease = sub.add_parser("lease", help="grant, keep alive, inspect and revoke leases")
    lsub = lease.add_subparsers(dest="lease_command", required=True, parser_class=Parser)
    grant = lsub.add_parser("grant", help="a new lease; prints its id")
    grant.add_argument("ttl", type=duration_arg, metavar="TTL", help="30, 30s, 2m...")
    keep = lsub.add_parser("keepalive", help="keep a lease alive until interrupted, "
                                             "printing the seconds it has left")
    keep.add_argument("id", type=lease_id_arg)
    keep.add_argument("--once", action="store_true", help="one keepalive, then exit")
    revoke = lsub.add_parser("revoke", help="delete a lease and every key attached to it")
    revoke.add_argument("id", type=lease_id_arg)
    lsub.add_parser("list", help="every lease")
    info = lsub.add_parser("info", help="a lease's TTL, time left and keys")
    info.add_argument("id", type=lease_id_arg)

    lock = sub.add_parser("lock", help="hold a lock (with a fencing token) while COMMAND "
                                       "runs, or until interrupted",
                          usage="leifdb lock NAME [--ttl 10s] [--timeout 30s] [--value V] "
                                "[-- COMMAND ...]")
    lock.add_argument("name")
    lock.add_argument("--ttl", type=duration_arg, default=10.0, metavar="DURATION",
                      help="the lease's TTL: how long the lock outlives this process if it "
                           "dies (default 10s)")
    lock.add_argument("--timeout", dest="wait", type=duration_arg, default=30.0,
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
    elect.add_argument("--ttl", type=duration_arg, default=10.0, metavar="DURATION",
                       help="the lease's TTL (default 10s)")
    elect.add_argument("--timeout", dest="wait", type=duration_arg, default=None,
                       metavar="DURATION",
                       help="give up waiting after this long, exit code 6 (default: wait "
                            "until interrupted)")
    elect.add_argument("--listen", action="store_true",
                       help="print the leader now and at every change (Ctrl-C stops)")
    elect.add_argument("--count", type=int, default=None,
                       help="with --listen: stop after N leaders")


def run(args: argparse.Namespace, client: Client, out: TextIO) -> int:
    """Run one of ``COMMANDS``: its exit code."""
    fmt = args.output
    cmd = args.command
    if cmd == "lease":
        return _lease(args, client, out, fmt)
    if cmd == "lock":
        return _lock(args, client, out, fmt or "value")
    if cmd == "elect":
        return _elect(args, client, out, fmt)
    raise UsageError(f"unknown command {cmd!r}")  # pragma: no cover


# --- leases ---------------------------------------------------------------------------

LEASE_HEADERS = ["ID", "TTL", "REMAINING"]


def _lease_row(lease: Lease) -> list[Any]:
    return [lease.id, seconds_text(lease.ttl), seconds_text(lease.remaining)]


def _lease_line(lease: Lease, fmt: str) -> str:
    """One renewal of ``lease keepalive`` (a line per renewal, like ``watch``)."""
    if fmt == "json":
        return json_out(lease.to_json())
    if fmt == "table":
        return "\t".join(str(c) for c in _lease_row(lease))
    return seconds_text(lease.remaining)


def _lease(args: argparse.Namespace, client: Client, out: TextIO, fmt: str | None) -> int:
    sub = args.lease_command
    if sub == "grant":
        lease = client.grant(args.ttl)
        show(out, fmt or "value", lease.to_json(), LEASE_HEADERS, [_lease_row(lease)],
             str(lease.id))
    elif sub == "keepalive":
        return _keepalive(args, client, out, fmt or "value")
    elif sub == "revoke":
        result = client.revoke(args.id)
        show(out, fmt or "value", {"id": args.id, "revision": result.revision},
             ["ID", "REVISION"], [[args.id, result.revision]], str(result.revision))
    elif sub == "list":
        leases = client.leases()
        fmt = fmt or "table"
        if fmt == "json":
            write(out, json_out([lease.to_json() for lease in leases]))
        elif fmt == "table":
            write(out, table(LEASE_HEADERS, [_lease_row(lease) for lease in leases]))
        else:
            for lease in leases:
                write(out, str(lease.id))
    else:
        lease = client.lease_info(args.id)
        show(out, fmt or "table", {**lease.to_json(), "keys": list(lease.keys)},
             [*LEASE_HEADERS, "KEYS"], [[*_lease_row(lease), " ".join(lease.keys)]],
             seconds_text(lease.remaining))
    return EXIT_OK




def _keepalive(args: argparse.Namespace, client: Client, out: TextIO, fmt: str) -> int:
    if args.once:
        write(out, _lease_line(client.keepalive(args.id), fmt))
        return EXIT_OK
    with client.keep_alive(args.id, on_renew=lambda lease: write(out, _lease_line(lease, fmt))
                           ) as keeper:
        lost = keeper.wait()
    raise LeaseLost(f"lease {args.id} lost: {one_line(lost)}" if lost else
                    f"lease {args.id}: keepalives stopped")


# --- locks and elections ---------------------------------------------------------------

HOLDER_HEADERS = ["NAME", "KEY", "TOKEN", "LEASE", "VALUE", "REVISION"]


def _holder_row(holder: Holder) -> list[Any]:
    return [holder.name, holder.key, holder.token, holder.lease, holder.value, holder.revision]


def _show_holder(out: TextIO, fmt: str, holder: Holder, value: str) -> None:
    show(out, fmt, holder.to_json(), HOLDER_HEADERS, [_holder_row(holder)], value)


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
                  f"({one_line(e)}); it expires within its TTL", file=sys.stderr)

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
            raise LeaseLost(f"lease {leased.lease.id} lost: {one_line(lost)}")
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
                                f"(stopped it): {one_line(leased.keeper.lost)}")
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
        print(f"leifdb: warning: could not release {what} ({one_line(e)}); revoking "
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
        return json_out(change.to_json())
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
            write(out, _leader_line(change, fmt))
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    return EXIT_OK
