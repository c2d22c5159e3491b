#!/usr/bin/env bash
# Serving throughput on a GPU (no network): see benchmarks/gpu_serve.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_serve.py "$@"
