"""The training loop on tiny models: what a run writes, exact resume, and every bad input
ending as a clear error with nothing half-written."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.training.conftest import tiny
from training import checkpoint as ckpt
from training.config import ConfigError, TrainConfig, resolve
from training.data import DataError, folder_source
from training.loop import Trainer
from training.model import Discriminator, Generator, build
from training.run import RunFolder, TrainError, train


def _weights(path: Path) -> dict:
    return ckpt.load(path)


def test_models_have_the_papers_shapes():
    for size in (64, 128):
        g, d = build(TrainConfig(size=size))
        x = g(torch.randn(3, 100))
        assert x.shape == (3, 3, size, size) and d(x).shape == (3,)
        assert -1 <= float(x.detach().min()) and float(x.detach().max()) <= 1
    # The 64 px pair has exactly the parameter counts of the paper's architecture.
    assert sum(p.numel() for p in Generator().parameters()) == 3_576_704
    assert sum(p.numel() for p in Discriminator().parameters()) == 2_765_568


def test_a_run_writes_everything_it_promises(faces, tmp_path):
    res = train(tmp_path / "runs", tiny(), folder_source(faces), name="r", progress=False)
    rf = RunFolder(tmp_path / "runs" / "r")
    assert res.step == 6 and not res.interrupted
    cfg = json.loads(rf.config.read_text())
    assert cfg["config"]["nz"] == 100 and cfg["data"]["kind"] == "folder" and cfg["data"]["train_images"] == 40
    assert cfg["data"]["content_hash"] and cfg["code_version"]
    assert sorted(p.name for p in rf.samples.iterdir()) == ["step-000003.png", "step-000006.png"]
    with Image.open(rf.samples / "step-000006.png") as grid:
        assert grid.size == (8 * 66 + 2, 8 * 66 + 2)  # 8 x 8 pictures of 64 px, 2 px apart
    with Image.open(rf.gif) as gif:
        assert gif.n_frames == 2
    state = _weights(rf.last)
    assert state["step"] == 6 and set(state) >= {"G", "D", "G_ema", "opt_g", "opt_d", "rng", "fixed_noise", "batches"}
    assert state["data"]["content_hash"] == cfg["data"]["content_hash"]
    assert rf.best.is_file()
    rows = [json.loads(line) for line in rf.metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if "loss_d" in r] == [6]  # every 10 steps, and the last
    assert list(rf.tb.glob("events.out.tfevents.*"))
    assert not list(rf.checkpoints.glob(".tmp-*"))


@pytest.mark.parametrize("precision,channels_last", [("fp32", "off"), ("bf16", "on")])
def test_resume_is_exact(faces, tmp_path, precision, channels_last):
    """N steps in one go, and N/2 + a restart + N/2, give the same weights and the same samples."""
    runs = tmp_path / "runs"
    cfg = tiny(steps=6, precision=precision, channels_last=channels_last, penalty="r1")
    train(runs, cfg, folder_source(faces), name="once", progress=False)
    train(runs, tiny(steps=3, precision=precision, channels_last=channels_last, penalty="r1"),
          folder_source(faces), name="twice", progress=False)
    res = train(runs, cfg, None, resume="twice", overrides={"steps": 6}, progress=False)
    assert res.step == 6
    a, b = _weights(runs / "once/checkpoints/last.pt"), _weights(runs / "twice/checkpoints/last.pt")
    for part in ("G", "D", "G_ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    for k, v in a["opt_g"]["state"].items():
        assert torch.equal(v["exp_avg"], b["opt_g"]["state"][k]["exp_avg"])
    assert (runs / "once/samples/step-000006.png").read_bytes() == (runs / "twice/samples/step-000006.png").read_bytes()
    rows = [json.loads(x)["step"] for x in (runs / "twice/metrics.jsonl").read_text().splitlines()]
    assert rows == sorted(rows)


def test_presets_and_penalties_train(faces, tmp_path):
    for preset in ("sngan", "dragan"):
        mine = {k: v for k, v in tiny(steps=2).as_dict().items()
                if k not in ("preset", "loss", "spectral_norm", "penalty", "penalty_weight")}
        cfg = resolve(preset, mine)
        assert (cfg.loss, cfg.spectral_norm, cfg.penalty) == {"sngan": ("hinge", True, "none"),
                                                              "dragan": ("bce", False, "dragan")}[preset]
        res = train(tmp_path / "runs", cfg, folder_source(faces), name=preset, progress=False)
        assert res.step == 2 and all(v == v for v in res.last_losses.values())


def test_baked_augmentation_triples_the_real_set(faces, tmp_path):
    from training.augment import bake

    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    baked = bake(images, tiny(), seed=1)
    assert baked.shape[0] == 15
    assert torch.equal(baked[5:10], images[:, [0, 2, 1]])  # the channel-swapped copies
    res = train(tmp_path / "runs", tiny(steps=2, augment="baked"), folder_source(faces), name="b", progress=False)
    assert res.step == 2


def test_diff_augment_is_differentiable_and_keeps_the_swap_rare():
    from training.augment import diff_augment

    cfg = tiny(augment="diff", diff_policy=("translation", "color", "cutout", "swap"))
    x = torch.zeros(4000, 3, 8, 8)
    x[:, 1] = 0.5  # green everywhere, blue none: a swap shows as blue
    x.requires_grad_(True)
    out = diff_augment(x, cfg, torch.Generator().manual_seed(0))
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    plain = diff_augment(x.detach(), tiny(diff_policy=("swap",)), torch.Generator().manual_seed(0))
    swapped = (plain[:, 2].mean(dim=(1, 2)) > plain[:, 1].mean(dim=(1, 2))).float().mean()
    assert 0.2 < float(swapped) < 0.3  # the default p = 0.25
    for bad in (0.5, 0.7):  # at 0.5 D cannot tell G's swapped colours from the real ones
        with pytest.raises(ConfigError, match=f"swap_p = {bad} is out of range"):
            tiny(swap_p=bad)


def test_translation_moves_whole_pixels():
    from training.augment import translate

    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(50, 1, 1, 1)
    out = translate(x, torch.Generator().manual_seed(3), 0.25)  # up to 1 px
    for o in out:
        found = False
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                shifted = torch.zeros(4, 4)
                ys, xs = slice(max(0, dy), 4 + min(0, dy)), slice(max(0, dx), 4 + min(0, dx))
                src_ys, src_xs = slice(max(0, -dy), 4 + min(0, -dy)), slice(max(0, -dx), 4 + min(0, -dx))
                shifted[ys, xs] = x[0, 0][src_ys, src_xs]
                found |= torch.equal(o[0], shifted)
        assert found


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="unknown training setting 'stepz'"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ConfigError, match="steps = 'many' is not a valid int"):
        resolve("dcgan", sets={"steps": "many"})
    with pytest.raises(ConfigError, match="size = 96: choose one of 64, 128"):
        resolve("dcgan", sets={"size": "96"})
    with pytest.raises(ConfigError, match="unknown preset 'wgan'"):
        resolve("wgan")


def test_a_folder_with_non_images_and_one_too_small_for_the_batch(tmp_path, faces):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in sorted(faces.iterdir())[:12]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "notes.txt").write_text("not a picture")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    src = folder_source(folder)
    assert len(src.files) == 13 and src.skipped == 1  # notes.txt
    res = train(tmp_path / "runs", tiny(steps=1, sample_every=0), src, name="y", progress=False)
    assert res.step == 1  # broken.png left out with a warning (1 of 13), the rest trained on
    for p in sorted(folder.glob("face_*.png"))[:2]:
        p.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    with pytest.raises(DataError, match="3 of 13 pictures in .* cannot be read.*more than 10% gone"):
        train(tmp_path / "runs", tiny(), folder_source(folder), name="z", progress=False)
    small = tmp_path / "small"
    small.mkdir()
    for p in sorted(faces.iterdir())[:6]:
        (small / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DataError, match="6 train pictures is fewer than the batch size 8: lower --batch-size"):
        train(tmp_path / "runs", tiny(), folder_source(small), name="x", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    with pytest.raises(DataError, match="no pictures in it"):
        folder_source(empty)
    assert not (tmp_path / "runs" / "x" / "checkpoints" / "last.pt").exists()


def test_resume_refuses_other_model_settings_or_other_data(faces, tmp_path):
    runs = tmp_path / "runs"
    train(runs, tiny(steps=2), folder_source(faces), name="r", progress=False)
    with pytest.raises(TrainError, match=r"model settings differ .*ngf: 8 -> 16"):
        train(runs, tiny(), None, resume="r", overrides={"ngf": 16}, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    for p in sorted(faces.iterdir())[:10]:
        (other / p.name).write_bytes(p.read_bytes())
    with pytest.raises(TrainError, match="the data differs from the run's"):
        train(runs, tiny(), folder_source(other), resume="r", progress=False)
    with pytest.raises(TrainError, match=r"no checkpoint in .*runs: r"):
        train(runs, tiny(), None, resume="nope", progress=False)
    with pytest.raises(TrainError, match="exists already"):
        train(runs, tiny(), folder_source(faces), name="r", progress=False)


def test_a_nan_loss_stops_with_the_last_good_checkpoint(faces, tmp_path, monkeypatch):
    from training import data

    real_next = data.Batches.next_with_labels
    calls = {"n": 0}

    def poisoned(self):
        calls["n"] += 1
        batch, labels = real_next(self)
        return (batch * float("nan") if calls["n"] == 5 else batch), labels

    monkeypatch.setattr(data.Batches, "next_with_labels", poisoned)  # fault injection: a NaN batch at step 5
    with pytest.raises(TrainError, match=r"diverged at step 5: D's loss is nan.*last good checkpoint is step 4"):
        train(tmp_path / "runs", tiny(steps=8), folder_source(faces), name="n", progress=False)
    rf = RunFolder(tmp_path / "runs" / "n")
    state = _weights(rf.last)
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())
    assert json.loads(rf.metrics.read_text().splitlines()[-1]) == {"step": 4, "diverged": "D's loss is nan"}


def test_cuda_out_of_memory_names_a_batch_size(faces, tmp_path, monkeypatch):
    def oom(self, real, labels=None):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "step", oom)  # fault injection: no GPU here to run out of
    with pytest.raises(TrainError, match="CUDA ran out of memory at batch size 8: try --batch-size 4"):
        train(tmp_path / "runs", tiny(), folder_source(faces), name="o", progress=False)


def test_the_cuda_path_refuses_clearly_without_a_gpu(faces, tmp_path):
    from training.device import DeviceError, pick_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the refusal cannot be shown")
    with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


def _wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _train_cmd(home: Path, faces: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "--home", str(home), "train", "--images", str(faces),
            "--batch-size", "8", "--name", "k", "--no-progress",
            *[a for kv in ("ngf=8", "ndf=8", "eval_every=0", "best_metric=none", "precision=fp32", "channels_last=off",
                           "sample_every=0", "checkpoint_every=5") for a in ("--set", kv)], *extra]


def test_ctrl_c_writes_a_checkpoint_and_resume_reaches_the_total(faces, tmp_path):
    home = tmp_path / "ws"
    proc = subprocess.Popen(_train_cmd(home, faces, "--steps", "100000"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    rf = RunFolder(home / "runs" / "k")
    _wait_for(lambda: rf.last.is_file() or proc.poll() is not None, 120, "a first checkpoint")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped at step" in out and "headshot train --resume k" in out
    stopped = int(out.split("stopped at step ")[1].split()[0])
    assert _weights(rf.last)["step"] == stopped
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "--home", str(home), "train", "--resume", "k",
                           "--steps", str(stopped + 3), "--no-progress", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["step"] == stopped + 3


def test_a_kill_while_a_checkpoint_is_written_leaves_the_previous_one(faces, tmp_path):
    path = tmp_path / "ck" / "last.pt"
    ckpt.save(path, {"step": 1, "blob": torch.zeros(10)})
    # A writer that saves big checkpoints over and over, killed at an arbitrary moment.
    code = ("import sys, torch; from pathlib import Path; from training import checkpoint as c\n"
            "p = Path(sys.argv[1]); i = 2\n"
            "while True:\n    c.save(p, {'step': i, 'blob': torch.randn(4_000_000)}); i += 1\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
    _wait_for(lambda: list(path.parent.glob(".tmp-*")), 60, "a checkpoint being written")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = ckpt.load(path)  # whole: the old one or a newer complete one
    assert state["step"] >= 1 and state["blob"].numel() in (10, 4_000_000)
    ckpt.clean_temps(path.parent)
    assert not list(path.parent.glob(".tmp-*"))


def test_every_training_command_has_a_dry_run_or_works_on_a_tiny_run(faces, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    r = CliRunner().invoke(app, ["train", "--dry-run", "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 0 and "step 2 of 2" in r.output
    home = tmp_path / "ws"
    subprocess.run(_train_cmd(home, faces, "--steps", "4"), check=True, capture_output=True, timeout=120)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (a, b):
        r = CliRunner().invoke(app, ["--home", str(home), "generate", "--run", "k", "-n", "9", "--seed", "5",
                                     "--out", str(out)], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    assert a.read_bytes() == b.read_bytes()  # the same seed, the same pictures
    with Image.open(a) as im:
        assert im.size == (8 * 66 + 2, 2 * 66 + 2)  # 9 pictures: a row of 8 and one more
    r = CliRunner().invoke(app, ["--home", str(home), "generate", "--run", "k", "-n", "3", "--interpolate",
                                 "--out", str(tmp_path / "w.gif")], catch_exceptions=False)
    assert r.exit_code == 0
    with Image.open(tmp_path / "w.gif") as gif:
        assert gif.n_frames == 48
    r = CliRunner().invoke(app, ["--home", str(home), "generate", "--run", "nope"], catch_exceptions=False)
    assert r.exit_code == 2 and "no training run 'nope'" in r.output and "runs: k" in r.output
    # Portraits: each picture repainted in a painting's style (a striped one drawn here).
    painting = tmp_path / "stripes.png"
    Image.merge("RGB", [Image.linear_gradient("L").rotate(a) for a in (0, 45, 90)]).save(painting)
    r = CliRunner().invoke(app, ["--home", str(home), "generate", "--run", "k", "-n", "2", "--style", str(painting),
                                 "--style-steps", "3", "--style-size", "64", "--out", str(tmp_path / "p") + "/"],
                           catch_exceptions=False)
    assert r.exit_code == 0 and "wrote 2 portraits" in r.output, r.output
    files = sorted((tmp_path / "p").glob("*.png"))
    assert len(files) == 2 and all(Image.open(f).size == (64, 64) for f in files)
    r = CliRunner().invoke(app, ["--home", str(home), "generate", "--run", "k", "--style", str(tmp_path / "a.gif")],
                           catch_exceptions=False)
    assert r.exit_code == 2 and "--style" in r.output and "no such file" in r.output


def test_evaluation_keeps_the_best_checkpoint_by_kid_and_caches_real_features(faces, tmp_path):
    from manifests.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    cfg = tiny(steps=4, eval_every=2, eval_samples=24, best_metric="kid", sample_every=0)
    res = train(ws.runs, cfg, folder_source(faces), ws=ws, name="e", progress=False)
    rf = RunFolder(ws.runs / "e")
    evals = [json.loads(x) for x in rf.metrics.read_text().splitlines() if "eval/kid_x1e3" in x]
    assert [e["step"] for e in evals] == [2, 4]
    assert all(0 <= e["eval/c2st_accuracy"] <= 1 and "eval/copy_rate" in e for e in evals)
    best = min(evals, key=lambda e: e["eval/kid_x1e3"])
    assert res.best == {"metric": "kid_x1e3", "value": best["eval/kid_x1e3"], "step": best["step"]}
    assert _weights(rf.best)["step"] == best["step"]
    cached = sorted(p.name for p in (ws.home / "cache" / "features").glob("*.npy"))
    assert len(cached) == 3 and all("feat-v" in n for n in cached)  # real, copy set, its mirror
    from training.runs_index import list_runs

    [listed] = list_runs(ws.runs)
    assert listed["best"] == {"kid_x1e3": best["eval/kid_x1e3"], "step": best["step"]}


def test_a_set_beyond_memory_streams_in_shards_and_resumes_exactly(faces, tmp_path):
    from training.data import Batches

    src = folder_source(faces)
    # 40 pictures of 12 KB each against a 0 MB budget: shards of 16, 16 and 8.
    cfg = tiny(max_memory_mb=0, shard_images=16, batch_size=8)
    b = Batches(src, cfg, torch.device("cpu"))
    assert b.sharded and b.images is None  # nothing loaded up front
    first = [b.next() for _ in range(5)]
    assert b.images.shape[0] in (8, 16)
    state = b.state_dict()
    after = [b.next() for _ in range(4)]
    again = Batches(src, cfg, torch.device("cpu"))
    again.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(after, [again.next() for _ in range(4)]))
    assert all(x.shape == (8, 3, 64, 64) for x in first)
    runs = tmp_path / "runs"
    train(runs, tiny(steps=6, max_memory_mb=0, shard_images=16), src, name="once", progress=False)
    train(runs, tiny(steps=3, max_memory_mb=0, shard_images=16), src, name="twice", progress=False)
    train(runs, tiny(), None, resume="twice", overrides={"steps": 6}, progress=False)
    a, c = _weights(runs / "once/checkpoints/last.pt"), _weights(runs / "twice/checkpoints/last.pt")
    assert all(torch.equal(a["G"][k], c["G"][k]) for k in a["G"])


def test_the_ema_ramps_up_so_early_samples_are_not_flat_grey():
    from training.model import EMA

    ema = EMA(Generator(ngf=4), decay=0.999, rampup=0.05)
    assert ema.decay_at(1) < 1e-5  # nearly a copy at first
    assert 0.95 < ema.decay_at(600) < 0.99  # a half-life of 30 steps at step 600, not 700
    assert ema.decay_at(50_000) == 0.999
    assert EMA(Generator(ngf=4), decay=0.999).decay_at(600) == 0.999  # rampup 0: the plain average


def test_auto_speed_settings_are_measured_once_and_remembered(tmp_path, monkeypatch):
    from training.device import Speed, choose

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    seen = []

    def rate(cfg, device, speed):  # a stand-in device where bf16 + channels_last is fastest
        seen.append(speed)
        return 10.0 * (1 + speed.channels_last) * (3 if speed.precision == "bf16" else 1)

    cfg = TrainConfig(batch_size=5)
    first = choose(cfg, torch.device("cpu"), measure=rate)
    assert (first.precision, first.channels_last, first.compile) == ("bf16", True, False)
    assert len(seen) == 4 and not any(s.compile for s in seen)  # compile is not tried on a CPU
    again = choose(cfg, torch.device("cpu"), measure=rate)
    assert len(seen) == 4 and again.measured == first.measured  # from the cache
    fixed = choose(TrainConfig(precision="fp32", channels_last="off", compile="off"), torch.device("cpu"), measure=rate)
    assert fixed == Speed("fp32", False, False) and len(seen) == 4
    # The real measurement runs real steps of the run's model.
    from training.device import measure_rate

    assert measure_rate(tiny(batch_size=4), torch.device("cpu"), Speed("fp32", False, False), steps=1, warmup=1) > 0


def test_evaluate_a_run_and_two_folders_through_the_cli(faces, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    home = tmp_path / "ws"
    subprocess.run(_train_cmd(home, faces, "--steps", "2"), check=True, capture_output=True, timeout=120)
    r = CliRunner().invoke(app, ["--home", str(home), "evaluate", "--run", "k", "--samples", "24", "--json"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["run"] == "k" and doc["step"] == 2 and doc["n_fake"] == 24 and "copy_rate" in doc
    assert doc["against"].startswith("train split")  # an --images run has no val split
    assert list((home / "cache" / "features").glob("*.npy"))  # the real features, kept for next time
    text = CliRunner().invoke(app, ["evaluate", "--real", str(faces), "--fake", str(faces)], catch_exceptions=False)
    assert text.exit_code == 0 and "KID" in text.output and "FID" not in text.output.replace("not FID", "")
    bad = CliRunner().invoke(app, ["evaluate", "--real", str(faces)], catch_exceptions=False)
    assert bad.exit_code == 2 and "--fake" in bad.output
