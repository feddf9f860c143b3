"""A local cluster of LeifDB nodes, each its own ``twistd`` process, for trying LeifDB out
and for tests that need real processes.

Command line (``make cluster`` / ``cluster-status`` / ``cluster-stop``)::

    python -m leifdb.cluster start [--nodes 3] [--http-base 8080] [--raft-base 16990]
                                   [--dir .cluster] [extra twistd leifdb options...]
    python -m leifdb.cluster add [--dir .cluster]
    python -m leifdb.cluster status [--dir .cluster]
    python -m leifdb.cluster stop [--dir .cluster]

Node ``n<k>`` (k = 1..N) listens on 127.0.0.1, HTTP on ``http-base + k - 1`` and Raft on
``raft-base + k - 1``, and keeps everything under ``<dir>/node<k>/``: ``data/``, ``node.log``
(its stdout and stderr), ``pid`` and ``twistd.pid``. ``<dir>/cluster.json`` records the
ports so ``status``, ``add`` and ``stop`` need no flags. ``add`` starts one more node on
the next ports with ``--join`` (it adds itself as a learner; promote it with ``leifdb member
promote``). ``stop`` signals only processes whose command line shows they are that node.

As a library, ``LocalCluster`` starts, kills, pauses, restarts and queries nodes by index
(0-based; node ``i`` is named ``n<i+1>``). Ports are the caller's choice. The first nodes
bootstrap the cluster with ``--members``; nodes appended with ``add_node``, and nodes marked
with ``set_join`` (a replacement on a wiped data directory), start with ``--join`` instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from leifdb.client import Client
from leifdb.client.blocking import send_once
from leifdb.client.protocol import ConnectFailed, NoAnswer, Request, Send
from leifdb.localprocs import (
    HOST, children_of, free_ports, pid_alive, read_pid, send_signal, send_term, wait_until,
)

__all__ = ["LocalCluster", "NodeSpec", "free_ports", "http_request", "twistd_command"]

LEADER_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class NodeSpec:
    """Where node ``index`` lives: its ports and its folder."""

    index: int
    http_port: int
    raft_port: int
    dir: Path

    @property
    def name(self) -> str:
        return f"n{self.index + 1}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        return self.dir / "node.log"

    @property
    def pid_path(self) -> Path:
        return self.dir / "pid"

    @property
    def twistd_pid_path(self) -> Path:
        return self.dir / "twistd.pid"


def twistd_command() -> list[str]:
    """The ``twistd`` of the running interpreter's environment (the venv's)."""
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [str(script)]
    code = "import sys; from twisted.scripts.twistd import run; sys.exit(run())"
    return [sys.executable, "-c", code]


def _source_root() -> str:
    """The folder holding the ``leifdb`` package in use, so nodes run the same code."""
    return str(Path(__file__).resolve().parents[1])


class LocalCluster:
    """N nodes on 127.0.0.1 under ``base_dir``; node ``i`` uses ``http_ports[i]`` and
    ``raft_ports[i]``. ``extra_args`` go to every node's ``twistd leifdb``.

    Processes started by this object are its children (``detach=False``) or in their own
    session (``detach=True``, for the command line, so they outlive it). Every method that
    waits is bounded."""

    def __init__(
        self,
        base_dir: Path | str,
        http_ports: Sequence[int],
        raft_ports: Sequence[int],
        *,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        detach: bool = False,
    ) -> None:
        if len(http_ports) != len(raft_ports) or not http_ports:
            raise ValueError("need one HTTP port and one Raft port per node")
        self.base_dir = Path(base_dir).absolute()
        self.nodes = [
            NodeSpec(i, http, raft, self.base_dir / f"node{i + 1}")
            for i, (http, raft) in enumerate(zip(http_ports, raft_ports))
        ]
        self.extra_args = list(extra_args)
        self.env = env
        self.detach = detach
        # The nodes named in --members (the bootstrap voters); the others join.
        self.bootstrap = len(self.nodes)
        self.joining: set[int] = set()
        self._procs: dict[int, subprocess.Popen] = {}

    @classmethod
    def from_bases(
        cls, base_dir: Path | str, nodes: int, http_base: int, raft_base: int, **kwargs: Any
    ) -> LocalCluster:
        return cls(
            base_dir,
            [http_base + i for i in range(nodes)],
            [raft_base + i for i in range(nodes)],
            **kwargs,
        )

    @classmethod
    def load(cls, base_dir: Path | str, **kwargs: Any) -> LocalCluster:
        """The cluster recorded in ``base_dir/cluster.json`` by ``save``."""
        state = json.loads((Path(base_dir) / STATE_FILE).read_text())
        http_ports, raft_ports = state["http_ports"], state["raft_ports"]
        bootstrap = int(state.get("bootstrap", len(http_ports)))
        cluster = cls(
            base_dir,
            http_ports[:bootstrap],
            raft_ports[:bootstrap],
            extra_args=state.get("extra_args", ()),
            **kwargs,
        )
        for http_port, raft_port in zip(http_ports[bootstrap:], raft_ports[bootstrap:]):
            cluster.add_node(http_port, raft_port)
        cluster.joining.update(i for i in state.get("joining", ()) if i < len(cluster))
        return cluster

    def save(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "http_ports": [n.http_port for n in self.nodes],
            "raft_ports": [n.raft_port for n in self.nodes],
            "bootstrap": self.bootstrap,
            "joining": sorted(self.joining),
            "extra_args": self.extra_args,
        }
        (self.base_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def __len__(self) -> int:
        return len(self.nodes)

    # --- processes ------------------------------------------------------------------

    @property
    def members(self) -> str:
        """``--members`` of the bootstrap nodes (a joining node gets ``--join`` instead)."""
        return ",".join(f"{n.name}={HOST}:{n.raft_port}" for n in self.nodes[: self.bootstrap])

    def add_node(self, http_port: int, raft_port: int) -> int:
        """A new node ``n<k>`` on these ports that starts with ``--join`` (not started
        here); its index."""
        i = len(self.nodes)
        self.nodes.append(NodeSpec(i, http_port, raft_port, self.base_dir / f"node{i + 1}"))
        self.joining.add(i)
        return i

    def set_join(self, i: int, join: bool = True) -> None:
        """Start node ``i`` with ``--join`` from now on (a replacement on an empty data
        directory), or with ``--members`` again."""
        if join:
            self.joining.add(i)
        elif i < self.bootstrap:
            self.joining.discard(i)
        else:
            raise ValueError(f"{self.nodes[i].name} was added later: it can only --join")

    def wipe(self, i: int) -> None:
        """Delete node ``i``'s data directory, as a dead disk would (the node must be down)."""
        if self.is_running(i):
            raise RuntimeError(f"{self.nodes[i].name} is running: stop it before wiping it")
        shutil.rmtree(self.nodes[i].data_dir, ignore_errors=True)

    def join_urls(self, i: int) -> str:
        """``--join`` for node ``i``: the HTTP URLs of every other node that runs (of
        every other node if none does)."""
        others = [n for n in self.nodes if n.index != i]
        running = [n for n in others if self.is_running(n.index)]
        return ",".join(n.url for n in running or others)

    def command(self, i: int) -> list[str]:
        node = self.nodes[i]
        if i in self.joining:
            where = ["--join", self.join_urls(i)]
        else:
            where = ["--members", self.members]
        return [
            *twistd_command(),
            "-n",
            f"--pidfile={node.twistd_pid_path}",
            "leifdb",
            "--mode", "multi",
            "--host", HOST,
            "--bind", HOST,
            *where,
            "--name", node.name,
            "--http-port", str(node.http_port),
            "--raft-port", str(node.raft_port),
            "--data-dir", str(node.data_dir),
            *self.extra_args,
        ]

    def start(self) -> None:
        """Start every node that is not running."""
        for i in range(len(self.nodes)):
            if not self.is_running(i):
                self.start_node(i)

    def start_node(self, i: int) -> int:
        """Start node ``i`` (RuntimeError if it runs already); returns its pid."""
        node = self.nodes[i]
        if self.is_running(i):
            raise RuntimeError(f"{node.name} is already running (pid {self.pid(i)})")
        node.dir.mkdir(parents=True, exist_ok=True)
        # A pid file left by a killed node would make twistd refuse to start if the pid
        # had been reused; the node is known to be down here.
        node.twistd_pid_path.unlink(missing_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_source_root(), env.get("PYTHONPATH", "")) if p
        )
        with open(node.log_path, "ab") as log_file:
            proc = subprocess.Popen(
                self.command(i),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=node.dir,
                start_new_session=self.detach,
            )
        self._procs[i] = proc
        node.pid_path.write_text(f"{proc.pid}\n")
        return proc.pid

    def pid(self, i: int) -> int | None:
        """Node ``i``'s pid if it is running (by this object's child, else its pid file)."""
        proc = self._procs.get(i)
        if proc is not None:
            return proc.pid if proc.poll() is None else None
        pid = read_pid(self.nodes[i].pid_path)
        return pid if pid is not None and _is_node_process(pid, self.nodes[i]) else None

    def is_running(self, i: int) -> bool:
        return self.pid(i) is not None

    def signal(self, i: int, sig: int) -> None:
        """Send ``sig`` to node ``i``; SIGSTOP and SIGCONT go to its HTTP workers too (the
        node drains and stops its workers itself on SIGTERM)."""
        pid = self.pid(i)
        if pid is None:
            raise RuntimeError(f"{self.nodes[i].name} is not running")
        os.kill(pid, sig)
        if sig in (signal.SIGSTOP, signal.SIGCONT):
            for worker in children_of(pid):
                send_signal(worker, sig)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` and its HTTP workers at once, as a crash of its machine
        would, and wait until all are gone (its lock and ports are free: a worker that
        outlived its node by a few milliseconds would reset connections, not refuse them)."""
        pid = self.pid(i)
        if pid is None:
            return
        workers = children_of(pid)
        for each in (pid, *workers):
            send_signal(each, signal.SIGKILL)
        self._wait_exit(i, pid, STOP_TIMEOUT)
        wait_until(lambda: not any(pid_alive(w) for w in workers), STOP_TIMEOUT, 0.02)
        self.nodes[i].pid_path.unlink(missing_ok=True)

    def pause(self, i: int) -> None:
        """SIGSTOP the node and its HTTP workers: it freezes as if its machine hung;
        ``resume`` undoes it."""
        self.signal(i, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        self.signal(i, signal.SIGCONT)

    def terminate(self, i: int, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM node ``i`` and wait up to ``timeout`` s; SIGKILL it if still alive.

        Returns its exit status when it is a child of this object (negative: killed by
        that signal), else None."""
        pid = self.pid(i)
        if pid is None:
            return self._returncode(i)
        send_term(pid)
        return self._finish_terminate(i, pid, timeout)

    def _finish_terminate(self, i: int, pid: int, timeout: float) -> int | None:
        if not self._wait_exit(i, pid, timeout):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._wait_exit(i, pid, STOP_TIMEOUT)
        self.nodes[i].pid_path.unlink(missing_ok=True)
        return self._returncode(i)

    def restart(self, i: int) -> int:
        """Kill (if running) and start node ``i`` again on the same data; returns its pid."""
        self.kill(i)
        return self.start_node(i)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Terminate every node: SIGTERM all, wait, then SIGKILL what is left."""
        pids = {i: self.pid(i) for i in range(len(self.nodes))}
        for pid in pids.values():
            if pid is not None:
                send_term(pid)
        deadline = time.monotonic() + timeout
        for i, pid in pids.items():
            if pid is not None:
                self._finish_terminate(i, pid, max(0.1, deadline - time.monotonic()))
            self.nodes[i].pid_path.unlink(missing_ok=True)

    def exit_status(self, i: int) -> int | None:
        """Node ``i``'s exit status if this object started it and it has exited (negative:
        killed by that signal); None otherwise."""
        return self._returncode(i)

    def _returncode(self, i: int) -> int | None:
        proc = self._procs.get(i)
        return proc.poll() if proc is not None else None

    def _wait_exit(self, i: int, pid: int, timeout: float) -> bool:
        proc = self._procs.get(i)
        if proc is not None and proc.pid == pid:
            try:
                proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        return wait_until(lambda: not pid_alive(pid), timeout, 0.05)

    # --- HTTP -----------------------------------------------------------------------

    def url(self, i: int) -> str:
        return self.nodes[i].url

    def client(self, timeout: float = 10.0) -> Client:
        """A ``leifdb.client`` client of the whole cluster (every node an endpoint): how
        code that talks to the cluster as a user would, rather than to one node, does."""
        return Client([node.url for node in self.nodes], timeout=timeout)

    def health(self, i: int, timeout: float = 1.0) -> dict[str, Any] | None:
        """``GET /health`` of node ``i``, or None if it does not answer in time."""
        try:
            status, body, _ = self.request(i, "GET", "/health", timeout=timeout)
        except OSError:
            return None
        return body if status in (200, 503) and isinstance(body, dict) else None

    def request(
        self, i: int, method: str, path: str, body: Any = None, timeout: float = 2.0
    ) -> tuple[int, Any, dict[str, str]]:
        """One HTTP request to node ``i`` (redirects are not followed): status, decoded
        JSON body (None if not JSON) and headers. ``body`` is sent as JSON. OSError if the
        node does not answer in time."""
        return http_request(self.url(i), method, path, body, timeout)

    def put(self, i: int, key: str, value: str, timeout: float = 2.0) -> tuple[int, Any]:
        status, body, _ = self.request(i, "PUT", _key_path(key), {"value": value}, timeout)
        return status, body

    def get(
        self, i: int, key: str, *, stale: bool = False, timeout: float = 2.0
    ) -> tuple[int, Any]:
        query = "?consistency=stale" if stale else ""
        status, body, _ = self.request(i, "GET", _key_path(key) + query, None, timeout)
        return status, body

    def index_of_url(self, url: str) -> int | None:
        """The node whose HTTP address is in ``url`` (a redirect's Location)."""
        netloc = urllib.parse.urlsplit(url).netloc
        for node in self.nodes:
            if netloc == f"{HOST}:{node.http_port}":
                return node.index
        return None

    def leaders(self, among: Iterable[int] | None = None) -> list[int]:
        """Nodes (of ``among``, default all) that currently report being leader."""
        indexes = range(len(self.nodes)) if among is None else among
        return [
            i for i in indexes
            if self.is_running(i) and (self.health(i) or {}).get("role") == "leader"
        ]

    def wait_for_leader(
        self, timeout: float = LEADER_TIMEOUT, among: Iterable[int] | None = None
    ) -> int:
        """Poll until exactly one node (of ``among``) reports ``role: leader``; its index.
        TimeoutError after ``timeout`` seconds."""
        indexes = list(range(len(self.nodes)) if among is None else among)
        found: list[int] = []

        def one_leader() -> bool:
            found[:] = self.leaders(indexes)
            return len(found) == 1

        if not wait_until(one_leader, timeout, 0.05):
            raise TimeoutError(f"no single leader among {self._names(indexes)} after {timeout} s")
        return found[0]

    def wait_until_up(
        self, timeout: float = LEADER_TIMEOUT, among: Iterable[int] | None = None
    ) -> None:
        """Poll until every node (of ``among``) answers ``/health``: its Raft port listens
        and it handles signals. TimeoutError (naming the silent nodes) otherwise."""
        waiting = list(range(len(self.nodes)) if among is None else among)

        def all_up() -> bool:
            waiting[:] = [i for i in waiting if self.health(i) is None]
            return not waiting

        if not wait_until(all_up, timeout, 0.05):
            raise TimeoutError(f"{self._names(waiting)} did not answer /health in {timeout} s")

    def wait_for_health(self, i: int, timeout: float = LEADER_TIMEOUT) -> dict[str, Any]:
        """Poll until node ``i`` answers ``/health``; TimeoutError otherwise."""
        found: list[dict[str, Any]] = []

        def answered() -> bool:
            reply = self.health(i)
            if reply is not None:
                found.append(reply)
            return bool(found)

        if not wait_until(answered, timeout, 0.05):
            raise TimeoutError(f"{self.nodes[i].name} did not answer /health in {timeout} s")
        return found[0]

    def wait_caught_up(self, i: int, timeout: float = LEADER_TIMEOUT) -> int:
        """Poll until node ``i`` has applied everything a leader had committed when this
        was called; that index. TimeoutError otherwise."""
        leader = self.wait_for_leader(timeout)
        target = int((self.health(leader) or {}).get("commit_index") or 0)
        applied: list[int] = [-1]

        def caught_up() -> bool:
            applied[0] = int((self.health(i) or {}).get("applied_index") or -1)
            return applied[0] >= target

        if not wait_until(caught_up, timeout, 0.05):
            raise TimeoutError(
                f"{self.nodes[i].name} applied {applied[0]}, not {target}, in {timeout} s")
        return target

    def log_tail(self, i: int, lines: int = 40) -> str:
        try:
            text = self.nodes[i].log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _names(self, indexes: Iterable[int]) -> str:
        return ", ".join(self.nodes[i].name for i in indexes)


def http_request(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 2.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """``method base_url+path`` with an optional JSON body and extra ``headers``; (status,
    JSON or None, lower-cased headers). Non-2xx statuses are returned, not raised;
    ``ConnectionError`` (an OSError) when unreachable or when no whole answer came.

    One request to ONE node, unretried and with redirects not followed: the launcher
    observes each node as it is (its health, whether it leads). It is the client
    library's single send (``leifdb.client.blocking.send_once``) without its retry and
    redirect policy; talking to the cluster as a client does goes through ``Client``
    (``LocalCluster.client``...)."""
    payload = None if body is None else json.dumps(body).encode()
    sent = dict(headers or {})
    if payload is not None:
        sent.setdefault("Content-Type", "application/json")
    request = Request("probe", method, path, payload, tuple(sent.items()))
    try:
        reply = send_once(Send(base_url, request, timeout))
    except (ConnectFailed, NoAnswer) as exc:
        raise ConnectionError(f"{base_url}: {exc}") from None
    try:
        decoded = json.loads(reply.body) if reply.body else None
    except ValueError:
        decoded = None
    return reply.status, decoded, reply.headers


def _key_path(key: str) -> str:
    return "/db/" + urllib.parse.quote(key, safe="")


def _is_node_process(pid: int, node: NodeSpec) -> bool:
    """``pid`` is alive and is twistd running this node (guards against reused pids)."""
    if not pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in argv]
    return any("twistd" in a for a in args) and str(node.data_dir) in args


if __name__ == "__main__":
    from leifdb.cluster_cli import main  # the command line, on top of this module

    sys.exit(main())
