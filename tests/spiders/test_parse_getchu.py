"""getchu parsers against the saved pages in ../shared/sites/getchu, plus targeted cases.

Golden files hold `Parsed.as_dict()` (or the error a page must raise) for every capture.
Rewrite them after a deliberate parser change with
    .venv/bin/python tests/spiders/test_parse_getchu.py --regen
and read the diff before committing it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from parsel import Selector

if __name__ == "__main__":  # run as a script for --regen: tests/ is imported from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from spiders.parsing import AgeGate, Blocked, NotFound, PageError, Truncated  # noqa: E402
from spiders.sites import getchu, getchu_item  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

SITES = shared_path("sites")
CAPTURES = SITES / "getchu"
GOLDEN = Path(__file__).resolve().parent / "golden" / "getchu"
BASE = "https://www.getchu.com"

if __name__ != "__main__" and not CAPTURES.is_dir():
    pytest.skip(f"getchu captures are absent ({CAPTURES}): golden tests need ../shared/sites",
                allow_module_level=True)


def route(name: str):
    """The parser and the URL a capture was served at, from its file name."""
    if name.startswith("item_"):
        product_id = name.split("_")[1].split(".")[0]
        return getchu.parse_item, getchu.item_url(BASE, product_id)
    if name.startswith("attestation"):
        # Served at the item URL on purpose: the gate must be recognised by its content too.
        return getchu.parse_item, getchu.item_url(BASE, 1092994)
    if name.startswith("month_title"):
        return getchu.parse_listing, f"{BASE}/all/month_title.html?genre=pc_soft&gage=&year=2015&month=05"
    if name.startswith("search_"):
        return getchu.parse_listing, getchu.keyword_search_url(BASE, "妹")
    if name.startswith("brand_list"):
        return getchu.parse_brand_list, f"{BASE}/all/brand.html?genre=pc_soft"
    raise LookupError(f"no parser routed for capture {name}: add it to route()")


def outcome(path: Path) -> dict:
    parse, url = route(path.name)
    try:
        return parse(getchu.decode_page(path.read_bytes()), url).as_dict()
    except PageError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}


def dumps(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def captures() -> list[Path]:
    return sorted(CAPTURES.glob("*.html"))


@pytest.mark.parametrize("path", captures(), ids=lambda p: p.name)
def test_golden(path: Path) -> None:
    golden = GOLDEN / f"{path.name}.json"
    assert golden.exists(), f"no golden file for {path.name}: run this module with --regen"
    assert dumps(outcome(path)) == golden.read_text(encoding="utf-8")


def parse_capture(name: str, cut: float = 1.0):
    parse, url = route(name)
    body = (CAPTURES / name).read_bytes()
    return parse(getchu.decode_page(body[: int(len(body) * cut)]), url)


# ---------------------------------------------------------------- item pages

@pytest.mark.parametrize("product_id", [1092994, 1361161])
def test_eucjp_and_utf8_captures_parse_identically(product_id: int) -> None:
    euc = parse_capture(f"item_{product_id}.eucjp.html")
    utf8 = parse_capture(f"item_{product_id}.utf8.html")
    assert euc.as_dict() == utf8.as_dict()
    assert euc.items


def test_current_layout_characters() -> None:
    parsed = parse_capture("item_1092994.eucjp.html")
    names = [(c["name"], c["reading"], c["cv"]) for c in parsed.info["characters"]]
    assert names == [("和泉 妃愛", "いずみ ひより", "柳ひとみ"), ("常磐 華乃", "ときわ かの", "秋野花"),
                     ("錦 あすみ", "にしき あすみ", "紬雪乃"), ("鎌倉 詩桜", "かまくら しお", "浜辺実雨")]
    assert [i.source_id for i in parsed.items[:2]] == ["1092994/chara1", "1092994/charab1"]
    first = parsed.items[0]
    assert first.image_url == f"{BASE}/brandnew/1092994/c1092994chara1.jpg"
    assert first.page_url == f"{BASE}/item/1092994/?gc=gc"
    assert (first.title, first.artist, first.rating, first.published_at) == (
        "ハミダシクリエイティブ", "宇都宮つみれ", "adult", "2020-09-25")
    assert first.extra["catch"] == "ダメ兄を甘やかすことに喜びを感じる人気声優"
    assert (first.extra["brand"], first.extra["brand_id"]) == ("まどそふと", "56606")


def test_prerelease_page_without_cv_or_artist() -> None:
    parsed = parse_capture("item_1361161.eucjp.html")
    characters = parsed.info["characters"]
    assert len(characters) == 9 and len(parsed.items) == 18
    assert all(c["cv"] == "" for c in characters)
    assert parsed.info["artists"] == [] and parsed.items[0].artist == ""
    assert characters[1]["name"] == "メルヴィ・マルローゼ" and characters[1]["reading"] == ""


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("name", ["item_1092994.eucjp.html", "item_1361161.utf8.html",
                                  "month_title_pc_soft_2015_05.eucjp.html"])
def test_page_cut_short_raises(name: str, cut: float) -> None:
    with pytest.raises(Truncated):
        parse_capture(name, cut=cut)


@pytest.mark.parametrize("html, parts", [
    ("和泉 妃愛（いずみ ひより）　CV：柳ひとみ", ("和泉 妃愛", "いずみ ひより", "柳ひとみ", "")),
    ("一行目<br>二行目<br>ミナ（みな）（CV：某）", ("ミナ", "みな", "某", "一行目 二行目")),
    ("ティナ・オーメン　ＣＶ：未定", ("ティナ・オーメン", "", "未定", "")),
    ("<span>主人公</span><br><charalist>エド</charalist>", ("エド", "", "", "主人公")),
])
def test_character_name_forms(html: str, parts: tuple) -> None:
    name_el = Selector(text=f'<h4 class="chara-name">{html}</h4>').css(".chara-name")[0]
    got = getchu_item._name_parts(name_el)
    assert (got["name"], got["reading"], got["cv"], got["catch"]) == parts


def test_attestation_page_raises_age_gate() -> None:
    text = getchu.decode_page((CAPTURES / "attestation_replica.eucjp.html").read_bytes())
    for parse in (getchu.parse_item, getchu.parse_listing, getchu.parse_brand_list):
        with pytest.raises(AgeGate):
            parse(text, getchu.item_url(BASE, 1092994))
    with pytest.raises(AgeGate):  # recognised by the redirect target alone
        getchu.check_page("<html></html>", f"{BASE}/php/attestation.html?aurl=x")


def test_complete_page_that_is_not_an_item_raises_not_found() -> None:
    text = getchu.decode_page((CAPTURES / "brand_list_replica.eucjp.html").read_bytes())
    with pytest.raises(NotFound):
        getchu.parse_item(text, getchu.item_url(BASE, 1))


def test_waf_page_raises_blocked() -> None:
    page = "<html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1></body></html>"
    with pytest.raises(Blocked):
        getchu.parse_item(page, getchu.item_url(BASE, 1))


LEGACY = """<html><head><title>勇者の冒険 - Getchu.com</title></head><body>
<table id="soft_table"><tr><td><h1 id="soft-title">勇者の冒険
<nobr><a href="/php/search.phtml?search_reference_id=748164">（このタイトルの関連商品）</a></nobr></h1></td></tr>
<tr><td><table>
<tr><td valign="top" align="right">ブランド：</td><td><a href="/php/search.phtml?search_brand_id=777">古いブランド</a></td></tr>
<tr><td valign="top" align="right">発売日：</td><td><a href="#">2013/10/25</a></td></tr>
<tr><td valign="top" align="right">原画：</td><td><a href="#">絵師A</a>、<a href="#">絵師B（SD原画）</a></td></tr>
</table></td></tr></table>
<div class="tabletitle">&nbsp;キャラクター</div>
<table> <tr>
  <td valign="middle"><a name="chara1" id="chara1"></a>
    <IMG src="./brandnew/748164/c748164chara1.jpg" alt="キャラ1" width="250" height="300" style="border:none;"></td>
  <td valign="middle" align="left" class="chara-text">
    <DL style="line-height:150%"><DT><STRONG><h2 class="chara-name">主人公<br><charalist>エドワード</charalist> （エド）　CV：和音</h2></STRONG>
    <DD>profile</DL></td>
  <td><a href="./brandnew/748164/c748164charab1.jpg" class="highslide"><img src="./brandnew/748164/c748164charab1_s.jpg"></a></td>
