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
    if st["datasets"]:
        lines.append("datasets")
        for name, d in st["datasets"].items():
            lines.append(f"  {name:<32}v{d['latest_version']} ({d['rows']} crops, {d['versions']} versions)")
    else:
        lines.append("datasets: none yet")
    return "\n".join(lines)
