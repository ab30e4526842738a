"""The queue's views over the present crops, and frozen snapshots the browser pages through.

A view is an ordered list of crop ids, taken once when the browser opens it (a snapshot), so
that labelling while scrolling never shifts the pages still to come. The items are read from
the workspace again when `headshot process` has written something new since.

Two rankings on the crop embeddings are snapshots too, with a score per crop: "more like
these" (`similar`) and a tag's proposals (`tag_proposals`). They are no entries of VIEWS, which
the page lists as it is: both need their examples or tag from the page.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from curation.embeddings import Embeddings
from manifests.workspace import Workspace

from .items import DOUBTFUL, FAILED, Item, load_items, queue_order
from .store import ReviewStore, State
from .tags import Similar, TagResult, more_like_these

VIEWS = {
    "queue": "doubtful crops nobody decided, most doubtful first",
    "reason": "crops a filter rejected or doubted, by filter",
    "score": "every crop, by one filter's score (lowest first)",
    "groups": "near-duplicate groups side by side, keeper first",
    "tag": "crops with a tag",
    "attribute": "crops with an attribute: hair=blue, eyes=red, tag=... (estimated or scraped)",
    "decided": "decided crops, latest first, to revise",
    "proposals": "the learner's proposals, most confident first",
    "all": "every crop",
}
MAX_SNAPSHOTS = 64


class ViewError(ValueError):
    pass


@dataclass(frozen=True)
class Snapshot:
    id: str
    view: str
    ids: list[str]


class Queue:
    """Items, label state and snapshots for one workspace; safe to share between threads."""

    def __init__(self, ws: Workspace, store: ReviewStore | None, learner_report: Callable[[], Any] = lambda: None,
                 tag_report: Callable[[], Any] = lambda: None, embeddings: Embeddings | None = None):
        self.ws = ws
        self.store = store
        self.learner_report = learner_report
        self.tag_report = tag_report  # a tags.TagReport or None
        self._embeddings = embeddings  # made on first use when not given
        self._lock = threading.RLock()
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()
        self._counter = itertools.count(1)
        self._stamp: tuple | None = None
        self._proposal_cache: tuple[Any, dict[str, str]] = (None, {})
        self.items: list[Item] = []
        self.by_id: dict[str, Item] = {}
        self.groups: dict[str, list[Item]] = {}
        self.refresh()

    # -- loading -------------------------------------------------------------------------
    def _workspace_stamp(self) -> tuple:
        out = []
        for p in sorted(self.ws.manifests.glob("*.parquet")) + [self.ws.selection_file]:
            try:
                st = p.stat()
                out.append((p.name, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                pass
        return tuple(out)

    def refresh(self, force: bool = False) -> bool:
        """Read the items again if the workspace changed; True when it did."""
        stamp = self._workspace_stamp()
        with self._lock:
            if stamp == self._stamp and not force:
                return False
            items = load_items(self.ws)
            groups: dict[str, list[Item]] = {}
            for it in items:
                if it.group_size > 1:
                    groups.setdefault(it.group_id, []).append(it)
            for members in groups.values():
                members.sort(key=lambda it: (not it.keeper, it.distance, it.crop_id))
            self.items, self.by_id, self.groups, self._stamp = queue_order(items), {it.crop_id: it for it in items}, groups, stamp
            self._filters = sorted({r["filter"] for it in items for r in it.reasons})
            # Estimated and scraped attributes (a person's tags are the store's, read per answer).
            from curation.attributes import crop_attributes

            self.attributes = crop_attributes(self.ws, self.by_id, review_tags={})
            self._attribute_values = sorted({f"{a.name}={a.value}" for v in self.attributes.values() for a in v})
            self._doubtful = {it.crop_id for it in items if it.state == DOUBTFUL}
            failed = sum(it.state == FAILED for it in items)
            self._by_state = {"doubtful": len(self._doubtful), "failed": failed,
                              "passed": len(items) - len(self._doubtful) - failed}
            return True

    def attribute_values(self) -> list[str]:
        """Every name=value some present crop carries, for the attribute view's picker."""
        self.refresh()
        return list(self._attribute_values)

    def crop_file(self, crop_id: str) -> Path | None:
        """The file of a known crop: the path comes from the manifest, never from the request, and
        only a file inside crops/ is served (a crafted row may name any file of the workspace)."""
        it = self.by_id.get(crop_id)
        if it is None:
            return None
        try:
            path = self.ws.crop_file(it.crop_path)
        except ValueError:
            return None
        return path if path.is_file() else None

    # -- views ---------------------------------------------------------------------------
    def filters(self) -> list[str]:
        return self._filters

    def _ordered(self, view: str, arg: str, states: dict[str, State]) -> list[str]:
        undecided = lambda it: states.get(it.crop_id) is None or states[it.crop_id].decision is None  # noqa: E731
        if view == "queue":
            report = self.learner_report()
            ids = [it.crop_id for it in self.items if it.state == DOUBTFUL and undecided(it)]
            if report is not None and getattr(report, "order", None):
                rank = {c: n for n, c in enumerate(report.order)}
                ids.sort(key=lambda c: rank.get(c, math.inf))  # stable: unranked keep the doubt order
            return ids
        if view == "all":
            return [it.crop_id for it in self.items]
        if view in ("reason", "score"):
            if view == "score" and not arg:  # a score means one filter's score
                arg = self.filters()[0] if self.filters() else ""
            if arg and arg not in self.filters():
                raise ViewError(f"no filter named {arg!r} (there are: {', '.join(self.filters())})")
            rows = []
            for it in self.items:
                for r in it.reasons:
                    if (not arg or r["filter"] == arg) and (view == "score" or not r["passed"] or r["doubtful"]):
                        rows.append((r["filter"], r["score"] if view == "score" else 0.0, it.crop_id))
                        break
            if view == "score":
                return [c for _, _, c in sorted(rows, key=lambda x: (x[1], x[2]))]
            order = {it.crop_id: n for n, it in enumerate(self.items)}
            return [c for _, _, c in sorted(rows, key=lambda x: (x[0], order[x[2]]))]
        if view == "groups":
            groups = sorted(self.groups.values(), key=lambda g: (-len(g), g[0].crop_id))
            return [it.crop_id for g in groups for it in g]
        if view == "tag":
            return [it.crop_id for it in self.items if arg in (states[it.crop_id].tags if it.crop_id in states else ())]
        if view == "attribute":
            if arg not in self._attribute_values:
                known = ", ".join(self._attribute_values[:20]) or "none yet (headshot attributes)"
                raise ViewError(f"no crop carries the attribute {arg!r} (there are: {known})")
            return [it.crop_id for it in self.items
                    if any(f"{a.name}={a.value}" == arg for a in self.attributes.get(it.crop_id, ()))]
        if view == "decided":
            decided = [(s.at, c) for c, s in states.items() if s.decision is not None and c in self.by_id]
            return [c for _, c in sorted(decided, reverse=True)]
        if view == "proposals":
            report = self.learner_report()
            if report is None:
                return []
            return [c for c, _, _ in report.proposals if c in self.by_id and undecided(self.by_id[c])]
        raise ViewError(f"no view named {view!r} (there are: {', '.join(VIEWS)})")

    def snapshot(self, view: str, arg: str = "") -> Snapshot:
        self.refresh()
        with self._lock:
            return self._keep(view, self._ordered(view, arg, self.store.current()))

    def _keep(self, view: str, ids: list[str]) -> Snapshot:
        with self._lock:
            snap = Snapshot(f"s{next(self._counter)}", view, ids)
            self._snapshots[snap.id] = snap
            while len(self._snapshots) > MAX_SNAPSHOTS:
                self._snapshots.popitem(last=False)
            return snap

    # -- rankings on the embeddings ------------------------------------------------------
    def embeddings(self) -> Embeddings:
        """The workspace's crop embeddings, with any shard written since (by any process)."""
        with self._lock:
            if self._embeddings is None:
                self._embeddings = Embeddings(self.ws)
        self._embeddings.refresh()
        return self._embeddings

    def similar(self, examples: list[str]) -> tuple[Snapshot, Similar]:
        """Every other present crop, most like the examples first (cosine to their mean)."""
        self.refresh()
        found = more_like_these(self.embeddings(), examples, [it.crop_id for it in self.items])
        return self._keep("similar", [c for c, _ in found.ranked]), found

    def tag_proposals(self, tag: str) -> tuple[Snapshot | None, TagResult | None, list[tuple[str, float]]]:
        """(snapshot, the tag's result, (crop id, P(tag)) still open): the proposals of the
        latest tag report, less the crops that have been looked at since."""
        report = self.tag_report()
        result = report.tags.get(tag) if report is not None else None
        if result is None:
            return None, None, []
        states = self.store.current()
        open_ = [(c, p) for c, p in result.proposals if c in self.by_id and c not in states]
        return self._keep("tag_proposals", [c for c, _ in open_]), result, open_

    def get_snapshot(self, snap_id: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(snap_id)

    def group_of(self, crop_id: str) -> list[Item]:
        it = self.by_id.get(crop_id)
        if it is None:
            return []
        return self.groups.get(it.group_id, [it])

    # -- what the browser gets -----------------------------------------------------------
    def describe(self, ids: list[str]) -> list[dict[str, Any]]:
        states = self.store.current()
        report = self.learner_report()
        proposed = self._proposed(report)
        tag_report = self.tag_report()
        out = []
        for c in ids:
            it = self.by_id.get(c)
            if it is None:
                continue
            d = it.public()
            if not d["page_url"].startswith(("http://", "https://")):
                d["page_url"] = ""  # a javascript: or data: URL from a page never becomes a link
            s = states.get(c)
            d["decision"] = s.decision if s else None
            d["tags"] = list(s.tags) if s else []
            d["attributes"] = [{"name": a.name, "value": a.value, "origin": a.origin,
                                "confidence": round(a.confidence, 2)} for a in self.attributes.get(c, ())]
            d["by"] = s.reviewer if s and s.decision else None
            p = report.p_accept.get(c) if report is not None else None
            d["p_accept"] = None if p is None else round(float(p), 3)
            d["proposal"] = proposed.get(c) if d["decision"] is None else None
            # tag -> P(tag), for tags the crop does not carry yet
            d["tag_proposals"] = {} if tag_report is None else {
                t: round(p, 3) for t, p in tag_report.proposed(c).items() if t not in d["tags"]}
            out.append(d)
        return out

    def _proposed(self, report) -> dict[str, str]:
        if report is None:
            return {}
        with self._lock:
            if self._proposal_cache[0] is not report:
                self._proposal_cache = (report, {c: d for c, d, _ in report.proposals})
            return self._proposal_cache[1]

    def counts(self) -> dict[str, Any]:
        """What is left and what was decided: O(decisions), not O(crops), since every answer carries it."""
        states = self.store.current()
        with self._lock:
            doubtful, by_state, by_id = self._doubtful, self._by_state, self.by_id
        decided = [c for c, s in states.items() if s.decision is not None and c in by_id]
        decisions = {"accept": 0, "reject": 0, "skip": 0}
        for c in decided:
            decisions[states[c].decision] += 1
        return {"total": len(by_id), "queue": len(doubtful), "left": len(doubtful) - sum(c in doubtful for c in decided),
                "decided": len(decided), "by_state": dict(by_state), "decisions": decisions}
