"""``leifdb lease``, ``put --lease/--ttl/--fence``, ``lock`` and ``elect`` in-process, with
the client's transport replaced by one answering by request kind: output formats, exit
codes, what COMMAND sees, and that every lease granted is revoked."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from leifdb import cli
from leifdb.cli import (
    EXIT_CONDITION, EXIT_LEASE, EXIT_LOCKED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, main,
)
from leifdb.client import Client, RetryPolicy
from tests.client.fakes import ByKind, answer, holder_json, lease_json

ENDPOINT = "http://a:1"
REVOKED = answer(200, {"id": 5, "revision": 20})
DELETED = answer(200, {"status": "Ok", "revision": 19})


@pytest.fixture
def fake(monkeypatch) -> ByKind:
    transport = ByKind()

    def client(endpoints: str, timeout: float) -> Client:
        return Client(endpoints, timeout=timeout, transport=transport,
                      policy=RetryPolicy(attempts=2, base=0.01))

    monkeypatch.setattr(cli, "Client", client)
    return transport


def run(*args: str) -> int:
    return main(["--endpoints", ENDPOINT, *args])


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_lease_commands(fake: ByKind, capsys) -> None:
    fake.answers.update(grant=answer(200, lease_json(ttl=30)),
                        keepalive=answer(200, lease_json(ttl=30, remaining=30)),
                        revoke=REVOKED,
                        leases=answer(200, {"leases": [lease_json(5, 30, 12.5),
                                                       lease_json(9, 60)], "revision": 3}),
                        lease_info=answer(200, {**lease_json(5, 30, 12.5),
                                                "keys": ["a", "b/c"]}))
    assert run("lease", "grant", "30s") == EXIT_OK
    assert capsys.readouterr().out == "5\n"
    assert json.loads(fake.sent[-1].body) == {"ttl": 30.0}
    assert run("-o", "json", "lease", "grant", "2m") == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"id": 5, "ttl": 30.0, "remaining": 30.0}
    assert json.loads(fake.sent[-1].body) == {"ttl": 120.0}
    assert run("lease", "keepalive", "5", "--once") == EXIT_OK
    assert capsys.readouterr().out == "30\n"
    assert run("lease", "revoke", "5") == EXIT_OK
    assert capsys.readouterr().out == "20\n"
    assert run("lease", "list") == EXIT_OK
    listed = capsys.readouterr().out.splitlines()
    assert " ID " in listed[1] and "REMAINING" in listed[1]
    assert [line.split("|")[1:4] for line in listed[3:5]] == [
        [" 5  ", " 30  ", " 12.5      "], [" 9  ", " 60  ", " 60        "]]
    assert run("-o", "value", "lease", "list") == EXIT_OK
    assert capsys.readouterr().out == "5\n9\n"
    assert run("lease", "info", "5") == EXIT_OK
    assert "| a b/c |" in capsys.readouterr().out
    assert run("-o", "json", "lease", "info", "5") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["keys"] == ["a", "b/c"]
    assert run("-o", "value", "lease", "info", "5") == EXIT_OK
    assert capsys.readouterr().out == "12.5\n"


def test_lease_errors_and_usage(fake: ByKind, capsys) -> None:
    fake.answers.update(keepalive=answer(404, {"error": "lease 5 not found"}),
                        grant=answer(400, {"error": "ttl 1 is below the minimum 2"}))
    assert run("lease", "keepalive", "5", "--once") == EXIT_LEASE
    assert capsys.readouterr().err == "leifdb: error: 404: lease 5 not found\n"
    assert run("lease", "grant", "1") == 1
    for bad in (["lease", "grant", "soon"], ["lease", "revoke", "0"], ["lease", "info", "x"],
                ["lease"], ["lease", "keepalive"]):
        assert run(*bad) == EXIT_USAGE, bad
    assert fake.kinds() == ["keepalive", "grant"]


def test_keepalive_prints_every_renewal_until_the_lease_is_lost(fake: ByKind, capsys) -> None:
    fake.answers["keepalive"] = [answer(200, lease_json(ttl=0.3, remaining=0.3))] * 3 + [
        answer(404, {"error": "lease 5 not found"})]
    assert run("-o", "json", "lease", "keepalive", "5") == EXIT_LEASE
    captured = capsys.readouterr()
    assert [json.loads(line)["remaining"] for line in captured.out.splitlines()] == [0.3] * 3
    assert captured.err.startswith("leifdb: error: lease 5 lost: 404")


def test_put_and_del_with_leases_and_fences(fake: ByKind, capsys) -> None:
    fake.answers.update(put=[answer(200, {"status": "Ok", "revision": 8, "lease": 0}),
                             answer(200, {"status": "Ok", "revision": 9, "lease": 12}),
                             answer(412, {"error": "fenced: lock job is no longer held with "
                                                   "token 7", "fence": "job:7"}),
                             answer(404, {"error": "lease 4 not found"})],
                        delete=answer(200, {"status": "Ok", "revision": 10}))
    assert run("put", "k", "v", "--lease", "4") == EXIT_OK
    assert fake.sent[-1].target == "/db/k?lease=4"
    assert run("-o", "json", "put", "k", "v", "--ttl", "30s") == EXIT_OK
    assert fake.sent[-1].target == "/db/k?ttl=30s"
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {
        "key": "k", "revision": 9, "lease": 12}
    assert run("put", "k", "v", "--fence", "job:7") == EXIT_CONDITION
    assert capsys.readouterr().err == ("leifdb: error: fenced: lock job is no longer held "
                                       "with token 7; nothing changed\n")
    assert run("put", "k", "v", "--lease", "4") == EXIT_LEASE
    assert run("del", "k", "--fence", "job:7") == EXIT_OK
    assert fake.sent[-1].target == "/db/k?fence=job%3A7"
    sent = len(fake.sent)
    for bad in (["del", "k", "--fence", "job"], ["put", "k", "v", "--fence", "job:x"],
                ["put", "k", "v", "--lease", "4", "--ttl", "3s"], ["put", "k", "v", "--ttl", "x"]):
        assert run(*bad) == EXIT_USAGE, bad
    assert len(fake.sent) == sent


def lock_fake(fake: ByKind, lock: Any = None, ttl: float = 10.0) -> ByKind:
    fake.answers.update(grant=answer(200, lease_json(ttl=ttl)),
                        keepalive=answer(200, lease_json(ttl=ttl)),
                        lock=lock or answer(200, holder_json()), delete=DELETED,
                        revoke=REVOKED)
    return fake


SHOW_ENV = ("import os, sys; print(' '.join(os.environ[k] for k in ('LEIFDB_LOCK_KEY', "
            "'LEIFDB_FENCE_TOKEN', 'LEIFDB_FENCE', 'LEIFDB_LEASE', 'LEIFDB_ENDPOINTS'))); "
            "sys.exit(3)")


def test_lock_runs_the_command_then_releases(fake: ByKind, capfd) -> None:
    lock_fake(fake)
    code = run("--timeout", "3", "lock", "job", "--ttl", "15s", "--timeout", "5s", "--value",
               "me", "--", *py(SHOW_ENV))
    assert code == 3  # the command's exit code
    assert capfd.readouterr().out == f"_lock/job/5 7 job:7 5 {ENDPOINT}\n"
    kinds = [k for k in fake.kinds() if k != "keepalive"]
    assert kinds == ["grant", "lock", "delete", "revoke"]
    grant, lock = fake.sent[0], next(r for r in fake.sent if r.kind == "lock")
    # the lock's own --timeout is the wait, added to the per-request --timeout
    assert fake.timeouts[0] == 3 and fake.timeouts[fake.sent.index(lock)] == 3 + 5
    assert json.loads(grant.body) == {"ttl": 15.0}
    assert lock.target == "/lock/job?timeout=5s" and json.loads(lock.body) == {
        "lease": 5, "value": "me"}
    assert next(r for r in fake.sent if r.kind == "delete").target == "/db/_lock%2Fjob%2F5"


def test_lock_exit_codes(fake: ByKind, capfd) -> None:
    lock_fake(fake, lock=answer(423, {"error": "'job' is still held by another owner",
                                      "holder": "_lock/job/3"}))
    assert run("lock", "job", "--timeout", "1s", "--", *py("pass")) == EXIT_LOCKED
    err = capfd.readouterr().err
    assert err.startswith("leifdb: error: not acquired in time: 423") and "_lock/job/3" in err
    assert fake.kinds()[-1] == "revoke" and "delete" not in fake.kinds()
    lock_fake(fake)
    assert run("lock", "job", "--", "/nonexistent/command") == 127
    assert run("lock", "job", "--", *py("import os, signal; os.kill(os.getpid(), 15)")) == \
        128 + 15
    assert run("lock", "job", "--") == EXIT_USAGE
    assert run("lock", "--", "true") == EXIT_USAGE


def test_a_lost_lease_stops_the_command(fake: ByKind, capfd) -> None:
    lock_fake(fake, ttl=0.3)
    fake.answers["keepalive"] = [answer(200, lease_json(ttl=0.3))] + [
        answer(404, {"error": "lease 5 not found"})]
    start = time.monotonic()
    assert run("lock", "job", "--", *py("import time; time.sleep(30)")) == EXIT_LEASE
    assert time.monotonic() - start < 10
    assert "lost while" in capfd.readouterr().err
    # the lease is gone and its key with it: nothing to release
    assert fake.kinds()[-1] == "keepalive" and "delete" not in fake.kinds()


def test_lock_without_a_command_holds_until_the_lease_is_lost(fake: ByKind, capsys) -> None:
    lock_fake(fake, ttl=0.3)
    fake.answers["keepalive"] = [answer(200, lease_json(ttl=0.3))] + [
        answer(404, {"error": "lease 5 not found"})]
    assert run("-o", "json", "lock", "job") == EXIT_LEASE
    captured = capsys.readouterr()
    assert json.loads(captured.out) == holder_json()
    assert captured.err.startswith("leifdb: error: lease 5 lost")


def test_elect(fake: ByKind, capfd) -> None:
    leader = holder_json("e", prefix="_election/", value="node-a")
    fake.answers.update(grant=answer(200, lease_json()), keepalive=answer(200, lease_json()),
                        campaign=answer(200, leader), resign=answer(200, {"revision": 30}),
                        revoke=REVOKED, leader=[answer(200, leader), answer(404, {})])
    code = run("elect", "e", "node-a", "--", *py(
        "import os; print(os.environ['LEIFDB_ELECTION_KEY'], "
        "os.environ['LEIFDB_ELECTION_TOKEN'])"))
    assert code == EXIT_OK and capfd.readouterr().out == "_election/e/5 7\n"
    assert [k for k in fake.kinds() if k != "keepalive"] == [
        "grant", "campaign", "resign", "revoke"]
    resign = next(r for r in fake.sent if r.kind == "resign")
    assert json.loads(resign.body) == {"token": 7}
    assert run("elect", "e") == EXIT_OK
    assert capfd.readouterr().out == "node-a\n"
    assert run("elect", "e") == EXIT_NOT_FOUND
    assert capfd.readouterr().err == "leifdb: error: election e has no leader\n"
    assert run("elect", "e", "--", "true") == EXIT_USAGE
    assert run("elect", "e", "v", "--listen") == EXIT_USAGE


def test_elect_without_a_timeout_campaigns_again(fake: ByKind, capsys) -> None:
    leader = holder_json("e", prefix="_election/", value="b")
    fake.answers.update(grant=answer(200, lease_json(ttl=0.3)),
                        keepalive=[answer(200, lease_json(ttl=0.3))] * 2 + [
                            answer(404, {"error": "lease 5 not found"})],
                        campaign=[answer(423, {"error": "held", "holder": None}),
                                  answer(200, leader)],
                        resign=answer(200, {"revision": 30}), revoke=REVOKED)
    assert run("elect", "e", "b") == EXIT_LEASE
    assert capsys.readouterr().out == "_election/e/5\n"
    assert fake.count("campaign") == 2
    fake.answers["campaign"] = answer(423, {"error": "held", "holder": "_election/e/2"})
    assert run("elect", "e", "b", "--timeout", "1s") == EXIT_LOCKED


def test_dash_dash_keeps_its_meaning_for_other_commands(fake: ByKind, capsys) -> None:
    fake.answers["put"] = answer(200, {"status": "Ok", "revision": 8})
    assert run("put", "--", "-k", "v") == EXIT_OK
    assert fake.sent[-1].target == "/db/-k"
