"""What this machine can train, for the defaults of the wizard and the web UI.

The rules are deliberately simple and stated in one place (docs/en/quickstart.md repeats them): the memory a
method needs is estimated from the parameter count, and the first method that fits with room for activations is
proposed. Nothing here imports torch: the GPU is read with `nvidia-smi`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# GiB needed per billion parameters, weights + gradients + optimizer state + a margin for buffers.
# LoRA: 16-bit weights (2 bytes/param) frozen, adapters tiny. QLoRA: 4-bit NF4 (~0.55 byte/param with the scales)
# plus 16-bit layers kept unquantized. Full: 16-bit weights + fp32 master + Adam moments (~16 bytes/param).
GIB_PER_B = {"lora": 2.2, "qlora": 0.75, "full": 16.0}
FIXED_GIB = {"lora": 1.5, "qlora": 2.0, "full": 2.0}  # CUDA context, activations of batch 1 with checkpointing


@dataclass
class Hardware:
    """The devices found: `device` is "cuda" or "cpu"; memory in GiB."""

    device: str
    gpu_name: str | None = None
    gpu_mem_gib: float | None = None
    n_gpus: int = 0
    cpu_count: int = 1
    ram_gib: float | None = None

    def describe(self, lang: str = "en") -> str:
        """One line for people, in `lang` (en or zh)."""
        if self.device == "cuda":
            n = f"{self.n_gpus} x " if self.n_gpus > 1 else ""
            return f"{n}{self.gpu_name} ({self.gpu_mem_gib:.0f} GiB)"
        if lang == "zh":
            ram = f",{self.ram_gib:.0f} GiB 内存" if self.ram_gib else ""
            return f"仅 CPU({self.cpu_count} 核{ram})"
        ram = f", {self.ram_gib:.0f} GiB RAM" if self.ram_gib else ""
        return f"CPU only ({self.cpu_count} cores{ram})"


@dataclass
class Recommendation:
    """Defaults for a fine-tune: `tuner` is lora, qlora or full; warnings (key, values) say what will not fit or
    be slow; `warning_text` puts them in words."""

    tuner: str
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    torch_dtype: str
    need_gib: float | None = None
    warnings: list[tuple[str, dict]] = field(default_factory=list)
    learning_rate: float = 1e-4
    num_train_epochs: float = 3.0


def detect_hardware() -> Hardware:
    """Read the GPUs with nvidia-smi (CUDA_VISIBLE_DEVICES respected by it), else report the CPU."""
    cpus = os.cpu_count() or 1
    ram = _ram_gib()
    smi = shutil.which("nvidia-smi")
    if smi and os.environ.get("CUDA_VISIBLE_DEVICES", None) != "":
        try:
            out = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        gpus = [line.rsplit(",", 1) for line in out.strip().splitlines() if "," in line]
        if gpus:
            mem = min(float(m) for _, m in gpus) / 1024
            return Hardware("cuda", gpus[0][0].strip(), round(mem, 1), len(gpus), cpus, ram)
    return Hardware("cpu", cpu_count=cpus, ram_gib=ram)


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


_SIZE_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


def estimate_params_b(model: str) -> float | None:
    """Billions of parameters of a model: from a local folder's config.json, else from a size in the name
    ("Qwen2.5-7B-Instruct" -> 7, "qwen3-0.6b" -> 0.6). None when unknown."""
    path = Path(model).expanduser()
    if (path / "config.json").is_file():
        try:
            cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = {}
        n = _params_from_config(cfg.get("text_config") or cfg)
        if n:
            return n
    if model in ("swift-demo", "demo"):
        return 0.002
    sizes = list(_SIZE_RE.finditer(Path(model).name if path.exists() else model))
    m = sizes[-1] if sizes else None  # the last size in the name ("...-7B-Instruct")
    if m is None:
        from swift.models.registry import get_model_spec

        spec = get_model_spec(model)
        if spec is not None and spec.hf_id:
            return estimate_params_b(spec.hf_id)
        return None
    value = float(m.group(1))
    return value / 1000 if m.group(2).lower() == "m" else value


def _params_from_config(cfg: dict) -> float | None:
    h, layers, vocab = cfg.get("hidden_size"), cfg.get("num_hidden_layers"), cfg.get("vocab_size")
    if not (h and layers and vocab):
        return None
    inter = cfg.get("intermediate_size") or 4 * h
    heads = cfg.get("num_attention_heads") or 1
    kv = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or h // heads
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2
    mlp = 3 * h * inter
    embed = vocab * h * (1 if cfg.get("tie_word_embeddings") else 2)
    return (layers * (attn + mlp) + embed) / 1e9


def need_gib(tuner: str, params_b: float) -> float:
    """Estimated GPU memory (GiB) to fine-tune a model of `params_b` billion parameters with `tuner`."""
    return round(GIB_PER_B[tuner] * params_b + FIXED_GIB[tuner], 1)


def recommend(hw: Hardware, params_b: float | None, tuner: str | None = None) -> Recommendation:
    """Defaults for fine-tuning a model of `params_b` billion parameters on `hw`; `tuner` forces the method (and
    a warning is added when it will not fit)."""
    warnings: list[tuple[str, dict]] = []
    if hw.device == "cpu":
        chosen = tuner or "lora"
        if params_b is not None and params_b > 0.6:
            warnings.append(("cpu_slow", {"params": f"{params_b:g}"}))
        if chosen == "qlora":
            warnings.append(("cpu_qlora", {}))
        tiny = (params_b or 1) < 0.1
        return Recommendation(chosen, 8 if tiny else 1, 1 if tiny else 8, "float32", None, warnings,
                              *_schedule(chosen, params_b))
    mem = hw.gpu_mem_gib or 0.0
    p = params_b if params_b is not None else 7.0
    if tuner is None:
        tuner = next((t for t in ("lora", "qlora") if need_gib(t, p) + 2 <= mem), "qlora")
    need = need_gib(tuner, p)
    if need > mem:
        warnings.append(("no_fit", {"tuner": tuner, "need": f"{need:g}", "mem": f"{mem:g}"}))
    room = mem - need
    batch = 1 if room < 4 else 2 if room < 10 else 4 if room < 24 else 8
    return Recommendation(tuner, batch, max(1, 16 // batch), "bfloat16", need, warnings, *_schedule(tuner, p))


def _schedule(tuner: str, params_b: float | None) -> tuple[float, float]:
    """(learning rate, epochs): the usual 1e-4 for LoRA/QLoRA and 1e-5 for full tuning, over 3 epochs; a tiny
    model (the demo) learns its self-cognition data in under a minute with 5e-3 over 10 epochs (the README's run)."""
    if params_b is not None and params_b < 0.1:
        return 5e-3, 10.0
    return (1e-5 if tuner == "full" else 1e-4), 3.0


WARNINGS = {
    "cpu_slow": ("No GPU found: training a {params}B-parameter model on the CPU takes many hours. Try swift-demo or "
                 "qwen2.5-0.5b-instruct first.",
                 "没有检测到 GPU:在 CPU 上训练 {params}B 参数的模型需要很多小时。建议先用 swift-demo 或 "
                 "qwen2.5-0.5b-instruct 试一试。"),
    "cpu_qlora": ("QLoRA saves GPU memory; on the CPU it is slower than LoRA and saves nothing you need.",
                  "QLoRA 用来节省显存;在 CPU 上它比 LoRA 更慢,也省不了什么。"),
    "no_fit": ("{tuner} needs about {need} GiB, this GPU has {mem} GiB: it will likely run out of memory. Choose "
               "QLoRA, a smaller model or several GPUs.",
               "{tuner} 大约需要 {need} GiB 显存,这块 GPU 只有 {mem} GiB,很可能显存不足。请选 QLoRA、"
               "更小的模型或多卡训练。"),
}


def warning_text(warning: tuple[str, dict], lang: str = "en") -> str:
    """One recommendation warning in words (`lang` en or zh)."""
    from swift.ui.i18n import text

    key, values = warning
    return text(WARNINGS, key, lang, **values)
