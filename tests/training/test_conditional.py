"""Conditional training (ACGAN): a dataset version whose rows carry estimated hair colours
(faces drawn in code, found by animeface, `headshot attributes`, `dataset build`), a tiny
conditional run through the command line, generation with --attr, resuming, and the clear
errors: an attribute value the run was not trained on, a run without attributes asked for
some, a folder of pictures (no attributes) for a conditional run."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from curation.attributes import update_attributes
from curation.dataset_build import build_dataset
from curation.ingest import ingest
from curation.process import ProcessConfig, process
from manifests.workspace import Workspace
from pipelines.cli import app
from replicas.drawn import write_faces
from training import checkpoint as ckpt
from training.config import TrainConfig
from training.data import DataError, dataset_source, folder_source, label_matrix, vocabulary
from training.loop import Trainer
from training.device import choose

SETS = ("ngf=8", "ndf=8", "eval_every=0", "best_metric=none", "precision=fp32", "channels_last=off",
        "sample_every=2", "checkpoint_every=2")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond")
    ws = Workspace.open(root / "ws")
    write_faces(root / "art", 24, size=256)
    ingest([str(root / "art")], ws, progress=False)
    process(ws, replace(ProcessConfig(), detector=replace(ProcessConfig().detector, detector="animeface"), workers=2),
            progress=False)
    update_attributes(ws)
    build_dataset(ws, "faces")
    return ws


def _train(ws, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipelines.cli", "--home", str(ws.home), "train", "--dataset", "faces",
           "--batch-size", "4", "--no-progress", *[a for kv in SETS for a in ("--set", kv)], *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_the_data_s_attributes_become_classes(labelled):
    src = dataset_source(labelled, "faces")
    vocab = vocabulary(src, ("hair", "eyes"))
    assert len(vocab["hair"]) >= 4 and len(vocab["eyes"]) >= 3 and vocab["hair"] == sorted(vocab["hair"])
    labels = label_matrix(src, vocab)
    assert labels.shape == (len(src.files), 2) and int((labels >= 0).all(dim=1).sum()) >= len(src.files) - 2
    with pytest.raises(DataError, match="folder of pictures"):
        vocabulary(folder_source(labelled.home / "crops"), ("hair",))
    with pytest.raises(DataError, match="fewer than two values of wings"):
        vocabulary(src, ("hair", "wings"))


def test_a_step_learns_the_classes_and_g_takes_them():
    cfg = TrainConfig(ngf=8, ndf=8, batch_size=6, conditional=("hair", "eyes"), penalty="dragan",
                      precision="fp32", channels_last="off")
    t = Trainer(cfg, torch.device("cpu"), choose(cfg, torch.device("cpu")), classes=(3, 2))
    real = torch.rand(6, 3, 64, 64) * 2 - 1
    labels = torch.tensor([[0, 1], [1, 0], [2, 1], [0, -1], [1, 1], [2, 0]])
    out = t.step(real, labels)
    assert {"loss_cls_d", "loss_cls_g"} <= set(out) and all(v == v for v in out.values())
    assert t.d(real).shape == (6, 1 + 3 + 2)
    with pytest.raises(ValueError, match="labelled"):
        t.step(real)
    fake = t.fake_labels(labels)
    assert (fake >= 0).all() and (fake[:, 0] < 3).all() and (fake[:, 1] < 2).all()  # the unknown one drawn, in range


def test_d_learns_the_classes_with_the_penalty_on():
    """Regression: the penalty's line once replaced D's total loss with the adversarial loss plus
    the penalty, dropping the class loss, and D never learned the classes (samples at chance)."""
    import numpy as np

    from replicas.drawn import HAIR_NAMES, draw_face, face_colours

    seeds = list(range(48))
    real = torch.from_numpy(np.stack([np.asarray(draw_face(s, 64)) for s in seeds])).permute(0, 3, 1, 2).float()
    real = real / 127.5 - 1
    labels = torch.tensor([[HAIR_NAMES.index(face_colours(s)[0])] for s in seeds])
    cfg = TrainConfig(ngf=8, ndf=16, batch_size=16, conditional=("hair",), penalty="dragan", precision="fp32",
                      channels_last="off", diff_policy=("translation", "cutout"))
    t = Trainer(cfg, torch.device("cpu"), choose(cfg, torch.device("cpu")), classes=(len(HAIR_NAMES),))

    def real_ce() -> float:
        with torch.no_grad():
            return float(t._class_loss(t._split(t.d(real))[1], labels))

    before = real_ce()
    for step in range(60):
        k = (step * 16) % 48
        t.step(real[k:k + 16], labels[k:k + 16])
    assert real_ce() < 0.5 * before, (before, real_ce())


def test_a_conditional_run_generates_what_it_is_asked_and_refuses_what_it_does_not_know(labelled, tmp_path):
    ws = labelled
    done = _train(ws, "--conditional", "--attributes", "hair", "--steps", "4", "--name", "c")
    assert done.returncode == 0, done.stderr[-2000:]
    state = ckpt.load(ws.runs / "c" / "checkpoints" / "last.pt")
    vocab = state["attributes"]
    assert list(vocab) == ["hair"] and len(vocab["hair"]) >= 4
    assert state["config"]["conditional"] == ["hair"] and state["config"]["penalty"] == "dragan"
    assert state["config"]["diff_policy"] == ["translation", "cutout"]  # no colour change: the labels stay true
    hair = vocab["hair"][0]
    out = tmp_path / "blue.png"
    r = CliRunner().invoke(app, ["--home", str(ws.home), "generate", "--run", "c", "-n", "4", "--attr",
                                 f"hair={hair}", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (4 * 66 + 2, 66 + 2)
    r = CliRunner().invoke(app, ["--home", str(ws.home), "generate", "--run", "c", "--attr", "hair=plaid"],
                           catch_exceptions=False)
    assert r.exit_code == 2 and "the run was trained on hair = " + ", ".join(vocab["hair"]) in r.output
    r = CliRunner().invoke(app, ["--home", str(ws.home), "generate", "--run", "c", "--attr", "wings=yes"],
                           catch_exceptions=False)
    assert r.exit_code == 2 and "knows the attributes hair" in r.output
    # Resuming keeps the classes it started with.
    again = _train(ws, "--resume", "c", "--steps", "6")
    assert again.returncode == 0, again.stderr[-2000:]
    assert ckpt.load(ws.runs / "c" / "checkpoints" / "last.pt")["attributes"] == vocab
    # A plain run cannot be asked for attributes; a folder cannot train a conditional one.
    plain = _train(ws, "--steps", "2", "--name", "p")
    assert plain.returncode == 0, plain.stderr[-2000:]
    r = CliRunner().invoke(app, ["--home", str(ws.home), "generate", "--run", "p", "--attr", f"hair={hair}"],
                           catch_exceptions=False)
    assert r.exit_code == 2 and "trained without attributes" in r.output
    cmd = [sys.executable, "-m", "pipelines.cli", "--home", str(ws.home), "train", "--images", str(ws.home / "crops"),
           "--conditional", "--steps", "2", "--batch-size", "4", "--no-progress"]
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "needs a dataset version whose rows carry attributes" in bad.stderr
