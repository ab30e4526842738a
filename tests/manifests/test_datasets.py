import pytest

from manifests.datasets import DatasetError, diff, list_datasets, parse_ref, read_version, resolve, write_version
from manifests.records import DatasetRow


def row(i: int, tags=(), split="train") -> DatasetRow:
    return DatasetRow(crop_id=f"crop{i}", crop_path=f"crops/{i}.png", split=split, tags=tuple(tags),
                      image_url=f"https://example.org/{i}.jpg")


def test_versions_are_numbered_immutable_and_skip_unchanged_content(ws):
    v1 = write_version(ws, "faces", [row(1), row(2)], "build-1")
    assert v1.version == 1 and v1.path.name == "v1.parquet"
    assert write_version(ws, "faces", [row(2), row(1)], "build-2") is None  # same content, any order
    v2 = write_version(ws, "faces", [row(1, ["disney"]), row(3)], "build-3")
    assert v2.version == 2
    assert [r.crop_id for r in read_version(ws, "faces", 1)] == ["crop1", "crop2"]
    assert resolve(ws, "faces").version == 2
    assert {n: [v.version for v in vs] for n, vs in list_datasets(ws).items()} == {"faces": [1, 2]}


def test_a_taken_version_number_is_never_overwritten(ws):
    write_version(ws, "faces", [row(1)], "b1")
    # A file that appeared at v2 (another writer) is kept; this build becomes v3.
    (ws.datasets / "faces" / "v2.parquet").write_bytes((ws.datasets / "faces" / "v1.parquet").read_bytes())
    v = write_version(ws, "faces", [row(5)], "b2")
    assert v.version == 3
    assert [r.crop_id for r in read_version(ws, "faces", 2)] == ["crop1"]


def test_diff_reports_added_removed_relabelled(ws):
    write_version(ws, "faces", [row(1), row(2), row(3)], "b1")
    write_version(ws, "faces", [row(1), row(2, ["disney"]), row(4)], "b2")
    d = diff(ws, "faces", 1, 2)
    assert [r.crop_id for r in d.added] == ["crop4"]
    assert [r.crop_id for r in d.removed] == ["crop3"]
    assert [(a.tags, b.tags) for a, b in d.relabelled] == [((), ("disney",))]
    assert d.summary() == {"added": 1, "removed": 1, "relabelled": 1}


def test_refs_and_names():
    assert parse_ref("faces") == ("faces", None)
    assert parse_ref("faces@v3") == ("faces", 3)
    assert parse_ref("faces@3") == ("faces", 3)
    for bad in ("../x", "a/b", "", "faces@vx"):
        with pytest.raises(DatasetError):
            parse_ref(bad)


def test_unknown_dataset_and_version_are_clear_errors(ws):
    with pytest.raises(DatasetError, match="no dataset named"):
        resolve(ws, "nope")
    write_version(ws, "faces", [row(1)], "b1")
    with pytest.raises(DatasetError, match="has no version v7"):
        resolve(ws, "faces", 7)


def test_duplicate_crop_is_refused(ws):
    with pytest.raises(DatasetError):
        write_version(ws, "faces", [row(1), row(1)], "b")
