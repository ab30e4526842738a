"""`dataset export --format hf`: Hugging Face's `datasets` loads the folder with
load_dataset("imagefolder", data_dir=...) and finds every crop with its split, tags, source
URL and attributes; the dataset card says the counts, sources and opt-outs; the export is
whole or absent and --overwrite replaces only an earlier export. Offline: nothing is fetched."""

from __future__ import annotations

import os
import re
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from curation.attributes import update_attributes
from curation.dataset_build import BuildConfig, build_dataset
from curation.dataset_export import ExportError, export_dataset
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from curation.review.store import Change, ReviewStore
from manifests import tables
from manifests.datasets import read_version
from manifests.records import ScrapedImage
from manifests.stage import write_rows
from manifests.workspace import Workspace
from pipelines.cli import app
from replicas.drawn import face_colours, write_faces

CFG = replace(ProcessConfig(), detector=replace(ProcessConfig().detector, detector="animeface"), workers=2)


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    ws = Workspace.open(root / "ws")
    write_faces(root / "art", 14, size=256)
    ingest([str(root / "art")], ws, progress=False)
    process(ws, CFG, progress=False)
    crops = sorted(tables.read_records(ws, ScrapedImage), key=lambda r: r.image_url)
    # One picture was also found on an artist's page, with a hostile title and a tag.
    write_rows(ws, {ScrapedImage: [ScrapedImage(
        "deviantart", "d1", "https://artist.example/img/1.png", "ok", page_url="https://artist.example/page/1",
        title="<script>alert(1)</script> | pipes", artist="someone", tags=("disney style",),
        image_sha256=crops[0].image_sha256)]}, (ScrapedImage,), "crawl-1", {})
    update_attributes(ws)
    from curation.selection import current_crops

    first = current_crops(ws, columns=["crop_id"])[0]["crop_id"]
    with ReviewStore(ws.review_db) as store:
        store.record([Change(first, "accept", ("smiling",))], "alice")
    build_dataset(ws, "faces", BuildConfig(val_fraction=0.3))
    return ws, read_version(ws, "faces")


def _load(path):
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HOME", str(path.parent / "hf-home"))
    import datasets

    return datasets.load_dataset("imagefolder", data_dir=str(path), cache_dir=str(path.parent / "hf-cache"))


def test_datasets_loads_every_crop_with_its_split_tags_and_source(version, tmp_path):
    ws, rows = version
    out = tmp_path / "faces-hf"
    res = export_dataset(ws, "faces", None, out, "hf")
    assert res.rows == len(rows) and set(res.classes) <= {"train", "validation"}
    loaded = _load(out)
    assert set(loaded) == {"train", "validation"} == set(res.classes)
    got = {}
    for split, part in loaded.items():
        cols = set(part.column_names)
        assert {"image", "crop_id", "split", "tags", "attributes", "hair", "eyes", "source", "image_url",
                "page_url", "artist", "title"} <= cols
        for ex in part:
            got[ex["crop_id"]] = (split, ex)
    assert set(got) == {r.crop_id for r in rows}, "every crop, once"
    for r in rows:
        split, ex = got[r.crop_id]
        assert split == {"train": "train", "val": "validation"}[r.split] and ex["split"] == r.split
        assert ex["tags"] == list(r.tags) and ex["attributes"] == list(r.attributes)
        assert ex["image_url"] == r.image_url and ex["source"] == r.source
        assert ex["image"].size == (128, 128)
    tagged = [ex for _, ex in got.values() if ex["tags"]]
    assert [ex["tags"] for ex in tagged] == [["smiling"]]
    scraped = [ex for _, ex in got.values() if "tag=disney style" in ex["attributes"]]
    assert len(scraped) >= 1 and scraped[0]["source"] == "deviantart"
    assert scraped[0]["image_url"] == "https://artist.example/img/1.png"
    for _, ex in got.values():  # the estimate, against the colours the faces were drawn with
        seed = int(re.search(r"face_(\d+)", ex["image_url"]).group(1)) if "face_" in ex["image_url"] else None
        if seed is not None:
            assert ex["hair"] == face_colours(seed)[0]


def test_the_card_says_counts_sources_and_opt_outs_and_shows_titles_as_text(version, tmp_path):
    ws, rows = version
    out = tmp_path / "card"
    export_dataset(ws, "faces", None, out, "hf")
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\npretty_name: faces v1\n")
    n_train = sum(r.split == "train" for r in rows)
    assert f"| train | {n_train} |" in card and "| smiling | 1 |" in card and "| disney style | 1 |" in card
    assert "| deviantart | " in card and "| someone | " in card
    assert "## Opt-outs honoured" in card and "left out of this version" in card
    assert "<script>" not in card  # scraped text never becomes markup


def test_overwrite_only_replaces_an_export_and_the_command_says_how_to_load_it(version, tmp_path):
    ws, _ = version
    out = tmp_path / "x"
    export_dataset(ws, "faces", None, out, "hf")
    with pytest.raises(ExportError, match="--overwrite"):
        export_dataset(ws, "faces", None, out, "hf")
    export_dataset(ws, "faces", None, out, "hf", overwrite=True)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("my files")
    with pytest.raises(ExportError, match="not a headshot export"):
        export_dataset(ws, "faces", None, other, "hf", overwrite=True)
    assert (other / "notes.txt").read_text() == "my files"
    r = CliRunner().invoke(app, ["--home", str(ws.home), "dataset", "export", "faces", "--out", str(tmp_path / "c"),
                                 "--format", "hf"], catch_exceptions=False)
    assert r.exit_code == 0 and "load_dataset(\"imagefolder\"" in r.output, r.output
