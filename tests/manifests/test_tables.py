import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import tables
from manifests.atomic import read_metadata, write_parquet_atomic
from manifests.records import StoredImage
from manifests.workspace import WorkspaceBusy


def rec(i: int, status: str = "ok", width: int = 100) -> StoredImage:
    return StoredImage(image_sha256=f"{i:064x}", status=status, width=width, height=width)


def test_append_then_read_keeps_last_row_per_key(ws):
    tables.append(ws, StoredImage, [rec(1), rec(2)], "run-a", {"min_side": 40})
    tables.append(ws, StoredImage, [rec(2, "too_small", 10), rec(3)], "run-b")
    rows = {r.image_sha256: r for r in tables.read_records(ws, StoredImage)}
    assert len(rows) == 3
    assert rows[f"{2:064x}"].status == "too_small"


def test_parts_carry_metadata_and_compaction_keeps_every_run(ws):
    p = tables.append(ws, StoredImage, [rec(1)], "run-a", {"min_side": 40})
    meta = read_metadata(p)
    assert meta["headshot.schema_version"] == "1"
    assert meta["headshot.run_id"] == "run-a"
    assert meta["headshot.code_version"]
    assert json.loads(meta["headshot.config"]) == {"min_side": 40}
    tables.append(ws, StoredImage, [rec(1, "too_small"), rec(2)], "run-b", {"min_side": 200})
    base = tables.compact(ws, StoredImage, "compact-1")
    assert tables.table_files(ws, StoredImage) == [base]
    runs = json.loads(read_metadata(base)["headshot.runs"])
    assert runs["run-a"]["config"] == {"min_side": 40} and runs["run-b"]["config"] == {"min_side": 200}
    assert pq.read_table(base).num_rows == 2
    # Compacting again merges the older runs' provenance with new parts.
    tables.append(ws, StoredImage, [rec(3)], "run-c")
    runs = json.loads(read_metadata(tables.compact(ws, StoredImage, "compact-2"))["headshot.runs"])
    assert set(runs) == {"run-a", "run-b", "run-c"}


def test_parts_left_by_a_kill_after_compaction_do_not_duplicate(ws):
    part = tables.append(ws, StoredImage, [rec(1), rec(2)], "run-a")
    kept = part.read_bytes()
    tables.compact(ws, StoredImage, "c")
    part.write_bytes(kept)  # as if killed between the merged file's rename and the unlink
    assert tables.read_table(ws, StoredImage).num_rows == 2


def test_temp_files_are_invisible_and_cleaned_by_the_next_writer(ws):
    tables.append(ws, StoredImage, [rec(1)], "run-a")
    stale = ws.manifests / ".tmp-stored.part-x.parquet-123-abcd"
    stale.write_bytes(b"PAR1 half a file")
    assert tables.read_table(ws, StoredImage).num_rows == 1
    with ws.writer_lock("test"):
        assert not stale.exists()


def test_an_older_file_without_a_new_column_is_conformed(ws):
    old = pa.table({"image_sha256": [f"{9:064x}"], "status": ["ok"], "reason": [""]})
    write_parquet_atomic(ws.manifests / "stored.part-00000000000000000001-old.parquet", old, {})
    [row] = tables.read_records(ws, StoredImage)
    assert row.status == "ok" and row.width == 0 and row.transparent is False and row.ingested_at is None


def test_count_by_status(ws):
    tables.append(ws, StoredImage, [rec(1), rec(2, "corrupt"), rec(3, "corrupt")], "r")
    assert tables.count_by(ws, StoredImage, "status") == {"corrupt": 2, "ok": 1}


def test_atomic_write_never_replaces_with_exclusive(tmp_path):
    path = tmp_path / "v1.parquet"
    assert write_parquet_atomic(path, pa.table({"a": [1]}), {}, exclusive=True)
    assert not write_parquet_atomic(path, pa.table({"a": [2]}), {}, exclusive=True)
    assert pq.read_table(path).column("a").to_pylist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["v1.parquet"]


def test_one_writer_at_a_time(ws):
    with ws.writer_lock("first"):
        with pytest.raises(WorkspaceBusy, match="first"):
            with ws.writer_lock("second"):
                pass
    with ws.writer_lock("again"):  # released when the first finished
        pass
