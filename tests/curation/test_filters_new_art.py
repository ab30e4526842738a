"""The filters on art they were not tuned on: each failure class first on pictures built in
code, then the folder goals on ../shared/data, judged the way `headshot process` judges them
(the decoded picture as the stage sees it, skipped when that folder is absent)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from curation import filters as F
from curation.filters.monochrome import Monochrome
from replicas.drawn import draw_face

CFG = F.FilterConfig()


# --- pictures built in code ---------------------------------------------------------------

def warm_portrait(size: int = 256) -> Image.Image:
    """A colour face crop mostly in warm tan skin on a cream background (both light and of one
    strong orange hue), with brown hair, green eyes, a red mouth and a blue shirt."""
    im = Image.new("RGB", (512, 512), (250, 216, 168))
    d = ImageDraw.Draw(im)
    d.rectangle((60, 430, 452, 512), fill=(40, 90, 160))
    d.ellipse((70, 30, 442, 470), fill=(92, 52, 30))
    d.ellipse((110, 90, 402, 470), fill=(226, 152, 104))
    for x in (140, 312):
        d.ellipse((x, 300, x + 60, 340), fill=(236, 128, 110))
    for x in (165, 285):
        d.ellipse((x, 230, x + 62, 300), fill=(250, 250, 245), outline=(50, 30, 20), width=4)
        d.ellipse((x + 12, 238, x + 50, 296), fill=(50, 130, 70))
        d.ellipse((x + 22, 252, x + 40, 282), fill=(20, 20, 25))
    d.polygon([(120, 80), (392, 80), (380, 190), (256, 150), (130, 190)], fill=(92, 52, 30))
    d.chord((215, 370, 297, 420), 0, 180, fill=(170, 50, 50))
    return im.resize((size, size), Image.LANCZOS)


def sepia_tinted_grey(seed: int = 0, size: int = 256) -> Image.Image:
    """A shaded greyscale picture with grain, tinted through a strong sepia gradient: its paper
    and its ink are one warm hue, like the warm portrait's."""
    rng = np.random.default_rng(seed)
    g = np.asarray(draw_face(seed, size).convert("L").filter(ImageFilter.GaussianBlur(1.5)), np.float32)
    g = np.clip(g + rng.normal(0, 6, g.shape), 0, 255).astype(np.uint8)
    return ImageOps.colorize(Image.fromarray(g), black=(50, 28, 10), white=(255, 214, 150), mid=(190, 120, 60))


def pencil_sketch(seed: int = 0, size: int = 512) -> Image.Image:
    """Graphite and two coloured pencils (blue lines, orange hatching) on grainy cream paper."""
    rng = np.random.default_rng(seed)
    paper = np.full((size, size, 3), (246, 240, 226), np.float32) + rng.normal(0, 3, (size, size, 1))
    im = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    k = size / 512

    def at(*xy):
        return [v * k for v in xy]

    def w(px):
        return max(1, round(px * k))

    graphite, blue, orange = (90, 90, 95), (60, 80, 170), (220, 120, 60)
    d.ellipse(at(130, 100, 382, 400), outline=blue, width=w(3))
    for x in (190, 290):
        d.ellipse(at(x, 220, x + 40, 260), outline=graphite, width=w(2))
    d.arc(at(220, 310, 292, 350), 0, 180, fill=graphite, width=w(2))
    d.line(at(120, 110, 180, 40, 230, 110), fill=blue, width=w(3))
    d.line(at(282, 110, 332, 40, 392, 110), fill=blue, width=w(3))
    for x in range(0, 120, 7):
        d.line(at(140 + x, 300, 170 + x, 400), fill=orange, width=w(1.5))
    for x in range(0, 90, 6):
        d.line(at(200 + x, 420, 230 + x, 470), fill=graphite, width=1)
    return im


def grey_banner_with_red_title(size: tuple[int, int] = (360, 168)) -> Image.Image:
    """A black-and-white scene (shaded grey shapes, no paper) with a small red title."""
    rng = random.Random(1)
    im = Image.new("RGB", size, (30, 30, 30))
    d = ImageDraw.Draw(im)
    for _ in range(30):
        x, y, r, g = rng.randint(0, size[0]), rng.randint(0, size[1]), rng.randint(8, 50), rng.randint(40, 230)
        d.ellipse((x - r, y - r, x + r, y + r), fill=(g, g, g))
    d.rectangle((250, 120, 340, 135), fill=(200, 20, 30))
    return im.filter(ImageFilter.GaussianBlur(0.6))


# --- monochrome ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", [128, 256])
def test_a_warm_skin_palette_is_colour(size):
    v = F.monochrome(warm_portrait(size))
    assert v.passed and v.reason.startswith("colour picture"), v.reason
    assert "tinted paper from 65%" in v.reason  # the raw numbers stay in the reason


@pytest.mark.parametrize("seed", [0, 3])
def test_a_sepia_tinted_greyscale_is_flagged(seed):
    v = F.monochrome(sepia_tinted_grey(seed))
    assert not v.passed and v.score < CFG.min_colour, v.reason


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_a_pencil_sketch_on_paper_is_flagged(size):
    v = F.monochrome(pencil_sketch(size=size))
    assert not v.passed, v.reason
    assert v.reason.startswith("a sketch on paper"), v.reason  # its two pencils are colour, of a kind
    coloured = F.monochrome(pencil_sketch(size=size).convert("L").convert("RGB"))
    assert not coloured.passed  # the same in graphite alone is one ink


def test_a_grey_banner_with_a_red_title_is_flagged():
    v = F.monochrome(grey_banner_with_red_title())
    assert not v.passed and v.reason.startswith("grey with a colour accent"), v.reason


def test_the_rules_keep_colour_faces_and_their_doubts():
    for seed in range(6):
        v = F.monochrome(draw_face(seed, 256))
        assert v.passed and not v.doubtful, v.reason
    face = draw_face(2, 256)  # a faded colour picture is not "grey with an accent"
    assert F.monochrome(Image.blend(face, face.convert("L").convert("RGB"), 0.8)).doubtful


def test_each_rule_moves_with_its_own_setting():
    sketch = Monochrome().score(F.Subject.of_image(pencil_sketch()))
    assert not Monochrome().judge(sketch, CFG).passed
    assert Monochrome().judge(sketch, F.FilterConfig(min_paper_share=0.99)).passed
    banner = Monochrome().score(F.Subject.of_image(grey_banner_with_red_title()))
    assert Monochrome().judge(banner, F.FilterConfig(min_colour_area=0.001)).passed
    warm = Monochrome().score(F.Subject.of_image(warm_portrait()))
    assert Monochrome().judge(warm, F.FilterConfig(max_tint_share=0.2)).passed  # other hues beside it
