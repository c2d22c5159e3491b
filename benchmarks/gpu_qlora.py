"""QLoRA training memory and speed of a random-weight Qwen2.5-7B-shaped model on one GPU, through SwiftLab's API.

    bash benchmarks/gpu_qlora.sh          # or: python benchmarks/gpu_qlora.py [--seq_len 2048] [--steps 10]
    python benchmarks/gpu_qlora.py --tiny # the same code path on the CPU with a tiny model: checks the script only

Needs no network. The model (Qwen2.5-7B's config: hidden 3584, 28 layers, 152k vocabulary, untied head; about 7.6B
parameters) is written once as bf16 safetensors shards to --model_dir (about 15.2 GB; reused when complete), one
tensor at a time, so no full-precision copy of it is ever materialised. It is then loaded the way a user loads a
model for QLoRA:

    SwiftModel.from_pretrained(folder, config=SwiftConfig(lora=QLoRAConfig(r=16, target_modules="all-linear")),
                               torch_dtype="bf16", device_map="cuda:0")

which quantizes each weight to NF4 while loading (the GPU never holds the bf16 model). Then activation
checkpointing (non-reentrant, as `swift sft` turns on for 4-bit models), and N training steps on random token ids
(batch 1, bf16 autocast, the first 2 steps are warm-up). Prints and writes as JSON (--out, default
$OUT/gpu_qlora.json or ./gpu_qlora.json): peak GPU memory of the load and of the training steps (allocated and
reserved), tokens/s over the measured steps, the losses, and a verdict against the published figure for this
setup, "peak <= 7 GB" (unsloth-style: torch.cuda.max_memory_reserved in GiB).

Optimizer (--optim): paged_adamw_8bit by default, bitsandbytes' paged 8-bit AdamW, the one QLoRA recipes and
unsloth's notebooks use for their small-memory figures (unsloth: adamw_8bit; same states, paged only matters
when memory runs out); adamw_torch is the plain float32-state AdamW (about 0.25 GB more for r=16 adapters).
--loss chunked computes the output head and cross-entropy in chunks of tokens (recomputed in the backward) to
show what the full-vocabulary logits cost; the default (hf) is what a user gets from model(labels=...).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_GIB = 7.0
MARKER = "swiftlab_random_model.json"  # written last: its presence means the folder is complete
SHARD_BYTES = 5 * 10**9

SHAPES: dict[str, dict[str, Any]] = {
    # Qwen2.5-7B(-Instruct)'s config.json, less the tokenizer ids (ours come from the bundled tokenizer).
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, rope_theta=1e6, max_position_embeddings=32768,
               rms_norm_eps=1e-6, tie_word_embeddings=False),
    # Same architecture, small enough for a CPU smoke run (vocabulary: the bundled tokenizer's).
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=None, rope_theta=1e6, max_position_embeddings=2048,
                 rms_norm_eps=1e-6, tie_word_embeddings=False),
}


# ----- the model folder ---------------------------------------------------------------------------------------

def model_config(shape: str, layers: int | None) -> Any:
    import torch
    from transformers import AutoTokenizer, Qwen2Config

    from swift.models.tiny import DEMO_TOKENIZER_DIR

    fields = dict(SHAPES[shape])
    if layers:
        fields["num_hidden_layers"] = layers
    tok = AutoTokenizer.from_pretrained(str(DEMO_TOKENIZER_DIR))
    fields["vocab_size"] = fields["vocab_size"] or len(tok)
    config = Qwen2Config(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                         use_cache=False, **fields)
    config.dtype = torch.bfloat16
    config.architectures = ["Qwen2ForCausalLM"]
    return config


def tensor_specs(config: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every weight the folder must hold, from the model built on the meta device."""
    import torch
    from transformers import Qwen2ForCausalLM

    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    return [(name, tuple(t.shape)) for name, t in model.state_dict().items()]


def plan_shards(specs: list[tuple[str, tuple[int, ...]]]) -> list[list[tuple[str, tuple[int, ...]]]]:
    shards: list[list] = [[]]
    size = 0
    for name, shape in specs:
        nbytes = 2 * math.prod(shape)
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    return shards


