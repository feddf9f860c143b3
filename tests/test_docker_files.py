"""The Dockerfile and docker-compose.yml, checked without Docker: every ``LEIFDB_*``
variable they use is one the node accepts (``leifdb.config.OPTIONS``), the exposed and
published ports are the configured ones, the member list names exactly the services at
their hosts and Raft ports, and each service's environment is a valid node configuration
(``build_config``), as the container would start it."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from leifdb.config import OPTIONS, build_config, parse_members

ROOT = Path(__file__).resolve().parents[1]
ACCEPTED = {spec.env for spec in OPTIONS}
DEFAULTS = {spec.env: spec.default for spec in OPTIONS if spec.default is not None}
_VARIABLE = re.compile(r"\bLEIFDB_[A-Z0-9_]+\b")
ENTRYPOINT = ["twistd", "-n", "--pidfile=", "leifdb"]


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile: comments dropped, continued lines
    joined."""
    found = []
    logical = ""
    for line in text.splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        word, _, rest = logical.strip().partition(" ")
        found.append((word.upper(), rest.strip()))
        logical = ""
    return found


class Dockerfile:
    def __init__(self, text: str) -> None:
        self.text = text
        self.steps = instructions(text)
        self.env: dict[str, str] = {}
        self.exposed: set[int] = set()
        self.volumes: list[str] = []
        for word, args in self.steps:
            if word == "ENV":
                for pair in shlex.split(args):
                    name, _, value = pair.partition("=")
                    self.env[name] = value
            elif word == "EXPOSE":
                self.exposed |= {int(port.split("/")[0]) for port in args.split()}
            elif word == "VOLUME":
                self.volumes += json.loads(args) if args.startswith("[") else args.split()

    def last(self, word: str) -> str | None:
        values = [args for w, args in self.steps if w == word]
        return values[-1] if values else None


def node_env(image: Dockerfile, service: dict[str, Any]) -> dict[str, str]:
    """What a container of ``service`` has: the image's environment, then the service's."""
    env = {k: v for k, v in image.env.items() if k.startswith("LEIFDB_")}
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return env


def port_of(env: dict[str, str], name: str) -> int:
    return int(env.get(name) or DEFAULTS[name])


def published(service: dict[str, Any]) -> list[tuple[int, int]]:
    """``(host, container)`` of each published port (``"HOST:CONTAINER"`` entries)."""
    pairs = []
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        pairs.append((int(host), int(container.split("/")[0])))
    return pairs


def problems(image: Dockerfile, compose: dict[str, Any], compose_text: str) -> list[str]:
    """Everything wrong with the two files (empty: nothing)."""
    found = []
    for where, text in (("Dockerfile", image.text), ("docker-compose.yml", compose_text)):
        for name in sorted(set(_VARIABLE.findall(text)) - ACCEPTED):
            found.append(f"{where} uses {name}, which the node does not accept")
    image_env = node_env(image, {})
    http, raft = port_of(image_env, "LEIFDB_HTTP_PORT"), port_of(image_env, "LEIFDB_RAFT_PORT")
    if image.exposed != {http, raft}:
        found.append(f"EXPOSE {sorted(image.exposed)}, but the ports are {http} and {raft}")
    data_dir = image_env.get("LEIFDB_DATA_DIR")
    if data_dir not in image.volumes:
        found.append(f"the data directory {data_dir} is not a VOLUME")
    services = compose.get("services", {})
    host_ports: list[int] = []
    for name, service in services.items():
        env = node_env(image, service)
        http = port_of(env, "LEIFDB_HTTP_PORT")
        if env.get("LEIFDB_NAME") != name or env.get("LEIFDB_MODE") != "multi":
            found.append(f"{name}: LEIFDB_NAME must be {name} and LEIFDB_MODE multi")
        if env.get("LEIFDB_HOST") not in (name, service.get("hostname")):
            found.append(f"{name}: LEIFDB_HOST {env.get('LEIFDB_HOST')} is not its host name")
        members = {m.id: m.raft_address for m in
                   parse_members(env.get("LEIFDB_MEMBER_NODES", ""), "LEIFDB_MEMBER_NODES")}
        expected = {other: f"{node_env(image, s).get('LEIFDB_HOST')}:"
                           f"{port_of(node_env(image, s), 'LEIFDB_RAFT_PORT')}"
                    for other, s in services.items()}
        if members != expected:
            found.append(f"{name}: LEIFDB_MEMBER_NODES {members} is not the services {expected}")
        ports = published(service)
        if not ports or any(container != http for _, container in ports):
            found.append(f"{name}: publishes {ports}, not its HTTP port {http}")
        host_ports += [host for host, _ in ports]
        mounts = [str(v).split(":") for v in service.get("volumes", [])]
        if not any(m[1:2] == [env.get("LEIFDB_DATA_DIR")] and m[0] in compose.get("volumes", {})
                   for m in mounts):
            found.append(f"{name}: no named volume on its data directory")
    if len(set(host_ports)) != len(host_ports):
        found.append(f"two services publish the same host port: {host_ports}")
    return found


