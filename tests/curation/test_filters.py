"""The filters of `headshot process`: each verdict on pictures built in code, then the bar on
the real pictures of ../shared/data (skipped when that folder is absent)."""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from curation import filters as F
from manifests.records import FilterResult, from_table, to_table
from replicas.drawn import draw_face

CFG = F.FilterConfig()


# --- pictures built in code ---------------------------------------------------------------

def grey_drawing(seed: int = 1, size: int = 256) -> Image.Image:
    """A black-and-white drawing stored as RGB: R == G == B everywhere."""
    return draw_face(seed, size).convert("L").convert("RGB")


def sepia(seed: int = 2, size: int = 256) -> Image.Image:
    return ImageOps.colorize(draw_face(seed, size).convert("L"), black=(44, 28, 12), white=(252, 242, 222))


def duotone(seed: int = 3, size: int = 256) -> Image.Image:
    """A gradient map through navy, orange and cream: two inks, one colour per grey level."""
    return ImageOps.colorize(draw_face(seed, size).convert("L"), black=(12, 40, 90), white=(252, 214, 150),
                             mid=(238, 130, 52))


def line_art(seed: int = 4, size: int = 256, ink: tuple[int, int, int] = (90, 40, 30)) -> Image.Image:
    edges = np.asarray(draw_face(seed, size).convert("L").filter(ImageFilter.FIND_EDGES)) > 24
    a = np.full((size, size, 3), 255, np.uint8)
    a[edges] = ink
    return Image.fromarray(a)


