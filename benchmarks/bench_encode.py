"""Encoding throughput: rows/s of `swift.data.encode_rows`, cold and cached, with the demo tokenizer.

    python benchmarks/bench_encode.py [--rows 50000] [--num_proc 1 2] [--batch_size 1000]

Prints, for synthetic short chat rows:
- template only: `Template.batch_encode` alone (the floor for everything else),
- cold: `encode_rows` with an empty cache, once per --num_proc value (a fresh template each time),
- cached: `encode_rows` again on the same rows (loads the saved arrow data).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = ["What is {a} plus {b}?", "Translate '{w}' into French.", "Give me a synonym for '{w}'.",
             "{a} 乘以 {b} 等于多少?", "Spell the word '{w}' backwards.", "Is {a} larger than {b}?"]
ANSWERS = ["It is {c}.", "Here it is: {w}.", "{w}, I think.", "答案是 {c}。", "Sure: {w}", "Yes, by {c}."]
WORDS = ["apple", "river", "quiet", "bright", "garden", "window", "silver", "travel", "number", "planet"]


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """n short chat rows (one user turn, one reply), varied so they are not all the same length."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b, w = rng.randint(1, 999), rng.randint(1, 999), rng.choice(WORDS)
        k = rng.randrange(len(QUESTIONS))
        rows.append({"messages": [{"role": "user", "content": QUESTIONS[k].format(a=a, b=b, w=w)},
                                  {"role": "assistant", "content": ANSWERS[k].format(c=a + b, w=w[::-1])}]})
    return rows


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--num_proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch_size", type=int, default=1000)
    parser.add_argument("--max_length", type=int, default=512)
    args = parser.parse_args()

    import datasets  # noqa: F401  (imported up front: its import time is not encoding time)
    from transformers import AutoTokenizer

    from swift.data import encode_rows
    from swift.templates import get_template

    tokenizer = AutoTokenizer.from_pretrained(str(ROOT / "swift" / "assets" / "demo_model"))
    rows = synthetic_rows(args.rows)

    def template():
        return get_template(tokenizer, max_length=args.max_length)

    n = len(rows)
    print(f"{n} synthetic chat rows, demo tokenizer, batch_size {args.batch_size}, {os.cpu_count()} CPUs")
    t = template()
    messages = [r["messages"] for r in rows]
    _, secs = timed(lambda: [t.batch_encode(messages[s:s + args.batch_size])
                             for s in range(0, n, args.batch_size)])
    print(f"  template only (1 process)   {n / secs:>10,.0f} rows/s  ({secs:.2f} s)")
    cache = Path(tempfile.mkdtemp(prefix="bench_encode_"))
    try:
        for num_proc in args.num_proc:
            folder = cache / f"np{num_proc}"
            ds, secs = timed(partial(encode_rows, rows, template(), num_proc=num_proc, cache_dir=folder,
                                     batch_size=args.batch_size))
            tokens = sum(ds["length"])
            print(f"  cold, num_proc={num_proc:<2}          {n / secs:>10,.0f} rows/s  ({secs:.2f} s, "
                  f"{tokens / secs:,.0f} tokens/s)")
        _, secs = timed(partial(encode_rows, rows, template(), cache_dir=folder, batch_size=args.batch_size))
        print(f"  cached                      {n / secs:>10,.0f} rows/s  ({secs:.2f} s)")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
