"""Serving throughput of a random-weight 1B-class model on a GPU: PyTorch engine (and vLLM when installed).

    bash benchmarks/gpu_serve.sh          # or: python benchmarks/gpu_serve.py [--requests 64] [--max_new_tokens 128]

Needs no network: the model (Qwen2 architecture, about 1.2B parameters with SwiftLab's small demo vocabulary,
hidden 2048, 16 layers) is built from its config with random weights and saved to a temporary folder. Prints output
tokens/s at concurrency 1 and 16 for the PyTorch engine (continuous batching), and for vLLM if it imports.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time


def build_model(folder: str) -> str:
    from swift.models.tiny import make_tiny_model

    return make_tiny_model("qwen2", folder, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                           num_attention_heads=16, num_key_value_heads=8, max_position_embeddings=4096,
                           tie_word_embeddings=False)


def prompts(n: int) -> list[list[dict]]:
    words = "tell me about the history of science and the people who made it".split()
    return [[{"role": "user", "content": " ".join(words[: 4 + i % 10]) + f" ({i})"}] for i in range(n)]


def drive(engine, reqs: list, config, concurrency: int) -> tuple[int, float]:
    """Send `reqs` from `concurrency` threads; (output tokens, seconds)."""
    from swift.infer import InferRequest

    lock, done, it = threading.Lock(), [], iter(reqs)

    def worker() -> None:
        while True:
            with lock:
                msgs = next(it, None)
            if msgs is None:
                return
            resp = engine.infer([InferRequest(messages=msgs)], config)[0]
            with lock:
                done.append(resp.completion_tokens)

    t = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(done), time.perf_counter() - t


def run_pt(model_dir: str, a: argparse.Namespace) -> None:
    import torch

    from swift.infer import PtEngine, RequestConfig
    from swift.infer.loading import load_for_inference
    from swift.templates import get_template

    model, tokenizer = load_for_inference(model_dir, torch_dtype=None if a.tiny else torch.bfloat16)
    engine = PtEngine(model, tokenizer, get_template(tokenizer), max_batch_size=32)
    engine.stop_token_ids = []  # random weights: ignore eos so every reply has max_new_tokens tokens
    config = RequestConfig(max_new_tokens=a.max_new_tokens)
    for concurrency in (1, 16):
        reqs = prompts(a.requests if concurrency > 1 else max(4, a.requests // 8))
        tokens, seconds = drive(engine, reqs, config, concurrency)
        mem = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if torch.cuda.is_available() else ""
        print(f"pt concurrency {concurrency:>2}: {len(reqs)} requests, {tokens / seconds:,.0f} output tok/s{mem}",
              flush=True)
    engine.close()


def run_vllm(model_dir: str, a: argparse.Namespace) -> None:
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        print("vllm is not installed here: skipped", flush=True)
        return
    llm = LLM(model=model_dir, dtype="bfloat16", gpu_memory_utilization=0.5, enforce_eager=False)
    params = SamplingParams(max_tokens=a.max_new_tokens, temperature=0.0, ignore_eos=True)
    texts = [m[0]["content"] for m in prompts(a.requests)]
    t = time.perf_counter()
    outs = llm.generate(texts, params)
    seconds = time.perf_counter() - t
    n = sum(len(o.outputs[0].token_ids) for o in outs)
    print(f"vllm offline batch of {len(texts)}: {n / seconds:,.0f} output tok/s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--tiny", action="store_true", help="a tiny model on the CPU: checks the script, not a figure")
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if not a.tiny and not torch.cuda.is_available():
        raise SystemExit("gpu_serve.py needs a CUDA GPU (--tiny runs a tiny model on the CPU)")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        if a.tiny:
            from swift.models.tiny import make_tiny_model

            model_dir = make_tiny_model("qwen2", os.path.join(tmp, "model"))
        else:
            model_dir = build_model(os.path.join(tmp, "model"))
        size = "tiny" if a.tiny else "1B-class"
        print(f"built the random-weight {size} model in {time.perf_counter() - t:.1f} s", flush=True)
        run_pt(model_dir, a)
        if not a.tiny:
            run_vllm(model_dir, a)


if __name__ == "__main__":
    main()
