#!/usr/bin/env bash
# QLoRA training memory and speed on a GPU (no network): see benchmarks/gpu_qlora.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_qlora.py "$@"
