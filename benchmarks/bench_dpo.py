"""DPO step time and peak RSS: two separate forwards vs one concatenated (padded) forward vs one padding-free row.

    python benchmarks/bench_dpo.py [--steps 12] [--pairs 128] [--batch_size 8] [--hidden 128] [--layers 2]
                                   [--repeats 2] [--device auto|cpu|cuda]

All configurations run SwiftLab's real DPO trainer (`swift.trainers.rlhf.dpo`, TRL's DPOTrainer) with LoRA on a
tiny random Qwen2 with the demo tokenizer, each in its own process (so peak RSS is its own), on synthetic pairs
with long-tailed prompt and reply lengths encoded by `swift.data.encode_preference_rows`.

- concatenated: TRL's default: the batch is [chosen; rejected], one policy forward and one reference forward
  (the policy with adapters disabled) per step;
- naive: the same trainer with the model's forward split in two: chosen and rejected halves each cut to their
  own longest row, two policy forwards and two reference forwards per step;
- padding_free: `padding_free=True`: the 2B sequences of the batch packed into one row of their real tokens
  (position_ids restarting per sequence, no attention mask), one policy forward and one reference forward.

Prints seconds per step, wall and process CPU time (medians over the steps after the first; of `--repeats` runs,
which alternate between the configurations, the one with the least CPU time per step counts: CPU time is the
steadier figure on a shared machine), real (non-padding) tokens per wall second and per CPU second, the padding
share (padding positions / positions the model ran), peak RSS (and peak CUDA memory on a GPU) and the last step's
loss (all must agree: the configurations change how the work is done, not what is computed).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = ("naive", "concatenated", "padding_free")


def synthetic_pairs(n: int, seed: int = 0, max_words: int = 300) -> list[dict]:
    import random

    rng = random.Random(seed)
    words = "the model learns to answer questions about data training and language with care".split()

    def text(mu: float) -> str:
        return " ".join(rng.choice(words) for _ in range(min(max_words, max(3, int(rng.lognormvariate(mu, 0.9))))))

    return [{"messages": [{"role": "user", "content": text(2.8)}, {"role": "assistant", "content": text(3.6)}],
             "rejected_response": text(3.6)} for _ in range(n)]


def split_forward(model) -> None:
    """Make `model` run a [chosen; rejected] batch as two forwards, each half cut to its own longest row."""
    import torch

    original = model.forward

    def forward(*args, **kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        rows, width = ids.shape
        half = rows // 2
        outs = []
        for part in (slice(0, half), slice(half, rows)):
            n = int(mask[part].sum(-1).max())
            cut = {k: v[part, :n] if isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape[0] == rows else v
                   for k, v in kwargs.items()}
            outs.append(original(*args, **cut))
        merged = {}
        for key, first in outs[0].items():
            if isinstance(first, torch.Tensor) and first.dim() >= 2:  # per-token fields, shifted: width - 1
                merged[key] = torch.cat([torch.nn.functional.pad(o[key], (0, width - 1 - o[key].shape[1]))
                                         for o in outs])
            elif isinstance(first, torch.Tensor):
                merged[key] = sum(o[key] for o in outs)
            else:
                merged[key] = first
        return type(outs[0])(**merged)

    model.forward = forward


def run_one(name: str, a: argparse.Namespace) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, TrainerCallback

    from swift.data import encode_preference_rows
    from swift.templates import get_template
    from swift.trainers.rlhf import build_rlhf_trainer
    from swift.tuners import LoRAConfig, prepare_model

    torch.manual_seed(0)
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    tok = AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(__file__), "..", "swift", "assets", "demo_model"))
    template = get_template(tok, max_length=a.max_length, truncation_strategy="right")
    with tempfile.TemporaryDirectory() as cache:
        ds = encode_preference_rows(synthetic_pairs(a.pairs), template, kind="preference", cache_dir=cache)
    model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tok), hidden_size=a.hidden, intermediate_size=a.hidden * 4, num_hidden_layers=a.layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
    ))
    model = prepare_model(model, tuner_type="lora", lora=LoRAConfig(r=8, alpha=32, dropout=0.0))
    if name == "naive":
        split_forward(model)

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.cpu: list[float] = []
            self.start = self.start_cpu = 0.0

        def on_step_begin(self, args, state, control, **kw):
            self.start, self.start_cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.start)
            self.cpu.append(time.process_time() - self.start_cpu)

    clock = Clock()
    with tempfile.TemporaryDirectory() as out:
        trainer = build_rlhf_trainer("dpo", model=model, tokenizer=tok, template=template, train_dataset=ds, args=dict(
            output_dir=out, max_steps=a.steps, per_device_train_batch_size=a.batch_size, learning_rate=1e-4,
            logging_steps=1, save_strategy="no", report_to="none", use_cpu=device == "cpu", disable_tqdm=True,
            dataloader_num_workers=0, seed=0, beta=0.1, padding_free=name == "padding_free"))
        trainer.add_callback(clock)
        collate = trainer.data_collator
        seen = {"real": 0, "run": 0}

        def counting_collator(features):
            batch = collate(features)
            lengths = batch["attention_mask"].sum(-1)
            seen["real"] += int(lengths.sum())
            if name == "padding_free":
                seen["run"] += int(lengths.sum())
            elif name == "naive":  # each half cut to its own longest row
                seen["run"] += sum(len(half) * int(half.max()) for half in lengths.chunk(2))
            else:
                seen["run"] += batch["input_ids"].numel()
            return batch

        trainer.data_collator = counting_collator
        trainer.train()
        assert trainer.padding_free == (name == "padding_free")  # no silent fallback to padded batches
        last_loss = [r["loss"] for r in trainer.state.log_history if "loss" in r][-1]
    step_s = statistics.median(clock.times[1:] or clock.times)
    cpu_s = statistics.median(clock.cpu[1:] or clock.cpu)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tokens_per_step = seen["real"] / max(len(clock.times), 1)
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return {"config": name, "device": device, "steps": a.steps, "s_per_step": round(step_s, 4),
            "cpu_s_per_step": round(cpu_s, 4), "tokens_per_s": round(tokens_per_step / step_s, 1),
            "tokens_per_cpu_s": round(tokens_per_step / cpu_s, 1),
            "padding_share": round(1 - seen["real"] / max(seen["run"], 1), 4), "peak_rss_mb": round(rss_mb, 1),
            "peak_gpu_mb": gpu_mb, "last_loss": last_loss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--pairs", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=8, help="pairs per step")
    p.add_argument("--max_length", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="runs per configuration (alternating); the best counts")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--_one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._one:
        print(json.dumps(run_one(a._one, a)))
        return
    runs: dict[str, list[dict]] = {name: [] for name in a.configs}
    keys = ("steps", "pairs", "batch_size", "max_length", "hidden", "layers", "device")
    for _ in range(a.repeats):
        for name in a.configs:
            flags = [f"--{k}={getattr(a, k)}" for k in keys]
            done = subprocess.run([sys.executable, __file__, "--_one", name, *flags], capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    results = [min(rs, key=lambda r: r["cpu_s_per_step"]) for rs in runs.values()]
    print(f"DPO, LoRA, {results[0]['device']}, hidden {a.hidden}, {a.layers} layers, {a.batch_size} pairs/step, "
          f"{a.steps} steps, best of {a.repeats}")
    gpu = results[0]["peak_gpu_mb"] is not None
    print(f"{'config':<14} {'s/step':>8} {'CPU s/step':>11} {'tokens/s':>10} {'tok/CPU s':>10} {'padding':>8} "
          f"{'peak RSS MB':>12}" + (f" {'peak GPU MB':>12}" if gpu else "") + f" {'last loss':>12}")
    for r in results:
        print(f"{r['config']:<14} {r['s_per_step']:>8.3f} {r['cpu_s_per_step']:>11.3f} {r['tokens_per_s']:>10.1f} "
              f"{r['tokens_per_cpu_s']:>10.1f} {r['padding_share']:>8.1%} {r['peak_rss_mb']:>12.1f}"
              + (f" {r['peak_gpu_mb']:>12.1f}" if gpu else "") + f" {r['last_loss']:>12.6f}")
    by = {r["config"]: r for r in results}
    base = by.get("concatenated")
    for name, r in by.items():
        if base is None or name == "concatenated":
            continue
        print(f"{name} / concatenated: CPU time per step {r['cpu_s_per_step'] / base['cpu_s_per_step']:.2f}x, "
              f"peak RSS {r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x, "
              + (f"peak GPU memory {r['peak_gpu_mb'] / base['peak_gpu_mb']:.2f}x, " if gpu else "") +
              f"last loss difference {abs(r['last_loss'] - base['last_loss']):.2e}")


if __name__ == "__main__":
    main()
