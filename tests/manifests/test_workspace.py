from pathlib import Path

import pytest

from manifests.blobs import BlobStore, sha256_hex
from manifests.workspace import Workspace, new_run_id, resolve_home


def test_home_from_flag_then_env_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADSHOT_HOME", str(tmp_path / "env"))
    assert resolve_home(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_home(None) == tmp_path / "env"
    monkeypatch.delenv("HEADSHOT_HOME")
    monkeypatch.chdir(tmp_path)
    assert resolve_home(None) == tmp_path / "workspace"


def test_layout_is_created(ws):
    for name in ("images", "crops", "manifests", "datasets", "runs"):
        assert (ws.home / name).is_dir()


def test_paths_cannot_escape_the_workspace(ws):
    assert ws.absolute("images/ab/x.png") == ws.home / "images/ab/x.png"
    with pytest.raises(ValueError, match="outside"):
        ws.absolute("../../etc/passwd")


def test_run_ids_sort_by_time_and_differ():
    a, b = new_run_id("ingest"), new_run_id("ingest")
    assert a != b and a.startswith("ingest-") and sorted([b, a])[0] == a


def test_blob_store_keeps_bytes_once(ws):
    store = BlobStore(ws.home)
    data = b"\x89PNG not really"
    rel = store.put(data, "png")
    digest = sha256_hex(data)
    assert rel == f"images/{digest[:2]}/{digest}.png"
    path = ws.home / rel
    assert path.read_bytes() == data
    before = path.stat().st_mtime_ns
    assert store.put(data, "png") == rel
    assert path.stat().st_mtime_ns == before
    assert not list(Path(path.parent).glob(".tmp-*"))
    with pytest.raises(ValueError):
        store.relpath("../../x", "png")
    with pytest.raises(ValueError):
        store.relpath(digest, "p/ng")
