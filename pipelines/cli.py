"""The `headshot` command line. Thin: each command parses its options and calls one stage.

Heavy libraries are imported inside the commands so that `headshot --help` stays instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from pipelines.cli_app import (  # noqa: F401  (app, dataset_app and models_app stay importable from here)
    DEFAULT_CONFIG,
    _config,
    _fail,
    _fail_config,
    _project_path,
    _State,
    _workspace,
    app,
    dataset_app,
    models_app,
)


@app.command()
def ingest(
    paths: Optional[List[str]] = typer.Argument(None, help="Folders (walked recursively), image files, or .txt files "
                                                "listing one URL per line (default: the config's [ingest] paths)."),
    workers: int = typer.Option(0, help="Decoding processes (0 = one per core)."),
    min_side: Optional[int] = typer.Option(None, help="Images with a shorter side (px) are kept as too_small "
                                                      "(default: [ingest] min_side, 40)."),
    delay: float = typer.Option(1.0, help="Seconds between two downloads from one host."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Add images to the workspace: each input becomes a row, each distinct content one stored original.

    Example: headshot ingest ~/Pictures/art downloads/urls.txt
    """
    from dataclasses import replace

    from curation.ingest import IngestInputError
    from curation.ingest import ingest as run_ingest
    from manifests.workspace import WorkspaceBusy

    section = _config().ingest
    if not paths:
        paths = [_project_path(p) for p in section.paths]
    if not paths:
        _fail("give PATH... to ingest, or list them as [ingest] paths in the project config")
    cfg = section.stage()
    cfg = replace(cfg, workers=workers, fetch=replace(cfg.fetch, per_host_delay=delay),
                  decode=replace(cfg.decode, min_side=min_side) if min_side is not None else cfg.decode)
    try:
        report = run_ingest(paths, _workspace(), cfg, progress=not no_progress)
    except IngestInputError as exc:
        _fail(str(exc))
    except WorkspaceBusy as exc:
        _fail(str(exc), 3)
    typer.echo(f"ingested {report.inputs} inputs: {report.new_images} new images, "
               f"{report.already_stored} already stored (run {report.run_id})")
    if report.stored_status:
        typer.echo("  new images by status: " + ", ".join(f"{k} {v}" for k, v in sorted(report.stored_status.items())))
    bad_inputs = {k: v for k, v in report.input_status.items() if k != "ok"}
    if bad_inputs:
        typer.echo("  inputs not read: " + ", ".join(f"{k} {v}" for k, v in sorted(bad_inputs.items())))


@app.command()
def crawl(
    source: str = typer.Argument(..., help="getchu | myanimelist | deviantart"),
    query: Optional[str] = typer.Option(None, "--query", help="Search words (getchu keyword, MAL name, DeviantArt search)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Stop after this many images."),
    since: Optional[str] = typer.Option(None, "--since", help="First release month, YYYY-MM (getchu)."),
    until: Optional[str] = typer.Option(None, "--until", help="Last release month, YYYY-MM (getchu)."),
    sets: List[str] = typer.Option([], "--set", help="A Scrapy setting, KEY=VALUE (repeatable), e.g. GETCHU_BASE_URL=http://127.0.0.1:8080."),
    args: List[str] = typer.Option([], "--arg", help="A spider argument, KEY=VALUE (repeatable), e.g. ids=1092994 or mode=html."),
) -> None:
    """Collect artwork from a site into the workspace, politely, resuming where a stopped crawl was.

    The first [[sources]] table of SOURCE in the project config gives the query, months, limit,
    Scrapy settings and spider arguments, and its [ingest] table the size and byte limits; these
    options win over it.

    Example: headshot crawl getchu --since 2015-05 --until 2015-06 --limit 200
    """
    from spiders.prestart import prestart

    # The crawl's process starts now and imports Scrapy and the spiders while the config is read.
    pre = prestart()
    try:
        _crawl(pre, source, query, limit, since, until, sets, args)
    finally:
        if pre is not None:
            pre.cancel()  # a no-op once the crawl has run


def _crawl(pre, source, query, limit, since, until, sets, args) -> None:
    from spiders.run import CrawlRequest, SOURCES, crawl as run_crawl, parse_assignments

    if source not in SOURCES:
        _fail(f"unknown source {source!r}: choose one of {', '.join(SOURCES)}")
    project = _config()
    base = project.source(source)
    spider_args = base.spider_args() if base else {}
    settings = {**project.ingest.crawl_settings(), **(base.scrapy_settings() if base else {})}
    try:
        spider_args.update(parse_assignments(args, "--arg"))
        settings.update(parse_assignments(sets, "--set"))
    except ValueError as exc:
        _fail(str(exc))
    for key, value in (("query", query), ("limit", limit), ("since", since), ("until", until)):
        if value is not None:
            spider_args[key] = str(value)
    code = run_crawl(CrawlRequest(source, spider_args, settings), _workspace(), prestarted=pre)
    if code == 4:  # the disk is full: the crawl printed that line itself
        raise typer.Exit(4)
    if code:
        _fail(f"the {source} crawl failed (scrapy exit code {code}); rows written so far are kept", code)


