"""MyAnimeList parsers on the saved pages in ../shared/sites/myanimelist, against golden output.

After a deliberate parser change, rewrite the golden files and read their diff:
    .venv/bin/python tests/spiders/test_parse_myanimelist.py --regen
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

if __name__ == "__main__":  # run as a script for --regen: tests/ is imported from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from spiders.parsing import Blocked, NotFound, PageError, Parsed, Truncated, Unavailable  # noqa: E402
from spiders.sites import myanimelist as mal  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

SITES = shared_path("sites")
CAPTURES = SITES / "myanimelist"
GOLDEN = Path(__file__).resolve().parent / "golden" / "myanimelist"

if not CAPTURES.is_dir() and __name__ != "__main__":
    pytest.skip(f"the MyAnimeList captures are absent ({CAPTURES}); they live in ../shared/sites",
                allow_module_level=True)

MAL = "https://myanimelist.net"
JIKAN = "https://api.jikan.moe/v4"
LOCAL = "http://127.0.0.1:8123"

# capture file -> (parser, the URL it was fetched from)
CASES: dict[str, tuple[Callable[[str, str], Parsed], str]] = {
    "character_116281_Momonga_2018-06-29.html": (mal.parse_html_character, f"{MAL}/character/116281"),
    "character_105591_pictures_2018-07-08.html": (mal.parse_html_pictures, f"{MAL}/character/105591/jikan/pictures"),
    "character_1_pictures_2018-07-11.html": (mal.parse_html_pictures, f"{MAL}/character/1/jikan/pictures"),
    "character_search_q-Fate_2018-07-10.html": (mal.parse_html_character_list, f"{MAL}/character.php?q=Fate"),
    "error_503_service_unavailable_2018-06-30.html": (mal.parse_html_character, f"{MAL}/person/1"),
    "jikan_v4_characters_-1_404.json": (mal.parse_jikan_character, f"{JIKAN}/characters/-1"),
    "jikan_v4_characters_105591_pictures_replica.json": (mal.parse_jikan_pictures,
                                                         f"{JIKAN}/characters/105591/pictures"),
    "jikan_v4_characters_425.json": (mal.parse_jikan_character, f"{JIKAN}/characters/425"),
    "jikan_v4_top_characters_page1_replica.json": (mal.parse_jikan_character_list, f"{JIKAN}/top/characters?page=1"),
    "modern_excerpt_anime_characters_staff.html": (mal.parse_html_anime_characters,
                                                   f"{MAL}/anime/1/Cowboy_Bebop/characters"),
    "modern_excerpt_character_1_Spike_Spiegel.html": (mal.parse_html_character, f"{MAL}/character/1/Spike_Spiegel"),
    "modern_excerpt_character_search.html": (mal.parse_html_character_list, f"{MAL}/character.php?q=Spike"),
    "modern_excerpt_pics_page.html": (mal.parse_html_pictures, f"{MAL}/anime/1/Cowboy_Bebop/pics"),
    "modern_excerpt_top_characters_page1.html": (mal.parse_html_character_list, f"{MAL}/character.php?limit=0"),
}
ERROR_CAPTURES = {"error_503_service_unavailable_2018-06-30.html", "jikan_v4_characters_-1_404.json"}
HTML_PARSERS = [mal.parse_html_character, mal.parse_html_pictures, mal.parse_html_character_list,
                mal.parse_html_anime_characters]
JIKAN_PARSERS = [mal.parse_jikan_character, mal.parse_jikan_character_list, mal.parse_jikan_pictures]


def capture(name: str) -> str:
    return (CAPTURES / name).read_text(encoding="utf-8")


def outcome(name: str) -> dict[str, Any]:
    """What a capture parses to, or the error it raises, as plain JSON data."""
    parser, url = CASES[name]
    try:
        result = parser(capture(name), url).as_dict()
    except PageError as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    return json.loads(json.dumps(result))


def golden_text(name: str) -> str:
    return json.dumps(outcome(name), ensure_ascii=False, indent=1, sort_keys=True) + "\n"


# ---------------------------------------------------------------- golden files

def test_every_capture_has_a_case():
    saved = {p.name for p in CAPTURES.iterdir() if p.suffix in (".html", ".json")}
    assert saved == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    golden = GOLDEN / f"{name}.json"
    assert golden.exists(), f"no golden file for {name}: run this module with --regen, then read it"
    assert outcome(name) == json.loads(golden.read_text(encoding="utf-8"))


def test_golden_counts():
    """The numbers read off the captures by hand, so a bad regen cannot slip through."""
    counts = {name: outcome(name) for name in CASES}
    assert len(counts["character_1_pictures_2018-07-11.html"]["items"]) == 15
    assert len(counts["character_105591_pictures_2018-07-08.html"]["items"]) == 3
    assert len(counts["character_search_q-Fate_2018-07-10.html"]["follow"]) == 50
    assert len(counts["jikan_v4_characters_105591_pictures_replica.json"]["items"]) == 3
    momonga = counts["character_116281_Momonga_2018-06-29.html"]["info"]
    assert (momonga["mal_id"], momonga["name"], momonga["name_kanji"], momonga["favorites"]) == (
        116281, "Momonga", "モモンガ", 3755)
    assert momonga["nicknames"] == ["Ainz Ooal Gown", "Momon"]
    spike = counts["modern_excerpt_character_1_Spike_Spiegel.html"]["items"][0]
    assert spike["image_url"] == "https://cdn.myanimelist.net/images/characters/11/516853.jpg"
    assert spike["extra"]["favorites"] == 49189
    assert counts["error_503_service_unavailable_2018-06-30.html"]["error"] == "Unavailable"
    assert counts["jikan_v4_characters_-1_404.json"]["error"] == "NotFound"


def test_every_item_is_full_size_and_from_myanimelist():
    checked = 0
    for name in set(CASES) - ERROR_CAPTURES:
        for item in outcome(name)["items"]:
            checked += 1
            assert item["source"] == "myanimelist"
            assert item["image_url"].startswith("https://")
            assert "/r/" not in item["image_url"] and "?" not in item["image_url"]
            assert mal.full_size_image_url(item["image_url"]) == item["image_url"]
            assert (item["artist"], item["rating"], item["license"]) == ("", "", "")
            assert item["source_id"].endswith("/" + Path(item["image_url"]).stem)
    # Every item the golden files hold, and at least the 22 test_golden_counts read off the captures by hand.
    golden = sum(len(json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8")).get("items", [])) for name in CASES)
    assert checked == golden >= 22, (checked, golden)


# ---------------------------------------------------------------- image URLs

@pytest.mark.parametrize("thumb, full", [
    ("https://cdn.myanimelist.net/r/42x62/images/characters/9/310307.jpg?s=1422edf1e44c7b6262386330461eecfd",
     "https://cdn.myanimelist.net/images/characters/9/310307.jpg"),
    ("https://cdn.myanimelist.net/images/characters/9/310307t.jpg",
     "https://cdn.myanimelist.net/images/characters/9/310307.jpg"),
    ("https://cdn.myanimelist.net/images/characters/9/310307t.webp",
     "https://cdn.myanimelist.net/images/characters/9/310307.webp"),
    ("https://cdn.myanimelist.net/r/50x78/images/characters/8/406163t.jpg?s=60d1",
     "https://cdn.myanimelist.net/images/characters/8/406163.jpg"),
    ("https://myanimelist.cdn-dena.com/r/23x32/images/characters/4/226585.jpg?s=d234ff14c48241f52809684930d5a968",
     "https://myanimelist.cdn-dena.com/images/characters/4/226585.jpg"),
    ("https://myanimelist.cdn-dena.com/images/voiceactors/3/18359v.jpg",
     "https://myanimelist.cdn-dena.com/images/voiceactors/3/18359.jpg"),
    ("https://cdn.myanimelist.net/images/characters/1/12l.jpg",
     "https://cdn.myanimelist.net/images/characters/1/12.jpg"),
    ("https://cdn.myanimelist.net/r/42x62/images/anime/4/19644.jpg?s=42d7666179a2851c99fada2e0ceb5da1",
     "https://cdn.myanimelist.net/images/anime/4/19644.jpg"),
])
def test_full_size_image_url_thumbnails(thumb, full):
    assert mal.full_size_image_url(thumb) == full
    assert mal.full_size_image_url(full) == full


@pytest.mark.parametrize("url", [
    "https://cdn.myanimelist.net/images/characters/11/516853.jpg",
    "https://cdn.myanimelist.net/images/characters/14/303453.webp",
    "https://myanimelist.cdn-dena.com/images/characters/3/288006.jpg",
    "https://cdn.myanimelist.net/images/anime/7/3791l.jpg",  # an anime cover's large size is its full size
    "https://example.com/images/characters/1/123t.jpg",  # not MAL's CDN: its letters mean something else
    "https://example.com/pic.jpg?size=2",
    "https://cdn.myanimelist.net/images/questionmark_23.gif",
])
def test_full_size_image_url_leaves_full_urls_alone(url):
    assert mal.full_size_image_url(url) == url


def test_full_size_image_url_elsewhere_drops_only_resize_and_signature():
    assert mal.full_size_image_url("http://127.0.0.1:8123/r/42x62/images/characters/1/2t.jpg?s=ab") == (
        "http://127.0.0.1:8123/images/characters/1/2t.jpg")


def test_is_placeholder():
    assert mal.is_placeholder("https://cdn.myanimelist.net/r/42x62/images/questionmark_23.gif")
    assert mal.is_placeholder("https://myanimelist.cdn-dena.com/images/questionmark_23.gif?s=1")
    assert mal.is_placeholder("") and mal.is_placeholder(None)
    assert not mal.is_placeholder("https://cdn.myanimelist.net/images/characters/11/516853.jpg")


# ---------------------------------------------------------------- URL builders

def test_url_builders():
    assert mal.jikan_top_characters_url(f"{LOCAL}/v4/", 2) == f"{LOCAL}/v4/top/characters?page=2"
    assert mal.jikan_anime_characters_url(JIKAN, 1) == f"{JIKAN}/anime/1/characters"
    assert mal.jikan_character_search_url(JIKAN, "Fate T", 3) == (
        f"{JIKAN}/characters?q=Fate+T&page=3&order_by=favorites&sort=desc")
    assert mal.jikan_character_pictures_url(JIKAN, 105591) == f"{JIKAN}/characters/105591/pictures"
    assert mal.jikan_character_url(JIKAN, 425) == f"{JIKAN}/characters/425/full"
    assert mal.html_top_characters_url(MAL, 1) == f"{MAL}/character.php?limit=0"
    assert mal.html_top_characters_url(LOCAL + "/", 3) == f"{LOCAL}/character.php?limit=100"
    assert mal.html_character_search_url(MAL, "Fate", 1) == f"{MAL}/character.php?q=Fate"
    assert mal.html_character_search_url(MAL, "Fate", 2) == f"{MAL}/character.php?q=Fate&show=50"
    assert mal.html_character_pictures_url(MAL, 1) == f"{MAL}/character/1/x/pics"
    assert mal.html_character_pictures_url(MAL, 1, "Spike_Spiegel") == f"{MAL}/character/1/Spike_Spiegel/pics"
    assert mal.html_anime_characters_url(MAL, 1) == f"{MAL}/anime/1/x/characters"


# ---------------------------------------------------------------- pages that must raise

@pytest.mark.parametrize("name", sorted(set(CASES) - ERROR_CAPTURES))
def test_capture_cut_at_half_is_truncated(name):
    parser, url = CASES[name]
    text = capture(name)
    with pytest.raises(Truncated):
        parser(text[: len(text) // 2], url)


@pytest.mark.parametrize("parser", HTML_PARSERS)
def test_503_page_is_unavailable_for_every_html_parser(parser):
    with pytest.raises(Unavailable, match="currently unavailable"):
        parser(capture("error_503_service_unavailable_2018-06-30.html"), f"{MAL}/character/1/x/pics")


@pytest.mark.parametrize("parser", JIKAN_PARSERS)
def test_jikan_404_is_not_found_for_every_jikan_parser(parser):
    with pytest.raises(NotFound):
        parser(capture("jikan_v4_characters_-1_404.json"), f"{JIKAN}/characters/1/pictures")


@pytest.mark.parametrize("body, error, retry_after", [
    ({"status": 429, "type": "RateLimitException", "message": "You are being rate limited"}, Unavailable, 60),
    ({"status": 500, "type": "ParserException", "message": "Unable to parse this request"}, Unavailable, None),
    ({"status": 503, "type": "ServiceUnavailableException", "message": "Maintenance"}, Unavailable, None),
    ({"status": 400, "type": "BadRequestException", "message": "Invalid order_by"}, PageError, None),
    ({"pagination": {"has_next_page": False}}, Truncated, None),
    ({"data": {"mal_id": 1}}, Truncated, None),  # a list endpoint answering an object
    ([], Truncated, None),
])
def test_jikan_error_bodies(body, error, retry_after):
    with pytest.raises(error) as caught:
        mal.parse_jikan_character_list(json.dumps(body), f"{JIKAN}/top/characters?page=1")
    assert type(caught.value) is error
    assert caught.value.retry_after == retry_after
    if retry_after:
        assert "rate limited" in str(caught.value)


CLOUDFLARE_WALL = ("<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
                   "<script>window._cf_chl_opt={cType: 'managed'};</script></body></html>")


@pytest.mark.parametrize("parser", HTML_PARSERS + JIKAN_PARSERS)
def test_bot_wall_is_blocked(parser):
    url = f"{JIKAN}/characters/1/pictures" if parser in JIKAN_PARSERS else f"{MAL}/character/1/x/pics"
    with pytest.raises(Blocked):
        parser(CLOUDFLARE_WALL, url)


def test_whole_pictures_page_with_its_gallery_cut_out_is_truncated():
    text = capture("character_1_pictures_2018-07-11.html").replace("js-picture-gallery", "gone")
    with pytest.raises(Truncated):
        mal.parse_html_pictures(text, f"{MAL}/character/1/x/pictures")


def test_pictures_page_that_says_it_has_none_is_empty():
    text = re.sub(r'<h2 class="mb8">Pictures</h2><table.*?</table>',
                  '<h2 class="mb8">Pictures</h2>No pictures have been submitted for this character.',
                  capture("character_105591_pictures_2018-07-08.html"), flags=re.S)
    parsed = mal.parse_html_pictures(text, f"{MAL}/character/105591/x/pics")
    assert parsed.items == [] and parsed.info["pictures"] == 0


def test_character_page_without_its_markers_is_truncated():
    text = capture("character_116281_Momonga_2018-06-29.html").replace("Member Favorites", "")
    with pytest.raises(Truncated):
        mal.parse_html_character(text, f"{MAL}/character/116281")


# ---------------------------------------------------------------- pagination and crawl hosts

def test_jikan_next_page_keeps_the_query_and_the_configured_base():
    body = json.loads(capture("jikan_v4_top_characters_page1_replica.json"))
    body["pagination"].update(has_next_page=True, last_visible_page=7)
    url = mal.jikan_character_search_url(f"{LOCAL}/v4", "Lelouch", 1)
    parsed = mal.parse_jikan_character_list(json.dumps(body), url)
    assert parsed.next_page == mal.jikan_character_search_url(f"{LOCAL}/v4", "Lelouch", 2)
    assert parsed.follow == [f"{LOCAL}/v4/characters/417/pictures", f"{LOCAL}/v4/characters/40/pictures"]
    assert parsed.info["has_next_page"] is True and parsed.info["last_visible_page"] == 7


def test_jikan_top_list_next_page():
    body = json.loads(capture("jikan_v4_top_characters_page1_replica.json"))
    body["pagination"]["has_next_page"] = True
    parsed = mal.parse_jikan_character_list(json.dumps(body), f"{JIKAN}/top/characters?page=4")
    assert parsed.next_page == f"{JIKAN}/top/characters?page=5"


def test_jikan_anime_cast_shape():
    spike = "https://cdn.myanimelist.net/images/characters/11/516853.jpg"
    body = {"data": [
        {"character": {"mal_id": 1, "url": f"{MAL}/character/1/Spike_Spiegel", "name": "Spiegel, Spike",
                       "images": {"jpg": {"image_url": spike}}},
         "role": "Main", "favorites": 49190, "voice_actors": []},
        {"character": {"mal_id": 2, "url": f"{MAL}/character/2/Nobody", "name": "Nobody",
                       "images": {"jpg": {"image_url": "https://cdn.myanimelist.net/images/questionmark_23.gif"}}},
         "role": "Supporting", "favorites": 3},
    ]}
    parsed = mal.parse_jikan_character_list(json.dumps(body), f"{LOCAL}/v4/anime/1/characters")
    assert parsed.next_page is None
    assert parsed.follow == [f"{LOCAL}/v4/characters/1/pictures", f"{LOCAL}/v4/characters/2/pictures"]
    assert [i.source_id for i in parsed.items] == ["character/1/516853"]  # the placeholder is no picture
    assert parsed.items[0].extra == {"mal_id": 1, "name_kanji": None, "nicknames": [], "favorites": 49190,
                                     "role": "Main"}
    assert parsed.info["characters"][1] == {"mal_id": 2, "name": "Nobody", "name_kanji": None, "favorites": 3,
                                            "image_url": None, "role": "Supporting"}


def test_jikan_pictures_take_the_name_from_the_spider_and_drop_duplicates():
    pics = json.loads(capture("jikan_v4_characters_105591_pictures_replica.json"))
    pics["data"].append({"jpg": {"image_url": "https://cdn.myanimelist.net/r/42x62/images/characters/7/262087t.jpg"}})
    parsed = mal.parse_jikan_pictures(json.dumps(pics), f"{LOCAL}/v4/characters/105591/pictures",
                                      character="Latifa Fleuranza", page_url=f"{MAL}/character/105591/Latifa")
    assert len(parsed.items) == 3
    assert {i.character for i in parsed.items} == {"Latifa Fleuranza"}
    assert {i.page_url for i in parsed.items} == {f"{MAL}/character/105591/Latifa"}


def test_jikan_full_character_takes_its_main_anime_as_title():
    body = json.loads(capture("jikan_v4_characters_425.json"))
    body["data"]["anime"] = [{"role": "Supporting", "anime": {"mal_id": 9, "title": "Guest Spot"}},
                             {"role": "Main", "anime": {"mal_id": 457, "title": "Mushishi"}}]
    parsed = mal.parse_jikan_character(json.dumps(body), f"{JIKAN}/characters/425/full")
    assert parsed.items[0].title == "Mushishi"
    assert parsed.info["anime"][1] == {"mal_id": 457, "title": "Mushishi", "role": "Main"}


def test_html_search_pager_and_links_follow_the_crawl_host():
    parsed = mal.parse_html_character_list(capture("character_search_q-Fate_2018-07-10.html"),
                                           f"{LOCAL}/character.php?q=Fate")
    assert parsed.next_page == f"{LOCAL}/character.php?q=Fate&show=50"
    assert parsed.follow[0] == f"{LOCAL}/character/1896/Fate_Testarossa"
    assert parsed.info["characters"][0]["url"] == f"{MAL}/character/1896/Fate_Testarossa"
    assert parsed.info["characters"][0]["nicknames"] == ["Fate T. Harlaown", "Har"]


def test_html_top_list_next_link():
    text = capture("modern_excerpt_top_characters_page1.html").replace(
        "</table>", '</table><h2><div><span><a href="?limit=50" class="next">Next 50</a></span></div></h2>')
    parsed = mal.parse_html_character_list(text, f"{LOCAL}/character.php?limit=0")
    assert parsed.next_page == f"{LOCAL}/character.php?limit=50"
    assert parsed.info["has_next_page"] is True


def test_html_character_follows_its_pictures_on_the_crawl_host():
    parsed = mal.parse_html_character(capture("character_116281_Momonga_2018-06-29.html"),
                                      f"{LOCAL}/character/116281")
    assert parsed.follow == [f"{LOCAL}/character/116281/Momonga/pics"]
    assert parsed.items[0].page_url == f"{MAL}/character/116281/Momonga"


def regen() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in sorted(CASES):
        (GOLDEN / f"{name}.json").write_text(golden_text(name), encoding="utf-8")
        print("wrote", GOLDEN / f"{name}.json")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regen"]:
        sys.exit(f"usage: {sys.argv[0]} --regen   (rewrites {GOLDEN}; the tests run under pytest)")
    regen()
