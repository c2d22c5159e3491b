"""`swift sft` / `swift train` / `swift pt`: model + template + data -> tuner -> trainer -> checkpoints."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from swift.pipelines.arguments import ParsedArgs
from swift.pipelines.common import (
    new_run_dir,
    package_versions,
    public_args,
    report_result,
    rows_fingerprint,
    run_dirs,
    write_run_files,
)
from swift.utils.errors import ArgumentError, DataError, SwiftError
from swift.utils.logging import get_logger, quiet_library_warnings

logger = get_logger("swift.sft")


def run_pt(args: ParsedArgs) -> dict[str, Any]:
    """`swift pt`: continued pre-training on raw text, loss on every token."""
    return run_sft(args, mode="pt")


def resolve_resume(train_args, output_dir: str, config_file: str | None = None) -> tuple[Path | None, str | None]:
    """(run folder to reuse, checkpoint to resume) for --resume_from_checkpoint true|<path>.

    `true` looks first in the folder of `--config <run>/args.json` (that run), then in output_dir itself, then in
    its run folders newest first."""
    from swift.trainers import find_latest_checkpoint

    value = train_args.resume_from_checkpoint
    if value is None or str(value).lower() in ("false", "none", ""):
        return None, None
    if str(value).lower() != "true":
        ckpt = Path(value)
        if not ckpt.is_dir():
            raise ArgumentError("resume_from_checkpoint", f"checkpoint folder not found: {value}")
        return ckpt.parent, str(ckpt)
    # --add_version false writes into output_dir itself; else the newest run that holds a complete checkpoint
    # (a run that failed before its first save leaves an empty folder, which is skipped).
    first = [Path(config_file).parent] if config_file else []
    for candidate in (*first, Path(output_dir), *run_dirs(output_dir)):
        if candidate.is_dir():
            ckpt = find_latest_checkpoint(str(candidate))
            if ckpt:
                return candidate, ckpt
    raise ArgumentError("resume_from_checkpoint", f"no complete checkpoint found under {output_dir}")


def _training_arguments(args: ParsedArgs, run_dir: Path, has_eval: bool, mode: str):
    from transformers import TrainingArguments

    kwargs = training_kwargs(args, run_dir, has_eval)
    try:
        return TrainingArguments(**kwargs)
    except ValueError as e:  # transformers checks combinations of flags; say it as our error, without a trace
        raise SwiftError(f"invalid training flags: {e}") from e


def training_kwargs(args: ParsedArgs, run_dir: Path, has_eval: bool) -> dict[str, Any]:
    """The `transformers.TrainingArguments` fields of a run: our defaults, then every flag the user gave."""
    tr, tu = args.groups["TrainArguments"], args.groups["TunerArguments"]
    lr = tr.learning_rate or (1e-4 if tu.tuner_type == "lora" else 1e-5)
    kwargs: dict[str, Any] = {
        "output_dir": str(run_dir),
        "learning_rate": lr,
        "num_train_epochs": tr.num_train_epochs,
        "per_device_train_batch_size": tr.per_device_train_batch_size,
        "per_device_eval_batch_size": tr.per_device_eval_batch_size,
        "gradient_accumulation_steps": tr.gradient_accumulation_steps,
        "logging_steps": tr.logging_steps,
        "save_strategy": "steps",
        "save_steps": tr.save_steps,
        "save_total_limit": tr.save_total_limit,
        "warmup_ratio": tr.warmup_ratio,
        "seed": tr.seed,
        "report_to": tr.report_to,
        "remove_unused_columns": False,
        "logging_first_step": True,
        # A live bar (step, loss, token accuracy, tokens/s, ETA) on a terminal; one line per log otherwise (CI, nohup).
        "disable_tqdm": not sys.stderr.isatty(),
        "save_only_model": False,
    }
    if has_eval:
        kwargs.update(eval_strategy="steps", eval_steps=tr.eval_steps or tr.save_steps)
    import torch

    if not torch.cuda.is_available():
        kwargs["dataloader_pin_memory"] = False  # pinning needs an accelerator; avoids a warning per run
    from swift.pipelines.quant import is_bnb

    if is_bnb(args) and not {"gradient_checkpointing", "activation_checkpointing"} & set(args.hf):
        # QLoRA's memory figure assumes it; the flag still turns it off (--gradient_checkpointing false).
        kwargs["activation_checkpointing"] = True
        kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": False}
        logger.info("4/8-bit training: gradient checkpointing on (turn off with --gradient_checkpointing false)")
    d = args.groups.get("DistributedArguments")
    if d is not None:
        from swift.launch.strategy import strategy_training_kwargs

        q = args.groups.get("QuantArguments")
        bnb = q is not None and q.quant_method == "bnb"
        kwargs.update(strategy_training_kwargs(
            d.parallel_strategy, fsdp=d.fsdp, deepspeed=d.deepspeed, bnb_bits=q.quant_bits if bnb else None,
            bnb_quant_storage=q.bnb_4bit_quant_storage if bnb else None))
    kwargs.update(args.hf)
    kwargs.pop("resume_from_checkpoint", None)
    dtype = args.groups["ModelArguments"].torch_dtype
    if "bf16" not in args.hf and "fp16" not in args.hf:
        # Mixed precision only on a GPU; weights loaded in bf16/fp16 then train in that dtype directly.
        kwargs["bf16"] = bool(torch.cuda.is_available() and dtype == "bfloat16")
        kwargs["fp16"] = bool(torch.cuda.is_available() and dtype == "float16")
    if "warmup_ratio" in kwargs:
        # transformers 5 folds warmup_ratio into warmup_steps (a float < 1 is a ratio).
        ratio = kwargs.pop("warmup_ratio")
        if ratio and "warmup_steps" not in args.hf:
            kwargs["warmup_steps"] = float(ratio)
    return kwargs


def load_model(args: ParsedArgs, model: str | None = None, task: str = "causal_lm", flag: str = "model"):
    """(model, tokenizer, model_dir) of --model (or of `model`, e.g. a --ref_model, with the same settings)."""
    from swift.models.loader import load_model_and_tokenizer

    m = args.groups["ModelArguments"]
    from swift.launch.launcher import in_launched_rank

    if m.device_map and in_launched_rank() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ArgumentError("device_map", "--device_map splits one model over the devices of ONE process; with "
                            "several processes (NPROC_PER_NODE / --fsdp_num_shards) each process places its own "
                            "replica or shard. Drop --device_map, or run one process with --device_map auto")
    name, model_type = (m.model, m.model_type) if model is None else (model, None)
    if name is None and model_type is None:
        raise ArgumentError(flag, "give a model: a local folder, a hub id, or a name such as swift-demo")
    from swift.pipelines.quant import load_time_quantization

    return load_model_and_tokenizer(
        name, model_type=model_type, torch_dtype=default_dtype(m.torch_dtype), device_map=m.device_map,
        attn_impl=m.attn_impl, trust_remote_code=m.trust_remote_code, use_hf=m.use_hf, revision=m.model_revision,
        token=m.hub_token, task=task, quantization_config=load_time_quantization(args), dequantize=True,
    )


def default_dtype(torch_dtype: str | None) -> str | None:
    """No --torch_dtype: the config's dtype on a GPU, float32 on CPU (bf16 matmuls are slow on most CPUs)."""
    if torch_dtype is not None:
        return torch_dtype
    import torch

    return None if torch.cuda.is_available() else "float32"


