"""published_after: keeps items published on or after `min_published` (score and threshold in decimal years)."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from .base import FACE, Filter, Score, Subject, Verdict, register
from .config import FilterConfig, utc

_YEARS_SCALE = 5.0  # for the learner: the margin in 5-year units, clipped to +-1


def _decimal_year(t: datetime) -> float:
    """2015-07-02 -> 2015.5: monotonic in time, and readable in the ledger."""
    start = datetime(t.year, 1, 1, tzinfo=timezone.utc)
    end = datetime(t.year + 1, 1, 1, tzinfo=timezone.utc)
    return t.year + (t - start) / (end - start)


@register
class PublishedAfter(Filter):
    name = "published_after"
    version = "1"
    reads = ("min_published", "keep_undated", "doubtful_days")
    judges = (FACE,)
    order = 50

    def score(self, subject: Subject) -> Score:
        when = utc(subject.published_at) if subject.published_at is not None else None
        return Score(_decimal_year(when) if when is not None else math.nan, {"when": when})

    def judge(self, score: Score, cfg: FilterConfig) -> Verdict:
        """The cutoff is compared as instants (the decimal years are for people and the learner);
        doubtful within `doubtful_days`; an undated item passes as `keep_undated` says."""
        when = score.facts["when"]
        cutoff = utc(cfg.min_published) if cfg.min_published is not None else None
        if cutoff is None:
            return self.verdict(score.value, -math.inf, True, "no date filter configured (min_published is unset)",
                                False)
        threshold = _decimal_year(cutoff)
        if when is None:
            keep = cfg.keep_undated
            return self.verdict(score.value, threshold, keep,
                                f"no date: {'kept' if keep else 'dropped'} (keep_undated={keep}); "
                                f"the cutoff is {cutoff.date().isoformat()}", False)
        ok = when >= cutoff
        near = abs((when - cutoff).total_seconds()) <= cfg.doubtful_days * 86400
        reason = (f"published {when.date().isoformat()}, {'on or after' if ok else 'before'} the cutoff "
                  f"{cutoff.date().isoformat()}")
        return self.verdict(score.value, threshold, ok, reason, near)

    def ratio(self, score: float, threshold: float) -> float:
        if not (math.isfinite(score) and math.isfinite(threshold)):
            return 0.0
        return max(-1.0, min(1.0, (score - threshold) / _YEARS_SCALE))


def published_after(published_at: datetime | None, cfg: FilterConfig = FilterConfig()) -> Verdict:
    return PublishedAfter()(Subject.of_face(0, 0, published_at=published_at), cfg)
