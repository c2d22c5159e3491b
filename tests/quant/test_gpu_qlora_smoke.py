"""Smoke test of benchmarks/gpu_qlora.py: its --tiny mode runs the GPU benchmark's code path on the CPU."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "gpu_qlora.py"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                                reason="bitsandbytes is not installed (pip install 'swiftlab[quant]')")


def test_gpu_qlora_tiny_trains_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("OUT", None)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--steps", "2", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["shape"] == "tiny" and res["steps"] == 2
    assert len(res["losses"]) == 2 and all(math.isfinite(x) for x in res["losses"])
    assert res["tokens_per_s"] > 0
    assert res["trainable_params"] > 0 and res["verdict"] == "n/a (CPU run)"
