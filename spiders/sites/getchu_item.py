"""getchu item pages: one row per character (portrait chara<N>, full body charab<N>), in the
current layout and the legacy one. Split from getchu.py, which re-exports `parse_item`; what the
two share is in getchu_common.py."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

from parsel import Selector

from spiders.parsing import ImageItem, NotFound, Parsed, Truncated

from .getchu_common import (
    SOURCE,
    _clean,
    _has_class,
    _iso_date,
    _lines,
    _origin,
    _product_id_of,
    _require_closing,
    _text,
    check_page,
    item_url,
)

_ADULT_MARKER = "18歳未満の方は購入できません"
_RELATED_SUFFIX = "（このタイトルの関連商品）"
_PORTRAIT = re.compile(r"chara(\d+)\.(?:jpe?g|png|gif)$", re.I)
_FULLBODY = re.compile(r"charab(\d+)\.(?:jpe?g|png|gif)$", re.I)
_CV = re.compile(r"([（(])?\s*(?:CV|ＣＶ)\s*[：:]\s*(.*?)\s*$", re.I)
_READING = re.compile(r"^(.*?)\s*[（(]([^（）()]*)[）)]\s*$")


def _image_url(src: str | None, page_url: str) -> str | None:
    if not src or not src.strip():
        return None
    url = urljoin(page_url, src.strip())
    # Legacy pages say ./brandnew/...; fetched through /item/N/ that would land under
    # /item/N/brandnew/, but product images only ever live at the site root.
    parts = urlsplit(url)
    cut = parts.path.find("/brandnew/")
    if cut > 0:
        url = f"{parts.scheme}://{parts.netloc}{parts.path[cut:]}"
    return url


# ---------------------------------------------------------------- item pages

def _spec_rows(sel: Selector) -> dict[str, Selector]:
    """The `#soft_table` label rows ("発売日：" -> its value cell), first occurrence wins."""
    rows: dict[str, Selector] = {}
    for row in sel.xpath("//table[@id='soft_table']//tr[td]"):
        cells = row.xpath("./td")
        label = _text(cells[0])
        if len(cells) >= 2 and label.endswith(("：", ":")):
            rows.setdefault(label.rstrip("：:").strip(), cells[1])
    return rows


def _link_texts(cell: Selector | None) -> list[str]:
    if cell is None:
        return []
    texts = (_text(a) for a in cell.xpath(".//a"))
    return [t for t in texts if t and t != "[一覧]"]


def _artists(cell: Selector | None) -> list[str]:
    names = _link_texts(cell)
    if not names and cell is not None:
        names = [_clean(n) for n in re.split(r"[、,，/／]", _text(cell))]
    return [n for n in names if n]


def _brand(rows: dict[str, Selector], sel: Selector) -> tuple[str, str]:
    cell = rows.get("ブランド")
    name = ""
    if cell is not None:
        name = _text(cell.css("a.glance")) or _text(cell).replace("（このブランドの作品一覧）", "")
    scope = cell if cell is not None else sel.xpath("//table[@id='soft_table']")
    href = scope.xpath(".//a[contains(@href, 'search_brand_id=')]/@href").get() or ""
    match = re.search(r"search_brand_id=(\d+)", href)
    return _clean(name), match.group(1) if match else ""


def _page_product_id(sel: Selector, url: str) -> str | None:
    """The id the page gives itself (og:url, related-titles link), else the URL's."""
    for href in (sel.css("meta[property='og:url']::attr(content)").get(),
                 sel.css("#soft-title a::attr(href)").get()):
        match = re.search(r"(?:[?&]id=|search_reference_id=|/item/)(\d+)", href or "")
        if match:
            return match.group(1)
    return _product_id_of(url)


def _soft_title(sel: Selector) -> str:
    title = _text(sel.css("#soft-title"))
    if title.endswith(_RELATED_SUFFIX):
        title = title[: -len(_RELATED_SUFFIX)]
    return _clean(title)


def _character_rows(sel: Selector) -> list[tuple[Selector, Selector]]:
    """(row, name element) per character. The character table follows a キャラクター heading
    (h3 today, div in 2013); spacer rows hold only an <hr>, so rows are found from their
    `.chara-name`. Without the heading (layout drift) the whole page is searched."""
    headings = sel.xpath(f"//*[{_has_class('tabletitle')}][contains(., 'キャラクター')]")
    # A campaign heading may mention キャラクター too: the section titled exactly so comes first.
    headings = sorted(headings, key=lambda h: _text(h) != "キャラクター")
    scopes = [h.xpath("following::table[1]") for h in headings] + [sel]
    for scope in scopes:
        names = scope.xpath(f".//*[{_has_class('chara-name')}]")
        if names:
            return [((name.xpath("ancestor::tr[1]") or name.xpath(".."))[0], name)
                    for name in names]
    return []


