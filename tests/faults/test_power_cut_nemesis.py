"""The power-cut nemesis without processes: how nodes are started for it, what it cuts,
and that it refuses a cluster on which a SIGKILL keeps the page cache."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from leifdb.cluster import twistd_command
from tests.faults.cluster import ProxiedCluster
from tests.faults.nemesis import FAULT_KINDS, Nemesis, fault_kinds
from tests.faults.runner import RunConfig, main


@pytest.fixture
def cluster(tmp_path: Path):
    made: list[ProxiedCluster] = []

    def make(**kwargs) -> ProxiedCluster:
        c = ProxiedCluster(tmp_path / str(len(made)), 3, **kwargs)
        made.append(c)
        c.net.start()  # the members' addresses are the proxies'
        return c

    yield make
    for c in made:
        c.close()
        c.net.stop()


def test_nodes_run_on_the_write_back_file_system_only_when_asked(cluster):
    plain = cluster().command(0)
    assert plain[: len(twistd_command())] == twistd_command()
    assert "--unsafe-test-writeback-fs" not in plain
    cut = cluster(writeback=True).command(1)
    assert cut[cut.index("leifdb") + 1:].count("--unsafe-test-writeback-fs") == 1


def test_a_launcher_replaces_twistd_and_keeps_its_arguments(cluster):
    c = cluster(launcher=["python", "-m", "wrapper"])
    args = c.command(2)
    c.launcher = []
    plain = c.command(2)
    assert args[:3] == ["python", "-m", "wrapper"]
    assert args[3:] == plain[len(twistd_command()):] and args[3] == "-n"


class FakeCluster:
    """What the nemesis asks of a cluster, recording the power cuts."""

    def __init__(self, writeback: bool = True) -> None:
        self.names = ["n1", "n2", "n3"]
        self.live = [0, 1, 2]
        self.writeback = writeback
        self.cuts: list[list[int]] = []

    def __len__(self) -> int:
        return len(self.names)

    def leader(self) -> int:
        return 1

    def is_running(self, i: int) -> bool:
        return True

    def kill_together(self, indexes: list[int]) -> None:
        self.cuts.append(list(indexes))


def test_the_first_power_cut_takes_every_node_at_once_then_all_or_one():
    fake = FakeCluster()
    nemesis = Nemesis(fake, random.Random(5))
    for _ in range(30):
        fault = nemesis.inject("power_cut")
        assert fault.killed == fake.cuts[-1]
        nemesis.active = None  # healing would restart the nodes
    assert fake.cuts[0] == [0, 1, 2]
    sizes = {len(cut) for cut in fake.cuts}
    assert sizes == {1, 3}


def test_a_power_cut_is_refused_where_sigkill_keeps_the_page_cache():
    with pytest.raises(RuntimeError, match="write-back file system"):
        Nemesis(FakeCluster(writeback=False), random.Random(1)).inject("power_cut")


def test_runs_cut_the_power_by_default_and_the_kinds_follow():
    assert "power_cut" in RunConfig(seed=1).kinds
    assert RunConfig(seed=1, power_cuts=False).kinds == FAULT_KINDS
    assert RunConfig(seed=1, faults=("kill",)).kinds == ("kill",)
    assert fault_kinds(True) == FAULT_KINDS + ("power_cut",)


def test_the_command_line_refuses_a_power_cut_without_the_write_back_nodes(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--no-power-cuts", "--faults", "kill,power_cut"])
    assert exit_.value.code == 2
    assert "unknown fault kind(s) power_cut" in capsys.readouterr().err
