"""Face detection: golden boxes on real images, recall and false detections of the default
config on ../shared/data, the drawn-face regression test, decoding for detection.

Regenerate the golden boxes (after a deliberate detector change, and say why in the commit):
    .venv/bin/python tests/curation/test_detect.py --regen
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
if __name__ == "__main__":  # run as a script for --regen
    sys.path.insert(0, str(REPO))

from curation.detect import (DetectorConfig, Face, detect_faces, detector_version, disagreement, iou,  # noqa: E402
                             prepare, to_rgb)
from replicas.drawn import draw_face  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

SHARED_DATA = shared_path("data")
CASCADES = SHARED_DATA / "cascades"
GOLDEN = Path(__file__).parent / "golden" / "boxes.json"
CHECKED_FACES = Path(__file__).parent / "golden" / "anime_faces.json"  # boxes checked by eye

# Measured with bench/detect_eval.py: the default puts a box in all 54 images of anime/ and
# in none of outliers/no_face. Checked by eye, 53 of those images have a box on a face (the
# box in style2paints_ref_15, a profile bowed ~45 degrees, is on her skirt), so the test
# holds the 53 real ones and does not depend on keeping the false one.
DEFAULT_ANIME_RECALL = 53

# "lbp" is the anime cascade alone at its README's stock settings (no rotated passes).
GOLDEN_CONFIGS = {"lbp": DetectorConfig(detector="lbp", rotations=()), "default": DetectorConfig()}
GOLDEN_CASES = [
    ("anime/lbpcascade_figure_imas.png", "lbp"),  # 17 faces: the cascade's own README figure
    ("anime/lbpcascade_figure_imas.png", "default"),
    ("outliers/tiny/danbooru_test-rotation-180.jpg", "default"),  # EXIF orientation 3
    ("anime/tha3_crypko_00.png", "default"),  # RGBA, transparent background
    ("outliers/transparent/tha3_lambda_00.png", "default"),
    ("outliers/animated/danbooru_test-animated-400x281.gif", "default"),  # palette GIF, 2 frames
    ("anime/waifu2x_miku_bg.png", "default"),  # RGBA with an opaque alpha channel
    ("anime/style2paints_ref_30.png", "default"),  # a tilted head only a rotated pass finds
]


def needs_shared():
    if not (CASCADES / "lbpcascade_animeface.xml").is_file():
        pytest.skip(f"../shared is absent ({SHARED_DATA}): these tests read real images and the cascade from it")


def load(rel: str) -> Image.Image:
    return prepare((SHARED_DATA / rel).read_bytes())


COLUMNS = ["x", "y", "w", "h", "detector", "found_by", "angle"]


def as_rows(faces: list[Face]) -> list[list]:
    return [[f.x, f.y, f.w, f.h, f.detector, list(f.found_by), f.angle] for f in faces]


def compute_golden() -> dict:
    out: dict = {}
    for rel, name in GOLDEN_CASES:
        out.setdefault(rel, {})[name] = as_rows(detect_faces(load(rel), GOLDEN_CONFIGS[name], CASCADES))
    return out


def dump_golden(data: dict) -> str:
    """One box per line, so a diff shows which face moved."""
    lines = ["{", f' "_columns": {json.dumps(COLUMNS)},']
    items = sorted(data.items())
    for i, (rel, per_cfg) in enumerate(items):
        lines.append(f" {json.dumps(rel)}: {{")
        cfgs = sorted(per_cfg.items())
        for j, (name, rows) in enumerate(cfgs):
            body = ",\n".join(f"   {json.dumps(r)}" for r in rows)
            comma = "," if j < len(cfgs) - 1 else ""
            lines.append(f"  {json.dumps(name)}: [" + (f"\n{body}\n  ]" if rows else "]") + comma)
        lines.append(" }" + ("," if i < len(items) - 1 else ""))
    return "\n".join(lines) + "\n}\n"


# ---------------------------------------------------------------- golden boxes


@pytest.fixture(scope="module")
def golden():
    needs_shared()
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("rel,name", GOLDEN_CASES)
def test_golden_boxes(golden, rel, name):
    got = as_rows(detect_faces(load(rel), GOLDEN_CONFIGS[name], CASCADES))
    assert got == golden[rel][name], f"{rel} with {name}: rerun with --regen only if the change is deliberate"


def test_seventeen_faces_at_stock_settings(golden):
    assert len(golden["anime/lbpcascade_figure_imas.png"]["lbp"]) == 17
    assert len(golden["anime/lbpcascade_figure_imas.png"]["default"]) == 17


def test_exif_rotated_file_gives_upright_boxes(golden):
    im = load("outliers/tiny/danbooru_test-rotation-180.jpg")
    assert im.size == (66, 100)
    (x, y, w, h, *_), = golden["outliers/tiny/danbooru_test-rotation-180.jpg"]["default"]
    assert y + h / 2 < im.height / 2  # the head is in the top half once the image is upright


@pytest.mark.parametrize("orientation,store", [(6, Image.ROTATE_90), (8, Image.ROTATE_270), (3, Image.ROTATE_180)])
def test_exif_orientation_is_applied_before_detecting(orientation, store):
    needs_shared()
    upright = load("anime/waifu2x-ncnn-vulkan_0.jpg")
    want = detect_faces(upright, DetectorConfig(), CASCADES)
    assert want
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    upright.transpose(store).save(buf, "PNG", exif=exif.tobytes())  # lossless: same pixels back
    assert detect_faces(prepare(buf.getvalue()), DetectorConfig(), CASCADES) == want


def test_transparent_image_is_flattened_on_white():
    needs_shared()
    with Image.open(SHARED_DATA / "anime" / "tha3_crypko_00.png") as raw:
        assert raw.mode == "RGBA" and raw.getchannel("A").getextrema()[0] == 0
    im = load("anime/tha3_crypko_00.png")
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 255, 255)
    gif = load("outliers/animated/danbooru_test-animated-400x281.gif")
    assert gif.mode == "RGB" and gif.size == (400, 281)


# ---------------------------------------------------------------- recall and false detections


@pytest.fixture(scope="module")
def default_faces():
    """The default config over anime/ and no_face/, on two processes to keep the suite quick.
    Spawned, not forked: a fork after OpenCV has started its threads can hang."""
    import concurrent.futures as cf
    import multiprocessing
    import os
    from itertools import repeat

    needs_shared()
    files = [p for folder in ("anime", "outliers/no_face") for p in sorted((SHARED_DATA / folder).iterdir())]
    images = [prepare(p.read_bytes()) for p in files]
    with cf.ProcessPoolExecutor(min(2, os.cpu_count() or 1), mp_context=multiprocessing.get_context("spawn")) as pool:
        found = list(pool.map(detect_faces, images, repeat(DetectorConfig()), repeat(CASCADES)))
    out: dict = {"anime": {}, "outliers/no_face": {}}
    for p, faces in zip(files, found):
        out[str(p.parent.relative_to(SHARED_DATA))][p.name] = faces
    return out


def test_default_recall_on_anime(default_faces):
    checked = json.loads(CHECKED_FACES.read_text())["faces"]
    anime = default_faces["anime"]
    assert len(anime) == 54 and sorted(checked) == sorted(anime)
    on_face = [name for name, faces in anime.items() if any(iou(f.box, b) > 0.3 for f in faces for b in checked[name])]
    missed = sorted(set(anime) - set(on_face))
    assert len(on_face) >= DEFAULT_ANIME_RECALL, f"no box on a face in: {missed}"
    assert sum(bool(faces) for faces in anime.values()) >= DEFAULT_ANIME_RECALL


def test_default_finds_nothing_in_no_face(default_faces):
    assert len(default_faces["outliers/no_face"]) == 10
    assert {name: faces for name, faces in default_faces["outliers/no_face"].items() if faces} == {}


# ---------------------------------------------------------------- drawn face: a Pillow bump that breaks animeface


def test_animeface_detects_the_drawn_face():
    # animeface 2.0.3 reads Pillow's internal struct: Pillow >= 12 makes it find nothing, silently.
    faces = detect_faces(draw_face(0, 512), DetectorConfig(detector="animeface", rotations=()))
    assert len(faces) == 1 and faces[0].score >= 0.99
    f = faces[0]
    assert 0 <= f.x and f.x + f.w <= 512 and 0 <= f.y and f.y + f.h <= 512 and f.w > 200


def test_default_detects_the_drawn_face():
    needs_shared()
    faces = detect_faces(draw_face(0, 512), DetectorConfig(), CASCADES)
    assert len(faces) == 1 and "animeface" in faces[0].found_by


# ---------------------------------------------------------------- config, determinism, provenance, review


def test_config_json_is_canonical_and_round_trips():
    cfg = DetectorConfig()
    text = cfg.params_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert DetectorConfig.from_dict(json.loads(text)) == cfg
    assert DetectorConfig(min_neighbors=3).params_json() != text
    with pytest.raises(ValueError, match="detector"):
        DetectorConfig(detector="yolo")
    with pytest.raises(ValueError, match="members"):
        DetectorConfig(members=("lbp", "yolo"))
    with pytest.raises(ValueError, match="rule"):
        DetectorConfig(rule="majority")


def test_detection_is_deterministic_and_sorted():
    needs_shared()
    im = load("anime/lbpcascade_figure_imas.png")
    a = detect_faces(im, DetectorConfig(), CASCADES)
    assert a == detect_faces(im.copy(), DetectorConfig(), CASCADES)
    assert [(f.y, f.x) for f in a] == sorted((f.y, f.x) for f in a)
    assert all(isinstance(v, int) for f in a for v in f.box)


def test_detector_version_names_what_made_a_box():
    needs_shared()
    import cv2

    v = detector_version(DetectorConfig(), CASCADES)
    assert f"opencv={cv2.__version__}" in v and "lbp=9376d30ac38d" in v and "animeface=" in v and "pillow=" in v
    assert "lbp=" not in detector_version(DetectorConfig(detector="animeface"))
    assert "haar=" in detector_version(DetectorConfig(detector="haar"))


def test_disagreement_reasons():
    both = Face(10, 10, 50, 50, 20.0, "lbp", ("lbp", "animeface"))
    lbp_only = Face(100, 10, 50, 50, 7.0, "lbp", ("lbp",))
    rotated = Face(200, 10, 50, 50, 9.0, "lbp", ("lbp",), angle=30)
    weak = Face(300, 10, 50, 50, 0.75, "animeface", ("animeface",))
    cfg = DetectorConfig()
    assert disagreement([both], cfg) == []
    assert any("only by lbp" in r for r in disagreement([both, lbp_only], cfg))
    assert any("rotated" in r for r in disagreement([rotated], cfg))
    assert any("likelihood" in r for r in disagreement([weak], cfg))
    assert any("overlap" in r for r in disagreement([both, Face(15, 15, 50, 50, 5.0, "lbp", ("lbp",))], cfg))
    assert disagreement([lbp_only], DetectorConfig(detector="lbp")) == []


def test_prepare_handles_modes_and_frames():
    def png(im: Image.Image) -> bytes:
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return buf.getvalue()

    deep = Image.fromarray(np.full((40, 40), 65535, np.uint16))  # 16-bit grey: white, not clipped
    assert prepare(png(deep)).getpixel((0, 0)) == (255, 255, 255)
    mid = Image.fromarray(np.full((40, 40), 32896, np.uint16))
    assert prepare(png(mid)).getpixel((0, 0)) == (128, 128, 128)
    pal = Image.new("P", (40, 40), 1)
    pal.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    pal.info["transparency"] = 1
    assert prepare(png(pal)).getpixel((5, 5)) == (255, 255, 255)
    frames = [Image.new("RGB", (40, 40), c) for c in ((200, 0, 0), (0, 0, 200))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r, g, b = prepare(buf.getvalue()).getpixel((5, 5))
    assert r > 150 and b < 50  # the first frame
    cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG")
    assert prepare(buf.getvalue()).mode == "RGB"
    assert to_rgb(Image.new("LA", (4, 4), (0, 0))).getpixel((0, 0)) == (255, 255, 255)


def test_every_shared_image_prepares():
    needs_shared()
    skip = {".md", ".xml", ".html", ""}
    files = [p for p in SHARED_DATA.rglob("*") if p.is_file() and p.suffix not in skip and p.name != "SHA256SUMS"]
    assert len(files) > 100
    for p in files:
        im = prepare(p.read_bytes())
        assert im.mode == "RGB", p


def test_missing_cascade_is_a_clear_error(tmp_path):
    from curation.models import ModelMissing

    with pytest.raises(ModelMissing, match="headshot models fetch"):
        detect_faces(draw_face(0, 128), DetectorConfig(detector="lbp"), tmp_path)


if __name__ == "__main__":
    if "--regen" not in sys.argv[1:]:
        sys.exit("usage: python tests/curation/test_detect.py --regen   (rewrites golden/boxes.json)")
    if not (CASCADES / "lbpcascade_animeface.xml").is_file():
        sys.exit(f"../shared is absent ({SHARED_DATA}); nothing to regenerate from")
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(dump_golden(compute_golden()))
    print(f"wrote {GOLDEN}")
