"""The ``leifdb`` command as a subprocess (``python -m leifdb.cli`` and the installed
console script) against the real cluster: every command, its exit codes and formats."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from leifdb.cli import table
from tests.cluster.helpers import ROOT, child_env, eventually

pytestmark = pytest.mark.cluster


def leifdb(*args: str, endpoints: list[str] | None = None, stdin: str | None = None,
           command: list[str] | None = None, timeout: float = 30, **env: str
           ) -> subprocess.CompletedProcess:
    extra = ["--endpoints", ",".join(endpoints)] if endpoints else []
    return subprocess.run(
        [*(command or [sys.executable, "-m", "leifdb.cli"]), *extra, *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, env=child_env(**env),
        cwd=ROOT)


def fresh() -> str:
    return f"c{uuid.uuid4().hex[:8]}/"


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("leifdb: error: "), result.stderr
    return lines[0]


def test_table_format() -> None:
    assert table(["A", "BB"], [["xyz", 1]]).splitlines() == [
        "+-----+----+", "|  A  | BB |", "+-----+----+", "| xyz | 1  |", "+-----+----+"]


def test_put_get_del(endpoints) -> None:
    p = fresh()
    put = leifdb("put", p + "k", "hello world", endpoints=endpoints)
    assert put.returncode == 0, put.stderr
    rev = int(put.stdout)
    get = leifdb("get", p + "k", endpoints=endpoints)
    assert (get.returncode, get.stdout) == (0, "hello world\n")
    as_json = leifdb("-o", "json", "get", p + "k", endpoints=endpoints)
    assert json.loads(as_json.stdout) == {"key": p + "k", "value": "hello world",
                                          "revision": rev, "create_revision": rev,
                                          "lease": 0}
    as_table = leifdb("-o", "table", "get", p + "k", endpoints=endpoints)
    assert " KEY " in as_table.stdout and f"| {p}k " in as_table.stdout
    # the environment variable, and stale reads
    env_get = leifdb("get", "--stale", p + "k", LEIFDB_ENDPOINTS=endpoints[0])
    assert env_get.returncode == 0 and env_get.stdout in ("hello world\n", "")
    # conditions: exit 3 and one line on stderr
    failed = leifdb("put", p + "k", "x", "--create", endpoints=endpoints)
    assert failed.returncode == 3
    assert "condition failed" in one_error_line(failed) and "'hello world'" in failed.stderr
    assert leifdb("put", p + "k", "x", "--prev", "nope", endpoints=endpoints).returncode == 3
    ok = leifdb("-o", "json", "put", p + "k", "x", "--if-match", str(rev), endpoints=endpoints)
    assert ok.returncode == 0 and json.loads(ok.stdout)["revision"] > rev
    deleted = leifdb("-o", "table", "del", p + "k", endpoints=endpoints)
    assert deleted.returncode == 0 and "REVISION" in deleted.stdout
    missing = leifdb("get", p + "k", endpoints=endpoints)
    assert missing.returncode == 4 and missing.stdout == ""
    assert "key not found" in one_error_line(missing)
    assert leifdb("del", p + "k", "--prev", "x", endpoints=endpoints).returncode == 3


def test_ls(endpoints) -> None:
    p = fresh()
    for key in ("a", "b", "c"):
        leifdb("put", p + key, key.upper(), endpoints=endpoints)
    t = leifdb("ls", p, endpoints=endpoints)
    assert t.returncode == 0
    assert [line.split("|")[1].strip() for line in t.stdout.splitlines()[3:-1]] == \
        [p + "a", p + "b", p + "c"]
    j = leifdb("-o", "json", "ls", p, "--limit", "2", endpoints=endpoints)
    assert [i["value"] for i in json.loads(j.stdout)] == ["A", "B"]
    v = leifdb("-o", "value", "ls", p, endpoints=endpoints)
    assert v.stdout.split() == [p + "a", p + "b", p + "c"]


def test_txn_from_stdin_and_file(endpoints, tmp_path: Path) -> None:
    p = fresh()
    txn = {"compare": [{"key": p + "a", "target": "exists", "op": "equal", "value": False}],
           "success": [{"op": "put", "key": p + "a", "value": "1"}],
           "failure": [{"op": "get", "key": p + "a"}]}
    first = leifdb("-o", "json", "txn", endpoints=endpoints, stdin=json.dumps(txn))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["succeeded"] is True
    path = tmp_path / "txn.json"
    path.write_text(json.dumps(txn))
    second = leifdb("txn", str(path), endpoints=endpoints)
    assert (second.returncode, second.stdout) == (3, "FAILED\n1\n")
    as_table = leifdb("-o", "table", "txn", str(path), endpoints=endpoints)
    assert as_table.returncode == 3 and "FAILED at revision" in as_table.stdout
    bad = leifdb("txn", endpoints=endpoints, stdin="{not json")
    assert bad.returncode == 2 and "not JSON" in one_error_line(bad)
    invalid = leifdb("txn", endpoints=endpoints, stdin='{"compare": 5}')
    assert invalid.returncode == 1 and "400" in one_error_line(invalid)


def test_watch(endpoints) -> None:
    p = fresh()
    first = int(leifdb("put", p + "a", "1", endpoints=endpoints).stdout)
    leifdb("put", p + "b", "2", endpoints=endpoints)
    leifdb("del", p + "a", endpoints=endpoints)
    j = leifdb("watch", p, "--prefix", "--from", str(first), "--count", "3",
               endpoints=endpoints)
    assert j.returncode == 0, j.stderr
    assert [(e["type"], e["key"]) for e in map(json.loads, j.stdout.splitlines())] == [
        ("put", p + "a"), ("put", p + "b"), ("delete", p + "a")]
    t = leifdb("-o", "table", "watch", p + "b", "--from", str(first), "--count", "1",
               "--prev", endpoints=endpoints)
    assert t.stdout.split("\t")[1:] == ["PUT", p + "b", "2\n"]
    v = leifdb("-o", "value", "watch", p, "--prefix", "--from", str(first), "--count", "2",
               endpoints=endpoints)
    assert v.stdout == "1\n2\n"


def test_status(cluster, endpoints) -> None:
    t = leifdb("status", endpoints=endpoints)
    assert t.returncode == 0, t.stderr
    lines = t.stdout.splitlines()
    assert " ENDPOINT " in lines[1] and "ROLE" in lines[1] and "APPLIED INDEX" in lines[1]
    assert len(lines) == 3 + 3 + 1
    assert sum(" leader " in line for line in lines) == 1
    j = json.loads(leifdb("-o", "json", "status", endpoints=endpoints).stdout)
    assert {s["node"] for s in j} == {"n1", "n2", "n3"}
    assert all(s["version"] and s["term"] >= 1 for s in j)
    from leifdb.cluster import free_ports
    down = f"127.0.0.1:{free_ports(1)[0]}"
    partly = leifdb("status", endpoints=[endpoints[0], down])
    assert partly.returncode == 1 and down in one_error_line(partly)
    assert len(partly.stdout.splitlines()) == 5


def test_usage_and_connection_errors(endpoints) -> None:
    for args in ([], ["get"], ["put", "k"], ["nope"], ["-o", "xml", "get", "k"],
                 ["put", "k", "v", "--prev", "a", "--create"]):
        r = leifdb(*args)
        assert r.returncode == 2, args
        one_error_line(r)
    assert leifdb("get", "k", endpoints=["ftp://x"]).returncode == 2
    from leifdb.cluster import free_ports
    down = leifdb("--timeout", "1", "get", "k", endpoints=[f"127.0.0.1:{free_ports(1)[0]}"])
    assert down.returncode == 1 and "cannot connect" in one_error_line(down)
    assert "exit codes" in leifdb("--help").stdout


def test_console_script(endpoints, tmp_path: Path) -> None:
    """``pip install`` a copy of the project and run its ``leifdb`` script."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "leifdb", src / "leifdb",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "twisted", src / "twisted",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-compile", "--target", str(target), str(src)],
                   check=True, capture_output=True, timeout=120)
    script = target / "bin" / "leifdb"
    assert script.exists()
    p = fresh()
    env = {"PYTHONPATH": str(target), "LEIFDB_ENDPOINTS": ",".join(endpoints)}
    assert leifdb("put", p + "x", "1", command=[str(script)], **env).returncode == 0
    got = leifdb("get", p + "x", command=[str(script)], **env)
    assert (got.returncode, got.stdout) == (0, "1\n")


