"""Style transfer (training/style.py, `headshot style`): on a crop of ../shared/data/anime with a
painting of ../shared/data/paintings the style loss falls by most of its start while the
content loss stays bounded, and bad inputs (not a picture, a weights file that is not VGG-19,
vgg19 without weights, out-of-range settings) are clear errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipelines.cli import app
from training.style import StyleConfig, StyleError, load_picture, transfer


def test_a_crop_takes_a_painting_s_style_and_keeps_its_content(shared_data, tmp_path):
    crop = load_picture(shared_data / "anime" / "style2paints_ref_01.png", "content").resize((128, 128))
    painting = load_picture(shared_data / "paintings" / "starry_night.jpg", "style")
    out, rep = transfer(crop, painting, StyleConfig(steps=120, size=128))
    assert out.size == (128, 128) and out.mode == "RGB"
    assert rep.style_start == pytest.approx(1.0, abs=0.05)  # the content's own style, against the painting's
    assert rep.style_fall > 0.6, rep.history  # most of it gone
    assert 0 < rep.content_end < 0.5, rep.history  # bounded: the face is still there
    styles = [s for _, s, _ in rep.history]
    assert styles[-1] < styles[len(styles) // 2] < styles[0]
    # The same seed and settings, the same picture.
    again, _ = transfer(crop, painting, StyleConfig(steps=5, size=64))
    twice, _ = transfer(crop, painting, StyleConfig(steps=5, size=64))
    assert again.tobytes() == twice.tobytes()


def test_the_command_writes_the_portrait_and_says_what_the_losses_did(shared_data, tmp_path):
    out = tmp_path / "portrait.png"
    r = CliRunner().invoke(app, ["style", "--content", str(shared_data / "anime" / "style2paints_ref_02.png"),
                                 "--style", str(shared_data / "paintings" / "the_scream.jpg"), "--out", str(out),
                                 "--steps", "20", "--size", "96", "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 0 and "style loss down" in r.output, r.output
    with Image.open(out) as im:
        assert im.size == (96, 96)


def test_bad_inputs_are_clear_errors(tmp_path):
    face = tmp_path / "face.png"
    Image.new("RGB", (64, 64), (200, 150, 120)).save(face)
    text = tmp_path / "painting.jpg"
    text.write_text("not a painting")
    with pytest.raises(StyleError, match="not a picture Pillow can read"):
        load_picture(text, "--style")
    with pytest.raises(StyleError, match="no such file"):
        load_picture(tmp_path / "nope.jpg", "--style")
    with pytest.raises(StyleError, match="vgg19 needs --weights"):
        StyleConfig(backbone="vgg19")
    with pytest.raises(StyleError, match="backbone"):
        StyleConfig(backbone="inception")
    with pytest.raises(StyleError, match="steps"):
        StyleConfig(steps=0)
    # A state dict, but of another network: it does not fit VGG-19, and says so.
    from torchvision.models import squeezenet1_1

    wrong = tmp_path / "squeezenet.pth"
    torch.save(squeezenet1_1(weights=None).state_dict(), wrong)
    img = Image.open(face)
    with pytest.raises(StyleError, match="does not fit VGG-19"):
        transfer(img, img, StyleConfig(backbone="vgg19", weights=str(wrong), steps=1, size=64))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(StyleError, match="not a PyTorch state dict"):
        transfer(img, img, StyleConfig(backbone="vgg19", weights=str(junk), steps=1, size=64))
    r = CliRunner().invoke(app, ["style", "--content", str(face), "--style", str(text), "--out",
                                 str(tmp_path / "o.png")], catch_exceptions=False)
    assert r.exit_code == 2 and "not a picture Pillow can read" in r.output
