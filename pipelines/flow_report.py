"""What a flow run says about itself: the summary's lines for the terminal, its markdown for
the run's artifact, and the artifacts themselves (markdown, the dataset table, the samples)."""

from __future__ import annotations

import re
from typing import Any

from pipelines.report import format_status

TABLE_ROWS = 50  # rows of a dataset version shown in its table artifact


def artifact_key(*parts: str) -> str:
    """Artifact keys take lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"


def build_lines(s: dict[str, Any]) -> list[str]:
    lines = [f"build {s['build']} on {s['home']}"]
    for label, src in s["sources"].items():
        if src["ok"]:
            lines.append(f"  crawl {label}: ok, rows {_counts(src['rows'])}" + (" (cached)" if src["cached"] else ""))
        else:
            lines.append(f"  crawl {label}: FAILED: {src['error']}")
    ing = s["ingest"]
    if ing is None:
        lines.append("  ingest: nothing to read ([ingest] paths is empty)")
    elif "error" in ing:
        lines.append(f"  ingest: FAILED: {ing['error']}")
    else:
        lines.append(f"  ingest: {ing['inputs']} inputs, {ing['new_images']} new images, {ing['already_stored']} "
                     f"already stored" + (" (cached)" if ing.get("cached") else ""))
    p = s["process"]
    if "error" in p:
        lines.append(f"  process: FAILED: {p['error']}")
    else:
        lines.append(f"  process: {p['jobs']} images ({_counts(p['kinds'])}) in {p['tasks']} tasks, "
                     f"{p['cached_tasks']} cached; {p['crops_new']} new crops, {p['failed']} failed, "
                     f"{p['duplicates']} near-duplicates")
    r = s["review"]
    if r:
        lines.append(f"  review queue: {r['crops']} crops, {r['doubtful']} doubtful, {r['left']} left to label")
    d = s["dataset"]
    if d.get("version"):
        diff = d.get("diff")
        lines.append(f"  dataset {d['name']}: wrote v{d['version']} ({d['rows']} crops)"
                     + (f"; v{d['previous']} -> v{d['version']}: {diff['added']} added, {diff['removed']} removed, "
                        f"{diff['relabelled']} relabelled" if diff else ""))
    else:
        lines.append(f"  dataset {d['name']}: no new version: {d['why']}")
    if s["failed"]:
        lines.append("failed: " + "; ".join(s["failed"]))
    return lines


def build_markdown(s: dict[str, Any]) -> str:
    md = [f"# headshot build `{s['build']}`", "", f"Workspace `{s['home']}`.", "", "## Stages", "",
          "| stage | result |", "|---|---|"]
    for line in build_lines(s)[1:]:
        if line.startswith("  "):
            stage, _, result = line.strip().partition(": ")
            md.append(f"| {stage} | {result.replace('|', '/')} |")
    failing = {k: v["error"] for k, v in s["sources"].items() if not v["ok"]}
    md += ["", "## Failing sources", ""]
    md += [f"- **{k}**: {v}" for k, v in failing.items()] or ["none"]
    d = s["dataset"]
    md += ["", f"## Dataset {d['name']}", ""]
    if d.get("version"):
        md.append(f"New version **v{d['version']}** with {d['rows']} crops; splits {_counts(d.get('splits', {}))}; "
                  f"by decision {_counts({k: v for k, v in d.get('counts', {}).items() if v})}.")
        if d.get("diff"):
            md += ["", f"Diff v{d['previous']} -> v{d['version']}: " + _counts(d["diff"]), "",
                   "| change | crop | what |", "|---|---|---|"]
            md += [f"| {r['change']} | `{r['crop_id'][:16]}` | {r['what']} |" for r in d.get("diff_rows", [])]
    else:
        md.append(f"No new version: {d['why']}")
    md += ["", "## Workspace status", "", "```", format_status(s["status"]), "```"]
    if s["failed"]:
        md += ["", "## Failed", ""] + [f"- {f}" for f in s["failed"]]
    return "\n".join(md)


def train_lines(s: dict[str, Any]) -> list[str]:
    if not s["trained"]:
        return [f"train-when-ready: nothing to do: {s['why']}"]
    t = s["training"]
    head = (f"trained {s['dataset']} v{s['version']} as run {t['run']}: step {t['step']} of {t['steps']}"
            + (" (resumed)" if s.get("resumed") else ""))
    lines = [head]
    if t.get("interrupted"):
        lines.append("  stopped with a checkpoint: run `headshot flow train` again to go on")
    ev = s.get("evaluation") or {}
    if "kid_x1e3" in ev:
        # A spread of 0 means every KID subset was the whole of both sets (a small split), not certainty.
        spread = (f"+- {ev['kid_x1e3_std']:.2f}" if ev.get("kid_x1e3_std") else
                  f"on all {ev.get('n_real', '?')} real and {ev.get('n_fake', '?')} generated pictures: no spread")
        lines.append(f"  KID x1e3 {ev['kid_x1e3']:.2f} ({spread}), precision {ev['precision']:.3f}, "
                     f"recall {ev['recall']:.3f}, copy rate {ev.get('copy_rate', 0):.3f}, against the {ev['against']}")
    elif ev.get("skipped"):
        lines.append(f"  evaluation skipped: {ev['skipped']}")
    if s.get("error"):
        lines.append(f"failed: {s['error']}")
    return lines


def train_markdown(s: dict[str, Any]) -> str:
    md = ["# headshot train-when-ready", ""] + [line.strip() for line in train_lines(s)]
    ev = s.get("evaluation") or {}
    figures = {k: v for k, v in ev.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if figures:
        md += ["", "| figure | value |", "|---|---|"] + [f"| {k} | {v:.4g} |" for k, v in sorted(figures.items())]
    return "\n".join(md)


def metric_rows(s: dict[str, Any]) -> list[dict[str, Any]]:
    t, ev = s.get("training") or {}, s.get("evaluation") or {}
    rows = [{"metric": f"loss/{k}", "value": v} for k, v in sorted((t.get("losses") or {}).items())]
    rows += [{"metric": k, "value": v} for k, v in sorted(ev.items())
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return rows


def dataset_rows(ws, name: str, version: int, n: int = TABLE_ROWS) -> list[dict[str, Any]]:
    from manifests.datasets import read_version

    cols = ("crop_id", "split", "tags", "source", "artist", "title", "image_url")
    return [{c: (",".join(getattr(r, c)) if c == "tags" else getattr(r, c)) for c in cols}
            for r in read_version(ws, name, version)[:n]]