def test_outcome_unknown_exit_code(capsys) -> None:
    """A node that accepts connections and never answers: a write exits 5 after one try,
    a read is retried and exits 1 (in-process ``main``; the kernel's backlog accepts)."""
    import socket

    from leifdb.cli import EXIT_ERROR, EXIT_UNKNOWN, main

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = "127.0.0.1:%d" % silent.getsockname()[1]
        assert main(["--endpoints", url, "--timeout", "0.2", "put", "k", "v"]) == EXIT_UNKNOWN
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "outcome unknown" in err
        assert main(["--endpoints", url, "--timeout", "0.2", "get", "k"]) == EXIT_ERROR
        assert "gave up" in capsys.readouterr().err


# --- leases, locks, elections ---------------------------------------------------------

def test_lease_commands_and_ttl_keys(endpoints) -> None:
    p = fresh()
    granted = leifdb("lease", "grant", "30s", endpoints=endpoints)
    assert granted.returncode == 0, granted.stderr
    lease = granted.stdout.strip()
    assert leifdb("put", p + "a", "1", "--lease", lease, endpoints=endpoints).returncode == 0
    got = json.loads(leifdb("-o", "json", "get", p + "a", endpoints=endpoints).stdout)
    assert got["lease"] == int(lease)
    info = json.loads(leifdb("-o", "json", "lease", "info", lease, endpoints=endpoints).stdout)
    assert info["keys"] == [p + "a"] and info["ttl"] == 30
    assert lease in leifdb("-o", "value", "lease", "list", endpoints=endpoints).stdout.split()
    once = leifdb("lease", "keepalive", lease, "--once", endpoints=endpoints)
    assert once.returncode == 0 and float(once.stdout) > 29
    ttl_put = leifdb("-o", "json", "put", p + "t", "x", "--ttl", "30s", endpoints=endpoints)
    assert json.loads(ttl_put.stdout)["lease"] > 0
    assert leifdb("lease", "revoke", lease, endpoints=endpoints).returncode == 0
    assert leifdb("get", p + "a", endpoints=endpoints).returncode == 4
    gone = leifdb("lease", "info", lease, endpoints=endpoints)
    assert gone.returncode == 7 and "404" in one_error_line(gone)
    assert leifdb("put", p + "b", "1", "--lease", lease, endpoints=endpoints).returncode == 7
    bad = leifdb("lease", "grant", "0.5s", endpoints=endpoints)
    assert bad.returncode == 1 and "400" in one_error_line(bad)


