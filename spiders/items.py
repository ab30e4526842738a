"""What a spider yields to the item pipelines: one `Fetched` per image fetch or failed page."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from .parsing import ImageItem


@dataclass
class Fetched:
    """An image fetch's outcome, or a page that failed (then `item` names the page)."""

    item: ImageItem
    status: str  # a ScrapedImage status: ok, http_error, opted_out, too_large, blocked, ...
    reason: str = ""
    body: bytes | None = None
    http_status: int | None = None
    x_robots_tag: list[str] = field(default_factory=list)
    is_page: bool = False  # a failed page rather than an image

    def with_status(self, status: str, reason: str) -> "Fetched":
        return replace(self, status=status, reason=reason, body=None if status != "ok" else self.body)


def page_key(url: str) -> str:
    """A page's identity on its site: path and query, not the host, so that pointing a spider
    at a mirror (or a replica on another port) does not make every page new."""
    parts = urlsplit(url)
    return "page:" + parts.path + (f"?{parts.query}" if parts.query else "")


def page_item(source: str, url: str) -> ImageItem:
    """The row of a page (parsed, or failed): no image, keyed by `page_key`."""
    return ImageItem(source=source, source_id=page_key(url), page_url=url, image_url="")
