"""``leifdb.config``: flags, environment and defaults into a ``NodeConfig``; every bad value
is one ``ConfigError`` line. No processes, no network (``outbound_address`` sends nothing)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest
from twisted.python import usage

from leifdb import config, tap
from leifdb.config import ConfigError, Options, build_config, parse_members
from leifdb.nodeconfig import NodeConfig
from leifdb.raft.messages import Member
from leifdb.storage.datadir import default_data_dir


@pytest.fixture(autouse=True)
def fixed_outbound(monkeypatch):
    """The machine's outbound address, made deterministic."""
    monkeypatch.setattr(config, "outbound_address", lambda: "10.9.8.7")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def parse(args: list[str], environ: dict[str, str] | None = None):
    options = Options(environ=environ or {})
    options.parseOptions(args)
    return options.config


def test_defaults_single_mode(tmp_path):
    cfg = parse(["--data-dir", str(tmp_path / "d")])
    assert cfg.node_id == "10.9.8.7:16990"
    assert cfg.members == (Member("10.9.8.7:16990", "10.9.8.7:16990", "10.9.8.7:8080"),)
    assert cfg.http_address == "10.9.8.7:8080"
    assert (cfg.http_port, cfg.raft_listen_port) == (8080, 16990)
    assert cfg.listen_interface == ""
    assert (cfg.election_timeout_ms, cfg.heartbeat_interval_ms) == (1000, 100)
    assert (cfg.snapshot_entries, cfg.retain_snapshots) == (10000, 2)
    assert (cfg.limits.max_key_bytes, cfg.limits.max_value_bytes) == (1024, 1024 * 1024)
    assert (cfg.log_level, cfg.cluster_id) == ("info", "leifdb")
    assert cfg.log_format == "text"
    assert cfg.data_dir == (tmp_path / "d").absolute() and cfg.data_dir.is_dir()


def test_default_data_dir_is_the_original_hash_of_host_and_raft_port(home):
    cfg = parse(["--host", "127.0.0.1", "--raft-port", "17000"])
    assert cfg.data_dir == default_data_dir("127.0.0.1:17000")
    assert cfg.data_dir.parent == home / ".leifdb" and cfg.data_dir.is_dir()


def test_environment_is_read(tmp_path):
    env = {
        "LEIFDB_HTTP_PORT": "9000",
        "LEIFDB_RAFT_PORT": "9001",
        "LEIFDB_HOST": "db.example",
        "LEIFDB_DATA_DIR": str(tmp_path / "e"),
        "LEIFDB_ELECTION_TIMEOUT": "500",
        "LEIFDB_HEARTBEAT_INTERVAL": "50",
        "LEIFDB_SNAPSHOT_THRESHOLD": "77",
        "LEIFDB_RETAIN_N_SNAPSHOTS": "3",
        "LEIFDB_MAX_KEY_BYTES": "10",
        "LEIFDB_MAX_VALUE_BYTES": "20",
        "LEIFDB_LOG_LEVEL": "WARNING",
        "LEIFDB_CLUSTER_ID": "prod",
        "LEIFDB_BIND": "127.0.0.1",
        "LEIFDB_NAME": "solo",
    }
    cfg = parse([], env)
    assert cfg.node_id == "solo"
    assert cfg.http_address == "db.example:9000"
    assert cfg.members == (Member("solo", "db.example:9001", "db.example:9000"),)
    assert (cfg.http_port, cfg.raft_listen_port) == (9000, 9001)
    assert cfg.data_dir == (tmp_path / "e").absolute()
    assert (cfg.election_timeout_ms, cfg.heartbeat_interval_ms) == (500, 50)
    assert (cfg.snapshot_entries, cfg.retain_snapshots) == (77, 3)
    assert (cfg.limits.max_key_bytes, cfg.limits.max_value_bytes) == (10, 20)
    assert (cfg.log_level, cfg.cluster_id, cfg.listen_interface) == ("warn", "prod", "127.0.0.1")


def test_a_flag_wins_over_the_environment_and_empty_variables_are_unset(tmp_path):
    env = {"LEIFDB_HTTP_PORT": "9000", "LEIFDB_HOST": "", "LEIFDB_LOG_LEVEL": "error"}
    cfg = parse(["--http-port", "9100", "--data-dir", str(tmp_path)], env)
    assert cfg.http_port == 9100
    assert cfg.http_address == "10.9.8.7:9100"  # empty LEIFDB_HOST: the default
    assert cfg.log_level == "error"


def test_a_good_flag_overrides_a_bad_environment_value(tmp_path):
    cfg = parse(["--raft-port", "17001", "--data-dir", str(tmp_path)], {"LEIFDB_RAFT_PORT": "x"})
    assert cfg.raft_listen_port == 17001


MEMBERS = "n1=10.0.0.1:16990,n2=10.0.0.2:16990,n3=10.0.0.3:16991"


