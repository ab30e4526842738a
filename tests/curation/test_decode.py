"""Every kind of input headshot must survive, built in code, with the status and reason it gets."""

import io

import pytest
from PIL import Image, ImageCms

from media.decode import DecodeConfig, describe_non_image, inspect_image
from replicas.drawn import bad_inputs, draw_face, encode, png_claiming_size

FACE = draw_face(1, 128)


@pytest.mark.parametrize("name", sorted(bad_inputs()))
def test_bad_inputs_get_their_own_status_and_a_reason(name):
    data, status = bad_inputs()[name]
    got = inspect_image(data)
    assert got.status == status
    assert got.reason, "a failure must say why"
    assert not got.keep_bytes or status == "too_small"


def test_reasons_name_the_problem():
    bad = bad_inputs()
    assert "empty" in inspect_image(bad["empty.jpg"][0]).reason
    assert "truncated" in inspect_image(bad["truncated.jpg"][0]).reason
    assert "HTML" in inspect_image(bad["login_page.jpg"][0]).reason
    assert "not any known image format" in inspect_image(bad["noise.png"][0]).reason
    assert "decompression bomb" in inspect_image(bad["bomb.png"][0]).reason
    assert "smaller than the 40 px" in inspect_image(bad["tiny.png"][0]).reason


def test_a_header_past_pillows_own_limit_is_too_large_not_a_crash():
    got = inspect_image(png_claiming_size(100_000, 100_000))
    assert got.status == "too_large" and "decompression bomb" in got.reason


def test_byte_cap_is_checked_before_decoding():
    got = inspect_image(encode(FACE, "PNG"), DecodeConfig(max_bytes=100))
    assert got.status == "too_large" and "100-byte cap" in got.reason


@pytest.mark.parametrize("data,status,word", [
    (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>", "unsupported", "SVG"),
    (b"%PDF-1.7\n...", "not_image", "PDF"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "unsupported", "HEIC"),
    (b'{"error": "rate limited"}', "not_image", "JSON"),
    (b"User-agent: *\nDisallow: /\n", "not_image", "text"),
])
def test_non_images_are_named(data, status, word):
    assert describe_non_image(data)[0] == status
    got = inspect_image(data)
    assert got.status == status and word in got.reason


def test_truncated_png_and_truncated_animation_are_corrupt():
    png = encode(FACE, "PNG")
    assert inspect_image(png[: len(png) - 200]).status == "corrupt"
    frames = [draw_face(i, 96) for i in range(4)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    gif = buf.getvalue()
    assert inspect_image(gif).frames == 4
    assert inspect_image(gif[: int(len(gif) * 0.8)]).status == "corrupt"


def _exif_rotated(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(FACE.resize((120, 80)), "JPEG", exif=exif.tobytes())


@pytest.mark.parametrize("orientation,size", [(1, (120, 80)), (3, (120, 80)), (6, (80, 120)), (8, (80, 120))])
def test_size_is_after_exif_orientation(orientation, size):
    got = inspect_image(_exif_rotated(orientation))
    assert got.status == "ok" and (got.width, got.height) == size


def _sixteen_bit_grey() -> bytes:
    im = Image.new("I;16", (64, 64))
    im.putdata([i * 16 for i in range(64 * 64)])
    return encode(im, "PNG")


def _with_icc() -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encode(FACE, "JPEG", icc_profile=profile)


def _animated(fmt: str) -> bytes:
    frames = [draw_face(i, 96).convert("RGBA") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


@pytest.mark.parametrize("make,fmt,modes,frames,size", [
    (lambda: encode(FACE.convert("CMYK"), "JPEG"), "JPEG", {"CMYK"}, 1, 128),
    (lambda: encode(FACE.convert("P"), "PNG"), "PNG", {"P"}, 1, 128),
    (lambda: encode(FACE.convert("L"), "JPEG"), "JPEG", {"L"}, 1, 128),
    (_sixteen_bit_grey, "PNG", {"I;16"}, 1, 64),
    (_with_icc, "JPEG", {"RGB"}, 1, 128),
    (lambda: encode(FACE, "AVIF", quality=60), "AVIF", {"RGB"}, 1, 128),
    (lambda: encode(FACE, "WEBP", quality=80), "WEBP", {"RGB"}, 1, 128),
    (lambda: _animated("PNG"), "APNG", {"RGBA"}, 3, 96),
    (lambda: _animated("GIF"), "GIF", {"P"}, 3, 96),
    (lambda: _animated("WEBP"), "WEBP", {"RGB", "RGBA"}, 3, 96),
    (lambda: encode(FACE, "BMP"), "BMP", {"RGB"}, 1, 128),
    (lambda: encode(FACE, "TIFF"), "TIFF", {"RGB"}, 1, 128),
])
def test_every_odd_but_valid_format_is_ok(make, fmt, modes, frames, size):
    got = inspect_image(make())
    assert (got.status, got.format, got.frames, got.width, got.height) == ("ok", fmt, frames, size, size)
    assert got.mode in modes


def test_format_comes_from_bytes_whatever_the_name_says():
    # inspect_image never sees a name; ingest passes bytes only. A JPEG stays a JPEG.
    assert inspect_image(encode(FACE, "JPEG")).format == "JPEG"


def test_alpha_channel_is_not_transparency():
    opaque = FACE.convert("RGBA")
    assert inspect_image(encode(opaque, "PNG")).transparent is False
    holed = opaque.copy()
    holed.putpixel((0, 0), (0, 0, 0, 0))
    assert inspect_image(encode(holed, "PNG")).transparent is True
    pal = FACE.convert("P")
    assert inspect_image(encode(pal, "GIF", transparency=pal.getpixel((0, 0)))).transparent is True
    assert inspect_image(encode(FACE, "JPEG")).transparent is False


def test_formats_pillow_knows_but_datasets_do_not_use_are_unsupported():
    got = inspect_image(encode(FACE.resize((64, 64)), "ICO"))
    assert got.status == "unsupported" and "ICO" in got.reason
