"""MyAnimeList's own pages (the fallback mode) and its image CDN.

MAL shows characters as thumbnails everywhere but their own pictures page; every image URL
is normalised to the one full size a character image has. Page links are moved onto the
host the crawl was configured with, so a crawl pointed at a local fixture server stays
there; `page_url` in items keeps the canonical myanimelist.net address for the dataset.
Layouts from 2018 (`div.normal_header`, `src`, `/pictures`) and 2026 (`h2.normal_header`,
lazy `data-src`, `/pics`) are both read. Use it through `spiders.sites.myanimelist`.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from parsel import Selector

from spiders.parsing import Blocked, ImageItem, Parsed, Truncated, Unavailable

SOURCE = "myanimelist"
MAL_SITE = "https://myanimelist.net"
PAGE_HOSTS = {"myanimelist.net", "www.myanimelist.net"}
CDN_HOSTS = {"cdn.myanimelist.net", "myanimelist.cdn-dena.com"}  # today's host, and 2018's

_RESIZED = re.compile(r"^/r/\d+x\d+(?=/)")
_SIGNATURE = re.compile(r"^s=[0-9a-fA-F]*$")
_ENTITY = re.compile(r"/(character|anime|manga|people)/(\d+)(?:/([^/?#]+))?")
_FAVORITES = re.compile(r"Member Favorites:\s*([\d,]+)")
_QUOTED = re.compile(r'"([^"]+)"')
_SPACES = re.compile(r"\s+")
# Bot walls put in front of MAL over the years (Incapsula until ~2019, Cloudflare). Every
# real MAL page loads Google's recaptcha script, so "captcha" alone proves nothing.
_BLOCK_MARKERS = ("_Incapsula_Resource", "Incapsula incident ID", "cf-browser-verification",
                  "window._cf_chl_opt", "<title>Just a moment...</title>", "Attention Required! | Cloudflare")
_NO_PICTURES = re.compile(r"\bno pictures\b", re.I)  # wording assumed: no capture of an empty gallery
_NO_CHARACTERS = re.compile(r"\bno characters\b", re.I)
_CLASS = 'contains(concat(" ", normalize-space(@class), " "), " {} ")'
_NORMAL_HEADER = "//*[" + _CLASS.format("normal_header") + "]"


# ---------------------------------------------------------------- images

def full_size_image_url(url: str) -> str:
    """The full-size form of a MAL image URL: no `/r/WxH` resize prefix, no `?s=` signature,
    no size letter after the number (`t` thumbnail, `v` small people picture)."""
    parts = urlsplit(url)
    path = _RESIZED.sub("", parts.path)
    query = "" if _SIGNATURE.match(parts.query) else parts.query
    if (parts.hostname or "") in CDN_HOSTS:
        # Characters come in one size, so their `l` is noise; anime and manga covers have a
        # real large `l` version, which is the full size there and must stay.
        letters = "tvl" if path.startswith("/images/characters/") else "tv"
        path = re.sub(rf"(/\d+)[{letters}](\.\w+)$", r"\1\2", path)
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


def is_placeholder(url: str | None) -> bool:
    """MAL's "no picture" question mark (questionmark_23.gif and its resized forms)."""
    return not url or PurePosixPath(urlsplit(url).path).name.startswith("questionmark")


def image_stem(url: str) -> str:
    return PurePosixPath(urlsplit(url).path).stem


def portrait_item(c: dict[str, Any], title: str = "") -> list[ImageItem]:
    """The character's main image as an item (none for a placeholder). `c` is a character
    record as the parsers build it: mal_id, url, name, name_kanji, nicknames, favorites,
    image_url, and where known role and anime (titles)."""
    if is_placeholder(c.get("image_url")):
        return []
    extra = {k: c.get(k) for k in ("mal_id", "name_kanji", "nicknames", "favorites")}
    extra.update({k: c[k] for k in ("role", "anime") if c.get(k)})
    return [ImageItem(source=SOURCE, source_id=f"character/{c['mal_id']}/{image_stem(c['image_url'])}",
                      page_url=c["url"], image_url=c["image_url"], title=title, character=c["name"],
                      extra=extra)]


def main_title(anime: list[dict[str, Any]]) -> str:
    """The anime a character belongs to: the first where they are Main (MAL lists the
    earliest entry first, usually the original series), else the first at all."""
    main = [a for a in anime if (a.get("role") or "").lower() == "main"]
    return (main or anime or [{}])[0].get("title") or ""


