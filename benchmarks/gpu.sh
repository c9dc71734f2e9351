#!/usr/bin/env bash
# GPU throughput of ofactl in bf16, with and without torch.compile: pretraining steps per second and extraction
# audio-seconds per second (benchmarks/bench_gpu.py).  Run on a machine with a CUDA GPU and nothing else running:
#   bash benchmarks/gpu.sh [--device cuda:1] [--steps 20] [--no-compile]
# Writes benchmarks/gpu-<date>.json (the numbers and the GPU's name) for the README's table.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PYTHON" benchmarks/bench_gpu.py --json "benchmarks/gpu-$(date -u +%Y%m%d-%H%M).json" "$@"
