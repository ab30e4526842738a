"""What a spider yields to the item pipelines: one `Fetched` per image fetch or failed page."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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


def page_item(source: str, url: str) -> ImageItem:
    """The row identity of a page that failed: no image, keyed by the page URL."""
    return ImageItem(source=source, source_id=f"page:{url}", page_url=url, image_url="")
