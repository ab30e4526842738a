"""MyAnimeList characters: every picture of every character, full size.

Mode "jikan" (default) reads the Jikan v4 API (JIKAN_BASE_URL): the favourites ranking, a name
search (`--query Lelouch`), an anime's cast (`--arg anime=1`) or explicit ids (`--arg ids=1,425`);
each character's /pictures answer gives its images. Mode "html" (`--arg mode=html`) reads
MyAnimeList's own pages (MAL_BASE_URL) the same way: list -> character page -> /pics.

Characters are visited one after another: the next character's first request is made only
once the current one is done, and the next list page only once its characters are. So
`--limit` ends the crawl without a queue of API calls made for nothing, and only one Jikan
request is ever in flight; JIKAN_MIN_INTERVAL (through the retry middleware's
`host_intervals`) spaces them to Jikan's 60 a minute even when DOWNLOAD_DELAY is 0.

MAL's terms forbid scraping without consent (../shared/sites/REPORT.md §0): the spider starts
only with MAL_TERMS_ACCEPTED=True, set by someone who has reviewed them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from typing import Any, Iterator
from urllib.parse import urlsplit

import scrapy

from ..parsing import ImageItem, PageError, Parsed, Unavailable
from ..sites import myanimelist as mal
from .base import HeadshotSpider

log = logging.getLogger(__name__)

MODES = ("jikan", "html")
JIKAN_MIN_INTERVAL = 1.05  # one request a second meets both of Jikan's limits (3/s, 60/min)
HTML_DELAY = 3.0  # REPORT §4: MAL's own pages no faster than one every 3 s
RATE_LIMIT_RETRIES = 2
# The chain of characters rides in request meta (plain data: it must pickle into a JOBDIR).
CHAIN = ("mal_queue", "mal_next", "mal_character", "mal_rate_waits", "mal_list_parser")
_CHARACTER_PATH = re.compile(r"/character/(\d+)(?:/([^/?#]+))?")

TERMS = ("MyAnimeList's Terms of Use do not allow scraping without MyAnimeList's prior written consent, and "
         "its robots.txt shuts out AI crawlers (../shared/sites/REPORT.md section 0). Review "
         "https://myanimelist.net/about/terms_of_use and https://myanimelist.net/robots.txt (Jikan's terms too), "
         "and if your use is allowed, run again with --set MAL_TERMS_ACCEPTED=True.")


class TermsNotAccepted(RuntimeError):
    pass


class _RateLimited:
    """Yielded inside this spider only: a page said "too many requests"; on_page waits and asks again."""

    def __init__(self, error: PageError) -> None:
        self.error = error


class MyAnimeListSpider(HeadshotSpider):
    name = "myanimelist"
    source = "myanimelist"
    base_url_settings = ("MAL_BASE_URL", "JIKAN_BASE_URL")
    parsers = {
        "jikan_list": mal.parse_jikan_character_list,
        "jikan_character": mal.parse_jikan_character,
        "jikan_pictures": mal.parse_jikan_pictures,  # the character's name comes from meta, in follow_pictures
        "html_list": mal.parse_html_character_list,
        "html_cast": mal.parse_html_anime_characters,
        "html_character": mal.parse_html_character,
        "html_pictures": mal.parse_html_pictures,
    }

    def __init__(self, *args: Any, mode: str = "jikan", query: str = "", anime: str = "", ids: str = "",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if mode not in MODES:
            raise ValueError(f"unknown MyAnimeList mode {mode!r}: choose jikan (default) or html")
        self.mode, self.query, self.anime = mode, query.strip(), anime.strip()
        self.ids = [int(i) for i in re.split(r"[,\s]+", ids) if i.strip()] if re.fullmatch(r"[\d,\s]*", ids) else None
        if self.ids is None:
            raise ValueError(f"bad ids {ids!r}: write MyAnimeList character ids, for example ids=1,425")
        self.asked: set[str] = set()  # character and pictures pages asked for in this crawl
        self.requested: set[str] = set()  # image source ids asked for in this crawl

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        s = crawler.settings
        if not s.getbool("MAL_TERMS_ACCEPTED", False):
            log.error("refusing to crawl MyAnimeList: %s", TERMS)
            raise TermsNotAccepted(TERMS)
        if kwargs.get("mode") == "html":
            # Settings are not frozen yet; "spider" priority loses to a --set on the command line.
            s.set("DOWNLOAD_DELAY", max(s.getfloat("DOWNLOAD_DELAY"), HTML_DELAY), priority="spider")
        spider = super().from_crawler(crawler, *args, **kwargs)
        interval = s.getfloat("JIKAN_MIN_INTERVAL", JIKAN_MIN_INTERVAL)
        if spider.mode == "jikan" and interval > 0:
            spider.host_intervals = {urlsplit(s.get("JIKAN_BASE_URL")).netloc: interval}
        return spider

    @property
    def jikan(self) -> str:
        return self.settings.get("JIKAN_BASE_URL").rstrip("/")

    @property
    def site(self) -> str:
        return self.settings.get("MAL_BASE_URL").rstrip("/")

    def full(self) -> bool:
        return self.limit is not None and self.images_requested >= self.limit

    # --- seeds and the chain of characters --------------------------------------------------

    async def start(self):
        if self.ids:
            for req in self.advance([self.entry_for_id(i) for i in self.ids], None):
                yield req
        elif not self.full():
            yield self.list_request(self.first_list_url(), "html_cast" if self.mode == "html" and self.anime
                                    else f"{self.mode}_list")

    def first_list_url(self) -> str:
        if self.mode == "jikan":
            if self.anime:
                return mal.jikan_anime_characters_url(self.jikan, self.anime)
            if self.query:
                return mal.jikan_character_search_url(self.jikan, self.query, 1)
            return mal.jikan_top_characters_url(self.jikan, 1)
        if self.anime:
            return mal.html_anime_characters_url(self.site, self.anime)
        if self.query:
            return mal.html_character_search_url(self.site, self.query, 1)
        return mal.html_top_characters_url(self.site, 1)

    def list_request(self, url: str, parser: str) -> scrapy.Request:
        return self.page(url, parser, "follow_list", meta={"mal_list_parser": parser})

    def entry_for_id(self, mal_id: int) -> dict[str, Any]:
        if self.mode == "jikan":
            return {"id": mal_id, "step": "jikan_character", "url": mal.jikan_character_url(self.jikan, mal_id),
                    "pictures": mal.jikan_character_pictures_url(self.jikan, mal_id), "character": {}}
        return self.html_entry(f"{self.site}/character/{mal_id}", {})

    def html_entry(self, url: str, listed: dict[str, Any]) -> dict[str, Any]:
        m = _CHARACTER_PATH.search(urlsplit(url).path)
        mal_id, slug = (int(m.group(1)), m.group(2) or "x") if m else (0, "x")
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        return {"id": mal_id, "step": "html_character", "url": url,
                "pictures": mal.html_character_pictures_url(origin, mal_id, slug), "character": listed}

    def follow_list(self, parsed: Parsed, response) -> Iterator:
        response.meta["mal_handed_on"] = True
        listed = {c["mal_id"]: c for c in parsed.info.get("characters", []) if isinstance(c, dict)}
        if self.mode == "jikan":
            pages = {i.extra.get("mal_id"): i.page_url for i in parsed.items}
            queue = [self.jikan_entry(c, pages.get(c["mal_id"])) for c in listed.values()]
        else:
            queue = []
            for url in parsed.follow:
                m = _CHARACTER_PATH.search(urlsplit(url).path)
                c = listed.get(int(m.group(1))) if m else None
                queue.append(self.html_entry(url, {"extra": _facts(c)} if c else {}))
        next_page = parsed.next_page
        if next_page:
            next_page = {"url": next_page, "parser": response.meta.get("mal_list_parser", f"{self.mode}_list")}
        yield from self.advance(queue, next_page)

    def jikan_entry(self, c: dict[str, Any], page_url: str | None) -> dict[str, Any]:
        url = mal.jikan_character_pictures_url(self.jikan, c["mal_id"])
        return {"id": c["mal_id"], "step": "jikan_pictures", "url": url, "pictures": url,
                "character": {"name": c.get("name") or "", "title": "",
                              "page_url": page_url or f"{mal.MAL_SITE}/character/{c['mal_id']}",
                              "extra": _facts(c)}}

    def advance(self, queue: list[dict[str, Any]], next_page: dict[str, str] | None) -> Iterator[scrapy.Request]:
        """The next character's first request, or else the next list page, while the limit allows."""
        queue = list(queue)
        while queue and not self.full():
            entry = queue.pop(0)
            if entry["url"] in self.asked or entry["pictures"] in self.asked:
                continue
            if self.page_settled(entry["pictures"]):
                # An earlier crawl stored every picture of this character (HEADSHOT_REFRESH=1 fetches again).
                self.crawler.stats.inc_value("headshot/skipped_settled_page")
                continue
            self.asked.add(entry["url"])
            yield self.step(entry["url"], entry["step"], entry["character"], queue, next_page)
            return
        if next_page and not self.full():
            yield self.list_request(next_page["url"], next_page["parser"])

    def step(self, url: str, parser: str, character: dict[str, Any], queue: list, next_page: dict | None):
        then = "follow_pictures" if parser.endswith("_pictures") else "follow_character"
        # dont_filter: a request the dupefilter dropped would end the chain silently; `asked` dedupes.
        return self.page(url, parser, then, dont_filter=True,
                         meta={"mal_queue": queue, "mal_next": next_page, "mal_character": character})

    def carry_on(self, meta: dict[str, Any]) -> Iterator[scrapy.Request]:
        """After a character's last step, or a failed one: the rest of the chain."""
        if "mal_queue" in meta:
            yield from self.advance(meta["mal_queue"], meta.get("mal_next"))

    # --- a character's page, then its pictures ---------------------------------------------

    def follow_character(self, parsed: Parsed, response) -> Iterator:
        """A character page (HTML) or /characters/{id}/full (Jikan): the facts that every picture
        of the character carries, and its pictures page."""
        response.meta["mal_handed_on"] = True
        info, listed = parsed.info, response.meta.get("mal_character") or {}
        anime = [a for a in info.get("anime") or [] if isinstance(a, dict)]
        extra = {**listed.get("extra", {}), **_facts(info)}
        if anime:
            extra["anime"] = [a.get("title") for a in anime]
        character = {"name": info.get("name") or listed.get("name") or "", "title": mal.main_title(anime),
                     "page_url": info.get("url") or "", "extra": extra,
                     # stands in when the gallery is empty
                     "portrait": parsed.items[0].as_dict() if parsed.items else None}
        pictures = parsed.follow[0] if parsed.follow else None
        meta = response.meta
        if pictures and pictures not in self.asked and not self.page_settled(pictures):
            self.asked.add(pictures)
            parser = "jikan_pictures" if self.mode == "jikan" else "html_pictures"
            yield self.step(pictures, parser, character, meta.get("mal_queue", []), meta.get("mal_next"))
        else:
            yield from self.carry_on(meta)

    def follow_pictures(self, parsed: Parsed, response) -> Iterator:
        response.meta["mal_handed_on"] = True
        c = response.meta.get("mal_character") or {}
        items = [replace(i, character=c.get("name") or i.character, page_url=c.get("page_url") or i.page_url,
                         title=c.get("title") or i.title, extra={**c.get("extra", {}), **i.extra})
                 for i in parsed.items]
        if not items and c.get("portrait"):
            p = dict(c["portrait"])
            items = [ImageItem(**{**p, "tags": tuple(p.get("tags") or ())})]
        # Jikan's answer is not a page a browser would show: the character's MAL page is the Referer.
        referer = response.url if self.mode == "html" else (c.get("page_url") or response.url)
        fresh = [i for i in items if i.source_id not in self.requested]
        for req in self.images(fresh, referer=referer):
            self.requested.add(req.meta["item"].source_id)
            yield req
        yield from self.carry_on(response.meta)

    # --- failures: rows that say why, rate limits waited out, the chain kept going -----------

    async def on_page(self, response):
        meta = response.meta
        outputs = self.failed_page(response) if response.status >= 400 else super().on_page(response)
        handed_on = False
        for out in outputs:
            if isinstance(out, _RateLimited):
                wait = self.rate_limit_wait(response)
                if wait is None:
                    tries = meta.get("mal_rate_waits", 0)
                    for row in self._page_error(self._origin(response), Unavailable(
                            f"{out.error}; still rate limited after {tries} wait(s)")):
                        yield row
                    continue
                self.crawler.stats.inc_value("headshot/rate_limited")
                self.logger.warning("rate limited at %s: waiting %.0f s before asking again", response.url, wait)
                # Only one request of the chain is ever in flight, so waiting here pauses the site.
                await asyncio.sleep(wait)
                out = response.request.replace(dont_filter=True)
                out.meta["mal_rate_waits"] = meta.get("mal_rate_waits", 0) + 1
            if isinstance(out, scrapy.Request) and out.callback == self.on_page and (
                    300 <= response.status < 400 or "mal_rate_waits" in out.meta):
                # A redirect hop or a retry of this very page: the chain goes on with it.
                out.meta.update({k: meta[k] for k in CHAIN if k in meta and k not in out.meta})
                handed_on = True
            yield out
        if not handed_on and not meta.get("mal_handed_on"):
            for req in self.carry_on(meta):
                yield req

    def on_page_error(self, failure) -> Iterator:
        yield from super().on_page_error(failure)
        yield from self.carry_on(failure.request.meta)

    def failed_page(self, response) -> Iterator:
        """An HTTP error page once the middleware's retries are spent (the base class names it
        from its body); a 429 that no Retry-After explained is waited out here instead."""
        if response.status == 429 and not response.meta.get("headshot_retry_after"):
            yield _RateLimited(self.explain_failure(response) or Unavailable("rate limited (HTTP 429)"))
            return
        yield from super().failed_page(response)

    def _page_error(self, url: str, exc: PageError) -> Iterator:
        if exc.retry_after is not None:  # Jikan's RateLimitException in a 200 answer
            yield _RateLimited(exc)
            return
        yield from super()._page_error(url, exc)

    def rate_limit_wait(self, response) -> float | None:
        """Seconds to wait before asking again, or None to give up with a row."""
        wait = self.settings.getfloat("MAL_RATE_LIMIT_WAIT", mal.RATE_LIMIT_WAIT)
        tries = response.meta.get("mal_rate_waits", 0)
        if tries >= self.settings.getint("MAL_RATE_LIMIT_RETRIES", RATE_LIMIT_RETRIES):
            return None
        if wait > self.settings.getfloat("HEADSHOT_MAX_RETRY_AFTER"):
            return None
        return wait


def _facts(c: dict[str, Any] | None) -> dict[str, Any]:
    """What a list or character page says about a character, for every picture's extra."""
    keep = ("mal_id", "name_kanji", "nicknames", "favorites", "role", "rank")
    return {k: c[k] for k in keep if c and c.get(k) not in (None, "", [])}
