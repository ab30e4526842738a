import json
import shutil
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from manifests.datasets import write_version
from manifests.records import DatasetRow
from manifests.workspace import Workspace
from pipelines.cli import app
from replicas.drawn import write_bad_inputs, write_faces

runner = CliRunner()


def run(*args, home=None):
    argv = (["--home", str(home)] if home else []) + [str(a) for a in args]
    return runner.invoke(app, argv, catch_exceptions=False)


def all_commands() -> list[str]:
    group = typer.main.get_command(app)

    def walk(cmd, prefix):
        for name, sub in getattr(cmd, "commands", {}).items():
            if getattr(sub, "commands", None):
                yield from walk(sub, prefix + [name])
            else:
                yield " ".join(prefix + [name])

    return sorted(walk(group, []))


def test_console_script_help_is_quick_to_load():
    exe = shutil.which("headshot", path=str(sys.executable).rsplit("/", 1)[0])
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "ingest" in out.stdout
    probe = subprocess.run([sys.executable, "-c", "import pipelines.cli, sys; "
                            "print(' '.join(m for m in ('torch', 'prefect', 'scrapy', 'cv2', 'PIL') if m in sys.modules))"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == ""  # heavy libraries load only in the commands that need them


@pytest.mark.parametrize("command", all_commands())
def test_every_command_has_help_with_an_example(command):
    result = run(*command.split(), "--help")
    assert result.exit_code == 0
    assert "Example: headshot" in result.output


def test_ingest_then_status(tmp_path):
    write_faces(tmp_path / "art", 5, size=96)
    write_bad_inputs(tmp_path / "art" / "bad")
    home = tmp_path / "ws"
    result = run("ingest", "--no-progress", tmp_path / "art", home=home)
    assert result.exit_code == 0, result.output
    assert "11 inputs: 11 new images" in result.output
    st = json.loads(run("status", "--json", home=home).output)
    assert st["stages"]["stored"]["by_status"] == {
        "corrupt": 1, "empty": 1, "not_image": 2, "ok": 5, "too_large": 1, "too_small": 1,
    }
    assert st["stages"]["scraped"] == {"total": 11, "by_status": {"ok": 11}}
    assert set(st) == {"home", "schema_version", "stages", "datasets", "review", "runs"}  # keys are only ever added
    assert st["runs"] == []
    assert st["review"]["crops"] == 0 and st["review"]["decided"] == 0
    text = run("status", home=home).output
    assert "images (stored)" in text and "ok 5" in text


def test_env_var_chooses_the_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSHOT_HOME", str(tmp_path / "envws"))
    write_faces(tmp_path / "art", 1, size=96)
    assert run("ingest", "--no-progress", tmp_path / "art").exit_code == 0
    assert (tmp_path / "envws" / "manifests" / "stored.parquet").exists()


def test_missing_input_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["--home", str(tmp_path / "ws"), "ingest", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such file or folder" in result.output


def test_dataset_list_and_diff(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    assert "no datasets yet" in run("dataset", "list", home=ws.home).output
    row = lambda i, tags=(): DatasetRow(crop_id=f"c{i}", crop_path=f"crops/{i}.png", split="train", tags=tags,
                                        image_url=f"https://example.org/{i}.jpg")
    write_version(ws, "faces", [row(1), row(2)], "b1")
    write_version(ws, "faces", [row(2, ("disney",)), row(3)], "b2")
    assert "faces: 2 version(s), latest v2 with 2 crops" in run("dataset", "list", home=ws.home).output
    out = run("dataset", "diff", "faces", "v1", "v2", home=ws.home).output
    assert "1 added, 1 removed, 1 relabelled" in out
    assert "+ c3  https://example.org/3.jpg" in out and "- c1" in out and "~ c2  tags - -> disney" in out
    as_json = json.loads(run("dataset", "diff", "faces", "1", "2", "--json", home=ws.home).output)
    assert as_json["added"] == ["c3"] and as_json["removed"] == ["c1"]
    bad = runner.invoke(app, ["--home", str(ws.home), "dataset", "diff", "faces", "v1", "v9"])
    assert bad.exit_code == 2 and "has no version v9" in bad.output


def test_process_prints_what_was_kept_and_why(tmp_path, monkeypatch):
    from replicas.drawn import draw_character, encode

    art = tmp_path / "art"
    art.mkdir()
    for i in (1, 3):
        (art / f"f{i}.png").write_bytes(encode(draw_character(i, 512), "PNG"))
    home = tmp_path / "ws"
    assert run("ingest", "--no-progress", art, home=home).exit_code == 0
    result = run("process", "--detector", "animeface", "--no-progress", "--workers", "1", home=home)
    assert result.exit_code == 0, result.output
    assert "2 images detected" in result.output and "2 crops from 2 images" in result.output
    assert "embeddings: 2 new crops" in result.output  # for the review learner, computed once
    from curation.embeddings import Embeddings
    from manifests.workspace import Workspace

    assert len(Embeddings(Workspace.open(home))) == 2
    again = run("process", "--detector", "animeface", "--no-progress", home=home)
    assert "0 images detected, 0 re-cropped, 0 re-filtered, 0 new crops" in again.output
    assert "embeddings:" not in again.output


def test_process_without_the_cascade_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSHOT_CASCADE_DIR", str(tmp_path / "empty"))
    result = runner.invoke(app, ["--home", str(tmp_path / "ws"), "process", "--no-progress"])
    assert result.exit_code == 2 and "headshot models fetch" in result.output


def test_process_refuses_a_bad_crop_size(tmp_path):
    result = runner.invoke(app, ["--home", str(tmp_path / "ws"), "process", "--size", "100"])
    assert result.exit_code == 2 and "64" in result.output


def test_models_fetch_from_a_mirror(tmp_path, site, shared_data):
    cascade = shared_data / "cascades" / "lbpcascade_animeface.xml"
    url = site.add("/lbpcascade_animeface.xml", (200, {"Content-Type": "application/xml"}, cascade.read_bytes()))
    result = run("models", "fetch", "--url", url, "--dest", tmp_path / "models")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / "lbpcascade_animeface.xml").read_bytes() == cascade.read_bytes()
    bad = site.add("/bad.xml", (200, {}, b"<opencv_storage>not it</opencv_storage>"))
    result = runner.invoke(app, ["models", "fetch", "--url", bad, "--dest", str(tmp_path / "other")])
    assert result.exit_code == 2 and "sha256" in result.output.lower()
    assert not (tmp_path / "other" / "lbpcascade_animeface.xml").exists()
