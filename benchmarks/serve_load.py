"""Bounded load run of `swift deploy` on loopback: TTFT, latency and output tokens/s at several concurrencies.

Starts `swift deploy` in a subprocess (a tiny random-weight model unless --model is given), then for
each concurrency sends `--requests` streamed chat requests with a fixed `max_tokens` (a random-weight model
does not emit its end token, so every reply has that length) and reports completed/failed requests,
p50/p99 time to first token and latency, and output tokens/s.

    python benchmarks/serve_load.py                      # tiny model, concurrency 1, 4, 16
    python benchmarks/serve_load.py --model <dir> --max_tokens 128 --requests 64
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def run_level(url: str, concurrency: int, n_requests: int, max_tokens: int, timeout: float) -> dict[str, Any]:
    """Send `n_requests` streamed requests, `concurrency` at a time; returns the figures of this level."""
    import openai

    client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0, timeout=timeout)
    todo = list(range(n_requests))
    lock = threading.Lock()
    ttfts: list[float] = []
    latencies: list[float] = []
    tokens = [0]
    failed = [0]

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            start = time.perf_counter()
            first = None
            try:
                events = client.chat.completions.create(
                    model="bench", messages=[{"role": "user", "content": f"Request {i}: tell me a story."}],
                    max_tokens=max_tokens, temperature=0, stream=True, stream_options={"include_usage": True})
                used = 0
                for chunk in events:
                    if first is None and chunk.choices and chunk.choices[0].delta.content:
                        first = time.perf_counter() - start
                    if chunk.usage is not None:
                        used = chunk.usage.completion_tokens
                with lock:
                    latencies.append(time.perf_counter() - start)
                    ttfts.append(first if first is not None else latencies[-1])
                    tokens[0] += used
            except Exception:  # counted, not raised: a load run reports failures
                with lock:
                    failed[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"concurrency": concurrency, "completed": len(latencies), "failed": failed[0],
            "ttft_p50_s": _pct(ttfts, 0.5), "ttft_p99_s": _pct(ttfts, 0.99),
            "latency_p50_s": _pct(latencies, 0.5), "latency_p99_s": _pct(latencies, 0.99),
            "output_tokens": tokens[0], "wall_s": wall, "output_tokens_per_s": tokens[0] / wall if wall else 0.0,
            "mean_tokens_per_reply": tokens[0] / len(latencies) if latencies else 0.0}


@contextlib.contextmanager
def _deployed(model: str, top: int, max_batch_size: int):
    """`swift deploy` in a subprocess (as users run it: the load client does not share its interpreter)."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "swift.cli.main", "deploy", "--model", model, "--served_model_name", "bench",
           "--port", str(port), "--max_concurrency", str(top), "--max_queue", str(top),
           "--max_batch_size", str(max_batch_size)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"swift deploy did not start: {' '.join(cmd)}") from None
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model folder (default: a tiny random-weight Qwen2)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    p.add_argument("--max_tokens", type=int, default=64)
    p.add_argument("--max_batch_size", type=int, default=16)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    a = p.parse_args()

    model = a.model
    if model is None:
        from swift.models.tiny import make_tiny_model

        model = make_tiny_model("qwen2", tempfile.mkdtemp(prefix="serve-load-"))
    top = max(a.concurrency)
    print(f"engine: pt (swift deploy in its own process), model: {model}, max_tokens {a.max_tokens}, "
          f"{a.requests} requests per level", flush=True)
    rows = []
    with _deployed(model, top, a.max_batch_size) as url:
        server = type("Server", (), {"url": url})
        run_level(server.url, 1, 2, a.max_tokens, a.timeout)  # warm-up
        for c in a.concurrency:
            row = run_level(server.url, c, a.requests, a.max_tokens, a.timeout)
            rows.append(row)
            print(f"concurrency {c:>3}: completed {row['completed']:>4} failed {row['failed']:>3} | TTFT p50 "
                  f"{row['ttft_p50_s'] * 1000:8.1f} ms p99 {row['ttft_p99_s'] * 1000:8.1f} ms | latency p50 "
                  f"{row['latency_p50_s']:6.2f} s p99 {row['latency_p99_s']:6.2f} s | "
                  f"{row['output_tokens_per_s']:8.1f} output tokens/s ({row['mean_tokens_per_reply']:.0f} per reply)", flush=True)
    if rows and rows[0]["output_tokens_per_s"]:
        base = rows[0]["output_tokens_per_s"]
        print("speed-up over the first level: " + ", ".join(
            f"c={r['concurrency']}: {r['output_tokens_per_s'] / base:.2f}x" for r in rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
