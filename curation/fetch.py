"""Polite HTTP fetching of image URLs (for `headshot ingest list.txt`).

robots.txt obeyed, one request at a time per host with a delay between them, Retry-After
honoured, retries with backoff on 5xx and 429, a size cap read from the stream (not trusted
from Content-Length), an honest User-Agent, and X-Robots-Tag noai/noimageai treated as an
opt-out. Every outcome is a `FetchResult` with a status and a reason; nothing raises.

Against hostile or dead servers: a deadline per URL that a dripping server cannot stretch
(curation/fetch_http.py), a host that does not answer at all is given up on for the rest of
the run, redirects are followed to http(s) only (each hop waits its host's turn and obeys its
robots.txt, as any URL does), and `user:pass@` credentials are sent as
Basic auth on the first request only and never appear in what is returned.
"""

from __future__ import annotations

import base64
import errno
import http.client
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.robotparser
from dataclasses import asdict, dataclass, field
from typing import Callable

from manifests.tables import code_version
from media.optout import opted_out
from media.web import REDACTED, SECRET_PARAMS, parse_retry_after, recorded_url, redact_url  # noqa: F401

from .fetch_http import (ConnectTimedOut, Deadline, DeadlineExceeded, HTTPHandler, HTTPSHandler, host_key,
                         read_body)

ROBOTS_MAX_BYTES = 512 * 1024  # Google reads the first 500 KiB of a robots.txt


def default_user_agent() -> str:
    return f"headshot/{code_version().split('+')[0]} (face dataset builder; obeys robots.txt and noai)"


@dataclass(frozen=True)
class FetchConfig:
    user_agent: str = field(default_factory=default_user_agent)
    per_host_delay: float = 1.0  # seconds between two requests to one host
    retries: int = 3  # further attempts after the first, on 429, 5xx and network errors (a silent host: none)
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    timeout: float = 30.0  # seconds for one socket read
    connect_timeout: float = 10.0  # seconds to open a TCP connection
    deadline: float = 120.0  # seconds of network time for one URL: all attempts, redirects and body
    max_bytes: int = 64 * 1024 * 1024
    max_retry_after: float = 300.0  # a longer Retry-After gives up on the URL for this run
    obey_robots: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FetchResult:
    url: str  # as given, less any user:pass@
    status: str  # ok | http_error | opted_out | robots_disallowed | too_large | invalid
    reason: str = ""
    data: bytes | None = None
    final_url: str = ""
    http_status: int | None = None


def _basic_auth(parts: urllib.parse.SplitResult) -> str | None:
    if not parts.username and not parts.password:
        return None
    pair = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


class RedirectRefused(Exception):
    def __init__(self, url: str, code: int) -> None:
        super().__init__(url)
        self.url, self.code = url, code


