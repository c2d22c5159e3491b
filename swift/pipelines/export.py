"""`swift export` / `swift merge-lora`: merge LoRA adapters into the base weights, and/or write a quantized copy
(gptq, awq, fp8, bnb) checked by held-out perplexity."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from swift.pipelines.arguments import ParsedArgs
from swift.pipelines.common import is_adapter_dir, report_result
from swift.pipelines.infer import inherit_checkpoint_args, resolve_base_model
from swift.utils.errors import ArgumentError
from swift.utils.logging import get_logger

logger = get_logger("swift.export")

CALIBRATION_TEXT = Path(__file__).resolve().parents[1] / "assets" / "data" / "calibration.txt"


def run_export(args: ParsedArgs) -> str:
    from swift.utils.logging import quiet_library_warnings

    quiet_library_warnings()
    ex, q = args.groups["ExportArguments"], args.groups["QuantArguments"]
    if q.quant_method:
        return run_quant_export(args)
    if not ex.merge_lora:
        raise ArgumentError("merge_lora", "nothing to export: pass --merge_lora true to merge adapters, and/or "
                            "--quant_method gptq|awq|fp8|bnb to write a quantized model")
    adapter = _single_adapter(ex.adapters)
    saved = inherit_checkpoint_args(args, adapter)
    model_dir = resolve_base_model(args, saved, [adapter])
    out = ex.output_dir or f"{Path(adapter).as_posix().rstrip('/')}-merged"
    path = _merge(args, model_dir, adapter, out, ex.overwrite, saved)
    print(f"merged model written to {path}\n  chat with it: swift infer --model {path}", flush=True)
    report_result(command="export", output_dir=path, merged=True, status="finished")
    return path


def run_merge_lora(args: ParsedArgs) -> str:
    args.groups["ExportArguments"].merge_lora = True
    return run_export(args)


def _single_adapter(adapters: list[str]) -> str:
    if len(adapters) != 1:
        raise ArgumentError("adapters", f"give exactly one LoRA checkpoint folder, got {len(adapters)}")
    if not is_adapter_dir(adapters[0]):
        raise ArgumentError("adapters", f"{adapters[0]} has no adapter_config.json: not a LoRA checkpoint")
    return adapters[0]


def _merge(args: ParsedArgs, model_dir: str, adapter: str, out: str, overwrite: bool,
           saved: dict[str, Any]) -> str:
    from swift.export.merge import merge_lora
    from swift.trainers.checkpoint import adapter_for_inference

    if saved.get("quant_method") == "bnb":
        logger.info("the adapter was trained on a %s-bit bitsandbytes base; it is merged into the full-precision "
                    "base weights", saved.get("quant_bits"))
    path = merge_lora(model_dir, adapter_for_inference(adapter), out,
                      torch_dtype=args.groups["ModelArguments"].torch_dtype, overwrite=overwrite)
    if saved:
        # the training run's settings (template, system prompt, max_length) travel with the merged model
        from swift.pipelines.common import ARGS_FILE, public_args
        from swift.utils.io import atomic_write_json

        atomic_write_json(Path(path) / ARGS_FILE, public_args(saved))
    return path


def run_quant_export(args: ParsedArgs) -> str:
    """Quantize --model (or --adapters merged into their base first) into --output_dir."""
    ex, q, m = args.groups["ExportArguments"], args.groups["QuantArguments"], args.groups["ModelArguments"]
    tmp_merged = None
    if ex.adapters:
        adapter = _single_adapter(ex.adapters)
        saved = inherit_checkpoint_args(args, adapter)
        base = resolve_base_model(args, saved, [adapter])
        default_out = f"{Path(adapter).as_posix().rstrip('/')}-{q.quant_method}-int{q.quant_bits}"
        out = Path(ex.output_dir or default_out).expanduser().absolute()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_merged = Path(tempfile.mkdtemp(prefix=f".{out.name}.merged-", dir=out.parent))
        logger.info("merging %s into %s before quantizing", adapter, base)
        model_dir = _merge(args, base, adapter, str(tmp_merged), True, saved)
    else:
        if not m.model:
            raise ArgumentError("model", "give the model to quantize: --model <folder> (or --adapters <checkpoint>)")
        from swift.models.loader import resolve_model

        if (Path(m.model) / "args.json").is_file():
            inherit_checkpoint_args(args, m.model)
        model_dir = resolve_model(m.model, model_type=m.model_type, use_hf=m.use_hf, revision=m.model_revision,
                                  token=m.hub_token)
        name = Path(m.model).name if Path(m.model).exists() else m.model.replace("/", "--")
        out = Path(ex.output_dir or f"{name}-{q.quant_method}-int{q.quant_bits}").expanduser().absolute()
    try:
        calibration, heldout, source = calibration_data(args, model_dir)
        from swift.export.quantize import quantize_model

        report = quantize_model(
            model_dir, out, method=q.quant_method, bits=q.quant_bits, group_size=ex.group_size,
            calibration=calibration if q.quant_method in ("gptq", "awq") else (), heldout=heldout,
            torch_dtype=m.torch_dtype, device_map=m.device_map, bnb_quant_type=q.bnb_4bit_quant_type,
            bnb_double_quant=q.bnb_4bit_use_double_quant, bnb_compute_dtype=q.bnb_4bit_compute_dtype,
            max_ppl_increase=ex.max_ppl_increase, overwrite=ex.overwrite)
    finally:
        if tmp_merged is not None:
            shutil.rmtree(tmp_merged, ignore_errors=True)
    print_report(report, source)
    report_result(command="export", output_dir=report["output_dir"], quant_method=report.get("quant_method"),
                  status="finished")
    return report["output_dir"]


def calibration_data(args: ParsedArgs, model_dir: str) -> tuple[list, list, str]:
    """(calibration samples, held-out samples, where they came from) as token id tensors.

    --dataset rows are encoded with the chat template (--val_dataset, the --split_dataset_ratio split, or else the
    last --ppl_n_samples rows are the held-out part); without --dataset the built-in text (the project's own English and Chinese docs) is cut
    into --quant_seq_length token windows.
    """
    import torch

    from swift.models.loader import load_tokenizer

    ex, d = args.groups["ExportArguments"], args.groups["DataArguments"]
    tokenizer = load_tokenizer(model_dir, trust_remote_code=args.groups["ModelArguments"].trust_remote_code)
    text_tok = getattr(tokenizer, "tokenizer", tokenizer)
    seq_len = ex.quant_seq_length or args.groups["TemplateArguments"].max_length or 2048
    need_heldout = ex.ppl_n_samples
    if d.dataset:
        samples, val = _dataset_samples(args, tokenizer, seq_len)
        source = ", ".join(d.dataset)
    else:
        lines = CALIBRATION_TEXT.read_text(encoding="utf-8").splitlines()
        ids = [t for line in text_tok([ln + "\n" for ln in lines], add_special_tokens=False)["input_ids"]
               for t in line]
        window = min(seq_len, 512)
        samples = [ids[i:i + window] for i in range(0, len(ids) - window + 1, window)]
        val = None
        source = f"built-in text ({len(samples)} windows of {window} tokens)"
    if val is None:
        n_held = min(need_heldout, len(samples) // 4)
        val, samples = samples[len(samples) - n_held:], samples[:len(samples) - n_held]
    calibration = [torch.tensor(s[:seq_len], dtype=torch.long) for s in samples[:ex.quant_n_samples] if len(s) > 1]
    heldout = [torch.tensor(s[:seq_len], dtype=torch.long) for s in val[:need_heldout] if len(s) > 1]
    logger.info("calibration: %d samples, held-out: %d samples (%s)", len(calibration), len(heldout), source)
    return calibration, heldout, source


def _dataset_samples(args: ParsedArgs, tokenizer: Any, seq_len: int) -> tuple[list, list | None]:
    from swift.data import encode_rows, load_datasets
    from swift.pipelines.sft import make_template

    d, m = args.groups["DataArguments"], args.groups["ModelArguments"]
    train_rows, val_rows = load_datasets(
        d.dataset, val_datasets=d.val_dataset, split_dataset_ratio=d.split_dataset_ratio,
        seed=d.data_seed if d.data_seed is not None else 42, strict=d.strict, model_name=d.model_name,
        model_author=d.model_author, use_hf=m.use_hf)
    template = make_template(args, tokenizer)
    enc = dict(mode="sft", strict=d.strict, load_from_cache_file=d.load_from_cache_file)
    train = [list(r) for r in encode_rows(train_rows, template, desc="calibration", **enc)["input_ids"]]
    val = [list(r) for r in encode_rows(val_rows, template, desc="held-out", **enc)["input_ids"]] if val_rows else None
    return train, val


def print_report(report: dict[str, Any], source: str) -> None:
    lines = [f"quantized model written to {report['output_dir']}",
             f"  method: {report['method']} {report['bits']}-bit"
             + (f", group size {report['group_size']}" if "group_size" in report else ""),
             f"  size: {report.get('original_size_mb', 0):.1f} MB -> {report.get('size_mb', 0):.1f} MB"]
    if "ppl_original" in report and "ppl_quantized" in report:
        lines.append(f"  held-out perplexity: {report['ppl_original']:.3f} -> {report['ppl_quantized']:.3f} "
                     f"({report['ppl_increase']:+.1%}) on {report['heldout_samples']} samples of {source}")
    if report.get("skipped"):
        lines.append(f"  kept in full precision: {', '.join(report['skipped'])}")
    lines.append(f"  chat with it: swift infer --model {report['output_dir']}")
    print("\n".join(lines), flush=True)