# ---------------------------------------------------------------- URLs

def _base(url: str) -> str:
    return url.rstrip("/")


def html_top_characters_url(mal_base: str, page: int) -> str:
    return f"{_base(mal_base)}/character.php?limit={50 * (page - 1)}"


def html_character_search_url(mal_base: str, query: str, page: int) -> str:
    params = {"q": query, **({"show": 50 * (page - 1)} if page > 1 else {})}
    return f"{_base(mal_base)}/character.php?{urlencode(params)}"


def html_character_pictures_url(mal_base: str, char_id: int | str, slug: str = "x") -> str:
    return f"{_base(mal_base)}/character/{char_id}/{slug}/pics"  # MAL ignores the slug


def html_anime_characters_url(mal_base: str, anime_id: int | str, slug: str = "x") -> str:
    return f"{_base(mal_base)}/anime/{anime_id}/{slug}/characters"


def _origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


def _on_crawl_host(href: str, url: str) -> str:
    """A link found on page `url`, absolute and moved onto `url`'s host if it names MAL."""
    p = urlsplit(urljoin(url, href))
    if (p.hostname or "") not in PAGE_HOSTS:
        return p.geturl()
    o = urlsplit(url)
    return urlunsplit((o.scheme, o.netloc, p.path, p.query, ""))


def _entity(url: str, kind: str | None = None) -> tuple[str, int, str] | None:
    """(kind, id, slug) of a MAL page URL such as /character/1/Spike_Spiegel/pics."""
    for m in _ENTITY.finditer(urlsplit(url).path):
        if kind in (None, m.group(1)):
            return m.group(1), int(m.group(2)), m.group(3) or ""
    return None


# ---------------------------------------------------------------- page checks

def raise_if_blocked(text: str) -> None:
    head = text[:20000]
    for marker in _BLOCK_MARKERS:
        if marker in head:
            raise Blocked(f"bot wall in front of MyAnimeList ({marker!r})")


def _page(text: str) -> Selector:
    """The page as a selector, once it is known to be a whole MAL page."""
    raise_if_blocked(text)
    sel = Selector(text=text)
    if sel.css("div.error503") or "/error/503" in (_meta(sel, "og:url") or ""):
        said = _clean(sel.css("div.error503 p.message").xpath("string()").get()) or "503 Service Unavailable"
        raise Unavailable(f"MyAnimeList 503 page: {said}")
    if "</html>" not in text.lower():
        raise Truncated("page ends before </html>")
    return sel


def _meta(sel: Selector, prop: str) -> str:
    return sel.css(f'meta[property="{prop}"]::attr(content)').get() or ""


def _clean(s: str | None) -> str:
    return _SPACES.sub(" ", s or "").strip()


def _unparen(s: str | None) -> str:
    return _clean(s).removeprefix("(").removesuffix(")").strip()


def _body_text(sel: Selector) -> str:
    return " ".join(sel.xpath("//body//text()[not(ancestor::script)]").getall())


def _int(s: str | None) -> int | None:
    digits = re.sub(r"[^\d]", "", s or "")
    return int(digits) if digits else None


def _img(node: Selector) -> str | None:
    """A thumbnail's full-size URL; lazy images (2026) carry it in data-src, 2018 in src."""
    src = node.xpath(".//img/@data-src").get() or node.xpath(".//img/@src").get()
    return None if is_placeholder(src) else full_size_image_url(src)


# ---------------------------------------------------------------- character page

def parse_html_character(text: str, url: str) -> Parsed:
    """/character/<id>/<slug>: the character's facts and main portrait; follows its pictures."""
    sel = _page(text)
    if "Member Favorites" not in text or not sel.xpath(_NORMAL_HEADER):
        raise Truncated("character page without 'Member Favorites' or a normal_header")
    canonical = _meta(sel, "og:url") or url
    ent = _entity(canonical, "character") or _entity(url, "character")
    if not ent:
        raise Truncated(f"no character id in og:url or {url}")
    _, mal_id, slug = ent
    h1 = _clean(sel.xpath("string(//h1)").get())
    name = (_clean(_meta(sel, "og:title")) or _clean(sel.css("h1 strong::text").get())
            or _clean(h1.split('"')[0]))
    nick = _QUOTED.search(h1)
    portrait = _meta(sel, "og:image")
    if "/images/characters/" not in portrait:  # a site icon when the character has no picture
        portrait = (sel.css("img.portrait-225x350::attr(data-src)").get()
                    or sel.css("img.portrait-225x350::attr(src)").get() or "")
    favorites = _FAVORITES.search(text)
    anime = _appearances(sel)
    c = {"mal_id": mal_id, "url": f"{MAL_SITE}/character/{mal_id}" + (f"/{slug}" if slug else ""),
         "name": name, "name_kanji": _unparen(sel.xpath(_NORMAL_HEADER + "//small/text()").get()) or None,
         "nicknames": [n.strip() for n in nick.group(1).split(", ")] if nick else [],
         "favorites": _int(favorites.group(1)) if favorites else None,
         "image_url": None if is_placeholder(portrait) else full_size_image_url(portrait),
         "anime": [a["title"] for a in anime]}
    return Parsed(items=portrait_item(c, title=main_title(anime)),
                  follow=[html_character_pictures_url(_origin(url), mal_id, slug or "x")],
                  info={**c, "anime": anime})


