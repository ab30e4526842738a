"""What DeviantArt's RSS and API parsers share: the source name, the waits, the API error that
asks for a new token, and the checks for pages that are not what was asked for (CloudFront's
block page, a login redirect). deviantart.py (RSS) and deviantart_api.py (API) both import it;
deviantart.py re-exports its public names."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from spiders.parsing import Blocked, ImageItem, PageError, Unavailable

SOURCE = "deviantart"
API_MAX_LIMIT = 50

# CloudFront blocks by IP reputation and bursts; gallery-dl waits five minutes before trying again.
BLOCK_WAIT = 300.0
# A 429 body carries no wait of its own; DA asks for exponential backoff, so start at a minute.
RATE_LIMIT_WAIT = 60.0

_ID_AT_END = re.compile(r"-(\d+)/?$")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


class TokenExpired(Unavailable):
    """401 invalid_token: get a fresh token and retry the request once. An Unavailable, so a
    spider that does not special-case it still backs off rather than recording an empty page."""

    kind = "token_expired"


# ---------------------------------------------------------------- shared checks


def is_block_page(text: str) -> bool:
    """CloudFront's 403 "Request blocked." page, which DA serves for RSS, API and pages alike."""
    # Only the head is read: a feed item may well mention CloudFront in its (escaped) text.
    head = text[:8192].lower()
    return "<html" in head and "cloudfront" in head and "request blocked" in head


def _looks_like_html(text: str) -> bool:
    head = text.lstrip()[:4096].lower()
    return "<rss" not in head and ("<html" in head or "<!doctype html" in head)


def _page_title(text: str) -> str:
    m = _TITLE.search(text[:16384])
    return " ".join(m.group(1).split())[:100] if m else ""


def _block_error(where: str) -> Blocked:
    return Blocked(f"CloudFront 'Request blocked' page instead of {where}: DeviantArt blocks this IP "
                   f"(reputation or request bursts); wait at least {BLOCK_WAIT:.0f} s before retrying, "
                   "and slow down", retry_after=BLOCK_WAIT)


def _html_error(text: str, where: str) -> PageError:
    if is_block_page(text):
        return _block_error(where)
    # A login redirect or an error page: not ours to parse, and retrying at once will not help.
    return Blocked(f"HTML page instead of {where} (title: {_page_title(text)!r})")


def _id_from_url(url: str) -> str:
    m = _ID_AT_END.search(url.strip())
    return m.group(1) if m else ""


def _collect(entries: list, to_item) -> tuple[list[ImageItem], dict[str, int]]:
    """Items, and how many entries were left out for each reason (so a page of skips is visible)."""
    items, skipped = [], Counter()
    for entry in entries:
        item, reason = to_item(entry)
        if item is None:
            skipped[reason] += 1
        else:
            items.append(item)
    return items, dict(skipped)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