class RedirectBlocked(Exception):
    """A redirect's target that this run will not ask: robots.txt of its host disallows it, or
    the host did not answer earlier."""

    def __init__(self, url: str, status: str, reason: str) -> None:
        super().__init__(reason)
        self.url, self.status, self.reason = url, status, reason


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, but to http(s) only (urllib's own follows ftp://), never with the
    credentials a Location may carry, and without reading the redirect's body, which could be
    endless (urllib reads it all into memory). Each hop is a request like any other: `on_hop`
    (the Fetcher's) waits the target host's turn and checks its robots.txt before it is sent."""

    def __init__(self, on_hop: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.on_hop = on_hop

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("location") or headers.get("uri")
        fp.close()  # connections are not reused: closing loses nothing
        if location is not None:
            target = urllib.parse.urljoin(req.full_url, location.strip())
            if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
                raise RedirectRefused(target, code)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, redact_url(newurl))
        if new is not None and self.on_hop is not None:
            self.on_hop(new.full_url)
        return new


def build_opener(cfg: FetchConfig, on_hop: Callable[[str], None] | None = None) -> urllib.request.OpenerDirector:
    """Only what a download needs: no ftp:, file: or data: handler that any path could reach."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), HTTPHandler(cfg.connect_timeout),
                    HTTPSHandler(cfg.connect_timeout), urllib.request.HTTPDefaultErrorHandler(), _HttpOnlyRedirects(on_hop),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    opener.addheaders = [("User-Agent", cfg.user_agent), ("Accept", "image/*,*/*;q=0.5")]
    return opener


_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}
_NETWORK_ERRORS = (DeadlineExceeded, urllib.error.URLError, OSError, http.client.HTTPException, ValueError)


class Fetcher:
    """Thread-safe: several hosts in parallel, one request at a time to each host."""

    def __init__(self, cfg: FetchConfig | None = None, sleep=time.sleep) -> None:
        self.cfg = cfg or FetchConfig()
        self._sleep = sleep
        self._guard = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._host_next: dict[str, float] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser | FetchResult] = {}
        self._dead: dict[str, str] = {}  # host:port -> why it did not answer, the first time in this run
        self._opener = build_opener(self.cfg, self._before_hop)

    def _host_lock(self, host: str) -> threading.Lock:
        with self._guard:
            return self._host_locks.setdefault(host, threading.Lock())

    def _wait_turn(self, host: str) -> None:
        """Sleep until `host`'s next turn, which this call takes: turns are `per_host_delay` apart
        whichever thread asks (a redirect's hop to a host runs under another host's lock)."""
        with self._guard:
            now = time.monotonic()
            start = max(now, self._host_next.get(host, 0.0))
            self._host_next[host] = start + self.cfg.per_host_delay
        if start > now:
            self._sleep(start - now)

    def _before_hop(self, url: str) -> None:
        """A redirect is about to ask `url`: its host's turn, its robots.txt and whether it
        answered earlier count as for any URL (a redirect cannot launder a disallowed path or
        skip the throttle)."""
        parts = urllib.parse.urlsplit(url)
        host = host_key(parts)
        if (why := self._dead_why(host)) is not None:
            raise RedirectBlocked(url, "http_error", f"redirected to host {host}, which did not answer earlier in "
                                  f"this run ({why}); not tried again")
        if self.cfg.obey_robots:
            origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"
            rp = self._robots_for(origin, host)
            if isinstance(rp, FetchResult):
                raise RedirectBlocked(url, rp.status, f"redirected to {recorded_url(url)}: {rp.reason}")
            if not rp.can_fetch(self.cfg.user_agent, url):
                raise RedirectBlocked(url, "robots_disallowed", f"redirected to {recorded_url(url)}, which robots.txt "
                                      f"of {host} disallows")
        self._wait_turn(host)

    def _dead_why(self, host: str) -> str | None:
        with self._guard:
            return self._dead.get(host)

    def _mark_dead(self, host: str, why: str) -> None:
        with self._guard:
            self._dead.setdefault(host, why)

    def fetch(self, url: str) -> FetchResult:
        safe = redact_url(url)
        try:
            parts = urllib.parse.urlsplit(url)
            host = host_key(parts)  # the port is checked here
        except ValueError as exc:
            return FetchResult(safe, "invalid", f"not a valid URL: {exc}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return FetchResult(safe, "invalid", f"not an http(s) URL: {recorded_url(safe)!r}")
        with self._host_lock(host):
            if (why := self._dead_why(host)) is not None:
                return FetchResult(safe, "http_error", f"host {host} did not answer earlier in this run ({why}); "
                                   "not tried again")
            if self.cfg.obey_robots:
                origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"
                rp = self._robots_for(origin, host)
                if isinstance(rp, FetchResult):
                    return FetchResult(safe, rp.status, rp.reason)
                if not rp.can_fetch(self.cfg.user_agent, safe):
                    return FetchResult(safe, "robots_disallowed", f"robots.txt of {host} disallows this URL")
            return self._fetch_with_retries(safe, _basic_auth(parts), host)

    def _robots_for(self, origin: str, host: str) -> urllib.robotparser.RobotFileParser | FetchResult:
        """A parser, or the result every URL of `origin` gets because robots.txt could not be read."""
        if origin in self._robots:
            return self._robots[origin]
        rp = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        self._wait_turn(host)
        dl, answered = Deadline(self.cfg.deadline), False
        dl.host = host
        result: urllib.robotparser.RobotFileParser | FetchResult = rp
        try:
            with dl.running(), self._opener.open(origin + "/robots.txt", timeout=self.cfg.timeout) as resp:
                answered = not dl.expired  # as in _attempt
                text = read_body(resp, ROBOTS_MAX_BYTES, dl)[:ROBOTS_MAX_BYTES]
                rp.parse(text.decode("utf-8", errors="replace").splitlines())
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (401, 403):
                rp.disallow_all = True
            elif 400 <= exc.code < 500:
                rp.allow_all = True  # no robots.txt: everything is allowed
            else:
                result = FetchResult(origin, "robots_disallowed", f"robots.txt answered HTTP {exc.code}; "
                                     f"not fetching from {origin} until it can be read")
        except RedirectRefused as exc:
            result = FetchResult(origin, "robots_disallowed", f"robots.txt redirected to {recorded_url(exc.url)}; "
                                 f"not fetching from {origin}")
        except _NETWORK_ERRORS as exc:
            reason, why = self._explain(exc, dl, answered)
            if why is not None:
                self._mark_dead(dl.host, why)
            if dl.host == host and why is not None:  # the host itself is dead: say so, as for any URL
                result = FetchResult(origin, "http_error", f"network error: host {host} did not answer when asked "
                                     f"for robots.txt ({why}); not tried again in this run")
            else:
                result = FetchResult(origin, "robots_disallowed", f"robots.txt could not be read ({reason}); "
                                     f"not fetching from {origin}")
        self._robots[origin] = result
        return result

    def _fetch_with_retries(self, url: str, auth: str | None, host: str) -> FetchResult:
        wait = self.cfg.backoff
        dl = Deadline(self.cfg.deadline)
        last = FetchResult(url, "http_error", "no attempt was made")
        for attempt in range(self.cfg.retries + 1):
            self._wait_turn(host)
            last, retry_after, final = self._attempt(url, auth, host, dl)
            if final or last.status != "http_error" or attempt == self.cfg.retries:
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

    def _attempt(self, url: str, auth: str | None, host: str, dl: Deadline
                 ) -> tuple[FetchResult, float | None, bool]:
        """(result, Retry-After, final: no further attempt may help)."""
        answered = False
        dl.host = host
        try:
            req = urllib.request.Request(url)
            if auth:  # unredirected: a redirect's target never gets it
                req.add_unredirected_header("Authorization", auth)
            with dl.running(), self._opener.open(req, timeout=self.cfg.timeout) as resp:
                # The timer's shutdown ends a dripped head early and http.client takes the end
                # of the stream for the end of the headers: past the deadline it is no answer.
                answered = not dl.expired
                return self._read(url, resp, dl), None, False
        except RedirectRefused as exc:
            return FetchResult(url, "invalid", f"redirected to {recorded_url(exc.url)}; only http(s) is followed",
                               http_status=exc.code), None, True
        except RedirectBlocked as exc:
            return FetchResult(url, exc.status, exc.reason), None, True
        except urllib.error.HTTPError as exc:
            exc.close()
            retry_after = parse_retry_after(exc.headers.get("Retry-After")) if exc.headers else None
            return FetchResult(url, "http_error", f"HTTP {exc.code} {exc.reason}", http_status=exc.code), retry_after, False
        except _NETWORK_ERRORS as exc:
            reason, why = self._explain(exc, dl, answered)
            if why is not None:
                self._mark_dead(dl.host, why)
            return FetchResult(url, "http_error", reason), None, why is not None or dl.passed()

    def _read(self, url: str, resp, dl: Deadline) -> FetchResult:
        final = recorded_url(resp.geturl())
        if opted_out(resp.headers):
            return FetchResult(url, "opted_out", "the server marks this image noai/noimageai (X-Robots-Tag)",
                               final_url=final, http_status=resp.status)
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.cfg.max_bytes:
            return FetchResult(url, "too_large", f"Content-Length {int(declared):,} is over the "
                               f"{self.cfg.max_bytes:,}-byte cap", final_url=final, http_status=resp.status)
        data = read_body(resp, self.cfg.max_bytes, dl)
        if len(data) > self.cfg.max_bytes:
            return FetchResult(url, "too_large", f"the body is over the {self.cfg.max_bytes:,}-byte cap",
                               final_url=final, http_status=resp.status)
        return FetchResult(url, "ok", "", data, final, resp.status)

    def _explain(self, exc: Exception, dl: Deadline, answered: bool) -> tuple[str, str | None]:
        """The reason for a failed attempt, and, when the host sent no HTTP answer at all, why
        it is given up on for the rest of the run (else None: a retry may help)."""
        if isinstance(exc, DeadlineExceeded) or dl.passed():
            took = f"the download took longer than the {dl.seconds:g} s deadline"
            if answered:
                return f"{took} ({dl.received:,} bytes of the body received)", None
            return f"{took} (its status line and headers had not all arrived)", \
                f"no complete answer within the {dl.seconds:g} s deadline"
        err = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        why = None if answered else self._no_answer(err)
        if why is not None:
            return f"network error: host {dl.host} did not answer ({why}); not tried again in this run", why
        return f"network error: {err}", None

    def _no_answer(self, err) -> str | None:
        if isinstance(err, ConnectTimedOut):
            return str(err)
        if isinstance(err, TimeoutError):
            return f"timed out after {self.cfg.timeout:g} s waiting for an answer"
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        if isinstance(err, socket.gaierror):
            return f"the name does not resolve: {err.strerror}"
        if isinstance(err, OSError) and err.errno in _UNREACHABLE:
            return f"unreachable: {err.strerror}"
        return None
