"""A getchu.com replica: EUC-JP pages, the age gate, the soft.phtml redirect, and images that
need the item page as Referer. Item pages come from real captures when a folder of them is
given (tests, with ../shared/sites/getchu) and from a template otherwise (the demo).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import parse_qs, quote

from replicas.drawn import draw_character, encode

from .server import Replica, Request, Response

EUC = {"Content-Type": "text/html; charset=EUC-JP"}
COOKIE = ("getchu_adalt_flag", "getchu.com")


def item_page(pid: int, title: str, brand: str, date: str, artist: str, characters: list[tuple[str, str, str]]) -> str:
    """An item page in getchu's current layout; characters are (name, reading, voice actor)."""
    rows = []
    for n, (name, reading, cv) in enumerate(characters, 1):
        rows.append(
            f'<tr><td valign="middle"><img src="/brandnew/{pid}/c{pid}chara{n}.jpg" alt="{title} | キャラクター紹介-{n}"></td>'
            f'<td valign="middle" align="left" class="chara-text"><dl><dt><h4 class="chara-name">'
            f'{html.escape(name)}（{html.escape(reading)}）　CV：{html.escape(cv)}</h4></dt><dd>プロフィール</dd></dl></td>'
            f'<td><a href="/brandnew/{pid}/c{pid}charab{n}.jpg" class="highslide"><img src="/brandnew/{pid}/c{pid}charab{n}_s.jpg"></a></td></tr>'
            '<tr><td colspan="3"><hr></td></tr>'
        )
    person = quote(artist.encode("euc_jp"))
    return f"""<html><head><meta http-equiv="Content-Type" content="text/html; charset=EUC-JP">
<title>{title}</title><meta property="og:title" content="{title}  | {brand}"></head><body>
<span class="redb">18歳未満の方は購入できません</span>
<table id="soft_table"><tr><th><h2 id="soft-title">{title}<nobr><a href="/php/search.phtml?search_reference_id={pid}">（このタイトルの関連商品）</a></nobr></h2></th></tr>
<tr><td><table>
<tr><td valign="top" align="right">ブランド：</td><td><a href="http://example.invalid/" class="glance">{brand}</a><a href="/php/search.phtml?search_brand_id=9{pid % 1000}">（このブランドの作品一覧）</a></td></tr>
<tr><td valign="top" align="right">発売日：</td><td><a href="/php/search.phtml?start_date={date}">{date}</a></td></tr>
<tr><td valign="top" align="right">原画：</td><td><a href="/php/search.phtml?person={person}">{artist}</a></td></tr>
</table></td></tr></table>
<h3 class="tabletitle">&nbsp;キャラクター</h3>
<table border="0">{''.join(rows)}</table>
</body></html>"""


def month_page(year: int, month: int, items: list[tuple[int, str]]) -> str:
    links = "".join(f'<A href="/soft.phtml?id={pid} " class="black">{html.escape(t)}</A><br>' for pid, t in items)
    return f"""<html><head><meta http-equiv="Content-Type" content="text/html; charset=EUC-JP"></head><body>
<div class="category_pc_t"><div class="category_pc_t2">{year}年{month}月15日発売タイトル</div></div>
<div class="category_pc_b">{links}</div></body></html>"""


def search_page(items: list[tuple[int, str]]) -> str:
    """Results inside ul.display; a recommendation banner outside it links elsewhere, as on the site."""
    if not items:
        body = "<p>該当する作品はありませんでした</p>"
    else:
        body = "<ul class=\"display\">" + "".join(
            f'<li><a class="blueb" href="../soft.phtml?id={pid}">{html.escape(t)}</a>'
            f'<p><span class="orangeb">[PCゲーム・アダルト]</span></p></li>' for pid, t in items) + "</ul>"
    return f"""<html><head><meta http-equiv="Content-Type" content="text/html; charset=EUC-JP"><title>検索結果</title></head>
<body><div class="banner"><a href="../soft.phtml?id=634685">おすすめ</a></div>{body}</body></html>"""


ATTESTATION = """<html><head><meta http-equiv="Content-Type" content="text/html; charset=EUC-JP"><title>年齢認証</title></head>
<body><h1>年齢認証ページ</h1><p>これから先のページには年齢制限のある【R-18コンテンツ】が含まれています。</p>
<span style="font-size:160%;font-weight:bold;"><a href="{url}">【すすむ】</a></span> <a href="/">【もどる】</a></body></html>"""

NAMES = [("桜井 春香", "さくらい はるか", "青木まい"), ("北条 美月", "ほうじょう みづき", "小林ゆう"),
         ("天野 葵", "あまの あおい", "佐藤ひな"), ("月島 凛", "つきしま りん", "高橋あや")]


