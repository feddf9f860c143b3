"""The ``leifdb`` commands on keys and the cluster: ``get``, ``put``, ``del``, ``ls``,
``watch``, ``txn`` and ``status``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from leifdb.cli.common import (
    EXIT_CONDITION, EXIT_ERROR, EXIT_OK, KeyNotFound, UsageError, duration_arg, json_out,
    lease_id_arg, one_line, table, write,
)
from leifdb.client import Client
from leifdb.client.types import Event, Item, Status

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("get", "put", "del", "ls", "watch", "txn", "status")


def add_parsers(sub: Any) -> None:
    """The subcommands of ``COMMANDS`` on ``sub`` (the top-level subparsers)."""
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
    attach.add_argument("--lease", type=lease_id_arg, metavar="ID",
                        help="attach the key to lease ID (deleted when the lease ends)")
    attach.add_argument("--ttl", type=duration_arg, metavar="DURATION",
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


def _item_row(item: Item) -> list[Any]:
    return [item.key, item.value, item.revision]


def run(args: argparse.Namespace, client: Client, out: TextIO) -> int:
    """Run one of ``COMMANDS``: its exit code."""
    fmt = args.output
    cmd = args.command
    if cmd == "get":
        item = client.get(args.key, stale=args.stale)
        if item is None:
            raise KeyNotFound(f"key not found: {args.key}")
        fmt = fmt or "value"
        if fmt == "json":
            write(out, json_out(item.to_json()))
        elif fmt == "table":
            write(out, table(["KEY", "VALUE", "REVISION"], [_item_row(item)]))
        else:
            write(out, item.value)
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
            write(out, json_out(answer))
        elif fmt == "table":
            write(out, table([k.upper() for k in answer], [list(answer.values())]))
        else:
            write(out, str(result.revision))
        return EXIT_OK
    if cmd == "ls":
        items = client.list(args.prefix, stale=args.stale, limit=args.limit)
        fmt = fmt or "table"
        if fmt == "json":
            write(out, json_out([i.to_json() for i in items]))
        elif fmt == "table":
            write(out, table(["KEY", "VALUE", "REVISION"], [_item_row(i) for i in items]))
        else:
            for i in items:
                write(out, i.key)
        return EXIT_OK
    if cmd == "watch":
        return _watch(args, client, out, fmt or "json")
    if cmd == "txn":
        return _txn(args, client, out, fmt or "value")
    if cmd == "status":
        return _status(client, out, fmt or "table")
    raise UsageError(f"unknown command {cmd!r}")  # pragma: no cover


def _event_line(event: Event, fmt: str) -> str:
    if fmt == "json":
        return json_out(event.to_json())
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
            write(out, _event_line(event, fmt))
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
        write(out, json_out({"succeeded": result.succeeded, "revision": result.revision,
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
        write(out, ("SUCCEEDED" if result.succeeded else "FAILED") +
              f" at revision {result.revision}")
        if rows:
            write(out, table(["OP", "KEY", "RESULT"], rows))
    else:
        write(out, "SUCCEEDED" if result.succeeded else "FAILED")
        for r in result.results:
            item = r.get("item")
            if isinstance(item, Item):
                write(out, item.value)
            for i in r.get("items") or []:
                write(out, f"{i.key}={i.value}")
    return EXIT_OK if result.succeeded else EXIT_CONDITION


def _status(client: Client, out: TextIO, fmt: str) -> int:
    results = client.statuses()
    failed = [(url, r) for url, r in zip(client.endpoints.urls, results)
              if isinstance(r, Exception)]
    ok = [r for r in results if isinstance(r, Status)]
    if fmt == "json":
        write(out, json_out([r.to_json() if isinstance(r, Status) else
                             {"endpoint": url, "error": str(r)}
                             for url, r in zip(client.endpoints.urls, results)]))
    elif fmt == "table":
        write(out, table(
            ["ENDPOINT", "ID", "ROLE", "TERM", "LEADER", "COMMIT INDEX", "APPLIED INDEX",
             "VERSION", "HEALTHY"],
            [[s.endpoint, s.node, s.role, s.term, s.leader or "", s.commit_index,
              s.applied_index, s.version, "yes" if s.healthy else f"no: {s.reason}"]
             for s in ok]))
    else:
        for s in ok:
            write(out, f"{s.endpoint} {s.role}")
    if failed:
        print(f"leifdb: error: {len(failed)} of {len(results)} endpoints did not answer: " +
              "; ".join(one_line(error) for _, error in failed), file=sys.stderr)
    return EXIT_ERROR if failed else EXIT_OK
