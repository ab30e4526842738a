"""Attributes per crop: estimated colours computed once per crop (new crops only on the next
run), the scraped tags of the crop's pages, the review queue's tags beside them, a crop whose
file is gone, and `headshot attributes`. Pictures drawn in code; faces found by animeface."""

from __future__ import annotations

import json
import re
from dataclasses import replace

from typer.testing import CliRunner

from curation.attributes import crop_attributes, tags_of, update_attributes
from curation.colours import COLOURS_VERSION
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from curation.review.store import Change, ReviewStore
from curation.selection import current_crops
from manifests import tables
from manifests.records import Attribute, ScrapedImage
from manifests.stage import write_rows
from pipelines.cli import app
from replicas.drawn import face_colours, write_faces

CFG = replace(ProcessConfig(), detector=replace(ProcessConfig().detector, detector="animeface"), workers=2)


def _seed(url: str) -> int:
    return int(re.search(r"face_(\d+)", url).group(1))


def test_colours_are_estimated_once_per_crop_and_scraped_and_review_tags_join_them(ws, tmp_path):
    write_faces(tmp_path / "a", 6, size=384)
    ingest([str(tmp_path / "a")], ws, progress=False)
    process(ws, CFG, progress=False)
    crops = current_crops(ws, columns=["crop_id", "image_sha256", "crop_path"])
    assert len(crops) >= 5
    # A spider's row for one of the pictures, with the page's tags and character.
    sha = crops[0]["image_sha256"]
    write_rows(ws, {ScrapedImage: [ScrapedImage("deviantart", "d1", "https://example.test/1.png", "ok", tags=(
        "disney style", "fox"), character="Robin", image_sha256=sha)]}, (ScrapedImage,), "crawl-1", {})

    first = update_attributes(ws)
    assert first.estimated == len(crops) and first.scraped_rows == 3 and first.rows == 2 * len(crops) + 3
    rows = tables.read_records(ws, Attribute)
    est = [r for r in rows if r.origin == "estimated"]
    assert {r.version for r in est} == {COLOURS_VERSION} and len(est) == 2 * len(crops)

    again = update_attributes(ws)
    assert again.estimated == 0 and again.rows == 0 and len(tables.read_records(ws, Attribute)) == len(rows)

    url_of = {r["image_sha256"]: r["image_url"] for r in tables.read_table(ws, ScrapedImage).to_pylist()
              if r["source"] == "local"}
    with ReviewStore(ws.review_db) as store:
        store.record([Change(crops[1]["crop_id"], "accept", ("smiling",))], "alice")
    attrs = crop_attributes(ws)
    for c in crops:
        hair, eyes = face_colours(_seed(url_of[c["image_sha256"]]))
        got = {a.name: a.value for a in attrs[c["crop_id"]] if a.origin == "estimated"}
        assert got == {"hair": hair, "eyes": eyes}
    assert tags_of(attrs[crops[0]["crop_id"]]) == {"disney style", "fox"}
    assert {(a.name, a.value) for a in attrs[crops[0]["crop_id"]] if a.origin == "scraped"} >= {("character", "Robin")}
    assert [(a.value, a.origin) for a in attrs[crops[1]["crop_id"]] if a.name == "tag"] == [("smiling", "review")]

    # New pictures: only their crops are estimated; a crop whose file is gone gets empty rows.
    write_faces(tmp_path / "b", 3, size=384, start=100)
    ingest([str(tmp_path / "b")], ws, progress=False)
    process(ws, CFG, progress=False)
    new = [c for c in current_crops(ws, columns=["crop_id", "crop_path"]) if c["crop_id"] not in attrs]
    assert len(new) >= 2
    (ws.home / new[0]["crop_path"]).unlink()
    third = update_attributes(ws)
    assert third.estimated == len(new) and third.unreadable == 1
    gone = [r for r in tables.read_records(ws, Attribute) if r.crop_id == new[0]["crop_id"]]
    assert len(gone) == 2 and all(r.value == "" and r.confidence == 0 for r in gone)
    assert new[0]["crop_id"] not in crop_attributes(ws)  # nothing found is not an attribute
    assert update_attributes(ws).estimated == 0  # and it is not tried again


def test_the_attributes_command_counts_what_the_crops_carry(ws, tmp_path):
    write_faces(tmp_path / "a", 4, size=384)
    ingest([str(tmp_path / "a")], ws, progress=False)
    process(ws, CFG, progress=False)
    result = CliRunner().invoke(app, ["--home", str(ws.home), "attributes", "--json", "--no-progress"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("{"):])
    assert doc["crops"] == doc["with_attributes"] >= 3
    assert sum(doc["counts"]["hair (estimated)"].values()) == doc["crops"]
    text = CliRunner().invoke(app, ["--home", str(ws.home), "attributes", "--no-progress"], catch_exceptions=False)
    assert "hair (estimated):" in text.output and "eyes (estimated):" in text.output