@app.command()
def process(
    detector: Optional[str] = typer.Option(None, help="lbp | haar | animeface | ensemble (default: the ensemble)."),
    subject: Optional[str] = typer.Option(None, help="faces (the detectors; anime sites) | whole (one square per "
                                          "picture, centred on its subject: sources of headshots) | auto (faces, "
                                          "else the whole picture as a doubtful crop; DeviantArt furry and cartoon "
                                          "searches). Default: [process] subject, else faces."),
    margin: Optional[float] = typer.Option(None, help="Crop margin, a fraction of the face side on each side."),
    size: Optional[int] = typer.Option(None, help="Crop size in pixels: 64, 128 or 256."),
    radius: Optional[int] = typer.Option(None, help="Hamming radius within which crops are near-duplicates."),
    workers: Optional[int] = typer.Option(None, help="Processes (0 = one per core; default: [process] workers)."),
    sets: List[str] = typer.Option([], "--set", help="Any [process] setting, KEY=VALUE (repeatable), e.g. "
                                   "filters.min_sharpness=0.4 or detector.members=lbp,haar."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    no_embeddings: bool = typer.Option(False, "--no-embeddings", help="Skip the crops' EfficientNet-Lite0 "
                                       "embeddings (the review learner and more-like-these compute them later)."),
    no_attributes: bool = typer.Option(False, "--no-attributes", help="Skip the crops' hair and eye colours and "
                                       "scraped tags (`headshot attributes` adds them later)."),
) -> None:
    """Find faces, crop them, filter and de-duplicate: only what is new or what a changed setting affects.

    Then the new crops' embeddings, for the review learner, tag proposals and more like these
    (cached in the workspace; --no-embeddings leaves them for later), and their attributes: hair
    and eye colours and the tags of their pages (--no-attributes leaves them for later).

    Settings start from the project config's [process] tables; --set wins over them, and the
    named options win over --set.

    Example: headshot process --margin 0.3 --size 128 --set filters.min_sharpness=0.4
    Example: headshot process --subject auto      (furry and cartoon headshots: no picture lost)
    """
    from dataclasses import replace

    from curation.models import ModelChecksumError, ModelMissing
    from curation.process import process as run_process
    from curation.process_dedup import summary
    from manifests.workspace import WorkspaceBusy
    from pipelines.config import ConfigError

    try:
        cfg = _config().with_sets(sets, "process").process
    except ConfigError as exc:
        _fail_config(exc)
    if workers is not None:
        cfg = replace(cfg, workers=workers)
    try:
        if detector:
            cfg = replace(cfg, detector=replace(cfg.detector, detector=detector))
        if subject:
            cfg = replace(cfg, subject=subject)
        if margin is not None or size is not None:
            cfg = replace(cfg, crop=replace(cfg.crop, **{k: v for k, v in (("margin", margin), ("size", size)) if v is not None}))
        if radius is not None:
            cfg = replace(cfg, hashing=replace(cfg.hashing, radius=radius))
        ws = _workspace()
        report = run_process(ws, cfg, progress=not no_progress)
    except (ModelMissing, ModelChecksumError, ValueError) as exc:
        _fail(str(exc))
    except WorkspaceBusy as exc:
        _fail(str(exc), 3)
    typer.echo(f"processed: {report.images_detected} images detected, {report.images_recropped} re-cropped, "
               f"{report.rejudged} re-filtered, {report.crops_new} new crops, {report.images_failed} failed")
    if not no_embeddings:
        _embed_crops(ws, progress=not no_progress)
    if not no_attributes:
        from pipelines.cli_attributes import attribute_crops

        attribute_crops(ws, progress=not no_progress)
    for line in report.errors[:10]:
        typer.echo(f"  failed: {line}")
    from pipelines.report import format_summary

    typer.echo(format_summary(summary(ws, cfg)))


def _embed_crops(ws, progress: bool) -> None:
    """The present crops' embeddings that are missing, with a progress bar; never fails the command."""
    from curation.embeddings import update_embeddings

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="embed", unit="crop", leave=False)

    def tick(done: int, todo: int) -> None:
        if bar is not None:
            bar.total = todo
            bar.n = done
            bar.refresh()

    try:
        rep = update_embeddings(ws, progress=tick)
    except Exception as exc:  # the embeddings are a convenience for review; the crops are written
        typer.echo(f"embeddings not computed ({type(exc).__name__}: {exc}); `headshot review` computes them later")
        return
    finally:
        if bar is not None:
            bar.close()
    if rep.busy:
        typer.echo("embeddings: another run is computing them")
    elif rep.computed:
        typer.echo(f"embeddings: {rep.computed} new crops at {rep.crops_per_s:.0f} crops/s"
                   + (f", {rep.failed} unreadable" if rep.failed else ""))


