"""What each key of the project config accepts: ranges, choices and checks (months, cron
lines, dataset names, keeper policies), keyed by dotted path. `headshot init` writes
`Rule.accepts()` into its comments, so the file says what the checks enforce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from curation.crop import PADS, SIZES as CROP_SIZES
from curation.dedup import parse_policy
from curation.detect import DETECTORS, RULES as ENSEMBLE_RULES
from curation.hashes import ALGORITHMS
from curation.subject import SUBJECTS
from manifests.datasets import DatasetError, check_name
from spiders.run import SOURCES as SITES
from training.config import DEVICES, PRESETS, SIZES as TRAIN_SIZES


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


@dataclass(frozen=True)
class Rule:
    lo: float | None = None
    hi: float | None = None
    above: bool = False  # lo itself is out
    below: bool = False  # hi itself is out
    choices: tuple = ()
    check: Callable[[Any], str | None] | None = None  # a problem, or None
    says: str = ""  # what `check` accepts

    def accepts(self) -> str:
        if self.choices:
            return "one of " + "|".join(map(str, self.choices))
        if self.says:
            return self.says
        lo = None if self.lo is None else f"{'above' if self.above else 'at least'} {_num(self.lo)}"
        hi = None if self.hi is None else f"{'below' if self.below else 'at most'} {_num(self.hi)}"
        if lo and hi and not self.above and not self.below:
            return f"{_num(self.lo)} to {_num(self.hi)}"
        return " and ".join(x for x in (lo, hi) if x)

    def problem(self, v: Any) -> str | None:
        if self.choices:
            return None if v in self.choices else f"must be {self.accepts()}"
        if self.lo is not None and (v < self.lo or (self.above and v == self.lo)) or \
                self.hi is not None and (v > self.hi or (self.below and v == self.hi)):
            return f"out of range: must be {self.accepts()}"
        return self.check(v) if self.check else None


def _month(v: str) -> str | None:
    if v == "" or re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", v):
        return None
    return 'not a month: write YYYY-MM (e.g. 2015-05), or "" for none'


def _dataset_name(v: str) -> str | None:
    try:
        check_name(v)
    except DatasetError as exc:
        return str(exc)
    return None


def _policy(v: str) -> str | None:
    try:
        parse_policy(v)
    except ValueError as exc:
        return str(exc)
    return None


TASK_RUNNERS = ("threads", "dask")
_DASK_ADDRESS = re.compile(r"((tcp|tls|ws|wss)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


def _dask_address(v: str) -> str | None:
    m = _DASK_ADDRESS.fullmatch(v)
    if v == "" or m and 0 < int(m.group(4)) < 65536:
        return None
    return 'not a Dask scheduler address: write tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786), or "" for a local cluster'


CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
               ("day of week", 0, 7))
_CRON_NAMES = {3: "jan feb mar apr may jun jul aug sep oct nov dec".split(), 4: "sun mon tue wed thu fri sat".split()}


def cron_problem(line: str) -> str | None:
    """None for a 5-field cron line with every field in range; else what is wrong, for a person."""
    parts = line.split()
    if len(parts) != 5:
        return f"a cron line has 5 fields (minute hour day-of-month month day-of-week), this one {len(parts)}"
    for i, (part, (name, lo, hi)) in enumerate(zip(parts, CRON_FIELDS)):
        first = 1 if i == 3 else 0
        names = {n: j + first for j, n in enumerate(_CRON_NAMES.get(i, []))}
        for item in part.split(","):
            span, slash, step = item.partition("/")
            if slash and not (step.isdigit() and int(step) >= 1):
                return f"{name} field {part!r}: the step after '/' must be a whole number of 1 or more"
            if span == "*":
                continue
            a, dash, b = span.partition("-")
            ends = [names.get(x.lower(), int(x) if x.isdigit() else None) for x in ((a, b) if dash else (a,))]
            if None in ends:
                return f"{name} field {part!r}: write *, a number, a range a-b, a step */n, or a list of them"
            if any(not lo <= e <= hi for e in ends) or (dash and ends[0] > ends[1]):
                return f"{name} field {part!r} is out of range {lo}-{hi}"
    return None


_HASH_RULES = {"algorithm": Rule(choices=ALGORITHMS), "radius": Rule(lo=0), "review_margin": Rule(lo=0)}
RULES: dict[str, Rule] = {
    "home": Rule(check=lambda v: None if v.strip() else "must not be empty", says="a folder or fsspec URL"),
    "sources.site": Rule(choices=SITES),
    "sources.since": Rule(check=_month, says='YYYY-MM, or "" for none'),
    "sources.until": Rule(check=_month, says='YYYY-MM, or "" for none'),
    "sources.limit": Rule(lo=0),
    "ingest.min_side": Rule(lo=1),
    "ingest.max_pixels": Rule(lo=1),
    "ingest.max_bytes": Rule(lo=1),
    "process.dedup_policy": Rule(check=_policy, says="comma-separated criteria, e.g. clean,largest,lossless,original,earliest"),
    "process.workers": Rule(lo=0),
    "process.part_rows": Rule(lo=1),
    "process.part_seconds": Rule(lo=0, above=True),
    "process.detector.detector": Rule(choices=DETECTORS),
    "process.detector.members": Rule(choices=DETECTORS[:-1]),
    "process.detector.rule": Rule(choices=ENSEMBLE_RULES),
    "process.detector.merge_iou": Rule(lo=0, hi=1),
    "process.detector.scale_factor": Rule(lo=1, above=True, hi=4),
    "process.detector.min_neighbors": Rule(lo=0),
    "process.detector.min_size": Rule(lo=1),
    "process.detector.upscale_below": Rule(lo=0),
    "process.detector.max_side": Rule(lo=0),
    "process.detector.animeface_threshold": Rule(lo=0, hi=1),
    "process.detector.sure_likelihood": Rule(lo=0, hi=1),
    "process.detector.sure_neighbors": Rule(lo=0),
    "process.detector.rotations": Rule(lo=-180, hi=180),
    "process.detector.rotate_members": Rule(choices=DETECTORS[:-1]),
    "process.detector.rotate_when": Rule(choices=("fallback", "always")),
    "process.crop.margin": Rule(lo=0, hi=2),
    "process.crop.size": Rule(choices=CROP_SIZES),
    "process.crop.pad": Rule(choices=PADS),
    "process.subject": Rule(choices=SUBJECTS),
    "process.filters.min_colour": Rule(lo=0),
    "process.filters.max_tint_share": Rule(lo=0, hi=1),
    "process.filters.min_paper_share": Rule(lo=0, hi=1),
    "process.filters.min_colour_area": Rule(lo=0, hi=1),
    "process.filters.min_edge_crispness": Rule(lo=0, hi=1),
    "process.filters.photo_doubt": Rule(lo=0, hi=1),
    "process.filters.min_sharpness": Rule(lo=0),
    "process.filters.min_face_side": Rule(lo=0),
    "process.filters.min_face_share": Rule(lo=0, hi=1),
    "process.filters.doubtful_margin": Rule(lo=0, hi=1),
    "process.filters.doubtful_days": Rule(lo=0),
    **{f"process.{t}.{k}": r for t in ("hashing", "image_hashing") for k, r in _HASH_RULES.items()},
    "dataset.name": Rule(check=_dataset_name, says="letters, digits, _ - or ., starting with a letter or digit"),
    "dataset.min_accepted": Rule(lo=0),
    "dataset.val_fraction": Rule(lo=0, hi=1, below=True),
    "train.preset": Rule(choices=tuple(PRESETS)),
    "train.steps": Rule(lo=1),
    "train.batch_size": Rule(lo=1),
    "train.size": Rule(choices=TRAIN_SIZES),
    "train.device": Rule(choices=DEVICES),
    "flow.task_runner": Rule(choices=TASK_RUNNERS),
    "flow.dask_address": Rule(check=_dask_address, says='tcp://HOST:PORT, or "" for a local cluster'),
    "flow.dask_workers": Rule(lo=1),
    "schedule.*": Rule(check=cron_problem, says="a cron line, minute hour day-of-month month day-of-week"),
}


def rule_for(path: str) -> Rule | None:
    """The rule of a dotted key; indices ([2]) and schedule names do not matter."""
    path = re.sub(r"\[\d+\]", "", path)
    if path.startswith("schedule."):
        path = "schedule.*"
    return RULES.get(path)


__all__ = ["CRON_FIELDS", "RULES", "Rule", "SITES", "TASK_RUNNERS", "cron_problem", "rule_for"]
