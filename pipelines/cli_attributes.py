"""`headshot attributes`: each present crop's estimated hair and eye colours and its scraped
tags, in the workspace's `attributes` table (curation.attributes); `headshot process` runs it
for its new crops."""

from __future__ import annotations

import json
from collections import Counter

import typer

from pipelines.cli_app import _workspace, app


def attribute_crops(ws, progress: bool, echo=typer.echo) -> None:
    """The present crops' missing attributes, with a progress bar; never fails the command
    that calls it (the crops are written already; `headshot attributes` can finish later)."""
    from curation.attributes import update_attributes
    from manifests.workspace import WorkspaceBusy

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="attributes", unit="crop", leave=False)

    def tick(done: int, todo: int) -> None:
        if bar is not None:
            bar.total, bar.n = todo, done
            bar.refresh()

    try:
        rep = update_attributes(ws, progress=tick)
    except WorkspaceBusy as exc:
        echo(f"attributes not computed now ({exc}); run `headshot attributes` later")
        return
    finally:
        if bar is not None:
            bar.close()
    if rep.estimated or rep.scraped_rows:
        echo(f"attributes: colours of {rep.estimated} crops estimated, {rep.scraped_rows} scraped tags added "
             f"in {rep.seconds:.1f} s")


@app.command()
def attributes(
    show: int = typer.Option(8, "--show", min=0, help="How many of the commonest values to list per attribute."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output: counts per attribute and value."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Estimate hair and eye colours of the crops that have none yet, add the tags and character
    names their pages were scraped with, and count what the crops carry (the review queue's own
    tags included).

    Example: headshot attributes --show 12
    """
    from curation.attributes import crop_attributes
    from curation.selection import current_crops

    ws = _workspace(create=False)
    attribute_crops(ws, progress=not no_progress)
    present = [c["crop_id"] for c in current_crops(ws, columns=["crop_id"])]
    attrs = crop_attributes(ws, present)
    counts: dict[str, Counter] = {}
    for values in attrs.values():
        for a in values:
            counts.setdefault(f"{a.name} ({a.origin})", Counter())[a.value] += 1
    if as_json:
        typer.echo(json.dumps({"crops": len(present), "with_attributes": len(attrs),
                               "counts": {k: dict(v.most_common()) for k, v in sorted(counts.items())}},
                              indent=2, sort_keys=True))
        return
    typer.echo(f"{len(present)} crops, {len(attrs)} with attributes")
    for key in sorted(counts):
        common = counts[key].most_common(show)
        more = len(counts[key]) - len(common)
        typer.echo(f"  {key}: " + ", ".join(f"{v} {n}" for v, n in common) + (f" (+{more} more)" if more > 0 else ""))
