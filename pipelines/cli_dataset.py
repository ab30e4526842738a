"""`headshot dataset ...`: build, list, compare and export dataset versions.

The commands register on `pipelines.cli_app.dataset_app`; `pipelines/cli.py` imports this module
at its end. Heavy imports stay inside the commands so that `headshot --help` stays instant.
"""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from pipelines.cli_app import _config, _fail, _workspace, dataset_app

DIFF_LINES = 20  # a build prints at most this many changed crops; `dataset diff` prints all


def _diff_lines(d, limit: int | None = None) -> list[str]:
    lines = [f"+ {r.crop_id}  {r.image_url or r.crop_path}" for r in d.added]
    lines += [f"- {r.crop_id}  {r.image_url or r.crop_path}" for r in d.removed]
    lines += [f"~ {x.crop_id}  tags {','.join(x.tags) or '-'} -> {','.join(y.tags) or '-'}  split {x.split} -> {y.split}"
              for x, y in d.relabelled]
    if limit is not None and len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines


@dataset_app.command("build")
def dataset_build(
    name: Optional[str] = typer.Argument(None, help="Dataset name, e.g. faces (default: [dataset] name, faces)."),
    min_accepted: Optional[int] = typer.Option(None, "--min-accepted", help="Fail unless at least this many crops "
                                               "are accepted (default: [dataset] min_accepted, 1)."),
    no_rules: bool = typer.Option(False, "--no-rules", help="Take only crops a person accepted; passing every filter is not enough."),
    no_model: bool = typer.Option(False, "--no-model", help="Ignore decisions of origin 'model' (bulk-confirmed proposals)."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Share of pictures held out for "
                                                 "validation, 0 to <1 (default: [dataset] val_fraction, 0.1)."),
    split_seed: Optional[str] = typer.Option(None, "--split-seed", help="Another seed draws another train/val split."),
    empty_queue: Optional[bool] = typer.Option(None, "--require-empty-queue/--allow-queue",
                                               help="Refuse to build while doubtful crops wait for review "
                                                    "(default: [dataset] require_empty_queue, off)."),
    tags: List[str] = typer.Option([], "--tag", help="Only crops that carry this tag (a person's or a scraped one) "
                                   "or attribute (hair=blue); repeatable: every one of them."),
    exclude_tags: List[str] = typer.Option([], "--exclude-tag", help="Leave out crops that carry this tag or "
                                           "attribute; repeatable."),
) -> None:
    """Write the next version of a dataset from the review decisions and the filters' verdicts.

    A person's decision wins; a crop nobody decided on is accepted when it passed every filter
    without doubt and keeps its duplicate group; opted-out artwork is never used. A rebuild
    without new decisions writes no new version. The rules start from the project config's
    [dataset] table; these options win over it.

    Example: headshot dataset build faces --min-accepted 500
    Example: headshot dataset build fursona --tag "disney style" --exclude-tag "not a headshot"
    """
    from dataclasses import replace

    from curation.dataset_build import build_dataset
    from manifests.datasets import DatasetError
    from manifests.workspace import WorkspaceBusy

    section = _config().dataset
    name = name or section.name
    flags = {"min_accepted": min_accepted, "val_fraction": val_fraction, "split_seed": split_seed,
             "accept_by_rule": False if no_rules else None, "include_model": False if no_model else None,
             "tags": tuple(tags) or None, "exclude_tags": tuple(exclude_tags) or None}
    try:
        cfg = replace(section.build, **{k: v for k, v in flags.items() if v is not None})
        ws = _workspace()
        if section.require_empty_queue if empty_queue is None else empty_queue:
            _refuse_while_queued(ws)
        res = build_dataset(ws, name, cfg)
    except DatasetError as exc:
        _fail(str(exc))
    except WorkspaceBusy as exc:
        _fail(str(exc), 3)
    c = res.counts
    accepted = c["accepted_human"] + c["accepted_model"] + c["accepted_rule"]
    typer.echo(f"{name}: {accepted} crops accepted (by a person {c['accepted_human']}, "
               f"bulk-confirmed {c['accepted_model']}, by rule {c['accepted_rule']})")
    typer.echo(f"  left out: rejected {c['rejected']}, skipped {c['skipped']}, failed a filter {c['failed']}, "
               f"undecided {c['undecided']}, opted out {c['opted_out']}"
               + (f", not tagged as asked {c['not_tagged']}" if cfg.tags or cfg.exclude_tags else ""))
    typer.echo("  split: " + ", ".join(f"{k} {v}" for k, v in res.splits.items()))
    if res.written is None:
        typer.echo(f"no new version: {name} v{res.latest.version} already holds exactly this")
        return
    typer.echo(f"wrote {name} v{res.written.version} ({res.written.rows} crops, {res.written.path})")
    if res.previous is not None and res.diff is not None:
        s = res.diff.summary()
        typer.echo(f"{name} v{res.previous.version} -> v{res.written.version}: "
                   f"{s['added']} added, {s['removed']} removed, {s['relabelled']} relabelled")
        for line in _diff_lines(res.diff, DIFF_LINES):
            typer.echo(line)


def _refuse_while_queued(ws) -> None:
    from curation.review.status import review_status

    left = review_status(ws)["left"]
    if left:
        _fail(f"{left} doubtful crop(s) wait in the review queue and the project requires it empty "
              f"([dataset] require_empty_queue): label them (headshot review), or build with --allow-queue")


