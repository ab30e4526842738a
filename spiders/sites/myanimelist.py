"""MyAnimeList characters: URL builders and pure parsers for Jikan v4 JSON (the default mode)
and, re-exported from `myanimelist_html`, for MAL's own pages (the fallback mode).

Jikan answers errors with a JSON body (`{"status": 404, "type": ..., "message": ...}`); those
raise the matching `PageError`, and so does a body that is not whole JSON. Every URL is built
on the base the spider was configured with, so tests can point a crawl at 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from spiders.parsing import ImageItem, NotFound, PageError, Parsed, Truncated, Unavailable
from spiders.sites.myanimelist_html import (  # noqa: F401  (re-exported: the spider imports this module)
    MAL_SITE, SOURCE, full_size_image_url, html_anime_characters_url, html_character_pictures_url,
    html_character_search_url, html_top_characters_url, image_stem, is_placeholder, main_title,
    parse_html_anime_characters, parse_html_character, parse_html_character_list, parse_html_pictures,
    portrait_item, raise_if_blocked,
)

RATE_LIMIT_WAIT = 60.0  # Jikan allows 60 requests a minute; a 429 means that minute is used up

_LISTED = ("mal_id", "name", "name_kanji", "favorites", "image_url", "role")  # role: anime casts only
_JIKAN_BASE = re.compile(r"^(.*?)/(?:top|characters|anime)(?=[/?#]|$)")


# ---------------------------------------------------------------- URLs

def _base(jikan_base: str) -> str:
    return jikan_base.rstrip("/")


def jikan_top_characters_url(jikan_base: str, page: int) -> str:
    return f"{_base(jikan_base)}/top/characters?page={page}"


def jikan_anime_characters_url(jikan_base: str, anime_id: int | str) -> str:
    return f"{_base(jikan_base)}/anime/{anime_id}/characters"


def jikan_character_search_url(jikan_base: str, query: str, page: int) -> str:
    params = {"q": query, "page": page, "order_by": "favorites", "sort": "desc"}
    return f"{_base(jikan_base)}/characters?{urlencode(params)}"


def jikan_character_pictures_url(jikan_base: str, char_id: int | str) -> str:
    return f"{_base(jikan_base)}/characters/{char_id}/pictures"


def jikan_character_url(jikan_base: str, char_id: int | str) -> str:
    return f"{_base(jikan_base)}/characters/{char_id}/full"


def _jikan_base_of(url: str) -> str:
    """The configured base a Jikan URL was built on: everything before its endpoint."""
    m = _JIKAN_BASE.match(url)
    if not m:
        raise ValueError(f"not a Jikan characters URL: {url}")
    return m.group(1)


def _with_page(url: str, page: int) -> str:
    p = urlsplit(url)
    params = dict(parse_qsl(p.query, keep_blank_values=True))
    params["page"] = str(page)  # in place: the next page reads like the first
    return urlunsplit((p.scheme, p.netloc, p.path, urlencode(params), ""))


def _page_number(url: str) -> int:
    page = dict(parse_qsl(urlsplit(url).query)).get("page", "1")
    return int(page) if page.isdigit() else 1


# ---------------------------------------------------------------- bodies and errors

def _body(text: str) -> dict[str, Any]:
    """The decoded answer, once it is known to be a whole Jikan answer with data."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise_if_blocked(text)  # a proxy's bot wall is HTML, not JSON
        raise Truncated(f"Jikan answer is not whole JSON ({exc})") from None
    if not isinstance(body, dict):
        raise Truncated(f"Jikan answer is a JSON {type(body).__name__}, not an object")
    if "data" not in body:
        if "status" in body:
            _raise_error(body)
        raise Truncated("Jikan answer without data")
    return body


def _raise_error(body: dict[str, Any]) -> None:
    status = int(body["status"]) if str(body.get("status")).isdigit() else 0
    kind = body.get("type") or ""
    said = f"Jikan {status} {kind}: {body.get('message') or body.get('error') or ''}".strip(": ")
    if status == 404:
        raise NotFound(said)
    if status == 429 or kind == "RateLimitException":
        raise Unavailable(f"rate limited; {said}", retry_after=RATE_LIMIT_WAIT)
    if status >= 500:  # 500 ParserException (MAL's layout moved), 503 maintenance
        raise Unavailable(said)
    raise PageError(said)