def _appearances(sel: Selector) -> list[dict[str, Any]]:
    """Animeography rows: the table right after its header (div in 2018, div.character-anime today)."""
    rows = sel.xpath(_NORMAL_HEADER + '[normalize-space()="Animeography"]/following-sibling::table[1]//tr')
    out = []
    for row in rows:
        a = row.xpath('./td[2]/a[contains(@href, "/anime/")]')
        ent = _entity(a.attrib.get("href", "")) if a else None
        if ent:
            out.append({"mal_id": ent[1], "title": _clean(a.xpath("string()").get()),
                        "role": _clean(row.xpath("./td[2]//small/text()").get()) or None})
    return out


# ---------------------------------------------------------------- pictures page

def parse_html_pictures(text: str, url: str) -> Parsed:
    """/character/<id>/<slug>/pics (2018: /pictures): every gallery picture, full size.
    Anime and manga galleries share the markup and are read too."""
    sel = _page(text)
    links = sel.css("a.js-picture-gallery")
    if not links and not _NO_PICTURES.search(_body_text(sel)):
        raise Truncated("pictures page without a single a.js-picture-gallery")
    canonical = _meta(sel, "og:url") or url
    ent = _entity(canonical) or _entity(url)
    if not ent:
        raise Truncated(f"no character or anime id in og:url or {url}")
    kind, mal_id, slug = ent
    page_url = f"{MAL_SITE}/{kind}/{mal_id}" + (f"/{slug}" if slug else "")
    og_title = _clean(_meta(sel, "og:title"))
    items, seen = [], set()
    for a in links:
        href = a.attrib.get("href") or a.xpath("./img/@data-src").get() or a.xpath("./img/@src").get()
        if is_placeholder(href):
            continue
        image_url = full_size_image_url(urljoin(url, href))
        if image_url in seen:
            continue
        seen.add(image_url)
        name = _clean(a.attrib.get("title")) or og_title
        items.append(ImageItem(source=SOURCE, source_id=f"{kind}/{mal_id}/{image_stem(image_url)}",
                               page_url=page_url, image_url=image_url,
                               title="" if kind == "character" else name,
                               character=name if kind == "character" else "", extra={"mal_id": mal_id}))
    return Parsed(items=items, info={"kind": kind, "mal_id": mal_id, "name": og_title, "pictures": len(items)})


# ---------------------------------------------------------------- lists

def parse_html_character_list(text: str, url: str) -> Parsed:
    """character.php: the favourites ranking (?limit=) or a search (?q=). Follows each
    character page; the thumbnails are only recorded in info (the character page yields
    the same portrait with its facts)."""
    sel = _page(text)
    ranking = sel.css("tr.ranking-list")
    chars = [_ranking_row(r) for r in ranking] if ranking else [_search_row(r) for r in _search_rows(sel)]
    chars = [c for c in chars if c]
    if not chars and not (sel.css("table.characters-favorites-ranking-table")
                          or sel.xpath(_NORMAL_HEADER + '[normalize-space()="Search Results"]')):
        raise Truncated("character list without ranking rows or search results")
    next_page = _next_link(sel, url)
    return Parsed(follow=_unique(_on_crawl_host(c["url"], url) for c in chars), next_page=next_page,
                  info={"characters": chars, "has_next_page": next_page is not None})