</tr> <tr><td colspan="3"><hr></td></tr>
<tr><td><img class="lazy" src="common/images/space.gif" data-original="//www.getchu.com/brandnew/748164/c748164chara2.jpg"></td>
  <td class="chara-text"><DL><DT><STRONG><h2 class="chara-name"><charalist>ミナ</charalist>（みな）</h2></STRONG><DD>x</DL></td>
</tr> <tr><td colspan="3"><hr></td></tr>
<tr><td></td><td class="chara-text"><DL><DT><STRONG><h2 class="chara-name"><charalist>名無し</charalist>　CV：未定</h2></STRONG></DL></td>
</tr></table>
<div class="tabletitle">サンプル画像</div>
</body></html>
"""


@pytest.mark.parametrize("url", [f"{BASE}/soft.phtml?id=748164&gc=gc", f"{BASE}/item/748164/?gc=gc"])
def test_legacy_layout(url: str) -> None:
    parsed = getchu.parse_item(getchu.decode_page(LEGACY.encode("euc_jp")), url)
    assert [i.image_url for i in parsed.items] == [
        f"{BASE}/brandnew/748164/c748164chara1.jpg", f"{BASE}/brandnew/748164/c748164charab1.jpg",
        f"{BASE}/brandnew/748164/c748164chara2.jpg"]
    assert [i.source_id for i in parsed.items] == ["748164/chara1", "748164/charab1", "748164/chara2"]
    first = parsed.items[0]
    assert (first.title, first.artist, first.published_at, first.rating) == (
        "勇者の冒険", "絵師A, 絵師B（SD原画）", "2013-10-25", "")
    assert (first.character, first.extra["reading"], first.extra["cv"], first.extra["catch"]) == (
        "エドワード", "エド", "和音", "主人公")
    assert first.page_url == f"{BASE}/item/748164/?gc=gc"
    # The character without any picture is still listed.
    assert [(c["name"], c["cv"], c["portrait_url"]) for c in parsed.info["characters"]][2] == (
        "名無し", "未定", None)
    assert parsed.info["brand_id"] == "777" and parsed.info["artists"] == ["絵師A", "絵師B（SD原画）"]


# ---------------------------------------------------------------- listings

def test_search_results_skip_recommendations() -> None:
    parsed = parse_capture("search_results_replica.eucjp.html")
    assert parsed.follow == [getchu.item_url(BASE, 1092994), getchu.item_url(BASE, 1361161)]


def test_month_list() -> None:
    parsed = parse_capture("month_title_pc_soft_2015_05.eucjp.html")
    assert len(parsed.follow) == 30 and parsed.follow[0] == getchu.item_url(BASE, 846113)
    assert getchu.item_url(BASE, 816056) not in parsed.follow  # sidebar box
    assert parsed.next_page == f"{BASE}/all/month_title.html?genre=pc_soft&gage=&year=2015&month=06"


def test_empty_search() -> None:
    parsed = parse_capture("search_empty_replica.eucjp.html")
    assert parsed.follow == [] and parsed.info == {"empty": True}


def test_listing_without_results_or_empty_marker_raises() -> None:
    with pytest.raises(Truncated):
        getchu.parse_listing("<html><body><p>?</p></body></html>", getchu.keyword_search_url(BASE, "x"))


def test_brand_list_points_at_the_configured_base() -> None:
    text = getchu.decode_page((CAPTURES / "brand_list_replica.eucjp.html").read_bytes())
    parsed = getchu.parse_brand_list(text, "http://127.0.0.1:8080/all/brand.html?genre=pc_soft")
    assert parsed.follow[0] == ("http://127.0.0.1:8080/php/search.phtml?search_brand_id=56606"
                                "&list_count=5000&genre=pc_soft&gc=gc")


# ---------------------------------------------------------------- URLs and decoding

@pytest.mark.parametrize("href", [
    "/soft.phtml?id=846113 ", "../soft.phtml?id=846113", "soft.phtml?id=846113&gc=gc", "/item/846113/",
    "http://www.getchu.com/soft.phtml?id=846113", "https://www.getchu.com/item/846113/?gc=gc"])
def test_normalise_item_link(href: str) -> None:
    assert getchu.normalise_item_link(href, BASE) == f"{BASE}/item/846113/?gc=gc"


@pytest.mark.parametrize("href", [
    "/php/search.phtml?search_brand_id=1", "https://order.zams.biz/comike/cart.phtml?article_id=846113",
    "https://dl.getchu.com/item/846113/", "/soft.phtml?id=abc", "", "#pagetop"])
def test_normalise_item_link_rejects_other_links(href: str) -> None:
    assert getchu.normalise_item_link(href, BASE) is None


def test_url_builders() -> None:
    assert getchu.keyword_search_url(BASE, "妹") == (
        f"{BASE}/php/search.phtml?search_keyword=%CB%E5&genre=pc_soft&gc=gc")
    assert getchu.month_url(BASE + "/", 2015, 5) == (
        f"{BASE}/all/month_title.html?genre=pc_soft&gage=all&year=2015&month=5")
    assert getchu.brand_search_url(BASE, 4522) == (
        f"{BASE}/php/search.phtml?search_brand_id=4522&list_count=5000&genre=pc_soft&gc=gc")
    assert getchu.item_url(BASE, "12") == f"{BASE}/item/12/?gc=gc"


def test_decode_page() -> None:
    assert getchu.decode_page("①番".encode("euc_jis_2004")) == "①番"  # JIS X 0213, not in euc_jp
    assert getchu.decode_page("妹".encode("utf-8"), "EUC-JP") == "妹"  # mislabelled UTF-8
    assert getchu.decode_page("妹".encode("euc_jp")) == "妹"
    assert getchu.decode_page(b"ok \xff\xfe") == "ok \ufffd\ufffd"  # never raises
    # "©" in UTF-8 is also a valid EUC-JP kanji: only the server's own label settles it.
    assert getchu.decode_page("© 2025".encode("utf-8"), "UTF-8") == "© 2025"
    assert getchu.decode_page("© 2025".encode("utf-8"), "text/html; charset=utf-8") == "© 2025"
    assert getchu.decode_page("妹".encode("euc_jp"), "text/html; charset=EUC-JP") == "妹"
    assert getchu.decode_page("妹".encode("cp932"), "Shift_JIS") == "妹"


def regen() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for path in captures():
        (GOLDEN / f"{path.name}.json").write_text(dumps(outcome(path)), encoding="utf-8")
        print(f"wrote {GOLDEN.name}/{path.name}.json")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regen"]:
        sys.exit(f"usage: {sys.argv[0]} --regen")
    if not CAPTURES.is_dir():
        sys.exit(f"getchu captures are absent ({CAPTURES})")
    regen()
