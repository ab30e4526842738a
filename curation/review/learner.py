"""The active learner of the review queue: learns from the person's accept/reject decisions,
says how often it agrees with them on crops it has not trained on, proposes decisions for the
crops it is sure about, and puts the crops it is least sure about next in the queue.

The model (`Judge`) is a logistic regression over `features.FEATURE_NAMES`, in plain numpy: a
few thousand labels and ~150 columns fit in milliseconds with Newton's method, the result is
deterministic, and scoring 50,000 crops is one matrix product. Whole-picture crops get weights
of their own beside the shared ones. Once the workspace has crop embeddings
(curation.embeddings), their first `embed_components` principal components join the features
(`features.EmbeddingColumns`) and the labelled crops nearest by embedding vote beside the
regression; without them the learner reads what it read before.

Which decisions count:
- training: the present accept/reject of origin "human", and of origin "model" (a proposal a
  person confirmed: it is their decision too, though only on crops the model was sure about).
  "rule" decisions are left out: a rule restates the ledger, and thousands of them would
  drown the person's judgement. "skip" is no label.
- agreement: human decisions only, each predicted by a model that did not train on it.
- undecided (scored, proposed, reordered): crops with no present decision. A skipped crop
  has been seen and put aside, so it is neither proposed nor brought forward again.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from manifests.workspace import Workspace

from curation.embeddings import Embeddings

from .features import FEATURE_VERSION, EmbeddingColumns, FeatureCache, feature_names
from .items import Item
from .store import State

TRAINING_ORIGINS = ("human", "model")
LABELS = {"reject": 0.0, "accept": 1.0}


# --- the model -------------------------------------------------------------------------------------
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for any z


class LogisticRegression:
    """L2-penalised logistic regression on standardised features, fitted by Newton's method
    with step halving. The penalty is l2 / 2 * |w|^2 on the summed loss (not the intercept), so
    perfectly separable labels still give finite weights.

    standardise=False keeps the features' own scales (centred only): for coordinates along
    principal axes, where the penalty should weigh most on the directions of least variance."""

    def __init__(self, l2: float = 1.0, max_iter: int = 50, tol: float = 1e-6, standardise: bool = True):
        self.l2, self.max_iter, self.tol = float(l2), int(max_iter), float(tol)
        self.standardise = bool(standardise)
        self.coef_: np.ndarray | None = None  # on raw (unstandardised) features
        self.intercept_ = 0.0
        self.n_iter_ = 0

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "LogisticRegression":
        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.float64).ravel()
        if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
            raise ValueError(f"X must be 2-D with one row per label: X {X.shape}, y {y.shape}")
        sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        mu = X.mean(axis=0)
        sd = X.std(axis=0) if self.standardise else np.ones(X.shape[1])
        sd[sd < 1e-9] = 1.0  # a constant feature stays at 0 after centring; its weight goes to 0
        A = np.hstack([(X - mu) / sd, np.ones((len(X), 1))])
        d = A.shape[1]
        # a whisper of penalty on the intercept keeps it finite when every label is the same
        pen = np.full(d, self.l2)
        pen[-1] = 1e-6
        w = np.zeros(d)

        def loss(w: np.ndarray) -> float:
            z = A @ w
            return float(sw @ (np.logaddexp(0.0, z) - y * z) + 0.5 * pen @ (w * w))

        cur = loss(w)
        for it in range(1, self.max_iter + 1):
            p = _sigmoid(A @ w)
            g = A.T @ (sw * (p - y)) + pen * w
            H = (A * (sw * p * (1 - p))[:, None]).T @ A + np.diag(pen)
            step = np.linalg.solve(H, g)
            t = 1.0
            while True:  # Newton can overshoot on separable data: halve until the loss falls
                new = w - t * step
                nxt = loss(new)
                if nxt <= cur + 1e-12 or t < 1e-6:
                    break
                t *= 0.5
            w, cur = new, nxt
            self.n_iter_ = it
            if float(np.max(np.abs(t * step))) < self.tol:
                break
        # fold the standardisation into the weights: prediction is one product on raw features
        self.coef_ = w[:-1] / sd
        self.intercept_ = float(w[-1] - (mu / sd) @ w[:-1])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        if self.coef_ is None:
            raise RuntimeError("fit the model first")
        X = np.asarray(X)
        coef = self.coef_.astype(np.float32) if X.dtype == np.float32 else self.coef_  # no 50,000-row copy
        return X @ coef + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(accept) per row (a 1-D array, not sklearn's two columns)."""
        return _sigmoid(self.decision_function(X).astype(np.float64))


