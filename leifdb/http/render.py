"""The JSON shapes of items and pages, shared by the key routes, long polls and txn."""

from __future__ import annotations

from typing import Any

from leifdb.kv.commands import Item
from leifdb.service.api import Page

__all__ = ["etag", "item_json", "page_json"]


def etag(revision: int) -> bytes:
    return b'"%d"' % revision


def item_json(item: Item) -> dict[str, Any]:
    return {"key": item.key, "value": item.value, "revision": item.revision}


def page_json(prefix: str, page: Page) -> dict[str, Any]:
    """A range page as ``GET /db`` answers it; ``next_start_after`` is the last key when
    more follow (pass it as ``start_after``)."""
    items = [item_json(item) for item in page.items]
    return {
        "prefix": prefix,
        "items": items,
        "more": page.more,
        "next_start_after": items[-1]["key"] if page.more and items else None,
    }
