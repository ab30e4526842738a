"""DeviantArt parsers against the saved captures in ../shared/sites/deviantart, with golden output.

Rewrite the golden files after a deliberate parser change, then read the diff:
    .venv/bin/python tests/spiders/test_parse_deviantart.py --regen
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
if __name__ == "__main__":
    sys.path.insert(0, str(REPO))

from tests.conftest import shared_path  # noqa: E402

SITES = shared_path("sites")
CAPTURES = SITES / "deviantart"
GOLDEN = Path(__file__).resolve().parent / "golden" / "deviantart"

if __name__ != "__main__" and not CAPTURES.is_dir():
    pytest.skip(f"the DeviantArt captures are absent ({CAPTURES})", allow_module_level=True)

from spiders.parsing import Blocked, NotFound, PageError, Truncated, Unavailable  # noqa: E402
from spiders.sites import deviantart as da  # noqa: E402

RSS_PAGE = da.rss_search_url(da.RSS_URL, "furry headshot")
TAGS_PAGE = da.browse_tags_url(da.API_URL, "furry")


def _error(exc: Exception) -> dict[str, str]:
    return {"error": type(exc).__name__, "message": str(exc)}


def _outcome(fn: Callable[[], Any]) -> Any:
    """What a capture yields, or the error it raises, as JSON-ready data."""
    try:
        result = fn()
    except PageError as exc:
        return _error(exc)
    return result.as_dict() if hasattr(result, "as_dict") else result


def _rss(text: str) -> Any:
    return _outcome(lambda: da.parse_rss(text, RSS_PAGE))


def _browse(text: str) -> Any:
    return _outcome(lambda: da.parse_browse_tags(text, TAGS_PAGE))


def _deviation_list(text: str) -> Any:
    # The capture is a bare list of Deviation objects: serve it as the last page of /browse/tags.
    return _browse(json.dumps({"has_more": False, "next_offset": None, "results": json.loads(text)}))


def _error_bodies(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, sample in json.loads(text).items():
        if isinstance(sample, dict):
            exc = da.api_error(json.dumps(sample["body"]))
            out[name] = {"http_status": sample["http_status"], **(_error(exc) if exc else {"error": None})}
        elif isinstance(sample, list):
            # Descriptions seen without their error code: what the description alone maps to.
            for desc in sample:
                exc = da.api_error(json.dumps({"error_description": desc, "status": "error"}))
                out[f"{name}: {desc}"] = _error(exc) if exc else {"error": None}
    return out


GOLDEN_CASES: dict[str, Callable[[str], Any]] = {
    "rss_real_2018_trimmed.xml": _rss,
    "rss_structure_2019_searx_fixture.xml": _rss,
    "rss_item_2015_real.xml": _rss,
    "rss_2024_testfixture_minimal.xml": _rss,
    "rss_search_furry-headshot_replica.xml": _rss,
    "cloudfront_403_request_blocked.html": _rss,
    # A search page (or a login page) where a feed was asked for must raise, not parse as empty.
    "search_page_html_replica.html": _rss,
    "api_browse_tags_response_replica.json": _browse,
    "api_deviation_objects_2018-2019.json": _deviation_list,
    "api_error_bodies.json": _error_bodies,
    "oauth_token_client_credentials_replica.json": lambda text: _outcome(lambda: da.parse_token(text)),
    "deviation_page_head_replica.html": lambda text: {"page_opted_out": da.page_opted_out(text)},
}


def _read(name: str) -> str:
    return (CAPTURES / name).read_text(encoding="utf-8")


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def regen() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, fn in GOLDEN_CASES.items():
        (GOLDEN / f"{name}.json").write_text(_dump(fn(_read(name))), encoding="utf-8")
        print("wrote", GOLDEN / f"{name}.json")


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden(name):
    golden = GOLDEN / f"{name}.json"
    assert golden.exists(), f"no golden file for {name}: run this module with --regen"
    assert _dump(GOLDEN_CASES[name](_read(name))) == golden.read_text(encoding="utf-8")


def test_every_capture_has_a_golden_case():
    captures = {p.name for p in CAPTURES.iterdir() if p.is_file() and p.name != "SOURCES.md"}
    assert captures == set(GOLDEN_CASES)


# ---------------------------------------------------------------- RSS


def test_rss_search_url():
    assert da.rss_search_url(da.RSS_URL, "furry headshot") == \
        "https://backend.deviantart.com/rss.xml?type=deviation&q=furry+headshot"
    assert da.rss_search_url(da.RSS_URL, "furry headshot", order=5, offset=120) == \
        "https://backend.deviantart.com/rss.xml?type=deviation&q=furry+headshot&order=5&offset=120"
    assert da.rss_search_url("http://127.0.0.1:8000/rss.xml", "favby:someone") == \
        "http://127.0.0.1:8000/rss.xml?type=deviation&q=favby%3Asomeone"


def test_rel_next_is_the_next_offset_url():
    furry = da.parse_rss(_read("rss_search_furry-headshot_replica.xml"), RSS_PAGE)
    assert furry.next_page == da.rss_search_url(da.RSS_URL, "furry headshot", offset=60)
    searx = da.parse_rss(_read("rss_structure_2019_searx_fixture.xml"), RSS_PAGE)
    assert searx.next_page == da.rss_search_url(da.RSS_URL, "test", order=9, offset=60)
    # DA's own parameter order is kept as sent, not rebuilt.
    real = da.parse_rss(_read("rss_real_2018_trimmed.xml"), RSS_PAGE)
    assert real.next_page == ("https://backend.deviantart.com/rss.xml?type=deviation&offset=120"
                              "&q=favedbyid%3A4471416&order=9")
    assert da.parse_rss(_read("rss_item_2015_real.xml"), RSS_PAGE).next_page is None


def test_paging_through_generated_feeds():
    url, offsets = da.rss_search_url(da.RSS_URL, "furry headshot"), []
    for page in range(3):
        nxt = da.rss_search_url(da.RSS_URL, "furry headshot", offset=60 * (page + 1)).replace("&", "&amp;")
        link = f'<atom:link rel="next" href="{nxt}"/>' if page < 2 else ""
        feed = (f'<rss xmlns:atom="{da.NS["atom"]}" version="2.0"><channel><title>t</title>{link}'
                "</channel></rss>")
        parsed = da.parse_rss(feed, url)
        if parsed.next_page is None:
            break
        url = parsed.next_page
        offsets.append(url.rsplit("offset=", 1)[1])
    assert offsets == ["60", "120"]


def test_feed_cut_in_half_raises_truncated():
    text = _read("rss_real_2018_trimmed.xml")
    with pytest.raises(Truncated):
        da.parse_rss(text[: len(text) // 2], RSS_PAGE)
    for cut in (len(text) // 10, text.rindex("</item>") + len("</item>"), text.rindex("</rss>"), len(text) - 3):
        with pytest.raises(Truncated):
            da.parse_rss(text[:cut], RSS_PAGE)


def test_empty_channel_is_an_empty_page():
    feed = '<?xml version="1.0"?><rss version="2.0"><channel><title>DeviantArt: x</title></channel></rss>'
    parsed = da.parse_rss(feed, RSS_PAGE)
    assert parsed.items == [] and parsed.next_page is None
    assert parsed.info == {"channel_title": "DeviantArt: x", "items_in_feed": 0, "skipped": {}}


def test_cloudfront_page_raises_blocked_everywhere():
    page = _read("cloudfront_403_request_blocked.html")
    assert da.is_block_page(page)
    with pytest.raises(Blocked, match="CloudFront.*wait") as exc:
        da.parse_rss(page, RSS_PAGE)
    assert exc.value.retry_after == da.BLOCK_WAIT
    with pytest.raises(Blocked):
        da.parse_browse_tags(page, TAGS_PAGE)
    with pytest.raises(Blocked):
        da.parse_token(page)
    assert isinstance(da.api_error(page), Blocked)
    assert not da.is_block_page(_read("search_page_html_replica.html"))
    assert not da.is_block_page(_read("rss_real_2018_trimmed.xml"))


def test_rss_fields_of_the_replica():
    parsed = da.parse_rss(_read("rss_search_furry-headshot_replica.xml"), RSS_PAGE)
    first, adult = parsed.items
    assert (first.source_id, first.artist, first.rating) == ("1100000001", "ExampleVulpine", "nonadult")
    assert first.image_url.endswith("dabc001-pre.jpg?token=REPLICA_TOKEN_1")  # signed URL kept whole
    assert first.tags == ("furry", "headshot", "commission", "fox", "anthro")
    assert first.published_at == "2025-06-03T10:12:44-07:00"  # PDT
    assert first.extra["thumb_url"].endswith("-300w.jpg?token=REPLICA_TOKEN_1")
    assert adult.rating == "adult" and adult.tags == ()
    assert parsed.info["skipped"] == {"document": 1}


def test_pst_offset_and_creative_commons_license():
    items = da.parse_rss(_read("rss_real_2018_trimmed.xml"), RSS_PAGE).items
    photo = next(i for i in items if i.source_id == "15396166")
    assert photo.published_at == "2005-02-21T13:19:49-08:00"  # PST
    assert photo.license == "http://creativecommons.org/licenses/by-nc-nd/3.0/"
    assert photo.page_url == "https://photoport.deviantart.com/art/Loved-and-loving-15396166"


# ---------------------------------------------------------------- token and API


def test_token_url_from_api_base():
    assert da.token_url(da.API_URL) == "https://www.deviantart.com/oauth2/token"
    assert da.token_url("http://127.0.0.1:8123/api/v1/oauth2") == "http://127.0.0.1:8123/oauth2/token"


def test_token_errors():
    with pytest.raises(PageError, match="invalid_client") as exc:
        da.parse_token('{"error": "invalid_client", "error_description": "Invalid client_id", "status": "error"}')
    assert type(exc.value) is PageError
    with pytest.raises(Unavailable):
        da.parse_token('{"error": "server_error", "error_description": "Internal error", "status": "error"}')
    with pytest.raises(Truncated):
        da.parse_token('{"access_token": "abc", "tok')


def test_browse_tags_url():
    assert TAGS_PAGE == ("https://www.deviantart.com/api/v1/oauth2/browse/tags?tag=furry&offset=0"
                         "&limit=50&mature_content=false")
    assert da.browse_tags_url(da.API_URL + "/", "fox", offset=50, limit=10, mature=True).endswith(
        "/oauth2/browse/tags?tag=fox&offset=50&limit=10&mature_content=true")
    for bad in ("furry headshot", "furry\theadshot", ""):
        with pytest.raises(ValueError):
            da.browse_tags_url(da.API_URL, bad)
    with pytest.raises(ValueError):
        da.browse_tags_url(da.API_URL, "fox", limit=51)


def test_browse_tags_paging_and_ids():
    parsed = da.parse_browse_tags(_read("api_browse_tags_response_replica.json"), TAGS_PAGE)
    assert parsed.next_page == da.browse_tags_url(da.API_URL, "furry", offset=2)
    assert [i.source_id for i in parsed.items] == ["778616560", "440614315"]
    last = json.dumps({"has_more": False, "next_offset": None, "results": []})
    assert da.parse_browse_tags(last, TAGS_PAGE).next_page is None
    stuck = json.dumps({"has_more": True, "next_offset": 0, "results": []})
    assert da.parse_browse_tags(stuck, TAGS_PAGE).next_page is None


def test_browse_tags_skips_paywalled_and_falls_back_to_uuid():
    objs = json.loads(_read("api_browse_tags_response_replica.json"))["results"]
    paywalled = {**objs[0], "tier_access": "locked"}
    no_number = {**objs[1], "url": "https://sta.sh/0abc"}
    body = json.dumps({"has_more": False, "results": [paywalled, no_number]})
    parsed = da.parse_browse_tags(body, TAGS_PAGE)
    assert parsed.info["skipped"] == {"paywalled": 1}
    assert parsed.items[0].source_id == "CC79FBC8-735B-CF92-88AF-D1FCAE147939"
    assert parsed.items[0].extra["deviation_id"] is None


def test_api_error_mapping():
    assert da.api_error(_read("api_browse_tags_response_replica.json")) is None
    limit = '{"error": "user_api_threshold", "error_description": "User request limit reached.", "status": "error"}'
    exc = da.api_error(limit)
    assert isinstance(exc, Unavailable) and exc.retry_after == da.RATE_LIMIT_WAIT
    assert da.api_error(limit, retry_after=7).retry_after == 7
    expired = da.api_error('{"error": "invalid_token", "error_description": "x", "status": "error"}')
    assert isinstance(expired, da.TokenExpired) and isinstance(expired, Unavailable)
    assert isinstance(da.api_error('{"error_description": "User not found.", "status": "error"}'), NotFound)
    assert isinstance(da.api_error('{"results": [], "has_'), Truncated)
    with pytest.raises(NotFound):
        da.parse_browse_tags('{"error": "invalid_request", "error_description": "Api endpoint not found.", '
                             '"status": "error"}', TAGS_PAGE)


# ---------------------------------------------------------------- AI opt-out


@pytest.mark.parametrize("content,expected", [
    ("noai, noimageai", True), ("noimageai", True), ("NOAI", True), ("index,follow,noai", True),
    ("noimageai noai", True), ("index, follow", False), ("", False), ("noaiX", False),
])
def test_page_opted_out_forms(content, expected):
    page = f'<html><head><meta name="Robots" content="{content}"></head><body></body></html>'
    assert da.page_opted_out(page) is expected


def test_page_without_robots_meta_is_not_opted_out():
    assert not da.page_opted_out(_read("search_page_html_replica.html"))


@pytest.mark.parametrize("values,expected", [
    (["noai"], True), (["noimageai"], True), (["googlebot: noai"], True), (["noindex", "noai, noimageai"], True),
    (["otherbot: noindex, noimageai"], True), (["NoAI"], True),
    (["noindex, nofollow"], False), ([], False), (["unavailable_after: 25 Jun 2010 15:00:00 PST"], False),
])
def test_header_opted_out_forms(values, expected):
    assert da.header_opted_out(values) is expected


if __name__ == "__main__":
    if "--regen" in sys.argv[1:]:
        regen()
    else:
        print(__doc__)
