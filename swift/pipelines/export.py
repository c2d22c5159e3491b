"""`swift export` / `swift merge-lora`: merge LoRA adapters into the base weights as a plain HF folder."""
from __future__ import annotations

from pathlib import Path

from swift.pipelines.arguments import ParsedArgs
from swift.pipelines.common import is_adapter_dir
from swift.pipelines.infer import inherit_checkpoint_args, resolve_base_model
from swift.utils.errors import ArgumentError


def run_export(args: ParsedArgs) -> str:
    ex = args.groups["ExportArguments"]
    if not ex.merge_lora:
        raise ArgumentError("merge_lora", "nothing to export: pass --merge_lora true (quantized export comes later)")
    if len(ex.adapters) != 1:
        raise ArgumentError("adapters", f"give exactly one LoRA checkpoint folder, got {len(ex.adapters)}")
    adapter = ex.adapters[0]
    if not is_adapter_dir(adapter):
        raise ArgumentError("adapters", f"{adapter} has no adapter_config.json: not a LoRA checkpoint")
    saved = inherit_checkpoint_args(args, adapter)
    model_dir = resolve_base_model(args, saved, [adapter])
    out = ex.output_dir or f"{Path(adapter).as_posix().rstrip('/')}-merged"
    from swift.export.merge import merge_lora
    from swift.trainers.checkpoint import adapter_for_inference

    path = merge_lora(model_dir, adapter_for_inference(adapter), out, torch_dtype=args.groups["ModelArguments"].torch_dtype,
                      overwrite=ex.overwrite)
    if saved:
        # the training run's settings (template, system prompt, max_length) travel with the merged model
        from swift.pipelines.common import ARGS_FILE, public_args
        from swift.utils.io import atomic_write_json

        atomic_write_json(Path(path) / ARGS_FILE, public_args(saved))
    print(f"merged model written to {path}\n  chat with it: swift infer --model {path}", flush=True)
    return path


def run_merge_lora(args: ParsedArgs) -> str:
    args.groups["ExportArguments"].merge_lora = True
    return run_export(args)
