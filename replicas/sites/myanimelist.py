"""A MyAnimeList replica: Jikan v4 JSON, MAL's own pages, and the image CDN on a second host.

With a folder of captures (tests, with ../shared/sites/myanimelist) the real bodies are served
where they were recorded: Jikan's top list, pictures and character answers, the 2018 character
and pictures pages, and the 2026 excerpts, with absolute myanimelist.net and CDN addresses moved
onto the replica. Every other character is made from templates of the same markup, so lists can
run to several pages. The CDN answers full-size paths only: a thumbnail (`/r/WxH/...`, `...t.jpg`)
is a 404, so a crawl that forgets to normalise image URLs fails loudly.
"""

from __future__ import annotations

import html
import json
import re
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from replicas.drawn import draw_face, encode

from .server import Replica, Request, Response

HTML = {"Content-Type": "text/html; charset=utf-8"}
JSON = {"Content-Type": "application/json"}
CDN_HOSTS = ("https://cdn.myanimelist.net", "https://myanimelist.cdn-dena.com")
ROBOTS = b"User-agent: GPTBot\nDisallow: /\n\nUser-agent: *\nDisallow: /login.php\nDisallow: /logout.php\n"
NAMES = [("Aoi Kisaragi", "如月 葵"), ("Ren Takamura", "高村 蓮"), ("Mio Hanazawa", "花沢 澪"),
         ("Sora Itsuki", "樹 空"), ("Haru Minase", "水瀬 春"), ("Kaede Shirai", "白井 楓"),
         ("Nagi Asahina", "朝比奈 凪"), ("Yuzu Kamiya", "神谷 柚"), ("Rin Tsukishiro", "月城 凛")]
FIRST_SYNTHETIC = 900001


@dataclass
class Character:
    mal_id: int
    name: str  # as Jikan writes it, "First Last"
    kanji: str
    favorites: int
    pictures: list[str]  # CDN paths of full-size images; the first is the main picture
    anime: list[tuple[int, str, str]] = field(default_factory=list)  # (anime id, title, role)
    url_slug: str = ""  # MAL's own, where it is not the name's

    @property
    def slug(self) -> str:
        return self.url_slug or re.sub(r"\W+", "_", self.name).strip("_")


# Facts read off the captures, for the pages the captures do not hold (their pictures pages, Jikan answers).
KNOWN = [Character(417, "Lelouch Lamperouge", "ルルーシュ・ランペルージ", 180332, ["/images/characters/8/406163.jpg"],
                   [(1575, "Code Geass: Hangyaku no Lelouch", "Main")]),
         Character(40, "Monkey D. Luffy", "モンキー・D・ルフィ", 165210, ["/images/characters/9/310307.jpg"],
                   [(21, "One Piece", "Main")], "Luffy_Monkey_D"),
         Character(1, "Spike Spiegel", "スパイク・スピーゲル", 49189, ["/images/characters/11/516853.jpg"],
                   [(1, "Cowboy Bebop", "Main")]),
         Character(33110, "Spike", "", 12, ["/images/characters/15/241595.jpg"],
                   [(1660, "Kurogane Communication", "Supporting")]),
         Character(116281, "Momonga", "モモンガ", 3755, ["/images/characters/3/288006.jpg"], [(29803, "Overlord", "Main")]),
         Character(105591, "Latifa Fleuranza", "", 900, ["/images/characters/13/246869.jpg",
                   "/images/characters/12/258329.jpg", "/images/characters/7/262087.jpg"]),
         Character(425, "Ginko", "ギンコ", 15304, ["/images/characters/14/303453.jpg"], [(457, "Mushishi", "Main")])]


def synthetic(mal_id: int, pictures: int = 2) -> Character:
    i = mal_id - FIRST_SYNTHETIC
    name, kanji = NAMES[i % len(NAMES)] if i >= 0 else (f"Character {mal_id}", "")
    paths = [f"/images/characters/{(mal_id + k) % 16}/{mal_id * 10 + k}.jpg" for k in range(pictures)]
    anime = 5000 + max(i, 0) // 2
    return Character(mal_id, name, kanji, 10000 - max(i, 0) * 10, paths,
                     [(anime, f"Headshot Demo {anime - 4999}", "Main" if i % 2 == 0 else "Supporting")])


def _pages(ids: list[int], size: int) -> list[list[int]]:
    return [ids[k:k + size] for k in range(0, len(ids), size)]