def test_lock_runs_a_fenced_command(endpoints) -> None:
    p = fresh()
    name = p.rstrip("/")
    script = ("import os, subprocess, sys; "
              "assert os.environ['LEIFDB_FENCE'] == '" + name + ":' + "
              "os.environ['LEIFDB_FENCE_TOKEN']; "
              "sys.exit(subprocess.call([sys.executable, '-m', 'leifdb.cli', 'put', '"
              + p + "data', 'by the holder', '--fence', os.environ['LEIFDB_FENCE']]) or 9)")
    held = leifdb("lock", name, "--", sys.executable, "-c", script, endpoints=endpoints)
    assert held.returncode == 9, held.stderr  # the command's own exit code
    assert leifdb("get", p + "data", endpoints=endpoints).stdout == "by the holder\n"
    # the lock was released and its lease revoked
    assert leifdb("ls", "_lock/" + name + "/", "-o", "value",
                  endpoints=endpoints).stdout == ""
    # a fence whose lock is free: refused with exit 3
    stale = leifdb("put", p + "data", "late", "--fence", f"{name}:1", endpoints=endpoints)
    assert stale.returncode == 3 and "fenced" in one_error_line(stale)


def test_lock_contention_exits_6(endpoints) -> None:
    name = fresh().rstrip("/")
    holder = subprocess.Popen(
        [sys.executable, "-m", "leifdb.cli", "--endpoints", ",".join(endpoints), "lock", name,
         "--", sys.executable, "-c", "import time; time.sleep(8)"],
        env=child_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        eventually(lambda: leifdb("-o", "value", "ls", f"_lock/{name}/",
                                  endpoints=endpoints).stdout, 10, "the holder's key")
        waiter = leifdb("lock", name, "--timeout", "1s", "--", "true", endpoints=endpoints)
        assert waiter.returncode == 6 and "not acquired" in one_error_line(waiter)
    finally:
        holder.terminate()  # SIGTERM: releases and revokes before exiting
        assert holder.wait(20) == 130, holder.stderr.read()
    assert leifdb("-o", "value", "ls", f"_lock/{name}/", endpoints=endpoints).stdout == ""


def test_elect(endpoints) -> None:
    name = fresh().rstrip("/")
    assert leifdb("elect", name, endpoints=endpoints).returncode == 4
    campaign = leifdb("elect", name, "node-a", "--", sys.executable, "-c",
                      "import os, sys; sys.exit(0 if os.environ['LEIFDB_ELECTION_KEY'] == "
                      f"'_election/{name}/' + os.environ['LEIFDB_LEASE'] else 5)",
                      endpoints=endpoints)
    assert campaign.returncode == 0, campaign.stderr
    assert leifdb("elect", name, endpoints=endpoints).returncode == 4  # it resigned
    listen = subprocess.Popen(
        [sys.executable, "-m", "leifdb.cli", "--endpoints", ",".join(endpoints), "-o", "value",
         "elect", name, "--listen", "--count", "2"],
        env=child_env(), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # usually connected by now: it sees "no leader" first
        leader = leifdb("elect", name, "node-b", "--", sys.executable, "-c",
                        "import time; time.sleep(3)", endpoints=endpoints)
        assert leader.returncode == 0, leader.stderr
        out, _ = listen.communicate(timeout=20)
    finally:
        if listen.poll() is None:
            listen.kill()
            listen.wait()
    assert out.splitlines() in (["", "node-b"], ["node-b", ""])


# --- the cluster -----------------------------------------------------------------------

def test_member_list_refusals_and_leader_transfer(cluster, endpoints) -> None:
    listed = leifdb("-o", "json", "member", "list", endpoints=endpoints)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert sorted((m["id"], m["role"]) for m in data["members"]) == [
        ("n1", "voter"), ("n2", "voter"), ("n3", "voter")]
    leader = data["leader"]
    assert data["node"] == leader  # asked of the leader: its view of every log
    assert all(m["match_index"] is not None for m in data["members"])
    assert [m["id"] for m in data["members"] if m["is_leader"]] == [leader]

    promote = leifdb("member", "promote", "n1", endpoints=endpoints)
    assert promote.returncode == 3 and "already a voter" in one_error_line(promote)
    remove = leifdb("member", "remove", "n9", endpoints=endpoints)
    assert remove.returncode == 4 and "no member n9" in one_error_line(remove)

    target = next(m["id"] for m in data["members"] if m["id"] != leader)
    moved = leifdb("leader", "transfer", target, endpoints=endpoints)
    assert (moved.returncode, moved.stdout) == (0, f"{target}\n"), moved.stderr

    def settled() -> bool:
        """Every node healthy, and the target the only one leading."""
        status = json.loads(leifdb("-o", "json", "status", endpoints=endpoints).stdout)
        return (all(s["healthy"] for s in status)
                and [s["node"] for s in status if s["role"] == "leader"] == [target])

    eventually(settled, 10.0, f"{target} to lead a healthy cluster")
