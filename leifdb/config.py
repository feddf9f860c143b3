"""A node's settings from its command line and environment: ``Options`` parses, and
``build_config`` validates everything into a ``NodeConfig``.

Every option has an environment variable (but the test-only ``--unsafe-test-writeback-fs``);
a flag wins over the environment, which wins over the default. An empty variable counts as
unset. Any bad value is a ``ConfigError`` (a ``usage.UsageError``) whose message is one line
naming the flag or variable at fault.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from twisted.python import usage

from leifdb import __version__
from leifdb.nodeconfig import NodeConfig, default_of
from leifdb.raft.messages import Member
from leifdb.service.api import ServiceLimits
from leifdb.storage.datadir import resolve_data_dir
from leifdb.storage.errors import DataDirError

__all__ = [
    "ConfigError",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "OPTIONS",
    "Options",
    "OptionSpec",
    "WRITEBACK_FLAG",
    "build_config",
    "outbound_address",
    "parse_members",
]

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("text", "json")
MODES = ("single", "multi")
MAX_KEY_BYTES_LIMIT = 64 * 1024
MAX_VALUE_BYTES_LIMIT = 16 * 1024 * 1024
MAX_WORKERS = 1024
# TEST-NET-1 (RFC 5737): connecting a UDP socket only picks a route, nothing is sent.
_PROBE_ADDRESS = ("192.0.2.1", 9)
_DIGITS = re.compile(r"[0-9]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_BAD_HOST_CHARS = re.compile(r"[\s,=/]")


class ConfigError(usage.UsageError):
    """A setting is missing, malformed or inconsistent; the message is one line."""


@dataclass(frozen=True)
class OptionSpec:
    """One option: its flag (without ``--``), environment variable, default as shown in
    ``--help``, and help text."""

    flag: str
    env: str
    default: str | None
    help: str


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("http-port", "LEIFDB_HTTP_PORT", "8080", "TCP port of the client HTTP API."),
    OptionSpec("raft-port", "LEIFDB_RAFT_PORT", "16990",
               "TCP port for Raft traffic between nodes (with --name: the port of this "
               "node's entry in --members)."),
    OptionSpec("host", "LEIFDB_HOST", None,
               "Address peers and clients use to reach this node (with --name: the host of "
               "this node's entry in --members; else the machine's outbound address)."),
    OptionSpec("bind", "LEIFDB_BIND", None,
               "IP address to listen on for HTTP and Raft (default: all interfaces)."),
    OptionSpec("data-dir", "LEIFDB_DATA_DIR", None,
               "Data directory, created if missing (default: ~/.leifdb/<FNV-1 hash of "
               "this node's host:raft-port>)."),
    OptionSpec("mode", "LEIFDB_MODE", "single",
               "'single' (a one-node cluster) or 'multi' (needs --members or --join)."),
    OptionSpec("members", "LEIFDB_MEMBER_NODES", None,
               "Multi mode, to bootstrap a new cluster: comma-separated host:raft-port (or "
               "name=host:raft-port) of every member, this node included."),
    OptionSpec("join", "LEIFDB_JOIN", None,
               "Join a running cluster instead of bootstrapping one: the HTTP URL of one of "
               "its nodes (or several, comma-separated). A node with an empty data "
               "directory fetches the members there and adds itself as a learner; a node "
               "restarting on its data directory ignores it."),
    OptionSpec("name", "LEIFDB_NAME", None,
               "This node's name in --members (default: find it by --host:--raft-port)."),
    OptionSpec("election-timeout", "LEIFDB_ELECTION_TIMEOUT", str(default_of("election_timeout_ms")),
               "Election timeout in milliseconds."),
    OptionSpec("heartbeat-interval", "LEIFDB_HEARTBEAT_INTERVAL", str(default_of("heartbeat_interval_ms")),
               "Leader heartbeat interval in milliseconds (less than the election timeout)."),
    OptionSpec("snapshot-entries", "LEIFDB_SNAPSHOT_THRESHOLD", str(default_of("snapshot_entries")),
               "Take a snapshot after this many applied entries."),
    OptionSpec("retain-snapshots", "LEIFDB_RETAIN_N_SNAPSHOTS", str(default_of("retain_snapshots")),
               "Number of snapshots kept on disk."),
    OptionSpec("max-key-bytes", "LEIFDB_MAX_KEY_BYTES", str(default_of("max_key_bytes")),
               f"Largest key in bytes of UTF-8 (at most {MAX_KEY_BYTES_LIMIT})."),
    OptionSpec("max-value-bytes", "LEIFDB_MAX_VALUE_BYTES", str(default_of("max_value_bytes")),
               f"Largest value in bytes of UTF-8 (at most {MAX_VALUE_BYTES_LIMIT})."),
    OptionSpec("watch-history-events", "LEIFDB_WATCH_HISTORY_EVENTS",
               str(default_of("history_events")),
               "Changes kept for watchers to start from or resume at (older: 410 Gone)."),
    OptionSpec("watch-history-bytes", "LEIFDB_WATCH_HISTORY_BYTES",
               str(default_of("history_bytes")),
               "Bytes of keys and values kept in the watch history (64 bytes counted per change "
               "on top)."),
    OptionSpec("log-level", "LEIFDB_LOG_LEVEL", str(default_of("log_level")), "One of debug, info, warn, error."),
    OptionSpec("log-format", "LEIFDB_LOG_FORMAT", str(default_of("log_format")),
               "'text' (one line per event, for people) or 'json' (one JSON object per line, "
               "for log shippers)."),
    OptionSpec("cluster-id", "LEIFDB_CLUSTER_ID", str(default_of("cluster_id")),
               "Cluster name; nodes refuse peers with a different one."),
    OptionSpec("workers", "LEIFDB_WORKERS", str(default_of("workers")),
               f"Worker processes serving the client HTTP port (0 to {MAX_WORKERS}), so one "
               "node uses more than one core: Raft, storage and the key-value service stay "
               "in the node's process. 0: the node's process serves HTTP itself. Default: "
               "the number of cores."),
)
_SPECS = {spec.flag: spec for spec in OPTIONS}

# The one option without an environment variable, so that no environment can turn it on.
WRITEBACK_FLAG = "unsafe-test-writeback-fs"
WRITEBACK_HELP = (
    "TEST ONLY, NEVER IN PRODUCTION: keep everything not yet fsynced in this process's "
    "memory and write only synced data to the data directory, so that killing the process "
    "loses what a power cut would (the fault test's power-cut nemesis). Nothing is durable "
    "against a real power loss."
)


class Options(usage.Options):
    """``twistd leifdb`` options. Values stay strings (or None when not given) until
    ``postOptions`` hands them with the environment to ``build_config``; the result is
    ``self.config``. ``environ`` defaults to ``os.environ`` (tests pass their own)."""

    synopsis = "[options]"
    longdesc = (
        "Run one LeifDB node: the client HTTP API and a Raft member. Every option can also "
        "be set by the environment variable shown; a flag wins over the environment."
    )
    optParameters = [
        [spec.flag, None, None,
         f"{spec.help} [env {spec.env}" + (f", default {spec.default}]" if spec.default else "]")]
        for spec in OPTIONS
    ]
    optFlags = [[WRITEBACK_FLAG, None, WRITEBACK_HELP]]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.config: NodeConfig | None = None

    def opt_version(self) -> None:
        """Display the LeifDB version and exit."""
        print(f"leifdb {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        self.config = build_config(self, self.environ)


def outbound_address() -> str:
    """The local address of the route to the outside world, found without sending
    anything (a UDP ``connect`` only selects a route); 127.0.0.1 when there is none."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(_PROBE_ADDRESS)
            address = probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    return address if address and address != "0.0.0.0" else "127.0.0.1"


