"""Square crops: size, margin, border policies, transparency, and stable crop ids."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from curation.crop import CropConfig, crop_id, make_crop, square_box
from curation.detect import DetectorConfig, Face, detect_faces, prepare
from replicas.drawn import draw_face

SHA = "ab" * 32


def face(x, y, w, h=None) -> Face:
    return Face(x, y, w, w if h is None else h, 1.0, "lbp", ("lbp",))


def test_config_rejects_bad_values():
    assert CropConfig().size == 128 and CropConfig().pad == "shift"
    for size in (64, 128, 256):
        assert CropConfig(size=size).size == size
    with pytest.raises(ValueError, match="64, 128, 256"):
        CropConfig(size=100)
    with pytest.raises(ValueError, match="shift, replicate, white"):
        CropConfig(pad="mirror")
    with pytest.raises(ValueError, match="margin"):
        CropConfig(margin=-0.1)


def test_margin_is_per_side_and_centred():
    f = face(400, 300, 100)
    assert square_box(f, 1000, 1000, CropConfig(margin=0.25)) == (375, 275, 150)
    assert square_box(f, 1000, 1000, CropConfig(margin=0.0)) == (400, 300, 100)
    assert square_box(f, 1000, 1000, CropConfig(margin=0.5)) == (350, 250, 200)
    # A non-square box gets a square on its longer side.
    assert square_box(face(400, 300, 80, 120), 1000, 1000, CropConfig(margin=0.25)) == (350, 270, 180)


def test_shift_moves_the_square_inside():
    cfg = CropConfig(margin=0.25, pad="shift")
    assert square_box(face(0, 0, 100), 500, 500, cfg) == (0, 0, 150)
    assert square_box(face(420, 430, 80), 500, 500, cfg) == (380, 380, 120)
    # Padding policies keep the square centred on the face, past the border.
    assert square_box(face(0, 0, 100), 500, 500, CropConfig(pad="white")) == (-25, -25, 150)
    # Too wide for a 120 px tall strip: moved sideways, centred (and padded) vertically.
    assert square_box(face(0, 10, 100), 500, 120, cfg) == (0, -15, 150)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_crop_is_square_rgb_of_the_size(size):
    im = draw_face(1, 512)
    out = make_crop(im, (100, 100, 300), CropConfig(size=size))
    assert out.size == (size, size) and out.mode == "RGB"


def test_crop_takes_the_right_pixels():
    arr = np.zeros((200, 300, 3), np.uint8)
    arr[50:150, 100:200] = (200, 10, 10)
    im = Image.fromarray(arr)
    out = np.asarray(make_crop(im, (100, 50, 100), CropConfig(size=64)))
    assert (out == (200, 10, 10)).all()


def test_white_and_replicate_padding():
    arr = np.zeros((100, 100, 3), np.uint8)
    arr[:, :50] = (10, 200, 10)  # left half green, right half black
    im = Image.fromarray(arr)
    box = (-50, 0, 100)  # half of the square is left of the image
    white = np.asarray(make_crop(im, box, CropConfig(size=64, pad="white")))
    assert (white[:, :28] == 255).all()  # the outside part (Lanczos blurs the seam only)
    assert (white[:, 36:] == (10, 200, 10)).all()  # the image part: its left, green half
    rep = np.asarray(make_crop(im, box, CropConfig(size=64, pad="replicate")))
    assert (rep[:, :28] == (10, 200, 10)).all()  # the edge column, repeated
    shift = np.asarray(make_crop(im, box, CropConfig(size=64, pad="shift")))
    assert (shift == rep).all()  # what shift cannot move inside is replicated


def test_shifted_crop_holds_only_image_pixels():
    im = draw_face(2, 256)
    f = face(0, 0, 120)
    box = square_box(f, 256, 256, CropConfig())
    assert box == (0, 0, 180)
    assert np.array_equal(np.asarray(make_crop(im, box, CropConfig(size=64))),
                          np.asarray(im.crop((0, 0, 180, 180)).resize((64, 64), Image.LANCZOS)))


def test_outside_square_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        make_crop(draw_face(0, 128), (500, 500, 50))
    with pytest.raises(ValueError, match="positive"):
        make_crop(draw_face(0, 128), (0, 0, 0))


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (200, 200), (0, 0, 0, 0))  # transparent black
    rgba.paste(Image.new("RGBA", (100, 100), (200, 30, 30, 255)), (50, 50))
    out = np.asarray(make_crop(rgba, (0, 0, 200), CropConfig(size=64)))
    assert (out[:10, :10] == 255).all()
    assert (out[32, 32] == (200, 30, 30)).all()
    la = Image.new("LA", (100, 100), (0, 0))
    assert (np.asarray(make_crop(la, (0, 0, 100), CropConfig(size=64))) == 255).all()


def test_crop_id_is_stable_and_sensitive():
    params = DetectorConfig().params_json()
    a = crop_id(SHA, (10, 20, 30, 30), params, 0.25, 128)
    assert len(a) == 24 and int(a, 16) >= 0
    assert a == crop_id(SHA, [10, 20, 30, 30], params, 0.25, 128)
    # float32 round trip (how Parquet stores the margin) keeps the id.
    assert a == crop_id(SHA, (10, 20, 30, 30), params, float(np.float32(0.25)), 128)
    others = {
        crop_id("cd" * 32, (10, 20, 30, 30), params, 0.25, 128),
        crop_id(SHA, (11, 20, 30, 30), params, 0.25, 128),
        crop_id(SHA, (10, 20, 30, 30), DetectorConfig(min_neighbors=3).params_json(), 0.25, 128),
        crop_id(SHA, (10, 20, 30, 30), params, 0.3, 128),
        crop_id(SHA, (10, 20, 30, 30), params, 0.25, 64),
        crop_id(SHA, (10, 20, 30, 30), params, 0.25, 128, pad="white"),
    }
    assert a not in others and len(others) == 6


def test_crop_id_golden():
    # Pinned: a change here silently orphans every stored crop row.
    assert crop_id(SHA, (1, 2, 3, 4), '{"detector":"lbp"}', 0.25, 128) == "0ad8656f3f0882a9f4bf52dc"


def test_crops_of_a_shared_image(shared_data):
    path = shared_data / "anime" / "tha3_crypko_00.png"
    im = prepare(path.read_bytes())  # RGBA with a transparent background
    faces = detect_faces(im, DetectorConfig(detector="lbp"), shared_data / "cascades")
    assert len(faces) == 1
    box = square_box(faces[0], *im.size, CropConfig())
    crop = make_crop(im, box, CropConfig(size=64))
    assert crop.size == (64, 64) and crop.mode == "RGB"
    assert (np.asarray(make_crop(im, (0, 0, 40), CropConfig(size=64))) == 255).all()  # flattened corner