class GetchuReplica:
    """Routes for one replica site. `items` maps product id -> EUC-JP page bytes."""

    def __init__(self, replica: Replica, captures: Path | None = None, months: dict[tuple[int, int], list[int]] | None = None,
                 synthetic_ids: list[int] | None = None) -> None:
        self.r = replica
        self.items: dict[int, bytes] = {}
        if captures is not None:
            for p in sorted(captures.glob("item_*.eucjp.html")):
                self.items[int(p.name.split("_")[1].split(".")[0])] = p.read_bytes()
        for i, pid in enumerate(synthetic_ids or []):
            chars = [NAMES[(i + k) % len(NAMES)] for k in range(2)]
            page = item_page(pid, f"デモゲーム{i + 1}", "デモブランド", f"2015/05/{10 + i % 18:02d}", "山田太郎", chars)
            self.items[pid] = page.encode("euc_jp")
        self.months = months or {}
        self.image_cache: dict[str, bytes] = {}
        replica.route("/robots.txt", lambda req: Response(200, {"Content-Type": "text/plain"},
                                                          b"User-agent: *\nDisallow: /php/nsearch.phtml\n"))
        replica.route("/all/month_title.html", self.month)
        replica.route("/soft.phtml", self.legacy)
        replica.route("/item/*", self.item)
        replica.route("/php/attestation.html", self.attestation)
        replica.route("/php/search.phtml", self.search)
        replica.route("/brandnew/*", self.image)

    def month(self, req: Request) -> Response:
        key = (int(req.query.get("year", ["0"])[0]), int(req.query.get("month", ["0"])[0]))
        ids = self.months.get(key, [])
        page = month_page(*key, [(pid, f"作品{pid}") for pid in ids])
        return Response(200, EUC, page.encode("euc_jp"))

    def search(self, req: Request) -> Response:
        raw_query = req.raw_path.partition("?")[2]
        try:
            # The site reads the keyword as EUC-JP; UTF-8 bytes find nothing there.
            query = parse_qs(raw_query, encoding="euc_jp", errors="strict")
        except UnicodeDecodeError:
            query = {}
        keyword = query.get("search_keyword", [""])[0]
        brand = query.get("search_brand_id", [""])[0]
        hits = []
        for pid, page in self.items.items():
            text = page.decode("euc_jp", errors="replace")
            if (keyword and keyword in text) or (brand and f"search_brand_id={brand}" in text):
                hits.append((pid, f"作品{pid}"))
        return Response(200, EUC, search_page(hits).encode("euc_jp"))

    def legacy(self, req: Request) -> Response:
        pid = req.query.get("id", [""])[0].strip()
        # The real site's 301 drops the query, age-gate flag included.
        return Response(301, {"Location": f"/item/{pid}/"})

    def _adult_ok(self, req: Request) -> bool:
        return req.cookie(COOKIE[0]) == COOKIE[1] or "gc" in req.query

    def item(self, req: Request) -> Response:
        m = re.match(r"^/item/(\d+)/$", req.path)
        if not m or int(m.group(1)) not in self.items:
            return Response(404, {"Content-Type": "text/html"}, b"<html><body>not found</body></html>")
        if not self._adult_ok(req):
            return Response(302, {"Location": f"/php/attestation.html?aurl={quote(self.r.base + req.raw_path, safe='')}"})
        return Response(200, EUC, self.items[int(m.group(1))])

    def attestation(self, req: Request) -> Response:
        target = req.query.get("aurl", ["/"])[0]
        url = target + ("&" if "?" in target else "?") + "gc=gc"
        return Response(200, EUC, ATTESTATION.format(url=html.escape(url)).encode("euc_jp"))

    def image(self, req: Request) -> Response:
        m = re.match(r"^/brandnew/(\d+)/c\d+(chara|charab)(\d+)(_s)?\.jpg$", req.path)
        if not m:
            return Response(404, {}, b"")
        pid = m.group(1)
        if f"/item/{pid}/" not in req.headers.get("Referer", ""):
            return Response(403, {"Content-Type": "text/html"}, b"<html><body>Forbidden</body></html>")
        if req.path not in self.image_cache:  # drawing costs ~10 ms: do it once per picture
            seed = int(pid) * 100 + int(m.group(3)) * 2 + (m.group(2) == "charab")
            size = 250 if m.group(2) == "chara" else 400
            self.image_cache[req.path] = encode(draw_character(seed, size), "JPEG", quality=88)
        return Response(200, {"Content-Type": "image/jpeg"}, self.image_cache[req.path])
