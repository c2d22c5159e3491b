"""Full fine-tuning of a random-weight Qwen2.5-1.5B-shaped model with `swift sft --deepspeed zero3_offload` on one GPU.

    bash benchmarks/gpu_zero3.sh            # or: python benchmarks/gpu_zero3.py [--steps 6] [--seq_len 1024]
    python benchmarks/gpu_zero3.py --tiny   # the same path on the CPU with a tiny model: checks the script only

Needs no network. The model (Qwen2.5-1.5B's config: hidden 1536, 28 layers, 12/2 heads, 152k vocabulary, tied
head; about 1.5B parameters) is written once in bf16 to --model_dir with the bundled demo tokenizer and reused.
Training runs through our CLI entry point, in this process (`swift.cli.main.main(["sft", ...])`, one process, no
torchrun) so the CUDA counters are read here: full tuning, ZeRO-3 with parameters and optimizer state offloaded to
the CPU (DeepSpeed's CPU Adam), bf16, batch 1, packed sequences of --seq_len tokens. Prints and writes JSON (to
$OUT/gpu_zero3.json when $OUT is set, else ./gpu_zero3.json): peak GPU memory (max_memory_allocated / reserved,
GiB), tokens/s over the steps after the first, the losses, and the time the CPU Adam op took to build (JIT, once).
On the CPU (--tiny) the peak figure is the process's peak resident memory instead.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
QWEN25_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
                  rms_norm_eps=1e-6, tie_word_embeddings=True)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=151936, max_position_embeddings=2048, tie_word_embeddings=True)


def build_model(folder: Path, shape: dict) -> Path:
    """A random-weight Qwen2 in bf16 with the demo tokenizer; reused when complete."""
    if (folder / "done").is_file():
        return folder
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    config = Qwen2Config(**shape, torch_dtype="bfloat16")
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    del model
    tok = REPO / "swift" / "assets" / "demo_model"
    for name in os.listdir(tok):
        if name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template")):
            shutil.copy2(tok / name, folder / name)
    (folder / "done").write_text("ok", encoding="utf-8")
    return folder


def make_data(path: Path, rows: int) -> Path:
    rnd = random.Random(0)
    words = "alpha beta gamma delta tensor shard offload gradient optimizer memory kernel stream".split()
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            text = " ".join(rnd.choice(words) for _ in range(400))
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Story {i}?"},
                                             {"role": "assistant", "content": text}]}) + "\n")
    return path


def build_cpu_adam() -> float | None:
    """Build (JIT, cached in ~/.cache/torch_extensions) DeepSpeed's CPU Adam before timing; seconds, None if it fails."""
    t = time.time()
    try:
        from deepspeed.ops.op_builder import CPUAdamBuilder

        CPUAdamBuilder().load()
    except Exception as e:  # noqa: BLE001 - report and let the training show the real error
        print(f"CPU Adam op did not build: {e!r}", flush=True)
        return None
    return round(time.time() - t, 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny model on the CPU (smoke test of this script)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seq_len", type=int, default=None)
    p.add_argument("--model_dir", default=None)
    p.add_argument("--work_dir", default=None)
    a = p.parse_args()
    steps = a.steps or (3 if a.tiny else 6)
    seq = a.seq_len or (256 if a.tiny else 1024)
    work = Path(a.work_dir or os.environ.get("TMPDIR", "/tmp")) / ("gpu_zero3_tiny" if a.tiny else "gpu_zero3")
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not a.tiny:
        print("no CUDA device: run with --tiny for the CPU smoke test", file=sys.stderr)
        return 2
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    model = build_model(Path(a.model_dir) if a.model_dir else work / "model", TINY if a.tiny else QWEN25_15B)
    data = make_data(work / "data.jsonl", rows=steps * 3 + 8)
    adam_build_s = build_cpu_adam()
    out = work / "runs"
    shutil.rmtree(out, ignore_errors=True)
    from swift.cli.main import main as swift_main

    argv = ["sft", "--model", str(model), "--dataset", str(data), "--tuner_type", "full", "--deepspeed",
            "zero3_offload", "--torch_dtype", "bfloat16" if cuda else "float32", "--max_length", str(seq),
            "--truncation_strategy", "right", "--packing", "true", "--per_device_train_batch_size", "1", "--max_steps", str(steps), "--logging_steps",
            "1", "--learning_rate", "1e-5", "--save_steps", "100000", "--output_dir", str(out)]
    print("swift " + " ".join(argv), flush=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    rc = swift_main(argv)
    wall = time.time() - t0
    if rc != 0:
        print(f"swift sft failed with exit status {rc}", file=sys.stderr)
        return rc
    run = next(p for p in out.iterdir() if p.is_dir())
    rows = [json.loads(line) for line in (run / "logging.jsonl").read_text(encoding="utf-8").splitlines()]
    steps_rows = [r for r in rows if "loss" in r]
    measured = [r["tokens_per_second"] for r in steps_rows[1:] if r.get("tokens_per_second")]
    result = {
        "model": "tiny qwen2 (cpu smoke test)" if a.tiny else "Qwen2.5-1.5B shape, random bf16 weights",
        "preset": "zero3_offload", "device": torch.cuda.get_device_name(0) if cuda else "cpu", "seq_len": seq,
        "steps": len(steps_rows), "losses": [round(r["loss"], 4) for r in steps_rows],
        "tokens_per_s": round(sum(measured) / len(measured), 1) if measured else None,
        "wall_s": round(wall, 1), "cpu_adam_build_s": adam_build_s,
    }
    if cuda:
        result["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    else:
        result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(result, indent=1))
    dest = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(".")
    (dest / "gpu_zero3.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
