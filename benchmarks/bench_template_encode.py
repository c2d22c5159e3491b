"""Rows/s of `Template.batch_encode` on the demo tokenizer, per tokenization mode, against `apply_chat_template`.

    python benchmarks/bench_template_encode.py [--rows 20000] [--batch 1000] [--procs 1] [--modes words,chunked]

Rows are system+user+assistant chats of ~30-60 tokens (random English/Chinese words). Each mode runs in its
own worker process(es) after a warm-up, so every figure is steady-state encoding only. `--procs 2` runs two
workers that start together and encode half of the rows each (as `datasets.map(num_proc=2)` would); rows/s is
all rows over the slower worker's time. `apply_chat_template` (jinja render + tokenizer call per row) is the
baseline.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEMO = ROOT / "swift" / "assets" / "demo_model"
WORDS = ("the quick brown fox jumps over a lazy dog hello world model train data what is how can you please "
         "explain 你好 世界 code python list sum one two three").split()


def make_rows(n: int, seed: int = 0) -> list[list[dict]]:
    """`n` system+user+assistant conversations."""
    rng = random.Random(seed)

    def sent(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + rng.choice([".", "?", "!"])

    return [[{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": sent(rng.randint(4, 12))},
             {"role": "assistant", "content": sent(rng.randint(6, 20))}] for _ in range(n)]


def _worker(mode: str, rows: list, batch: int, barrier, results) -> None:
    from transformers import AutoTokenizer

    from swift.templates import get_template

    tok = AutoTokenizer.from_pretrained(DEMO)
    if mode == "apply_chat_template":
        def run(chunk):
            return [tok.apply_chat_template(m, tokenize=True)["input_ids"] for m in chunk]
    else:
        template = get_template(tok)
        template._tok.set_mode(mode)

        def run(chunk):
            return [out["input_ids"] for out in template.batch_encode(chunk)]
    run(make_rows(200, seed=1))  # warm-up: compile the shapes, fill caches
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    tokens = 0
    for i in range(0, len(rows), batch):
        tokens += sum(map(len, run(rows[i:i + batch])))
    results.put((time.perf_counter() - t0, time.process_time() - c0, tokens))


def measure(mode: str, rows: list, batch: int, procs: int) -> tuple[float, float, float]:
    """(rows/s, tokens/s, CPU microseconds per row) of `mode` over `rows` with `procs` worker processes."""
    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(mode, rows[k::procs], batch, barrier, results))
               for k in range(procs)]
    for w in workers:
        w.start()
    outs = [results.get() for _ in workers]
    for w in workers:
        w.join()
    elapsed = max(t for t, _, _ in outs)
    cpu = sum(c for _, c, _ in outs)
    return len(rows) / elapsed, sum(n for _, _, n in outs) / elapsed, 1e6 * cpu / len(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--modes", default="words,chunked,full", help="encoder modes to compare (words, chunked, full, "
                                                                   "hf)")
    ap.add_argument("--baseline_rows", type=int, default=2000, help="rows for the apply_chat_template baseline")
    args = ap.parse_args()
    rows = make_rows(args.rows)
    print(f"{args.rows} rows, batch {args.batch}, {args.procs} process(es), {os.cpu_count()} CPUs")
    print("  (CPU us/row: process CPU time, all threads; rows/s on N free cores ~ N * 1e6 / that)")
    for mode in args.modes.split(","):
        rps, tps, cpu = measure(mode, rows, args.batch, args.procs)
        print(f"  batch_encode mode={mode:8s} {rps:>9,.0f} rows/s  {tps:>11,.0f} tokens/s  {cpu:6.1f} CPU us/row")
    rps, tps, cpu = measure("apply_chat_template", rows[:args.baseline_rows], args.batch, args.procs)
    print(f"  apply_chat_template     {rps:>9,.0f} rows/s  {tps:>11,.0f} tokens/s  {cpu:6.1f} CPU us/row"
          "  (per-row jinja + tokenizer)")


if __name__ == "__main__":
    main()
