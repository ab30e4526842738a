"""Tiny models on pictures drawn in code: a training test takes seconds, not hours."""

from dataclasses import replace

import pytest

from training.config import TrainConfig

TINY = TrainConfig(steps=6, batch_size=8, ngf=8, ndf=8, sample_every=3, checkpoint_every=2, eval_every=0,
                   best_metric="none", precision="fp32", channels_last="off", device="cpu", threads=2)


def tiny(**changes) -> TrainConfig:
    return replace(TINY, **changes)


@pytest.fixture(scope="session")
def faces(tmp_path_factory):
    """40 drawn faces, 64 px PNGs, in a folder."""
    from replicas.drawn import write_faces

    folder = tmp_path_factory.mktemp("faces")
    write_faces(folder, 40, size=64)
    return folder