def parse_members(text: str, source: str = "--members") -> tuple[Member, ...]:
    """``host:port`` or ``name=host:port`` entries, comma-separated. A named member's id is
    its name, an unnamed one's its ``host:port``. ConfigError on a malformed entry or a
    duplicate id or address."""
    members: list[Member] = []
    entries = [entry.strip() for entry in text.split(",")]
    if not any(entries):
        raise ConfigError(f"{source} is empty")
    for entry in entries:
        if not entry:
            raise ConfigError(f"{source} has an empty entry in {text!r}")
        name, sep, address = entry.rpartition("=")
        if sep and not _NAME.fullmatch(name):
            raise ConfigError(
                f"{source}: bad member name {name!r} in {entry!r} "
                "(use letters, digits, '.', '_', '-')"
            )
        host, port = _split_host_port(address, f"{source} entry {entry!r}")
        raft_address = f"{host}:{port}"
        members.append(Member(id=name if sep else raft_address, raft_address=raft_address))
    _check_unique([m.id for m in members], f"{source}: duplicate member")
    _check_unique([m.raft_address for m in members], f"{source}: duplicate member address")
    return tuple(members)


def build_config(options: Mapping[str, str | None], environ: Mapping[str, str]) -> NodeConfig:
    """Validate flags (``options``, values None when not given) and ``environ`` into a
    ``NodeConfig``. Creates the data directory if missing. ConfigError on any bad value."""
    values = _Values(options, environ)
    mode = values.choice("mode", MODES)
    http_port = values.port("http-port")
    explicit_raft_port = values.port("raft-port", default=False)
    explicit_host = values.host("host")
    name = values.get("name")
    if name is not None and not _NAME.fullmatch(name):
        raise ConfigError(f"{values.source('name')}: bad node name {name!r}")
    members_text = values.get("members")
    join = _join_endpoints(values)

    if join is not None:
        if members_text is not None:
            raise ConfigError(
                f"{values.source('join')} and {values.source('members')} exclude each other: "
                "--members bootstraps a new cluster, --join adds this node to a running one"
            )
        if values.get("mode") is not None and mode != "multi":
            raise ConfigError(
                f"{values.source('join')} runs a cluster member: drop "
                f"{values.source('mode')} {mode} (or make it multi)"
            )
        host = explicit_host or outbound_address()
        raft_port = explicit_raft_port or int(_SPECS["raft-port"].default or 0)
        raft_address = f"{host}:{raft_port}"
        # A learner until the cluster it joins says otherwise.
        me = Member(id=name or raft_address, raft_address=raft_address, learner=True)
        members: tuple[Member, ...] = (me,)
    elif mode == "multi":
        if members_text is None:
            raise ConfigError(
                "--mode multi needs --members (LEIFDB_MEMBER_NODES): host:raft-port of every "
                "member, or --join (LEIFDB_JOIN) to join a running cluster"
            )
        members = parse_members(members_text, values.source("members"))
        me = _find_self(members, name, explicit_host, explicit_raft_port, values)
        member_host, member_port = _split_host_port(me.raft_address, "member")
        host = explicit_host or member_host
        raft_port = explicit_raft_port or member_port
    else:
        if members_text is not None:
            raise ConfigError(
                f"{values.source('members')} is set but the mode is single: "
                "add --mode multi (LEIFDB_MODE=multi) to run a cluster"
            )
        host = explicit_host or outbound_address()
        raft_port = explicit_raft_port or int(_SPECS["raft-port"].default or 0)
        raft_address = f"{host}:{raft_port}"
        me = Member(id=name or raft_address, raft_address=raft_address)
        members = (me,)
    if raft_port == http_port:
        raise ConfigError(f"the HTTP port and the Raft port are both {http_port}; they must differ")

    http_address = f"{host}:{http_port}"
    members = tuple(
        Member(m.id, m.raft_address, http_address, m.learner) if m.id == me.id else m
        for m in members
    )
    election = values.integer("election-timeout", 1, 3_600_000)
    heartbeat = values.integer("heartbeat-interval", 1, 3_600_000)
    if heartbeat >= election:
        raise ConfigError(
            f"the heartbeat interval ({heartbeat} ms) must be less than the election "
            f"timeout ({election} ms)"
        )
    cluster_id = values.get("cluster-id") or _SPECS["cluster-id"].default or ""
    if _BAD_HOST_CHARS.search(cluster_id):
        raise ConfigError(
            f"{values.source('cluster-id')}: no spaces or ',=/' allowed in {cluster_id!r}"
        )
    return NodeConfig(
        node_id=me.id,
        members=members,
        http_address=http_address,
        http_port=http_port,
        raft_listen_port=raft_port,
        data_dir=_data_dir(values, me.raft_address),
        listen_interface=values.bind("bind"),
        election_timeout_ms=election,
        heartbeat_interval_ms=heartbeat,
        snapshot_entries=values.integer("snapshot-entries", 1, 1 << 40),
        retain_snapshots=values.integer("retain-snapshots", 1, 1000),
        limits=ServiceLimits(
            max_key_bytes=values.integer("max-key-bytes", 1, MAX_KEY_BYTES_LIMIT),
            max_value_bytes=values.integer("max-value-bytes", 1, MAX_VALUE_BYTES_LIMIT),
            history_events=values.integer("watch-history-events", 1, 1 << 40),
            history_bytes=values.integer("watch-history-bytes", 1, 1 << 50),
        ),
        cluster_id=cluster_id,
        join=join,
        bootstrap=join is None,
        log_level=_log_level(values),
        log_format=values.choice("log-format", LOG_FORMATS),
        unsafe_test_writeback_fs=bool(options.get(WRITEBACK_FLAG)),
        workers=values.integer("workers", 0, MAX_WORKERS),
    )


