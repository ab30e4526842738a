"""Training speed: `headshot train` against the PyTorch DCGAN example's loop
(bench/reference_dcgan.py), on the same pictures, steps, batch 64, 64 px and torch threads.

Each run is a whole process (Python start-up, imports, data loading, training, the final
checkpoint), started in turn (reference, headshot, reference, headshot, ...) so that drift in
the machine's load falls on both. headshot runs its defaults (DiffAugment, mirror, EMA) with
evaluation and sample grids off; its speed settings are "auto", measured in an untimed warm-up
run into a fresh cache (so the table says what auto picks on this machine now; `--user-cache`
uses ~/.cache/headshot as it is). With `--device cuda`, headshot also runs with bf16,
channels_last and torch.compile forced on and off (all eight combinations, once each).

Per run: wall time of the process; training time (headshot: the loop's own img/s from --json;
the reference: from its first step to its last, which includes its DataLoader's decoding,
done while it trains); and peak memory of the process tree: the main process's resident set
plus the private pages (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup) of every
process under it, the reference's two DataLoader workers included; pages a worker shares with
its parent count once. It is sampled every 0.25 s; the main process's exact peak RSS (from
wait4's rusage) is the floor.

    .venv/bin/python -m bench.train_speed [--steps 300] [--images 2048] [--repeats 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import SAMPLE_S, MachineLoad, Proc, run_measured

REPO = Path(__file__).resolve().parents[1]
BATCH = 64


# -- the two sides ---------------------------------------------------------------------------
def headshot_cmd() -> list[str]:
    script = Path(sys.executable).with_name("headshot")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipelines.cli"]


def bench_env(cache: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("DO_NOT_TRACK", "1")
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
    return env


def headshot_train(home: Path, images: Path, name: str, steps: int, threads: int, device: str,
                   sets: dict[str, str] | None = None, extra: list[str] | None = None) -> list[str]:
    quiet = {"eval_every": "0", "best_metric": "none", "sample_every": "0", "threads": str(threads),
             **(sets or {})}
    cmd = headshot_cmd() + ["--home", str(home), "train", "--images", str(images), "--steps", str(steps),
                            "--batch-size", str(BATCH), "--name", name, "--no-progress", "--json",
                            "--device", device]
    for k, v in quiet.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd + (extra or [])


def reference_cmd(dataroot: Path, steps: int, threads: int, device: str, outf: Path) -> list[str]:
    return [sys.executable, "-m", "bench.reference_dcgan", "--dataroot", str(dataroot), "--steps", str(steps),
            "--batch-size", str(BATCH), "--threads", str(threads), "--device", device, "--outf", str(outf)]


def write_pictures(folder: Path, n: int, size: int = 128) -> None:
    """n drawn faces in folder/all/ (ImageFolder wants a class folder; headshot reads it all)."""
    from replicas.drawn import write_faces

    target = folder / "all"
    procs = min(8, (os.cpu_count() or 1) // 2)
    if procs < 2 or n < 200:
        write_faces(target, n, size=size)
        return
    from concurrent.futures import ProcessPoolExecutor

    chunk = -(-n // procs)
    with ProcessPoolExecutor(procs) as pool:
        for f in [pool.submit(write_faces, target, min(chunk, n - s), size, s) for s in range(0, n, chunk)]:
            f.result()


@dataclass
class Row:
    what: str
    proc: Proc
    steps: int
    train_img_s: float = 0.0
    speed: str = ""
    error: str = ""

    @property
    def whole_img_s(self) -> float:
        return self.steps * BATCH / self.proc.wall_s

    @property
    def train_s(self) -> float:
        return self.steps * BATCH / self.train_img_s if self.train_img_s else float("nan")


def speed_label(s: dict | None) -> str:
    if not s:
        return "?"
    return f"{s['precision']}{'+channels_last' if s['channels_last'] else ''}{'+compile' if s['compile'] else ''}"


def as_row(what: str, proc: Proc, steps: int) -> Row:
    row = Row(what, proc, steps)
    if proc.rc != 0:
        row.error = proc.why()
        return row
    try:
        doc = proc.last_json()
        row.train_img_s = float(doc["images_per_s"])
        if "speed" in doc:
            row.speed = speed_label(doc["speed"])
        done = int(doc["step"] if what != "reference" else doc["steps"])  # headshot: step reached of steps
        if done != steps:
            row.error = f"{what}: ran {done} steps, not {steps}"
    except (ValueError, KeyError, TypeError) as exc:
        row.error = f"{what}: {exc}\n{proc.stdout[-2000:]}"
    return row


@dataclass
class Plan:
    steps: int
    images: int
    repeats: int
    device: str
    threads: int
    timeout: float
    deadline: float | None
    user_cache: bool
    rows: list[Row] = field(default_factory=list)
    variants: list[tuple[dict[str, str], Row | None]] = field(default_factory=list)
    warmup: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    load: dict = field(default_factory=dict)


def _device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or 'cpu'}, {os.cpu_count()} cores"


def run(plan: Plan, root: Path) -> None:
    started = time.perf_counter()
    pics = root / "faces"
    t = time.perf_counter()
    write_pictures(pics, plan.images)
    plan.warmup["write_s"] = time.perf_counter() - t
    cache = None if plan.user_cache else root / "cache"
    env = bench_env(cache)
    home = root / "ws"

    def clean(name: str) -> None:  # ~100 MB of checkpoints a run: gone once measured
        shutil.rmtree(home / "runs" / name, ignore_errors=True)

    # Untimed warm-up: auto's measurement (into the fresh cache), the page cache, first imports.
    w = run_measured(headshot_train(home, pics, "warmup", 1, plan.threads, plan.device), env, plan.timeout)
    if w.rc != 0:
        raise SystemExit("headshot's warm-up run failed:\n" + w.why())
    cfg = json.loads((home / "runs" / "warmup" / "config.json").read_text())
    plan.warmup.update(headshot_s=w.wall_s, speed=cfg.get("speed", {}))
    clean("warmup")
    r = run_measured(reference_cmd(pics, 1, plan.threads, plan.device, root / "ref-out"), env, plan.timeout)
    if r.rc != 0:
        raise SystemExit("the reference's warm-up run failed:\n" + r.why())
    plan.warmup["reference_s"] = r.wall_s

    load = MachineLoad()
    for i in range(plan.repeats):
        p = load.add(run_measured(reference_cmd(pics, plan.steps, plan.threads, plan.device, root / "ref-out"), env,
                                  plan.timeout))
        plan.rows.append(as_row("reference", p, plan.steps))
        name = f"speed-{i}"
        p = load.add(run_measured(headshot_train(home, pics, name, plan.steps, plan.threads, plan.device), env,
                                  plan.timeout))
        plan.rows.append(as_row("headshot", p, plan.steps))
        clean(name)
        print(f"  pair {i + 1}/{plan.repeats}: reference {plan.rows[-2].train_img_s:.0f} img/s, "
              f"headshot {plan.rows[-1].train_img_s:.0f} img/s ({plan.rows[-1].speed})", file=sys.stderr, flush=True)

    if plan.device == "cuda":
        # Cheap ones first: torch.compile's cold compiles are most of this part's time.
        for compile_ in ("off", "on"):
            for precision in ("bf16", "fp32"):
                for cl in ("on", "off"):
                    sets = {"precision": precision, "channels_last": cl, "compile": compile_}
                    label = speed_label({"precision": precision, "channels_last": cl == "on",
                                         "compile": compile_ == "on"})
                    if plan.deadline is not None and time.perf_counter() - started > plan.deadline:
                        plan.skipped.append(label)
                        plan.variants.append((sets, None))
                        continue
                    name = f"forced-{precision}-cl{cl}-compile{compile_}"
                    p = load.add(run_measured(headshot_train(home, pics, name, plan.steps, plan.threads,
                                                             plan.device, sets), env, plan.timeout))
                    plan.variants.append((sets, as_row(label, p, plan.steps)))
                    clean(name)
                    print(f"  {label}: {plan.variants[-1][1].train_img_s:.0f} img/s", file=sys.stderr, flush=True)
    plan.load = load.summary()


def _median(rows: list[Row], attr: str) -> float:
    vals = [getattr(r, attr) if not attr.startswith("proc.") else getattr(r.proc, attr[5:]) for r in rows]
    return statistics.median(vals) if vals else float("nan")


def report(plan: Plan) -> dict:
    ok = [r for r in plan.rows if not r.error]
    ref = [r for r in ok if r.what == "reference"]
    ours = [r for r in ok if r.what == "headshot"]
    sp = plan.warmup.get("speed", {})
    measured = sp.get("measured") or {}
    chosen = speed_label(sp) if sp else "?"
    print(f"## training speed: headshot train vs the PyTorch DCGAN example's loop ({plan.device})")
    print(f"{plan.images} drawn faces (128 px PNG/JPEG/WebP, trained at 64 px), {plan.steps} steps at batch {BATCH}, "
          f"torch threads {plan.threads}, {_device_name(plan.device)}; each run a whole process, alternating, "
          f"{plan.repeats} pairs. Reference: bench/reference_dcgan.py (ImageFolder + DataLoader with 2 workers, "
          f"BCELoss on a Sigmoid, fp32). headshot: its defaults (DiffAugment, mirror, EMA, a checkpoint at the end), "
          f"evaluation and sample grids off, speed settings auto -> **{chosen}**"
          + (f" (measured in an untimed warm-up run: "
             + ", ".join(f"{k} {v:.0f}" for k, v in measured.items()) + " img/s)" if measured else
             " (from the cache)") + ".")
    print()
    print("| run | what | wall s | training s | img/s, training | img/s, whole process | peak MB, tree (main) |")
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(plan.rows):
        if r.error:
            print(f"| {i // 2 + 1} | {r.what} | failed | | | | |")
            continue
        print(f"| {i // 2 + 1} | {r.what}{' (' + r.speed + ')' if r.speed else ''} | {r.proc.wall_s:.1f} | "
              f"{r.train_s:.1f} | {r.train_img_s:.1f} | {r.whole_img_s:.1f} | "
              f"{r.proc.peak_mb:.0f} ({r.proc.peak_main_mb:.0f}) |")
    result: dict = {"device": plan.device, "steps": plan.steps, "images": plan.images, "threads": plan.threads,
                    "chosen": chosen, "measured": measured}
    if ref and ours:
        m = {side: {"train": _median(rs, "train_img_s"), "whole": _median(rs, "whole_img_s"),
                    "peak": _median(rs, "proc.peak_mb"), "wall": _median(rs, "proc.wall_s")}
             for side, rs in (("reference", ref), ("headshot", ours))}
        for side in ("reference", "headshot"):
            print(f"| median | {side} | {m[side]['wall']:.1f} | | {m[side]['train']:.1f} | {m[side]['whole']:.1f} | "
                  f"{m[side]['peak']:.0f} |")
        ratio_t = m["headshot"]["train"] / m["reference"]["train"]
        ratio_w = m["headshot"]["whole"] / m["reference"]["whole"]
        ratio_m = m["headshot"]["peak"] / m["reference"]["peak"]
        print(f"| ratio | headshot / reference | | | **{ratio_t:.2f}x** | **{ratio_w:.2f}x** | {ratio_m:.2f}x |")
        goal = 5.0 if plan.device == "cuda" else 1.3
        print()
        print(f"Goals: img/s at least {goal}x the reference's: {'met' if ratio_t >= goal else 'NOT met'} in training "
              f"({ratio_t:.2f}x), {'met' if ratio_w >= goal else 'not met'} as whole processes ({ratio_w:.2f}x); "
              f"peak memory no higher than the reference's: {'met' if ratio_m <= 1.0 else 'NOT met'} "
              f"({m['headshot']['peak']:.0f} vs {m['reference']['peak']:.0f} MB).")
        result.update(medians=m, ratio_training=round(ratio_t, 2), ratio_whole=round(ratio_w, 2),
                      ratio_memory=round(ratio_m, 2))
    if plan.variants:
        base = m["reference"]["train"] if ref and ours else float("nan")
        print()
        print("headshot with its speed settings forced (`--set precision=... --set channels_last=... --set compile=...`), "
              "one run each, same pictures and steps:")
        print()
        print("| settings | wall s | img/s, training | img/s, whole process | x reference (training) | peak MB |")
        print("|---|---|---|---|---|---|")
        result["variants"] = {}
        for sets, r in plan.variants:
            label = speed_label({"precision": sets["precision"], "channels_last": sets["channels_last"] == "on",
                                 "compile": sets["compile"] == "on"})
            if r is None:
                print(f"| {label} | not run (past the time limit) | | | | |")
            elif r.error:
                print(f"| {label} | failed | | | | |")
            else:
                print(f"| {label} | {r.proc.wall_s:.1f} | {r.train_img_s:.1f} | {r.whole_img_s:.1f} | "
                      f"{r.train_img_s / base:.2f}x | {r.proc.peak_mb:.0f} |")
                result["variants"][label] = round(r.train_img_s, 1)
    failed = [r for r in plan.rows + [r for _, r in plan.variants if r is not None] if r.error]
    print()
    print(f"Peak memory: the main process's RSS plus the private pages of every process under it (the reference's "
          f"DataLoader workers), sampled every {SAMPLE_S} s; in brackets the main process's own exact peak RSS "
          f"(wait4). Pictures written in {plan.warmup.get('write_s', 0):.0f} s; untimed warm-ups: headshot "
          f"{plan.warmup.get('headshot_s', 0):.0f} s (1 step{', auto measured' if measured else ''}), reference "
          f"{plan.warmup.get('reference_s', 0):.0f} s (1 step).")
    if plan.load:
        print(f"Other work on the machine during the timed runs: {plan.load['other_cores']:.2f} cores on average "
              f"(busy time in /proc/stat less the bench's own); load average {plan.load['load_start']:.1f} at the "
              f"start, {plan.load['load_end']:.1f} at the end.")
        result["other_cores"] = round(plan.load["other_cores"], 2)
    if plan.skipped:
        print(f"Not run, past the {plan.deadline:.0f} s limit: {', '.join(plan.skipped)}.")
    for r in failed:
        print(f"\nFAILED {r.what}:\n```\n{r.error}\n```")
    result["failed"] = len(failed)
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="generator steps per run (default: 300 cpu, 1000 cuda)")
    ap.add_argument("--images", type=int, default=2048, help="drawn pictures to train on (a multiple of 64 "
                                                               "keeps the reference's batches whole)")
    ap.add_argument("--repeats", type=int, default=None, help="pairs of runs (default: 3 cpu, 2 cuda)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both (0: every core)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds a run may take before it is killed "
                                                                "(default: 1800 cpu, 240 cuda)")
    ap.add_argument("--deadline", type=float, default=None, help="cuda: seconds from the start after which the "
                                                                 "forced-settings runs still to come are skipped "
                                                                 "(default 480)")
    ap.add_argument("--user-cache", action="store_true", help="use ~/.cache/headshot's measured speed settings "
                                                               "instead of measuring them afresh")
    ap.add_argument("--out", help="also write the markdown to this file")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temp folder, removed)")
    args = ap.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here")
    plan = Plan(steps=args.steps or (1000 if cuda else 300), images=args.images,
                repeats=args.repeats or (2 if cuda else 3), device=args.device,
                threads=args.threads or os.cpu_count() or 1, timeout=args.timeout or (240 if cuda else 1800),
                deadline=args.deadline if args.deadline is not None else (480 if cuda else None),
                user_cache=args.user_cache)
    with tempfile.TemporaryDirectory(prefix="headshot-bench-speed-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        run(plan, root)
    if args.out:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            result = report(plan)
        Path(args.out).write_text(buf.getvalue())
        print(buf.getvalue(), end="")
    else:
        result = report(plan)
    if result["failed"] or not any(r.what == "headshot" and not r.error for r in plan.rows):
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
