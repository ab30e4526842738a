"""Local folders and files: content is stored once, inputs are recorded each, the workspace is never ingested."""

import shutil

from curation.ingest import IngestConfig, expand_inputs, ingest
from manifests import tables
from manifests.records import ScrapedImage, StoredImage
from replicas.drawn import write_faces


def test_same_bytes_under_two_names_are_stored_once(ws, tmp_path):
    [a] = write_faces(tmp_path / "art", 1, size=96)
    shutil.copy(a, tmp_path / "art" / "copy_of_a.png")
    report = ingest([str(tmp_path / "art")], ws, IngestConfig(workers=1), progress=False)
    assert (report.inputs, report.new_images, report.already_stored) == (2, 1, 1)
    scraped = tables.read_records(ws, ScrapedImage)
    assert len(scraped) == 2 and len({r.image_sha256 for r in scraped}) == 1
    assert len(tables.read_records(ws, StoredImage)) == 1
    # The same bytes again, from a third place: still one stored image, blobs unchanged.
    shutil.copy(a, tmp_path / "third.png")
    ingest([str(tmp_path / "third.png")], ws, progress=False)
    assert len(tables.read_records(ws, StoredImage)) == 1
    assert len(list((ws.home / "images").rglob("*.png"))) == 1


def test_a_changed_file_is_a_new_content_for_the_same_input(ws, tmp_path):
    [a] = write_faces(tmp_path / "art", 1, size=96)
    ingest([str(a)], ws, progress=False)
    write_faces(tmp_path / "other", 2, size=96)[1].replace(a)
    ingest([str(a)], ws, progress=False)
    [row] = tables.read_records(ws, ScrapedImage)
    assert len(tables.read_records(ws, StoredImage)) == 2
    assert row.image_sha256 == sorted(tables.read_records(ws, StoredImage), key=lambda r: r.ingested_at)[-1].image_sha256


def test_the_workspace_inside_an_input_folder_is_skipped(tmp_path):
    from manifests.workspace import Workspace

    write_faces(tmp_path / "art", 2, size=96)
    ws = Workspace.open(tmp_path / "workspace")
    ingest([str(tmp_path)], ws, progress=False)
    again = ingest([str(tmp_path)], ws, progress=False)  # blobs now exist under tmp_path/workspace
    assert again.inputs == 2
    assert not any(i.uri.startswith(str(ws.home)) for i in expand_inputs([str(tmp_path)], exclude=ws.home))


def test_an_unreadable_file_is_a_row_not_a_crash(ws, tmp_path):
    write_faces(tmp_path / "art", 1, size=96)
    locked = tmp_path / "art" / "locked.png"
    locked.symlink_to(tmp_path / "art" / "dangling-target.png")  # a link to nothing cannot be read
    report = ingest([str(tmp_path / "art")], ws, progress=False)
    assert report.input_status == {"ok": 1, "unreadable": 1}
    row = next(r for r in tables.read_records(ws, ScrapedImage) if r.status == "unreadable")
    assert row.source_id.endswith("locked.png") and "No such file" in row.reason
