"""Polite HTTP fetching of image URLs (for `headshot ingest list.txt`).

robots.txt obeyed, one request at a time per host with a delay between them, Retry-After
honoured, retries with backoff on 5xx and 429, a size cap read from the stream (not trusted
from Content-Length), an honest User-Agent, and X-Robots-Tag noai/noimageai treated as an
opt-out. Every outcome is a `FetchResult` with a status and a reason; nothing raises.
"""

from __future__ import annotations

import email.utils
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.robotparser
from dataclasses import asdict, dataclass, field

from manifests.tables import code_version


def default_user_agent() -> str:
    return f"headshot/{code_version().split('+')[0]} (face dataset builder; obeys robots.txt and noai)"


@dataclass(frozen=True)
class FetchConfig:
    user_agent: str = field(default_factory=default_user_agent)
    per_host_delay: float = 1.0  # seconds between two requests to one host
    retries: int = 3  # further attempts after the first, on 429, 5xx and network errors
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    timeout: float = 30.0
    max_bytes: int = 64 * 1024 * 1024
    max_retry_after: float = 300.0  # a longer Retry-After gives up on the URL for this run
    obey_robots: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FetchResult:
    url: str
    status: str  # ok | http_error | opted_out | robots_disallowed | too_large | invalid
    reason: str = ""
    data: bytes | None = None
    final_url: str = ""
    http_status: int | None = None


def opted_out(headers) -> bool:
    """X-Robots-Tag: noai / noimageai, in any of its forms (`noai`, `googlebot: noai, noimageai`)."""
    for value in headers.get_all("X-Robots-Tag") or []:
        tokens = {t.strip().lower() for part in value.split(",") for t in part.split(":")}
        if tokens & {"noai", "noimageai"}:
            return True
    return False


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Fetcher:
    """Thread-safe: several hosts in parallel, one request at a time to each host."""

    def __init__(self, cfg: FetchConfig | None = None, sleep=time.sleep) -> None:
        self.cfg = cfg or FetchConfig()
        self._sleep = sleep
        self._guard = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._host_next: dict[str, float] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser | str] = {}
        self._opener = urllib.request.build_opener()
        self._opener.addheaders = [("User-Agent", self.cfg.user_agent), ("Accept", "image/*,*/*;q=0.5")]

    def _host_lock(self, host: str) -> threading.Lock:
        with self._guard:
            return self._host_locks.setdefault(host, threading.Lock())

    def _wait_turn(self, host: str) -> None:
        delay = self._host_next.get(host, 0.0) - time.monotonic()
        if delay > 0:
            self._sleep(delay)
        self._host_next[host] = time.monotonic() + self.cfg.per_host_delay

    def _robots_for(self, origin: str, host: str) -> urllib.robotparser.RobotFileParser | str:
        """A parser, or a string saying why robots.txt could not be read (then we do not fetch)."""
        if origin in self._robots:
            return self._robots[origin]
        rp = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        self._wait_turn(host)
        try:
            with self._opener.open(origin + "/robots.txt", timeout=self.cfg.timeout) as resp:
                rp.parse(resp.read(512 * 1024).decode("utf-8", errors="replace").splitlines())
            result: urllib.robotparser.RobotFileParser | str = rp
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                rp.disallow_all = True
                result = rp
            elif 400 <= exc.code < 500:
                rp.allow_all = True  # no robots.txt: everything is allowed
                result = rp
            else:
                result = f"robots.txt answered HTTP {exc.code}; not fetching from {origin} until it can be read"
        except (urllib.error.URLError, OSError) as exc:
            result = f"robots.txt could not be read ({exc}); not fetching from {origin}"
        self._robots[origin] = result
        return result

    def fetch(self, url: str) -> FetchResult:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return FetchResult(url, "invalid", f"not an http(s) URL: {url!r}")
        host = parts.netloc.lower()
        with self._host_lock(host):
            if self.cfg.obey_robots:
                rp = self._robots_for(f"{parts.scheme}://{parts.netloc}", host)
                if isinstance(rp, str):
                    return FetchResult(url, "robots_disallowed", rp)
                if not rp.can_fetch(self.cfg.user_agent, url):
                    return FetchResult(url, "robots_disallowed", f"robots.txt of {host} disallows this URL")
            return self._fetch_with_retries(url, host)

    def _fetch_with_retries(self, url: str, host: str) -> FetchResult:
        wait = self.cfg.backoff
        last = FetchResult(url, "http_error", "no attempt was made")
        for attempt in range(self.cfg.retries + 1):
            self._wait_turn(host)
            last, retry_after = self._attempt(url)
            if last.status != "http_error" or attempt == self.cfg.retries:
                return last
            retryable = last.http_status is None or last.http_status == 429 or last.http_status >= 500
            if not retryable:
                return last
            if retry_after is not None:
                if retry_after > self.cfg.max_retry_after:
                    return FetchResult(url, "http_error", f"{last.reason}; the server asked to retry after "
                                       f"{retry_after:.0f} s, more than the {self.cfg.max_retry_after:.0f} s this run waits",
                                       http_status=last.http_status)
                self._sleep(retry_after)
            else:
                self._sleep(wait)
                wait *= 2
        return last

    def _attempt(self, url: str) -> tuple[FetchResult, float | None]:
        try:
            with self._opener.open(url, timeout=self.cfg.timeout) as resp:
                final = resp.geturl()
                if opted_out(resp.headers):
                    return FetchResult(url, "opted_out", "the server marks this image noai/noimageai (X-Robots-Tag)",
                                       final_url=final, http_status=resp.status), None
                declared = resp.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.cfg.max_bytes:
                    return FetchResult(url, "too_large", f"Content-Length {int(declared):,} is over the "
                                       f"{self.cfg.max_bytes:,}-byte cap", final_url=final, http_status=resp.status), None
                data = resp.read(self.cfg.max_bytes + 1)
                if len(data) > self.cfg.max_bytes:
                    return FetchResult(url, "too_large", f"the body is over the {self.cfg.max_bytes:,}-byte cap",
                                       final_url=final, http_status=resp.status), None
                return FetchResult(url, "ok", "", data, final, resp.status), None
        except urllib.error.HTTPError as exc:
            retry_after = parse_retry_after(exc.headers.get("Retry-After")) if exc.headers else None
            return FetchResult(url, "http_error", f"HTTP {exc.code} {exc.reason}", http_status=exc.code), retry_after
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return FetchResult(url, "http_error", f"network error: {reason}"), None
