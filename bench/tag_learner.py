"""The review learners on real pictures (../shared/data), with and without crop embeddings.

Each picture of the folders below is centre-cropped to a square and written at 128 px as a
crop of a temporary workspace; its embedding is computed as `update_embeddings` computes it.
Labels follow the folders, drawn at random (seeded) as a person would give them:

- a tag from a few examples: `learn_tags` given 3, 5 or 8 crops of one kind tagged and 0-40
  others looked at, against the plain "more like these" ranking from the same examples, on
  the crops nobody looked at (AUC of the ranking: 0.5 is chance), and the proposals' precision
  and recall there;
- accept/reject: `ActiveLearner` cross-validated agreement with 20-60 decisions, reading the
  pixel features alone (embed_components=0) and with the embeddings' first components (the
  ledger is empty here: these pictures went through no filter).

Whole pictures stand in for face crops (most of these have no face the detectors find), so
the figures say how much the embeddings tell kinds of art apart, not what a queue of crops
will show."""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from curation.embeddings import Embeddings, update_embeddings
from curation.review.items import Item
from curation.review.learner import ActiveLearner, LearnerConfig
from curation.review.store import State
from curation.review.tags import TagConfig, learn_tags, more_like_these
from manifests.workspace import Workspace
from media.decode import to_rgb

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FOLDERS = {  # kind -> folders under ../shared/data
    "anime": ["anime"], "furry": ["furry/headshot", "furry/fullbody", "furry/monochrome"], "cartoon": ["cartoon"],
    "photo": ["animals", "outliers/real_people"], "other": ["outliers/monochrome", "outliers/no_face", "paintings"],
}


def _square(path: Path, size: int = 128) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            im.seek(0)
            im.load()
            rgb = to_rgb(ImageOps.exif_transpose(im))
    except Exception:
        return None
    w, h = rgb.size
    s = min(w, h)
    return rgb.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((size, size), Image.LANCZOS)


def build(ws: Workspace, data: Path) -> tuple[list[Item], list[str]]:
    items, kinds = [], []
    for kind, folders in FOLDERS.items():
        for folder in folders:
            for path in sorted((data / folder).glob("*")):
                im = _square(path) if path.is_file() else None
                if im is None:
                    continue
                cid = f"{len(items):012x}"
                rel = f"crops/{cid[:2]}/{cid}.png"
                (ws.home / rel).parent.mkdir(parents=True, exist_ok=True)
                im.save(ws.home / rel)
                items.append(Item(cid, f"sha-{cid}", rel, "none", 1.0))
                kinds.append(kind)
    update_embeddings(ws, [(it.crop_id, it.crop_path) for it in items])
    return items, kinds


