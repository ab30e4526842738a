"""monochrome: fails grey, sepia, duotone, screentone, line-art and sketch pictures, whatever their mode."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from ..image_stats import _HUES, _TINT_CHROMA, _TINT_HALF_WIDTH, _chroma_plane, _colour_pixels, _prepared, colour_stats
from .base import FACE, IMAGE, Filter, Score, Subject, Verdict, register
from .config import FilterConfig

# Measurement constants (they define what a number means: changing one is a new version).
_TINT_LIGHT = 128.0  # lightness (0-255) from which a tone counts as light: where paper shows
# A second hue at equal lightness above this is no print: in ../shared/data, pictures and face
# crops half or more light in one strong hue (a cream background, warm skin) measure >= 7.6, with
# eyes, hair and clothes of other hues; the orange/navy print and its crops <= 3.5.
_TINT_MAX_ACROSS = 5.0
_PAPER_SIDE = 512  # paper and strokes are measured at <= 512 px: a pencil line stays a line there
_PAPER_TOL = 24.0  # grey levels per channel from the paper's colour that still count as bare paper
_STROKE_REACH = 3.0  # px at 512: a drawn pixel further than this from bare paper is in a filled area
# Share of the drawing in filled areas up to which it is strokes (line art and pencil sketches
# on paper measure <= 0.36, colour art on white >= 0.42, flat-coloured art >= 0.8).
_SKETCH_MAX_FILLED = 0.4
# Chroma (0-255 scale) from which a pixel is coloured, not grey. Low on purpose: a faded colour
# picture has faint colour all over (>= 0.3 of it at this level), a grey one with a red title none
# outside the title.
_COLOURED_CHROMA = 6.0


def paper_stats(image: Image.Image) -> dict[str, float]:
    """What the sketch and accent rules decide on, at <= 512 px, transparency taken as paper.

    paper: share of the picture within `_PAPER_TOL` of the paper's colour (the median colour of
    its lightest tenth: white, cream, or whatever the picture is lightest in).
    filled: share of what is drawn (not paper) further than `_STROKE_REACH` from bare paper.
    Strokes of a pencil or pen keep paper beside them; painted areas do not.
    colour_area: share of what is drawn with any chroma (>= `_COLOURED_CHROMA`): a grey picture
    with a red title or green eyes has colour on a few per cent of it.
    """
    im = _on_white(_prepared(image, _PAPER_SIDE))
    # uint8 and integer arithmetic throughout: this runs on every picture, at up to 512 x 512.
    a = np.asarray(im.convert("RGB"))
    light = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    lightest = light >= np.searchsorted(np.cumsum(np.bincount(light.ravel(), minlength=256)), 0.9 * light.size)
    tone = np.array([_median_u8(a[..., c][lightest]) for c in range(3)], np.uint8)
    d = cv2.split(cv2.absdiff(a, (*tone.tolist(), 0)))
    drawn = cv2.max(cv2.max(d[0], d[1]), d[2]) > _PAPER_TOL
    n = int(drawn.sum())
    if n == 0:
        return {"paper": 1.0, "filled": 0.0, "colour_area": 0.0}
    reach = max(1.0, _STROKE_REACH * max(a.shape[:2]) / _PAPER_SIDE)  # next to paper is 1
    far = cv2.distanceTransform(drawn.astype(np.uint8), cv2.DIST_L2, 3) > reach
    r, g, b = (a[..., c][drawn].astype(np.int32) for c in range(3))
    # chroma^2 = (r - (g + b) / 2)^2 + 3/4 (g - b)^2, times 4 to stay in integers
    coloured = (2 * r - g - b) ** 2 + 3 * (g - b) ** 2 >= int(4 * _COLOURED_CHROMA ** 2)
    return {"paper": 1.0 - n / drawn.size, "filled": float(far.sum()) / n, "colour_area": float(coloured.sum()) / n}


def _on_white(im: Image.Image) -> Image.Image:
    """Transparency as white paper (what the stage's decoder does): a cut-out is a figure on paper."""
    if im.mode not in ("RGBA", "LA"):
        return im
    flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
    flat.alpha_composite(im.convert("RGBA"))
    return flat.convert("RGB")


def _median_u8(x: np.ndarray) -> int:
    return int(np.searchsorted(np.cumsum(np.bincount(x, minlength=256)), (len(x) + 1) / 2))


def tint_area(image: Image.Image, hue: float) -> float:
    """Share of the whole picture that is light and in one strong hue (`hue`, +-30 degrees):
    the tinted paper of a print shows through most of it; the cream background or the skin of
    a colour picture covers a part of it, beside other colours (measured: <= 0.58 in colour
    pictures, 0.67 in a face box of warm skin, >= 0.71 in the orange print and its face crop).
    Transparency counts as white paper: an orange cut-out character is not an orange page."""
    rgb, w = _colour_pixels(_on_white(image))
    if w.sum() <= 0:
        return 0.0
    u, v, light = _chroma_plane(rgb)
    off = np.abs((np.degrees(np.arctan2(v, u)) % 360 - hue + 180) % 360 - 180)
    tinted = (np.hypot(u, v) >= _TINT_CHROMA) & (off <= _TINT_HALF_WIDTH) & (light >= _TINT_LIGHT)
    return float((w * tinted).sum() / w.sum())


@register
class Monochrome(Filter):
    """The score is `colour` from `colour_stats`, capped by three rules for the kinds of
    monochrome that have some colour. Each cap equals the threshold where its measure reaches
    its setting and falls to 0 at the far end, so the score stays "higher passes"; the caps
    depend on the config, so `judge` applies them and the reason keeps every raw number.

    - Tinted paper (a two-ink print: orange paper, orange dots, navy lines): the light tones of
      one strong hue cover at least `max_tint_share` of the picture, and there is little
      colour across hues. A colour picture on a cream background, or a face crop of warm skin,
      has eyes, hair and clothes of other hues beside it.
    - Sketch: at least `min_paper_share` of the picture is bare paper and what is drawn is
      strokes (pencil lines and hatching, in one or two pencils), not painted areas.
    - Accent: a grey picture (colour across hues below `min_colour`) whose only colour covers
      less than `min_colour_area` of what is drawn: a red title on a black-and-white banner
      measures 0.06; a grey animal with blue eyes on white 0.13, faded colour art >= 0.3.

    It judges the whole picture, before detection: colour is a property of the artwork, and
    rejecting a manga page there saves detecting faces on it. It judges each crop too: a
    colour page can hold a grey panel or a thought bubble drawn in one ink.
    """

    name = "monochrome"
    version = "2"
    reads = ("min_colour", "max_tint_share", "min_paper_share", "min_colour_area", "doubtful_margin")
    judges = (IMAGE, FACE)
    order = 40

    def score(self, subject: Subject) -> Score:
        # One working copy for every measure: a large picture is shrunk once, not three times.
        im = _prepared(subject.pixels, _PAPER_SIDE)
        s = colour_stats(im)
        if not s["visible"]:
            return Score(0.0, {**s, "tint_area": 0.0, "paper": 0.0, "filled": 0.0, "colour_area": 0.0})
        return Score(s["colour"], {**s, "tint_area": tint_area(im, s["hue"]), **paper_stats(im)})

    @staticmethod
    def caps(s, cfg: FilterConfig) -> dict[str, float]:
        """Each rule whose condition other than its setting holds -> what the colour counts for."""
        t = cfg.min_colour
        out = {}
        if s["across"] < _TINT_MAX_ACROSS:
            out["tinted"] = t * (1 - s["tint_area"]) / max(1 - cfg.max_tint_share, 1e-9)
        if s["filled"] <= _SKETCH_MAX_FILLED:
            out["sketch"] = t * (1 - s["paper"]) / max(1 - cfg.min_paper_share, 1e-9)
        if s["across"] < t:
            out["accent"] = t * s["colour_area"] / max(cfg.min_colour_area, 1e-9)
        return out

    def judge(self, score: Score, cfg: FilterConfig) -> Verdict:
        s = score.facts
        # A rule only matters for a picture its colour alone would keep.
        caps = self.caps(s, cfg) if s["colour"] >= cfg.min_colour else {}
        applied = {k: c for k, c in caps.items() if c < cfg.min_colour}
        value = min([s["colour"], *applied.values()])
        # Doubtful when the colour or a rule's measure is near its threshold.
        near = min([s["colour"], *caps.values()])
        doubtful = abs(near - cfg.min_colour) <= cfg.doubtful_margin * cfg.min_colour
        raw = (f"colour at equal lightness {s['colour']:.2f} (across hues {s['across']:.2f}, within the "
               f"main hue {s['along']:.2f}, counted a third), threshold {cfg.min_colour:g}; ink strength "
               f"{s['ink']:.1f}; light tones in one strong hue cover {s['tint_area']:.0%} of the picture "
               f"(tinted paper from {cfg.max_tint_share:.0%}); bare paper {s['paper']:.0%} (a sketch from "
               f"{cfg.min_paper_share:.0%}), {s['filled']:.0%} of the drawing in filled areas (strokes up to "
               f"{_SKETCH_MAX_FILLED:.0%}), {s['colour_area']:.1%} of it coloured (an accent below "
               f"{cfg.min_colour_area:.0%})")
        if not s["visible"]:
            why = "nothing visible (fully transparent)"
        elif value >= cfg.min_colour:
            why = "colour picture"
        elif s["colour"] < cfg.min_colour:
            why = "one colour per lightness: grey, sepia, one-ink drawing, line art or screentone"
        elif "tinted" in applied:
            why = (f"tinted paper: {s['tint_area']:.0%} of the picture is light {_hue_name(s['hue'])} with "
                   f"little other colour (a duotone print), scored {value:.2f}")
        elif "sketch" in applied:
            why = (f"a sketch on paper: {s['paper']:.0%} bare paper, the drawing in strokes "
                   f"({s['filled']:.0%} filled), scored {value:.2f}")
        elif "accent" in applied:
            why = (f"grey with a colour accent: colour on {s['colour_area']:.1%} of the drawing only "
                   f"(a title, a logo, the eyes), scored {value:.2f}")
        return self.verdict(value, cfg.min_colour, value >= cfg.min_colour, f"{why}; {raw}", doubtful)


def _hue_name(hue: float) -> str:
    return next(n for top, n in _HUES if hue < top)


def monochrome(image: Image.Image, cfg: FilterConfig = FilterConfig()) -> Verdict:
    return Monochrome()(Subject.of_image(image), cfg)

