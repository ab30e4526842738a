"""`headshot dataset build`: the present crops and their decisions -> the next dataset version.

Who decides, in order: an opt-out (never used, whatever anyone decided), then a person's
decision in review.sqlite (origin human, or model: proposals a person confirmed in bulk),
then the rule: a crop that passed every filter without doubt and is its duplicate group's
keeper is accepted. Failed crops, doubtful crops nobody decided on, rejected and skipped
crops stay out. Nothing here edits the review store.

The split is a pure function of the picture and its duplicate group, never of the row order
or of decisions, so a crop stays in its split from version to version, and no picture or
near-duplicate pair is ever in both train and val.

Locking: a build takes the workspace's writer lock. Without it, a build that ran while
`headshot process` was half way would see new crops before their duplicate groups and
accept duplicates by rule. The review web app does not hold the lock, so a build never waits
for it, and review.sqlite is read in one transaction (a consistent snapshot).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, field

from manifests.datasets import DatasetDiff, DatasetError, VersionInfo, check_name, diff, versions, write_version
from manifests.records import DatasetRow
from manifests.workspace import Workspace, new_run_id

from .attributes import Attr, crop_attributes
from .review.items import DOUBTFUL, FAILED, PASSED, Item, NothingToReview, load_items

TRAIN, VAL = "train", "val"
RULE_REVIEWER = "rules"
# What each crop came to; the counts a build reports and stores in the version's metadata.
CATEGORIES = ("accepted_human", "accepted_model", "accepted_rule", "rejected", "skipped", "failed",
              "undecided", "opted_out", "not_tagged")


@dataclass(frozen=True)
class BuildConfig:
    accept_by_rule: bool = True  # passed every filter without doubt + group keeper -> accepted
    min_accepted: int = 1  # fewer accepted crops is an error, not an empty version
    val_fraction: float = 0.1  # share of pictures (with their duplicate groups) held out
    split_seed: str = "headshot"  # another seed draws another split; the same seed, the same one
    include_model: bool = True  # decisions with origin "model" count (else the rule decides)
    # Only crops that carry every one of these (a person's tag, a scraped tag, or name=value of
    # an attribute: hair=blue), and none of exclude_tags; the rest are left out as "not_tagged".
    tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise DatasetError(f"val fraction {self.val_fraction} is not in [0, 1)")
        if self.min_accepted < 0:
            raise DatasetError(f"min accepted {self.min_accepted} is negative")

    def as_dict(self) -> dict:
        """JSON-shaped: the tag lists as lists, as a version's metadata reads them back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Decision:
    """The final word on one crop, and why."""

    crop_id: str
    included: bool
    category: str  # one of CATEGORIES
    decision: str | None  # accept | reject | skip, None when nobody (no rule either) decided
    origin: str  # human | model | rule | "" (undecided)
    reviewer: str
    tags: tuple[str, ...]
    why: str


@dataclass
class BuildResult:
    name: str
    written: VersionInfo | None  # None: the latest version already holds exactly this
    latest: VersionInfo  # the version that holds this content (the new one, or the existing one)
    previous: VersionInfo | None  # the version before `written` (None when there was none)
    counts: dict[str, int]
    splits: dict[str, int]
    rows: list[DatasetRow] = field(repr=False, default_factory=list)
    decisions: list[Decision] = field(repr=False, default_factory=list)
    diff: DatasetDiff | None = field(repr=False, default=None)  # previous -> written


def _state_of(states: dict, crop_id: str, cfg: BuildConfig) -> tuple[str | None, str, str, tuple[str, ...]]:
    """(decision, origin, reviewer, tags) from the store; a model decision counts only when allowed."""
    s = states.get(crop_id)
    if s is None:
        return None, "", "", ()
    tags = tuple(sorted(s.tags or ()))
    if s.decision is None or (s.origin == "model" and not cfg.include_model):
        return None, "", "", tags
    return s.decision, s.origin, s.reviewer, tags


