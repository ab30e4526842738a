"""`headshot process` as a stage: crops and verdicts, near-duplicates, and incremental reruns.

The faces are drawn in code and found by the animeface detector, which ships its model in
its wheel: these tests need nothing from ../shared.
"""

from dataclasses import replace

import pytest
from PIL import Image, ImageOps

from curation.ingest import ingest
from curation.process import ProcessConfig, process
from curation.process_dedup import current_crops, summary
from manifests import tables
from manifests.blobs import sha256_hex
from manifests.records import DupGroup, FilterResult
from replicas.drawn import draw_character, encode

CFG = ProcessConfig(detector=replace(ProcessConfig().detector, detector="animeface"), workers=2)


@pytest.fixture
def art(tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    for i in (1, 3, 5, 6):  # seeds whose pictures animeface finds
        (folder / f"face{i}.png").write_bytes(encode(draw_character(i, 512), "PNG"))
    # The same artwork again, smaller and re-encoded: a near-duplicate, not an exact one.
    (folder / "face1_small.jpg").write_bytes(encode(draw_character(1, 512).resize((384, 384), Image.LANCZOS), "JPEG", quality=90))
    # A black-and-white copy stored as RGB: monochrome.
    (folder / "grey.png").write_bytes(encode(ImageOps.grayscale(draw_character(8, 512)).convert("RGB"), "PNG"))
    # No face at all.
    (folder / "sky.png").write_bytes(encode(Image.new("RGB", (300, 200), (120, 170, 230)), "PNG"))
    return folder


def ledger(ws):
    return {(r.subject_id, r.filter): r for r in tables.read_records(ws, FilterResult)}


def test_crops_verdicts_and_duplicates(ws, art):
    ingest([str(art)], ws, progress=False)
    report = process(ws, CFG, progress=False)
    assert report.images_detected == 7 and report.images_failed == 0
    crops = current_crops(ws, CFG)
    assert len(crops) == 6  # one face in each drawing, none in the sky
    for c in crops:
        path = ws.home / c["crop_path"]
        with Image.open(path) as im:
            assert im.size == (CFG.crop.size, CFG.crop.size)
    rows = ledger(ws)
    sky = [r for (s, f), r in rows.items() if f == "faces" and r.score == 0]
    assert len(sky) == 1 and sky[0].passed is False and "no face" in sky[0].reason
    mono = [r for (s, f), r in rows.items() if f == "monochrome" and not r.passed]
    assert mono, "the grey copy must be flagged"
    group_of = {g.crop_id: g for g in tables.read_records(ws, DupGroup)}
    crop_of = {c["image_sha256"]: c for c in crops}
    big, small = (crop_of[sha256_hex((art / n).read_bytes())]["crop_id"] for n in ("face1.png", "face1_small.jpg"))
    assert group_of[big].group_id == group_of[small].group_id
    assert group_of[big].keeper and not group_of[small].keeper  # the larger face is kept
    assert rows[(small, "duplicate")].passed is False and big in rows[(small, "duplicate")].reason
    s = summary(ws, CFG)
    assert s["crops"] == 6 and s["rejected_by"].get("duplicate", 0) >= 1 and s["images_without_face"] == 1


def test_a_rerun_on_unchanged_data_does_no_work(ws, art):
    ingest([str(art)], ws, progress=False)
    process(ws, CFG, progress=False)
    files = {p: p.read_bytes() for p in ws.manifests.rglob("*") if p.is_file() and p.name != ".lock"}
    again = process(ws, CFG, progress=False)
    assert not again.did_work and again.duplicates == 0
    assert {p: p.read_bytes() for p in ws.manifests.rglob("*") if p.is_file() and p.name != ".lock"} == files


def test_a_new_margin_recrops_from_stored_boxes_without_detecting(ws, art):
    ingest([str(art)], ws, progress=False)
    process(ws, CFG, progress=False)
    wider = replace(CFG, crop=replace(CFG.crop, margin=CFG.crop.margin + 0.1))
    report = process(ws, wider, progress=False)
    assert report.images_detected == 0 and report.images_recropped == 6 and report.crops_new == 6
    old = {c["crop_id"] for c in current_crops(ws, CFG)}
    new = {c["crop_id"] for c in current_crops(ws, wider)}
    assert len(new) == 6 and not (old & new)


def test_a_changed_threshold_reruns_that_filter_alone(ws, art):
    ingest([str(art)], ws, progress=False)
    process(ws, CFG, progress=False)
    before = ledger(ws)
    stricter = replace(CFG, filters=replace(CFG.filters, min_sharpness=CFG.filters.min_sharpness + 0.3))
    report = process(ws, stricter, progress=False)
    assert report.images_detected == 0 and report.images_recropped == 0 and report.rejudged == 6
    after = ledger(ws)
    changed = {k[1] for k in after if after[k].version != before[k].version}
    assert changed == {"sharpness"}
    assert process(ws, stricter, progress=False).did_work is False