def _data(body: dict[str, Any], shape: type) -> Any:
    data = body["data"]
    if not isinstance(data, shape):
        raise Truncated(f"Jikan data is a {type(data).__name__}, expected a {shape.__name__}")
    return data


def _jpg(images: Any) -> str | None:
    """`images.jpg.image_url`, the one size Jikan gives for every character picture."""
    jpg = images.get("jpg") if isinstance(images, dict) else None
    return jpg.get("image_url") if isinstance(jpg, dict) else None


def _record(entry: dict[str, Any]) -> dict[str, Any]:
    """A character as the parsers share it. The anime cast nests the character under
    "character" beside its role and favourites; lists and lookups give it bare."""
    c = entry["character"] if isinstance(entry.get("character"), dict) else entry
    if not isinstance(c.get("mal_id"), int):
        raise Truncated("Jikan character without a mal_id")
    image = _jpg(c.get("images"))
    record = {"mal_id": c["mal_id"], "url": c.get("url") or f"{MAL_SITE}/character/{c['mal_id']}",
              "name": c.get("name") or "", "name_kanji": c.get("name_kanji"),
              "nicknames": list(c.get("nicknames") or []),
              "favorites": c.get("favorites", entry.get("favorites")),
              "image_url": None if is_placeholder(image) else full_size_image_url(image)}
    if entry.get("role"):
        record["role"] = entry["role"]
    return record


# ---------------------------------------------------------------- parsers

def parse_jikan_character_list(text: str, url: str) -> Parsed:
    """/top/characters, /characters?q= and /anime/{id}/characters: each character's main
    image, its pictures to follow, and the next page while Jikan says there is one."""
    body = _body(text)
    chars = [_record(e) for e in _data(body, list) if isinstance(e, dict)]
    base = _jikan_base_of(url)
    pagination = body.get("pagination") or {}
    has_next = bool(pagination.get("has_next_page"))
    listed = [{k: c[k] for k in _LISTED if k in c} for c in chars]
    return Parsed(items=[i for c in chars for i in portrait_item(c)],
                  follow=list(dict.fromkeys(jikan_character_pictures_url(base, c["mal_id"]) for c in chars)),
                  next_page=_with_page(url, _page_number(url) + 1) if has_next else None,
                  info={"characters": listed, "has_next_page": has_next,
                        "last_visible_page": pagination.get("last_visible_page")})


def parse_jikan_pictures(text: str, url: str, *, character: str = "", page_url: str = "") -> Parsed:
    """/characters/{id}/pictures: every picture, full size. The answer names no character,
    so the spider passes the name (and the character's page) it learnt from the list."""
    pictures = _data(_body(text), list)
    m = re.search(r"/characters/(\d+)/pictures", url)
    if not m:
        raise ValueError(f"not a Jikan character pictures URL: {url}")
    mal_id = int(m.group(1))
    items: dict[str, ImageItem] = {}
    for picture in pictures:
        image = _jpg(picture)
        if is_placeholder(image) or full_size_image_url(image) in items:
            continue
        image = full_size_image_url(image)
        items[image] = ImageItem(source=SOURCE, source_id=f"character/{mal_id}/{image_stem(image)}",
                                 page_url=page_url or f"{MAL_SITE}/character/{mal_id}", image_url=image,
                                 character=character, extra={"mal_id": mal_id})
    return Parsed(items=list(items.values()), info={"mal_id": mal_id, "pictures": len(items)})


def parse_jikan_character(text: str, url: str) -> Parsed:
    """/characters/{id} or /characters/{id}/full: the character's fields and main image;
    /full adds the anime it appears in, whose Main entry becomes the item's title."""
    data = _data(_body(text), dict)
    c = _record(data)
    anime = [{"mal_id": a["anime"].get("mal_id"), "title": a["anime"].get("title") or "", "role": a.get("role")}
             for a in data.get("anime") or [] if isinstance(a, dict) and isinstance(a.get("anime"), dict)]
    if anime:
        c["anime"] = [a["title"] for a in anime]
    return Parsed(items=portrait_item(c, title=main_title(anime)),
                  follow=[jikan_character_pictures_url(_jikan_base_of(url), c["mal_id"])],
                  info={**c, "about": data.get("about"), "anime": anime})
