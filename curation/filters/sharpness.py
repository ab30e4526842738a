"""sharpness: fails blurred, softly or blockily upscaled, and near-blank pictures; keeps flat-shaded art."""

from __future__ import annotations

from PIL import Image

from ..image_stats import _DETAIL_CAP, _EDGE_FULL_COVER, _SHARP_MIN_SIDE, sharpness_stats
from .base import FACE, Filter, Score, Subject, Verdict, register
from .config import FilterConfig


@register
class Sharpness(Filter):
    """Fine-to-coarse detail x distinct pixels x edge cover (`sharpness_stats`).

    Judged on the crops, at the scale they are used, not on the whole picture: a soft 2000 px
    picture can give sharp crops.
    """

    name = "sharpness"
    version = "1"
    reads = ("min_sharpness", "doubtful_margin")
    judges = (FACE,)
    order = 30

    def score(self, subject: Subject) -> Score:
        s = sharpness_stats(subject.pixels)
        cover_factor = min(1.0, s["cover"] / _EDGE_FULL_COVER)
        return Score(min(s["detail"], _DETAIL_CAP) * s["distinct"] * cover_factor, {**s, "cover_factor": cover_factor})

    def reason(self, score: Score, threshold: float, passed: bool, cfg: FilterConfig) -> str:
        s, cover_factor = score.facts, score.facts["cover_factor"]
        raw = (f"fine/coarse detail {s['detail']:.2f} (capped at {_DETAIL_CAP:g}) x distinct pixels "
               f"{s['distinct']:.2f} (rows repeat every {s['rows']:g}, columns every {s['cols']:g}) x edge "
               f"cover {cover_factor:.2f} (edges on {s['cover']:.1%} of the picture, full credit from "
               f"{_EDGE_FULL_COVER:.0%}) = {score.value:.2f}, threshold {cfg.min_sharpness:g}")
        if s["small"]:
            why = f"too small to judge (under {_SHARP_MIN_SIDE} px)"
        elif passed:
            why = "sharp"
        elif cover_factor < 0.5:
            why = "near-blank: almost nothing is drawn"
        elif s["distinct"] < 0.5:
            why = "blocky: rows and columns repeat (a nearest-neighbour upscale)"
        else:
            why = "soft: blurred, or upscaled from a smaller picture"
        return f"{why}; {raw}"


def sharpness(image: Image.Image, cfg: FilterConfig = FilterConfig()) -> Verdict:
    return Sharpness()(Subject.of_image(image), cfg)