# --- the learner -----------------------------------------------------------------------------------
WHOLE = "whole"  # the feature column that marks a whole-picture crop (features.geometry_features)


def neighbour_vote(embeddings: Embeddings, train_ids: Sequence[str], y: np.ndarray, ids: Sequence[str],
                   k: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(vote, positions in `ids`): for each crop of `ids` with an embedding, the share of accepts
    among the `k` labelled crops of `train_ids` nearest it by cosine, pulled towards one half by
    one imaginary vote ((accepts + 0.5) / (k + 1): three accepts say 0.875, never 1). Crops
    without an embedding, or no labelled crop with one, get no vote."""
    T, th = embeddings.matrix(list(train_ids))
    k = min(k, len(th))
    if k < 1 or not len(ids):
        return np.zeros(0), np.zeros(0, np.int64)
    yt = np.asarray(y, np.float64)[th]
    votes, places = [], []
    for start in range(0, len(ids), chunk):
        Q, qh = embeddings.matrix(list(ids[start:start + chunk]))
        if not len(qh):
            continue
        S = Q @ T.T
        near = np.argpartition(-S, k - 1, axis=1)[:, :k] if k < S.shape[1] else np.broadcast_to(
            np.arange(S.shape[1]), S.shape)
        votes.append((yt[near].sum(axis=1) + 0.5) / (k + 1))
        places.append(qh + start)
    if not votes:
        return np.zeros(0), np.zeros(0, np.int64)
    return np.concatenate(votes), np.concatenate(places)


class Judge:
    """What the learner fits on a set of labels and asks about the rest.

    - A logistic regression over the features. With `per_kind`, whole-picture crops get a
      second set of weights on the same features (the columns times `whole`): a few labels of
      whole pictures (furry and cartoon headshots among scenes, photos and banners) can move
      their own weights without dragging the faces' along, and the shared penalty shrinks them
      towards the faces' when there is little to go on. One linear model over both kinds took
      most whole-picture headshots for rejects, since most whole pictures in a mixed scrape are
      not headshots.
    - Blended with a vote of the nearest labelled crops by embedding (`neighbour_vote`), which
      follows a style the features only see as a whole: 50 labels on ../shared/data agree
      about 5 points more often with both than with the regression alone (BENCHMARKS.md).
    """

    def __init__(self, config: "LearnerConfig", whole: int | None = None, embeddings: Embeddings | None = None):
        self.config, self.whole, self.embeddings = config, whole, embeddings
        self.model = LogisticRegression(config.l2)
        self.train_ids: list[str] = []
        self.y = np.zeros(0)

    def _design(self, X: np.ndarray) -> np.ndarray:
        if self.whole is None or not self.config.per_kind:
            return X
        return np.hstack([X, X * X[:, self.whole:self.whole + 1]])

    def fit(self, X: np.ndarray, y: np.ndarray, ids: Sequence[str]) -> "Judge":
        self.model.fit(self._design(X), y)
        self.train_ids, self.y = list(ids), np.asarray(y, np.float64)
        return self

    def predict_proba(self, X: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        p = self.model.predict_proba(self._design(X))
        cfg = self.config
        if self.embeddings is not None and cfg.neighbours > 0 and cfg.neighbour_weight > 0 and len(p):
            vote, at = neighbour_vote(self.embeddings, self.train_ids, self.y, ids, cfg.neighbours)
            if len(at):
                p[at] = (1 - cfg.neighbour_weight) * p[at] + cfg.neighbour_weight * vote
        return p


@dataclass(frozen=True)
class LearnerConfig:
    min_labels: int = 20  # human accept/reject decisions before the learner says anything
    min_per_class: int = 5  # of each of accept and reject, among those
    propose_above: float = 0.9  # P(accept) at or above which "accept" is proposed
    propose_below: float = 0.1  # at or below which "reject" is proposed
    l2: float = 1.0
    folds: int = 5  # cross-validation folds for the agreement figure
    seed: int = 0  # of the fold assignment
    # Principal components of the crop embeddings read (0: none). 8: on ../shared/data (anime
    # against the rest, pixel features beside them) 4-16 agree alike, more overfit at 20 labels.
    embed_components: int = 8
    # Whole-picture crops get their own weights beside the shared ones (see Judge).
    per_kind: bool = True
    # The vote of the `neighbours` labelled crops nearest by embedding, weighed `neighbour_weight`
    # against the regression (0 neighbours: the regression alone). Read only with embeddings.
    neighbours: int = 3
    neighbour_weight: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.propose_below < 0.5 < self.propose_above <= 1.0:
            raise ValueError("need 0 <= propose_below < 0.5 < propose_above <= 1")
        if self.folds < 2 or self.min_labels < 1 or self.min_per_class < 1 or self.l2 <= 0 or self.embed_components < 0:
            raise ValueError("need folds >= 2, min_labels >= 1, min_per_class >= 1, l2 > 0 and embed_components >= 0")
        if self.neighbours < 0 or not 0.0 <= self.neighbour_weight <= 1.0:
            raise ValueError("need neighbours >= 0 and 0 <= neighbour_weight <= 1")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LearnerReport:
    labels: int  # accept/reject decisions trained on (human + confirmed proposals)
    human_labels: int
    accepted: int  # among the training labels
    rejected: int
    agreement: float  # cross-validated share of human decisions the model repeats
    agreement_n: int  # how many human decisions that share is over
    baseline: float  # the same share for "always say the commoner decision": agreement must beat it
    p_accept: dict[str, float]  # undecided crop id -> P(accept)
    proposals: list[tuple[str, str, float]]  # (crop id, "accept" | "reject", P(accept)), surest first
    order: list[str]  # undecided crop ids, least sure first; crops without features yet last
    # (proposals are empty while the agreement does not beat the baseline, and order while it
    # is below it: see `gates`)
    pending: int  # undecided crops without pixel features yet (not scored)
    config: LearnerConfig
    feature_version: str = FEATURE_VERSION
    embedded: int = 0  # training labels whose crop has an embedding (0: embeddings not read)
    proposing: bool = False  # whether it beats the commoner decision (`gates`): proposals may be made
    ordering: bool = False  # whether it at least ties it: `order` is the learner's

    def as_dict(self, with_p: bool = True) -> dict[str, Any]:
        """JSON-safe. with_p=False leaves out the per-crop probabilities (50,000 crops make
        about 2 MB of them); proposals and order are always there."""
        out: dict[str, Any] = {
            "labels": self.labels, "human_labels": self.human_labels, "accepted": self.accepted,
            "rejected": self.rejected, "agreement": _num(self.agreement), "agreement_n": self.agreement_n,
            "baseline": _num(self.baseline), "pending": self.pending,
            "proposals": [{"id": c, "decision": d, "p_accept": round(p, 4)} for c, d, p in self.proposals],
            "order": list(self.order), "config": self.config.as_dict(), "feature_version": self.feature_version,
            "embedded": self.embedded, "proposing": self.proposing, "ordering": self.ordering,
        }
        if with_p:
            out["p_accept"] = {c: round(p, 4) for c, p in self.p_accept.items()}
        return out


def _num(x: float) -> float | None:
    """JSON has no NaN: an agreement over too few labels to cross-validate is null."""
    return round(x, 4) if math.isfinite(x) else None


def fold_ids(crop_ids: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """Fold number per crop: a seeded shuffle of the sorted ids, dealt round-robin, so folds are
    balanced in size and do not depend on the order the caller passes the crops in."""
    order = sorted(range(len(crop_ids)), key=lambda i: crop_ids[i])
    perm = np.random.default_rng(seed).permutation(len(order))
    out = np.empty(len(order), np.int64)
    for k, j in enumerate(perm):
        out[order[j]] = k % folds
    return out


def cross_validated_agreement(X: np.ndarray, y: np.ndarray, human: np.ndarray, crop_ids: Sequence[str],
                              config: LearnerConfig, judge: Callable[[], Judge] | None = None) -> tuple[float, int]:
    """(share of human labels predicted right by a model that did not see them, how many).
    Non-human labels (confirmed proposals) are always in the training part, never scored."""
    hidx = np.flatnonzero(human)
    folds = min(config.folds, len(hidx))
    if folds < 2:
        return math.nan, 0
    fid = fold_ids([crop_ids[i] for i in hidx], folds, config.seed)
    make = judge or (lambda: Judge(config))
    ids = np.asarray(crop_ids, dtype=object)
    right = 0
    for f in range(folds):
        test = hidx[fid == f]
        train = np.ones(len(y), bool)
        train[test] = False
        model = make().fit(X[train], y[train], list(ids[train]))
        right += int(((model.predict_proba(X[test], list(ids[test])) >= 0.5) == (y[test] >= 0.5)).sum())
    return right / len(hidx), len(hidx)


def gates(agreement: float, baseline: float) -> tuple[bool, bool]:
    """(propose, reorder) for a cross-validated agreement against always saying the commoner
    decision. Proposals only from a learner that beats it. The learner's order (least sure
    first) also from one that ties it: at 30 labels one label makes or breaks a tie, and asking
    about the crops it is least sure of still teaches it most (on ../shared/data the queue's
    path to 50 labels agreed 86.6% through a tie at 30 that fell back to the filters' order,
    94% with the learner's order kept; BENCHMARKS.md). Below it, or with no agreement to go by,
    the queue keeps the filters' order, and the page says why."""
    known = math.isfinite(agreement) and math.isfinite(baseline)
    # Both are shares of the same labels (22/30 against 1 - 8/30): compared with a tolerance,
    # so that rounding decides neither way.
    eps = 1e-9
    return known and agreement > baseline + eps, known and agreement >= baseline - eps


class ActiveLearner:
    """Call `update` after each batch of decisions. Pixel features of labelled crops are
    computed on the spot (a few per batch); the rest are scored once `cache.ensure` has
    computed theirs (the web app's background thread), and are `pending` until then."""

    def __init__(self, ws: Workspace, config: LearnerConfig = LearnerConfig(), cache: FeatureCache | None = None,
                 embeddings: Embeddings | None = None):
        self.ws = ws
        self.config = config
        self.cache = cache if cache is not None else FeatureCache(ws)
        # the workspace's cached embeddings, read again at each update (none yet: ledger and pixels only)
        self.embeddings = embeddings if embeddings is not None else Embeddings(ws)
        self.model: Judge | None = None  # the last one fitted on all labels

    def update(self, items: Sequence[Item], states: Mapping[str, State]) -> LearnerReport | None:
        """A report, or None while there are fewer than `min_labels` human accept/reject
        decisions, or fewer than `min_per_class` of either among them."""
        cfg = self.config
        labelled: list[Item] = []
        undecided: list[Item] = []
        for it in items:
            s = states.get(it.crop_id)
            if s is None or s.decision is None:
                undecided.append(it)
            elif s.decision in LABELS and s.origin in TRAINING_ORIGINS:
                labelled.append(it)
        y_all = np.array([LABELS[states[it.crop_id].decision] for it in labelled])
        human_all = np.array([states[it.crop_id].origin == "human" for it in labelled], bool)
        n_human = int(human_all.sum())
        h_acc = int((y_all[human_all] == 1).sum()) if n_human else 0
        if n_human < cfg.min_labels or min(h_acc, n_human - h_acc) < cfg.min_per_class:
            return None

        self.cache.ensure(labelled)
        # one set of embedding columns for the whole update: training and scoring read the same
        embedded = EmbeddingColumns.of(self.embeddings, cfg.embed_components)
        X, have = self.cache.matrix(labelled, embedded)  # all of them: ensure just computed what was missing
        y, human = y_all[have], human_all[have]
        ids = [labelled[i].crop_id for i in have]
        names = feature_names()
        whole = names.index(WHOLE) if WHOLE in names else None

        def judge() -> Judge:
            return Judge(cfg, whole, self.embeddings if embedded is not None else None)

        agreement, agreement_n = cross_validated_agreement(X, y, human, ids, cfg, judge)
        self.model = judge().fit(X, y, ids)

        U, uhave = self.cache.matrix(undecided, embedded)
        uids = [undecided[i].crop_id for i in uhave]
        p = self.model.predict_proba(U, uids) if len(U) else np.zeros(0)
        p_accept = {c: float(v) for c, v in zip(uids, p)}
        sure = np.maximum(p, 1 - p)
        proposals = [(uids[i], "accept" if p[i] >= 0.5 else "reject", float(p[i]))
                     for i in np.lexsort((uids, -sure)) if p[i] >= cfg.propose_above or p[i] <= cfg.propose_below]
        unsure = np.abs(p - 0.5)
        scored = set(uids)
        order = [uids[i] for i in np.lexsort((uids, unsure))] + [it.crop_id for it in undecided
                                                                 if it.crop_id not in scored]
        h_y = y[human]
        baseline = float(max(h_y.mean(), 1 - h_y.mean())) if len(h_y) else math.nan
        propose, reorder = gates(agreement, baseline)
        if not propose:
            proposals = []
        if not reorder:
            order = []
        return LearnerReport(
            labels=len(y), human_labels=int(human.sum()), accepted=int((y == 1).sum()), rejected=int((y == 0).sum()),
            agreement=float(agreement), agreement_n=agreement_n,
            baseline=baseline, p_accept=p_accept, proposals=proposals, order=order, pending=len(undecided) - len(uids), config=cfg,
            embedded=int(X[:, -1].sum()) if embedded is not None else 0, proposing=propose, ordering=reorder)
