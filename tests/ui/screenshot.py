"""Take the README's screenshot of the web UI (``docs/ui.png``): a 3-node cluster on free
ports with a few keys and leases, the page loaded from a follower, one key open.

    PYTHONPATH=. .venv/bin/python -m tests.ui.screenshot [docs/ui.png]

Needs Playwright (the dev extras) and an installed Chromium (``apt-get install
chromium``); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from leifdb.client import Client
from tests.ui.harness import NO_BROWSER, find_chromium, launch, running_cluster

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "config/db/url": "postgres://db.internal:5432/orders",
    "config/db/pool": "20",
    "config/feature/new-checkout": "on",
    "config/http/timeout": "30s",
    "config/log/level": "info",
    "jobs/nightly-backup": '{"cron": "0 3 * * *", "target": "s3://backups"}',
}
LEASED = {"service/web-1": "10.0.0.7:8080", "service/web-2": "10.0.0.8:8080"}


def populate(db: Client) -> int:
    """The keys and leases the picture shows; the id of the lease whose keys it lists."""
    for key, value in KEYS.items():
        db.put(key, value)
    web = db.grant(30)
    for key, value in LEASED.items():
        db.put(key, value, lease=web.id)
    db.grant(120)
    db.put("config/log/level", "debug")
    return web.id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=ROOT / "docs" / "ui.png")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print(NO_BROWSER, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as base, running_cluster(Path(base)) as cluster, \
            sync_playwright() as playwright:
        db = Client([cluster.url(i) for i in range(len(cluster))])
        lease = populate(db)
        follower = next(i for i in range(len(cluster)) if i not in cluster.leaders())
        browser = launch(playwright, chromium)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(cluster.url(follower) + "/ui/#key=config/db/url")
            expect(page.locator("#members td.healthy")).to_have_count(3)
            lease_row = page.locator(f'#leases tbody tr[data-lease="{lease}"]')
            lease_row.get_by_role("button", name="show").click()
            expect(lease_row.locator("td.lease-keys a")).to_have_count(len(LEASED))
            page.wait_for_timeout(1500)  # let the lease bars run down a little
            args.output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.output), full_page=True)
        finally:
            browser.close()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
