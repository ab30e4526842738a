"""Training on several processes: torchrun starts them, DistributedDataParallel keeps G and D
the same on every one, and rank 0 alone writes the run folder.

    headshot train --images faces/ --nproc 2        # re-launches itself under torchrun
    torchrun --standalone --nproc_per_node 2 -m pipelines.cli train --images faces/   # the same

The global batch stays `batch_size`, so a setting means the same on one process as on eight:
every rank draws the same permutation of the set (the same seed) and takes its contiguous
share of each batch's indices, and G's noise is drawn for the whole batch on every rank and
cut the same way. Augmentation draws come from a seed of (run seed, step, rank): no rank keeps
a random state of its own, so a checkpoint (rank 0's) is all a resumed run needs.

gloo on the CPU, NCCL on CUDA (one GPU a process). DDP averages the gradients, so G and D stay
identical on every rank. BatchNorm normalises over each rank's share of the batch: SyncBatchNorm
(over the whole batch) on CUDA with more than one GPU (in D only without a gradient penalty),
plain BatchNorm on the CPU, where SyncBatchNorm raises. The running statistics are rank 0's (DDP broadcasts them at every
forward). Checkpoints hold the plain modules: a run started on N processes goes on in one, and
the other way round.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

DUMP_ENV = "HEADSHOT_DDP_DUMP"  # tests: every rank saves its G and D into this folder at the end
# Rank 0 samples and evaluates while the others wait in the next step's all-reduce.
TIMEOUT = timedelta(minutes=30)
T = TypeVar("T")


class DistributedError(ValueError):
    """A run on several processes cannot start; the message says why and what to do."""


def under_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def env_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun), before any process group."""
    return int(os.environ["RANK"]) if under_torchrun() else 0


def env_world() -> int:
    return int(os.environ["WORLD_SIZE"]) if under_torchrun() else 1


def step_seed(seed: int, step: int, rank: int) -> int:
    """The augmentation seed of one rank at one step: distinct for every (step, rank) pair."""
    return ((seed + 3) * 1_000_003 + step) * 4099 + rank


