"""What the three spiders share: page requests whose failures become rows, image requests
that go wherever the page points (with the page as Referer), and incremental crawling.

A site spider only builds its start requests and says which parser reads which page.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import scrapy
from scrapy.exceptions import CloseSpider
from twisted.python.failure import Failure

from manifests import tables
from manifests.records import ScrapedImage
from manifests.workspace import Workspace

from ..items import Fetched, page_item, page_key
from ..run import CLOSED_MARKER, FINISHED_MARKER
from ..parsing import Blocked, ImageItem, NotFound, PageError, Parsed, Unavailable

Parser = Callable[[str, str], Parsed]


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class HeadshotSpider(scrapy.Spider):
    source = ""
    base_url_settings: tuple[str, ...] = ()  # settings whose hosts are "the site"

    def __init__(self, *args: Any, limit: str | int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit = int(limit) if limit not in (None, "") else None
        self.images_requested = 0
        self.blocks_in_a_row = 0

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        s = crawler.settings
        spider.allowed_domains = sorted({host_of(s.get(k)) for k in cls.base_url_settings if s.get(k)})
        spider.refresh = s.getbool("HEADSHOT_REFRESH")
        spider.max_blocks = s.getint("HEADSHOT_MAX_BLOCKS")
        # No image is downloaded past the decode cap, as ingest reads no file past it (0: no cap).
        caps = [c for c in (s.getint("DOWNLOAD_MAXSIZE"), s.getint("HEADSHOT_MAX_BYTES")) if c > 0]
        spider.image_maxsize = min(caps, default=0)
        home = s.get("HEADSHOT_HOME")
        spider._check_jobdir(s.get("JOBDIR"))
        spider.known, spider.pages_done = set(), {}
        if home and not spider.refresh:
            spider._load_settled(Workspace.open(home))
        return spider

    def _load_settled(self, ws: Workspace) -> None:
        """What earlier crawls settled: images stored or opted out are not fetched again, and a
        page whose images are all settled is not fetched again either."""
        t = tables.read_table(ws, ScrapedImage, ["source", "source_id", "status", "extra"]).to_pylist()
        for r in t:
            if r["source"] != self.source:
                continue
            if r["status"] in ("ok", "opted_out"):
                self.known.add(r["source_id"])
            elif r["status"] == "page":
                self.pages_done[r["source_id"]] = json.loads(r["extra"] or "{}").get("images", [])

    def page_settled(self, url: str) -> bool:
        images = self.pages_done.get(page_key(url))
        return images is not None and all(sid in self.known for sid in images)

    def _check_jobdir(self, jobdir: str | None) -> None:
        """Scrapy saves its queue's bookkeeping only when a crawl closes: after a SIGKILL the
        queue files no longer match it and a resumed crawl silently loses requests. So a
        JOBDIR that was not closed cleanly loses its queue, and the crawl resumes from the
        workspace instead (settled pages and images are skipped)."""
        if not jobdir or not Path(jobdir).is_dir():
            return
        closed = Path(jobdir, CLOSED_MARKER)
        if not closed.exists():
            self.logger.warning("the last crawl in %s did not close cleanly: resuming from the workspace", jobdir)
            for name in ("requests.queue", "requests.seen"):
                stale = Path(jobdir, name)
                if stale.is_dir():
                    shutil.rmtree(stale)
                else:
                    stale.unlink(missing_ok=True)
        closed.unlink(missing_ok=True)

    def closed(self, reason: str) -> None:
        # Scrapy has saved the queue by now: mark the JOBDIR as consistent, and tell
        # `headshot crawl` when it is spent, so that the next crawl starts afresh.
        jobdir = self.settings.get("JOBDIR")
        if jobdir and Path(jobdir).is_dir():
            Path(jobdir, CLOSED_MARKER).write_text(reason)
            if reason == "finished":
                Path(jobdir, FINISHED_MARKER).write_text(reason)

    # --- pages ------------------------------------------------------------------------

    # Parsers by name: request meta must pickle into the JOBDIR queue, so it holds names, not functions.
    parsers: dict[str, Parser] = {}

    def page(self, url: str, parser: str, then: str | None = None, **kw: Any) -> scrapy.Request:
        """A request for a site page: `parsers[parser]` reads it, the method `then` turns the
        result into further requests (default: fetch its images)."""
        if parser not in self.parsers:
            raise KeyError(f"{type(self).__name__} has no parser {parser!r}")
        # Redirects are followed here, not by Scrapy, so that one leaving the site is a row.
        meta = {"parser": parser, "then": then, "dont_redirect": True, "handle_httpstatus_all": True,
                **kw.pop("meta", {})}
        return scrapy.Request(url, callback=self.on_page, errback=self.on_page_error, meta=meta, **kw)

    @staticmethod
    def _origin(response: scrapy.http.Response) -> str:
        """The URL the spider asked for: a failure is recorded under it, not under a redirect's target."""
        return response.meta.get("headshot_origin", response.url)

    def on_site(self, url: str) -> bool:
        host = host_of(url)
        return any(host == d or host.endswith("." + d) for d in self.allowed_domains)

    def _follow_redirect(self, response: scrapy.http.Response) -> Iterator:
        location = response.headers.get(b"Location", b"").decode("latin-1")
        target = response.urljoin(location) if location else ""
        hops = response.meta.get("headshot_redirects", 0)
        if not target or hops >= 5:
            yield self._page_failure(self._origin(response), "http_error", f"HTTP {response.status} redirect with "
                                     f"{'no Location' if not target else 'too many hops'}", response.status)
        elif not self.on_site(target):
            yield self._page_failure(self._origin(response), "offsite", f"redirected off the site to {target}",
                                     response.status)
        else:
            # The spider's own meta goes on with the hop; Scrapy's per-download bookkeeping and
            # the retry count (a new URL starts its retries afresh) do not.
            meta = {k: v for k, v in response.meta.items()
                    if not k.startswith("download_") and k not in ("headshot_retries", "headshot_retry_after")}
            meta["headshot_redirects"] = hops + 1
            meta["headshot_origin"] = self._origin(response)
            yield response.request.replace(url=target, meta=meta)

    def page_text(self, response: scrapy.http.Response) -> str:
        return response.text

    def on_page(self, response: scrapy.http.Response) -> Iterator:
        if 300 <= response.status < 400:
            yield from self._follow_redirect(response)
            return
        if response.status >= 400:
            yield from self.failed_page(response)
            return
        try:
            parsed = self.parsers[response.meta["parser"]](self.page_text(response), response.url)
        except PageError as exc:
            yield from self._page_error(self._origin(response), exc)
            return
        self.blocks_in_a_row = 0
        yield Fetched(replace(page_item(self.source, self._origin(response)),
                              extra={"images": [i.source_id for i in parsed.items]}),
                      "page", http_status=response.status, is_page=True)
        then = response.meta.get("then")
        yield from (getattr(self, then)(parsed, response) if then else self.follow_parsed(parsed, response))

    def explain_failure(self, response: scrapy.http.Response) -> PageError | None:
        """An error page often says more than its status (a CloudFront block page, MAL's 503
        page, an API's JSON error): the page's own parser names it, or None."""
        try:
            self.parsers[response.meta["parser"]](self.page_text(response), response.url)
        except PageError as exc:
            return exc
        except Exception:  # noqa: BLE001  (a body that cannot even be read: the status code says it)
            return None
        return None

    def failed_page(self, response: scrapy.http.Response) -> Iterator:
        """A page answered >= 400 once the middleware's retries were spent: one row that says why."""
        note = self._retry_note(response)
        explained = self.explain_failure(response)
        if isinstance(explained, (Blocked, Unavailable, NotFound)):
            yield from self._page_error(self._origin(response),
                                        type(explained)(f"HTTP {response.status}: {explained}{note}"))
            return
        status = "not_found" if response.status == 404 else "http_error"
        yield self._page_failure(self._origin(response), status, f"HTTP {response.status}{note}", response.status)

    def follow_parsed(self, parsed: Parsed, response: scrapy.http.Response) -> Iterator:
        yield from self.images(parsed.items, referer=response.url)

    @staticmethod
    def row_status(exc: PageError) -> str:
        """The row status for a page error: its kind, or the nearest parent kind a row may hold
        (a site's own subclasses, such as an expired API token, keep their parent's status)."""
        for cls in type(exc).__mro__:
            kind = getattr(cls, "kind", None)
            if kind in ScrapedImage.STATUSES:
                return kind
        return "page_error"

    def _page_error(self, url: str, exc: PageError) -> Iterator:
        yield self._page_failure(url, self.row_status(exc), str(exc))
        if isinstance(exc, Blocked):
            self.blocks_in_a_row += 1
            if self.blocks_in_a_row >= self.max_blocks:
                raise CloseSpider(f"blocked: {self.blocks_in_a_row} block pages in a row ({exc})")

    def _retry_note(self, response: scrapy.http.Response) -> str:
        ra = response.meta.get("headshot_retry_after")
        return f"; the server asked to retry after {ra:.0f} s, longer than this crawl waits" if ra else ""

    def _page_failure(self, url: str, status: str, reason: str, http_status: int | None = None) -> Fetched:
        self.logger.warning("page %s: %s: %s", url, status, reason)
        return Fetched(page_item(self.source, url), status, reason, http_status=http_status, is_page=True)

    def on_page_error(self, failure: Failure) -> Iterator:
        request = failure.request
        origin = request.meta.get("headshot_origin", request.url)  # where the crawl asked, not where it was sent
        if isinstance(failure.value, PageError):  # raised by a middleware (e.g. an API token that could not be had)
            yield from self._page_error(origin, failure.value)
            return
        yield self._page_failure(origin, *self._describe_failure(failure))

    # --- images -----------------------------------------------------------------------

    def images(self, items: list[ImageItem], referer: str, **kw: Any) -> Iterator[scrapy.Request]:
        for item in items:
            if item.source_id in self.known:
                self.crawler.stats.inc_value("headshot/skipped_known")
                continue
            if self.limit is not None and self.images_requested >= self.limit:
                return
            self.images_requested += 1
            yield self.image_request(item, referer, **kw)

    def image_request(self, item: ImageItem, referer: str, **kw: Any) -> scrapy.Request:
        headers = {"Referer": referer, **kw.pop("headers", {})}
        # Images go wherever the page points (CDNs), and first: signed URLs expire.
        return scrapy.Request(item.image_url, callback=self.on_image, errback=self.on_image_error, headers=headers,
                              priority=10, meta={"item": item, "allow_offsite": True, "handle_httpstatus_all": True,
                                                 "download_maxsize": self.image_maxsize}, **kw)

    def on_image(self, response: scrapy.http.Response) -> Iterator[Fetched]:
        item: ImageItem = response.meta["item"]
        robots = [v.decode("latin-1") for v in response.headers.getlist(b"X-Robots-Tag")]
        if response.status >= 400:
            yield Fetched(item, "http_error", f"HTTP {response.status}" + self._retry_note(response),
                          http_status=response.status, x_robots_tag=robots)
            return
        yield Fetched(item, "ok", body=response.body, http_status=response.status, x_robots_tag=robots)

    def on_image_error(self, failure: Failure) -> Iterator[Fetched]:
        status, reason = self._describe_failure(failure)
        yield Fetched(failure.request.meta["item"], status, reason)

    def _describe_failure(self, failure: Failure) -> tuple[str, str]:
        from scrapy.exceptions import IgnoreRequest

        exc = failure.value
        text = str(exc) or type(exc).__name__
        if "max size" in text or "maxsize" in text.lower() or "larger than" in text:
            return "too_large", f"the download is over the size cap ({text})"
        if isinstance(exc, IgnoreRequest) and "robots.txt" in text:
            return "robots_disallowed", "robots.txt disallows this URL"
        if isinstance(exc, IgnoreRequest) and "offsite" in text.lower():
            return "offsite", f"a redirect left the site ({text})"
        return "http_error", f"{type(exc).__name__}: {text}"