def _auc(scores: np.ndarray, y: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable") + 1.0
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _state(tags=(), decision="accept") -> State:
    return State(decision, tuple(tags), "bench", "human", "2026-12-03T00:00:00")


def tags_part(items, kinds, emb, draws: int) -> list[dict]:
    ids = [it.crop_id for it in items]
    kinds = np.array(kinds)
    rows = []
    every = TagConfig(propose_above=1e-9, max_proposals=10**9)  # every unlooked-at crop's P, for the AUC
    for target in ("furry", "cartoon", "anime"):
        pos_all = np.flatnonzero(kinds == target)
        neg_all = np.flatnonzero(kinds != target)
        for npos, nneg in ((3, 0), (3, 10), (5, 20), (8, 40)):
            got: dict[str, list[float]] = {}
            for d in range(draws):
                rng = np.random.default_rng(d)
                P = rng.choice(pos_all, npos, replace=False)
                N = rng.choice(neg_all, nneg, replace=False) if nneg else np.zeros(0, int)
                states = {ids[i]: _state(["kind"]) for i in P} | {ids[i]: _state() for i in N}
                unseen = [i for i in range(len(ids)) if ids[i] not in states]
                y = kinds[unseen] == target
                p = dict(learn_tags(ids, states, emb, every).tags["kind"].proposals)
                got.setdefault("auc_tag", []).append(_auc(np.array([p[ids[i]] for i in unseen]), y))
                sim = dict(more_like_these(emb, [ids[i] for i in P], [ids[i] for i in unseen]).ranked)
                got.setdefault("auc_sim", []).append(_auc(np.array([sim[ids[i]] for i in unseen]), y))
                r = learn_tags(ids, states, emb).tags["kind"]
                proposed = {c for c, _ in r.proposals}
                hit = sum(ids[i] in proposed for i in np.array(unseen)[y])
                got.setdefault("precision", []).append(hit / len(proposed) if proposed else float("nan"))
                got.setdefault("recall", []).append(hit / int(y.sum()))
                got.setdefault("proposed", []).append(len(proposed))
                got.setdefault("cv_recall", []).append(r.recall)
            rows.append({"tag": target, "examples": npos, "looked_at": nneg, "share": float((kinds == target).mean()),
                         **{k: float(np.nanmean(v)) for k, v in got.items()}})
    return rows


def accept_part(ws, items, kinds, emb, draws: int) -> list[dict]:
    rows = []
    for target in ("anime", "furry"):
        for n in (20, 40, 60):
            got: dict[str, list[float]] = {}
            for d in range(draws):
                rng = np.random.default_rng(100 + d)
                picked = rng.choice(len(items), n, replace=False)
                states = {items[i].crop_id: _state(decision="accept" if kinds[i] == target else "reject")
                          for i in picked}
                for k in (0, 8):
                    learner = ActiveLearner(ws, LearnerConfig(min_labels=10, min_per_class=3, embed_components=k),
                                            embeddings=emb)
                    r = learner.update(items, states)
                    if r is None:
                        break
                    got.setdefault(f"agree_{k}", []).append(r.agreement)
                else:
                    got.setdefault("baseline", []).append(r.baseline)
            rows.append({"accept": target, "labels": n, "draws": len(got.get("baseline", [])),
                         **{k: statistics.mean(v) for k, v in got.items()}})
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="The review learners with and without crop embeddings, on "
                                             "../shared/data. Example: python -m bench tag_learner")
    ap.add_argument("--data", type=Path, default=SHARED_DATA)
    ap.add_argument("--draws", type=int, default=20)
    args = ap.parse_args(argv)
    if not (args.data / "anime").is_dir():
        print(f"no shared data at {args.data}", file=sys.stderr)
        return {}
    home = tempfile.mkdtemp(prefix="headshot-bench-tags-")
    try:
        ws = Workspace.open(home)
        items, kinds = build(ws, args.data)
        emb = Embeddings(ws)
        tag_rows = tags_part(items, kinds, emb, args.draws)
        accept_rows = accept_part(ws, items, kinds, emb, args.draws)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    counts = {k: kinds.count(k) for k in FOLDERS}
    print("## review learners on crop embeddings (../shared/data)")
    print(f"{len(items)} pictures at 128 px: " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f"; {args.draws} random draws per row")
    print("| tag | examples | others looked at | AUC, tag classifier | AUC, more like these | proposals | "
          "precision | recall | cross-validated recall |\n|---|---|---|---|---|---|---|---|---|")
    for r in tag_rows:
        print(f"| {r['tag']} ({r['share']:.0%} of crops) | {r['examples']} | {r['looked_at']} | {r['auc_tag']:.3f} | "
              f"{r['auc_sim']:.3f} | {r['proposed']:.1f} | {r['precision']:.2f} | {r['recall']:.2f} | "
              f"{r['cv_recall']:.2f} |")
    print("\n| accept | decisions | draws | agreement, pixels only | with 8 embedding components | "
          "always the commoner decision |\n|---|---|---|---|---|---|")
    for r in accept_rows:
        print(f"| {r['accept']} | {r['labels']} | {r['draws']} | {r.get('agree_0', float('nan')):.3f} | "
              f"{r.get('agree_8', float('nan')):.3f} | {r.get('baseline', float('nan')):.3f} |")
    return {"tags": tag_rows, "accept": accept_rows}


if __name__ == "__main__":
    main()
