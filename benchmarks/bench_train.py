"""SFT training throughput on a tiny model: padded batches vs packing vs padding-free, in one run.

    python benchmarks/bench_train.py [--steps 40] [--rows 2000] [--max_length 1024] [--hidden 128]

Each configuration runs in its own process (so peak RSS is its own) through the real pipeline pieces
(template -> encode -> pack/collate -> SwiftTrainer with LoRA), on synthetic chat rows whose lengths follow a
long-tailed distribution like real instruction data. Prints real (non-pad) tokens/s (counted from the rows each batch holds), the share of
computed tokens that were padding, seconds per step and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

CONFIGS = {
    "padded": {"packing": False, "padding_free": False},
    "padding_free": {"packing": False, "padding_free": True},
    "packed": {"packing": True, "padding_free": False},
}


def synthetic_rows(n: int, seed: int = 0, max_words: int = 600) -> list[dict]:
    import random

    rng = random.Random(seed)
    words = "the model learns to answer questions about data training and language with care".split()
    rows = []
    for _ in range(n):
        q_len = max(3, int(rng.lognormvariate(2.5, 0.8)))
        a_len = min(max_words, max(3, int(rng.lognormvariate(3.6, 1.0))))
        rows.append({"messages": [
            {"role": "user", "content": " ".join(rng.choice(words) for _ in range(q_len))},
            {"role": "assistant", "content": " ".join(rng.choice(words) for _ in range(a_len))},
        ]})
    return rows


def run_one(name: str, a: argparse.Namespace) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, TrainingArguments

    from swift.data import DataCollator, encode_rows, pack_dataset
    from swift.templates import get_template
    from swift.trainers import SwiftTrainer
    from swift.tuners import LoRAConfig, prepare_model

    torch.manual_seed(0)
    cfg = CONFIGS[name]
    tok = AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(__file__), "..", "swift", "assets", "demo_model"))
    template = get_template(tok, max_length=a.max_length, truncation_strategy="right")
    with tempfile.TemporaryDirectory() as cache:
        ds = encode_rows(synthetic_rows(a.rows), template, cache_dir=cache)
        if cfg["packing"]:
            ds = pack_dataset(ds, a.max_length)
    model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tok), hidden_size=a.hidden, intermediate_size=a.hidden * 4, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
    ))
    model = prepare_model(model, tuner_type="lora", lora=LoRAConfig(r=8, alpha=32))
    batch = 1 if cfg["packing"] else a.batch_size
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, max_steps=a.steps, per_device_train_batch_size=batch, learning_rate=1e-4,
            logging_steps=a.steps, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
            remove_unused_columns=False, dataloader_num_workers=0, seed=0,
        )
        inner = DataCollator(tok.pad_token_id, padding_free=cfg["packing"] or cfg["padding_free"])
        seen = {"real": 0, "computed": 0}

        def collator(features):
            # Real tokens are the rows' own tokens; computed ones include the padding the model also runs on.
            batch = inner(features)
            seen["real"] += sum(len(f["input_ids"]) for f in features)
            seen["computed"] += batch["input_ids"].numel()
            return batch

        trainer = SwiftTrainer(model=model, args=args, train_dataset=ds, data_collator=collator,
                               processing_class=tok)
        t = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t
    tokens = seen["real"]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"config": name, "steps": a.steps, "seconds": round(seconds, 2), "tokens": int(tokens),
            "tokens_per_s": round(tokens / seconds, 1),
            "padding_share": round(1 - tokens / max(seen["computed"], 1), 3), "peak_rss_mb": round(rss_mb, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--max_length", type=int, default=1024)
    p.add_argument("--batch_size", type=int, default=8, help="rows per step when not packing")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    p.add_argument("--_one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._one:
        print(json.dumps(run_one(a._one, a)))
        return
    results = []
    for name in a.configs:
        cmd = [sys.executable, __file__, "--_one", name] + [f"--{k}={v}" for k, v in
                                                           (("steps", a.steps), ("rows", a.rows),
                                                            ("max_length", a.max_length),
                                                            ("batch_size", a.batch_size), ("hidden", a.hidden))]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(out))
    print(f"{'config':<14} {'tokens/s':>10} {'s/step':>8} {'tokens':>9} {'padding':>8} {'peak RSS MB':>12}")
    for r in results:
        print(f"{r['config']:<14} {r['tokens_per_s']:>10.1f} {r['seconds'] / r['steps']:>8.3f} {r['tokens']:>9} "
              f"{r['padding_share']:>8.1%} {r['peak_rss_mb']:>12.1f}")
    base = next((r for r in results if r["config"] == "padded"), None)
    if base:
        for r in results:
            if r is not base:
                print(f"{r['config']} / padded tokens/s: {r['tokens_per_s'] / base['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
