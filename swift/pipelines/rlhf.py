"""`swift rlhf --rlhf_type dpo|kto|cpo|simpo|orpo|rm|ppo|grpo|gkd`: the SFT pipeline's model, template, data and
tuner, then the algorithm's trainer (`swift.trainers.rlhf`)."""
from __future__ import annotations

import time
from typing import Any

from swift.pipelines.arguments import ParsedArgs
from swift.pipelines.common import (
    new_run_dir,
    package_versions,
    public_args,
    report_result,
    rows_fingerprint,
    write_run_files,
)
from swift.pipelines.sft import (
    load_model,
    make_template,
    prepare_tuner,
    print_summary,
    resolve_resume,
    training_kwargs,
)
from swift.utils.errors import ArgumentError, SwiftError
from swift.utils.logging import get_logger, quiet_library_warnings

logger = get_logger("swift.rlhf")

# rlhf_type -> (dataset mode of load_datasets, encoded kind); gkd trains on SFT rows.
DATA_KINDS: dict[str, tuple[str, str]] = {
    "dpo": ("preference", "preference"), "cpo": ("preference", "preference"),
    "simpo": ("preference", "preference"), "orpo": ("preference", "preference"), "rm": ("preference", "preference"),
    "kto": ("kto", "kto"), "ppo": ("prompt", "prompt"), "grpo": ("prompt", "prompt"), "gkd": ("sft", "sft"),
}
# Default beta per algorithm (ms-swift's / TRL's); ppo uses kl_coef.
DEFAULT_BETA = {"dpo": 0.1, "kto": 0.1, "cpo": 0.1, "orpo": 0.1, "simpo": 2.0, "grpo": 0.04, "gkd": 0.5}
# RLHFArguments fields handed to the trainer builders (the rest choose models and data).
_ALGO_KEYS = ("beta", "loss_type", "loss_weights", "rpo_alpha", "label_smoothing", "cpo_alpha", "simpo_gamma",
              "desirable_weight", "undesirable_weight", "center_rewards_coefficient", "num_generations",
              "max_completion_length", "temperature", "reward_weights", "lmbda", "seq_kd", "num_ppo_epochs",
              "kl_coef", "cliprange", "cliprange_value", "vf_coef", "gamma", "lam")


def _load_data(args: ParsedArgs, template, rlhf_type: str):
    from swift.data import encode_preference_rows, encode_rows, load_datasets

    d, tr = args.groups["DataArguments"], args.groups["TrainArguments"]
    if not d.dataset:
        raise ArgumentError("dataset", "give at least one dataset (a file or a hub id)")
    mode, kind = DATA_KINDS[rlhf_type]
    train_rows, val_rows = load_datasets(
        d.dataset, val_datasets=d.val_dataset, split_dataset_ratio=d.split_dataset_ratio,
        seed=d.data_seed if d.data_seed is not None else tr.seed, strict=d.strict, model_name=d.model_name,
        model_author=d.model_author, use_hf=args.groups["ModelArguments"].use_hf, mode=mode,
    )
    enc = dict(num_proc=d.dataset_num_proc, strict=d.strict, load_from_cache_file=d.load_from_cache_file)
    if kind == "sft":
        def encode(rows, desc):
            return encode_rows(rows, template, desc=desc, **enc)
    else:
        def encode(rows, desc):
            return encode_preference_rows(rows, template, kind=kind, desc=desc, **enc)
    train_ds = encode(train_rows, "train")
    val_ds = encode(val_rows, "val") if val_rows else None
    return train_ds, val_ds, {"train": rows_fingerprint(train_rows), "val": rows_fingerprint(val_rows)}


