"""What the workspace holds: counts per stage and status, and the latest dataset versions.

The dictionary returned is the stable machine-readable form of `headshot status --json`:
keys are only ever added, never renamed or removed.
"""

from __future__ import annotations

from typing import Any

from . import tables
from .datasets import list_datasets
from .records import PIPELINE_TABLES, SCHEMA_VERSION
from .workspace import Workspace

# Stage names as users see them, in pipeline order.
STAGE_NAMES = {
    "scraped": "inputs", "stored": "images", "crops": "crops", "filters": "filter results",
    "hashes": "hashes", "dup_groups": "duplicate groups",
}


def workspace_status(ws: Workspace) -> dict[str, Any]:
    stages: dict[str, Any] = {}
    for cls in PIPELINE_TABLES:
        if "status" in cls.SCHEMA.names:
            by_status = tables.count_by(ws, cls, "status")
            stages[cls.TABLE] = {"total": sum(by_status.values()), "by_status": by_status}
        else:
            stages[cls.TABLE] = {"total": tables.read_table(ws, cls, columns=[cls.KEY[0]]).num_rows}
    datasets = {
        name: {"latest_version": vs[-1].version, "rows": vs[-1].rows, "versions": len(vs),
               "created_at": vs[-1].created_at, "content_hash": vs[-1].content_hash}
        for name, vs in list_datasets(ws).items()
    }
    return {"home": str(ws.home), "schema_version": SCHEMA_VERSION, "stages": stages, "datasets": datasets}
