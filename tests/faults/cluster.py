"""A ``LocalCluster`` whose nodes reach each other only through the test's link proxies.

Every member's Raft address, in ``--members`` and so in the member list the cluster keeps
in its log and snapshots, is its front proxy (``ProxyNet.front_address``): whichever node
dials it, the proxy tells the link ``a -> b`` by the dialer's ``Hello``, so a partition or a
delay cuts or slows exactly the links it names, also after the membership changed. A node
listens on its real Raft port (``--raft-port``, which with ``--name`` need not match its
entry). Nodes added with ``add_node`` start with ``--join`` through
``tests.faults.proxied_twistd``, which advertises the front and listens on the real port.
``live`` lists the nodes that are members (``remove`` takes one out). Everything else
(starting, SIGKILL, SIGSTOP/SIGCONT, restarts, health, waiting for a leader) is
``LocalCluster``'s, by node index.

With ``writeback=True`` every node runs with ``--unsafe-test-writeback-fs``: what it has not
synced lives only in its own memory, so a SIGKILL is a power cut of its machine
(``leifdb.storage.writeback``). ``launcher`` replaces the ``twistd`` command (a test that
plants a bug in the node runs it through a wrapper).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

from leifdb.cluster import HOST, STOP_TIMEOUT, LocalCluster, free_ports, twistd_command
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
        self.live = list(range(n))
        self.net = ProxyNet(self.names, {node.name: node.raft_port for node in self.nodes},
                            seed=seed, host=HOST)
        self._net_started = False

    @property
    def members(self) -> str:
        """``--members``: every bootstrap node at its front proxy."""
        return ",".join(f"{node.name}={self.net.front_address(node.name)}"
                        for node in self.nodes[: self.bootstrap])

    def command(self, i: int) -> list[str]:
        args = super().command(i)
        if i in self.joining:
            if self.launcher:
                raise RuntimeError("a node that joins runs through tests.faults.proxied_twistd: "
                                   "it cannot have another launcher")
            at = args.index("--raft-port") + 1
            front = self.net.front_address(self.names[i]).rpartition(":")[2]
            listen = ["--listen-raft-port", args[at]]
            args[at] = front
            args[: len(twistd_command())] = [sys.executable, "-m", "tests.faults.proxied_twistd",
                                              *listen]
        elif self.launcher:
            args[: len(twistd_command())] = self.launcher
        return args

    def add_node(self, http_port: int = 0, raft_port: int = 0) -> int:
        """A new member-to-be on free ports (or these), behind its own front proxy; it
        starts with ``--join`` and is live. The net must be running."""
        if not http_port or not raft_port:
            http_port, raft_port = free_ports(2)
        i = super().add_node(http_port, raft_port)
        self.names.append(self.nodes[i].name)
        self.net.add_node(self.nodes[i].name, raft_port)
        self.live.append(i)
        return i

    def remove(self, i: int) -> None:
        """Node ``i`` is no member any more: never restarted, not a client's endpoint."""
        if i in self.live:
            self.live.remove(i)

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
        """The HTTP addresses of the live nodes (members)."""
        return [self.http_address(i) for i in self.live]

    def start_all(self) -> None:
        if not self._net_started:
            self.net.start()
            self._net_started = True
        self._reserved.close()  # the proxies are bound: the nodes may have their ports
        for i in self.live:
            if not self.is_running(i):
                self.start_node(i)

    def leader(self, timeout: float = 0.5) -> int | None:
        """The node that a running node of the highest term names as leader, if any
        answers; None when nobody knows one."""
        best: tuple[int, int] | None = None
        for i in self.live:
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
