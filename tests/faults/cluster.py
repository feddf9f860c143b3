"""A ``LocalCluster`` whose nodes reach each other only through the test's link proxies.

``LocalCluster`` gives every node the same ``--members``; here node ``a``'s entry for peer
``b`` is the address of the proxy for the directed link ``a -> b``, and its own entry is its
real Raft port. Everything else (starting, SIGKILL, SIGSTOP/SIGCONT, restarts, health,
waiting for a leader) is ``LocalCluster``'s, by node index.

With ``writeback=True`` every node runs with ``--unsafe-test-writeback-fs``: what it has not
synced lives only in its own memory, so a SIGKILL is a power cut of its machine
(``leifdb.storage.writeback``). ``launcher`` replaces the ``twistd`` command (a test that
plants a bug in the node runs it through a wrapper).
"""

from __future__ import annotations

import os
import signal
import socket
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

from leifdb.cluster import HOST, STOP_TIMEOUT, LocalCluster, twistd_command
from leifdb.config import WRITEBACK_FLAG
from tests.faults.proxy import ProxyNet

__all__ = ["ProxiedCluster", "reserve_ports"]


def reserve_ports(count: int) -> tuple[list[int], ExitStack]:
    """``count`` distinct free TCP ports on 127.0.0.1, held by bound sockets until the
    returned stack is closed (so nobody else's port 0 lands on them meanwhile)."""
    stack = ExitStack()
    ports = []
    for _ in range(count):
        s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        s.bind((HOST, 0))
        ports.append(s.getsockname()[1])
    return ports, stack


class ProxiedCluster(LocalCluster):
    """``n`` nodes under ``base_dir`` with a ``ProxyNet`` (``self.net``) between them.

    ``start_all`` starts the proxies, then the nodes; ``close`` stops the nodes (SIGCONT,
    SIGTERM, then SIGKILL, by pid) and the proxies, and may be called at any point.
    """

    def __init__(self, base_dir: Path | str, n: int, *, seed: int = 0,
                 extra_args: Sequence[str] = (), writeback: bool = False,
                 launcher: Sequence[str] = (), **kwargs: Any) -> None:
        ports, self._reserved = reserve_ports(2 * n)
        if writeback:
            extra_args = [*extra_args, f"--{WRITEBACK_FLAG}"]
        super().__init__(base_dir, ports[:n], ports[n:], extra_args=extra_args, **kwargs)
        self.writeback = writeback
        self.launcher = list(launcher)
        self.names = [node.name for node in self.nodes]
        self.net = ProxyNet(self.names, {node.name: node.raft_port for node in self.nodes},
                            seed=seed, host=HOST)
        self._net_started = False

    def members_for(self, i: int) -> str:
        """Node ``i``'s member list: itself at its Raft port, every peer at its proxy."""
        me = self.nodes[i].name
        return ",".join(
            f"{node.name}={HOST}:{node.raft_port}" if node.name == me
            else f"{node.name}={self.net.address(me, node.name)}"
            for node in self.nodes
        )

    def command(self, i: int) -> list[str]:
        args = super().command(i)
        at = args.index("--members") + 1
        args[at] = self.members_for(i)
        if self.launcher:
            args[: len(twistd_command())] = self.launcher
        return args

    def kill_together(self, indexes: Sequence[int]) -> None:
        """SIGKILL the running nodes of ``indexes`` at (nearly) the same instant, then wait
        until they are gone: unlike ``kill`` one by one, no survivor acts in between."""
        pids = {i: self.pid(i) for i in indexes}
        for pid in pids.values():
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        for i, pid in pids.items():
            if pid is not None:
                self._wait_exit(i, pid, STOP_TIMEOUT)
                self.nodes[i].pid_path.unlink(missing_ok=True)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def http_address(self, i: int) -> str:
        return f"{HOST}:{self.nodes[i].http_port}"

    def http_addresses(self) -> list[str]:
        return [self.http_address(i) for i in range(len(self.nodes))]

    def exit_status(self, i: int) -> int | None:
        """Node ``i``'s exit status if this object started it and it has exited."""
        return self._returncode(i)

    def start_all(self) -> None:
        if not self._net_started:
            self.net.start()
            self._net_started = True
        self._reserved.close()  # the proxies are bound: the nodes may have their ports
        self.start()

    def leader(self, timeout: float = 0.5) -> int | None:
        """The node that a running node of the highest term names as leader, if any
        answers; None when nobody knows one."""
        best: tuple[int, int] | None = None
        for i in range(len(self.nodes)):
            if not self.is_running(i):
                continue
            health = self.health(i, timeout=timeout)
            if not health or health.get("leader") not in self.names:
                continue
            term = int(health.get("term") or 0)
            if best is None or term > best[0]:
                best = (term, self.index(health["leader"]))
        return None if best is None else best[1]

    def close(self) -> None:
        """Stop every node and proxy this object started. Idempotent."""
        self._reserved.close()
        try:
            self.stop()
        finally:
            if self._net_started:
                self.net.stop()
                self._net_started = False
