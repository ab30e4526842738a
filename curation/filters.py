"""The filters of `headshot process`: pure functions that score a picture or a face crop.

Each filter returns a `Verdict`: a score, the threshold it was held to, passed, a reason
written for a person, whether the score is close enough to the threshold to deserve a human
look (`doubtful`, shown first in the review queue), and the version of the scoring code. The
stage writes every verdict to the rejection ledger (`Verdict.record` -> FilterResult), so a
threshold can be re-tuned later from stored scores without decoding anything again.

Every score is "higher passes": passed == (score >= threshold). Scores depend on the code
version only, never on a threshold (one exception, documented in `monochrome`). Thresholds
live in `FilterConfig`; each default was measured on ../shared/data with bench/filter_eval.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone

from PIL import Image

from manifests.records import FilterResult

from .image_stats import (  # noqa: F401  (colour_stats and sharpness_stats are part of this module's API)
    _DETAIL_CAP, _EDGE_FULL_COVER, _HUES, _SHARP_MIN_SIDE, colour_stats, sharpness_stats,
)

# Bump a filter's version whenever its score changes meaning, so ledger rows measured by
# different code are never compared. FILTERS_VERSION follows from them, so it cannot be
# forgotten when one of them moves.
VERSIONS: dict[str, str] = {"monochrome": "1", "sharpness": "1", "face_size": "1", "face_share": "1",
                            "published_after": "1"}
FILTERS_VERSION = ",".join(f"{name}={v}" for name, v in sorted(VERSIONS.items()))

@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the filters. Defaults and the measurements behind them: bench/filter_eval.py."""

    # Colour at equal lightness (`colour_stats`), in chroma units of the 0-255 RGB scale.
    # One-ink pictures (line art, manga, their face boxes) measure <= 0.83, colour art >= 1.36
    # (a pink one-hue painting; the rest >= 2.5, generated faces >= 3.3).
    min_colour: float = 1.05
    # Share of the light tones painted in one strong hue at which a picture counts as printed on
    # tinted paper (a duotone): an orange/navy manga print measures >= 0.89, colour art <= 0.74.
    max_tint_share: float = 0.81
    # Fine-to-coarse detail x distinct pixels x edge cover. Sharp art (stored size, 128 px crops,
    # flat-shaded cartoons at 64-512 px) measures >= 0.8; a Gaussian blur of radius 3 at 256 px
    # <= 0.21, a 3x soft upscale <= 0.39, a 4x nearest-neighbour upscale <= 0.13.
    min_sharpness: float = 0.5
    # Shorter side of the face box in source pixels: the default model trains at 64 x 64
    # (DCGAN-64), so a smaller face would be upscaled, inventing detail it never had.
    min_face_side: int = 64
    # Face box area / picture area. Full-body pictures in ../shared measure 1.4-2.6%,
    # portraits and upper bodies >= 3.6%.
    min_face_share: float = 0.03
    # Keep items published on or after this instant (None: no date filter). Naive = UTC.
    min_published: datetime | None = None
    keep_undated: bool = True  # an item with no known date passes, with the reason "no date"
    # A score within this fraction of its threshold is doubtful and goes to review first.
    doubtful_margin: float = 0.25
    doubtful_days: float = 31.0  # the same for dates, in days

    def as_dict(self) -> dict:
        d = asdict(self)
        if self.min_published is not None:
            d["min_published"] = _utc(self.min_published).isoformat()
        return d


@dataclass(frozen=True)
class Verdict:
    filter: str
    score: float
    threshold: float
    passed: bool
    reason: str
    doubtful: bool
    version: str

    def record(self, subject_id: str) -> FilterResult:
        """This verdict as a row of the rejection ledger."""
        return FilterResult(subject_id=subject_id, filter=self.filter, score=float(self.score),
                            threshold=float(self.threshold), passed=bool(self.passed),
                            version=self.version, reason=self.reason, doubtful=bool(self.doubtful))