def random_tensor(name: str, shape: tuple[int, ...], device: Any, gen: Any, std: float) -> Any:
    """bf16 like a freshly initialised Qwen2: normal(0, initializer_range) matrices, unit norms, zero biases."""
    import torch

    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=torch.bfloat16)
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=torch.bfloat16)
    return torch.empty(shape, dtype=torch.bfloat16, device=device).normal_(0.0, std, generator=gen).cpu()


def folder_signature(config: Any) -> dict[str, Any]:
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "vocab_size", "tie_word_embeddings")
    return {"arch": "Qwen2ForCausalLM", "dtype": "bfloat16", "seed": 0, **{k: getattr(config, k) for k in keys}}


def is_complete(folder: Path, signature: dict[str, Any]) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    info = json.loads(marker.read_text())
    if info.get("signature") != signature:
        return False
    return all((folder / f).is_file() and (folder / f).stat().st_size == n for f, n in info["files"].items())


def ensure_model_folder(folder: Path, config: Any, device: Any) -> tuple[Path, bool]:
    """Write the random bf16 model to `folder` unless a complete one with this shape is there. (folder, built)."""
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    from swift.models.tiny import DEMO_TOKENIZER_DIR, copy_tokenizer_files

    signature = folder_signature(config)
    if is_complete(folder, signature):
        return folder, False
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder} exists and is not a complete model written by this script for this shape "
                         f"(no matching {MARKER}); remove it or pass another --model_dir")
    specs = tensor_specs(config)
    total = 2 * sum(math.prod(s) for _, s in specs)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a previous run that stopped half-way
    partial.mkdir(parents=True)
    free = shutil.disk_usage(partial).free
    if free < total * 1.05:
        shutil.rmtree(partial, ignore_errors=True)
        raise SystemExit(f"writing the model needs {total / 1e9:.1f} GB in {partial.parent}, only {free / 1e9:.1f} GB "
                         "free; pass --model_dir on a larger disk")
    gen = torch.Generator(device=device).manual_seed(0)
    shards = plan_shards(specs)
    weight_map, files = {}, {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" if len(shards) > 1 else "model.safetensors"
        tensors = {name: random_tensor(name, shape, device, gen, config.initializer_range) for name, shape in shard}
        save_file(tensors, str(partial / fname), metadata={"format": "pt"})
        del tensors
        weight_map.update({name: fname for name, _ in shard})
        files[fname] = (partial / fname).stat().st_size
        print(f"  wrote {fname} ({files[fname] / 1e9:.2f} GB)", flush=True)
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (partial / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.save_pretrained(str(partial))
    GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                     pad_token_id=config.pad_token_id, do_sample=False).save_pretrained(str(partial))
    copy_tokenizer_files(DEMO_TOKENIZER_DIR, partial)
    (partial / MARKER).write_text(json.dumps({"signature": signature, "files": files}, indent=2))
    if folder.exists():
        folder.rmdir()  # empty, checked above
    os.replace(partial, folder)
    return folder, True


# ----- training -----------------------------------------------------------------------------------------------

def chunked_lm_loss(model: Any, input_ids: Any, chunk: int = 512) -> Any:
    """Mean next-token cross-entropy with the output head applied `chunk` tokens at a time, each chunk recomputed
    in the backward, so full-vocabulary float32 logits never exist for the whole sequence at once."""
    import torch
    from torch.utils.checkpoint import checkpoint

    base = model.unwrap().get_base_model()
    hidden = base.model(input_ids=input_ids, use_cache=False).last_hidden_state[:, :-1]
    labels = input_ids[:, 1:]
    head = base.get_output_embeddings()

    def piece(h: Any, y: Any) -> Any:
        logits = head(h).float()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                 reduction="sum")

    total = sum(checkpoint(piece, hidden[:, s:s + chunk], labels[:, s:s + chunk], use_reentrant=False)
                for s in range(0, hidden.shape[1], chunk))
    return total / labels.numel()


def make_optimizer(name: str, params: list) -> Any:
    import torch

    if name == "adamw_torch":
        return torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    import bitsandbytes as bnb

    return bnb.optim.PagedAdamW8bit(params, lr=2e-4, weight_decay=0.0)


def gib(n: int) -> float:
    return round(n / 2**30, 3)