def make_template(args: ParsedArgs, tokenizer):
    from swift.templates import get_template

    t = args.groups["TemplateArguments"]
    loss_scale = "all" if t.loss_scale == "default" else t.loss_scale
    return get_template(tokenizer, t.template, system=t.system, max_length=t.max_length,
                        truncation_strategy=t.truncation_strategy, loss_scale=loss_scale)


def load_rows(args: ParsedArgs, mode: str, example: str = "self-cognition") -> tuple[list, list]:
    """(train rows, val rows) of --dataset / --val_dataset / --split_dataset_ratio."""
    from swift.data import load_datasets

    d, tr = args.groups["DataArguments"], args.groups["TrainArguments"]
    if not d.dataset:
        raise ArgumentError("dataset", f"give at least one dataset (a file, a hub id or a preset such as {example})")
    return load_datasets(
        d.dataset, val_datasets=d.val_dataset, split_dataset_ratio=d.split_dataset_ratio,
        seed=d.data_seed if d.data_seed is not None else tr.seed, strict=d.strict, model_name=d.model_name,
        model_author=d.model_author, use_hf=args.groups["ModelArguments"].use_hf, mode=mode,
    )


def _load_data(args: ParsedArgs, template, mode: str):
    from swift.data import encode_rows, pack_dataset

    d = args.groups["DataArguments"]
    train_rows, val_rows = load_rows(args, mode)
    check_text_only(list(train_rows) + list(val_rows or []))
    enc = dict(mode=mode, num_proc=d.dataset_num_proc, strict=d.strict, load_from_cache_file=d.load_from_cache_file)
    train_ds = encode_rows(train_rows, template, desc="train", **enc)
    val_ds = encode_rows(val_rows, template, desc="val", **enc) if val_rows else None
    max_length = args.groups["TemplateArguments"].max_length
    if d.packing:
        if not max_length:
            raise ArgumentError("packing", "packing needs --max_length")
        train_ds = pack_dataset(train_ds, max_length)
        if val_ds is not None:
            val_ds = pack_dataset(val_ds, max_length)
    fingerprints = {"train": rows_fingerprint(train_rows), "val": rows_fingerprint(val_rows)}
    return train_ds, val_ds, fingerprints


