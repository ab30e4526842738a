"""DeviantArt: the backend RSS search feed and the OAuth2 API's /browse/tags, as pure parsers.

Two ways in, neither scraping HTML: the RSS feed needs no account and pages by 60 through
`atom:link rel="next"`; the API needs a client-credentials token and pages by `next_offset`.
Both name a deviation by the number at the end of its URL, so items from either mode share
`source_id`. Image URLs are signed (`?token=`) and are passed on untouched: changing them
turns the download into a 401/403.

Every deviation is opted out of AI datasets unless its artist opts in (robots meta and
X-Robots-Tag `noai`/`noimageai`); RSS and API carry no such flag, so `page_opted_out` is here
for the spider to check the deviation page with (the rule itself is media.optout's, the one
ingest and every image pipeline apply).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from email.utils import parsedate_to_datetime
from urllib.parse import quote_plus, urljoin

from parsel import Selector

from media.optout import header_opted_out, says_noai  # noqa: F401  (header_opted_out: part of this module's API)
from spiders.parsing import ImageItem, PageError, Parsed, Truncated

from .deviantart_api import api_error, browse_tags_url, parse_browse_tags, parse_token, token_url  # noqa: F401
from .deviantart_common import (  # noqa: F401  (the shared names are part of this module's API)
    API_MAX_LIMIT,
    BLOCK_WAIT,
    RATE_LIMIT_WAIT,
    SOURCE,
    TokenExpired,
    _collect,
    _html_error,
    _id_from_url,
    _int,
    _looks_like_html,
    is_block_page,
)

RSS_URL = "https://backend.deviantart.com/rss.xml"
API_URL = "https://www.deviantart.com/api/v1/oauth2"
NS = {
    "media": "http://search.yahoo.com/mrss/",
    "atom": "http://www.w3.org/2005/Atom",
    "creativeCommons": "http://backend.userland.com/creativeCommonsRssModule",
}


# ---------------------------------------------------------------- RSS search


def rss_search_url(rss_base: str, query: str, order: int | None = None, offset: int = 0) -> str:
    """The feed of a keyword search, in the parameter order DA's own next links use."""
    sep = "&" if "?" in rss_base else "?"
    url = f"{rss_base}{sep}type=deviation&q={quote_plus(query)}"
    if order is not None:
        url += f"&order={order}"
    if offset:
        url += f"&offset={offset}"
    return url


def parse_rss(text: str, url: str) -> Parsed:
    """One ImageItem per image deviation in a backend.deviantart.com/rss.xml page."""
    channel = _rss_channel(text)
    nodes = channel.findall("item")
    items, skipped = _collect(nodes, _rss_item)
    info = {"channel_title": (channel.findtext("title") or "").strip(),
            "items_in_feed": len(nodes), "skipped": skipped}
    return Parsed(items=items, next_page=_rss_next(channel, url), info=info)


def _rss_channel(text: str) -> ET.Element:
    """The <channel>, or the error that explains why this body is not a whole feed."""
    if not text.strip():
        raise Truncated("empty body where an RSS feed was expected")
    if is_block_page(text) or _looks_like_html(text):
        raise _html_error(text, "the RSS feed")
    if "</rss>" not in text[-4096:]:
        # A cut feed must not pass for a short one: the spider would stop paging early.
        raise Truncated(f"RSS feed cut short: no closing </rss> ({len(text)} characters received)")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise Truncated(f"RSS feed does not parse as XML (cut or mangled): {exc}") from None
    channel = root.find("channel")
    if root.tag != "rss" or channel is None:
        raise PageError(f"not an RSS feed: root element <{root.tag}> without <channel>")
    return channel


def _rss_item(node: ET.Element) -> tuple[ImageItem | None, str]:
    """The item, or None and why it was left out."""
    content = node.find("media:content", NS)
    if content is None or not content.get("url"):
        return None, "no_content"
    medium = content.get("medium", "")
    if medium != "image":
        return None, medium or "no_medium"
    link = (node.findtext("link") or "").strip()
    deviation_id = _id_from_url(link)
    if not deviation_id:
        return None, "no_id"
    artist, avatar = _rss_credits(node)
    category = node.find("media:category", NS)
    extra = {
        "deviation_id": int(deviation_id),
        "category": (category.text or "").strip() if category is not None else "",
        "category_label": category.get("label", "") if category is not None else "",
        "width": _int(content.get("width")),
        "height": _int(content.get("height")),
        "thumb_url": _largest_thumbnail(node),
        "avatar_url": avatar,
    }
    item = ImageItem(
        source=SOURCE,
        source_id=deviation_id,
        page_url=link,
        image_url=content.get("url"),
        title=(node.findtext("title") or node.findtext("media:title", "", NS)).strip(),
        artist=artist,
        tags=_keywords(node.findtext("media:keywords", "", NS)),
        rating=node.findtext("media:rating", "", NS).strip(),
        license=_rss_license(node),
        published_at=_rfc822_to_iso(node.findtext("pubDate", "")),
        extra=extra,
    )
    return item, ""


def _rss_credits(node: ET.Element) -> tuple[str, str]:
    """(username, avatar URL): DA sends both as role="author" credits, told apart by shape."""
    credits = [(c.text or "").strip() for c in node.findall("media:credit", NS)]
    names = [c for c in credits if c and not c.startswith(("http://", "https://"))]
    avatars = [c for c in credits if c.startswith(("http://", "https://"))]
    return (names[0] if names else ""), (avatars[0] if avatars else "")


def _keywords(text: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in text.split(",") if k.strip())


def _rss_license(node: ET.Element) -> str:
    cc = node.findtext("creativeCommons:license", "", NS).strip()
    return cc or node.findtext("media:copyright", "", NS).strip()


def _largest_thumbnail(node: ET.Element) -> str:
    best, best_area = "", -1
    for thumb in node.findall("media:thumbnail", NS):
        area = (_int(thumb.get("width")) or 0) * (_int(thumb.get("height")) or 0)
        if thumb.get("url") and area > best_area:
            best, best_area = thumb.get("url"), area
    return best


def _rfc822_to_iso(value: str) -> str:
    """pubDate with its offset kept. parsedate_to_datetime knows the US zone names (PST = -08:00,
    PDT = -07:00); an unknown name leaves the time naive, which is still what the feed said."""
    try:
        return parsedate_to_datetime(value.strip()).isoformat()
    except (TypeError, ValueError, IndexError):
        return ""


def _rss_next(channel: ET.Element, url: str) -> str | None:
    for link in channel.findall("atom:link", NS):
        if link.get("rel") == "next" and link.get("href"):
            return urljoin(url, link.get("href"))
    return None


# ---------------------------------------------------------------- AI opt-out


def page_opted_out(html: str) -> bool:
    """True when a deviation page carries <meta name="robots" content="...noai..."> (or noimageai)."""
    sel = Selector(text=html)
    metas = sel.xpath("//meta[translate(@name, 'ROBTS', 'robts')='robots']/@content").getall()
    return any(says_noai(content) for content in metas)
