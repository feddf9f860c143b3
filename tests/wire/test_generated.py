"""The committed generated code is exactly what ``make proto`` makes from proto/leifdb.proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "leifdb" / "wire"


@pytest.mark.parametrize("name", ["leifdb_pb2.py", "leifdb_pb2.pyi"])
def test_regenerating_the_protobuf_code_changes_nothing(tmp_path, name):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iproto", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", "proto/leifdb.proto"],
        cwd=ROOT, check=True, capture_output=True, timeout=60,
    )
    fresh = (tmp_path / name).read_bytes()
    assert fresh == (COMMITTED / name).read_bytes(), (
        f"leifdb/wire/{name} is stale: run `make proto` and commit the result")
