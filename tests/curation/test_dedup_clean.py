"""The keeper of a near-duplicate group is the clean copy: a bigger copy with a detector's boxes
and landmark dots drawn over the face, or a heavily compressed JPEG, loses to the clean one,
and the ledger says why. Pictures drawn in code; faces found by animeface (model in its wheel)."""

from __future__ import annotations

from dataclasses import replace

from PIL import Image, ImageDraw

from curation.cleanliness import COMPRESSED, MARKED, compression, drawn_marks
from curation.dedup import Candidate, choose_keeper, why_kept
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from curation.process_dedup import current_crops
from manifests import tables
from manifests.blobs import sha256_hex
from manifests.records import DupGroup, FilterResult
from replicas.drawn import draw_character, encode

CFG = ProcessConfig(detector=replace(ProcessConfig().detector, detector="animeface"), workers=2)


def marked(im: Image.Image) -> Image.Image:
    """The picture with a detector's output drawn over it: a red box around the middle and
    green landmark dots, as a face-detection README figure shows them."""
    im = im.copy()
    d = ImageDraw.Draw(im)
    w, h = im.size
    for k in range(3):  # a box 3 px wide
        d.rectangle((w * 0.28 + k, h * 0.22 + k, w * 0.72 - k, h * 0.70 - k), outline=(255, 0, 0))
    for fx, fy in ((0.40, 0.42), (0.60, 0.42), (0.50, 0.52), (0.44, 0.60), (0.56, 0.60)):
        d.ellipse((w * fx - 3, h * fy - 3, w * fx + 3, h * fy + 3), outline=(0, 255, 0), width=2)
    d.line((w * 0.3, h * 0.75, w * 0.7, h * 0.75), fill=(0, 0, 255), width=2)
    return im


def test_drawn_marks_tell_a_marked_copy_from_a_clean_one():
    clean = draw_character(1, 256)
    face = (51, 41, 205, 195)  # what a crop of the face holds
    assert drawn_marks(clean.crop(face)) < MARKED / 4
    assert drawn_marks(marked(clean).crop(face)) >= MARKED
    # A solid area of a pure colour is art, not a mark.
    flag = Image.new("RGB", (128, 128), (255, 255, 255))
    ImageDraw.Draw(flag).rectangle((20, 20, 100, 100), fill=(255, 0, 0))
    assert drawn_marks(flag) < MARKED / 4


def test_compression_reads_the_jpeg_quantiser_and_lossless_is_zero():
    im = draw_character(2, 256)
    q30, q95 = (encode(im, "JPEG", quality=q) for q in (30, 95))
    assert compression(q30) > COMPRESSED > compression(q95) > 0
    assert compression(encode(im, "PNG")) == 0.0 and compression(b"not a picture") == 0.0


def test_the_policy_puts_clean_before_largest_and_says_why():
    big_marked = Candidate("a", 400, 400, lossless=True, marks=0.05)
    small_clean = Candidate("b", 200, 200, lossless=True, marks=0.001)
    assert choose_keeper([big_marked, small_clean]) == "b"
    assert choose_keeper([big_marked, small_clean], "largest,lossless") == "a"
    assert "clean copy" in why_kept(small_clean, big_marked) and "5.0%" in why_kept(small_clean, big_marked)
    squeezed = Candidate("c", 400, 400, lossless=False, compression=80.0)  # JPEG quality ~35 at the crop's scale
    assert choose_keeper([squeezed, small_clean]) == "b"
    # Somewhat compressed but big: shrunk to the crop, its artefacts shrink too, and it is kept.
    from curation.cleanliness import at_crop_scale

    assert at_crop_scale(90.0, 512, 128) == 22.5 < COMPRESSED < at_crop_scale(90.0, 100, 128)
    big = Candidate("e", 512, 512, lossless=False, compression=at_crop_scale(57.6, 512, 128))
    assert choose_keeper([big, small_clean]) == "e"
    # Between clean copies the bigger one still wins, for the reason it always did.
    other = Candidate("d", 300, 300, lossless=True)
    assert choose_keeper([other, small_clean]) == "d" and "larger" in why_kept(other, small_clean)


def ingest_clean_and_marked(ws, tmp_path) -> tuple[bytes, bytes]:
    """A 512 px clean face and a 768 px copy with marks drawn over it, ingested; their bytes."""
    art = tmp_path / "art"
    art.mkdir()
    face = draw_character(3, 512)
    clean, marked_copy = encode(face, "PNG"), encode(marked(face.resize((768, 768), Image.LANCZOS)), "PNG")
    (art / "clean.png").write_bytes(clean)
    (art / "marked.png").write_bytes(marked_copy)
    ingest([str(art)], ws, progress=False)
    return clean, marked_copy


def test_process_keeps_the_smaller_clean_copy_over_the_bigger_marked_one(ws, tmp_path):
    clean, marked_copy = ingest_clean_and_marked(ws, tmp_path)
    process(ws, CFG, progress=False)
    crops = {c["image_sha256"]: c for c in current_crops(ws, CFG)}
    clean_id = crops[sha256_hex(clean)]["crop_id"]
    marked_id = crops[sha256_hex(marked_copy)]["crop_id"]
    groups = {g.crop_id: g for g in tables.read_records(ws, DupGroup)}
    assert groups[clean_id].group_id == groups[marked_id].group_id, "the two copies must be one group"
    assert groups[clean_id].keeper and not groups[marked_id].keeper
    ledger = {(r.subject_id, r.filter): r for r in tables.read_records(ws, FilterResult)}
    why = ledger[(marked_id, "duplicate")].reason
    assert f"near-duplicate of {clean_id}" in why and "the keeper is the clean copy" in why and "drawn-on marks" in why


def test_the_old_policy_would_have_kept_the_marked_one(ws, tmp_path):
    _, marked_copy = ingest_clean_and_marked(ws, tmp_path)
    cfg = replace(CFG, dedup_policy="largest,lossless,original,earliest")
    process(ws, cfg, progress=False)
    crops = {c["image_sha256"]: c for c in current_crops(ws, cfg)}
    marked_id = crops[sha256_hex(marked_copy)]["crop_id"]
    assert {g.crop_id: g for g in tables.read_records(ws, DupGroup)}[marked_id].keeper
