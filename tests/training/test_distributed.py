"""Training under torchrun with DistributedDataParallel, on the CPU (gloo): two processes end
with the same weights, rank 0 alone writes the run, one process under torchrun is a plain run
bit for bit, checkpoints go on in either mode, and a launch that cannot work is one line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.conftest import tiny
from training import checkpoint as ckpt
from training.data import Batches, folder_source
from training.run import RunFolder

SETS = ("ngf=8", "ndf=8", "eval_every=0", "best_metric=none", "precision=fp32", "channels_last=off",
        "sample_every=3", "checkpoint_every=2", "threads=1")


def _train(home: Path, faces: Path, *extra: str, dump: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipelines.cli", "--home", str(home), "train", "--images", str(faces),
           "--batch-size", "8", "--name", "k", "--no-progress", *[a for kv in SETS for a in ("--set", kv)], *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        env["HEADSHOT_DDP_DUMP"] = str(dump)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    return done


def _state(home: Path) -> dict:
    return ckpt.load(RunFolder(home / "runs" / "k").last)


def _same(a: dict, b: dict, parts=("G", "D")) -> list[str]:
    """The keys whose tensors differ (an empty list: the same)."""
    return [f"{p}.{k}" for p in parts for k in a[p] if not torch.equal(a[p][k], b[p][k])]


@pytest.fixture(scope="module")
def ddp(faces, tmp_path_factory):
    """3 steps on two processes, every rank's G and D dumped at the end."""
    root = tmp_path_factory.mktemp("ddp")
    done = _train(root / "ws", faces, "--steps", "3", "--nproc", "2", dump=root / "dump")
    return root / "ws", root / "dump", done


@pytest.fixture(scope="module")
def plain(faces, tmp_path_factory):
    home = tmp_path_factory.mktemp("plain") / "ws"
    _train(home, faces, "--steps", "3")
    return home


def test_two_processes_train_and_end_with_the_same_weights(ddp):
    home, dump, _ = ddp
    ranks = [torch.load(dump / f"rank-{r}.pt") for r in (0, 1)]
    assert [d["step"] for d in ranks] == [3, 3] and [d["world"] for d in ranks] == [2, 2]
    assert _same(*ranks) == []  # parameters and BatchNorm statistics alike
    state = _state(home)
    assert _same(ranks[0], state) == [] and state["step"] == 3
    from training.model import build

    torch.manual_seed(0)  # the run's seed: G as it started
    g0, _ = build(tiny())
    assert _same({"G": g0.state_dict()}, ranks[0], ("G",)) != []  # it trained


def test_rank_0_alone_writes_the_run_folder(ddp):
    home, _, done = ddp
    assert sorted(p.name for p in (home / "runs").iterdir()) == ["k"]
    rf = RunFolder(home / "runs" / "k")
    assert json.loads(rf.config.read_text())["processes"] == 2
    rows = [json.loads(line) for line in rf.metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == [3]  # one row, not one a rank
    assert sorted(p.name for p in rf.samples.iterdir()) == ["step-000003.png"]
    assert len(list(rf.tb.glob("events.out.tfevents.*"))) == 1
    assert done.stdout.count("run k: step 3 of 3") == 1  # printed once, by rank 0
    assert not list(rf.checkpoints.glob(".tmp-*"))


def test_one_process_under_torchrun_is_a_plain_run_bit_for_bit(faces, plain, tmp_path):
    home = tmp_path / "ws"
    _train(home, faces, "--steps", "3", "--nproc", "1")
    a, b = _state(home), _state(plain)
    assert _same(a, b, ("G", "D", "G_ema")) == []
    for k, v in a["opt_g"]["state"].items():
        assert torch.equal(v["exp_avg"], b["opt_g"]["state"][k]["exp_avg"])
    sample = "runs/k/samples/step-000003.png"
    assert (home / sample).read_bytes() == (plain / sample).read_bytes()


def test_checkpoints_go_on_across_modes_and_a_ddp_resume_is_exact(faces, ddp, plain, tmp_path):
    # DDP -> one process, and one process -> DDP: the checkpoints hold plain modules.
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(ddp[0], one)
    shutil.copytree(plain, two)
    _train(one, faces, "--resume", "k", "--steps", "5")
    _train(two, faces, "--resume", "k", "--steps", "5", "--nproc", "2")
    for home, before in ((one, _state(ddp[0])), (two, _state(plain))):
        after = _state(home)
        assert after["step"] == 5 and _same(before, after) != []
    # 3 steps on two processes and 3 more after a restart, or 6 in one go: the same.
    again, straight = tmp_path / "again", tmp_path / "straight"
    shutil.copytree(ddp[0], again)
    _train(again, faces, "--resume", "k", "--steps", "6", "--nproc", "2")
    _train(straight, faces, "--steps", "6", "--nproc", "2")
    assert _same(_state(again), _state(straight), ("G", "D", "G_ema")) == []


def test_the_ranks_shares_make_up_the_single_process_batch(faces):
    cfg = tiny()
    whole = Batches(folder_source(faces), cfg, torch.device("cpu"))
    shares = [Batches(folder_source(faces), cfg, torch.device("cpu"), share=(r, 2)) for r in (0, 1)]
    for _ in range(6):  # past the end of the first pass (40 pictures, 8 a batch)
        assert torch.equal(torch.cat([s.next() for s in shares]), whole.next())


@pytest.mark.parametrize("args,message", [
    (["--nproc", "3"], "--nproc 3: the batch of 8 pictures does not split evenly over 3 processes: use --batch-size 9"),
    (["--nproc", "9"], "--nproc 9: a batch of 8 pictures cannot give each of 9 processes one"),
    (["--nproc", "0"], "--nproc 0: one process or more"),
    (["--nproc", "2", "--device", "cuda"], "--nproc 2 --device cuda: "),
    (["--nproc", "2", "missing"], "--nproc: this PyTorch has no torch.distributed (torchrun)"),
])
def test_a_launch_that_cannot_work_is_one_line_and_exit_2(faces, tmp_path, monkeypatch, args, message):
    from typer.testing import CliRunner

    import training.distributed as distributed
    from pipelines.cli import app

    if "--device" in args and torch.cuda.device_count() >= 2:
        pytest.skip("two GPUs are here: --nproc 2 --device cuda would start")
    if "missing" in args:
        args = args[:-1]
        monkeypatch.setattr(distributed, "torchrun_available", lambda: False)
    r = CliRunner().invoke(app, ["--home", str(tmp_path / "ws"), "train", "--images", str(faces), "--batch-size", "8",
                                 "--steps", "1", "--name", "e", *args], catch_exceptions=False)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"headshot: error: {message}"), r.output
    assert not (tmp_path / "ws" / "runs" / "e").exists()
