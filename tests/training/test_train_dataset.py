"""Training on a dataset version: its train split, its lineage in config.json, and the errors
for versions that are not there, empty, or whose crop files are gone."""

import hashlib
import json
import logging

import pytest
from typer.testing import CliRunner

from manifests.datasets import write_version
from manifests.records import DatasetRow
from replicas.drawn import draw_character, encode
from tests.training.conftest import tiny
from training.data import DataError, dataset_source
from training.run import train


def _version(ws, name: str, n: int, val: int = 4) -> list[DatasetRow]:
    rows = []
    for i in range(n):
        data = encode(draw_character(100 + i, 128), "PNG")
        cid = hashlib.sha256(data).hexdigest()[:32]
        rel = f"crops/{cid[:2]}/{cid}.png"
        (ws.home / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws.home / rel).write_bytes(data)
        rows.append(DatasetRow(crop_id=cid, crop_path=rel, split="val" if i < val else "train",
                               image_sha256=cid * 2, source="local", image_url=f"file:///art/{i}.png"))
    write_version(ws, name, rows, "test-build")
    return rows


def test_a_run_on_a_dataset_version_trains_its_train_split(ws):
    _version(ws, "faces", 20)
    src = dataset_source(ws, "faces@v1")
    assert (len(src.files), len(src.val_files), src.version) == (16, 4, 1)
    res = train(ws.runs, tiny(steps=2), src, name="d", progress=False)
    doc = json.loads((ws.runs / "d" / "config.json").read_text())
    assert doc["data"] == {"kind": "dataset", "name": "faces", "version": 1, "content_hash": src.content_hash,
                           "train_images": 16, "val_images": 4, "skipped": 0}
    assert res.step == 2


def test_unknown_datasets_and_versions_list_what_there_is(ws):
    _version(ws, "faces", 10)
    with pytest.raises(DataError, match=r"no dataset named 'cats'.*Datasets in .*: faces \(v1\)"):
        dataset_source(ws, "cats")
    with pytest.raises(DataError, match=r"has no version v7 \(it has v1\)"):
        dataset_source(ws, "faces@v7")
    r = CliRunner().invoke(__import__("pipelines.cli", fromlist=["app"]).app,
                           ["--home", str(ws.home), "train", "--dataset", "faces@v7"], catch_exceptions=False)
    assert r.exit_code == 2 and "has no version v7 (it has v1)" in r.output


def test_missing_crop_files_warn_up_to_a_tenth_and_stop_beyond(ws, caplog):
    rows = _version(ws, "faces", 20)
    (ws.home / rows[10].crop_path).unlink()
    with caplog.at_level(logging.WARNING, logger="headshot.train"):
        src = dataset_source(ws, "faces")
    assert len(src.files) == 15 and src.skipped == 1
    assert "1 of 20 crop files of faces v1 are missing" in caplog.text and "training on the rest" in caplog.text
    for r in rows[11:14]:
        (ws.home / r.crop_path).unlink()
    with pytest.raises(DataError, match="4 of 20 crop files .* more than 10% gone, so the run does not start"):
        dataset_source(ws, "faces")


def test_a_version_with_no_train_pictures_is_refused(ws):
    _version(ws, "faces", 3, val=3)
    with pytest.raises(DataError, match="has no train pictures"):
        dataset_source(ws, "faces")