def test_multi_mode_finds_itself_by_name(tmp_path):
    cfg = parse(["--mode", "multi", "--members", MEMBERS, "--name", "n3",
                 "--data-dir", str(tmp_path)])
    assert cfg.node_id == "n3"
    assert [m.id for m in cfg.members] == ["n1", "n2", "n3"]
    assert [m.raft_address for m in cfg.members] == [
        "10.0.0.1:16990", "10.0.0.2:16990", "10.0.0.3:16991"]
    # Host and Raft port come from its own entry; only its own HTTP address is known.
    assert cfg.raft_listen_port == 16991
    assert cfg.http_address == "10.0.0.3:8080"
    assert [m.http_address for m in cfg.members] == ["", "", "10.0.0.3:8080"]


def test_named_member_listens_where_told_but_keeps_its_identity(tmp_path):
    """Behind NAT or port mapping the bind port differs from the advertised one."""
    cfg = parse(["--mode", "multi", "--members", MEMBERS, "--name", "n1",
                 "--raft-port", "7000", "--host", "public.example", "--data-dir", str(tmp_path)])
    assert cfg.node_id == "n1"
    assert cfg.raft_listen_port == 7000
    assert cfg.member("n1").raft_address == "10.0.0.1:16990"
    assert cfg.http_address == "public.example:8080"


def test_multi_mode_finds_itself_by_host_and_raft_port(tmp_path):
    cfg = parse(
        ["--mode", "multi", "--members", "10.0.0.1:16990, 10.9.8.7:16990 ,10.0.0.3:16990",
         "--data-dir", str(tmp_path)]
    )
    assert cfg.node_id == "10.9.8.7:16990"  # its outbound address
    assert [m.id for m in cfg.members] == ["10.0.0.1:16990", "10.9.8.7:16990", "10.0.0.3:16990"]


def test_a_named_member_is_also_found_by_address(tmp_path):
    cfg = parse(["--mode", "multi", "--members", MEMBERS, "--host", "10.0.0.2",
                 "--data-dir", str(tmp_path)], {"LEIFDB_MODE": "MULTI"})
    assert cfg.node_id == "n2"


def test_named_default_data_dir_hashes_the_members_address(home):
    cfg = parse(["--mode", "multi", "--members", MEMBERS, "--name", "n2"])
    assert cfg.data_dir == default_data_dir("10.0.0.2:16990")


def test_parse_members_mixes_named_and_unnamed():
    assert parse_members("a=h1:1, h2:2") == (Member("a", "h1:1"), Member("h2:2", "h2:2"))


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--http-port", "abc"], {},
         "--http-port: port must be an integer from 1 to 65535, not 'abc'"),
        (["--http-port", "0"], {}, "--http-port"),
        (["--raft-port", "65536"], {}, "--raft-port"),
        (["--raft-port", "-1"], {}, "--raft-port"),
        ([], {"LEIFDB_HTTP_PORT": "80a"}, "LEIFDB_HTTP_PORT"),
        (["--http-port", "16990"], {}, "must differ"),
        (["--mode", "cluster"], {}, "--mode must be one of single, multi, not 'cluster'"),
        ([], {"LEIFDB_MODE": "x"}, "LEIFDB_MODE must be one of"),
        (["--mode", "multi"], {}, "--mode multi needs --members"),
        (["--members", "a:1,b:2"], {}, "the mode is single"),
        (["--mode", "multi", "--members", "a:1,b:2"], {},
         "this node (10.9.8.7:16990) is not among the members (a:1, b:2)"),
        (["--mode", "multi", "--members", MEMBERS, "--name", "n4"], {},
         "--name 'n4' is not among the members (n1, n2, n3)"),
        (["--mode", "multi", "--members", "n1=a:1,n1=b:2", "--name", "n1"], {},
         "duplicate member 'n1'"),
        (["--mode", "multi", "--members", "a:1,a:1", "--host", "a", "--raft-port", "1"], {},
         "duplicate member"),
        (["--mode", "multi", "--members", "n1=a:1,n2=a:1", "--name", "n1"], {},
         "duplicate member address 'a:1'"),
        (["--mode", "multi", "--members", "n1=a:1,,n2=b:2", "--name", "n1"], {}, "empty entry"),
        (["--mode", "multi", "--members", "n1=a", "--name", "n1"], {}, "must be host:port"),
        (["--mode", "multi", "--members", "n1=a:x", "--name", "n1"], {}, "port must be an integer"),
        (["--mode", "multi", "--members", "=a:1", "--name", "n1"], {}, "bad member name"),
        (["--mode", "multi", "--members", "n 1=a:1", "--name", "n1"], {}, "bad member name"),
        (["--heartbeat-interval", "1000"], {}, "must be less than the election timeout"),
        (["--election-timeout", "100", "--heartbeat-interval", "150"], {}, "must be less than"),
        (["--election-timeout", "0"], {}, "--election-timeout must be an integer from 1"),
        (["--snapshot-entries", "1e4"], {}, "--snapshot-entries must be an integer"),
        (["--retain-snapshots", "0"], {}, "--retain-snapshots"),
        (["--max-value-bytes", str(64 * 1024 * 1024)], {}, "--max-value-bytes"),
        (["--max-key-bytes", ""], {}, "--max-key-bytes"),
        (["--log-level", "verbose"], {}, "--log-level must be one of debug, info, warn, error"),
        (["--log-format", "xml"], {}, "--log-format must be one of text, json, not 'xml'"),
        ([], {"LEIFDB_LOG_FORMAT": "logfmt"}, "LEIFDB_LOG_FORMAT must be one of text, json"),
        (["--bind", "localhost"], {}, "--bind must be an IP address"),
        (["--host", "a b"], {}, "--host: bad host"),
        (["--cluster-id", "a,b"], {}, "--cluster-id"),
        (["--join", "http://a:1", "--mode", "multi", "--members", "a:1"], {},
         "--join and --members exclude each other"),
        (["--join", "http://a:1"], {"LEIFDB_MEMBER_NODES": "a:1"},
         "--join and LEIFDB_MEMBER_NODES exclude each other"),
        (["--join", "http://a:1", "--mode", "single"], {}, "drop --mode single"),
        (["--join", "https://a:1"], {}, "--join: 'https://a:1' is not an http://host:port URL"),
        (["--join", "http://a:1/db"], {}, "not an http://host:port URL"),
        (["--join", "http://a:99999"], {}, "not an http://host:port URL"),
        ([], {"LEIFDB_JOIN": "http://a:1,,b:2"}, "LEIFDB_JOIN has an empty entry"),
        (["--bogus"], {}, "bogus"),
        (["surplus"], {}, "Wrong number of arguments"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, args, env, expected):
    with pytest.raises(usage.UsageError) as caught:
        parse([*args, "--data-dir", str(tmp_path / "d")], env)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_log_format_from_the_flag_or_the_environment(tmp_path):
    data = ["--data-dir", str(tmp_path / "d")]
    assert parse([*data, "--log-format", "json"]).log_format == "json"
    assert parse(data, {"LEIFDB_LOG_FORMAT": "JSON"}).log_format == "json"
    assert parse([*data, "--log-format", "text"], {"LEIFDB_LOG_FORMAT": "json"}).log_format == (
        "text")


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        parse(["--data-dir", str(regular)])
    with pytest.raises(ConfigError, match="^LEIFDB_DATA_DIR: "):
        parse([], {"LEIFDB_DATA_DIR": str(regular)})


