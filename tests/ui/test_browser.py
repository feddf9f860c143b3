"""The web UI in a real headless Chromium against a real 3-node cluster: create a key, see
another client's edit arrive without a reload, delete it, see a 412 conflict shown (and
nothing overwritten), page through keys, and watch the cluster and lease panels.

The page is loaded from a follower: its writes reach the leader through the 307, and the
cluster panel calls the other nodes across origins (CORS)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from leifdb.client import Client
from leifdb.cluster import LocalCluster
from tests.ui.harness import sync_api

pytestmark = pytest.mark.cluster


def expect(target: Any) -> Any:
    return sync_api.expect(target)


def row_of(page: Any, key: str) -> Any:
    return page.locator(f'#keys tbody tr[data-key="{key}"]')


def mark_loaded(page: Any) -> None:
    """A marker a reload would erase."""
    page.evaluate("window.notReloaded = true")


def test_create_see_another_clients_edit_live_and_delete(page, db: Client, ui_url: str):
    page.goto(ui_url)
    expect(page.locator("#live")).to_have_text("live")
    mark_loaded(page)

    page.click("#new-key")
    page.fill("#key", "ui/greeting")
    page.fill("#value", "hello")
    page.click("#save")
    expect(page.locator("#editor-status")).to_have_text(re.compile(r"Saved at revision \d+\."))
    created = db.get("ui/greeting")
    assert created is not None and created.value == "hello"
    expect(page.locator("#meta")).to_contain_text(f"Revision {created.revision}")
    row = row_of(page, "ui/greeting")
    expect(row.locator("td.value")).to_have_text("hello")  # through the watch

    written = db.put("ui/greeting", "from another client")
    expect(page.locator("#value")).to_have_value("from another client")
    expect(page.locator("#meta")).to_contain_text(f"Revision {written.revision}")
    expect(page.locator("#remote")).to_contain_text(
        f"Updated by another client at revision {written.revision}")
    expect(row.locator("td.value")).to_have_text("from another client")
    expect(row.locator("td.num")).to_have_text(str(written.revision))

    page.click("#delete")
    expect(page.locator("#delete")).to_have_text("Confirm delete")
    assert db.get("ui/greeting") is not None  # one click does not delete
    page.click("#delete")
    expect(page.locator("#editor-empty")).to_contain_text('Deleted "ui/greeting" at revision')
    expect(row).to_have_count(0)
    assert db.get("ui/greeting") is None
    assert page.evaluate("window.notReloaded") is True


def test_a_conflict_is_shown_and_nothing_is_overwritten(page, db: Client, ui_url: str):
    first = db.put("ui/conflict", "v1")
    page.goto(ui_url + "#key=ui/conflict")
    expect(page.locator("#value")).to_have_value("v1")
    expect(page.locator("#live")).to_have_text("live")

    page.fill("#value", "mine")
    theirs = db.put("ui/conflict", "theirs")
    expect(page.locator("#remote")).to_contain_text(
        f"Another client changed this key at revision {theirs.revision}")
    expect(page.locator("#value")).to_have_value("mine")  # the edit is not replaced
    page.click("#save")

    expect(page.locator("#conflict")).to_be_visible()
    expect(page.locator("#conflict-title")).to_have_text("Conflict: nothing was written")
    text = page.locator("#conflict-text")
    expect(text).to_contain_text(f"changed since you read it at revision {first.revision}")
    expect(text).to_contain_text(f"now at revision {theirs.revision}")
    expect(page.locator("#conflict-value")).to_have_text("theirs")
    expect(page.locator("#value")).to_have_value("mine")
    assert db.get("ui/conflict").value == "theirs"

    page.click("#conflict-load")
    expect(page.locator("#value")).to_have_value("theirs")
    expect(page.locator("#conflict")).to_be_hidden()

    # Writing over another client's change happens only when asked, and only over the
    # revision that was shown: a third change in between is a conflict again.
    page.fill("#value", "mine")
    again = db.put("ui/conflict", "theirs again")
    page.click("#save")
    expect(page.locator("#conflict-value")).to_have_text("theirs again")
    page.click("#conflict-overwrite")
    expect(page.locator("#editor-status")).to_have_text(re.compile(r"Saved at revision \d+\."))
    after = db.get("ui/conflict")
    assert after.value == "mine" and after.revision > again.revision
    expect(page.locator("#conflict")).to_be_hidden()

    # Creating a key that exists is a conflict too.
    page.click("#new-key")
    page.fill("#key", "ui/conflict")
    page.fill("#value", "new")
    page.click("#save")
    expect(page.locator("#conflict-text")).to_contain_text(
        f'A key named "ui/conflict" already exists (revision {after.revision})')
    assert db.get("ui/conflict").value == "mine"


def test_pages_of_keys_cluster_panel_and_leases(page, db: Client, cluster: LocalCluster,
                                                ui_url: str):
    for n in range(12):
        db.put(f"pg/{n:02d}", str(n))
    lease = db.grant(60)
    db.put("ui/leased", "x", lease=lease.id)

    page.goto(ui_url + "#prefix=pg/")
    page.select_option("#limit", "10")
    rows = page.locator("#keys tbody tr")
    expect(rows).to_have_count(10)
    expect(page.locator("#page-info")).to_have_text("Page 1 · 10 keys (more)")
    page.click("#next-page")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-key", "pg/10")
    expect(page.locator("#next-page")).to_be_disabled()
    page.click("#prev-page")
    expect(rows).to_have_count(10)
    expect(rows.first).to_have_attribute("data-key", "pg/00")

    members = page.locator("#members tbody tr")
    expect(members).to_have_count(3)
    expect(page.locator("#members td.healthy")).to_have_count(3)
    leader = cluster.nodes[cluster.wait_for_leader(10)].name
    expect(page.locator("#members tbody tr.leader")).to_have_attribute("data-member", leader)
    expect(page.locator("#members td.role", has_text="follower")).to_have_count(2)
    expect(page.locator("#members td.lag")).to_have_count(3)

    lease_row = page.locator(f'#leases tbody tr[data-lease="{lease.id}"]')
    seconds = lease_row.locator(".secs")
    expect(seconds).to_have_text(re.compile(r"\d+\.\d s"))
    before = float(seconds.text_content().split()[0])
    page.wait_for_timeout(1200)
    after = float(seconds.text_content().split()[0])
    assert 0 < after < before <= 60
    lease_row.get_by_role("button", name="show").click()
    expect(lease_row.locator("td.lease-keys a")).to_have_text(["ui/leased"])

    db.revoke(lease.id)
    expect(lease_row).to_have_count(0)
