"""``leifdb``: the command-line client (blocking ``leifdb.client.Client``).

    leifdb [--endpoints URLS] [-o table|json|value] COMMAND ...

Exit codes: 0 ok, 1 error, 2 usage, 3 condition failed (also a transaction whose compares
failed), 4 key not found (``get``), 5 outcome unknown (a write may or may not have been
applied). Errors are one line on stderr: ``leifdb: error: ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence, TextIO

from leifdb.client import Client, ClientError, ConditionFailed, OutcomeUnknown
from leifdb.client.types import Event, Item, Status

__all__ = ["EXIT_CONDITION", "EXIT_ERROR", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_UNKNOWN",
           "EXIT_USAGE", "main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONDITION, EXIT_NOT_FOUND, EXIT_UNKNOWN = 0, 1, 2, 3, 4, 5
DEFAULT_ENDPOINTS = "http://127.0.0.1:8080"


class UsageError(Exception):
    pass


class KeyNotFound(Exception):
    pass


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
                       "4 key not found, 5 outcome unknown")
    p.add_argument("--endpoints", default=None,
                   help="comma-separated http://host:port list (default $LEIFDB_ENDPOINTS "
                        f"or {DEFAULT_ENDPOINTS})")
    p.add_argument("-o", "--output", choices=("table", "json", "value"), default=None,
                   help="output format (default: value for get/put/del/txn, table for "
                        "ls/status, json for watch)")
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

    delete = sub.add_parser("del", help="delete a key (absent: not an error)")
    delete.add_argument("key")
    dcond = delete.add_mutually_exclusive_group()
    dcond.add_argument("--prev", help="only if the current value is this")
    dcond.add_argument("--if-match", type=int, metavar="REV")

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
            raise KeyNotFound(args.key)
        fmt = fmt or "value"
        if fmt == "json":
            _write(out, _json_out(item.to_json()))
        elif fmt == "table":
            _write(out, table(["KEY", "VALUE", "REVISION"], [_item_row(item)]))
        else:
            _write(out, item.value)
        return EXIT_OK
    if cmd in ("put", "del"):
        if cmd == "put":
            result = client.put(args.key, args.value, prev=args.prev, if_match=args.if_match,
                                create=args.create)
        else:
            result = client.delete(args.key, prev=args.prev, if_match=args.if_match)
        fmt = fmt or "value"
        if fmt == "json":
            _write(out, _json_out({"key": args.key, "revision": result.revision}))
        elif fmt == "table":
            _write(out, table(["KEY", "REVISION"], [[args.key, result.revision]]))
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


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
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
        print(f"leifdb: error: key not found: {e.args[0]}", file=sys.stderr)
        return EXIT_NOT_FOUND
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
        return 130
    except BrokenPipeError:
        return EXIT_OK


def console_main() -> None:
    """The ``leifdb`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
