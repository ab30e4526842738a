"""What getchu's listing parsers (getchu.py) and item parser (getchu_item.py) share: the
source name and age cookie, item URLs and product ids, the page checks (age gate, block pages,
cut pages) and the small text helpers. getchu.py re-exports its public names."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from parsel import Selector

from spiders.parsing import AgeGate, Blocked, Truncated

SOURCE = "getchu"
AGE_COOKIE = {"getchu_adalt_flag": "getchu.com"}

_CLOSING = re.compile(r"</html\s*>", re.I)
_BLOCK_TITLE = re.compile(
    r"403 Forbidden|Access Denied|Request blocked|could not be satisfied|Attention Required"
    r"|Just a moment|アクセスが(?:制限|拒否)", re.I)
_ITEM_PATH = re.compile(r"(?:^|/)item/(\d+)/?$")
_DATE = re.compile(r"(\d{4})\s*[/年.-]\s*(\d{1,2})\s*[/月.-]\s*(\d{1,2})")
_SPACES = re.compile(r"[ \t\r\n]+")


# ---------------------------------------------------------------- URLs

def _base(base: str) -> str:
    return base.rstrip("/")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def item_url(base: str, product_id: int | str) -> str:
    return f"{_base(base)}/item/{product_id}/?gc=gc"


def _product_id_of(href: str) -> str | None:
    parts = urlsplit(href.strip())
    if parts.path.endswith("soft.phtml"):
        ids = parse_qs(parts.query).get("id", [""])
        return ids[0].strip() if ids[0].strip().isdigit() else None
    match = _ITEM_PATH.search(parts.path)
    return match.group(1) if match else None


# ---------------------------------------------------------------- page checks

def check_page(text: str, url: str) -> None:
    """Raise for pages that are not what was asked for: the age gate and block pages.
    Only titles and headings are read, and never on a page with a product table, so a
    product named after these words is harmless."""
    if "attestation.html" in urlsplit(url).path:
        raise AgeGate(f"getchu age gate at {url}: send the {AGE_COOKIE} cookie and gc=gc")
    sel = Selector(text=text)
    if sel.css("#soft_table"):
        return
    title = " ".join(sel.css("title::text").getall()).strip()
    if "年齢認証" in title + " ".join(sel.css("h1 ::text").getall()):
        raise AgeGate(f"getchu age gate at {url}: send the {AGE_COOKIE} cookie and gc=gc")
    if _BLOCK_TITLE.search(title):
        raise Blocked(f"getchu block page at {url}: {title!r}")


def _require_closing(text: str, url: str) -> None:
    # Every complete page ends with </html>; a page cut in half must not parse as "fewer items".
    if not _CLOSING.search(text[-4096:]):
        raise Truncated(f"no closing </html> in {url}: page cut short")


# ---------------------------------------------------------------- small text helpers

def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip(" \u3000\xa0")


def _text(sel: Selector | None) -> str:
    return _clean("".join(sel.xpath(".//text()").getall())) if sel is not None else ""


def _has_class(name: str) -> str:
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


def _lines(sel: Selector) -> list[str]:
    """Text of an element split at its <br>s, blank lines dropped."""
    lines, current = [], []
    for node in sel.xpath(".//text() | .//br"):
        if isinstance(node.root, str):
            current.append(node.root)
        else:
            lines.append("".join(current))
            current = []
    lines.append("".join(current))
    return [c for c in (_clean(line) for line in lines) if c]


def _iso_date(text: str) -> str:
    match = _DATE.search(text)
    if not match:
        return ""
    year, month, day = (int(g) for g in match.groups())
    return f"{year:04d}-{month:02d}-{day:02d}"