def tinted_print(seed: int = 5, size: int = 256) -> Image.Image:
    """Like a two-colour manga print: orange paper, orange halftone dots, navy lines."""
    im = Image.new("RGB", (size, size), (250, 205, 137))
    d = ImageDraw.Draw(im)
    for y in range(0, size, 12):
        for x in range((y // 12) % 2 * 6, size, 12):
            d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(241, 145, 73))
    a = np.asarray(im).copy()
    a[np.asarray(draw_face(seed, size).convert("L").filter(ImageFilter.FIND_EDGES)) > 24] = (5, 58, 93)
    return Image.fromarray(a)


def screentone(seed: int = 6, size: int = 256) -> Image.Image:
    g = np.asarray(draw_face(seed, size).convert("L"), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    dots = (np.sin(xx * 1.2) * np.sin(yy * 1.2) + 1) * 127.5
    return Image.fromarray(np.where(g > dots, 255, 20).astype(np.uint8)).convert("RGB")


def cut_out(im: Image.Image, hidden: tuple[int, int, int]) -> Image.Image:
    """The background made fully transparent, with a loud colour hidden under it."""
    a = np.asarray(im.convert("RGB")).copy()
    bg = np.all(a == a[0, 0], axis=2)
    a[bg] = hidden
    alpha = np.where(bg, 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([a, alpha]))


def blank(size: int = 256) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(np.clip(rng.normal(236, 2, (size, size, 3)), 0, 255).astype(np.uint8))


# --- config, versions, records ---------------------------------------------------------------

def test_config_is_json_and_versions_are_named():
    cfg = F.FilterConfig(min_published=datetime(2015, 1, 1))
    d = json.loads(json.dumps(cfg.as_dict()))
    assert d["min_published"] == "2015-01-01T00:00:00+00:00"
    assert set(d) >= {"min_colour", "max_tint_share", "min_sharpness", "min_face_side", "min_face_share",
                      "keep_undated", "doubtful_margin"}
    for name in ("monochrome", "sharpness", "face_size", "face_share", "published_after"):
        assert f"{name}={F.VERSIONS[name]}" in F.FILTERS_VERSION


def test_verdicts_become_ledger_rows():
    verdicts = F.run_face_filters(120, 120, 400, 400, draw_face(0, 128), datetime(2020, 5, 1), CFG)
    rows = [v.record("crop-1") for v in verdicts]
    assert all(isinstance(r, FilterResult) for r in rows)
    back = from_table(FilterResult, to_table(FilterResult, rows))
    assert [(r.filter, r.passed, r.doubtful, r.version) for r in back] == \
        [(v.filter, v.passed, v.doubtful, v.version) for v in verdicts]
    for v in verdicts:
        assert v.version == F.VERSIONS[v.filter]
        if math.isfinite(v.score) and math.isfinite(v.threshold):
            assert v.passed == (v.score >= v.threshold)  # re-tuning from the ledger is a comparison


def test_where_each_filter_runs():
    assert [v.filter for v in F.run_image_filters(draw_face(0, 256))] == ["monochrome", "photo"]
    face = F.run_face_filters(100, 100, 300, 300, draw_face(0, 128), None)
    assert [v.filter for v in face] == ["face_size", "face_share", "sharpness", "monochrome", "published_after"]


# --- the registry: one class per filter ----------------------------------------------------

# What filter_version gave before the filters became classes: the ledger of every existing
# workspace holds these, and a different string for the same settings re-runs that filter.
# monochrome 2 (tinted paper by area, sketches, accents) and face_share 2 (its part of the picture
# when several faces were found) re-run those filters alone, by design.
GOLDEN_VERSIONS = [
    (F.FilterConfig(), {"monochrome": "2+14f56d0d", "sharpness": "1+c26816bd", "face_size": "1+a830cbd6",
                        "face_share": "2+26e09ad6", "published_after": "1+749e6695", "faces": "0+44136fa3"}),
    (F.FilterConfig(min_sharpness=0.8, doubtful_margin=0.1),
     {"monochrome": "2+162de93b", "sharpness": "1+8db75ba8", "face_size": "1+e43af941",
      "face_share": "2+a445624a", "published_after": "1+749e6695"}),
    (F.FilterConfig(min_published=datetime(2015, 1, 1), keep_undated=False),
     {"monochrome": "2+14f56d0d", "published_after": "1+3c1a15d8"}),
]


@pytest.mark.parametrize("cfg,want", GOLDEN_VERSIONS)
def test_filter_versions_are_byte_identical_to_the_ledger_s(cfg, want):
    from curation import process

    assert {name: F.filter_version(name, cfg) for name in want} == want
    assert process.filter_version is F.filter_version
    assert (process.FILTER_FIELDS, process.IMAGE_FILTERS, process.FACE_FILTERS) == \
        (F.FILTER_FIELDS, F.IMAGE_FILTERS, F.FACE_FILTERS)


def test_every_registered_filter_keeps_the_contract():
    filters = F.registered()
    names = [f.name for f in filters]
    assert len(names) == len(set(names)) and set(names) >= {"monochrome", "sharpness", "face_size", "face_share",
                                                            "published_after"}
    config_fields = {f.name for f in fields(F.FilterConfig)}
    ledger_fields = {f.name for f in fields(FilterResult)}
    for f in filters:
        assert f.version and F.VERSIONS[f.name] == f.version
        assert f.reads and set(f.reads) <= config_fields, (f.name, f.reads)
        assert set(f.judges) <= {F.IMAGE, F.FACE} and f.judges
        assert set(f.writes) <= ledger_fields and f.features
        assert F.FILTER_FIELDS[f.name] == f.reads
        assert (f.name in F.IMAGE_FILTERS) == (F.IMAGE in f.judges)
        assert (f.name in F.FACE_FILTERS) == (F.FACE in f.judges)
    assert list(F.FACE_FILTERS) == [n for n in names if n in F.FACE_FILTERS]  # run order is the registry's


# Other values for every setting: a filter's verdict must not move with one it does not read,
# or changing that setting would leave its stale verdicts in the ledger.
OTHER = {"min_colour": 3.0, "max_tint_share": 0.3, "min_paper_share": 0.5, "min_colour_area": 0.9,
         "min_edge_crispness": 0.9, "photo_doubt": 0.3, "min_sharpness": 0.95, "min_face_side": 300,
         "min_face_share": 0.5, "min_published": datetime(2030, 1, 1), "keep_undated": False,
         "doubtful_margin": 0.9, "doubtful_days": 5000.0}


def test_a_verdict_moves_only_with_the_settings_its_filter_reads():
    assert set(OTHER) == {f.name for f in fields(F.FilterConfig)}  # a new setting needs a value here
    base = F.FilterConfig(min_published=datetime(2016, 1, 1))
    subjects = {F.IMAGE: [F.Subject.of_image(im) for im in (draw_face(3, 256), tinted_print(), grey_drawing())],
                F.FACE: [F.Subject.of_face(w, w, 400, 300, crop, when) for w, crop, when in (
                    (50, draw_face(4, 128).filter(ImageFilter.GaussianBlur(1.2)), datetime(2015, 12, 20)),
                    (120, draw_face(5, 128), None), (250, tinted_print(6, 128), datetime(2020, 1, 1)))]}
    for f in F.registered():
        for kind in f.judges:
            for subject in subjects[kind]:
                score = f.score(subject)
                want = f.judge(score, base)
                for name, value in OTHER.items():
                    moved = f.judge(score, replace(base, **{name: value})) != want
                    assert not moved or name in f.reads, (f.name, name, "is read but not in reads")
                    assert (F.filter_version(f.name, replace(base, **{name: value})) !=
                            F.filter_version(f.name, base)) == (name in f.reads)


def test_register_refuses_a_filter_that_breaks_the_contract():
    class Unknown(F.Filter):
        name, version, reads = "unknown_setting", "1", ("min_whatever",)

    class Twin(F.Filter):
        name, version, reads = "monochrome", "9", ("min_colour",)

    class Nameless(F.Filter):
        version, reads = "1", ("min_colour",)

    for cls in (Unknown, Twin, Nameless):
        with pytest.raises(ValueError):
            F.register(cls)
    assert F.VERSIONS["monochrome"] == "2" and "unknown_setting" not in [f.name for f in F.registered()]


class PictureWidth(F.Filter):
    """A filter that lives in this test file only: the picture's width against min_face_side."""

    name = "test_picture_width"
    version = "7"
    reads = ("min_face_side", "doubtful_margin")
    judges = (F.IMAGE, F.FACE)
    order = 60

    def score(self, subject):
        return F.Score(subject.image_w)


def test_a_filter_defined_in_a_test_flows_through_the_stage_and_the_learner():
    from curation.review import features
    from curation.review.items import Item

    F.register(PictureWidth)
    try:
        assert [v.filter for v in F.run_image_filters(draw_face(0, 256))] == ["monochrome", "photo",
                                                                              "test_picture_width"]
        face = F.run_face_filters(100, 100, 40, 300, draw_face(0, 128), None)
        assert [v.filter for v in face] == ["face_size", "face_share", "sharpness", "monochrome", "published_after",
                                            "test_picture_width"]
        v = face[-1]
        assert (v.score, v.threshold, v.passed, v.version) == (40, 64, False, "7")
        assert v.reason == "test_picture_width 40 < 64"
        assert F.filter_version(v.filter, replace(CFG, min_face_side=32)) != F.filter_version(v.filter, CFG) == \
            F.filter_version(v.filter, replace(CFG, min_sharpness=0.9))

        names = features.FEATURE_NAMES
        assert {"test_picture_width.ratio", "test_picture_width.passed", "test_picture_width.present"} <= set(names)
        assert len(names) == len(set(names))
        it = Item("x", "s", "crops/x.png", "lbp", 1.0, reasons=[
            {"filter": r.filter, "score": r.score, "threshold": r.threshold, "passed": r.passed}
            for r in (v.record("x") for v in face)])
        f = dict(zip(features.LEDGER_NAMES, features.ledger_features(it)))
        assert len(f) == len(features.LEDGER_NAMES)
        assert f["test_picture_width.present"] == 1 and f["test_picture_width.passed"] == 0
        assert f["test_picture_width.ratio"] == pytest.approx(math.log2(40 / 64))
    finally:
        F.unregister(PictureWidth.name)
    assert "test_picture_width.present" not in features.FEATURE_NAMES
    assert [v.filter for v in F.run_image_filters(draw_face(0, 256))] == ["monochrome", "photo"]


def test_deterministic():
    im = draw_face(5, 256)
    assert F.monochrome(im) == F.monochrome(im.copy())
    assert F.sharpness(im) == F.sharpness(im.copy())


# --- monochrome ---------------------------------------------------------------------------

@pytest.mark.parametrize("make", [grey_drawing, sepia, duotone, line_art, tinted_print, screentone,
                                  lambda: line_art(ink=(30, 60, 140))])
def test_monochrome_flags_one_ink_pictures(make):
    v = F.monochrome(make())
    assert not v.passed, v.reason
    assert v.filter == "monochrome" and v.threshold == CFG.min_colour and v.score < v.threshold


def test_monochrome_reasons_say_why():
    assert F.monochrome(grey_drawing()).reason.startswith("one colour per lightness")
    tinted = F.monochrome(tinted_print())
    assert tinted.reason.startswith("tinted paper") and "orange" in tinted.reason
    assert "threshold 1.05" in tinted.reason  # both raw numbers stay in the reason


@pytest.mark.parametrize("seed", range(6))
def test_monochrome_keeps_colour_faces(seed):
    for size in (64, 128, 256, 512):
        v = F.monochrome(draw_face(seed, size))
        assert v.passed and not v.doubtful, v.reason
        assert v.reason.startswith("colour picture")


def test_monochrome_handles_modes():
    face = draw_face(9, 256)
    assert not F.monochrome(face.convert("L")).passed
    assert not F.monochrome(face.convert("LA")).passed
    assert not F.monochrome(Image.fromarray(np.asarray(face.convert("L")).astype(np.uint16) * 257)).passed
    assert F.monochrome(face.convert("P")).passed
    assert F.monochrome(face.quantize(64)).passed
    assert F.monochrome(face.convert("CMYK")).passed
    assert F.monochrome(face.convert("RGBA")) == F.monochrome(face)  # opaque alpha changes nothing


def test_monochrome_ignores_what_transparency_hides():
    assert not F.monochrome(cut_out(grey_drawing(8), hidden=(255, 0, 0))).passed
    assert F.monochrome(cut_out(draw_face(7, 256), hidden=(0, 0, 0))).passed
    gone = F.monochrome(Image.new("RGBA", (64, 64), (255, 0, 0, 0)))
    assert not gone.passed and gone.reason.startswith("nothing visible")


def test_monochrome_doubtful_near_the_threshold():
    # A pale colour picture: the face mixed 85% of the way to its own grey version.
    face = draw_face(2, 256)
    v = F.monochrome(Image.blend(face, face.convert("L").convert("RGB"), 0.85))
    assert v.doubtful and not v.passed, v
    assert F.monochrome(Image.blend(face, face.convert("L").convert("RGB"), 0.8)).doubtful
    assert not F.monochrome(grey_drawing()).doubtful


# --- sharpness ----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_sharpness_keeps_flat_shaded_faces(size):
    for seed in range(6):
        v = F.sharpness(draw_face(seed, size))
        assert v.passed and not v.doubtful, v.reason
        assert F.sharpness(draw_face(seed, size).convert("RGB").resize((size, size))).passed


def test_sharpness_fails_blur_upscales_and_blank():
    face = draw_face(11, 256)
    soft = F.sharpness(face.filter(ImageFilter.GaussianBlur(3)))
    assert not soft.passed and soft.reason.startswith("soft"), soft.reason
    blocky = F.sharpness(draw_face(12, 64).resize((256, 256), Image.NEAREST))
    assert not blocky.passed and blocky.reason.startswith("blocky"), blocky.reason
    assert "rows repeat every 4" in blocky.reason
    upscaled = F.sharpness(draw_face(12, 64).resize((256, 256), Image.BICUBIC))
    assert not upscaled.passed and upscaled.reason.startswith("soft")
    empty = F.sharpness(blank())
    assert not empty.passed and empty.reason.startswith("near-blank") and empty.score == 0
    tiny = F.sharpness(draw_face(1, 12))
    assert not tiny.passed and tiny.reason.startswith("too small")


def test_sharpness_on_transparent_faces():
    assert F.sharpness(cut_out(draw_face(13, 256), hidden=(0, 255, 0))).passed
    assert not F.sharpness(cut_out(draw_face(13, 256), hidden=(0, 255, 0)).filter(ImageFilter.GaussianBlur(3))).passed


def test_sharpness_doubtful_for_a_light_blur():
    v = F.sharpness(draw_face(4, 256).filter(ImageFilter.GaussianBlur(1.2)))
    assert v.doubtful and abs(v.score - CFG.min_sharpness) <= CFG.doubtful_margin * CFG.min_sharpness


# --- face size and share ------------------------------------------------------------------

def test_face_size():
    small = F.face_size(52, 56)
    assert (small.passed, small.score, small.threshold, small.doubtful) == (False, 52, 64, True)
    assert "52 px < the 64 px minimum" in small.reason
    big = F.face_size(200, 210)
    assert big.passed and not big.doubtful
    assert not F.face_size(30, 30).doubtful


def test_face_share():
    full_body = F.face_share(80, 80, 512, 1024)
    assert not full_body.passed and full_body.score == pytest.approx(6400 / (512 * 1024))
    assert "full-body" in full_body.reason
    assert F.face_share(300, 300, 600, 600).passed
    near = F.face_share(100, 100, 600, 600)  # 2.8%
    assert not near.passed and near.doubtful
    assert not F.face_share(50, 50, 0, 0).passed


# --- publication date ---------------------------------------------------------------------

def test_published_after():
    cfg = F.FilterConfig(min_published=datetime(2015, 1, 1))
    after = F.published_after(datetime(2015, 7, 2, 12, tzinfo=timezone.utc), cfg)
    assert after.passed and not after.doubtful and after.score == pytest.approx(2015.5, abs=0.01)
    assert after.threshold == 2015.0
    before = F.published_after(datetime(2012, 3, 4), cfg)
    assert not before.passed and "before the cutoff 2015-01-01" in before.reason
    on_the_day = F.published_after(datetime(2015, 1, 1), cfg)  # a release date has no time: kept
    assert on_the_day.passed and on_the_day.doubtful
    assert F.published_after(datetime(2014, 12, 31, 23, tzinfo=timezone(timedelta(hours=-3))), cfg).passed
    assert not F.published_after(datetime(2014, 12, 31, 23, tzinfo=timezone(timedelta(hours=3))), cfg).passed


def test_published_after_without_date_or_cutoff():
    cfg = F.FilterConfig(min_published=datetime(2015, 1, 1))
    undated = F.published_after(None, cfg)
    assert undated.passed and undated.reason.startswith("no date") and math.isnan(undated.score)
    strict = F.published_after(None, F.FilterConfig(min_published=datetime(2015, 1, 1), keep_undated=False))
    assert not strict.passed and strict.reason.startswith("no date")
    off = F.published_after(datetime(1999, 1, 1), F.FilterConfig())
    assert off.passed and off.threshold == -math.inf
    assert F.published_after(datetime(2016, 1, 1), F.FilterConfig(min_published=date(2015, 6, 1))).passed


# --- the bar on ../shared/data -------------------------------------------------------------

def load(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.seek(0)  # first frame of an animation
        im = ImageOps.exif_transpose(im)
        im.load()
        return im


def scaled_centre(im: Image.Image, side: int = 128) -> Image.Image:
    """The centre square scaled to `side` px: what the stage's face crops look like."""
    w, h = im.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return im.convert("RGBA").resize((side, side), Image.LANCZOS, box=box)


def native_centre(im: Image.Image, side: int = 128) -> Image.Image:
    """The centre `side` px at stored resolution (often a patch of dress or background)."""
    w, h = im.size
    x, y = max(0, (w - side) // 2), max(0, (h - side) // 2)
    return im.crop((x, y, x + min(side, w), y + min(side, h)))


@pytest.fixture(scope="module")
def shared_images(shared_data):
    folders = {"anime": shared_data / "anime", "monochrome": shared_data / "outliers" / "monochrome"}
    return {k: [(p.name, load(p)) for p in sorted(d.iterdir()) if p.is_file()] for k, d in folders.items()}


def _failures(images, fn, want_pass: bool, *crops):
    out = []
    for name, im in images:
        for crop in (lambda x: x, *crops):
            v = fn(crop(im))
            if v.passed != want_pass:
                out.append((name, round(v.score, 3), v.reason))
    return out


def test_every_monochrome_picture_is_flagged(shared_images):
    assert len(shared_images["monochrome"]) == 10
    assert _failures(shared_images["monochrome"], F.monochrome, False, scaled_centre) == []


def test_no_colour_picture_is_flagged_monochrome(shared_images):
    assert len(shared_images["anime"]) == 54
    assert _failures(shared_images["anime"], F.monochrome, True, scaled_centre, native_centre) == []


def test_no_anime_picture_is_flagged_blurry(shared_images):
    assert _failures(shared_images["anime"], F.sharpness, True, scaled_centre, native_centre) == []


def test_blurred_anime_copies_are_flagged(shared_images):
    blurred = [(n, scaled_centre(im, 256).filter(ImageFilter.GaussianBlur(3))) for n, im in shared_images["anime"]]
    assert _failures(blurred, F.sharpness, False) == []
    blocky = [(n, scaled_centre(im, 64).resize((256, 256), Image.NEAREST)) for n, im in shared_images["anime"][::5]]
    assert _failures(blocky, F.sharpness, False) == []
