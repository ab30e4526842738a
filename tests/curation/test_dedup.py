"""Groups, keepers, borderline pairs, and the bar on real data: the three known
near-duplicate pairs of ../shared/data are grouped at any resolution with the default
HashConfig, and no other pair among anime + outliers + paintings comes within its radius.

    .venv/bin/python tests/curation/test_dedup.py --table
prints the distances behind the default (every algorithm and size) for the report.
"""

from __future__ import annotations

import itertools
import random
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image, ImageOps

if __name__ == "__main__":  # run as a script for --table: tests/ is imported from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from curation.dedup import (  # noqa: E402
    DEFAULT_POLICY, Candidate, borderline, choose_keeper, dup_groups, group_near_duplicates, is_lossless,
    open_index, union_groups,
)
from curation.hashes import HashConfig, image_hashes  # noqa: E402
from curation.nearindex import MultiIndexHash  # noqa: E402
from curation.nearindex_store import save_index  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

SHARED_DATA = shared_path("data")
KNOWN_PAIRS = {  # ../shared/data/README.md, "Near-duplicates"
    ("anime/style2paints_ref_32.png", "outliers/near_duplicate/style2paints_v1_test21.jpg"),
    ("anime/waifu2x-ncnn-vulkan_0.jpg", "outliers/near_duplicate/waifu2x-ncnn-vulkan_2.png"),
    ("outliers/odd_format/danbooru_countergirl-prophoto.jpg", "outliers/tiny/danbooru_countergirl.png"),
}
SIZES = ("full", 64, 128, 256)


def cand(id_: str, w: int = 100, h: int = 100, lossless: bool = True, original: bool = True,
         when: datetime | None = None, nbytes: int = 1000) -> Candidate:
    return Candidate(id_, w, h, lossless, original, when, nbytes)


# ---- groups ------------------------------------------------------------------------------

def test_union_groups_is_transitive_and_order_free() -> None:
    pairs = [("d", "c"), ("b", "c"), ("x", "y"), ("b", "a")]
    groups = union_groups(pairs, ids=["a", "b", "c", "d", "e", "x", "y"])
    assert groups == {"a": "a", "b": "a", "c": "a", "d": "a", "e": "e", "x": "x", "y": "x"}
    for seed in range(5):
        shuffled = [tuple(random.Random(seed).sample(p, 2)) for p in random.Random(seed).sample(pairs, len(pairs))]
        assert union_groups(shuffled, ids=sorted(groups)) == groups
    assert union_groups([("p", "q", 3)]) == {"p": "p", "q": "p"}  # distances may ride along


def test_keeper_policy_orderings() -> None:
    big_jpeg = cand("a", 1280, 800, lossless=False)
    small_png = cand("b", 480, 300, lossless=True)
    assert choose_keeper([small_png, big_jpeg]) == "a"  # largest first
    assert choose_keeper([small_png, big_jpeg], "lossless,largest") == "b"

    png, jpeg = cand("p", lossless=True), cand("j", lossless=False)
    assert choose_keeper([jpeg, png]) == "p"  # same size: lossless wins

    repost, original = cand("r", original=False), cand("o", original=True)
    assert choose_keeper([repost, original]) == "o"

    t1, t2 = datetime(2020, 1, 1, tzinfo=timezone.utc), datetime(2021, 1, 1)  # naive = UTC
    early, late, unknown = cand("z", when=t1), cand("m", when=t2), cand("a", when=None)
    assert choose_keeper([late, unknown, early]) == "z"  # earliest; unknown dates last
    assert choose_keeper([late, unknown, early], "latest") == "m"
    assert choose_keeper([cand("b"), cand("a")]) == "a"  # all equal: by id, stable
    assert choose_keeper([cand("a", nbytes=1), cand("b", nbytes=9)], "most_bytes") == "b"
    # criteria apply in order: a repost at full size beats a smaller original by default
    big_repost, small_original = cand("x", 200, 200, original=False), cand("y", 100, 100)
    assert choose_keeper([big_repost, small_original]) == "x"
    assert choose_keeper([big_repost, small_original], "original,largest") == "y"
    with pytest.raises(ValueError, match="unknown"):
        choose_keeper([png], "largest,prettiest")


