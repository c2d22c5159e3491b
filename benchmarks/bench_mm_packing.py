"""Multimodal SFT throughput: padded batches vs padding-free vs packing, on a small Qwen2-VL, in one run.

    python benchmarks/bench_mm_packing.py [--steps 20] [--rows 400] [--max_length 2048] [--hidden 128]

Each configuration runs in its own process through the real pieces (MultiModalEncoder -> prepare_mm_dataset ->
MultiModalCollator -> MultiModalTrainer with LoRA) on synthetic image chat rows: pictures of several sizes (so
different numbers of image tokens) and long-tailed reply lengths. Prints samples (rows) per second, real tokens
per second, the share of computed tokens that were padding, and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "padded": {"packing": False, "padding_free": False},
    "padding_free": {"packing": False, "padding_free": True},
    "packed": {"packing": True, "padding_free": False},
}


def synthetic_rows(n: int, image_dir: Path, seed: int = 0) -> list[dict]:
    import numpy as np
    from PIL import Image

    rng = random.Random(seed)
    sizes = [(56, 56), (112, 84), (168, 112), (224, 224)]
    for i, (w, h) in enumerate(sizes * 2):
        arr = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(image_dir / f"img{i}.png")
    words = "the picture shows a small scene with objects colors and light in it".split()
    rows = []
    for _ in range(n):
        a_len = min(400, max(3, int(rng.lognormvariate(3.2, 1.0))))
        rows.append({"messages": [{"role": "user", "content": "<image>Describe the picture."},
                                  {"role": "assistant", "content": " ".join(rng.choice(words) for _ in range(a_len))}],
                     "images": [str(image_dir / f"img{rng.randrange(8)}.png")]})
    return rows


def run_one(name: str, a: argparse.Namespace) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import TrainingArguments

    from swift.data.mm_dataset import MultiModalCollator, prepare_mm_dataset
    from swift.data.mm_encode import MultiModalEncoder
    from swift.models.loader import load_model_and_tokenizer
    from swift.models.tiny import make_tiny_model
    from swift.templates import get_template
    from swift.trainers.multimodal import MultiModalTrainer
    from swift.tuners import LoRAConfig, prepare_model

    torch.manual_seed(0)
    cfg = CONFIGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = make_tiny_model("qwen2_vl", tmp / "model", hidden_size=a.hidden, intermediate_size=a.hidden * 4)
        model, processor, _ = load_model_and_tokenizer(folder)
        template = get_template(processor, max_length=a.max_length, truncation_strategy="delete")
        encoder = MultiModalEncoder(template, processor, "qwen2_vl", max_pixels=224 * 224)
        (tmp / "img").mkdir()
        t0 = time.perf_counter()
        ds = prepare_mm_dataset(synthetic_rows(a.rows, tmp / "img"), encoder, packing=cfg["packing"])
        check_s = time.perf_counter() - t0
        model = prepare_model(model, tuner_type="lora", lora=LoRAConfig(r=8, alpha=32))
        inner = MultiModalCollator(processor.tokenizer.pad_token_id, padding_free=cfg["padding_free"])
        seen = {"rows": 0, "real": 0, "computed": 0}

        def collator(features):
            rows = [r for f in features for r in f] if isinstance(features[0], list) else features
            batch = inner(features)
            seen["rows"] += len(rows)
            seen["real"] += sum(len(r["input_ids"]) for r in rows)
            seen["computed"] += batch["input_ids"].numel()
            return batch

        batch = 1 if cfg["packing"] else a.batch_size
        args = TrainingArguments(
            output_dir=str(tmp / "out"), max_steps=a.steps, per_device_train_batch_size=batch, learning_rate=1e-4,
            logging_steps=a.steps, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
            remove_unused_columns=False, dataloader_num_workers=0, seed=0,
        )
        trainer = MultiModalTrainer(model=model, args=args, train_dataset=ds, data_collator=collator,
                                    processing_class=processor, encoder=encoder)
        t = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"config": name, "steps": a.steps, "seconds": round(seconds, 2), "rows": seen["rows"],
            "samples_per_s": round(seen["rows"] / seconds, 2), "tokens_per_s": round(seen["real"] / seconds, 1),
            "padding_share": round(1 - seen["real"] / max(seen["computed"], 1), 3),
            "check_pass_s": round(check_s, 2), "peak_rss_mb": round(rss_mb, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--max_length", type=int, default=2048)
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
        cmd = [sys.executable, __file__, "--_one", name] + [f"--{k}={getattr(a, k)}" for k in
                                                           ("steps", "rows", "max_length", "batch_size", "hidden")]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(out))
    print(f"{'config':<14} {'samples/s':>10} {'tokens/s':>10} {'rows':>6} {'padding':>8} {'peak RSS MB':>12}")
    for r in results:
        print(f"{r['config']:<14} {r['samples_per_s']:>10.2f} {r['tokens_per_s']:>10.1f} {r['rows']:>6} "
              f"{r['padding_share']:>8.1%} {r['peak_rss_mb']:>12.1f}")
    print(f"checking pass over {a.rows} rows (encode once, lengths): "
          + ", ".join(f"{r['config']} {r['check_pass_s']} s" for r in results))
    base = next((r for r in results if r["config"] == "padded"), None)
    if base:
        for r in results:
            if r is not base:
                print(f"{r['config']} / padded samples/s: {r['samples_per_s'] / base['samples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
