"""monochrome: fails grey, sepia, duotone, screentone and line-art pictures, whatever their mode."""

from __future__ import annotations

from PIL import Image

from ..image_stats import _HUES, colour_stats
from .base import FACE, IMAGE, Filter, Score, Subject, Verdict, register
from .config import FilterConfig


@register
class Monochrome(Filter):
    """The score is `colour` from `colour_stats`. One kind of monochrome has plenty of it: a
    two-ink print on tinted paper (orange paper, orange dots, navy lines), whose light tones
    are nearly all one strong hue. Once that share reaches `max_tint_share`, the score is
    capped in proportion to the untinted share left, which puts such a picture below the
    threshold; only this cap depends on the config (so `judge` applies it, and the reason
    keeps both raw numbers). A saturated one-hue painting on white paper is kept: there the
    colour is a choice.

    It judges the whole picture, before detection: colour is a property of the artwork, and
    rejecting a manga page there saves detecting faces on it. It judges each crop too: a
    colour page can hold a grey panel or a thought bubble drawn in one ink.
    """

    name = "monochrome"
    version = "1"
    reads = ("min_colour", "max_tint_share", "doubtful_margin")
    judges = (IMAGE, FACE)
    order = 40

    def score(self, subject: Subject) -> Score:
        s = colour_stats(subject.pixels)
        return Score(s["colour"], s)

    def judge(self, score: Score, cfg: FilterConfig) -> Verdict:
        s = score.facts
        # What the colour counts for, given how much of the paper is left untinted: equal to the
        # threshold at max_tint_share, falling to 0 when all of the light tones are tinted.
        cap = cfg.min_colour * (1 - s["tint_share"]) / max(1 - cfg.max_tint_share, 1e-9)
        tinted = s["tint_share"] >= cfg.max_tint_share
        value = min(s["colour"], cap) if tinted else s["colour"]
        # Doubtful when either number is near its threshold (the cap is above it when not tinted).
        doubtful = abs(min(s["colour"], cap) - cfg.min_colour) <= cfg.doubtful_margin * cfg.min_colour
        raw = (f"colour at equal lightness {s['colour']:.2f} (across hues {s['across']:.2f}, within the "
               f"main hue {s['along']:.2f}, counted a third), threshold {cfg.min_colour:g}; ink strength "
               f"{s['ink']:.1f}; light tones in one strong hue {s['tint_share']:.0%} "
               f"(tinted paper from {cfg.max_tint_share:.0%})")
        if not s["visible"]:
            why = "nothing visible (fully transparent)"
        elif tinted:
            why = (f"tinted paper: {s['tint_share']:.0%} of the light tones are one strong "
                   f"{next(n for top, n in _HUES if s['hue'] < top)} (a duotone print), scored {value:.2f}")
        elif value < cfg.min_colour:
            why = "one colour per lightness: grey, sepia, one-ink drawing, line art or screentone"
        else:
            why = "colour picture"
        return self.verdict(value, cfg.min_colour, value >= cfg.min_colour, f"{why}; {raw}", doubtful)


def monochrome(image: Image.Image, cfg: FilterConfig = FilterConfig()) -> Verdict:
    return Monochrome()(Subject.of_image(image), cfg)
