"""`headshot status`: one function that the CLI, the demo and the flows all call.

The dictionary is the stable machine-readable form of `headshot status --json`: keys are
only ever added, never renamed or removed.
"""

from __future__ import annotations

from typing import Any

from manifests.status import workspace_status
from manifests.workspace import Workspace


def status(ws: Workspace) -> dict[str, Any]:
    """Counts per stage and status, the review queue over the present crops, the latest
    dataset versions and the training runs."""
    from curation.review.status import review_status
    from training.runs_index import list_runs

    st = workspace_status(ws)
    st["review"] = review_status(ws)
    st["runs"] = [{k: v for k, v in r.items() if k != "mtime"} for r in list_runs(ws.runs)]
    return st