def _ranking_row(row: Selector) -> dict[str, Any] | None:
    a = row.css("a.fs14.fw-b")
    ent = _entity(a.attrib.get("href", ""), "character") if a else None
    if not ent:
        return None
    return {"mal_id": ent[1], "url": a.attrib["href"], "name": _clean(a.xpath("string()").get()),
            "name_kanji": _unparen(row.css("div.fs12.fn-grey6::text").get()) or None, "nicknames": [],
            "favorites": _int(row.css("td.favorites::text").get()), "image_url": _img(row.css("td.people")),
            "anime": [_clean(t) for t in row.css("td.animeography div.title a::text").getall()],
            "rank": _int(row.css("td.rank span::text").get())}


def _search_rows(sel: Selector) -> list[Selector]:
    return sel.xpath('//tr[td[1]//div[contains(@class, "picSurround")]/a[contains(@href, "/character/")]]')


def _search_row(row: Selector) -> dict[str, Any] | None:
    a = row.xpath('./td[2]/a[contains(@href, "/character/")]')
    ent = _entity(a.attrib.get("href", ""), "character") if a else None
    if not ent:
        return None
    aliases = _unparen(row.xpath("./td[2]/small/text()").get())
    return {"mal_id": ent[1], "url": a.attrib["href"], "name": _clean(a.xpath("string()").get()),
            "name_kanji": None, "nicknames": aliases.split(", ") if aliases else [], "favorites": None,
            "image_url": _img(row.xpath("./td[1]")),
            "anime": [_clean(t) for t in row.xpath('./td[3]//a[contains(@href, "/anime/")]/text()').getall()],
            "rank": None}


def _next_link(sel: Selector, url: str) -> str | None:
    href = sel.css("a.next::attr(href)").get()
    if not href:
        # The 2018 pager has no "next": "[1] <a>2</a> <a>3</a> ..." — take the link after [current].
        for span in sel.xpath('//span[contains(text(), "[")]'):
            m = re.search(r"\[(\d+)\]", "".join(span.xpath("./text()").getall()))
            if m:
                href = span.xpath(f'./a[normalize-space()="{int(m.group(1)) + 1}"]/@href').get()
                break
    return _on_crawl_host(href, url) if href else None


def _unique(urls) -> list[str]:
    return list(dict.fromkeys(urls))


# ---------------------------------------------------------------- anime cast

def parse_html_anime_characters(text: str, url: str) -> Parsed:
    """/anime/<id>/<slug>/characters: follows every character of the cast (not the staff)."""
    sel = _page(text)
    tables = sel.css("table.js-anime-character-table")
    chars = [c for c in (_cast_entry(t) for t in tables) if c] if tables else _cast_links(sel)
    if not chars and not _NO_CHARACTERS.search(_body_text(sel)):
        raise Truncated("anime characters page without a single character link")
    title = _clean(_meta(sel, "og:title") or sel.xpath("string(//title)").get())
    ent = _entity(url, "anime")
    return Parsed(follow=_unique(_on_crawl_host(c["url"], url) for c in chars),
                  info={"anime_id": ent[1] if ent else None,
                        "anime_title": re.split(r" - Characters", title)[0].strip(), "characters": chars})


def _cast_entry(table: Selector) -> dict[str, Any] | None:
    """One cast row (2026 markup): the character's name link, role, favourites, thumbnail."""
    a = table.xpath('.//a[contains(@href, "/character/")][.//h3 or normalize-space()]')
    ent = _entity(a.attrib.get("href", ""), "character") if a else None
    if not ent:
        return None
    row = "(./tr | ./tbody/tr)[1]"
    pads = [_clean(t) for t in table.xpath(row + '/td[2]/div[contains(@class, "spaceit_pad")]/text()').getall()]
    favs = next((p for p in pads if p.endswith("Favorites")), None)
    return {"mal_id": ent[1], "url": a.attrib["href"], "name": _clean(a.xpath("string()").get()),
            "role": next((p for p in pads if p in ("Main", "Supporting")), None), "favorites": _int(favs),
            "image_url": _img(table.xpath(row + "/td[1]"))}


def _cast_links(sel: Selector) -> list[dict[str, Any]]:
    """Older cast markup: every named link to a character page."""
    out: dict[int, dict[str, Any]] = {}
    for a in sel.xpath('//a[contains(@href, "/character/")][normalize-space()]'):
        ent = _entity(a.attrib["href"], "character")
        if ent and ent[1] not in out:
            out[ent[1]] = {"mal_id": ent[1], "url": a.attrib["href"], "name": _clean(a.xpath("string()").get()),
                           "role": None, "favorites": None, "image_url": None}
    return list(out.values())