def _find_self(
    members: tuple[Member, ...],
    name: str | None,
    host: str | None,
    raft_port: int | None,
    values: _Values,
) -> Member:
    """This node's entry: by ``--name``, else by its ``host:raft-port``."""
    listed = ", ".join(m.id for m in members)
    if name is not None:
        for member in members:
            if member.id == name:
                return member
        raise ConfigError(f"{values.source('name')} {name!r} is not among the members ({listed})")
    address = f"{host or outbound_address()}:{raft_port or _SPECS['raft-port'].default}"
    for member in members:
        if member.raft_address == address:
            return member
    raise ConfigError(
        f"this node ({address}) is not among the members ({listed}); "
        "set --name, or --host and --raft-port to match its entry"
    )


def _join_endpoints(values: _Values) -> str | None:
    """``--join``'s URLs, normalized to ``http://host:port`` and comma-separated."""
    text = values.get("join")
    if text is None:
        return None
    urls = []
    for entry in text.split(","):
        if not entry.strip():
            raise ConfigError(f"{values.source('join')} has an empty entry in {text!r}")
        entry = entry.strip()
        try:
            parts = urlsplit(entry if "://" in entry else f"http://{entry}")
            port = parts.port
        except ValueError:
            parts, port = None, None
        if (parts is None or parts.scheme != "http" or not parts.hostname
                or parts.path not in ("", "/") or parts.query or parts.username):
            raise ConfigError(
                f"{values.source('join')}: {entry!r} is not an http://host:port URL"
            )
        urls.append(f"http://{parts.netloc}" if port else f"http://{parts.netloc}:80")
    return ",".join(urls)