def check_text_only(rows: list) -> None:
    """A text model cannot use images, videos or audios: stop at the first row that has them."""
    from swift.data.formats import origin
    from swift.templates.mm_plugins import LIST_KEYS

    for i, row in enumerate(rows):
        key = next((k for k in LIST_KEYS.values() if row.get(k)), None)
        if key:
            file, line = origin(row, i)
            raise DataError(f"the row has {key} but the model takes text only (its tags would be trained as plain "
                            "text): use a multimodal model (e.g. --model qwen-vl) or drop the media columns",
                            file=file, row=line, field=key)


def prepare_tuner(args: ParsedArgs, model, task_type: str = "CAUSAL_LM"):
    from swift.tuners import LoRAConfig, prepare_model

    tu = args.groups["TunerArguments"]
    lora = None
    if tu.tuner_type == "lora":
        init = {"true": True, "false": False}.get(tu.init_weights.lower(), tu.init_weights.lower())
        lora = LoRAConfig(
            r=tu.lora_rank, alpha=tu.lora_alpha, dropout=tu.lora_dropout, target_modules=_targets(tu.target_modules),
            use_dora=tu.use_dora, use_rslora=tu.use_rslora, init_weights=init,
            modules_to_save=tu.modules_to_save or None, lorap_lr_ratio=tu.lorap_lr_ratio,
        )
    model = prepare_model(model, tuner_type=tu.tuner_type, lora=lora, task_type=task_type,
                          freeze_parameters_ratio=tu.freeze_parameters_ratio,
                          freeze_parameters=tu.freeze_parameters, trainable_parameters=tu.trainable_parameters,
                          freeze_vit=tu.freeze_vit, freeze_aligner=tu.freeze_aligner, freeze_llm=tu.freeze_llm)
    from swift.pipelines.quant import is_bnb

    hf = args.hf
    if is_bnb(args) and hf.get("gradient_checkpointing", hf.get("activation_checkpointing")) is False:
        model.gradient_checkpointing_disable()  # prepare_quantized switched it on; the user said no
    if lora is not None and lora.modifies_base_weights:
        # PiSSA/OLoRA: keep the initial adapter so every checkpoint also gets one for the original base.
        from swift.tuners.model import SwiftModel, snapshot_adapter

        wrapped = SwiftModel(model)
        wrapped._initial_adapter = snapshot_adapter(model)
        return wrapped
    return model


