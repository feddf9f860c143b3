"""A data directory's identity and peer pins: made once, refused when they do not fit, and
durable and checked like the hard state (a crash leaves the old or the new file; damage is a
one-line ``StorageCorruption``)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from leifdb.storage.errors import StorageCorruption, StorageError
from leifdb.storage.identity import (
    IDENTITY_NAME,
    PEERS_NAME,
    IdentityRefused,
    PeerPins,
    load_or_create_identity,
    new_incarnation,
    read_identity,
)
from leifdb.storage.simfs import SimFileSystem, SimulatedCrash

D = Path("/data")


@pytest.fixture
def fs():
    sim = SimFileSystem()
    sim.mkdir("/data")
    sim.fsync_dir("/")
    return sim


def test_a_new_directory_gets_an_identity_with_a_fresh_incarnation(fs):
    first = load_or_create_identity(D, "n1", "prod", fs=fs)
    assert (first.member_id, first.cluster_id, first.removed) == ("n1", "prod", False)
    assert len(first.incarnation) == 16 and int(first.incarnation, 16) >= 0

    again = load_or_create_identity(D, "n1", "prod", fs=fs)
    assert again.incarnation == first.incarnation  # loaded, not made again
    assert new_incarnation() != new_incarnation()


def test_the_identity_is_durable_once_made(fs):
    made = load_or_create_identity(D, "n1", "prod", fs=fs)
    fs.power_cut()
    assert read_identity(D, fs=fs).incarnation == made.incarnation


def test_another_member_id_is_refused_with_what_to_do(fs):
    load_or_create_identity(D, "n1", "prod", fs=fs)
    with pytest.raises(IdentityRefused, match=r"belongs to member 'n1', not 'n2': start it "
                                              r"with --name n1, or wipe the data directory"):
        load_or_create_identity(D, "n2", "prod", fs=fs)


def test_another_cluster_is_refused(fs):
    load_or_create_identity(D, "n1", "prod", fs=fs)
    with pytest.raises(IdentityRefused, match="belongs to cluster 'prod', not 'test'"):
        load_or_create_identity(D, "n1", "test", fs=fs)


def test_a_removed_member_never_starts_again_on_its_directory(fs):
    identity = load_or_create_identity(D, "n1", "prod", fs=fs)
    identity.mark_removed()
    identity.mark_removed()  # idempotent
    fs.power_cut()  # durable at once
    with pytest.raises(IdentityRefused, match="n1 was removed from cluster 'prod'.*wipe"):
        load_or_create_identity(D, "n1", "prod", fs=fs)
    assert read_identity(D, fs=fs).removed


def test_refusals_are_storage_errors_the_tap_reports_as_one_line(fs):
    assert issubclass(IdentityRefused, StorageError)
    load_or_create_identity(D, "n1", "prod", fs=fs)
    with pytest.raises(IdentityRefused) as info:
        load_or_create_identity(D, "n2", "prod", fs=fs)
    assert "\n" not in str(info.value)


def test_a_crash_while_marking_removed_leaves_the_old_or_the_new_file(fs):
    """Every crash point of the atomic replace: never a torn identity."""
    outcomes = set()
    for calls in range(10):
        sim = SimFileSystem()
        sim.mkdir("/data")
        sim.fsync_dir("/")
        identity = load_or_create_identity(D, "n1", "prod", fs=sim)
        sim.crash_after(calls)
        try:
            identity.mark_removed()
            completed = True
        except SimulatedCrash:
            completed = False
        sim.crash_after(None)
        sim.power_cut(random.Random(calls), keep_unsynced=True)
        found = read_identity(D, fs=sim)
        assert found is not None and found.incarnation == identity.incarnation
        assert found.removed or not completed  # a completed mark survives power loss
        outcomes.add(found.removed)
    assert outcomes == {False, True}


@pytest.mark.parametrize("damage", [
    lambda raw: raw[:10],  # shorter than the header
    lambda raw: raw[:-3],  # payload cut
    lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]),  # a flipped bit
    lambda raw: b"NOTLEIF\x00" + raw[8:],  # bad magic
], ids=["truncated header", "truncated payload", "bit flip", "bad magic"])
@pytest.mark.parametrize("name", [IDENTITY_NAME, PEERS_NAME])
def test_a_damaged_file_is_a_clear_corruption_error(fs, damage, name):
    load_or_create_identity(D, "n1", "prod", fs=fs)
    PeerPins.open(D, fs=fs).check("n2", "abcd")
    raw = fs.read_file(D / name)
    fd = fs.open(D / name, os.O_WRONLY | os.O_TRUNC)
    fs.write(fd, damage(raw))
    fs.close(fd)
    with pytest.raises(StorageCorruption, match=f"{name}.*wipe the data directory") as info:
        if name == IDENTITY_NAME:
            read_identity(D, fs=fs)
        else:
            PeerPins.open(D, fs=fs)
    assert "\n" not in str(info.value)


def test_well_formed_json_that_is_no_identity_is_corruption(tmp_path):
    from_disk = load_or_create_identity(tmp_path, "n1", "prod")
    raw = (tmp_path / IDENTITY_NAME).read_bytes()
    assert b'"member_id":"n1"' in raw  # JSON inside the checksummed envelope
    from_disk.member_id = ""
    from_disk.save()
    with pytest.raises(StorageCorruption, match="empty member or cluster id"):
        read_identity(tmp_path)


def test_the_joined_index_is_recorded_once_and_durably(fs):
    identity = load_or_create_identity(D, "n4", "prod", fs=fs)
    assert identity.joined_index == 0  # a bootstrap member until told otherwise
    identity.mark_joined(17)
    identity.mark_joined(30)  # only the entry that first made it a member counts
    fs.power_cut()
    found = read_identity(D, fs=fs)
    assert found.joined_index == 17 and not found.removed
    found.mark_removed()
    assert read_identity(D, fs=fs).joined_index == 17
    with pytest.raises(ValueError):
        found.mark_joined(0)


def test_pins_pin_on_first_sight_and_refuse_another_incarnation(fs):
    pins = PeerPins.open(D, fs=fs)
    assert pins.check("n2", "aaaa")
    assert pins.check("n2", "aaaa")
    assert not pins.check("n2", "bbbb")
    assert pins.check("n3", "cccc")
    fs.power_cut()  # pinned durably before check answered
    reopened = PeerPins.open(D, fs=fs)
    assert reopened.pinned() == {"n2": "aaaa", "n3": "cccc"}
    assert not reopened.check("n2", "bbbb")


def test_clearing_a_pin_lets_the_next_incarnation_pin(fs):
    pins = PeerPins.open(D, fs=fs)
    pins.check("n2", "aaaa")
    pins.clear("n2")
    pins.clear("n9")  # unknown: nothing to do
    assert PeerPins.open(D, fs=fs).get("n2") is None
    assert pins.check("n2", "bbbb")
    assert PeerPins.open(D, fs=fs).get("n2") == "bbbb"


def test_an_empty_incarnation_passes_and_pins_nothing(fs):
    pins = PeerPins.open(D, fs=fs)
    assert pins.check("n2", "")
    assert pins.pinned() == {}


def test_a_pin_that_cannot_be_written_is_not_kept(fs):
    pins = PeerPins.open(D, fs=fs)
    fs.crash_after(0)
    with pytest.raises(SimulatedCrash):
        pins.check("n2", "aaaa")
    fs.crash()
    fs.crash_after(None)
    assert pins.get("n2") is None  # not trusted in memory either
    assert pins.check("n2", "aaaa") and PeerPins.open(D, fs=fs).get("n2") == "aaaa"
