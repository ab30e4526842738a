"""`headshot demo` / `make demo`: the pipeline, offline, on artwork generated in code.

For now: generate a small replica site's worth of faces and some broken files, ingest them,
and print what the workspace holds. Later stages extend this same command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from curation.ingest import IngestConfig, ingest
from curation.synthetic import write_bad_inputs, write_faces
from manifests.status import workspace_status
from manifests.workspace import Workspace
from pipelines.report import format_status


def run_demo(home: str, count: int = 48, echo: Callable[[str], None] = print) -> dict:
    ws = Workspace.open(home)
    site = ws.home / "demo-site" / "images"
    echo(f"generating {count} artworks and 6 broken files in {site}")
    write_faces(site, count)
    write_bad_inputs(site / "broken")
    report = ingest([str(site)], ws, IngestConfig(), progress=sys.stderr.isatty())
    echo(f"ingested {report.inputs} inputs: {report.new_images} new, {report.already_stored} already stored")
    st = workspace_status(ws)
    echo(format_status(st))
    echo(f"\nnext: headshot --home {home} status --json")
    return st


if __name__ == "__main__":
    run_demo(sys.argv[1] if len(sys.argv) > 1 else "demo-workspace")
