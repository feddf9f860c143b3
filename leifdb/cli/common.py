"""What every ``leifdb`` command shares: exit codes, the errors that map to them, argument
types and output formats."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from leifdb.client import parse_duration

__all__ = [
    "DEFAULT_ENDPOINTS", "EXIT_CONDITION", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_LEASE",
    "EXIT_LOCKED", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_UNKNOWN", "EXIT_USAGE", "KeyNotFound",
    "LeaseLost", "Parser", "UsageError", "duration_arg", "json_out", "lease_id_arg", "one_line",
    "seconds_text", "show", "table", "write",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONDITION, EXIT_NOT_FOUND, EXIT_UNKNOWN = 0, 1, 2, 3, 4, 5
EXIT_LOCKED, EXIT_LEASE, EXIT_INTERRUPTED = 6, 7, 130
DEFAULT_ENDPOINTS = "http://127.0.0.1:8080"


class UsageError(Exception):
    pass


class KeyNotFound(Exception):
    pass


class LeaseLost(Exception):
    """A lease that ``lock``, ``elect`` or ``lease keepalive`` kept alive was lost."""


def duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def lease_id_arg(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a lease id is a positive integer, not {text!r}")
    return int(text)


def seconds_text(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


class Parser(argparse.ArgumentParser):
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


def json_out(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def write(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def show(out: TextIO, fmt: str, data: dict[str, Any], headers: list[str],
         rows: list[list[Any]], value: str) -> None:
    if fmt == "json":
        write(out, json_out(data))
    elif fmt == "table":
        write(out, table(headers, rows))
    else:
        write(out, value)


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