def test_dup_groups_rows_with_distance_to_the_keeper() -> None:
    hashes = {"a": 0b0000, "b": 0b0011, "c": 0b1111, "d": 0xFF00, "e": [0xF0F0, 0xFF01]}
    pairs = [("a", "b", 2), ("b", "c", 2), ("d", "e", 1)]
    cands = [cand("a", 10, 10), cand("b", 20, 20), cand("c", 30, 30), cand("d", 50, 50), cand("e", 50, 50), cand("s")]
    rows = dup_groups(pairs, cands, hashes=hashes | {"s": 1})
    table = {r.crop_id: (r.group_id, r.keeper, r.distance) for r in rows}
    assert table == {
        "a": ("a", False, 4), "b": ("a", False, 2), "c": ("a", True, 0),  # a~b~c, c is largest
        "d": ("d", True, 0), "e": ("d", False, 1),  # e's second hash variant is the near one
        "s": ("s", True, 0),
    }
    assert {r.policy for r in rows} == {DEFAULT_POLICY} and len(rows) == len(cands)
    # without hashes: the shortest chain of pair distances (an upper bound)
    assert {r.crop_id: r.distance for r in dup_groups(pairs, cands)}["a"] == 4
    with pytest.raises(ValueError, match="no Candidate"):
        dup_groups([("a", "zz", 1)], cands)


def test_borderline_pairs_around_the_radius() -> None:
    pairs = [("a", "b", 3), ("a", "c", 6), ("a", "d", 8), ("a", "e", 10), ("a", "f", 11)]
    marked = borderline(pairs, radius=8, margin=2)
    assert [(m.b, m.grouped) for m in marked] == [("d", True), ("c", True), ("e", False)]
    assert "radius 8" in marked[0].reason


def test_is_lossless() -> None:
    assert is_lossless("PNG") and is_lossless("bmp") and not is_lossless("JPEG") and not is_lossless("AVIF")
    assert is_lossless("WEBP", b"RIFF\x00\x00\x00\x00WEBPVP8L") and not is_lossless("WEBP", b"RIFF....WEBPVP8 ")
    assert not is_lossless("WEBP", b"RIFF....WEBPVP8X....ALPH....VP8 ")


def test_open_index_and_group_near_duplicates(tmp_path) -> None:
    cfg = HashConfig()
    folder = tmp_path / "manifests" / "nearindex" / "phash64"
    index = open_index(folder, cfg)
    index.add(["a", "b", "c", "d"], [0, 0b111, 0xFF, 0xFFFF_FFFF])  # a-b 3, a-c 8, b-c 5
    save_index(index, folder)
    index = open_index(folder, cfg)
    rows, review = group_near_duplicates(index, [cand("a"), cand("b", 200, 200), cand("c"), cand("d")], cfg)
    assert {r.crop_id: (r.group_id, r.keeper) for r in rows} == {
        "a": ("a", False), "b": ("a", True), "c": ("a", False), "d": ("d", True)}
    assert [(m.a, m.b, m.distance) for m in review] == [("a", "c", 8)]
    with pytest.raises(ValueError, match="library_version|algorithm"):
        open_index(folder, HashConfig("dhash", 64))


# ---- the bar on real data ---------------------------------------------------------------

def shared_files() -> list[str]:
    return sorted(p.relative_to(SHARED_DATA).as_posix() for folder in ("anime", "outliers", "paintings")
                  for p in (SHARED_DATA / folder).rglob("*") if p.is_file())


def sized_versions(rel: str) -> dict[str, Image.Image]:
    """The whole image (first frame, upright, alpha kept) and copies whose longer side is
    64, 128 and 256 px, as crops of one artwork at different resolutions would be."""
    with Image.open(SHARED_DATA / rel) as im:
        im.seek(0)
        im = ImageOps.exif_transpose(im)
        im = im.convert("RGBA" if im.has_transparency_data else "RGB")
    out = {"full": im}
    for side in SIZES[1:]:
        scale = side / max(im.size)
        out[str(side)] = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    return out


def shared_hashes(cfg: HashConfig) -> dict[str, dict[str, list[int]]]:
    """file -> size -> hash variants."""
    return {rel: {size: list(image_hashes(im, cfg).values()) for size, im in sized_versions(rel).items()}
            for rel in shared_files()}


