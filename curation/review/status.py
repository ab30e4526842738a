"""The review queue's part of `headshot status`: what waits for a person and what was decided."""

from __future__ import annotations

from typing import Any

from manifests.workspace import Workspace

from .items import DOUBTFUL, NothingToReview, load_items


def review_status(ws: Workspace) -> dict[str, Any]:
    """Counts over the present crops; never creates review.sqlite."""
    try:
        items = load_items(ws)
    except NothingToReview:
        items = []
    states: dict = {}
    if ws.review_db.exists():
        from .store import ReviewStore

        with ReviewStore(ws.review_db) as store:
            states = dict(store.current())
    present = {it.crop_id for it in items}
    decided = {c: s for c, s in states.items() if s.decision is not None and c in present}
    doubtful = [it.crop_id for it in items if it.state == DOUBTFUL]
    by_decision = {d: sum(1 for s in decided.values() if s.decision == d) for d in ("accept", "reject", "skip")}
    return {"crops": len(items), "doubtful": len(doubtful), "left": sum(c not in decided for c in doubtful),
            "decided": len(decided), "by_decision": by_decision,
            "reviewers": sorted({s.reviewer for s in decided.values()})}
