"""`headshot dataset build` and `headshot dataset export` from the command line, on a
workspace ingested and processed with the CLI itself (built once, copied per test)."""

import shutil

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from curation.review.items import load_items
from curation.review.store import Change, ReviewStore
from manifests.workspace import Workspace
from pipelines.cli import app
from replicas.drawn import draw_character, encode

runner = CliRunner()


def run(home, *args):
    return runner.invoke(app, ["--home", str(home)] + [str(a) for a in args])


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-dataset")
    art = root / "art"
    art.mkdir()
    for i in (1, 3, 5, 6):
        (art / f"f{i}.png").write_bytes(encode(draw_character(i, 512), "PNG"))
    (art / "f1-small.jpg").write_bytes(encode(draw_character(1, 512).resize((384, 384), Image.LANCZOS), "JPEG", quality=90))
    home = root / "ws"
    assert run(home, "ingest", "--no-progress", "--workers", "2", art).exit_code == 0
    result = run(home, "process", "--detector", "animeface", "--no-progress", "--workers", "2")
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture
def home(processed, tmp_path):
    return shutil.copytree(processed, tmp_path / "ws")


def items_by_state(home):
    out: dict[str, list[str]] = {}
    for it in load_items(Workspace.open(home)):
        out.setdefault(it.state, []).append(it.crop_id)
    return {k: sorted(v) for k, v in out.items()}


def test_build_says_who_accepted_what_and_only_versions_changes(home):
    states = items_by_state(home)
    assert len(states["passed"]) == 3 and len(states["doubtful"]) == 2  # f1 and its smaller copy
    first = run(home, "dataset", "build", "faces")
    assert first.exit_code == 0, first.output
    assert "faces: 3 crops accepted (by a person 0, bulk-confirmed 0, by rule 3)" in first.output
    assert "undecided 2" in first.output and "split: train" in first.output
    assert "wrote faces v1 (3 crops" in first.output
    again = run(home, "dataset", "build", "faces")
    assert again.exit_code == 0 and "no new version: faces v1 already holds exactly this" in again.output
    doubtful = states["doubtful"][0]
    rejected = states["passed"][0]
    with ReviewStore(home / "review.sqlite") as store:
        store.record([Change(doubtful, "accept", ("smile",)), Change(rejected, "reject")], "ana")
    second = run(home, "dataset", "build", "faces")
    assert second.exit_code == 0, second.output
    assert "by a person 1" in second.output and "rejected 1" in second.output
    assert "wrote faces v2" in second.output and "faces v1 -> v2: 1 added, 1 removed, 0 relabelled" in second.output
    assert f"+ {doubtful}" in second.output and f"- {rejected}" in second.output
    listed = run(home, "dataset", "list")
    assert "faces: 2 version(s), latest v2 with 3 crops" in listed.output
    assert "1 added, 1 removed" in run(home, "dataset", "diff", "faces", "v1", "v2").output


def test_build_options_and_errors(home):
    few = run(home, "dataset", "build", "faces", "--min-accepted", "50")
    assert few.exit_code == 2 and "headshot: error: only 3 crop(s) accepted, fewer than the minimum 50" in few.output
    none = run(home, "dataset", "build", "faces", "--no-rules")
    assert none.exit_code == 2 and "rules are off" in none.output
    bad = run(home, "dataset", "build", "faces", "--val-fraction", "1.5")
    assert bad.exit_code == 2 and "val fraction" in bad.output
    assert run(home, "dataset", "list").output.startswith("no datasets yet")
    held = run(home, "dataset", "build", "faces", "--val-fraction", "0.99", "--split-seed", "x")
    assert held.exit_code == 0 and "wrote faces v1" in held.output
    empty = run(home.parent / "empty", "dataset", "build", "faces")
    assert empty.exit_code == 2 and "headshot process" in empty.output


def test_export_folder_and_parquet(home, tmp_path):
    assert run(home, "dataset", "build", "faces").exit_code == 0
    out = tmp_path / "exports" / "faces"
    done = run(home, "dataset", "export", "faces@v1", "--out", out)
    assert done.exit_code == 0, done.output
    assert "exported faces v1 (3 crops" in done.output and "classes: face" in done.output
    assert len(list(out.rglob("*.png"))) == 3 and (out / "metadata.csv").is_file()
    refused = run(home, "dataset", "export", "faces", "--out", out)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert run(home, "dataset", "export", "faces", "--out", out, "--overwrite", "--copy").exit_code == 0
    pq_out = tmp_path / "faces.parquet"
    done = run(home, "dataset", "export", "faces", "--out", pq_out, "--format", "parquet")
    assert done.exit_code == 0, done.output
    assert len(pd.read_parquet(pq_out)) == 3
    missing = run(home, "dataset", "export", "faces@v9", "--out", tmp_path / "x")
    assert missing.exit_code == 2 and "has no version v9" in missing.output
    unknown = run(home, "dataset", "export", "nope", "--out", tmp_path / "x")
    assert unknown.exit_code == 2 and "no dataset named 'nope'" in unknown.output
    bad_fmt = run(home, "dataset", "export", "faces", "--out", tmp_path / "x", "--format", "zip")
    assert bad_fmt.exit_code == 2 and "unknown format" in bad_fmt.output
