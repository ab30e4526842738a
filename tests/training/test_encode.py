"""GAN inversion on a tiny run trained here: it finds pictures G drew, the nearest training
picture of a training picture is itself, and `headshot encode` runs end to end."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from manifests.workspace import Workspace
from replicas.drawn import write_faces
from training.config import TrainConfig
from training.data import folder_source, load_pictures
from training.encode import EncodeInputError, default_extractor, encode, measures, nearest, read_picture
from training.run import train
from training.runs import generate, latents, load_generator, run_folder

SIZE = 64


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    threads = torch.get_num_threads()
    # One thread: on 2 shared cores, two threads fighting other processes run several times slower.
    torch.set_num_threads(1)
    home = tmp_path_factory.mktemp("encode") / "ws"
    ws = Workspace.open(home)
    faces = home.parent / "faces"
    write_faces(faces, 16, size=SIZE)
    # lr 2e-3 and G_ema = G (ema_start beyond the run): 30 steps at the paper's 2e-4, averaged,
    # leave G drawing nearly one grey picture for every z, and any latent would "encode" it.
    cfg = TrainConfig(steps=30, batch_size=8, ngf=8, ndf=8, sample_every=0, eval_every=0, best_metric="none",
                      precision="fp32", channels_last="off", device="cpu", threads=1, lr_g=2e-3, lr_d=2e-3,
                      ema_start=10**6)
    train(ws.runs, cfg, folder_source(faces), name="t", progress=False)
    g, cfg, _ = load_generator(run_folder(ws.runs, "t"), "best")
    yield {"home": home, "ws": ws, "faces": faces, "g": g, "cfg": cfg}
    torch.set_num_threads(threads)


def test_a_picture_g_drew_is_found_far_better_than_by_a_random_latent(trained):
    g, nz = trained["g"], trained["cfg"].nz
    target = generate(g, latents(2, nz, 123))
    z, rec, losses = encode(g, target, steps=150, seed=0)
    random = generate(g, latents(2, nz, 999))
    err = measures(target, rec)["pixel_mse"]
    err_random = measures(target, random)["pixel_mse"]
    assert losses.shape == (151, 2)
    assert (err < err_random / 10).all(), (err, err_random)  # measured: 4e-6, 7e-6 against 8e-4, 5e-4
    assert (losses.min(0).values < losses[0] / 2).all(), losses[[0, -1]]  # measured: 0.018, 0.022 -> 0.003, 0.004
    assert torch.equal(generate(g, z), rec)  # z is what the report says it is
    assert torch.allclose(z.norm(dim=1), torch.full((2,), nz ** 0.5))  # on the Gaussian shell
    z2, rec2, _ = encode(g, target, steps=150, seed=0)
    assert torch.equal(z, z2) and torch.equal(rec, rec2)  # deterministic for a seed


def test_the_perceptual_term_descends_too(trained):
    extractor = default_extractor()
    if extractor is None:
        pytest.skip("the EfficientNet-Lite0 packages are not installed")
    g = trained["g"]
    target = load_pictures(sorted(trained["faces"].iterdir())[:1], SIZE)
    z, rec, losses = encode(g, target, steps=15, seed=1, extractor=extractor)
    assert losses.shape == (16, 1) and float(losses[:, 0].min()) < float(losses[0, 0])
    assert rec.shape == target.shape and rec.dtype == torch.uint8


def test_the_nearest_training_picture_of_a_training_picture_is_itself(trained):
    pictures = load_pictures(sorted(trained["faces"].iterdir()), SIZE)
    idx, dist = nearest(pictures[[5, 2, 11]], pictures)
    assert idx.tolist() == [5, 2, 11] and np.allclose(dist, 0)
    extractor = default_extractor()
    if extractor is not None:
        idx, dist = nearest(pictures[[5, 2, 11]], pictures, extractor)
        assert idx.tolist() == [5, 2, 11] and (dist < 1e-3).all()
    flipped = torch.flip(pictures[[3]], dims=[3])  # not in the set: a real distance
    assert nearest(flipped, pictures)[1][0] > 1e-3


def test_read_picture_squares_and_flattens_and_names_what_it_cannot_read(tmp_path):
    wide = tmp_path / "wide.png"
    im = Image.new("RGBA", (300, 100), (255, 0, 0, 255))
    im.paste((0, 0, 0, 0), (100, 0, 200, 100))  # a transparent centre: white, not black
    im.save(wide)
    x = read_picture(wide, SIZE)
    assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.uint8 and int(x.min()) == 255
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(EncodeInputError, match="notes.txt: not a picture"):
        read_picture(tmp_path / "notes.txt", SIZE)
    with pytest.raises(EncodeInputError, match="gone.png: no such file"):
        read_picture(tmp_path / "gone.png", SIZE)


def _cli(*args):
    from pipelines.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_headshot_encode_end_to_end_with_a_bad_input(trained, tmp_path):
    home, faces = trained["home"], trained["faces"]
    photo = tmp_path / "photo.png"
    Image.open(sorted(faces.iterdir())[0]).resize((90, 120)).save(photo)  # not square, not 64 px
    (tmp_path / "readme.txt").write_text("hello")
    out = tmp_path / "out"
    r = _cli("--home", home, "encode", photo, tmp_path / "readme.txt", sorted(faces.iterdir())[4],
             "--run", "t", "--steps", "10", "--out", out, "--json", "--no-progress")
    assert r.exit_code == 2, r.output  # one input failed; the others are encoded all the same
    errors = [line for line in r.stderr.splitlines() if line.startswith("headshot: error:")]
    assert len(errors) == 1 and "readme.txt" in errors[0]
    doc = json.loads(r.stdout)
    assert doc["failed"] == 1 and len(doc["pictures"]) == 2 and doc["steps"] == 10
    for stem, pic in zip(("photo", "face_00004"), doc["pictures"]):
        with Image.open(out / f"{stem}-encoded.png") as strip:
            assert strip.size == (3 * (SIZE + 2) + 2, SIZE + 4)  # three pictures, 2 px apart
        assert np.load(out / f"{stem}-z.npy").shape == (1, trained["cfg"].nz)
        assert pic["loss_end"] <= pic["loss_start"]
        assert set(pic["reconstruction"]) >= {"pixel_mse"} and "index" in pic["nearest"]
    # A training picture's nearest training picture is itself, at distance 0: a baseline no
    # reconstruction beats, and the verdict says so.
    assert doc["pictures"][1]["nearest"]["file"].endswith("face_00004.jpg")
    assert doc["pictures"][1]["nearest"]["pixel_mse"] == 0 and not doc["pictures"][1]["encoder_closer"]

    text = _cli("--home", home, "encode", photo, "--run", "t", "--steps", "2", "--out", out, "--no-features",
                "--no-progress")
    assert text.exit_code == 0, text.output
    assert "photo-encoded.png: reconstruction pixel MSE" in text.stdout and "nearest training picture" in text.stdout


def test_unknown_run_and_run_without_checkpoints(trained, tmp_path):
    home, faces = trained["home"], trained["faces"]
    pic = sorted(faces.iterdir())[0]
    r = _cli("--home", home, "encode", pic, "--run", "nope")
    assert r.exit_code == 2 and "no training run 'nope'" in r.stderr and "runs: t" in r.stderr
    empty = trained["ws"].runs / "empty"
    empty.mkdir()
    shutil.copy(trained["ws"].runs / "t" / "config.json", empty / "config.json")
    r = _cli("--home", home, "encode", pic, "--run", "empty")
    assert r.exit_code == 2 and "run empty has no checkpoint yet" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    shutil.rmtree(empty)