def decide_one(it: Item, states: dict, cfg: BuildConfig) -> Decision:
    decision, origin, reviewer, tags = _state_of(states, it.crop_id, cfg)

    def out(included: bool, category: str, why: str, d=decision, o=origin, r=reviewer) -> Decision:
        return Decision(it.crop_id, included, category, d, o, r, tags, why)

    if it.opted_out:
        return out(False, "opted_out", "the artist opted out (noai): never used")
    if decision == "accept":
        return out(True, f"accepted_{origin}" if origin in ("human", "model") else "accepted_rule",
                   f"accepted by {reviewer} ({origin})")
    if decision == "reject":
        return out(False, "rejected", f"rejected by {reviewer} ({origin})")
    if decision == "skip":
        return out(False, "skipped", f"skipped by {reviewer} ({origin})")
    if it.state == DOUBTFUL:
        return out(False, "undecided", "doubtful and nobody decided yet")
    if it.state == FAILED:
        return out(False, "failed", f"failed the {it.first_failed or 'a'} filter")
    if not it.keeper:
        return out(False, "failed", f"a near-duplicate; its group {it.group_id} keeps another crop")
    if it.state == PASSED and cfg.accept_by_rule:
        return out(True, "accepted_rule", "passed every filter and keeps its duplicate group",
                   d="accept", o="rule", r=RULE_REVIEWER)
    return out(False, "undecided", "passed, but rules are off and nobody decided yet")


def decide(items: list[Item], states: dict, cfg: BuildConfig | None = None,
           attributes: dict[str, list[Attr]] | None = None) -> list[Decision]:
    """The final decision per crop, in crop id order. `states`: ReviewStore.current();
    `attributes`: crop_attributes(), for cfg.tags and cfg.exclude_tags."""
    cfg = cfg or BuildConfig()
    out = [decide_one(it, states, cfg) for it in sorted(items, key=lambda it: it.crop_id)]
    if cfg.tags or cfg.exclude_tags:
        out = [_by_tags(d, (attributes or {}).get(d.crop_id, []), cfg) for d in out]
    return out


def labels_of(d: Decision, attrs: list[Attr]) -> set[str]:
    """What --tag and --exclude-tag match for a crop: its tags (a person's, the scraped ones)
    and name=value of every attribute."""
    return set(d.tags) | {a.value for a in attrs if a.name == "tag"} | {f"{a.name}={a.value}" for a in attrs}


def _by_tags(d: Decision, attrs: list[Attr], cfg: BuildConfig) -> Decision:
    if not d.included:
        return d
    have = labels_of(d, attrs)
    missing = [t for t in cfg.tags if t not in have]
    banned = [t for t in cfg.exclude_tags if t in have]
    if not missing and not banned:
        return d
    why = (f"does not carry {', '.join(missing)}" if missing else f"carries the excluded {', '.join(banned)}")
    return Decision(d.crop_id, False, "not_tagged", d.decision, d.origin, d.reviewer, d.tags, f"left out: {why}")


