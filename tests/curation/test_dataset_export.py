"""`dataset export`: a version as an ImageFolder tree or one Parquet file that torchvision,
pandas and DuckDB read as they are; whole or absent, never half written, never over
something it did not write."""

import io
import json
from dataclasses import replace

import pandas as pd
import pytest
from PIL import Image

from curation.dataset_build import BuildConfig, build_dataset
from curation.dataset_export import ExportError, class_folder, export_dataset
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from curation.review.items import load_items
from curation.review.store import Change, ReviewStore
from manifests.datasets import read_version, write_version
from manifests.records import DatasetRow
from manifests.workspace import Workspace
from replicas.drawn import draw_character, encode

CFG = ProcessConfig(detector=replace(ProcessConfig().detector, detector="animeface"), workers=2)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A processed workspace with two versions of `faces`: v1 untagged, v2 tagged by a person."""
    root = tmp_path_factory.mktemp("export")
    art = root / "art"
    art.mkdir()
    for i in (1, 3, 5, 6):
        (art / f"face{i}.png").write_bytes(encode(draw_character(i, 512), "PNG"))
    pair = Image.new("RGB", (1024, 512))
    pair.paste(draw_character(3, 512), (0, 0))
    pair.paste(draw_character(6, 512), (512, 0))
    (art / "pair.png").write_bytes(encode(pair, "PNG"))
    ws = Workspace.open(root / "ws")
    ingest([str(art)], ws, progress=False)
    process(ws, CFG, progress=False)
    cfg = BuildConfig(val_fraction=0.5, split_seed="3")
    assert build_dataset(ws, "faces", cfg).written.version == 1
    ids = sorted(it.crop_id for it in load_items(ws))
    with ReviewStore(ws.review_db) as store:  # accept them all, and tag some: tags are the classes
        store.record([Change(c, "accept", tags) for c, tags in zip(ids, [("smile",), ("smile", "glasses"), ("glasses",)]
                                                                    + [()] * len(ids))], "ana")
    assert build_dataset(ws, "faces", cfg).written.version == 2
    return ws


def image_folder(path):
    from torchvision.datasets import ImageFolder  # heavy: only in this test

    return ImageFolder(str(path))


def test_folder_export_reads_as_an_image_folder_per_split(built, tmp_path):
    rows = read_version(built, "faces", 2)
    out = tmp_path / "exports" / "faces"
    res = export_dataset(built, "faces", 2, out)
    assert res.path == out and res.rows == len(rows) and res.linked == 0 and res.copied == len(rows)
    splits = {r.split for r in rows}
    assert splits == {"train", "val"}, "the seed was chosen to fill both splits"
    for split in splits:
        expected = [r for r in rows if r.split == split]
        ds = image_folder(out / split)
        assert len(ds) == len(expected)
        assert ds.classes == sorted({class_folder(r.tags) for r in expected})
        image, label = ds[0]
        assert image.size == (CFG.crop.size, CFG.crop.size)
    assert res.classes == ["face", "glasses", "smile"]  # ("smile", "glasses") -> glasses: first tag, sorted
    meta = pd.read_parquet(out / "metadata.parquet")
    assert len(meta) == len(rows) and set(meta["crop_id"]) == {r.crop_id for r in rows}
    assert all((out / f).is_file() for f in meta["file"])
    by_id = {r.crop_id: r for r in rows}
    for rec in meta.to_dict("records"):
        r = by_id[rec["crop_id"]]
        assert rec["file"] == f"{r.split}/{class_folder(r.tags)}/{r.crop_id}.png"
        assert list(rec["tags"]) == list(r.tags) and rec["image_url"] == r.image_url and rec["image_url"]
    csv = pd.read_csv(out / "metadata.csv", keep_default_na=False)
    assert list(csv["crop_id"]) == list(meta["crop_id"])
    assert [json.loads(t) for t in csv["tags"]] == [list(t) for t in meta["tags"]]
    assert [p.name for p in out.parent.iterdir()] == ["faces"]  # no temp left beside it


def test_an_edited_export_leaves_the_workspace_and_later_versions_alone(built, tmp_path):
    from PIL import Image, ImageOps

    from manifests.blobs import sha256_hex

    rows = read_version(built, "faces", 2)
    before = {r.crop_id: sha256_hex((built.home / r.crop_path).read_bytes()) for r in rows}
    res = export_dataset(built, "faces", 2, tmp_path / "mine")
    assert res.copied == res.rows and res.linked == 0
    for f in (tmp_path / "mine").rglob("*.png"):  # what a user's clean-up script does: edit in place
        with Image.open(f) as im:
            edited = ImageOps.invert(im.convert("RGB"))
        edited.save(f)
    assert {r.crop_id: sha256_hex((built.home / r.crop_path).read_bytes()) for r in rows} == before
    again = export_dataset(built, "faces", 2, tmp_path / "again")
    for r in rows:
        f = tmp_path / "again" / r.split / class_folder(r.tags) / f"{r.crop_id}.png"
        assert sha256_hex(f.read_bytes()) == before[r.crop_id]


def test_links_only_when_asked_and_crops_are_read_only(built, tmp_path):
    import stat

    res = export_dataset(built, "faces", None, tmp_path / "linked", link=True)
    assert res.version.version == 2 and res.linked == res.rows and res.copied == 0
    r = read_version(built, "faces", 2)[0]
    exported = tmp_path / "linked" / r.split / class_folder(r.tags) / f"{r.crop_id}.png"
    crop = built.home / r.crop_path
    assert exported.stat().st_ino == crop.stat().st_ino and crop.stat().st_nlink == 2
    # The workspace writes its crops read-only, so an editor refuses to save over a linked one
    # (root ignores the bits; everyone else gets a permission error).
    assert stat.S_IMODE(crop.stat().st_mode) == 0o444
    copied = export_dataset(built, "faces", None, tmp_path / "copied")
    f = tmp_path / "copied" / r.split / class_folder(r.tags) / f"{r.crop_id}.png"
    assert f.stat().st_nlink == 1 and stat.S_IMODE(f.stat().st_mode) & 0o200  # the copy is the user's to edit


def test_a_crop_path_outside_the_crops_folder_is_refused(built, tmp_path):
    rows = read_version(built, "faces", 2)
    forged = [replace(rows[0], crop_path="review.sqlite")] + rows[1:]
    info = write_version(built, "forged", forged, "test", {})
    with pytest.raises(ExportError, match="not in the workspace's crops folder"):
        export_dataset(built, "forged", info.version, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_parquet_export_reads_in_pandas_and_duckdb(built, tmp_path):
    import duckdb

    res = export_dataset(built, "faces", 2, tmp_path, fmt="parquet")
    assert res.path == tmp_path / "faces-v2.parquet"
    rows = {r.crop_id: r for r in read_version(built, "faces", 2)}
    df = pd.read_parquet(res.path)
    assert set(DatasetRow.SCHEMA.names) | {"image", "format"} == set(df.columns) and len(df) == len(rows)
    for rec in df.to_dict("records"):
        r = rows[rec["crop_id"]]
        assert rec["crop_path"] == r.crop_path and list(rec["tags"]) == list(r.tags) and rec["split"] == r.split
        assert rec["image"] == (built.home / r.crop_path).read_bytes() and rec["format"] == "PNG"
        with Image.open(io.BytesIO(rec["image"])) as im:
            im.load()
            assert im.size == (CFG.crop.size, CFG.crop.size)
    path = str(res.path).replace("'", "''")
    assert duckdb.sql(f"select count(*) from '{path}'").fetchall() == [(len(rows),)]
    [(n_tagged,)] = duckdb.sql(f"select count(*) from '{path}' where len(tags) > 0").fetchall()
    assert n_tagged == sum(bool(r.tags) for r in rows.values())
    [(blob,)] = duckdb.sql(f"select image from '{path}' order by crop_id limit 1").fetchall()
    with Image.open(io.BytesIO(blob)) as im:
        assert im.format == "PNG"
    into = export_dataset(built, "faces", 1, tmp_path / "new" / "folder", fmt="parquet")
    assert into.path == tmp_path / "new" / "folder" / "faces-v1.parquet" and into.path.is_file()
    named = export_dataset(built, "faces", 1, tmp_path / "v1.parquet", fmt="parquet")
    assert named.path == tmp_path / "v1.parquet" and pd.read_parquet(named.path)["tags"].map(len).sum() == 0


def test_refuses_to_overwrite_unless_asked_and_only_an_export(built, tmp_path):
    out = tmp_path / "faces"
    export_dataset(built, "faces", 1, out)
    with pytest.raises(ExportError, match="not empty; pass --overwrite"):
        export_dataset(built, "faces", 2, out)
    assert {p.parent.name for p in out.rglob("*.png")} == {"face"}  # still v1: untagged
    export_dataset(built, "faces", 2, out, overwrite=True)
    assert {p.parent.name for p in out.rglob("*.png")} == {"face", "glasses", "smile"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a headshot export"):
        export_dataset(built, "faces", 2, mine, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_dataset(built, "faces", 2, empty).rows > 0  # an empty folder is fine
    single = tmp_path / "one.parquet"
    export_dataset(built, "faces", 1, single, fmt="parquet")
    with pytest.raises(ExportError, match="exists; pass --overwrite"):
        export_dataset(built, "faces", 2, single, fmt="parquet")
    export_dataset(built, "faces", 2, single, fmt="parquet", overwrite=True)
    assert pd.read_parquet(single)["tags"].map(len).sum() > 0
    with pytest.raises(ExportError, match="unknown format"):
        export_dataset(built, "faces", 2, tmp_path / "x", fmt="zip")


def test_a_missing_crop_file_names_the_crop_and_writes_nothing(built, tmp_path):
    rows = read_version(built, "faces", 2)
    broken = rows + [DatasetRow(crop_id="gone0123", crop_path="crops/go/gone0123.png", split="train")]
    write_version(built, "broken", broken, "test")
    for fmt, out in (("folder", tmp_path / "out"), ("parquet", tmp_path / "out.parquet")):
        with pytest.raises(ExportError, match="crop gone0123: file crops/go/gone0123.png is missing"):
            export_dataset(built, "broken", None, out, fmt=fmt)
        assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_class_folder_names_are_safe():
    assert class_folder(()) == "face"
    assert class_folder(("zeta", "alpha")) == "alpha"
    assert class_folder(("a/b",)) == "a_b"
    assert class_folder(("..",)) == "_.."
    assert class_folder(("青い目",)) == "青い目"


def test_an_export_to_a_full_disk_is_one_error_and_leaves_nothing(built, small_disk):
    from manifests.atomic import DiskFull

    small_disk.fill(keep=4096)
    for fmt in ("folder", "parquet"):
        with pytest.raises(DiskFull) as caught:
            export_dataset(built, "faces", 2, small_disk.path / f"out-{fmt}", fmt=fmt)
        assert str(small_disk.path) in str(caught.value) and caught.value.needed > 0
        assert [p.name for p in small_disk.path.iterdir()] == [".filler"]  # no temp, no half export
    small_disk.free()
    assert export_dataset(built, "faces", 2, small_disk.path / "out").rows > 0
