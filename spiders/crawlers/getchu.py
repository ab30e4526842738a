"""getchu.com: character portraits (chara<N>) and full-body pictures (charab<N>) of PC games.

Seeds: a release-month range (`--since 2015-05 --until 2015-07`), a brand id (`-a brand=4522`),
a keyword (`--query 妹`, sent EUC-JP encoded) or explicit ids (`-a ids=1092994,1361161`).
Every request carries the age-gate cookie and `gc=gc`; images are fetched with the item
page as Referer, which the site requires.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from ..parsing import Parsed
from ..sites import getchu
from .base import HeadshotSpider

_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")


def month_range(since: str, until: str) -> list[tuple[int, int]]:
    """Inclusive list of (year, month) between two YYYY-MM strings."""
    def parse(s: str) -> tuple[int, int]:
        m = _MONTH.match(s or "")
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise ValueError(f"bad month {s!r}: write YYYY-MM, for example 2015-05")
        return int(m.group(1)), int(m.group(2))

    (y, m), end = parse(since), parse(until or since)
    if (y, m) > end:
        raise ValueError(f"--since {since} is after --until {until}")
    out = []
    while (y, m) <= end:
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


class GetchuSpider(HeadshotSpider):
    name = "getchu"
    source = "getchu"
    base_url_settings = ("GETCHU_BASE_URL",)
    parsers = {"listing": getchu.parse_listing, "item": getchu.parse_item}

    def __init__(self, *args: Any, since: str = "", until: str = "", query: str = "", brand: str = "",
                 ids: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.since, self.until, self.query, self.brand = since, until, query, brand
        self.ids = [i.strip() for i in ids.split(",") if i.strip()]
        if since or until:
            self.months = month_range(since or until, until or since)
        else:
            self.months = []
        if not (self.months or query or brand or self.ids):
            raise ValueError("getchu needs a seed: --since/--until YYYY-MM, --query, -a brand=ID or -a ids=ID,ID")
        self.items_seen: set[str] = set()

    @property
    def base(self) -> str:
        return self.settings.get("GETCHU_BASE_URL").rstrip("/")

    def page_text(self, response) -> str:
        return getchu.decode_page(response.body, response.headers.get(b"Content-Type", b"").decode("latin-1"))

    @staticmethod
    def age_cookie() -> list[dict]:
        """The age-gate cookie for the whole site (path /): one entry in the cookie jar, where a
        cookie without a path would be one entry per page folder, each checked on every request."""
        return [{"name": k, "value": v, "path": "/"} for k, v in getchu.AGE_COOKIE.items()]

    def request(self, url: str, parser, then=None, **kw):
        return self.page(url, parser, then, cookies=self.age_cookie(), **kw)

    async def start(self):
        for y, m in self.months:
            yield self.request(getchu.month_url(self.base, y, m), "listing", "follow_listing")
        if self.brand:
            yield self.request(getchu.brand_search_url(self.base, self.brand), "listing", "follow_listing")
        if self.query:
            yield self.request(getchu.keyword_search_url(self.base, self.query), "listing", "follow_listing")
        for pid in self.ids:
            for req in self.item_request(getchu.item_url(self.base, pid)):
                yield req

    def follow_listing(self, parsed: Parsed, response) -> Iterator:
        for url in parsed.follow:
            yield from self.item_request(url)

    def item_request(self, url: str) -> Iterator:
        if url in self.items_seen:
            return
        self.items_seen.add(url)
        if self.page_settled(url):
            # An earlier crawl stored every picture of this product: a second crawl fetches
            # only what is new (HEADSHOT_REFRESH=1 fetches it again).
            self.crawler.stats.inc_value("headshot/skipped_settled_page")
            return
        yield self.request(url, "item", "follow_item")

    def follow_item(self, parsed: Parsed, response) -> Iterator:
        yield from self.images(parsed.items, referer=response.url, cookies=self.age_cookie())
