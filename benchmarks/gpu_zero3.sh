#!/usr/bin/env bash
# ZeRO-3 + CPU offload full fine-tuning on one GPU (no network): see benchmarks/gpu_zero3.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_zero3.py "$@"