@pytest.fixture(scope="module")
def image() -> Dockerfile:
    return Dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


def test_the_image_installs_the_package_and_runs_the_node_in_the_foreground(image):
    assert image.last("FROM") == "python:3.11-slim"
    assert any(w == "RUN" and "pip install . " in args + " " for w, args in image.steps)
    assert json.loads(image.last("ENTRYPOINT")) == ENTRYPOINT
    assert image.last("CMD") is None  # no arguments: the environment configures the node
    assert image.last("USER") not in (None, "root", "0")


def test_the_files_agree_with_the_node_and_each_other(image, compose, compose_text):
    assert problems(image, compose, compose_text) == []
    assert sorted(compose["services"]) == ["n1", "n2", "n3"]


def test_every_service_environment_is_a_valid_node_configuration(image, compose, tmp_path):
    """What ``twistd -n --pidfile= leifdb`` would build in each container (the data
    directory moved under tmp_path: build_config creates it)."""
    for name, service in compose["services"].items():
        env = node_env(image, service)
        env["LEIFDB_DATA_DIR"] = str(tmp_path / name)
        config = build_config({}, env)
        assert config.node_id == name and config.bootstrap
        assert config.http_address == f"{name}:{port_of(env, 'LEIFDB_HTTP_PORT')}"
        assert config.raft_listen_port == port_of(env, "LEIFDB_RAFT_PORT")
        assert [m.id for m in config.members] == sorted(compose["services"])


def test_the_build_context_keeps_what_pip_install_needs():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ("leifdb", "twisted", "pyproject.toml", "README.md"):
        assert needed not in ignored
    assert {".venv", ".git", "tests"} <= set(ignored)


@pytest.mark.parametrize("break_it, expected", [
    (lambda c: c["services"]["n2"]["environment"].update(LEIFDB_MEMBERS="x"),
     "uses LEIFDB_MEMBERS, which the node does not accept"),
    (lambda c: c["services"]["n3"].update(ports=["8083:9090"]), "not its HTTP port 8080"),
    (lambda c: c["services"]["n1"]["environment"].update(
        LEIFDB_MEMBER_NODES="n1=n1:16990,n2=n2:16990"), "is not the services"),
    (lambda c: c["services"]["n2"]["environment"].update(LEIFDB_RAFT_PORT="17000"),
     "is not the services"),
    (lambda c: c["services"]["n2"].update(ports=["8081:8080"]), "same host port"),
    (lambda c: c["services"]["n1"].update(volumes=[]), "no named volume"),
])
def test_the_checks_catch_a_broken_compose_file(image, compose, break_it, expected):
    broken = copy.deepcopy(compose)
    break_it(broken)
    found = problems(image, broken, yaml.safe_dump(broken))
    assert any(expected in problem for problem in found), found


def test_the_checks_catch_a_broken_dockerfile(image, compose, compose_text):
    wrong_port = Dockerfile(image.text.replace("EXPOSE 8080 16990", "EXPOSE 8080 17000"))
    assert any("EXPOSE" in p for p in problems(wrong_port, compose, compose_text))
    unknown = Dockerfile(image.text.replace("LEIFDB_DATA_DIR=", "LEIFDB_DATADIR="))
    assert any("LEIFDB_DATADIR" in p for p in problems(unknown, compose, compose_text))
