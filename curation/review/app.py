"""The review queue's web app: a static keyboard-first page and a small JSON API.

Security: images are served by crop id only (the path comes from the manifest); the page
puts every scraped text in the DOM as text, and a Content-Security-Policy forbids inline
script; guard.py checks the Host header and the token on every request, and refuses writes
from another origin. Bodies refuse unknown fields; who made a decision (human or model) is
decided here from the endpoint, never taken from the client. A full disk answers 507 and
writes nothing, so the page can send the same keys again.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ..dataset_export import sniff_format
from .guard import Guard
from .queue import VIEWS, Queue, ViewError
from .store import Change, ReviewError, StoreUnavailable, check_decision, check_reviewer, check_tag

CROP_ID = re.compile(r"^[0-9a-f]{8,64}$")
MAX_EXAMPLES = 500  # crop ids one "more like these" may start from (they travel in the URL)
STATIC = {"review.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8"}
log = logging.getLogger("headshot.review")


@dataclass
class AppConfig:
    token: str | None = None  # required on every request when set
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")  # "*" allows any (with a token)
    page_size_max: int = 1000
    on_decided: Callable[[], None] = field(default=lambda: None)  # e.g. wake the learner
    learner_needs: Callable[[], dict] = field(default=lambda: {})  # how many more labels it needs


class Body(BaseModel):
    """Every request body: an unknown field is refused, never ignored. The origin of a decision
    (human, model) is the server's to say, from the endpoint the page used; a client that
    sends one is told so instead of having it quietly dropped or, worse, believed."""

    model_config = ConfigDict(extra="forbid")


class DecideBody(Body):
    reviewer: str
    ids: list[str] = Field(min_length=1, max_length=100_000)
    decision: str


class Op(Body):
    op: str  # decide | tag
    ids: list[str] = Field(min_length=1, max_length=100_000)
    decision: str | None = None
    tag: str | None = None
    on: bool = True


class BatchesBody(Body):
    """Several key presses sent together: each is still its own batch (transaction, undo step)."""

    reviewer: str
    ops: list[Op] = Field(min_length=1, max_length=1000)


class TagBody(Body):
    reviewer: str
    ids: list[str] = Field(min_length=1, max_length=100_000)
    tag: str
    on: bool = True


class UndoBody(Body):
    reviewer: str


class TagNameBody(Body):
    key: int
    name: str | None = None


class GroupBody(Body):
    reviewer: str
    crop_id: str


class ConfirmBody(Body):
    reviewer: str
    proposals: dict[str, str] = Field(min_length=1, max_length=100_000)  # crop id -> the decision shown


def _validation_detail(errors: list[dict]) -> str:
    """A 422's detail as one readable line. The raw `input` and `ctx` are never echoed: a NaN
    or Infinity in them cannot be written as JSON (FastAPI's own handler answers 500 then)."""
    parts = []
    for e in errors[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()))
        given = e.get("input")
        if e.get("type") == "json_invalid":
            why = f"the body is not valid JSON ({str((e.get('ctx') or {}).get('error', ''))[:200]})"
        elif isinstance(given, float) and not math.isfinite(given):
            why = f"{given!r} is not a JSON number ({e.get('msg', '')})"
        else:
            why = str(e.get("msg", "invalid"))
        parts.append(f"{where}: {why}" if where else why)
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def _image_type(data: bytes) -> str:
    fmt = sniff_format(data, "")
    return f"image/{fmt.lower()}" if fmt in ("PNG", "JPEG", "WEBP") else "application/octet-stream"


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def create_app(queue: Queue, cfg: AppConfig | None = None) -> FastAPI:
    cfg = cfg or AppConfig()
    app = FastAPI(title="headshot review", docs_url=None, redoc_url=None, openapi_url=None)
    store = queue.store

    app.add_middleware(Guard, token=cfg.token, allowed_hosts=cfg.allowed_hosts)

    def known(ids: list[str]) -> list[str]:
        bad = [c for c in ids if not CROP_ID.match(c) or c not in queue.by_id]
        if bad:
            raise HTTPException(404, f"unknown crop id {bad[0][:80]!r}")
        return list(dict.fromkeys(ids))

    @app.exception_handler(ReviewError)
    @app.exception_handler(ViewError)
    async def refused(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(list(exc.errors()))}, status_code=422)

    @app.exception_handler(StoreUnavailable)
    async def unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        # 507 Insufficient Storage: nothing was written, so the page keeps the keys and sends them
        # again; one line in the log says why (a traceback would bury it).
        log.error("%s %s not saved: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=507)

    @app.get("/")
    def index() -> Response:
        return Response(_static("index.html"), media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, "no such file")
        return Response(_static(name), media_type=STATIC[name])

    @app.get("/crop/{crop_id}")
    async def crop(crop_id: str) -> Response:
        # Crops are a few KB: one read on the event loop is ~4x faster than a streamed file
        # response through the thread pool, and the first screen asks for 150 of them at once.
        path = queue.crop_file(crop_id) if CROP_ID.match(crop_id) else None
        if path is None:
            raise HTTPException(404, "no crop with this id")
        try:
            data = path.read_bytes()
        except OSError:  # removed or replaced since the check: as if it never was
            raise HTTPException(404, "no crop with this id") from None
        return Response(data, media_type=_image_type(data), headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/api/meta")
    def meta() -> dict[str, Any]:
        return {"views": VIEWS, "filters": queue.filters(), "tags": {str(k): v for k, v in store.tags().items()},
                "attributes": queue.attribute_values(), "counts": queue.counts()}

    @app.get("/api/items")
    def items(view: str = "queue", arg: str = "", snap: str = "", offset: int = 0, limit: int = 200) -> dict[str, Any]:
        limit = max(1, min(limit, cfg.page_size_max))
        if snap:
            s = queue.get_snapshot(snap)
            if s is None:
                raise HTTPException(410, "this view is gone (the server restarted); reload the page")
        else:
            s = queue.snapshot(view, arg)
        page = s.ids[max(0, offset):max(0, offset) + limit]
        return {"snap": s.id, "view": s.view, "total": len(s.ids), "offset": offset, "items": queue.describe(page)}

    @app.get("/api/items/{crop_id}/history")
    def history(crop_id: str) -> dict[str, Any]:
        known([crop_id])
        return {"id": crop_id, "history": store.history(crop_id)}

    @app.get("/api/group/{crop_id}")
    def group(crop_id: str) -> dict[str, Any]:
        known([crop_id])
        return {"items": queue.describe([it.crop_id for it in queue.group_of(crop_id)])}

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        return queue.counts()

    def answer(batch: str | None, ids: list[str]) -> dict[str, Any]:
        cfg.on_decided()
        return {"batch": batch, "items": queue.describe(ids), "counts": queue.counts()}

    @app.post("/api/decide")
    def decide(body: DecideBody) -> dict[str, Any]:
        ids = known(body.ids)
        return answer(store.record([Change(c, body.decision) for c in ids], body.reviewer, origin="human"), ids)

    def tag_changes(ids: list[str], tag: str, on: bool, tags: dict[str, tuple[str, ...]]) -> list[Change]:
        changes = []
        for c in ids:
            now = set(tags[c]) if c in tags else set()
            now = now | {tag} if on else now - {tag}
            tags[c] = tuple(sorted(now))
            changes.append(Change(c, None, tags[c]))
        return changes

    @app.post("/api/tag")
    def tag(body: TagBody) -> dict[str, Any]:
        ids = known(body.ids)
        tags = {c: s.tags for c, s in store.current().items()}
        return answer(store.record(tag_changes(ids, body.tag, body.on, tags), body.reviewer, origin="human"), ids)

    @app.post("/api/batches")
    def batches(body: BatchesBody) -> dict[str, Any]:
        """Decisions and tags in key-press order, each its own batch; all are checked, then all are
        written in one transaction or none (a page that retries after a refusal never doubles one)."""
        tags = {c: s.tags for c, s in store.current().items()}
        planned, touched = [], []
        for op in body.ops:
            ids = known(op.ids)
            touched += ids
            if op.op == "decide":
                planned.append([Change(c, check_decision(op.decision)) for c in ids])
            elif op.op == "tag" and op.tag is not None:
                planned.append(tag_changes(ids, check_tag(op.tag), op.on, tags))
            else:
                raise ReviewError(f"an op must be 'decide' or 'tag' (with a tag), not {op.op!r}")
        check_reviewer(body.reviewer)
        written = store.record_many(planned, body.reviewer, origin="human")
        return answer(written[-1], list(dict.fromkeys(touched)))

    @app.post("/api/group-decide")
    def group_decide(body: GroupBody) -> dict[str, Any]:
        """One key for a duplicate group: keep its keeper, reject the rest."""
        known([body.crop_id])
        members = queue.group_of(body.crop_id)
        changes = [Change(it.crop_id, "accept" if it.keeper else "reject") for it in members]
        return answer(store.record(changes, body.reviewer, origin="human"), [c.crop_id for c in changes])

    @app.post("/api/confirm")
    def confirm(body: ConfirmBody) -> dict[str, Any]:
        """Record the learner's proposals the person saw and confirmed, as decisions of origin "model"."""
        ids = known(list(body.proposals))
        changes = [Change(c, check_decision(body.proposals[c])) for c in ids]
        return answer(store.record(changes, body.reviewer, origin="model"), ids)

    @app.post("/api/undo")
    def undo(body: UndoBody) -> dict[str, Any]:
        return answer(None, store.undo(body.reviewer))

    @app.post("/api/tags")
    def set_tag(body: TagNameBody) -> dict[str, Any]:
        store.set_tag(body.key, body.name)
        return {"tags": {str(k): v for k, v in store.tags().items()}}

    def tags_summary() -> dict[str, Any]:
        report = queue.tag_report()
        return {"tags": {} if report is None else report.as_dict()}

    @app.get("/api/learner")
    def learner() -> dict[str, Any]:
        report = queue.learner_report()
        if report is None:
            return {"ready": False, **cfg.learner_needs(), **tags_summary()}
        agreement = report.agreement if report.agreement == report.agreement else None  # NaN: too few to tell
        baseline = report.baseline if report.baseline == report.baseline else None
        return {"ready": True, "proposing": report.proposing, "ordering": report.ordering,
                "labels": report.labels, "human_labels": report.human_labels,
                "agreement": agreement, "agreement_n": report.agreement_n, "baseline": baseline,
                "proposals": len(report.proposals), "pending": report.pending,
                "embedded": getattr(report, "embedded", 0), **cfg.learner_needs(), **tags_summary()}

    @app.get("/api/similar")
    def similar(ids: str = "", limit: int = 200) -> dict[str, Any]:
        """More like these: every other crop ranked by cosine similarity of its embedding to the
        examples' mean, as a snapshot the page can page through with /api/items?snap=."""
        wanted = [c for c in ids.split(",") if c]
        if not wanted:
            raise HTTPException(400, "ids: one or more crop ids, comma-separated")
        if len(wanted) > MAX_EXAMPLES:
            raise HTTPException(400, f"at most {MAX_EXAMPLES} example crops, not {len(wanted)}")
        snap, found = queue.similar(known(wanted))
        limit = max(1, min(limit, cfg.page_size_max))
        out: dict[str, Any] = {
            "snap": snap.id, "view": snap.view, "total": len(snap.ids), "examples": found.examples,
            "missing": found.missing, "pending": found.pending,
            "items": [{"id": c, "score": round(v, 4)} for c, v in found.ranked[:limit]]}
        if not found.examples:
            out["why"] = "none of these crops has an embedding yet (the learner computes them in the background)"
        return out

    @app.get("/api/tag-proposals")
    def tag_proposals(tag: str, limit: int = 200) -> dict[str, Any]:
        """The crops proposed for one tag, surest first (a snapshot, as /api/similar), and how
        well the tag is learned; `ready` is false until enough crops carry it."""
        snap, result, open_ = queue.tag_proposals(check_tag(tag))
        if result is None:
            report = queue.tag_report()
            summary = report.as_dict() if report is not None else {}
            return {"tag": tag, "ready": False, "carried": summary.get("waiting", {}).get(tag, 0),
                    "needs": summary.get("needs"), "pending": summary.get("pending")}
        limit = max(1, min(limit, cfg.page_size_max))
        return {**result.as_dict(with_proposals=False), "ready": True, "snap": snap.id, "view": snap.view,
                "total": len(snap.ids), "items": [{"id": c, "p": round(p, 4)} for c, p in open_[:limit]]}

    return app