def _algo_args(args: ParsedArgs) -> dict[str, Any]:
    r = args.groups["RLHFArguments"]
    out = {k: getattr(r, k) for k in _ALGO_KEYS}
    if out["beta"] is None:
        out["beta"] = DEFAULT_BETA.get(r.rlhf_type)
    if r.rlhf_type == "simpo":
        out["loss_type"] = ["simpo"]
    out["max_length"] = args.groups["TemplateArguments"].max_length
    if r.rlhf_type == "dpo":
        out["padding_free"] = args.groups["DataArguments"].padding_free
    return {k: v for k, v in out.items() if v is not None}


def _side_models(args: ParsedArgs, tuner_type: str) -> dict[str, Any]:
    """Reference, reward and teacher models the algorithm asks for."""
    r = args.groups["RLHFArguments"]
    out: dict[str, Any] = {}
    uses_ref = r.rlhf_type in ("dpo", "kto") or (r.rlhf_type == "ppo" and r.kl_coef > 0) or (
        r.rlhf_type == "grpo" and (r.beta is None or r.beta > 0))
    if r.ref_model and not uses_ref:
        logger.warning(f"--ref_model is not used by {r.rlhf_type} with these settings; not loading it")
    elif r.ref_model:
        out["ref_model"] = load_model(args, r.ref_model, flag="ref_model")[0].eval()
    elif uses_ref and tuner_type != "lora":
        # full tuning needs a frozen copy; with LoRA the trainer disables the adapters instead
        out["ref_model"] = load_model(args)[0].eval()
    if r.reward_model:
        out["reward_model"] = load_model(args, r.reward_model, task="seq_cls", flag="reward_model")[0].eval()
    if r.teacher_model:
        out["teacher_model"] = load_model(args, r.teacher_model, flag="teacher_model")[0].eval()
    return out


def _reward_funcs(args: ParsedArgs):
    r = args.groups["RLHFArguments"]
    if not r.reward_funcs and not r.external_plugins:
        return None
    from swift.trainers.rlhf.rewards import load_reward_funcs

    return load_reward_funcs(r.reward_funcs, external_plugins=r.external_plugins) or None


# Loss names TRL 1.16 knows but checks only at the first training step (dpo, grpo); kto/cpo check at build time.
LOSS_TYPES = {
    "dpo": ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
            "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"),
    "grpo": ("grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo", "vespo"),
}


def _check_before_loading(args: ParsedArgs) -> None:
    """Combinations that would otherwise fail only after the models and data are loaded."""
    r, tr, d = args.groups["RLHFArguments"], args.groups["TrainArguments"], args.groups["DataArguments"]
    if d.packing:
        raise ArgumentError("packing", "swift rlhf does not pack rows; drop --packing (dpo takes --padding_free true)")
    if d.padding_free and r.rlhf_type != "dpo":
        raise ArgumentError("padding_free", f"only --rlhf_type dpo runs padding-free; drop it for {r.rlhf_type}")
    if args.groups["TunerArguments"].lorap_lr_ratio:
        raise ArgumentError("lorap_lr_ratio", "LoRA+ is available in swift sft only; drop it for swift rlhf")
    if r.rlhf_type == "simpo" and r.loss_type and r.loss_type != ["simpo"]:
        raise ArgumentError("loss_type", f"--rlhf_type simpo is CPO with loss_type simpo; for "
                            f"{' '.join(r.loss_type)} use --rlhf_type cpo")
    known = LOSS_TYPES.get(r.rlhf_type)
    unknown = [t for t in (r.loss_type or []) if known and t not in known]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ArgumentError("loss_type", f"unknown {r.rlhf_type} loss {unknown[0]!r}; expected one of "
                            f"{', '.join(known)}.{hint}")
    batch = tr.per_device_train_batch_size * tr.gradient_accumulation_steps
    if r.rlhf_type == "grpo" and batch % r.num_generations:
        raise ArgumentError("num_generations", f"grpo samples --num_generations {r.num_generations} completions per "
                            f"prompt, so per_device_train_batch_size x gradient_accumulation_steps ({batch}) must be a "
                            f"multiple of it: e.g. --per_device_train_batch_size {r.num_generations}, or "
                            f"--num_generations {max(2, batch)}")
    if r.rlhf_type == "kto" and tr.per_device_train_batch_size < 2:
        raise ArgumentError("per_device_train_batch_size", "kto estimates its KL term from other rows of the batch: "
                            "use at least 2")