def _verdict(name: str, score: float, threshold: float, reason: str, cfg: FilterConfig,
             passed: bool | None = None, doubtful: bool | None = None) -> Verdict:
    if passed is None:
        passed = score >= threshold
    if doubtful is None:
        doubtful = abs(score - threshold) <= cfg.doubtful_margin * abs(threshold)
    return Verdict(name, float(score), float(threshold), bool(passed), reason, bool(doubtful), VERSIONS[name])


# --- monochrome ----------------------------------------------------------------------------------
def monochrome(image: Image.Image, cfg: FilterConfig = FilterConfig()) -> Verdict:
    """Fails grey, sepia, duotone, screentone and line-art pictures, whatever their mode.

    The score is `colour` from `colour_stats`. One kind of monochrome has plenty of it: a
    two-ink print on tinted paper (orange paper, orange dots, navy lines), whose light tones
    are nearly all one strong hue. Once that share reaches `max_tint_share`, the score is
    capped in proportion to the untinted share left, which puts such a picture below the
    threshold; only this cap depends on the config, and the reason keeps both raw numbers.
    A saturated one-hue painting on white paper is kept: there the colour is a choice.
    """
    s = colour_stats(image)
    # What the colour counts for, given how much of the paper is left untinted: equal to the
    # threshold at max_tint_share, falling to 0 when all of the light tones are tinted.
    cap = cfg.min_colour * (1 - s["tint_share"]) / max(1 - cfg.max_tint_share, 1e-9)
    tinted = s["tint_share"] >= cfg.max_tint_share
    score = min(s["colour"], cap) if tinted else s["colour"]
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
               f"{next(n for top, n in _HUES if s['hue'] < top)} (a duotone print), scored {score:.2f}")
    elif score < cfg.min_colour:
        why = "one colour per lightness: grey, sepia, one-ink drawing, line art or screentone"
    else:
        why = "colour picture"
    return _verdict("monochrome", score, cfg.min_colour, f"{why}; {raw}", cfg, doubtful=doubtful)


# --- sharpness -----------------------------------------------------------------------------------
def sharpness(image: Image.Image, cfg: FilterConfig = FilterConfig()) -> Verdict:
    """Fails blurred, softly or blockily upscaled, and near-blank pictures; keeps flat-shaded art."""
    s = sharpness_stats(image)
    cover_factor = min(1.0, s["cover"] / _EDGE_FULL_COVER)
    score = min(s["detail"], _DETAIL_CAP) * s["distinct"] * cover_factor
    raw = (f"fine/coarse detail {s['detail']:.2f} (capped at {_DETAIL_CAP:g}) x distinct pixels "
           f"{s['distinct']:.2f} (rows repeat every {s['rows']:g}, columns every {s['cols']:g}) x edge "
           f"cover {cover_factor:.2f} (edges on {s['cover']:.1%} of the picture, full credit from "
           f"{_EDGE_FULL_COVER:.0%}) = {score:.2f}, threshold {cfg.min_sharpness:g}")
    if s["small"]:
        why = f"too small to judge (under {_SHARP_MIN_SIDE} px)"
    elif score >= cfg.min_sharpness:
        why = "sharp"
    elif cover_factor < 0.5:
        why = "near-blank: almost nothing is drawn"
    elif s["distinct"] < 0.5:
        why = "blocky: rows and columns repeat (a nearest-neighbour upscale)"
    else:
        why = "soft: blurred, or upscaled from a smaller picture"
    return _verdict("sharpness", score, cfg.min_sharpness, f"{why}; {raw}", cfg)


# --- face geometry -------------------------------------------------------------------------------
def face_size(face_w: int, face_h: int, cfg: FilterConfig = FilterConfig()) -> Verdict:
    side = min(face_w, face_h)
    ok = side >= cfg.min_face_side
    reason = (f"face box {face_w} x {face_h} px in the source: shorter side {side} px "
              f"{'>=' if ok else '<'} the {cfg.min_face_side} px minimum")
    return _verdict("face_size", side, cfg.min_face_side, reason, cfg)


