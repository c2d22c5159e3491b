"""Quantized export: a model folder in, a quantized folder out that transformers (and vLLM) load, checked by
perplexity on held-out text before it is put in place.

Methods and the formats they write:
    gptq, awq  int4 (gptq also int8) weights, group-wise scales  -> compressed-tensors "pack-quantized"
    fp8        float8 e4m3 weights per channel, dynamic per-token activations -> compressed-tensors FP8_DYNAMIC
    bnb        bitsandbytes 4-bit NF4/FP4 or 8-bit, quantized while loading   -> transformers' bnb serialisation
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from swift.export.merge import check_output_dir, library_versions, swap_into_place
from swift.utils.errors import ArgumentError, SwiftError
from swift.utils.io import atomic_write_json
from swift.utils.logging import get_logger

logger = get_logger("swift.export")

METHODS = ("gptq", "awq", "fp8", "bnb")
MANIFEST = "swift_quant.json"


def quantize_model(model_dir: str | os.PathLike, output_dir: str | os.PathLike, *, method: str, bits: int = 4,
                   group_size: int = 128, calibration: Sequence[torch.Tensor] = (),
                   heldout: Sequence[torch.Tensor] = (), torch_dtype: Any = None, device_map: Any = None,
                   bnb_quant_type: str = "nf4", bnb_double_quant: bool = True, bnb_compute_dtype: Any = None,
                   max_ppl_increase: float | None = None, overwrite: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """Quantize the model in `model_dir` and write it to `output_dir`.

    The folder is written beside `output_dir` first, reloaded from disk exactly as a user would load it, checked
    (it loads, generates, and its held-out perplexity is measured against the original's), and only then renamed
    into place; a failed check leaves nothing behind.

    Args:
        model_dir: A plain (or compressed-tensors) Hugging Face folder.
        output_dir: Destination; must be absent or empty unless `overwrite`.
        method: "gptq", "awq", "fp8" or "bnb".
        bits: 4 or 8 (see the module docstring for what each method takes).
        group_size: gptq/awq: columns sharing one scale.
        calibration: gptq/awq: token id tensors the quantizer sees.
        heldout: Token id tensors for the perplexity check (not used for calibration).
        torch_dtype: dtype to load the original in (name or torch dtype); None: the folder's own on a GPU,
            float32 on CPU.
        device_map: Where the model is quantized; None: the first GPU if there is one, else the CPU.
        bnb_quant_type, bnb_double_quant, bnb_compute_dtype: bnb 4-bit settings.
        max_ppl_increase: Fail when perplexity rises by more than this fraction (None: report only).
        overwrite: Replace a non-empty `output_dir`.
        progress: Progress bars.

    Returns:
        The report also written to `<output_dir>/swift_quant.json`: method, bits, perplexities, timing,
        skipped layers, sizes.

    Raises:
        ArgumentError: unknown method or missing calibration data.
        SwiftError: the quantized folder does not load or generate, or perplexity rose past the bound.
    """
    if method not in METHODS:
        raise ArgumentError("quant_method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    if method in ("gptq", "awq") and not calibration:
        raise ArgumentError("dataset", f"{method} needs calibration text: pass --dataset")
    output = Path(output_dir).expanduser().absolute()
    check_output_dir(output, overwrite)
    from swift.models.loader import load_model_and_tokenizer

    if device_map is None:
        device_map = "cuda:0" if torch.cuda.is_available() else "cpu"
    if torch_dtype is None and not torch.cuda.is_available():
        torch_dtype = "float32"
    start = time.time()
    model, tokenizer, src = load_model_and_tokenizer(str(model_dir), torch_dtype=torch_dtype, device_map=device_map,
                                                     dequantize=True)
    report: dict[str, Any] = {"method": method, "bits": bits, "source": str(model_dir),
                              "calibration_samples": len(calibration), "heldout_samples": len(heldout)}
    if method in ("gptq", "awq"):
        report["group_size"] = group_size
    if heldout:
        report["ppl_original"] = _ppl(model, heldout, progress, "perplexity (original)")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.quantizing-", dir=output.parent))
    try:
        if method == "bnb":
            del model
            _write_bnb(src, tmp, bits, torch_dtype, device_map, bnb_quant_type, bnb_double_quant, bnb_compute_dtype)
            report.update(bnb_4bit_quant_type=bnb_quant_type if bits == 4 else None)
        else:
            from swift.quant.compressed import quantize_compressed, save_compressed

            q0 = time.time()
            result = quantize_compressed(model, method=method, bits=bits, group_size=group_size,
                                         calibration=calibration, progress=progress)
            report["quantize_seconds"] = round(time.time() - q0, 2)
            report["skipped"] = result.get("skipped", {})
            report["quantized_layers"] = len(result.get("quantized", []))
            report["fallback"] = result.get("fallback", {})
            for name, reason in report["skipped"].items():
                logger.warning("%s kept in full precision: %s", name, reason)
            for name, reason in report["fallback"].items():
                logger.warning("%s: %s", name, reason)
            save_compressed(model, tmp)
            del model
        _save_side_files(tokenizer, src, tmp)
        report.update(_check_folder(tmp, heldout, progress))
        report["size_mb"] = round(_folder_size(tmp) / 2**20, 2)
        report["original_size_mb"] = round(_folder_size(Path(src), weights_only=True) / 2**20, 2)
        _check_bound(report, max_ppl_increase)
        report.update(seconds=round(time.time() - start, 2), versions=library_versions(_LIBS[method]),
                      created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        atomic_write_json(tmp / MANIFEST, report)
        swap_into_place(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report["output_dir"] = str(output)
    logger.info("Quantized model (%s, %d-bit) saved to %s", method, bits, output)
    return report


_LIBS = {"gptq": ("compressed-tensors",), "awq": ("compressed-tensors",), "fp8": ("compressed-tensors",),
         "bnb": ("bitsandbytes",)}


def _ppl(model: Any, samples: Sequence[torch.Tensor], progress: bool, desc: str) -> float:
    from swift.quant.perplexity import perplexity

    return round(perplexity(model, samples, progress=progress, desc=desc), 4)


def _write_bnb(src: str, folder: Path, bits: int, torch_dtype: Any, device_map: Any, quant_type: str,
               double_quant: bool, compute_dtype: Any) -> None:
    """bitsandbytes quantizes while loading; transformers then serialises the packed weights."""
    from swift.models.loader import load_model_and_tokenizer
    from swift.quant.config import bnb_config

    config = bnb_config(bits, quant_type=quant_type, double_quant=double_quant,
                        compute_dtype=compute_dtype or (torch_dtype if torch_dtype in ("bfloat16", "float16") else None))
    model, _, _ = load_model_and_tokenizer(src, torch_dtype=torch_dtype, device_map=device_map,
                                           quantization_config=config)
    model.save_pretrained(folder)


def _save_side_files(tokenizer: Any, src: str, folder: Path) -> None:
    """Tokenizer (or processor), generation config and the training run's args.json travel with the weights."""
    tokenizer.save_pretrained(folder)
    for name in ("generation_config.json", "args.json", "preprocessor_config.json", "chat_template.jinja"):
        if (Path(src) / name).is_file() and not (folder / name).is_file():
            shutil.copy2(Path(src) / name, folder / name)


def _check_folder(folder: Path, heldout: Sequence[torch.Tensor], progress: bool) -> dict[str, Any]:
    """Load the written folder as a user would (no SwiftLab-only state), generate, measure perplexity."""
    from swift.models.loader import load_model_and_tokenizer

    device_map = "cuda:0" if torch.cuda.is_available() else "cpu"
    try:
        model, tokenizer, _ = load_model_and_tokenizer(str(folder), device_map=device_map)
    except Exception as e:  # any failure here means the folder is unusable: say so, keep nothing
        raise SwiftError(f"the quantized model was written but does not load back ({type(e).__name__}: {e}); "
                         "nothing was saved") from e
    prompt = heldout[0].reshape(1, -1)[:, :16] if heldout else torch.tensor([[tokenizer_bos(tokenizer)]])
    try:
        with torch.no_grad():
            out = model.generate(input_ids=prompt.to(model.device), max_new_tokens=4, do_sample=False,
                                 pad_token_id=getattr(model.generation_config, "pad_token_id", None) or 0)
    except Exception as e:
        raise SwiftError(f"the quantized model loads but cannot generate ({type(e).__name__}: {e}); "
                         "nothing was saved") from e
    checked: dict[str, Any] = {"reload_generates": int(out.shape[1] - prompt.shape[1])}
    if heldout:
        checked["ppl_quantized"] = _ppl(model, heldout, progress, "perplexity (quantized)")
    return checked


def tokenizer_bos(tokenizer: Any) -> int:
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tok, attr, None)
        if value is not None:
            return int(value)
    return 0


def _check_bound(report: dict[str, Any], max_increase: float | None) -> None:
    before, after = report.get("ppl_original"), report.get("ppl_quantized")
    if before is None or after is None:
        return
    report["ppl_increase"] = round(after / before - 1.0, 4)
    if max_increase is not None and report["ppl_increase"] > max_increase:
        raise SwiftError(
            f"perplexity rose from {before:.3f} to {after:.3f} (+{report['ppl_increase']:.1%}), more than "
            f"--max_ppl_increase {max_increase:.1%}; nothing was saved. Try more or more typical calibration data "
            "(--dataset, --quant_n_samples), a smaller --group_size, 8 bits, or another --quant_method")


def _folder_size(folder: Path, weights_only: bool = False) -> int:
    files = [p for p in folder.iterdir() if p.is_file()]
    if weights_only:
        files = [p for p in files if p.suffix in (".safetensors", ".bin")]
    return sum(p.stat().st_size for p in files)