def _name_parts(name_el: Selector) -> dict[str, str]:
    """"catch<br>name（reading）　CV：actor" -> its parts; the catch-line is optional."""
    lines, cv = _lines(name_el), ""
    for i, line in enumerate(lines):
        match = _CV.search(line)
        if match:
            cv, lines[i] = match.group(2), _clean(line[: match.start()])
            if match.group(1):  # "（CV：name）": drop the bracket that closes the opener
                cv = re.sub(r"[）)]$", "", cv)
            cv = _clean(cv)
    lines = [line for line in lines if line]
    name_line = lines[-1] if lines else ""
    match = _READING.match(name_line)
    name, reading = (match.group(1), match.group(2)) if match else (name_line, "")
    # The 2013 layout marks the bare name with <charalist>.
    name = _text(name_el.xpath(".//charalist")) or name
    return {"name": _clean(name), "reading": _clean(reading), "cv": cv,
            "catch": " ".join(lines[:-1])}


def _row_images(row: Selector, page_url: str) -> tuple[str | None, str | None]:
    portrait = fullbody = None
    for img in row.xpath(".//img"):
        # Old lazy-loaded pages keep the real image in data-original behind a spacer gif.
        src = img.attrib.get("data-original") or img.attrib.get("src") or ""
        if not portrait and _PORTRAIT.search(urlsplit(src).path):
            portrait = _image_url(src, page_url)
    for href in row.xpath(".//a/@href").getall():
        if _FULLBODY.search(urlsplit(href.strip()).path):
            fullbody = _image_url(href, page_url)
            break
    return portrait, fullbody


def _characters(sel: Selector, page_url: str) -> list[dict]:
    characters = []
    for position, (row, name_el) in enumerate(_character_rows(sel), start=1):
        portrait, fullbody = _row_images(row, page_url)
        number = next((int(m.group(1)) for m in (
            _PORTRAIT.search(urlsplit(portrait or "").path),
            _FULLBODY.search(urlsplit(fullbody or "").path)) if m), position)
        characters.append({"char_index": number, **_name_parts(name_el),
                           "portrait_url": portrait, "fullbody_url": fullbody})
    return characters


def _check_item_markers(sel: Selector, rows: dict[str, Selector], text: str, url: str) -> None:
    _require_closing(text, url)
    if not sel.css("#soft_table") and not sel.css("#soft-title"):
        raise NotFound(f"{url} is a complete page but not an item page (no #soft_table)")
    if not sel.css("#soft-title") or "発売日" not in rows:
        raise Truncated(f"{url} lacks item markers (#soft_table, #soft-title, 発売日 row)")


def parse_item(text: str, url: str) -> Parsed:
    """An item page: one ImageItem per character portrait and per full-body picture."""
    check_page(text, url)
    sel = Selector(text=text)
    rows = _spec_rows(sel)
    _check_item_markers(sel, rows, text, url)
    product_id = _page_product_id(sel, url)
    if not product_id:
        raise NotFound(f"no product id on {url}")
    page_url = item_url(_origin(url), product_id)
    brand, brand_id = _brand(rows, sel)
    release_text = _text(rows.get("発売日"))
    info = {
        "product_id": int(product_id), "title": _soft_title(sel), "brand": brand,
        "brand_id": brand_id, "release_date": _iso_date(release_text),
        "release_text": release_text, "artists": _artists(rows.get("原画")),
        "rating": "adult" if _ADULT_MARKER in text else "", "tags": _tags(rows),
        "characters": _characters(sel, page_url),
    }
    items = [item for character in info["characters"]
             for item in _character_items(character, info, page_url)]
    return Parsed(items=items, info=info)


def _tags(rows: dict[str, Selector]) -> list[str]:
    tags = [_text(rows.get("ジャンル"))]
    tags += _link_texts(rows.get("サブジャンル")) + _link_texts(rows.get("カテゴリ"))
    return list(dict.fromkeys(t for t in tags if t))


def _character_items(character: dict, info: dict, page_url: str) -> list[ImageItem]:
    items = []
    kinds = (("portrait", "chara", _PORTRAIT), ("fullbody", "charab", _FULLBODY))
    for kind, prefix, pattern in kinds:
        image_url = character[f"{kind}_url"]
        if not image_url:
            continue
        # The id names the file itself, so it stays put even if a page pairs chara3 with charab4.
        number = pattern.search(urlsplit(image_url).path).group(1)
        extra = {key: info[key] for key in ("product_id", "brand", "brand_id", "release_date")}
        extra.update(character, artists=list(info["artists"]), kind=kind)
        items.append(ImageItem(
            source=SOURCE, source_id=f"{info['product_id']}/{prefix}{number}",
            page_url=page_url, image_url=image_url, title=info["title"],
            artist=", ".join(info["artists"]), character=character["name"],
            tags=tuple(info["tags"]), rating=info["rating"], published_at=info["release_date"],
            extra=extra))
    return items


# ---------------------------------------------------------------- listings