def run_rlhf(args: ParsedArgs) -> dict[str, Any]:
    """Align a model and return a summary (run folder, last checkpoint, loss curve, final metrics)."""
    import transformers

    from swift.trainers.rlhf import build_rlhf_trainer

    start = time.time()
    quiet_library_warnings()
    tr, tu, r = args.groups["TrainArguments"], args.groups["TunerArguments"], args.groups["RLHFArguments"]
    transformers.set_seed(tr.seed)
    _check_before_loading(args)
    reuse_dir, resume_ckpt = resolve_resume(tr, tr.output_dir, args.config_file)
    run_dir = reuse_dir or new_run_dir(tr.output_dir, tr.add_version)
    logger.info(f"run folder: {run_dir} ({r.rlhf_type})")
    report_result(command="rlhf", rlhf_type=r.rlhf_type, run_dir=run_dir, status="training")

    task = "seq_cls" if r.rlhf_type == "rm" else "causal_lm"
    model, tokenizer, model_dir = load_model(args, task=task)
    from swift.pipelines.mm import model_type_of
    from swift.templates.mm_plugins import get_plugin

    if get_plugin(model_type_of(model)) is not None:
        raise ArgumentError("model", f"{model_dir} is a multimodal model ({model_type_of(model)}); `swift rlhf` "
                            "aligns text models only so far. Fine-tune it with `swift sft`")
    template = make_template(args, tokenizer)
    reward_funcs = _reward_funcs(args)  # plugins load before data: a typo fails in a second, not after encoding
    from swift.launch.launcher import main_process_first

    with main_process_first(run_dir, "data") as first:  # one writer of the encoding cache, the others read it
        if not first:
            args.groups["DataArguments"].load_from_cache_file = True
        train_ds, val_ds, fingerprints = _load_data(args, template, r.rlhf_type)
    side = _side_models(args, tu.tuner_type)
    model = prepare_tuner(args, model, task_type="SEQ_CLS" if task == "seq_cls" else "CAUSAL_LM")

    flat = dict(public_args(args.flat))
    flat.update(model_dir=str(model_dir), command="rlhf")
    manifest = {"versions": package_versions(), "datasets": fingerprints, "model_dir": str(model_dir),
                "train_rows": len(train_ds), "val_rows": len(val_ds) if val_ds is not None else 0,
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_run_files(run_dir, flat, manifest)

    hf_args = {**training_kwargs(args, run_dir, val_ds is not None), **_algo_args(args)}
    try:
        trainer = build_rlhf_trainer(
            r.rlhf_type, model=model, tokenizer=tokenizer, template=template, train_dataset=train_ds,
            eval_dataset=val_ds, args=hf_args, reward_funcs=reward_funcs, checkpoint_files={"args.json": flat},
            **side,
        )
    except ValueError as e:  # TRL checks its settings (loss names, batch shapes) in its config classes
        raise SwiftError(f"invalid {r.rlhf_type} settings: {e}") from e
    result = trainer.train(resume_from_checkpoint=resume_ckpt)
    from swift.trainers import find_latest_checkpoint

    summary = {
        "run_dir": str(run_dir),
        "last_checkpoint": find_latest_checkpoint(str(run_dir)),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "loss_curve": str(run_dir / "loss_curve.png") if (run_dir / "loss_curve.png").exists() else None,
        "train_loss": getattr(result, "training_loss", None),
        "global_step": trainer.state.global_step,
        "seconds": round(time.time() - start, 1),
    }
    print_summary(summary, tu.tuner_type, reward_model=r.rlhf_type == "rm")
    report_result(**summary, tuner_type=tu.tuner_type, status="finished")
    return summary