def run(a: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    import torch

    from swift import QLoRAConfig, SwiftConfig, SwiftModel

    cuda = torch.cuda.is_available() and not a.tiny
    device = torch.device("cuda:0" if cuda else "cpu")
    bf16 = a.dtype == "bf16"
    compute = "bfloat16" if bf16 else "float32"
    lora = QLoRAConfig(r=a.lora_rank, alpha=a.lora_rank, dropout=a.lora_dropout, target_modules="all-linear",
                       bits=4, quant_type="nf4", double_quant=True, compute_dtype=compute)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    model = SwiftModel.from_pretrained(str(model_dir), config=SwiftConfig(lora=lora),
                                       torch_dtype=a.dtype,
                                       device_map="cuda:0" if cuda else "cpu")
    load_s = time.perf_counter() - t
    res: dict[str, Any] = {"load_s": round(load_s, 1)}
    if cuda:
        torch.cuda.synchronize()
        res.update(load_peak_allocated_gib=gib(torch.cuda.max_memory_allocated()),
                   load_peak_reserved_gib=gib(torch.cuda.max_memory_reserved()),
                   after_load_allocated_gib=gib(torch.cuda.memory_allocated()))
    from swift.tuners import count_parameters

    trainable, total = count_parameters(model)
    res.update(trainable_params=trainable, total_params=total)
    print(f"loaded in {load_s:.1f} s: {type(model.unwrap()).__name__}, trainable {trainable / 1e6:.2f}M / "
          f"{total / 1e6:,.1f}M parameters" + (f", peak {res['load_peak_allocated_gib']:.2f} GiB allocated, "
                                   f"{res['load_peak_reserved_gib']:.2f} GiB reserved" if cuda else ""), flush=True)

    if a.checkpointing:
        # What `swift sft` does for 4-bit models (and transformers' Trainer with gradient_checkpointing=True).
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    res["trainable_dtypes"] = sorted({str(p.dtype).replace("torch.", "") for p in params})
    opt = make_optimizer(a.optim, params)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(1)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    losses, times = [], []
    for step in range(a.steps):
        ids = torch.randint(0, vocab, (1, a.seq_len), generator=gen).to(device)
        t = time.perf_counter()
        # As transformers' Trainer with bf16=True (what `swift sft` sets on a GPU). It is also needed: the
        # float32 norms of the quantized model would meet the bf16 output head without it.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = chunked_lm_loss(model, ids) if a.loss == "chunked" else model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        losses.append(round(loss.item(), 4))
        print(f"step {step + 1}/{a.steps}: loss {losses[-1]:.4f}, {times[-1]:.2f} s"
              f"{' (warm-up)' if step < a.warmup else ''}", flush=True)
    measured = times[a.warmup:] or times
    res.update(losses=losses, step_s=[round(x, 3) for x in times],
               tokens_per_s=round(len(measured) * a.seq_len / sum(measured), 1))
    if cuda:
        res.update(train_peak_allocated_gib=gib(torch.cuda.max_memory_allocated()),
                   train_peak_reserved_gib=gib(torch.cuda.max_memory_reserved()))
    else:
        import resource

        res["cpu_peak_rss_gib"] = gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return res


# ----- main ---------------------------------------------------------------------------------------------------

def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="a tiny model on the CPU: checks the script, not a figure "
                   "(implies --shape tiny, --seq_len 128, --steps 3 unless given)")
    p.add_argument("--shape", choices=sorted(SHAPES), default=None, help="model shape (default 7b; tiny with --tiny)")
    p.add_argument("--layers", type=int, default=None, help="override the layer count (dry runs of the 7b path)")
    p.add_argument("--seq_len", type=int, default=None, help="tokens per step, batch 1 (default 2048; tiny 128)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 10; tiny 3)")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of tokens/s")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default=None,
                   help="weights and 4-bit compute dtype (default bf16; --tiny: fp32, bf16 matmuls are slow on CPU)")
    p.add_argument("--lora_rank", type=int, default=16)
    p.add_argument("--lora_dropout", type=float, default=0.05, help="SwiftLab's default; unsloth recipes use 0")
    p.add_argument("--optim", choices=("adamw_torch", "paged_adamw_8bit"), default="paged_adamw_8bit")
    p.add_argument("--loss", choices=("hf", "chunked"), default="hf",
                   help="hf: model(labels=...), what users get; chunked: output head + loss in chunks of 512 tokens")
    p.add_argument("--no_checkpointing", dest="checkpointing", action="store_false",
                   help="train without activation checkpointing")
    p.add_argument("--model_dir", default=None, help="where the random model is written once and reused "
                   "(default /tmp/swiftlab-bench/qwen2.5-7b-random[-<n>l]; --tiny: a temporary folder)")
    p.add_argument("--out", default=None, help="JSON result file (default $OUT/gpu_qlora.json or ./gpu_qlora.json)")
    a = p.parse_args(argv)
    a.shape = a.shape or ("tiny" if a.tiny else "7b")
    a.seq_len = a.seq_len or (128 if a.tiny else 2048)
    a.steps = a.steps or (3 if a.tiny else 10)
    a.dtype = a.dtype or ("fp32" if a.tiny else "bf16")
    a.warmup = min(a.warmup, a.steps - 1)
    if a.out is None:
        a.out = str(Path(os.environ.get("OUT") or ".") / "gpu_qlora.json")
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if not a.tiny and not torch.cuda.is_available():
        print("gpu_qlora.py needs a CUDA GPU (--tiny runs a tiny model on the CPU)", file=sys.stderr)
        raise SystemExit(2)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        print("gpu_qlora.py needs bitsandbytes for 4-bit QLoRA: pip install 'swiftlab[quant]'", file=sys.stderr)
        raise SystemExit(2) from None
    build_device = torch.device("cuda:0" if torch.cuda.is_available() and not a.tiny else "cpu")
    config = model_config(a.shape, a.layers)
    with tempfile.TemporaryDirectory(prefix="swift-gpu-qlora-") as tmp:
        if a.model_dir:
            folder = Path(a.model_dir)
        elif a.tiny:
            folder = Path(tmp) / "model"
        else:
            suffix = f"-{a.layers}l" if a.layers else ""
            folder = Path(tempfile.gettempdir()) / "swiftlab-bench" / f"qwen2.5-{a.shape}-random{suffix}"
        t = time.perf_counter()
        folder, built = ensure_model_folder(folder.resolve(), config, build_device)
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        print(f"{'built' if built else 'reused'} the random-weight {a.shape} model "
              f"({config.num_hidden_layers} layers, {size / 1e9:.2f} GB bf16) at {folder} "
              f"in {time.perf_counter() - t:.1f} s", flush=True)
        res = run(a, folder)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not a.tiny else "cpu"
    peak = res.get("train_peak_reserved_gib")
    peak = max(peak, res["load_peak_reserved_gib"]) if peak is not None else None
    verdict = "n/a (CPU run)" if peak is None else ("PASS" if peak <= TARGET_GIB else "ABOVE")
    out = {"device": gpu, "shape": a.shape, "layers": config.num_hidden_layers, "seq_len": a.seq_len,
           "batch_size": 1, "dtype": a.dtype, "steps": a.steps, "warmup": a.warmup, "lora_rank": a.lora_rank,
           "optim": a.optim, "loss": a.loss, "checkpointing": a.checkpointing, "folder_gb": round(size / 1e9, 2),
           **res, "target_gib": TARGET_GIB, "peak_gib": peak, "verdict": verdict,
           "versions": versions()}
    if peak is not None:
        print(f"peak GPU memory: load {res['load_peak_allocated_gib']:.2f} GiB allocated / "
              f"{res['load_peak_reserved_gib']:.2f} GiB reserved; training {res['train_peak_allocated_gib']:.2f} "
              f"GiB allocated / {res['train_peak_reserved_gib']:.2f} GiB reserved", flush=True)
    print(f"tokens/s over {max(a.steps - a.warmup, 1)} measured steps: {res['tokens_per_s']:,.1f}; "
          f"losses {res['losses']}", flush=True)
    print(f"verdict (peak reserved <= {TARGET_GIB} GiB): {verdict}"
          + (f" ({peak:.2f} GiB, {a.optim}, loss {a.loss})" if peak is not None else ""), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}", flush=True)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


if __name__ == "__main__":
    main()
