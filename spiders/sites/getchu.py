"""getchu.com: URL builders and pure parsers for item pages, listings and the brand index.

Every URL is built on the `base` the spider was configured with (never on the host a link
names), so a crawl pointed at a local fixture server stays there. getchu serves EUC-JP with
JIS X 0213 extras; `decode_page` turns the bytes into text and the parsers take that text.
Item pages come in two layouts (2013-era and today's); both are read the same way.
"""

from __future__ import annotations

import codecs
import re
from urllib.parse import quote_plus, urljoin, urlsplit

from parsel import Selector

from spiders.parsing import Parsed, Truncated

from .getchu_common import (  # noqa: F401  (the shared names are part of this module's API)
    AGE_COOKIE,
    SOURCE,
    _base,
    _has_class,
    _origin,
    _product_id_of,
    _require_closing,
    _text,
    check_page,
    item_url,
)
from .getchu_item import parse_item  # noqa: F401

GETCHU_HOSTS = {"www.getchu.com", "getchu.com"}

_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\uff01-\uff5e]")
_EMPTY_MARKERS = ("該当する作品はありませんでした", "該当する商品はありません")


# ---------------------------------------------------------------- decoding and URLs

def _codec(declared: str | None) -> str | None:
    """Python's name for a charset, given alone or as a whole Content-Type value."""
    if not declared:
        return None
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", declared, re.I)
    try:
        return codecs.lookup(match.group(1) if match else declared.strip()).name
    except LookupError:
        return None


def decode_page(body: bytes, declared: str | None = None) -> str:
    """Page bytes to text; `declared` is the server's charset or its Content-Type header.

    getchu labels everything EUC-JP, but saved copies sometimes hold UTF-8 under that label.
    Japanese EUC-JP text is practically never valid UTF-8, so valid UTF-8 containing Japanese
    wins (as does any valid UTF-8 the server itself called UTF-8: a UTF-8 "©" is also a valid
    EUC-JP kanji). Any other declared charset is tried strictly after the EUC codecs."""
    declared = _codec(declared)
    try:
        text = body.decode("utf-8")
        if declared == "utf-8" or _JAPANESE.search(text):
            return text
    except UnicodeDecodeError:
        pass
    # euc_jis_2004 adds the JIS X 0213 / NEC characters (①, ㌢) that plain euc_jp rejects.
    for encoding in dict.fromkeys(["euc_jp", "euc_jis_2004", declared or "euc_jp"]):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    return body.decode("euc_jis_2004", errors="replace")


def month_url(base: str, year: int, month: int) -> str:
    return f"{_base(base)}/all/month_title.html?genre=pc_soft&gage=all&year={year:04d}&month={month}"


def brand_search_url(base: str, brand_id: int | str) -> str:
    return (f"{_base(base)}/php/search.phtml?search_brand_id={brand_id}"
            "&list_count=5000&genre=pc_soft&gc=gc")


def keyword_search_url(base: str, keyword: str) -> str:
    # The search only understands EUC-JP bytes; UTF-8 kana silently returns zero hits.
    try:
        raw = keyword.encode("euc_jp")
    except UnicodeEncodeError:
        raw = keyword.encode("euc_jis_2004")
    return f"{_base(base)}/php/search.phtml?search_keyword={quote_plus(raw)}&genre=pc_soft&gc=gc"


def normalise_item_link(href: str, base: str) -> str | None:
    """Any link to a product (`soft.phtml?id=N` in its relative, absolute and trailing-space
    forms, or `/item/N/`) as the canonical item URL on `base`; None for anything else."""
    host = urlsplit(href.strip()).hostname
    # Other getchu shops (dl.getchu.com...) number their products differently.
    if host and host not in GETCHU_HOSTS | {urlsplit(base).hostname}:
        return None
    product_id = _product_id_of(href)
    return item_url(base, product_id) if product_id else None


def _unique_items(hrefs: list[str], base: str) -> list[str]:
    links = (normalise_item_link(href, base) for href in hrefs)
    return list(dict.fromkeys(link for link in links if link))


# Titles are `a.black` in the date boxes; boxes before the month navigation are sidebar
# promotions. Either rule alone would do on the 2015 page; together they survive one drifting.
_MONTH_LINKS = (f"//div[{_has_class('category_pc_b')}]//a[{_has_class('black')}]/@href"
                f" | //div[{_has_class('charanum')}]/following::div[{_has_class('category_pc_b')}]//a/@href")


def _next_month(sel: Selector, url: str) -> str | None:
    # The month navigation holds "＜previous" and "next＞"; only the forward one is followed.
    for link in sel.css("div.charanum a"):
        if _text(link).endswith(("＞", ">")) and link.attrib.get("href"):
            return urljoin(url, link.attrib["href"].strip())
    return None


def parse_listing(text: str, url: str) -> Parsed:
    """A month list, keyword search or brand search: the item pages it lists, in page order.
    Recommendation and sidebar boxes also link products, so only the result blocks count."""
    check_page(text, url)
    _require_closing(text, url)
    sel = Selector(text=text)
    base = _origin(url)
    if sel.css("div.charanum") or "month_title.html" in url:
        follow = _unique_items(sel.xpath(_MONTH_LINKS).getall(), base)
        next_page = _next_month(sel, url)
        if not follow and not sel.css("div.charanum, div.category_pc_t2"):
            raise Truncated(f"{url}: month list without its navigation or date headings")
        info = {"kind": "month", "count": len(follow)} if follow else {"empty": True}
        return Parsed(follow=follow, next_page=next_page, info=info)
    follow = _unique_items(sel.css("ul.display > li a::attr(href)").getall(), base)
    if follow:
        return Parsed(follow=follow, info={"kind": "search", "count": len(follow)})
    if any(marker in text for marker in _EMPTY_MARKERS):
        return Parsed(info={"empty": True})
    raise Truncated(f"{url}: neither results (ul.display) nor an empty-result marker")


def parse_brand_list(text: str, url: str) -> Parsed:
    """The brand index: a product search URL per brand, with the brand names."""
    check_page(text, url)
    _require_closing(text, url)
    sel = Selector(text=text)
    brands: dict[str, str] = {}
    for link in sel.xpath("//a[contains(@href, 'search_brand_id=')]"):
        match = re.search(r"search_brand_id=(\d+)", link.attrib["href"])
        if match:
            brands.setdefault(match.group(1), _text(link))
    if not brands:
        raise Truncated(f"{url}: brand index without any brand link")
    base = _origin(url)
    return Parsed(follow=[brand_search_url(base, b) for b in brands],
                  info={"brands": [{"id": int(b), "name": n} for b, n in brands.items()]})

