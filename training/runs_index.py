"""What is in `runs/`: the training runs, their data, progress and best figure. JSON only, no
torch: `headshot status` lists runs without paying for the import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """One entry per run folder with a config.json, oldest first (crawl job folders have none)."""
    out = []
    for folder in sorted(runs_dir.glob("*/config.json")) if runs_dir.is_dir() else []:
        try:
            doc = json.loads(folder.read_text())
        except (OSError, ValueError):
            continue
        root = folder.parent
        step, best = 0, {}
        last_row: dict[str, Any] = {}
        try:
            with open(root / "metrics.jsonl", encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue
                    step = max(step, int(row.get("step", 0)))
                    if "eval/kid_x1e3" in row and (not best or row["eval/kid_x1e3"] < best["kid_x1e3"]):
                        best = {"kid_x1e3": row["eval/kid_x1e3"], "step": row["step"]}
                    last_row = row
        except OSError:
            pass
        data = doc.get("data", {})
        out.append({"run": doc.get("run", root.name), "data": data.get("name", ""), "version": data.get("version"),
                    "content_hash": data.get("content_hash", ""), "step": step,
                    "steps": doc.get("config", {}).get("steps"), "best": best,
                    "diverged": "diverged" in last_row, "device": doc.get("device", ""),
                    "mtime": folder.stat().st_mtime})
    return sorted(out, key=lambda r: r["mtime"])
