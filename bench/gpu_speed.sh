#!/usr/bin/env bash
# The training speed bench on a lent GPU (the device tool), in one go: `bash bench/gpu_speed.sh`.
# Uses the carried .venv when its torch sees CUDA, else installs the project into a fresh one.
# Writes the markdown to $OUT/gpu_speed.md when $OUT is set. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_speed: no NVIDIA GPU on this machine (nvidia-smi finds none): nothing to measure" >&2
  exit 1
fi
PY=.venv/bin/python
if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_speed: the carried .venv has no CUDA torch here; installing the project into .venv-gpu" >&2
  python3 -m venv .venv-gpu
  PY=.venv-gpu/bin/python
  "$PY" -m pip install -q -c constraints.txt -e . > .venv-gpu/install.log 2>&1 || { tail -20 .venv-gpu/install.log >&2; exit 1; }
fi
"$PY" - <<'PYEOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_speed: no CUDA GPU is visible to PyTorch on this machine: nothing to measure")
print(f"gpu_speed: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", file=sys.stderr)
PYEOF
out_args=()
if [ -n "${OUT:-}" ]; then out_args=(--out "$OUT/gpu_speed.md"); fi
# 1,000 steps of batch 64 per run, 2 pairs and the 8 forced settings: ~6-8 minutes on an H200
# with the deadline as a guard, so the device's time is not overrun.
"$PY" -m bench.train_speed --device cuda --steps 1000 --repeats 2 --deadline 420 "${out_args[@]}"