def _multimodal_optimizer(args: ParsedArgs, model, hf_args):
    """AdamW with --vit_lr / --aligner_lr for the vision tower and the aligner, --learning_rate for the rest."""
    import torch

    from swift.tuners.multimodal import is_multimodal_model, multimodal_param_groups

    tu = args.groups["TunerArguments"]
    inner = getattr(model, "unwrap", lambda: model)()
    if not is_multimodal_model(inner):
        raise ArgumentError("vit_lr", "--vit_lr / --aligner_lr apply to multimodal models only")
    if tu.lorap_lr_ratio:
        raise ArgumentError("vit_lr", "--vit_lr / --aligner_lr cannot be combined with --lorap_lr_ratio yet")
    groups = multimodal_param_groups(inner, lr=hf_args.learning_rate, vit_lr=tu.vit_lr, aligner_lr=tu.aligner_lr,
                                     weight_decay=hf_args.weight_decay)
    return torch.optim.AdamW(groups, lr=hf_args.learning_rate, betas=(hf_args.adam_beta1, hf_args.adam_beta2),
                             eps=hf_args.adam_epsilon)


def _targets(values: list[str]) -> str | list[str]:
    if len(values) == 1 and values[0] in ("all-linear", "all_linear", "ALL"):
        return "all-linear"
    return list(values)