def _data_dir(values: _Values, raft_address: str) -> Path:
    try:
        return resolve_data_dir(values.get("data-dir"), raft_address)
    except DataDirError as exc:
        raise ConfigError(f"{values.source('data-dir')}: {exc}") from None


def _log_level(values: _Values) -> str:
    level = (values.get("log-level") or "info").lower()
    level = "warn" if level == "warning" else level
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"{values.source('log-level')} must be one of {', '.join(LOG_LEVELS)}, not {level!r}"
        )
    return level


def _split_host_port(address: str, what: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or _BAD_HOST_CHARS.search(host):
        raise ConfigError(f"{what} must be host:port or name=host:port")
    return host, _parse_port(port, what)


def _parse_port(text: str, what: str) -> int:
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ConfigError(f"{what}: port must be an integer from 1 to 65535, not {text!r}")
    return int(text)


def _check_unique(items: list[str], message: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ConfigError(f"{message} {item!r}")
        seen.add(item)


class _Values:
    """Raw values by precedence (flag, environment, default) and typed getters whose
    errors name where the bad value came from."""

    def __init__(self, options: Mapping[str, str | None], environ: Mapping[str, str]) -> None:
        self._options = options
        self._environ = environ

    def source(self, flag: str) -> str:
        if self._options.get(flag) is not None:
            return f"--{flag}"
        env = _SPECS[flag].env
        return env if self._environ.get(env, "").strip() else f"--{flag}"

    def get(self, flag: str) -> str | None:
        """The flag's value, else the environment's, else None (defaults are the caller's)."""
        value = self._options.get(flag)
        if value is None:
            value = self._environ.get(_SPECS[flag].env, "")
            value = value.strip() or None
        return value

    def _value_or_default(self, flag: str) -> str:
        value = self.get(flag)
        return value if value is not None else (_SPECS[flag].default or "")

    def integer(self, flag: str, low: int, high: int) -> int:
        text = self._value_or_default(flag).strip()
        if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
            raise ConfigError(
                f"{self.source(flag)} must be an integer from {low} to {high}, not {text!r}"
            )
        return int(text)

    def port(self, flag: str, *, default: bool = True) -> int | None:
        """The port, or None when not given and ``default`` is False."""
        text = self.get(flag) if not default else self._value_or_default(flag)
        return None if text is None else _parse_port(text.strip(), self.source(flag))

    def choice(self, flag: str, allowed: tuple[str, ...]) -> str:
        value = self._value_or_default(flag).lower()
        if value not in allowed:
            raise ConfigError(
                f"{self.source(flag)} must be one of {', '.join(allowed)}, not {value!r}"
            )
        return value

    def host(self, flag: str) -> str | None:
        value = self.get(flag)
        if value is not None and _BAD_HOST_CHARS.search(value):
            raise ConfigError(f"{self.source(flag)}: bad host {value!r}")
        return value

    def bind(self, flag: str) -> str:
        value = self.get(flag)
        if value is None:
            return ""
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ConfigError(f"{self.source(flag)} must be an IP address, not {value!r}") from None
        return value