def split_keys(items: list[Item]) -> dict[str, str]:
    """crop id -> the key its split is drawn from: crops linked by a picture or a duplicate
    group (transitively) share one key, the smallest picture sha256 among them."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for it in items:
        union("p:" + it.image_sha256, "c:" + it.crop_id)
        if it.group_id:
            union("c:" + it.crop_id, "g:" + it.group_id)
    smallest: dict[str, str] = {}
    for it in items:
        root = find("c:" + it.crop_id)
        if root not in smallest or it.image_sha256 < smallest[root]:
            smallest[root] = it.image_sha256
    return {it.crop_id: smallest[find("c:" + it.crop_id)] for it in items}


def split_of(key: str, cfg: BuildConfig) -> str:
    """Deterministic: a uniform number from sha256(seed, key) against the val fraction."""
    digest = hashlib.sha256(f"{cfg.split_seed}\x00{key}".encode()).digest()
    return VAL if int.from_bytes(digest[:8], "big") / 2**64 < cfg.val_fraction else TRAIN


def rows_for(items: list[Item], decisions: list[Decision], cfg: BuildConfig,
             attributes: dict[str, list[Attr]] | None = None) -> list[DatasetRow]:
    keys = split_keys(items)
    attributes = attributes or {}
    by_id = {it.crop_id: it for it in items}
    rows = []
    for d in decisions:
        if not d.included:
            continue
        it = by_id[d.crop_id]
        rows.append(DatasetRow(
            crop_id=it.crop_id, crop_path=it.crop_path, split=split_of(keys[it.crop_id], cfg), tags=d.tags,
            image_sha256=it.image_sha256, source=it.source, page_url=it.page_url, image_url=it.image_url,
            artist=it.artist, title=it.title, attributes=_attribute_strings(attributes.get(it.crop_id, [])),
        ))
    return rows


def _attribute_strings(attrs: list[Attr]) -> tuple[str, ...]:
    """name=value of the crop's attributes but a person's tags (which are the row's `tags`)."""
    return tuple(sorted({f"{a.name}={a.value}" for a in attrs if a.origin != "review"}))


def _read_states(ws: Workspace) -> dict:
    if not ws.review_db.exists():  # nobody reviewed yet: do not create an empty store
        return {}
    from .review.store import ReviewStore

    with ReviewStore(ws.review_db) as store:
        return dict(store.current())


BUSY_WAIT = 5.0  # seconds


def build_dataset(ws: Workspace, name: str, cfg: BuildConfig | None = None) -> BuildResult:
    """Write the next version of dataset `name`, or none when it would equal the latest one.

    Raises DatasetError when fewer than cfg.min_accepted crops are accepted, WorkspaceBusy
    while another headshot process writes to the workspace.
    """
    cfg = cfg or BuildConfig()
    check_name(name)
    run_id = new_run_id("dataset")
    # Other stages hold the lock only to commit a part, for a moment: wait that out, not a whole run.
    with ws.writer_lock(f"dataset build {name} {run_id}", wait=BUSY_WAIT):
        try:
            items = load_items(ws)
        except NothingToReview as exc:
            raise DatasetError(str(exc)) from None
        states = _read_states(ws)
        attributes = crop_attributes(ws, [it.crop_id for it in items],
                                     review_tags={c: tuple(s.tags) for c, s in states.items() if s.tags})
        decisions = decide(items, states, cfg, attributes)
        counts = dict.fromkeys(CATEGORIES, 0)
        counts.update(Counter(d.category for d in decisions))
        accepted = sum(d.included for d in decisions)
        if accepted < cfg.min_accepted:
            raise DatasetError(
                f"only {accepted} crop(s) accepted, fewer than the minimum {cfg.min_accepted}: "
                f"{counts['undecided']} doubtful or undecided crop(s) wait in `headshot review`"
                + ("" if cfg.accept_by_rule else "; rules are off (--no-rules)")
            )
        rows = rows_for(items, decisions, cfg, attributes)
        splits = {TRAIN: 0, VAL: 0}
        splits.update(Counter(r.split for r in rows))
        before = versions(ws, name)
        info = write_version(ws, name, rows, run_id, {"build": cfg.as_dict(), "counts": counts, "splits": splits})
    latest = info or before[-1]
    previous = before[-1] if info and before else None
    changes = diff(ws, name, previous.version, info.version) if info and previous else None
    return BuildResult(name, info, latest, previous, dict(counts), dict(splits), rows, decisions, changes)


__all__ = [
    "BuildConfig", "BuildResult", "CATEGORIES", "Decision", "TRAIN", "VAL", "build_dataset", "decide",
    "decide_one", "labels_of", "rows_for", "split_keys", "split_of",
]
