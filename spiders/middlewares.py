"""Downloader middleware: retries that respect the site.

Retry-After (seconds or an HTTP date) pauses every request to that host, not just the one
that got it; without it, 429 and 5xx back off exponentially. A Retry-After longer than
HEADSHOT_MAX_RETRY_AFTER gives up on the request, which the spider then records as a row.
"""

from __future__ import annotations

import asyncio
import logging
import time

from scrapy.downloadermiddlewares.offsite import OffsiteMiddleware
from scrapy.http import Request, Response
from scrapy.utils.httpobj import urlparse_cached

from media.web import parse_retry_after

log = logging.getLogger(__name__)


class PoliteRetryMiddleware:
    def __init__(self, settings) -> None:
        self.times = settings.getint("HEADSHOT_RETRY_TIMES")
        self.codes = set(settings.getlist("HEADSHOT_RETRY_CODES"))
        self.codes = {int(c) for c in self.codes}
        self.backoff = settings.getfloat("HEADSHOT_BACKOFF")
        self.max_wait = settings.getfloat("HEADSHOT_MAX_RETRY_AFTER")
        self.not_before: dict[str, float] = {}  # host -> monotonic time it may be asked again

        self.next_free: dict[str, float] = {}  # netloc -> when its next request may start

    @classmethod
    def from_crawler(cls, crawler):
        o = cls(crawler.settings)
        o.stats = crawler.stats
        o.crawler = crawler
        return o

    async def process_request(self, request: Request) -> None:
        """Wait for the host's Retry-After, and for the spider's minimum interval for that
        host (`host_intervals`: netloc -> seconds, e.g. Jikan's 60 requests a minute)."""
        host = urlparse_cached(request).netloc
        now = time.monotonic()
        start = max(now, self.not_before.get(host, 0.0))
        interval = getattr(self.crawler.spider, "host_intervals", {}).get(host)
        if interval:
            start = max(start, self.next_free.get(host, 0.0))
            self.next_free[host] = start + interval  # reserved now, so concurrent requests queue up
        if start > now:
            await asyncio.sleep(start - now)
        return None

    def process_response(self, request: Request, response: Response):
        if response.status not in self.codes or request.meta.get("dont_retry"):
            return response
        tries = request.meta.get("headshot_retries", 0)
        if tries >= self.times:
            self.stats.inc_value("headshot/retry/gave_up")
            return response
        header = response.headers.get(b"Retry-After")
        retry_after = parse_retry_after(header.decode("latin-1")) if header else None
        if retry_after is not None and retry_after > self.max_wait:
            self.stats.inc_value("headshot/retry/too_long")
            response.meta["headshot_retry_after"] = retry_after
            return response
        wait = retry_after if retry_after is not None else self.backoff * (2 ** tries)
        host = urlparse_cached(request).netloc
        self.not_before[host] = max(self.not_before.get(host, 0.0), time.monotonic() + wait)
        log.info("HTTP %s from %s: retry %d in %.1f s", response.status, request.url, tries + 1, wait)
        self.stats.inc_value(f"headshot/retry/{response.status}")
        retry = request.replace(dont_filter=True)
        retry.meta["headshot_retries"] = tries + 1
        return retry


class RobotsTxtOffsiteMiddleware(OffsiteMiddleware):
    """Scrapy's offsite filter, except for robots.txt. Images are fetched from CDN hosts off
    the site (allow_offsite), but the robots.txt request Scrapy makes for such a host carries
    no allow_offsite, so the stock filter would drop it and the CDN's rules would never be
    read. Only hosts that passed this filter get a robots.txt request, so letting those
    through is safe."""

    def process_request(self, request: Request, spider=None) -> None:
        if request.meta.get("dont_obey_robotstxt") and urlparse_cached(request).path == "/robots.txt":
            return None
        return super().process_request(request)