@dataset_app.command("export")
def dataset_export(
    ref: str = typer.Argument(..., help="NAME or NAME@vN (default: the latest version)."),
    out: str = typer.Option(..., "--out", help="A folder; with --format parquet a .parquet file, or a folder that receives "
                            "NAME-vN.parquet; or a URL (s3://bucket/path, file://...) to publish the version there."),
    fmt: str = typer.Option("folder", "--format", help="folder: split/class/crop files for torchvision ImageFolder; "
                            "parquet: one file with the image bytes in a column; hf: a folder Hugging Face datasets "
                            "reads (load_dataset('imagefolder', data_dir=...)) with a dataset card."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export at --out."),
    link: bool = typer.Option(False, "--link", help="Hard-link crop files instead of copying them, where the filesystem "
                              "allows: no extra space, but the export shares the workspace's (read-only) files."),
    copy: bool = typer.Option(False, "--copy", help="Copy crop files (the default; kept for scripts that pass it)."),
    storage_options: List[str] = typer.Option([], "--storage-option", help="For a URL --out: a fsspec storage option, "
                                              "KEY=VALUE (repeatable), e.g. endpoint_url=http://127.0.0.1:9000; "
                                              "credentials otherwise come from AWS_* and fsspec's config."),
) -> None:
    """Write a dataset version as files other tools read as they are, with the lineage of every crop.

    With a URL and --format parquet the version is published for other machines: URL/NAME-vN.parquet
    (crop_path relative to it, crop_sha256 of every crop) and its crops in URL/NAME-vN/crops/,
    the manifest last, so a reader never sees half a version; `headshot train --dataset
    URL/NAME-vN.parquet` trains from it anywhere.

    Example: headshot dataset export faces@v2 --out exports/faces --format folder

    Example: headshot dataset export faces@v2 --out s3://my-bucket/datasets --format parquet

    Example: headshot dataset export faces@v2 --out exports/faces-hf --format hf
    """
    from curation.dataset_export import export_dataset
    from curation.dataset_publish import publish_dataset
    from manifests.datasets import DatasetError, parse_ref
    from manifests.storage import is_url, parse_options, redact

    options: dict = {}
    try:
        name, version = parse_ref(ref)
        if link and copy:
            raise DatasetError("--link and --copy contradict each other: choose one")
        options = parse_options(storage_options)
        if is_url(out) and fmt == "parquet":
            if link:
                raise DatasetError("--link hard-links into a local folder: a URL receives copies")
            res = publish_dataset(_workspace(create=False), name, version, out, overwrite, options)
        else:
            res = export_dataset(_workspace(create=False), name, version, out, fmt, overwrite=overwrite, link=link)
    except (DatasetError, ValueError) as exc:  # ValueError: a bad --storage-option
        _fail(redact(exc, options))
    except OSError as exc:
        _fail(redact(f"cannot write {out}: {exc}", options))
    splits = ", ".join(f"{k} {v}" for k, v in sorted(res.splits.items())) or "empty"
    typer.echo(f"exported {name} v{res.version.version} ({res.rows} crops: {splits}) as {fmt} to {res.path}")
    if isinstance(res.path, str):
        typer.echo(f"  crops beside it; train elsewhere with: headshot train --dataset {res.path}")
    if fmt == "folder":
        typer.echo(f"  classes: {', '.join(res.classes) or '-'}; files hard-linked {res.linked}, copied {res.copied}")
    elif fmt == "hf":
        typer.echo(f"  splits: {', '.join(res.classes)}, a dataset card in README.md; read it with "
                   f"datasets.load_dataset(\"imagefolder\", data_dir=\"{res.path}\")")


@dataset_app.command("list")
def dataset_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every dataset with its versions.

    Example: headshot dataset list
    """
    from manifests.datasets import list_datasets

    found = list_datasets(_workspace(create=False))
    if as_json:
        typer.echo(json.dumps({n: [{"version": v.version, "rows": v.rows, "created_at": v.created_at,
                                    "content_hash": v.content_hash} for v in vs] for n, vs in found.items()}, indent=2))
        return
    if not found:
        typer.echo("no datasets yet (headshot dataset build NAME makes one)")
    for name, vs in found.items():
        latest = vs[-1]
        typer.echo(f"{name}: {len(vs)} version(s), latest v{latest.version} with {latest.rows} crops ({latest.created_at})")


@dataset_app.command("diff")
def dataset_diff(
    name: str = typer.Argument(..., help="Dataset name."),
    a: str = typer.Argument(..., help="Older version, e.g. v1."),
    b: str = typer.Argument(..., help="Newer version, e.g. v2."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """What was added, removed and relabelled between two versions.

    Example: headshot dataset diff faces v1 v2
    """
    from manifests.datasets import DatasetError, diff, parse_ref

    try:
        _, va = parse_ref(f"{name}@{a}")
        _, vb = parse_ref(f"{name}@{b}")
        d = diff(_workspace(create=False), name, va, vb)
    except DatasetError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps({
            "added": [r.crop_id for r in d.added], "removed": [r.crop_id for r in d.removed],
            "relabelled": [{"crop_id": x.crop_id, "tags": [list(x.tags), list(y.tags)], "split": [x.split, y.split]}
                           for x, y in d.relabelled],
        }, indent=2))
        return
    s = d.summary()
    typer.echo(f"{name} {a} -> {b}: {s['added']} added, {s['removed']} removed, {s['relabelled']} relabelled")
    for line in _diff_lines(d):
        typer.echo(line)


__all__ = ["dataset_build", "dataset_diff", "dataset_export", "dataset_list"]