def distance_table(hashes: dict[str, dict[str, list[int]]]) -> tuple[dict, tuple]:
    """For each known pair, (min, max) distance over every pair of sizes; and the closest
    other pair over every pair of sizes."""
    def d(a, b):
        return min((x ^ y).bit_count() for x in a for y in b)
    known, closest = {}, (10**9, "", "")
    for a, b in itertools.combinations(sorted(hashes), 2):
        ds = [d(hashes[a][sa], hashes[b][sb]) for sa in hashes[a] for sb in hashes[b]]
        if (a, b) in KNOWN_PAIRS:
            known[(a, b)] = (min(ds), max(ds))
        elif min(ds) < closest[0]:
            closest = (min(ds), a, b)
    return known, closest


@pytest.fixture(scope="module")
def shared() -> None:
    if not (SHARED_DATA / "anime").is_dir():
        pytest.skip(f"../shared/data is absent ({SHARED_DATA})")


def test_known_near_duplicates_group_at_any_resolution_and_nothing_else(shared) -> None:
    cfg = HashConfig()  # the default is the claim
    hashes = shared_hashes(cfg)
    assert len(hashes) >= 110
    index = MultiIndexHash(cfg.bits, cfg.search_radius, meta=cfg.as_dict())
    ids, values = [], []
    for rel, sizes in hashes.items():
        for size, variants in sizes.items():
            ids += [f"{rel}@{size}"] * len(variants)
            values += variants
    index.add(ids, values)
    pairs = [(a, b, d) for a, b, d in index.pairs_within(cfg.radius) if a.split("@")[0] != b.split("@")[0]]

    # nothing but the known pairs, at any pair of sizes
    assert {tuple(sorted((a.split("@")[0], b.split("@")[0]))) for a, b, _ in pairs} == KNOWN_PAIRS
    # and the known pairs at every pair of sizes (4 x 4 combinations each)
    found = {(a, b) for a, b, _ in pairs}
    for a, b in KNOWN_PAIRS:
        for sa, sb in itertools.product(SIZES, SIZES):
            x, y = f"{a}@{sa}", f"{b}@{sb}"
            assert (min(x, y), max(x, y)) in found, (x, y)

    # grouped by file, the default policy keeps the larger file, then the lossless one
    file_pairs = {(a.split("@")[0], b.split("@")[0], d) for a, b, d in pairs}
    cands = []
    for rel in hashes:
        with Image.open(SHARED_DATA / rel) as im:
            cands.append(Candidate(rel, im.width, im.height, is_lossless(im.format or "", (SHARED_DATA / rel).read_bytes()[:4096]), True, None,
                                   (SHARED_DATA / rel).stat().st_size))
    rows = dup_groups(sorted(file_pairs), cands, hashes={rel: hashes[rel]["full"] for rel in hashes})
    keepers = {r.group_id: r.crop_id for r in rows if r.keeper}
    grouped = {r.crop_id: r.group_id for r in rows if sum(x.group_id == r.group_id for x in rows) > 1}
    assert len(grouped) == 6 and len(set(grouped.values())) == 3
    assert sorted(keepers[g] for g in set(grouped.values())) == [
        "outliers/near_duplicate/style2paints_v1_test21.jpg",  # 1280x800 over 480x300
        "outliers/near_duplicate/waifu2x-ncnn-vulkan_2.png",  # the 2x upscale is larger
        "outliers/tiny/danbooru_countergirl.png",  # same size: the PNG over the JPEG
    ]


def print_table() -> None:
    print("| config | " + " | ".join(Path(b).name for _, b in sorted(KNOWN_PAIRS)) + " | closest other pair |")
    print("|---|---|---|---|---|")
    for algorithm, bits in (("dhash", 64), ("phash", 64), ("dhash", 256), ("phash", 256)):
        for variants in (True, False):
            cfg = HashConfig(algorithm, bits, radius=1, alpha_variants=variants)
            known, (dmin, a, b) = distance_table(shared_hashes(cfg))
            cells = [f"{known[p][0]}-{known[p][1]}" for p in sorted(KNOWN_PAIRS)]
            label = f"{algorithm}-{bits}" + ("" if variants else " (no alpha variant)")
            print(f"| {label} | " + " | ".join(cells) + f" | {dmin} ({Path(a).name} / {Path(b).name}) |")


if __name__ == "__main__":
    if sys.argv[1:] != ["--table"]:
        sys.exit(f"usage: {sys.argv[0]} --table")
    print_table()