def test_build_config_takes_any_mapping(tmp_path):
    cfg = build_config({"mode": "multi", "members": "x=127.0.0.1:5000", "name": "x",
                        "data-dir": str(tmp_path)}, {})
    assert cfg.node_id == "x" and cfg.raft_listen_port == 5000


def test_real_outbound_address_is_an_ipv4_address(monkeypatch):
    monkeypatch.undo()
    address = config.outbound_address()
    assert ipaddress.ip_address(address).version == 4


def test_command_line_options_exit_2_with_one_line_on_stderr(tmp_path, capsys):
    options = tap.Options(environ={})
    with pytest.raises(SystemExit) as caught:
        options.parseOptions(["--http-port", "nope", "--data-dir", str(tmp_path)])
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "leifdb: error: --http-port: port must be an integer from 1 to 65535, not 'nope'\n"
    )


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as caught:
        Options(environ={}).parseOptions(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("leifdb 0.")


def test_join_needs_no_members_and_starts_as_a_learner_without_bootstrap(tmp_path):
    cfg = parse(["--join", "n1.example:8080", "--name", "n4", "--host", "127.0.0.1",
                 "--raft-port", "17004", "--http-port", "18004",
                 "--data-dir", str(tmp_path)])
    assert cfg.join == "http://n1.example:8080"
    assert cfg.bootstrap is False
    assert cfg.node_id == "n4"
    assert cfg.members == (Member("n4", "127.0.0.1:17004", "127.0.0.1:18004", learner=True),)
    assert cfg.raft_listen_port == 17004


def test_join_from_the_environment_takes_several_urls(tmp_path):
    cfg = parse(["--data-dir", str(tmp_path)],
                {"LEIFDB_JOIN": " http://a:8080/ , b ,http://[::1]:9000", "LEIFDB_MODE": "multi"})
    assert cfg.join == "http://a:8080,http://b:80,http://[::1]:9000"
    assert cfg.node_id == "10.9.8.7:16990"  # no --name: host:raft-port, as without --join


def test_members_bootstrap_and_join_does_not(tmp_path):
    assert parse(["--data-dir", str(tmp_path)]).bootstrap is True
    multi = parse(["--mode", "multi", "--members", MEMBERS, "--name", "n1",
                   "--data-dir", str(tmp_path)])
    assert multi.bootstrap is True and multi.join is None
    with pytest.raises(ValueError, match="cannot bootstrap"):
        replace(multi, join="http://a:1")  # replace passes bootstrap=True along
    assert replace(multi, join="http://a:1", bootstrap=False).join == "http://a:1"
    fields = {f: getattr(multi, f) for f in ("node_id", "members", "http_address",
                                             "http_port", "raft_listen_port", "data_dir")}
    assert NodeConfig(**fields).bootstrap is True
    assert NodeConfig(**fields, join="http://a:1").bootstrap is False
    assert NodeConfig(**fields, bootstrap=False).join is None  # a joiner in a simulation
