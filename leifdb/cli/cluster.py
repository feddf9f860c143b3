"""The ``leifdb`` commands on the cluster itself: ``member list|add|promote|remove`` and
``leader transfer``.

A change answers once applied. Exit codes as for the other commands: 3 refused (another
change in progress, a lagging learner, too few reachable voters without ``--force``...),
4 no such member, 5 outcome unknown (list the members to find out).
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from leifdb.cli.common import (
    EXIT_OK, KeyNotFound, Parser, UsageError, seconds_text, show, write,
)
from leifdb.client import Client, MemberNotFound, Members

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("member", "leader")
_HEADERS = ["ID", "ROLE", "RAFT ADDRESS", "HTTP ADDRESS", "LEADER", "MATCH INDEX",
            "LAST CONTACT"]


def add_parsers(sub: Any) -> None:
    """The subcommands of ``COMMANDS`` on ``sub`` (the top-level subparsers)."""
    member = sub.add_parser("member", help="list, add, promote and remove cluster members")
    msub = member.add_subparsers(dest="member_command", required=True, parser_class=Parser)
    msub.add_parser("list", help="every member, voters and learners (from the leader when "
                                 "reachable: match index and last contact)")
    add = msub.add_parser("add", help="add a learner (start it with --join first)")
    add.add_argument("id", metavar="ID", help="the new member's name (its --name)")
    add.add_argument("raft_address", metavar="RAFT_ADDR", help="host:port of its Raft port")
    add.add_argument("http_address", metavar="HTTP_ADDR", nargs="?", default="",
                     help="host:port of its client API (optional)")
    promote = msub.add_parser("promote", help="make a caught-up learner a voter")
    promote.add_argument("id", metavar="ID")
    remove = msub.add_parser("remove", help="remove a member (the leader hands over first)")
    remove.add_argument("id", metavar="ID")
    remove.add_argument("--force", action="store_true",
                        help="even if fewer than a quorum of the remaining voters are "
                             "reachable")

    leader = sub.add_parser("leader", help="hand leadership to another voter")
    lsub = leader.add_subparsers(dest="leader_command", required=True, parser_class=Parser)
    transfer = lsub.add_parser("transfer", help="make voter ID the leader; prints it")
    transfer.add_argument("id", metavar="ID")


def _rows(members: Members) -> list[list[Any]]:
    return [[m.id, m.role, m.raft_address, m.http_address, "*" if m.is_leader else "",
             m.match_index,
             None if m.last_contact_seconds is None else
             seconds_text(m.last_contact_seconds) + "s"]
            for m in members.members]


def _show_members(out: TextIO, fmt: str, members: Members, value: str) -> None:
    show(out, fmt, members.to_json(), _HEADERS, _rows(members), value)


def run(args: argparse.Namespace, client: Client, out: TextIO) -> int:
    """Run one of ``COMMANDS``: its exit code."""
    fmt = args.output
    if args.command == "leader":
        leader = _call(args.id, client.transfer_leader, args.id)
        show(out, fmt or "value", {"leader": leader}, ["LEADER"], [[leader]], leader)
        return EXIT_OK
    cmd = args.member_command
    if cmd == "list":
        members = client.members()
        fmt = fmt or "table"
        if fmt == "value":
            for m in members.members:
                write(out, f"{m.id} {m.role}")
        else:
            _show_members(out, fmt, members, "")
        return EXIT_OK
    if cmd == "add":
        members = _call(args.id, client.add_member, args.id, args.raft_address,
                        args.http_address)
        outcome = "learner"
    elif cmd == "promote":
        members = _call(args.id, client.promote_member, args.id)
        outcome = "voter"
    else:
        members = _call(args.id, client.remove_member, args.id, force=args.force)
        outcome = "removed"
    _show_members(out, fmt or "value", members, f"{args.id} {outcome}")
    return EXIT_OK


def _call(member_id: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call``; a malformed argument is a usage error, an unknown member exit 4."""
    try:
        return call(*args, **kwargs)
    except ValueError as e:
        raise UsageError(str(e)) from None
    except MemberNotFound as e:
        raise KeyNotFound(f"no member {member_id}: {e}") from None
