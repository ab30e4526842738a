"""Pictures are judged at a bounded working size: a huge picture costs about what a normal one
does, its face boxes still come out in source pixels, and pictures within the bound are
judged exactly as before."""

import io
import time

import numpy as np
from PIL import Image

from curation.detect import DetectorConfig, detect_faces
from curation.ingest import IngestConfig, ingest
from curation.process import ProcessConfig, process
from manifests import tables
from manifests.records import FaceCrop, FilterResult
from media.decode import bounded, decode_upright, prepare, prepare_from, with_alpha
from replicas.drawn import draw_character, encode

ANIMEFACE = DetectorConfig(detector="animeface")


def test_a_9000_px_flat_png_is_a_row_in_seconds_not_a_minute(ws, tmp_path):
    path = tmp_path / "flat.png"
    Image.new("RGB", (9000, 9000), (200, 180, 160)).save(path, optimize=True)
    assert path.stat().st_size < 400_000  # a small file that decodes to 243 MB
    ingest([str(path)], ws, IngestConfig(workers=1), progress=False)
    started = time.monotonic()
    report = process(ws, ProcessConfig(detector=ANIMEFACE, workers=1), progress=False)
    took = time.monotonic() - started
    assert took < 30, f"process took {took:.0f} s on one flat picture (76 s before the working size)"
    assert report.images_detected == 1 and report.images_failed == 0
    [faces] = [r for r in tables.read_records(ws, FilterResult) if r.filter == "faces"]
    assert faces.reason == "no face found" and not faces.passed


def test_boxes_of_a_shrunk_picture_are_in_source_pixels(ws, tmp_path):
    big = draw_character(1, 3200)  # twice the working size
    work = bounded(big, ANIMEFACE.max_side)
    assert work.size == (1600, 1600)
    [a] = detect_faces(work, DetectorConfig(detector="animeface", max_side=0))
    [b] = detect_faces(big, ANIMEFACE)
    assert b.w > 500
    for va, vb in zip(a.box, b.box):
        assert abs(vb - 2 * va) <= 2, (a.box, b.box)  # the working copy's box, in source pixels
    # A working copy handed in with the picture's size gives the same boxes.
    assert detect_faces(work, ANIMEFACE, source_size=big.size) == [b]
    # And the crop is cut from the full picture, at full detail.
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "big.png").write_bytes(encode(big, "PNG"))
    ingest([str(tmp_path / "art")], ws, IngestConfig(workers=1), progress=False)
    process(ws, ProcessConfig(detector=ANIMEFACE, workers=1), progress=False)
    [crop] = tables.read_records(ws, FaceCrop)
    assert (crop.box_x, crop.box_y, crop.box_w, crop.box_h) == b.box


def test_a_picture_of_one_colour_skips_the_detectors():
    from curation.detect import FLAT_RANGE

    flat = Image.new("RGB", (800, 600), (90, 140, 200))
    assert detect_faces(flat, DetectorConfig()) == []
    # Nearly flat is flat too; a face drawn on it is not.
    rng = np.random.default_rng(0)
    noisy = np.clip(np.asarray(flat, np.int16) + rng.integers(0, FLAT_RANGE // 2, (600, 800, 1)), 0, 255)
    assert detect_faces(Image.fromarray(noisy.astype(np.uint8)), DetectorConfig()) == []
    assert len(detect_faces(draw_character(1, 512), ANIMEFACE)) == 1


def test_within_the_bound_nothing_changes():
    im = draw_character(3, 600)
    assert bounded(im, 1600) is im
    unbounded = DetectorConfig(detector="animeface", max_side=0)
    assert detect_faces(im, ANIMEFACE) == detect_faces(im, unbounded)


def test_one_decode_gives_what_prepare_and_the_hashes_read():
    rgba = Image.new("RGBA", (64, 48), (10, 200, 30, 0))
    rgba.paste((200, 10, 10, 255), (8, 8, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: upright it is 48 x 64
    buf = io.BytesIO()
    rgba.save(buf, "PNG", exif=exif)
    data = buf.getvalue()
    upright = decode_upright(data)
    assert upright.size == (48, 64)
    assert np.array_equal(np.asarray(prepare_from(upright)), np.asarray(prepare(data)))
    assert with_alpha(upright).mode == "RGBA" and prepare(data).mode == "RGB"
    # Palette pictures are shrunk in colour, not by nearest neighbour.
    pal = Image.new("RGB", (5000, 100), (255, 255, 255)).convert("P")
    assert bounded(pal, 1000).mode in ("RGB", "RGBA") and bounded(pal, 1000).size == (1000, 20)
