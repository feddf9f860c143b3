"""leifdb.kv is the replicated state machine: it imports only the standard library and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import leifdb.kv

KV_DIR = Path(leifdb.kv.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: use absolute imports"
            names.add(node.module or "")
    return names


def test_kv_imports_only_stdlib_and_itself() -> None:
    files = sorted(KV_DIR.glob("*.py"))
    assert len(files) >= 4
    for path in files:
        for name in imported_modules(path):
            top = name.split(".")[0]
            allowed = name == "leifdb.kv" or name.startswith("leifdb.kv.") or (
                top in sys.stdlib_module_names or top == "__future__"
            )
            assert allowed, f"{path.name} imports {name}"
