"""The dependency arrows between LeifDB's packages, checked by reading every module's imports.

Arrows point inward to the pure core (see /README.md, Architecture): ``raft`` and ``kv`` import
nothing of ours but themselves, ``wire`` alone touches the generated protobuf code, ``http``
sees the node only through its public names.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "leifdb"
GENERATED = "leifdb.wire.leifdb_pb2"

# Package -> module prefixes it may import besides the standard library and itself.
ALLOWED: dict[str, tuple[str, ...]] = {
    "leifdb.raft": (),
    "leifdb.kv": (),
    "leifdb.errors": (),
    "leifdb.wire": ("leifdb.raft", "leifdb.kv", "google.protobuf"),
    "leifdb.storage": ("leifdb.raft", "twisted", "crc32c", "google_crc32c"),
    "leifdb.transport": ("leifdb.wire", "leifdb.raft", "twisted", "zope.interface"),
    "leifdb.service": ("leifdb.kv", "leifdb.raft", "leifdb.wire", "leifdb.errors", "twisted",
                       "crc32c", "leifdb.offload"),
    # CPU work off the reactor thread (snapshot encoding), for the node and the service.
    "leifdb.offload": ("twisted",),
    "leifdb.ports": ("leifdb.raft", "twisted"),
    "leifdb.node": ("leifdb.raft", "leifdb.errors", "leifdb.nodeconfig", "leifdb.ports",
                    "leifdb.storage.errors", "leifdb.wire", "twisted", "leifdb.offload",
                    "leifdb.snapshot_io"),
    # Snapshot chunks sent and received, a snapshot encoded in memory: for the node.
    "leifdb.snapshot_io": ("leifdb.raft", "leifdb.ports", "twisted"),
    "leifdb.nodeconfig": ("leifdb.raft", "leifdb.service.api"),
    "leifdb.config": ("leifdb.nodeconfig", "leifdb.raft", "leifdb.service.api",
                      "leifdb.storage.datadir", "leifdb.storage.errors", "twisted"),
    "leifdb.cluster": ("leifdb.client", "leifdb.localprocs", "leifdb.cluster_cli"),
    # Its command line (python -m leifdb.cluster), and ports and processes by PID.
    "leifdb.cluster_cli": ("leifdb.cluster",),
    "leifdb.localprocs": (),
    # The one HTTP client: it knows LeifDB only as a remote API, so nothing of the server.
    "leifdb.client": ("twisted", "txaio", "crc32c"),
    "leifdb.cli": ("leifdb.client", "leifdb.restore"),
    # Backups into data directories: the storage's writers, the store, the membership format.
    "leifdb.restore": ("leifdb.kv", "leifdb.raft", "leifdb.storage", "leifdb.wire"),
    # The composition root wires everything.
    "leifdb.tap": ("leifdb", "twisted"),
    # What a node logs (start line, JSON lines, the level filter), for the tap.
    "leifdb.nodelog": ("leifdb", "twisted"),
    "leifdb.join": ("leifdb.client", "leifdb.nodeconfig", "leifdb.raft", "leifdb.wire",
                    "twisted"),
    "leifdb.http": ("leifdb.service.api", "leifdb.kv", "leifdb.errors", "leifdb.metrics",
                    "klein", "twisted", "zope.interface", "apispec", "werkzeug", "yaml",
                    "swagger_ui_bundle"),
    # HTTP worker processes: the same HTTP resource over a remote service (--workers).
    "leifdb.worker": ("leifdb.http", "leifdb.service.api", "leifdb.kv", "leifdb.errors",
                      "leifdb.metrics", "twisted"),
    # Prometheus metrics: read the service's status; the node, transport and service are
    # handed its observing callables by leifdb.tap and never import it.
    "leifdb.metrics": ("leifdb.service.api", "prometheus_client"),
}


# Function-level imports hide a dependency from the reader and from this check; only the
# global reactor may be imported late (importing it picks the reactor, so Twisted code
# must not do it at module level).
LATE_IMPORTS_ALLOWED = {"twisted.internet.reactor", "twisted.internet"}

# These import nothing of ours but themselves, not even the root package.
STRICT = {"leifdb.raft", "leifdb.kv", "leifdb.errors"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, absolute module, imported names) for every import statement in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from leifdb.wire import leifdb_pb2`` imports the module leifdb.wire.leifdb_pb2.
            names = tuple(alias.name for alias in node.names)
            modules = [n for n in names if is_our_module(f"{base}.{n}")]
            found += [(node.lineno, f"{base}.{n}", ()) for n in modules]
            others = tuple(n for n in names if n not in modules)
            if others or not names:
                found.append((node.lineno, base, others))
    return sorted(found)


def is_our_module(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return module.startswith("leifdb.") and (path.with_suffix(".py").exists() or path.is_dir())


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        owner = next((p for p in ALLOWED if within(me, p)), None)
        where = path.relative_to(ROOT)
        for line, target, names in imports_of(path):
            top = target.partition(".")[0]
            if within(target, GENERATED) and not within(me, "leifdb.wire"):
                found.append(f"{where}:{line}: imports {GENERATED}; only leifdb.wire may")
            if owner is None or top in sys.stdlib_module_names or within(target, owner):
                continue
            if target == "leifdb" and owner not in STRICT:
                continue  # the root package holds only __version__
            allowed = ALLOWED[owner]
            if not any(within(target, a) for a in allowed):
                found.append(f"{where}:{line}: {owner} may not import {target} "
                             f"(allowed: stdlib, {owner}{''.join(', ' + a for a in allowed)})")
            elif within(target, "leifdb.node") and (
                    target != "leifdb.node" or any(n.startswith("_") for n in names)):
                found.append(f"{where}:{line}: {owner} may use only leifdb.node's public "
                             f"names, not {target} {names}")
    return found


def late_imports() -> list[str]:
    """Import statements inside functions or classes, anywhere in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name.endswith("_pb2.py"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        top = set(map(id, tree.body))
        for stmt in tree.body:
            if isinstance(stmt, (ast.Try, ast.If)):
                top |= {id(s) for s in ast.walk(stmt) if isinstance(s, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                    a.name for a in node.names]
                if not all(n in LATE_IMPORTS_ALLOWED for n in names):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: late import of {names}")
    return found


def test_no_function_level_imports_hide_a_dependency():
    bad = late_imports()
    assert not bad, "move these imports to the top of their module:\n  " + "\n  ".join(bad)


def test_every_module_of_the_package_is_covered_by_a_rule():
    uncovered = [module_name(p) for p in sorted(PACKAGE.rglob("*.py"))
                 if module_name(p) not in ("leifdb",)
                 and not any(within(module_name(p), prefix) for prefix in ALLOWED)]
    assert not uncovered, f"no dependency rule for {uncovered}"


def test_packages_import_only_along_the_dependency_arrows():
    bad = violations()
    assert not bad, "imports against the dependency arrows:\n  " + "\n  ".join(bad)


def test_the_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    """The check above cannot pass vacuously: it flags imports planted in a fake tree."""
    fake = tmp_path / "leifdb"
    (fake / "raft").mkdir(parents=True)
    (fake / "http").mkdir()
    (fake / "raft" / "__init__.py").write_text("")
    (fake / "wire").mkdir()
    (fake / "wire" / "leifdb_pb2.py").write_text("")
    (fake / "raft" / "core.py").write_text(
        "import os\nfrom twisted.internet import reactor\nfrom . import log\nimport leifdb\n")
    (fake / "http" / "app.py").write_text(
        "from ..wire import leifdb_pb2\nfrom leifdb.node import _private\n"
        "from leifdb.kv import commands\nfrom leifdb import __version__\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)

    bad = violations()

    assert len(bad) == 5, bad
    assert bad[0] == "leifdb/http/app.py:1: imports leifdb.wire.leifdb_pb2; only leifdb.wire may"
    assert bad[1].startswith("leifdb/http/app.py:1: leifdb.http may not import leifdb.wire.")
    assert bad[2].startswith("leifdb/http/app.py:2: leifdb.http may not import leifdb.node")
    assert bad[3].startswith("leifdb/raft/core.py:2: leifdb.raft may not import twisted.internet")
    assert bad[4].startswith("leifdb/raft/core.py:4: leifdb.raft may not import leifdb ")