def check_share(batch_size: int, world: int) -> None:
    """Every rank gets the same whole number of pictures of each batch: DDP averages the ranks'
    gradients with equal weights, so unequal shares would weigh some pictures more."""
    if world > batch_size:
        raise DistributedError(f"--nproc {world}: a batch of {batch_size} pictures cannot give each of {world} "
                               f"processes one (the batch is split between them): use --nproc {batch_size} or less, "
                               f"or --batch-size {world} or more")
    if batch_size % world:
        up = -(-batch_size // world) * world
        raise DistributedError(f"--nproc {world}: the batch of {batch_size} pictures does not split evenly over "
                               f"{world} processes: use --batch-size {up}, or an --nproc that divides {batch_size}")


@dataclass
class Ranks:
    """This process's place in the run; rank 0 of 1, doing everything, outside torchrun."""

    device: torch.device
    rank: int = 0
    world: int = 1
    joined: bool = False  # one of a process group: collectives, DDP
    owner: bool = False  # this run started the process group, and ends it

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def share(self) -> tuple[int, int]:
        return self.rank, self.world

    def barrier(self) -> None:
        if self.joined:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on one: a Ctrl-C seen by one rank stops them all
        after the same step (a rank that stopped alone would leave the others waiting)."""
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Losses averaged over the ranks, for the log: each rank's are of its share alone."""
        if self.world == 1:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: v / self.world for k, v in zip(keys, t.tolist())}

    def from_main(self, fn: Callable[[], T]) -> T:
        """fn() on rank 0, its value on every rank: speed settings are measured once, and every
        rank trains with the same ones."""
        if not self.joined:
            return fn()
        box = [fn() if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def wrap(self, trainer) -> None:
        """The step runs G and D under DDP; trainer.g and trainer.d stay the plain modules that
        checkpoints hold. Ranks other than 0 keep no EMA: nothing of theirs is sampled or saved."""
        if not self.joined:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        trainer.share, trainer.keep_ema = self.share, self.main
        cuda = self.device.type == "cuda"
        if cuda and self.world > 1:
            # In place: the same parameters (the optimizers hold them) and the same state_dict keys.
            trainer.g = torch.nn.SyncBatchNorm.convert_sync_batchnorm(trainer.g)
            if trainer.cfg.penalty == "none":
                # A gradient penalty differentiates D's backward, and SyncBatchNorm's backward (its
                # own all-reduce) cannot be: D keeps plain BatchNorm then.
                trainer.d = torch.nn.SyncBatchNorm.convert_sync_batchnorm(trainer.d)
        ids = [self.device.index] if cuda else None
        g, d = DDP(trainer.g, device_ids=ids), DDP(trainer.d, device_ids=ids)
        trainer._g_run = torch.compile(g) if trainer.speed.compile else g
        trainer._d_run = torch.compile(d) if trainer.speed.compile else d

    def finish(self, trainer) -> None:
        """The end of the loop on every rank, after rank 0's last writes. BatchNorm's running
        statistics become rank 0's everywhere (each rank updated its own since the last forward's
        broadcast), so every rank ends with the very G and D of the checkpoint."""
        if self.joined and self.world > 1:
            for buf in (*trainer.g.buffers(), *trainer.d.buffers()):
                dist.broadcast(buf, src=0)
        folder = os.environ.get(DUMP_ENV)
        if folder and self.joined:
            torch.save({"G": trainer.g.state_dict(), "D": trainer.d.state_dict(), "step": trainer.step_no,
                        "world": self.world}, Path(folder) / f"rank-{self.rank}.pt")
        self.barrier()

    def close(self) -> None:
        if self.owner and dist.is_initialized():
            dist.destroy_process_group()


def start(device: torch.device, batch_size: int) -> Ranks:
    """Join the other ranks when torchrun started this process (RANK, WORLD_SIZE and LOCAL_RANK
    in the environment); one rank of one otherwise."""
    if not under_torchrun():
        return Ranks(device)
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    check_share(batch_size, world)
    if device.type == "cuda":
        n = torch.cuda.device_count()
        if local >= n:
            raise DistributedError(f"LOCAL_RANK {local}: {n} CUDA GPU(s) visible and each process needs its own: "
                                   f"start at most {n} processes a machine")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        kw: dict[str, Any] = {"backend": "nccl", "device_id": device}
    elif device.type == "cpu":
        kw = {"backend": "gloo"}
    else:
        raise DistributedError(f"--device {device.type}: DDP has no backend there: train on cpu or cuda")
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group(timeout=TIMEOUT, **kw)
    ranks = Ranks(device, rank, world, joined=True, owner=owner)
    ranks.barrier()  # every rank has made its read-only checks before rank 0 writes anything
    return ranks


# -- launching ---------------------------------------------------------------------------------
def torchrun_available() -> bool:
    return dist.is_available() and importlib.util.find_spec("torch.distributed.run") is not None


def check_launch(nproc: int, batch_size: int, device: str) -> None:
    """What `--nproc N` needs, checked before any process starts."""
    if nproc < 1:
        raise DistributedError(f"--nproc {nproc}: one process or more")
    if not torchrun_available():
        raise DistributedError("--nproc: this PyTorch has no torch.distributed (torchrun): train without --nproc, "
                               "or install a PyTorch build that has it")
    check_share(batch_size, nproc)
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        n = torch.cuda.device_count()
        if n < nproc:
            raise DistributedError(f"--nproc {nproc} --device {device}: {n} CUDA GPU(s) visible and each process "
                                   f"needs its own: use --nproc {n}" if n else
                                   f"--nproc {nproc} --device {device}: no CUDA GPU is visible: use --device cpu")
    elif device == "mps" or (device == "auto" and mps):
        raise DistributedError(f"--nproc {nproc} --device {device}: DDP has no backend for Apple's mps: "
                               "use --device cpu, or train without --nproc")


def launch(nproc: int, args: list[str]) -> int:
    """`torchrun --standalone --nproc_per_node N ARGS`, in this process, as torch.distributed.run
    does it. Returns the exit code of the rank that failed first (each rank says why itself), or 0.
    A Ctrl-C reaches torchrun here, which passes it on to every rank once."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    # torchrun's default is 1 thread a process, with a warning: share the cores instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // nproc)))
    # Its loggers (each with a level of its own) repeat what the ranks print themselves: a failed
    # rank's report, the Ctrl-C passed on. Only this process's are silenced, never a rank's.
    quiet = logging.getLogger("torch.distributed")  # torch gives it a stderr handler of its own
    kept, quiet.handlers, propagate = quiet.handlers, [logging.NullHandler()], quiet.propagate
    quiet.propagate = False
    try:
        run(parse_args(["--standalone", f"--nproc_per_node={nproc}", *args]))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        if code not in (2, 130):
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            logging.getLogger("headshot.train").error("rank %d of %d ended with %s", rank, nproc, how)
        return code if code > 0 else 128 - code
    except SignalException:
        return 130
    finally:
        quiet.handlers, quiet.propagate = kept, propagate
    return 0
