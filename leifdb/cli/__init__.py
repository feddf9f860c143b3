"""``leifdb``: the command-line client (blocking ``leifdb.client.Client``).

    leifdb [--endpoints URLS] [-o table|json|value] COMMAND ...

Exit codes: 0 ok, 1 error, 2 usage, 3 condition failed (also a transaction whose compares
failed, a write refused by ``--fence``, a membership change or transfer refused), 4 key
not found (``get``; ``elect NAME``: no leader; ``member``/``leader``: no such member), 5
outcome unknown (a write or membership change may or may not have been applied), 6 the
lock (or leadership) was not acquired within ``--timeout``, 7 the lease is gone (revoked, expired,
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
import os
import sys
from typing import Sequence, TextIO

from leifdb.cli import cluster, coordination, kv, snapshot
from leifdb.cli.common import (
    DEFAULT_ENDPOINTS, EXIT_CONDITION, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_LEASE, EXIT_LOCKED,
    EXIT_NOT_FOUND, EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE, KeyNotFound, LeaseLost, Parser,
    UsageError, one_line, table,
)
from leifdb.client import (
    Client, ClientError, ConditionFailed, Fenced, LeaseNotFound, LockTimeout, MembershipRefused,
    NotHolder, OutcomeUnknown,
)

__all__ = ["EXIT_CONDITION", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_LEASE", "EXIT_LOCKED",
           "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_UNKNOWN", "EXIT_USAGE", "build_parser",
           "console_main", "main", "run", "table"]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="leifdb", description="LeifDB command-line client.",
               epilog="exit codes: 0 ok, 1 error, 2 usage, 3 condition failed or change "
                      "refused, 4 key or member not found, 5 outcome unknown, 6 lock not "
                      "acquired in time, "
                      "7 lease gone or lost, 130 interrupted; lock/elect -- COMMAND: "
                      "COMMAND's exit code")
    p.add_argument("--endpoints", default=None,
                   help="comma-separated http://host:port list (default $LEIFDB_ENDPOINTS "
                        f"or {DEFAULT_ENDPOINTS})")
    p.add_argument("-o", "--output", choices=("table", "json", "value"), default=None,
                   help="output format (default: value for get/put/del/txn/lease "
                        "grant|keepalive|revoke/lock/elect/member add|promote|remove/"
                        "leader transfer/snapshot save|restore, table for ls/status/lease "
                        "list|info/member list/snapshot status, json for watch and elect "
                        "--listen)")
    p.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    kv.add_parsers(sub)
    coordination.add_parsers(sub)
    cluster.add_parsers(sub)
    snapshot.add_parsers(sub)
    return p


def run(args: argparse.Namespace, client: Client, out: TextIO) -> int:
    """Run the parsed command: its exit code (errors are raised, ``main`` maps them)."""
    if args.command in coordination.COMMANDS:
        return coordination.run(args, client, out)
    if args.command in cluster.COMMANDS:
        return cluster.run(args, client, out)
    if args.command in snapshot.COMMANDS:
        return snapshot.run(args, client, out)
    return kv.run(args, client, out)


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
        print(f"leifdb: error: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyNotFound as e:
        print(f"leifdb: error: {e.args[0]}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except LockTimeout as e:
        print(f"leifdb: error: not acquired in time: {one_line(e)}" +
              (f" (held by {e.holder})" if e.holder else ""), file=sys.stderr)
        return EXIT_LOCKED
    except (LeaseNotFound, LeaseLost) as e:
        print(f"leifdb: error: {one_line(e)}", file=sys.stderr)
        return EXIT_LEASE
    except Fenced as e:
        name, _, token = e.fence.rpartition(":")
        print(f"leifdb: error: fenced: lock {name} is no longer held with token {token}; "
              "nothing changed", file=sys.stderr)
        return EXIT_CONDITION
    except NotHolder as e:
        print(f"leifdb: error: not the holder: {one_line(e)}", file=sys.stderr)
        return EXIT_CONDITION
    except ConditionFailed as e:
        current = e.current
        now = (f"; current value {current.value!r} at revision {current.revision}"
               if current is not None else "; the key is absent")
        print(f"leifdb: error: condition failed for {e.key}{now}", file=sys.stderr)
        return EXIT_CONDITION
    except MembershipRefused as e:
        print(f"leifdb: error: refused: {one_line(e)}", file=sys.stderr)
        return EXIT_CONDITION
    except OutcomeUnknown as e:
        print(f"leifdb: error: outcome unknown: {one_line(e)}", file=sys.stderr)
        return EXIT_UNKNOWN
    except ClientError as e:
        print(f"leifdb: error: {one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


def console_main() -> None:
    """The ``leifdb`` console script."""
    sys.exit(main())