class MyAnimeListReplica:
    """Routes on `site` (Jikan under /v4, MAL's pages) and `cdn` (images, e.g. a Replica on
    "localhost": another host, so another Scrapy download slot and no Jikan interval)."""

    def __init__(self, site: Replica, cdn: Replica, captures: Path | None = None, *, pages: int = 3,
                 per_page: int = 3, pictures: int = 2) -> None:
        self.site, self.cdn = site, cdn
        self.site_base = site.base
        self.cdn_base = f"http://localhost:{cdn.server.server_port}"
        self.jikan_base = self.site_base + "/v4"
        self.captures = captures
        self.pictures = pictures
        self.characters: dict[int, Character] = {}
        synthetic_ids = list(range(FIRST_SYNTHETIC, FIRST_SYNTHETIC + pages * per_page))
        for mal_id in synthetic_ids:
            self.characters[mal_id] = synthetic(mal_id, pictures)
        self.top = _pages(synthetic_ids, per_page)  # Jikan's ranking, page by page
        self.html_top = [list(p) for p in self.top]
        if captures is not None:
            for c in KNOWN:
                c = replace(c, pictures=list(c.pictures))
                if len(c.pictures) == 1:  # a second picture, so every gallery shows a thumbnail to normalise
                    c.pictures.append(f"/images/characters/{c.mal_id % 16}/{c.mal_id * 10 + 7}.jpg")
                self.characters[c.mal_id] = c
            self.top = [[417, 40]] + self.top  # page 1 is the capture
            self.html_top = [[417, 40], [116281, 105591, 1, FIRST_SYNTHETIC]]
        self.images: dict[str, bytes] = {}
        site.route("/robots.txt", lambda req: Response(200, {"Content-Type": "text/plain"}, ROBOTS))
        site.route("/v4/top/characters", self.jikan_top)
        site.route("/v4/characters", self.jikan_search)
        site.route("/v4/characters/*", self.jikan_character)
        site.route("/v4/anime/*", self.jikan_cast)
        site.route("/character.php", self.html_list)
        site.route("/character/*", self.html_character)
        site.route("/anime/*", self.html_cast)
        cdn.route("/robots.txt", lambda req: Response(200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow:\n"))
        cdn.route("/images/*", self.image)

    # --- helpers for tests ----------------------------------------------------------------

    def character(self, mal_id: int) -> Character:
        if mal_id not in self.characters:
            self.characters[mal_id] = synthetic(mal_id, self.pictures)
        return self.characters[mal_id]

    def image_url(self, path: str) -> str:
        return self.cdn_base + path

    def gallery(self, mal_id: int) -> list[str]:
        """The full-size paths a crawl must fetch for this character."""
        capture = self._capture(f"character_{mal_id}_pictures_*.html")
        if capture is not None:
            found = re.findall(r'href="([^"]+)"[^>]*class="js-picture-gallery', capture)
            return [re.sub(r"^https?://[^/]+", "", u) for u in dict.fromkeys(found)]
        return list(self.character(mal_id).pictures)

    def cast(self, anime_id: int) -> list[tuple[int, str]]:
        return [(c.mal_id, role) for c in self.characters.values() for a, _, role in c.anime if a == anime_id]

    # --- captures -------------------------------------------------------------------------

    def _capture(self, pattern: str) -> str | None:
        if self.captures is None:
            return None
        found = sorted(self.captures.glob(pattern))
        return self._local(found[0].read_text(encoding="utf-8")) if found else None

    def _local(self, text: str) -> str:
        """A captured page with MAL's and the CDN's absolute addresses moved onto the replica."""
        for host in CDN_HOSTS:
            text = text.replace(host, self.cdn_base)
        return text.replace("https://myanimelist.net", self.site_base).replace("http://myanimelist.net", self.site_base)

    def _jikan_capture(self, name: str) -> Any:
        """A Jikan capture as data, CDN addresses moved (page URLs stay: they are data, not links)."""
        if self.captures is None or not (self.captures / name).exists():
            return None

        def move(v: Any) -> Any:
            if isinstance(v, str):
                for host in CDN_HOSTS:
                    v = v.replace(host, self.cdn_base)
                return v
            if isinstance(v, list):
                return [move(x) for x in v]
            return {k: move(x) for k, x in v.items()} if isinstance(v, dict) else v

        return move(json.loads((self.captures / name).read_text(encoding="utf-8")))

    # --- Jikan v4 -------------------------------------------------------------------------

    def _images(self, c: Character) -> dict[str, Any]:
        url = self.cdn_base + c.pictures[0]
        return {"jpg": {"image_url": url},
                "webp": {"image_url": url[:-4] + ".webp", "small_image_url": url[:-4] + "t.webp"}}

    def _jikan_record(self, c: Character) -> dict[str, Any]:
        return {"mal_id": c.mal_id, "url": f"https://myanimelist.net/character/{c.mal_id}/{c.slug}",
                "images": self._images(c), "name": c.name, "name_kanji": c.kanji or None, "nicknames": [],
                "favorites": c.favorites, "about": "(biography text)"}

    def _jikan_list(self, ids: list[int], page: int, last: int, total: int) -> Response:
        body = {"pagination": {"last_visible_page": last, "has_next_page": page < last, "current_page": page,
                               "items": {"count": len(ids), "total": total, "per_page": len(ids)}},
                "data": [self._jikan_record(self.character(i)) for i in ids]}
        return Response(200, JSON, json.dumps(body).encode())

    @staticmethod
    def _page(req: Request) -> int:
        page = req.query.get("page", ["1"])[0]
        return int(page) if page.isdigit() and int(page) > 0 else 1

    def jikan_top(self, req: Request) -> Response:
        page, last = self._page(req), len(self.top)
        if page == 1:
            captured = self._jikan_capture("jikan_v4_top_characters_page1_replica.json")
            if captured is not None:  # its pagination numbers are placeholders: they tell the truth here
                captured["pagination"].update(last_visible_page=last, has_next_page=last > 1)
                return Response(200, JSON, json.dumps(captured).encode())
        ids = self.top[page - 1] if page <= last else []
        return self._jikan_list(ids, page, last, sum(map(len, self.top)))

    def jikan_search(self, req: Request) -> Response:
        q = req.query.get("q", [""])[0].lower()
        found = sorted((c for c in self.characters.values() if q in c.name.lower()), key=lambda c: -c.favorites)
        pages = _pages([c.mal_id for c in found], 2) or [[]]
        page = self._page(req)
        return self._jikan_list(pages[page - 1] if page <= len(pages) else [], page, len(pages), len(found))

    def jikan_character(self, req: Request) -> Response:
        m = re.match(r"^/v4/characters/(-?\d+)(/full|/pictures)?$", req.path)
        if not m or int(m.group(1)) < 1:
            return Response(404, JSON, b'{"status":404,"type":"HttpException","message":"Not Found","error":null}')
        mal_id, what = int(m.group(1)), m.group(2) or ""
        c = self.character(mal_id)
        if what == "/pictures":
            captured = self._jikan_capture(f"jikan_v4_characters_{mal_id}_pictures_replica.json")
            if captured is not None:
                return Response(200, JSON, json.dumps(captured).encode())
            # Full size first, then a thumbnail as MAL's galleries show them: the crawler must undo it.
            urls = [self.cdn_base + c.pictures[0]] + [f"{self.cdn_base}/r/42x62{p}?s={zlib.crc32(p.encode()):08x}"
                                                     for p in c.pictures[1:]]
            return Response(200, JSON, json.dumps({"data": [{"jpg": {"image_url": u}} for u in urls]}).encode())
        captured = self._jikan_capture(f"jikan_v4_characters_{mal_id}.json")
        data = captured["data"] if captured is not None else self._jikan_record(c)
        if what == "/full":
            data = {**data, "anime": [{"role": role, "anime": {"mal_id": a, "title": t,
                                                                "url": f"https://myanimelist.net/anime/{a}"}}
                                      for a, t, role in c.anime], "manga": [], "voices": []}
        return Response(200, JSON, json.dumps({"data": data}).encode())

    def jikan_cast(self, req: Request) -> Response:
        m = re.match(r"^/v4/anime/(\d+)/characters$", req.path)
        if not m:
            return Response(404, JSON, b'{"status":404,"type":"HttpException","message":"Not Found","error":null}')
        data = [{"character": {k: v for k, v in self._jikan_record(self.character(i)).items()
                               if k in ("mal_id", "url", "images", "name")},
                 "role": role, "favorites": self.character(i).favorites, "voice_actors": []}
                for i, role in self.cast(int(m.group(1)))]
        return Response(200, JSON, json.dumps({"data": data}).encode())

    # --- MyAnimeList's pages --------------------------------------------------------------

    def _html(self, text: str) -> Response:
        return Response(200, HTML, text.encode("utf-8"))

    def html_list(self, req: Request) -> Response:
        if "q" in req.query:
            q = req.query["q"][0]
            captured = (self._capture("modern_excerpt_character_search.html") if q.lower() == "spike" else
                        self._capture(f"character_search_q-{q}_*.html") if re.fullmatch(r"\w+", q) else None)
            if captured is not None:
                return self._html(captured)
            found = [c for c in self.characters.values() if q.lower() in c.name.lower()]
            return self._html(search_page(self, found))
        limit = req.query.get("limit", ["0"])[0]
        page = int(limit) // 50 if limit.isdigit() else 0
        has_next = page + 1 < len(self.html_top)
        captured = self._capture("modern_excerpt_top_characters_page1.html") if page == 0 else None
        if captured is not None:
            nav = next_link(self, page) if has_next else ""
            return self._html(captured.replace("</body>", nav + "</body>"))
        ids = self.html_top[page] if page < len(self.html_top) else []
        return self._html(ranking_page(self, [self.character(i) for i in ids], page, has_next))

    def html_character(self, req: Request) -> Response:
        m = re.match(r"^/character/(\d+)(?:/[^/]*)?(/pics|/pictures)?/?$", req.path)
        if not m:
            return Response(404, HTML, b"<html><body>404 Not Found</body></html>")
        mal_id, pics = int(m.group(1)), bool(m.group(2))
        c = self.character(mal_id)
        if pics:
            return self._html(self._capture(f"character_{mal_id}_pictures_*.html") or pictures_page(self, c))
        captured = self._capture("modern_excerpt_character_1_*.html" if mal_id == 1
                                 else f"character_{mal_id}_[!p]*.html")  # not character_<id>_pictures_...
        return self._html(captured or character_page(self, c))

    def html_cast(self, req: Request) -> Response:
        m = re.match(r"^/anime/(\d+)(?:/[^/]*)?/characters$", req.path)
        if not m:
            return Response(404, HTML, b"<html><body>404 Not Found</body></html>")
        anime_id = int(m.group(1))
        captured = self._capture("modern_excerpt_anime_characters_staff.html") if anime_id == 1 else None
        return self._html(captured or cast_page(self, [(self.character(i), r) for i, r in self.cast(anime_id)]))

    # --- the CDN ----------------------------------------------------------------------------

    def image(self, req: Request) -> Response:
        m = re.match(r"^/images/(?:characters|anime|manga|voiceactors)/\d+/(\d+)\.(jpg|webp)$", req.path)
        if not m:  # thumbnails (`t`/`v` letters) and everything else
            return Response(404, {"Content-Type": "text/plain"}, b"not found")
        if req.path not in self.images:
            fmt = "JPEG" if m.group(2) == "jpg" else "WEBP"
            self.images[req.path] = encode(draw_face(int(m.group(1)), 225), fmt, quality=88)
        ctype = "image/jpeg" if m.group(2) == "jpg" else "image/webp"
        return Response(200, {"Content-Type": ctype}, self.images[req.path])


# --- page templates (today's markup, as in the 2026 excerpts) ------------------------------

def _e(s: Any) -> str:
    return html.escape(str(s))


def _head(title: str, og: dict[str, str]) -> str:
    meta = "".join(f'<meta property="og:{k}" content="{_e(v)}">' for k, v in og.items())
    return f"<!doctype html><html><head><title>{_e(title)} - MyAnimeList.net</title>{meta}</head><body>\n"


def _thumb(site: MyAnimeListReplica, path: str) -> str:
    return f"{site.cdn_base}/r/42x62{path}?s=0a1b2c"


def character_page(site: MyAnimeListReplica, c: Character) -> str:
    url = f"{site.site_base}/character/{c.mal_id}/{c.slug}"
    rows = "".join(
        f'<tr><td width="25" class="borderClass" valign="top"><div class="picSurround"><a href="{site.site_base}/anime/'
        f'{a}/x"><img class="lazyload" data-src="{site.cdn_base}/r/42x62/images/anime/1/{a}.jpg?s=1f" border="0"></a>'
        f'</div></td><td valign="top" class="borderClass"><a href="{site.site_base}/anime/{a}/x">{_e(t)}</a>'
        f'<div class="spaceit_pad"><small>{_e(role)}</small></div></td></tr>' for a, t, role in c.anime)
    kanji = f'<span style="font-weight: normal;"><small>({_e(c.kanji)})</small></span>' if c.kanji else ""
    return (_head(c.name, {"title": c.name, "url": url, "image": site.cdn_base + c.pictures[0]})
            + f'<h1 class="title-name h1_bold_none"><strong>{_e(c.name)}</strong></h1>\n'
            f'<img class="portrait-225x350 lazyload" data-src="{site.cdn_base}{c.pictures[0]}" alt="{_e(c.name)}">\n'
            f'<br /><br />\nMember Favorites: {c.favorites:,}\n'
            f'<h2 class="normal_header" style="height: 15px;">{_e(c.name)} {kanji}</h2>No biography written.\n'
            f'<div class="normal_header character-anime">Animeography</div>\n'
            f'<table border="0" cellpadding="0" cellspacing="0" width="100%">{rows}</table>\n</body></html>\n')


def pictures_page(site: MyAnimeListReplica, c: Character) -> str:
    url = f"{site.site_base}/character/{c.mal_id}/{c.slug}/pics"
    cells = "".join(
        f'<td><div class="picSurround"><a href="{site.cdn_base}{p}" title="{_e(c.name)}" class="js-picture-gallery" '
        f'rel="gallery-character"><img class="lazyload" data-src="{site.cdn_base}{p}" alt="{_e(c.name)}"></a></div></td>'
        for p in c.pictures)
    return (_head(f"{c.name} - Pictures", {"title": c.name, "url": url})
            + f'<h2 class="mb8">Pictures</h2><table><tr>{cells}</tr></table>\n</body></html>\n')


def next_link(site: MyAnimeListReplica, page: int) -> str:
    return (f'<div class="pagination"><h2><div class="fl-r"><span><a class="link-blue-box next" '
            f'href="{site.site_base}/character.php?limit={50 * (page + 1)}">Next 50</a></span></div></h2></div>\n')


def ranking_page(site: MyAnimeListReplica, chars: list[Character], page: int, has_next: bool) -> str:
    rows = "".join(
        f'<tr class="ranking-list"><td class="rank "><span class="lightLink pepole-rank-text">{page * 50 + n}</span></td>'
        f'<td class="people"><a class="fl-l ml12 mr8" href="{site.site_base}/character/{c.mal_id}/{c.slug}">'
        f'<img width="50" height="78" class="lazyload" data-src="{site.cdn_base}/r/50x78{c.pictures[0]}?s=9f"></a>'
        f'<div class="information mt24"><a href="{site.site_base}/character/{c.mal_id}/{c.slug}" class="fs14 fw-b">'
        f'{_e(c.name)}</a><div class="fs12 fn-grey6 text-ellipsis">({_e(c.kanji)})</div></div></td>'
        f'<td class="animeography">' + "".join(f'<div class="title"><a href="{site.site_base}/anime/{a}/x">{_e(t)}</a>'
                                               f'</div>' for a, t, _ in c.anime)
        + f'</td><td class="mangaography"></td><td class="favorites">{c.favorites:,}</td></tr>\n'
        for n, c in enumerate(chars, 1))
    return (_head("Anime & Manga Characters", {})
            + '<table class="characters-favorites-ranking-table"><tr class="table-header"><td class="rank">Rank</td>'
            f'<td class="character">Character</td><td class="favorites">Favorites</td></tr>\n{rows}</table>\n'
            + (next_link(site, page) if has_next else "") + "</body></html>\n")


def search_page(site: MyAnimeListReplica, chars: list[Character]) -> str:
    rows = "".join(
        f'<tr><td class="borderClass" width="30"><div class="picSurround"><a href="{site.site_base}/character/'
        f'{c.mal_id}/{c.slug}"><img class="lazyload" data-src="{_thumb(site, c.pictures[0])}"></a></div></td>'
        f'<td class="borderClass"><a href="{site.site_base}/character/{c.mal_id}/{c.slug}">{_e(c.name)}</a></td>'
        f'<td class="borderClass"><small> Anime: ' + ", ".join(f'<a href="/anime/{a}/x">{_e(t)}</a>' for a, t, _ in c.anime)
        + '</small></td></tr>\n' for c in chars)
    return (_head("Search Characters", {}) + '<div class="normal_header">Search Results</div>'
            f'<table border="0" cellpadding="0" cellspacing="0" width="100%">{rows}</table>\n</body></html>\n')


def cast_page(site: MyAnimeListReplica, cast: list[tuple[Character, str]]) -> str:
    tables = "".join(
        f'<table class="js-anime-character-table"><tr><td><div class="picSurround"><a href="{site.site_base}/character/'
        f'{c.mal_id}/{c.slug}"><img data-src="{_thumb(site, c.pictures[0])}"></a></div></td><td>'
        f'<div class="spaceit_pad"><a href="{site.site_base}/character/{c.mal_id}/{c.slug}"><h3 class="h3_character_name">'
        f'{_e(c.name)}</h3></a></div><div class="spaceit_pad">{_e(role)}&nbsp;</div>'
        f'<div class="spaceit_pad">{c.favorites:,} Favorites</div></td></tr></table>\n' for c, role in cast)
    return _head("Characters & Staff", {}) + tables + "</body></html>\n"