@models_app.command("fetch")
def models_fetch(
    url: Optional[str] = typer.Option(None, help="Download from this URL instead of the pinned one (a mirror)."),
    dest: Optional[str] = typer.Option(None, help="Folder to put it in (default: HEADSHOT_CASCADE_DIR or the user cache)."),
) -> None:
    """Download the anime face cascade (pinned URL, sha256 checked).

    Example: headshot models fetch
    """
    from pathlib import Path

    from curation.models import ModelChecksumError, ModelFetchError, fetch_cascade

    try:
        path = fetch_cascade(Path(dest) if dest else None, url=url)
    except (ModelChecksumError, ModelFetchError) as exc:
        _fail(str(exc))
    typer.echo(f"saved {path}")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output (stable keys).")) -> None:
    """Counts per stage and status, the review queue, the latest dataset versions and training runs.

    Example: headshot status --json | jq .stages.stored
    """
    from pipelines.report import format_status
    from pipelines.status import status as workspace_status

    ws = _workspace(create=False)
    st = workspace_status(ws)
    typer.echo(json.dumps(st, indent=2, sort_keys=True) if as_json else format_status(st))


@app.command()
def init(
    path: str = typer.Argument(DEFAULT_CONFIG, help="The file to write (a folder: headshot.toml in it)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented project config: every setting at its default, each with what it does and its range.

    Every command reads ./headshot.toml when it exists (or the file given with --config), and
    its flags win over the file.

    Example: headshot init && headshot process   (after editing [process] in headshot.toml)
    """
    from manifests.atomic import write_bytes_atomic
    from pipelines.config_init import init_text

    target = Path(path).expanduser()
    if target.is_dir():
        target = target / DEFAULT_CONFIG
    if target.exists() and not force:
        _fail(f"{target} exists already: edit it, or write it anew with --force")
    try:
        write_bytes_atomic(target, init_text().encode("utf-8"))
    except OSError as exc:
        _fail(f"cannot write {target}: {exc}")
    typer.echo(f"wrote {target}: every setting at its default, with a comment each; flags still win over it")


@app.command()
def demo(
    home: Optional[str] = typer.Option(None, "--home", help="Workspace for the demo (default ./demo-workspace)."),
    count: int = typer.Option(48, help="How many artworks to generate."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                        help="Training steps (default 300: a few minutes on two cores)."),
) -> None:
    """Run the whole pipeline offline through the Prefect flows, in its own workspace: crawl a
    local replica site, ingest generated art, find and filter faces, write a dataset version,
    train a DCGAN on it for a few minutes, and evaluate it.

    Example: headshot demo && headshot --home demo-workspace status
    """
    from pipelines.demo import run_demo
    from pipelines.flow_runtime import ApiUnreachable

    try:
        run_demo(home or _State.home or "demo-workspace", count=count, echo=typer.echo, config=_config(),
                 train={"steps": steps} if steps else None)
    except ApiUnreachable as exc:
        _fail(str(exc), 2)


def _disk_full_line(exc: BaseException) -> str | None:
    """One line for a full disk, wherever in a command it struck; None for anything else."""
    from manifests.atomic import NO_SPACE, DiskFull, free_bytes

    if isinstance(exc, DiskFull):
        return f"headshot: error: {exc}"
    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
        from pathlib import Path

        where = Path(exc.filename).parent if exc.filename else Path.cwd()
        return f"headshot: error: {DiskFull(where, 0, free_bytes(where))}"
    return None


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted: rows written so far are kept; run the same command again to resume", err=True)
        sys.exit(130)
    except Exception as exc:
        line = _disk_full_line(exc)
        if line is None:
            raise
        typer.echo(line, err=True)
        sys.exit(4)


# Registers `dataset build/export/list/diff` on dataset_app, and `attributes`, `encode`, `review`,
# `serve-generator`, `style`, `train`,
# `generate` and `evaluate` on app. After this module's commands, so that `headshot --help`
# lists the pipeline's own steps first (Typer keeps the order commands registered in).
from pipelines import (  # noqa: E402,F401
    cli_attributes, cli_dataset, cli_encode, cli_flow, cli_generator, cli_review, cli_style, cli_train,
)

if __name__ == "__main__":
    main()
