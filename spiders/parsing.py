"""What every site parser returns, and the errors it raises for pages that are not what they seem.

Parsers are pure functions: page text (or bytes, for sites that need their own decoding) and
the page's URL in, a `Parsed` out. They never fetch and never touch Scrapy, so they are
tested on saved pages against golden output. A block page, an age gate, a maintenance page
or a truncated page raises a `PageError` instead of parsing as "no items".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class PageError(Exception):
    """The page is not the page asked for. `kind` becomes the row's reason prefix."""

    kind = "page_error"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AgeGate(PageError):
    kind = "age_gate"


class Blocked(PageError):
    """A WAF / CloudFront / bot-wall page: stop hammering, report it."""

    kind = "blocked"


class Unavailable(PageError):
    """Maintenance or overload (MAL's 503 page, Jikan's 503): retry later."""

    kind = "unavailable"


class Truncated(PageError):
    """HTTP 200 with a page cut short: markers that every real page has are missing."""

    kind = "truncated"


class NotFound(PageError):
    kind = "not_found"


@dataclass(frozen=True)
class ImageItem:
    """One image found on a page, with everything the page said about it.

    `source_id` is stable across crawls (it names the image on the site, not the fetch), so a
    second crawl recognises what it has seen. `extra` holds site-specific fields
    (getchu's reading and voice actor, MAL's favourites, DeviantArt's category...).
    """

    source: str
    source_id: str
    page_url: str
    image_url: str
    title: str = ""
    artist: str = ""
    character: str = ""
    tags: tuple[str, ...] = ()
    rating: str = ""  # e.g. "adult", "nonadult", "" when the site says nothing
    license: str = ""
    published_at: str = ""  # ISO 8601 date or datetime, "" when unknown
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tags"] = list(self.tags)
        return d


@dataclass(frozen=True)
class Parsed:
    """A page's yield: images, page links to follow (absolute URLs), and the next page."""

    items: list[ImageItem] = field(default_factory=list)
    follow: list[str] = field(default_factory=list)
    next_page: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # page-level facts (totals, ids)

    def as_dict(self) -> dict[str, Any]:
        return {"items": [i.as_dict() for i in self.items], "follow": list(self.follow),
                "next_page": self.next_page, "info": self.info}
