"""The thresholds of every filter, in one typed config (saved into every output of `headshot process`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the filters. Defaults and the measurements behind them: bench/filter_eval.py."""

    # Colour at equal lightness (`colour_stats`), in chroma units of the 0-255 RGB scale.
    # One-ink pictures (line art, manga, their face boxes) measure <= 0.83, colour art >= 1.36
    # (a pink one-hue painting; the rest >= 2.5, generated faces >= 3.3).
    min_colour: float = 1.05
    # Share of the whole picture that is light and in one strong hue at which a picture with little
    # colour across hues counts as printed on tinted paper (a duotone): an orange/navy manga print
    # and its face crop measure >= 0.71, colour pictures <= 0.58 (a cream background); a face box
    # of warm skin reaches 0.67, and the eyes, hair and clothes beside it keep it colour.
    max_tint_share: float = 0.65
    # Share of bare paper from which a drawing in strokes counts as a sketch (line art, a pencil
    # sketch in one or two pencils): a scanned pencil sketch measures 0.90, colour art on white <= 0.86.
    min_paper_share: float = 0.88
    # Share of the drawing in colour below which a grey picture counts as grey with an accent: a
    # black-and-white banner with a red title measures 0.06, grey characters with coloured eyes >= 0.11.
    min_colour_area: float = 0.085
    # Fine-to-coarse detail x distinct pixels x edge cover. Sharp art (stored size, 128 px crops,
    # flat-shaded cartoons at 64-512 px) measures >= 0.8; a Gaussian blur of radius 3 at 256 px
    # <= 0.21, a 3x soft upscale <= 0.39, a 4x nearest-neighbour upscale <= 0.13.
    min_sharpness: float = 0.5
    # Edge crispness (`photo`): share of a strong edge's contrast in its steepest pixel. Photos in
    # ../shared/data measure 0.41-0.52, drawn art >= 0.46 (a loosely painted canvas), most of it
    # >= 0.50; within `photo_doubt` of the threshold a verdict is doubtful.
    min_edge_crispness: float = 0.495
    photo_doubt: float = 0.02
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
            d["min_published"] = utc(self.min_published).isoformat()
        return d


def utc(t: datetime | date) -> datetime:
    """An aware UTC datetime; a date is its midnight, a naive datetime is taken as UTC."""
    if not isinstance(t, datetime):
        t = datetime(t.year, t.month, t.day)
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
