"""Processes and ports on this machine, for the local cluster (``leifdb.cluster``): TCP
ports free to listen on, signals by PID, and what /proc says of a process. Linux only,
like the cluster it serves."""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from pathlib import Path
from typing import Callable

__all__ = ["HOST", "children_of", "ephemeral_low", "free_ports", "pid_alive", "read_pid",
           "send_signal", "send_term", "wait_until"]

HOST = "127.0.0.1"


def free_ports(count: int, *, consecutive: bool = False) -> list[int]:
    """``count`` distinct TCP ports that can be bound on 127.0.0.1 right now, below the
    kernel's ephemeral range: a port from ``bind(0)`` is ephemeral, and the nodes' own
    outgoing connections could take it before the node that should listen on it starts.
    ``consecutive``: ``base, base + 1, ...``. Another process may still take one."""
    low, high = 10000, ephemeral_low() - 1
    rng = random.Random()
    chosen: list[socket.socket] = []
    try:
        for _ in range(2000):
            if len(chosen) == count:
                return [sock.getsockname()[1] for sock in chosen]
            if consecutive and chosen:
                port = chosen[-1].getsockname()[1] + 1
            else:
                port = rng.randrange(low, high - count)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((HOST, port))
            except OSError:
                sock.close()
                if consecutive:
                    for held in chosen:
                        held.close()
                    chosen.clear()
                continue
            chosen.append(sock)
        raise RuntimeError(f"found no {count} free ports in {low}..{high}")
    finally:
        for sock in chosen:
            sock.close()


def ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def send_term(pid: int) -> None:
    """SIGTERM, after a SIGCONT in case the node is paused (SIGTERM alone would wait)."""
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a node's HTTP workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def send_signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True
