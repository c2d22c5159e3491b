"""Quantized export on CPU: every method on one briefly trained model, with time, size and held-out perplexity.

    python benchmarks/bench_quant.py [--steps 150] [--methods gptq:4 awq:4 fp8:8 gptq:8 bnb:4 bnb:8]

First `swift pt` trains the built-in demo model (Qwen2 architecture, hidden 128) on the first 80% of the built-in
calibration text (the project's own English and Chinese docs), so perplexity means something; then `swift export`
runs once per method, each in its own process as a user would run it, and the figures come from the
`swift_quant.json` each export writes (its held-out text is the end of the same file, never trained on).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "swift" / "assets" / "data" / "calibration.txt"


def swift(*args: str) -> float:
    start = time.time()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "swift", *args], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--methods", nargs="+", default=["gptq:4", "awq:4", "fp8:8", "gptq:8", "bnb:4", "bnb:8"])
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-quant-"))
    lines = TEXT.read_text(encoding="utf-8").splitlines()
    train = work / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in lines[: len(lines) * 4 // 5]),
                     encoding="utf-8")
    took = swift("pt", "--model", "swift-demo", "--dataset", str(train), "--max_steps", str(a.steps),
                 "--learning_rate", "3e-3", "--per_device_train_batch_size", "8", "--max_length", "512", "--truncation_strategy", "right",
                 "--packing", "true", "--output_dir", str(work / "pt"), "--save_steps", str(a.steps))
    model = next((work / "pt").iterdir()) / f"checkpoint-{a.steps}"
    print(f"trained swift-demo for {a.steps} steps with swift pt in {took:.0f} s -> {model}")
    print(f"{'method':<8} {'bits':>4} {'export s':>9} {'MB':>6} {'ppl orig':>9} {'ppl quant':>10} {'change':>8}")
    for spec in a.methods:
        method, bits = spec.split(":")
        out = work / f"{method}-{bits}"
        took = swift("export", "--model", str(model), "--quant_method", method, "--quant_bits", bits,
                     "--output_dir", str(out), "--quant_seq_length", "512")
        r = json.loads((out / "swift_quant.json").read_text(encoding="utf-8"))
        print(f"{method:<8} {bits:>4} {took:>9.1f} {r['size_mb']:>6.2f} {r['ppl_original']:>9.2f} "
              f"{r['ppl_quantized']:>10.2f} {r['ppl_increase']:>+8.2%}")
    print(f"(original weights: {r['original_size_mb']:.2f} MB; folders under {work})")


if __name__ == "__main__":
    main()