def run_sft(args: ParsedArgs, mode: str = "sft") -> dict[str, Any]:
    """Train and return a summary (run folder, last checkpoint, loss curve, final metrics)."""
    import transformers

    start = time.time()
    quiet_library_warnings()
    tr = args.groups["TrainArguments"]
    transformers.set_seed(tr.seed)
    reuse_dir, resume_ckpt = resolve_resume(tr, tr.output_dir, args.config_file)
    run_dir = reuse_dir or new_run_dir(tr.output_dir, tr.add_version)
    logger.info(f"run folder: {run_dir}")
    report_result(command=mode if mode == "pt" else args.command, run_dir=run_dir, status="training")

    model, tokenizer, model_dir = load_model(args)
    template = make_template(args, tokenizer)
    from swift.pipelines.mm import load_mm_data, make_mm_encoder

    mm_encoder = make_mm_encoder(args, template, tokenizer, model)
    from swift.launch.launcher import main_process_first

    with main_process_first(run_dir, "data") as first:  # one writer of the encoding cache, the others read it
        if not first:
            args.groups["DataArguments"].load_from_cache_file = True
        if mm_encoder is not None:
            train_ds, val_ds, fingerprints = load_mm_data(args, mm_encoder, mode)
        else:
            train_ds, val_ds, fingerprints = _load_data(args, template, mode)
    model = prepare_tuner(args, model)

    flat = dict(public_args(args.flat))
    flat["model_dir"] = str(model_dir)
    flat["command"] = args.command if mode == "sft" else "pt"
    manifest = {"versions": package_versions(), "datasets": fingerprints, "model_dir": str(model_dir),
                "train_rows": len(train_ds), "val_rows": len(val_ds) if val_ds is not None else 0,
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_run_files(run_dir, flat, manifest)

    from swift.data import DataCollator
    from swift.trainers import SwiftTrainer

    d = args.groups["DataArguments"]
    text_tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    if mm_encoder is not None:
        from swift.data.mm_dataset import MultiModalCollator

        collator = MultiModalCollator(text_tokenizer.pad_token_id, padding_free=d.packing or d.padding_free)
    else:
        collator = DataCollator(text_tokenizer.pad_token_id, padding_free=d.packing or d.padding_free)
    hf_args = _training_arguments(args, run_dir, val_ds is not None, mode)
    optimizers = (None, None)
    tu = args.groups["TunerArguments"]
    d = args.groups.get("DistributedArguments")
    if d is not None and d.parallel_strategy in ("fsdp", "deepspeed") and (
            (tu.tuner_type == "lora" and tu.lorap_lr_ratio) or tu.vit_lr is not None or tu.aligner_lr is not None):
        flag = "lorap_lr_ratio" if tu.lorap_lr_ratio else "vit_lr" if tu.vit_lr is not None else "aligner_lr"
        raise ArgumentError(flag, f"--{flag} builds its own optimizer, which {d.parallel_strategy} does not take "
                            "(it builds the optimizer over sharded parameters); drop the flag or use ddp")
    if tu.tuner_type == "lora" and tu.lorap_lr_ratio:
        from swift.tuners import create_loraplus_optimizer

        opt = create_loraplus_optimizer(getattr(model, "unwrap", lambda: model)(), lr=hf_args.learning_rate, weight_decay=hf_args.weight_decay,
                                        lorap_lr_ratio=tu.lorap_lr_ratio)
        optimizers = (opt, None)
    if tu.vit_lr is not None or tu.aligner_lr is not None:
        optimizers = (_multimodal_optimizer(args, model, hf_args), None)
    trainer_kwargs = dict(model=model, args=hf_args, train_dataset=train_ds, eval_dataset=val_ds,
                          data_collator=collator, processing_class=tokenizer, template=template,
                          checkpoint_files={"args.json": flat}, optimizers=optimizers)
    if mm_encoder is not None:
        from swift.trainers.multimodal import MultiModalTrainer

        trainer = MultiModalTrainer(encoder=mm_encoder, **trainer_kwargs)
    else:
        trainer = SwiftTrainer(**trainer_kwargs)
    result = trainer.train(resume_from_checkpoint=resume_ckpt)
    from swift.trainers import find_latest_checkpoint

    last = find_latest_checkpoint(str(run_dir))
    summary = {
        "run_dir": str(run_dir),
        "last_checkpoint": last,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "loss_curve": str(run_dir / "loss_curve.png") if (run_dir / "loss_curve.png").exists() else None,
        "train_loss": getattr(result, "training_loss", None),
        "global_step": trainer.state.global_step,
        "seconds": round(time.time() - start, 1),
    }
    print_summary(summary, tu.tuner_type)
    report_result(**summary, tuner_type=tu.tuner_type, status="finished")
    return summary


def print_summary(summary: dict[str, Any], tuner_type: str, reward_model: bool = False) -> None:
    from swift.launch.launcher import forget_shared_values, is_main_process

    if not is_main_process():
        return
    # training synchronised every rank long after they read the run folder and data markers
    forget_shared_values(Path(summary["run_dir"]))
    forget_shared_values(Path(summary["run_dir"]).parent)
    lines = ["", "Training finished.", f"  run folder:      {summary['run_dir']}",
             f"  last checkpoint: {summary['last_checkpoint']}"]
    if summary.get("loss_curve"):
        lines.append(f"  loss curve:      {summary['loss_curve']}")
    if summary["last_checkpoint"]:
        flag = "--adapters" if tuner_type == "lora" else "--model"
        if reward_model:
            lines.append(f"  score with it:   swift infer {flag} {summary['last_checkpoint']} --val_dataset <file>")
        else:
            lines.append(f"  chat with it:    swift infer {flag} {summary['last_checkpoint']}")
        if tuner_type == "lora":
            lines.append(f"  merge LoRA:      swift export --adapters {summary['last_checkpoint']} --merge_lora true")
    print("\n".join(lines), flush=True)
