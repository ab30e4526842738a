"""`headshot ingest ../shared/data`: one row per file, nothing crashes, odd formats are ok and upright."""

from pathlib import Path

import pytest
from PIL import Image, ImageOps, UnidentifiedImageError

from curation.ingest import ingest
from manifests import tables
from manifests.blobs import sha256_hex
from manifests.records import ScrapedImage, StoredImage


def identifies(path: Path) -> bool:
    try:
        with Image.open(path):
            return True
    except UnidentifiedImageError:
        return False


@pytest.fixture(scope="module")
def ingested(shared_data, tmp_path_factory):
    from manifests.workspace import Workspace

    ws = Workspace.open(tmp_path_factory.mktemp("shared") / "ws")
    report = ingest([str(shared_data)], ws, progress=False)
    return ws, report


def test_one_row_per_file(ingested, shared_data):
    ws, report = ingested
    files = sorted(str(p.resolve()) for p in shared_data.rglob("*") if p.is_file())
    scraped = tables.read_records(ws, ScrapedImage)
    assert sorted(r.source_id for r in scraped) == files
    assert report.inputs == len(files)
    contents = {sha256_hex(Path(f).read_bytes()) for f in files}
    stored = tables.read_records(ws, StoredImage)
    assert sorted(r.image_sha256 for r in stored) == sorted(contents)
    assert all(r.image_sha256 in contents for r in scraped)


def test_odd_formats_are_ok_and_upright(ingested, shared_data):
    ws, _ = ingested
    stored = {r.image_sha256: r for r in tables.read_records(ws, StoredImage)}
    odd = sorted((shared_data / "outliers" / "odd_format").iterdir())
    assert len(odd) == 7
    for p in odd:
        row = stored[sha256_hex(p.read_bytes())]
        assert row.status == "ok", (p.name, row.reason)
        with Image.open(p) as im:
            assert (row.width, row.height) == ImageOps.exif_transpose(im).size, p.name
    rotated = stored[sha256_hex((shared_data / "outliers/odd_format/danbooru_test-rotation-90cw.jpg").read_bytes())]
    assert (rotated.width, rotated.height) == (96, 128)  # stored 128x96 with EXIF orientation 6


def test_formats_come_from_the_bytes(ingested, shared_data):
    ws, _ = ingested
    stored = {r.image_sha256: r for r in tables.read_records(ws, StoredImage)}
    for rel in ("outliers/tiny/danbooru_jpg.png", "outliers/monochrome/style2paints_lineart_test01.png"):
        row = stored[sha256_hex((shared_data / rel).read_bytes())]
        assert row.format == "JPEG" and row.blob_path.endswith(".jpg")
    apng = stored[sha256_hex((shared_data / "outliers/animated/danbooru_apng_infinite-fps.png").read_bytes())]
    assert (apng.format, apng.frames) == ("APNG", 2)


def test_originals_are_kept_byte_for_byte(ingested, shared_data):
    ws, _ = ingested
    kept = set()
    for row in tables.read_records(ws, StoredImage):
        if row.blob_path:
            assert sha256_hex((ws.home / row.blob_path).read_bytes()) == row.image_sha256
            kept.add(row.image_sha256)
    # Every picture of the folder was checked: the files Pillow can identify (the rest are text
    # and cascade files, never stored), counted from the folder, not from the ingest.
    assert kept == {sha256_hex(p.read_bytes()) for p in shared_data.rglob("*") if p.is_file() and identifies(p)}


def test_transparency_is_real_transparency(ingested, shared_data):
    ws, _ = ingested
    stored = {r.image_sha256: r for r in tables.read_records(ws, StoredImage)}

    def row(rel):
        return stored[sha256_hex((shared_data / rel).read_bytes())]

    assert all(row(f"anime/style2paints_ref_{i:02d}.png").transparent is False for i in (1, 2, 3))
    transparent = sorted((shared_data / "outliers/transparent").iterdir())
    assert len(transparent) == 5  # ../shared/data/README.md's table: transparent, n = 5
    assert all(row(p.relative_to(shared_data)).transparent for p in transparent)


def test_ingesting_again_adds_nothing(ingested, shared_data):
    ws, _ = ingested
    before = {cls: tables.read_table(ws, cls) for cls in (ScrapedImage, StoredImage)}
    report = ingest([str(shared_data)], ws, progress=False)
    assert report.new_images == 0 and report.already_stored == report.inputs
    for cls, table in before.items():
        assert tables.read_table(ws, cls).equals(table)
        assert len(tables.table_files(ws, cls)) == 1
