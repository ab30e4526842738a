"""Plain-text rendering of what the stages report, for the terminal."""

from __future__ import annotations

from typing import Any

from manifests.status import STAGE_NAMES


def format_status(st: dict[str, Any]) -> str:
    lines = [f"workspace {st['home']}"]
    for table, info in st["stages"].items():
        label = f"{STAGE_NAMES.get(table, table)} ({table})"
        detail = ""
        if info.get("by_status"):
            detail = "  " + ", ".join(f"{k} {v}" for k, v in info["by_status"].items())
        lines.append(f"  {label:<32}{info['total']:>8}{detail}")
    r = st.get("review")
    if r and r["crops"]:
        by = ", ".join(f"{k} {v}" for k, v in r["by_decision"].items())
        lines.append(f"review queue: {r['left']} of {r['doubtful']} doubtful crops left; {r['decided']} decided ({by})"
                     + (f" by {', '.join(r['reviewers'])}" if r["reviewers"] else ""))
    if st["datasets"]:
        lines.append("datasets")
        for name, d in st["datasets"].items():
            lines.append(f"  {name:<32}v{d['latest_version']} ({d['rows']} crops, {d['versions']} versions)")
    else:
        lines.append("datasets: none yet")
    runs = st.get("runs") or []
    if runs:
        lines.append("training runs")
        for r in runs:
            data = f"{r['data']} v{r['version']}" if r["version"] is not None else r["data"]
            best = f", best KID x1e3 {r['best']['kid_x1e3']:.2f} at step {r['best']['step']}" if r["best"] else ""
            state = " (diverged)" if r["diverged"] else ""
            lines.append(f"  {r['run']:<32}{data}: step {r['step']} of {r['steps']}{best}{state}")
    return "\n".join(lines)


def format_summary(s: dict) -> str:
    lines = [f"{s['crops']} crops from {s['images']} images ({s['images_without_face']} with no face found): "
             f"{s['kept']} kept, {s['doubtful']} doubtful (for review)"]
    for reason, n in s["rejected_by"].items():
        lines.append(f"  left out by {reason}: {n}")
    return "\n".join(lines)
