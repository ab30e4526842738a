"""The person's own tags (keys 1-9 on the review page) learned from a few examples, and "more
like these", both on the crops' embeddings (curation.embeddings).

A tag gets a classifier of its own once `min_positives` present crops carry it. Positives: the
crops that carry it. Negatives: the crops a person has looked at (decided or tagged, any origin)
that do not. While few have been looked at, a seeded sample of the crops nobody looked at stands
in, at a low weight, for "most crops are not this"; each half of that sample is scored by the
model fitted on the other half, so a true positive in it is not talked out of its own proposal.
The features are the coordinates along the top principal axes of the embeddings (no label
shapes them) at their own scales, so a logistic regression fits in milliseconds, the penalty
weighs most on the directions that vary least, and cross-validation stays honest. On
../shared/data (bench/tag_learner.py) it ranks the crops nobody looked at better than plain
similarity to the examples does for furry and cartoon art from 3 examples on, and for anime
from 5; standardised axes ranked worse than both (measured while choosing).

Proposals go to crops nobody looked at, surest first, from the first `min_positives` examples
on. Beside them the report says how well the tag is learned: the cross-validated shares of the
positives and of the looked-at negatives that a model which did not train on them gets right
(each fold holds out positives and negatives together; the background is always trained on).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from curation.embeddings import Embeddings

from .learner import LogisticRegression, fold_ids
from .store import State


@dataclass(frozen=True)
class TagConfig:
    min_positives: int = 3  # crops carrying a tag before it is learned
    # P(tag) at or above which a crop is proposed. The weights are balanced and the penalty
    # strong for three examples, so P stays near 0.5: at or above 0.5 means nearer the tag's
    # crops than the rest.
    propose_above: float = 0.5
    max_proposals: int = 1000  # per tag
    background: int = 256  # crops nobody looked at, sampled as weak negatives
    background_weight: float = 0.25  # of each, beside a looked-at negative's 1
    components: int = 64  # principal axes of the embeddings the classifier reads, at their own scales
    l2: float = 1.0
    folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_positives < 2 or not 0.0 < self.propose_above < 1.0 or self.components < 1:
            raise ValueError("need min_positives >= 2, 0 < propose_above < 1 and components >= 1")
        if self.background < 0 or self.background_weight <= 0 or self.folds < 2 or self.l2 <= 0:
            raise ValueError("need background >= 0, background_weight > 0, folds >= 2 and l2 > 0")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TagResult:
    tag: str
    positives: int  # crops carrying it (with an embedding)
    negatives: int  # looked-at crops without it (with an embedding)
    background: int  # unlooked-at crops trained on as weak negatives
    recall: float  # cross-validated share of positives called positive (NaN: too few to tell)
    specificity: float  # the same for looked-at negatives (NaN without any)
    agreement: float  # balanced: the mean of the two (recall alone without negatives)
    proposals: list[tuple[str, float]]  # (crop id, P(tag)), surest first

    def as_dict(self, with_proposals: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tag": self.tag, "positives": self.positives, "negatives": self.negatives, "background": self.background,
            "recall": _num(self.recall), "specificity": _num(self.specificity), "agreement": _num(self.agreement),
            "proposals": len(self.proposals)}
        if with_proposals:
            out["proposed"] = [{"id": c, "p": round(p, 4)} for c, p in self.proposals]
        return out


@dataclass(frozen=True)
class TagReport:
    tags: dict[str, TagResult]  # learned tags by name
    waiting: dict[str, int]  # tags with fewer than min_positives embedded crops: how many carry them
    embedded: int  # present crops with an embedding
    pending: int  # present crops without one yet (neither trained on nor proposed)
    config: TagConfig = field(default_factory=TagConfig)

    def __post_init__(self) -> None:
        by_crop: dict[str, dict[str, float]] = {}
        for name, r in self.tags.items():
            for c, p in r.proposals:
                by_crop.setdefault(c, {})[name] = p
        object.__setattr__(self, "_by_crop", by_crop)

    def proposed(self, crop_id: str) -> dict[str, float]:
        """tag -> P(tag) for the tags proposed for this crop."""
        return self._by_crop.get(crop_id, {})  # type: ignore[attr-defined]

    def as_dict(self, with_proposals: bool = False) -> dict[str, Any]:
        return {"tags": {n: r.as_dict(with_proposals) for n, r in self.tags.items()}, "waiting": dict(self.waiting),
                "needs": self.config.min_positives, "embedded": self.embedded, "pending": self.pending}


def _num(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None


def _fit(X: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> LogisticRegression:
    # Balanced: three positives weigh as much as three hundred negatives, so P(tag) >= 0.5 means
    # "nearer the positives than the rest", whatever the two counts.
    pos = y == 1
    w = w.copy()
    if pos.any() and (~pos).any():
        w[pos] *= w[~pos].sum() / w[pos].sum()
    return LogisticRegression(l2, standardise=False).fit(X, y, sample_weight=w)


def _learn_one(tag: str, pos: np.ndarray, neg: np.ndarray, bg: np.ndarray, unseen: np.ndarray, Z: np.ndarray,
               ids: Sequence[str], cfg: TagConfig) -> TagResult:
    """pos, neg, bg, unseen: row numbers of Z (bg is a subset of unseen)."""
    rows = np.concatenate([pos, neg, bg])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg) + len(bg))])
    w = np.concatenate([np.ones(len(pos) + len(neg)), np.full(len(bg), cfg.background_weight)])
    X = Z[rows]
    # cross-validated agreement: folds over the looked-at crops, the background always trained on
    labelled = np.arange(len(pos) + len(neg))
    folds = min(cfg.folds, len(pos))
    fid = fold_ids([ids[rows[i]] for i in labelled], folds, cfg.seed)
    said = np.zeros(len(labelled), bool)
    for f in range(folds):
        test = labelled[fid == f]
        train = np.ones(len(rows), bool)
        train[test] = False
        said[test] = _fit(X[train], y[train], w[train], cfg.l2).predict_proba(X[test]) >= 0.5
    recall = float(said[:len(pos)].mean())
    specificity = float((~said[len(pos):]).mean()) if len(neg) else math.nan
    agreement = recall if not len(neg) else 0.5 * (recall + specificity)

    p = np.zeros(len(Z))
    proposals: list[tuple[str, float]] = []
    if len(unseen):
        halves = (bg[0::2], bg[1::2])
        if len(bg) >= 2:
            # each half of the background scored by the model that did not train on it
            keep = np.ones(len(rows), bool)
            models = []
            for h in range(2):
                keep[:] = True
                keep[len(pos) + len(neg) + (np.arange(len(bg)) % 2 == h).nonzero()[0]] = False
                models.append(_fit(X[keep], y[keep], w[keep], cfg.l2))
            p[unseen] = 0.5 * (models[0].predict_proba(Z[unseen]) + models[1].predict_proba(Z[unseen]))
            for h in range(2):
                p[halves[h]] = models[h].predict_proba(Z[halves[h]])
        else:
            p[unseen] = _fit(X, y, w, cfg.l2).predict_proba(Z[unseen])
        cand = unseen[p[unseen] >= cfg.propose_above]
        proposals = [(ids[r], float(p[r])) for r in sorted(cand, key=lambda r: (-p[r], ids[r]))[:cfg.max_proposals]]
    return TagResult(tag, len(pos), len(neg), len(bg), recall, specificity, agreement, proposals)


def learn_tags(crop_ids: Sequence[str], states: Mapping[str, State], embeddings: Embeddings,
               config: TagConfig = TagConfig()) -> TagReport:
    """Per-tag proposals over the present crops `crop_ids` from their present `states`."""
    cfg = config
    ids_all = list(dict.fromkeys(crop_ids))
    # a small workspace has fewer axes to give than asked for (they need two crops each)
    k = min(cfg.components, len(embeddings) // 2)
    axes = embeddings.axes(k, cfg.seed) if k >= 1 else None
    Z, have = embeddings.coordinates(ids_all, axes) if axes is not None else (None, np.zeros(0, np.int64))
    ids = [ids_all[i] for i in have]
    pending = len(ids_all) - len(ids)
    counts: dict[str, int] = {}
    for c in ids_all:
        s = states.get(c)
        for t in (s.tags if s else ()):
            counts[t] = counts.get(t, 0) + 1
    seen = np.array([c in states for c in ids], bool)
    tagged = {t: np.array([t in states[c].tags if c in states else False for c in ids], bool) for t in counts}
    learnable = [t for t in sorted(counts) if tagged[t].sum() >= cfg.min_positives]
    results: dict[str, TagResult] = {}
    if learnable and len(ids):
        unseen = np.flatnonzero(~seen)
        rng = np.random.default_rng(cfg.seed)
        # one background for every tag: sorted, so the sample does not depend on the caller's order
        by_id = unseen[np.argsort([ids[r] for r in unseen], kind="stable")]
        bg = np.sort(rng.choice(by_id, min(cfg.background, len(by_id)), replace=False)) if len(by_id) else by_id
        for t in learnable:
            pos = np.flatnonzero(tagged[t])
            neg = np.flatnonzero(seen & ~tagged[t])
            results[t] = _learn_one(t, pos, neg, bg, unseen, Z, ids, cfg)
    waiting = {t: int(tagged[t].sum()) for t in sorted(counts) if t not in results}
    return TagReport(results, waiting, len(ids), pending, cfg)


@dataclass(frozen=True)
class Similar:
    ranked: list[tuple[str, float]]  # (crop id, cosine to the examples' mean direction), nearest first
    examples: list[str]  # the examples that have an embedding
    missing: list[str]  # the examples without one yet
    pending: int  # candidates without one yet (not ranked)


def more_like_these(embeddings: Embeddings, examples: Sequence[str], candidates: Sequence[str],
                    limit: int | None = None) -> Similar:
    """Every candidate (the examples left out) ranked by cosine similarity to the examples'
    mean direction: the mean of their L2-normalised embeddings, normalised again."""
    examples = list(dict.fromkeys(examples))
    E, have = embeddings.matrix(examples)
    found = [examples[i] for i in have]
    missing = [c for c in examples if c not in set(found)]
    skip = set(examples)
    cands = [c for c in dict.fromkeys(candidates) if c not in skip]
    if not found:
        return Similar([], [], missing, len(embeddings.missing(cands)))
    q = E.mean(axis=0)
    q /= max(float(np.linalg.norm(q)), 1e-12)
    scores, chave = embeddings.similarity(q, cands)
    pending = len(cands) - len(chave)
    order = np.lexsort((np.array([cands[i] for i in chave], dtype=str), -scores))  # ties: by id
    if limit is not None:
        order = order[:max(0, limit)]
    return Similar([(cands[chave[k]], float(scores[k])) for k in order], found, missing, pending)
