"""DeviantArt: the RSS search feed (no account, the default) or the API's /browse/tags.

    headshot crawl deviantart --query "furry headshot" --limit 500 [--arg order=5]
    DEVIANTART_CLIENT_ID=... DEVIANTART_CLIENT_SECRET=... \\
        headshot crawl deviantart --arg mode=tags --arg tag=furryheadshot --limit 500

Both modes follow the listing's next page until `--limit` images have been requested, with no
page cap (a search can have 250 feed pages of 60). A listing page that fails (cut short,
blocked, redirected away, an error after the retries) is a row, and paging goes on at the
next offset, until DEVIANTART_MAX_FAILED_PAGES fail in a row.

Adult-rated items are not fetched unless DEVIANTART_ALLOW_ADULT is set: each is a row with
status "filtered". An item with no rating at all is kept: the current feed often carries no
media:rating, and the rating is a filter of taste, not the opt-out. The opt-out is noai /
noimageai: the store pipeline records an image response with that X-Robots-Tag as opted out,
and with DEVIANTART_CHECK_PAGE the deviation page is read first, so that an opted-out
artwork's image is never downloaded at all.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import scrapy
from scrapy.exceptions import CloseSpider
from scrapy.http import FormRequest, TextResponse
from scrapy.http.request import NO_CALLBACK
from twisted.python.failure import Failure


from ..items import Fetched
from ..parsing import Blocked, PageError, Parsed, Truncated
from ..sites import deviantart as da
from .base import HeadshotSpider

RSS_PAGE_SIZE = 60  # the feed's fixed page size, until a page's rel=next says otherwise
TOKEN_MARGIN = 60.0  # seconds before its expiry that a token is renewed, so none expires in flight
# Request meta a follow-up of a page must keep (the base class's redirect keeps only its own).
CARRIED_META = ("parser", "then", "dont_redirect", "handle_httpstatus_all", "headshot_origin", "item")


def parse_deviation_page(text: str, url: str) -> Parsed:
    """Only what the page says about AI use: info["noai"]."""
    if da.is_block_page(text):
        raise Blocked("CloudFront 'Request blocked' page instead of the deviation page", retry_after=da.BLOCK_WAIT)
    if "</head>" not in text.lower():
        # The robots meta lives in the head: without all of it, "no opt-out" would be a guess.
        raise Truncated(f"deviation page cut short before the end of its head ({len(text)} characters)")
    return Parsed(info={"noai": da.page_opted_out(text)})


class ApiTokenMiddleware:
    """Puts the bearer token on API requests as they leave, and takes it off as they come
    back: the JOBDIR queue, a retried copy and the logs never see it."""

    @classmethod
    def from_crawler(cls, crawler):
        o = cls()
        o.crawler = crawler
        return o

    async def process_request(self, request: scrapy.Request) -> None:
        spider = self.crawler.spider
        if not request.meta.get("deviantart_api") or not hasattr(spider, "api_token"):
            return None
        token, generation = await spider.api_token()
        request.headers["Authorization"] = f"Bearer {token}"
        request.meta["deviantart_token_gen"] = generation
        return None

    def process_response(self, request: scrapy.Request, response):
        request.headers.pop("Authorization", None)
        return response

    def process_exception(self, request: scrapy.Request, exception: Exception) -> None:
        request.headers.pop("Authorization", None)
        return None


class DeviantArtSpider(HeadshotSpider):
    name = "deviantart"
    source = "deviantart"
    base_url_settings = ("DEVIANTART_RSS_URL", "DEVIANTART_API_URL")
    parsers = {"rss": da.parse_rss, "tags": da.parse_browse_tags, "deviation": parse_deviation_page}
    custom_settings = {
        "DOWNLOAD_DELAY": 3.0,  # REPORT §4: DA blocks bursts by IP, and a block lasts minutes
        "AUTOTHROTTLE_START_DELAY": 3.0,
        "DEVIANTART_ALLOW_ADULT": False,
        "DEVIANTART_CHECK_PAGE": False,
        "DEVIANTART_MAX_FAILED_PAGES": 3,
    }

    @classmethod
    def update_settings(cls, settings) -> None:
        super().update_settings(settings)
        # Added to the project's middlewares, not replacing them (custom_settings would).
        mws = dict(settings.getdict("DOWNLOADER_MIDDLEWARES"))
        # Last before the download handler: nothing downstream copies the request with its token.
        mws.setdefault(f"{__name__}.ApiTokenMiddleware", 990)
        settings.set("DOWNLOADER_MIDDLEWARES", mws, priority="spider")

    def __init__(self, *args: Any, query: str = "", mode: str = "rss", tag: str = "", order: str = "",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mode, self.query = mode, (query or "").strip()
        self.order = int(order) if order else None
        if mode == "rss":
            if not self.query:
                raise ValueError('deviantart needs --query "WORDS" (or --arg mode=tags --arg tag=TAG)')
        elif mode == "tags":
            self.tag = (tag or self.query).strip()
            if not self.tag or any(ch.isspace() for ch in self.tag):
                raise ValueError(f"tags mode needs one tag without spaces (--arg tag=furryheadshot), got {self.tag!r}")
            self._client = (os.environ.get("DEVIANTART_CLIENT_ID", ""), os.environ.get("DEVIANTART_CLIENT_SECRET", ""))
            if not all(self._client):
                raise ValueError("tags mode needs DEVIANTART_CLIENT_ID and DEVIANTART_CLIENT_SECRET in the "
                                 "environment (register an application at https://www.deviantart.com/developers)")
        else:
            raise ValueError(f"unknown deviantart mode {mode!r}: rss (the default) or tags")
        self._token: str | None = None
        self._token_gen, self._token_until = 0, 0.0
        self._token_lock: asyncio.Lock | None = None
        self.credentials_refused = False
        self.failed_in_a_row = 0
        self.rss_step = RSS_PAGE_SIZE

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        s = crawler.settings
        spider.allow_adult = s.getbool("DEVIANTART_ALLOW_ADULT")
        spider.check_page = s.getbool("DEVIANTART_CHECK_PAGE")
        spider.max_failed = s.getint("DEVIANTART_MAX_FAILED_PAGES", 3)
        spider.rss_base, spider.api_base = s.get("DEVIANTART_RSS_URL"), s.get("DEVIANTART_API_URL").rstrip("/")
        return spider

    async def start(self):
        if self.mode == "rss":
            yield self.listing(da.rss_search_url(self.rss_base, self.query, self.order))
        else:
            per_page = max(1, min(da.API_MAX_LIMIT, self.limit if self.limit is not None else da.API_MAX_LIMIT))
            yield self.listing(da.browse_tags_url(self.api_base, self.tag, 0, per_page, mature=self.allow_adult))

    def listing(self, url: str) -> scrapy.Request:
        meta = {"deviantart_listing": True, "deviantart_api": self.mode == "tags"}
        return self.page(url, self.mode, "follow_listing", meta=meta)

    def limit_reached(self) -> bool:
        return self.limit is not None and self.images_requested >= self.limit

    # --- listings --------------------------------------------------------------------

    def follow_listing(self, parsed: Parsed, response) -> Iterator:
        self.failed_in_a_row = 0
        url = self._origin(response)
        if self.mode == "rss" and parsed.next_page:
            step = _offset(parsed.next_page) - _offset(url)
            self.rss_step = step if step > 0 else self.rss_step
        for item in parsed.items:
            if item.source_id in self.known:
                self.crawler.stats.inc_value("headshot/skipped_known")
                continue
            if self.limit_reached():
                return  # and no next page: the limit is what this crawl asked for
            if item.rating == "adult" and not self.allow_adult:
                self.crawler.stats.inc_value("deviantart/filtered_adult")
                yield Fetched(item, "filtered", "rated adult; set DEVIANTART_ALLOW_ADULT=True to fetch it")
            elif self.check_page:
                self.images_requested += 1  # the page check is the first step of this image's fetch
                if self.on_site(item.page_url):
                    yield self.page(item.page_url, "deviation", "after_deviation_page", meta={"item": item})
                else:  # Scrapy would drop the request without a word; the image waits for a check
                    yield self._page_failure(item.page_url, "offsite", "the deviation page is off the site: "
                                             "its opt-out cannot be checked, so the image is not fetched")
            else:
                # A browser viewing the artwork would send its page as Referer.
                yield from self.images([item], referer=item.page_url)
        if parsed.next_page and not self.limit_reached():
            if self.on_site(parsed.next_page):
                yield self.listing(parsed.next_page)
            else:
                yield self._page_failure(parsed.next_page, "offsite", "the listing's next page is off the site")

    def after_deviation_page(self, parsed: Parsed, response) -> Iterator:
        item = response.meta["item"]
        if parsed.info.get("noai"):
            yield Fetched(replace(item, extra={**item.extra, "page_noai": True}), "opted_out",
                          "the deviation page says noai/noimageai (robots meta); the image was not fetched")
        else:
            yield self.image_request(item, referer=response.url)

    def _after_failed_listing(self, url: str) -> Iterator:
        """One bad page must not end a crawl of hundreds: go on at the next offset."""
        self.failed_in_a_row += 1
        if self.limit_reached():
            return
        if self.failed_in_a_row >= self.max_failed:
            self.logger.warning("%d listing pages failed in a row: paging stops at %s", self.failed_in_a_row, url)
            return
        nxt = self._next_offset_url(url)
        if nxt:
            yield self.listing(nxt)

    def _next_offset_url(self, url: str) -> str | None:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        params = dict(pairs)
        try:
            step = int(params["limit"]) if "limit" in params else self.rss_step
            offset = int(params.get("offset") or 0) + step
        except ValueError:
            return None
        if "offset" in params:
            pairs = [(k, str(offset) if k == "offset" else v) for k, v in pairs]
        else:
            pairs.append(("offset", str(offset)))
        return parts._replace(query=urlencode(pairs)).geturl()

    # --- page outcomes -----------------------------------------------------------------

    def page_text(self, response) -> str:
        return response.text if isinstance(response, TextResponse) else response.body.decode("utf-8", "replace")

    def on_page(self, response) -> Iterator:
        yield from self._watch_listing(response.meta, self._origin(response), self._page_outcome(response))

    def on_page_error(self, failure: Failure) -> Iterator:
        request = failure.request
        origin = request.meta.get("headshot_origin", request.url)  # where the crawl asked, not where it was sent
        if isinstance(failure.value, PageError):  # the token could not be had
            rows = self._page_error(origin, failure.value)
            if self.credentials_refused:
                yield from rows
                raise CloseSpider("DeviantArt refused the client credentials: see the row's reason")
        else:
            rows = iter([self._page_failure(origin, *self._describe_failure(failure))])
        yield from self._watch_listing(request.meta, origin, rows)

    def _watch_listing(self, meta: dict, url: str, outputs: Iterator) -> Iterator:
        failed = False
        for out in outputs:
            if isinstance(out, Fetched) and out.is_page and out.status != "page" and out.item.page_url == url:
                failed = True
            yield out
        if failed and meta.get("deviantart_listing"):
            yield from self._after_failed_listing(url)

    def _page_outcome(self, response) -> Iterator:
        api, status = response.meta.get("deviantart_api"), response.status
        if (status < 300 and not api) or 300 <= status < 400:
            yield from super().on_page(response)
            return
        text = self.page_text(response)
        error = da.api_error(text) if api and text.lstrip().startswith("{") else None
        if isinstance(error, da.TokenExpired):
            yield from self._token_expired(response, error)
            return
        if status >= 400 and (error is not None or da.is_block_page(text)):
            # A block page or an API error body says more than its status: the parser names it.
            try:
                self.parsers[response.meta["parser"]](text, response.url)
            except PageError as exc:
                yield from self._page_error(self._origin(response), exc)
                return
        yield from super().on_page(response)

    def _follow_redirect(self, response) -> Iterator:
        for out in super()._follow_redirect(response):
            if isinstance(out, scrapy.Request):
                out.meta.update(self._carried(response.meta))
            yield out

    @staticmethod
    def _carried(meta: dict) -> dict:
        return {k: v for k, v in meta.items()
                if k in CARRIED_META or (k.startswith("deviantart_") and k != "deviantart_token_gen")}

    # --- the OAuth2 token (tags mode) ----------------------------------------------------

    async def api_token(self) -> tuple[str, int]:
        """The current token and its generation, fetched when there is none or it is about to expire."""
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:
            if self._token is None or time.monotonic() >= self._token_until:
                self._token, lifetime = await self._fetch_token()
                self._token_gen += 1
                self._token_until = time.monotonic() + max(lifetime - TOKEN_MARGIN, 0.0)
        return self._token, self._token_gen

    async def _fetch_token(self) -> tuple[str, float]:
        client_id, secret = self._client
        # Downloaded directly, never scheduled: the form holds the secret and must not reach the JOBDIR queue.
        request = FormRequest(da.token_url(self.api_base), callback=NO_CALLBACK, dont_filter=True,
                              meta={"dont_redirect": True, "handle_httpstatus_all": True},
                              formdata={"grant_type": "client_credentials", "client_id": client_id,
                                        "client_secret": secret})
        response = await self.crawler.engine.download_async(request)
        try:
            token = da.parse_token(self.page_text(response))  # raises the API's own reason
        except PageError as exc:
            # A plain PageError is invalid_client and the like: asking again will not help.
            self.credentials_refused = type(exc) is PageError
            raise
        self.crawler.stats.inc_value("deviantart/tokens")
        return token["access_token"], float(token["expires_in"] or 3600)

    def _token_expired(self, response, error: PageError) -> Iterator:
        if response.meta.get("deviantart_token_retry"):
            yield from self._page_error(self._origin(response), error)
            return
        # Only the token this request carried is dropped: a newer one may already be in use.
        if response.meta.get("deviantart_token_gen") == self._token_gen:
            self._token = None
        self.logger.info("the API token expired: renewing it and asking %s again", response.url)
        yield response.request.replace(dont_filter=True, meta={**self._carried(response.meta),
                                                               "deviantart_token_retry": True})


def _offset(url: str) -> int:
    try:
        return int(dict(parse_qsl(urlsplit(url).query)).get("offset") or 0)
    except ValueError:
        return 0
