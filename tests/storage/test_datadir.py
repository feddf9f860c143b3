"""Data directory resolution, its default name, and the lock."""

from __future__ import annotations

import pytest

from leifdb.storage import DataDir, DataDirError, DataDirLocked, DiskStorage, fnv1_32
from leifdb.storage.datadir import default_data_dir, resolve_data_dir


def test_fnv1_matches_published_vectors():
    # FNV-1 32-bit (not FNV-1a): offset basis for empty input, known values otherwise.
    assert fnv1_32(b"") == 0x811C9DC5
    assert fnv1_32(b"a") == 0x050C5D7E
    assert fnv1_32(b"foobar") == 0x31F0B262


def test_default_is_home_dot_leifdb_and_the_address_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))

    path = resolve_data_dir(None, "127.0.0.1:16990")

    expected = tmp_path / ".leifdb" / f"{fnv1_32(b'127.0.0.1:16990'):08x}"
    assert path == expected
    assert path.is_dir()
    assert len(path.name) == 8


def test_different_addresses_get_different_default_directories(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir("127.0.0.1:16990") != default_data_dir("127.0.0.1:16991")


def test_a_missing_directory_is_created_with_parents(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    assert resolve_data_dir(str(target), "h:1") == target
    assert target.is_dir()


def test_an_existing_directory_is_used_as_is(tmp_path):
    (tmp_path / "keep").write_text("x")
    assert resolve_data_dir(str(tmp_path), "h:1") == tmp_path
    assert (tmp_path / "keep").read_text() == "x"


def test_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir("~/data", "h:1") == tmp_path / "data"


def test_a_regular_file_is_refused_with_a_clear_message(tmp_path):
    target = tmp_path / "file"
    target.write_text("not a directory")

    with pytest.raises(DataDirError, match="exists and is not a directory"):
        resolve_data_dir(str(target), "h:1")
    with pytest.raises(DataDirError, match="not a directory"):
        DataDir.open(target)


def test_a_path_below_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DataDirError, match="cannot create"):
        resolve_data_dir(str(tmp_path / "file" / "sub"), "h:1")


def test_a_second_open_is_refused_until_the_first_closes(tmp_path):
    first = DiskStorage.open(tmp_path)

    with pytest.raises(DataDirLocked, match="in use"):
        DiskStorage.open(tmp_path)

    first.close()
    DiskStorage.open(tmp_path).close()


def test_data_dir_creates_its_layout(tmp_path):
    with DataDir.open(tmp_path / "n") as data_dir:
        assert data_dir.log_dir.is_dir()
        assert data_dir.snap_dir.is_dir()
        assert (data_dir.path / "LOCK").exists()
    assert data_dir.closed