def face_share(face_w: int, face_h: int, image_w: int, image_h: int,
               cfg: FilterConfig = FilterConfig()) -> Verdict:
    area = image_w * image_h
    share = (face_w * face_h) / area if area > 0 else 0.0
    ok = share >= cfg.min_face_share
    reason = (f"face box {face_w} x {face_h} covers {share:.2%} of the {image_w} x {image_h} picture "
              f"({'>=' if ok else '<'} {cfg.min_face_share:.2%})"
              + ("" if ok else ": a small face in a full-body picture or a scene, not a headshot"))
    return _verdict("face_share", share, cfg.min_face_share, reason, cfg)


# --- dates ---------------------------------------------------------------------------------------
def _utc(t: datetime | date) -> datetime:
    if not isinstance(t, datetime):
        t = datetime(t.year, t.month, t.day)
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _decimal_year(t: datetime) -> float:
    """2015-07-02 -> 2015.5: monotonic in time, and readable in the ledger."""
    start = datetime(t.year, 1, 1, tzinfo=timezone.utc)
    end = datetime(t.year + 1, 1, 1, tzinfo=timezone.utc)
    return t.year + (t - start) / (end - start)


def published_after(published_at: datetime | None, cfg: FilterConfig = FilterConfig()) -> Verdict:
    """Keeps items published on or after `cfg.min_published` (score and threshold in decimal years)."""
    when = _utc(published_at) if published_at is not None else None
    cutoff = _utc(cfg.min_published) if cfg.min_published is not None else None
    score = _decimal_year(when) if when is not None else math.nan
    if cutoff is None:
        return _verdict("published_after", score, -math.inf,
                        "no date filter configured (min_published is unset)", cfg, True, False)
    threshold = _decimal_year(cutoff)
    if when is None:
        keep = cfg.keep_undated
        return _verdict("published_after", score, threshold,
                        f"no date: {'kept' if keep else 'dropped'} (keep_undated={keep}); "
                        f"the cutoff is {cutoff.date().isoformat()}", cfg, keep, False)
    ok = when >= cutoff
    near = abs((when - cutoff).total_seconds()) <= cfg.doubtful_days * 86400
    reason = (f"published {when.date().isoformat()}, {'on or after' if ok else 'before'} the cutoff "
              f"{cutoff.date().isoformat()}")
    return _verdict("published_after", score, threshold, reason, cfg, ok, near)


# --- which filter runs where ---------------------------------------------------------------------
def run_image_filters(image: Image.Image, cfg: FilterConfig = FilterConfig()) -> list[Verdict]:
    """On the whole decoded picture, before detection: colour is a property of the artwork,
    and rejecting a manga page here saves detecting faces on it. Sharpness is judged on the
    crops instead, at the scale they are used (a soft 2000 px picture can give sharp crops)."""
    return [monochrome(image, cfg)]


def run_face_filters(face_w: int, face_h: int, image_w: int, image_h: int, crop: Image.Image,
                     published_at: datetime | None, cfg: FilterConfig = FilterConfig()) -> list[Verdict]:
    """On one face: its box (source pixels), the picture's size, the crop as it will be used,
    and the item's publication date. Monochrome runs again on the crop: a colour page can hold
    a grey panel or a thought bubble drawn in one ink."""
    return [
        face_size(face_w, face_h, cfg),
        face_share(face_w, face_h, image_w, image_h, cfg),
        sharpness(crop, cfg),
        monochrome(crop, cfg),
        published_after(published_at, cfg),
    ]


__all__ = ["FILTERS_VERSION", "VERSIONS", "FilterConfig", "Verdict", "colour_stats", "sharpness_stats", "monochrome",
           "sharpness", "face_size", "face_share", "published_after", "run_image_filters", "run_face_filters"]
