"""Glue between SwiftLab's trainer contract and TRL's offline preference trainers.

- `trl_config`: the flat `args` dict (TrainingArguments fields + ms-swift flag names) -> a TRL config class;
- `as_dataset` / `require_columns`: the encoded datasets of `swift.data.encode_preference_rows`, checked;
- `to_paired_features`: our `prompt_ids`/`chosen_ids`/`rejected_ids` -> the columns CPO/ORPO's collator pads;
- `reference_from_disabled_adapters`: with LoRA the reference model is the policy with its adapters disabled.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from swift.utils.errors import ArgumentError, DataError
from swift.utils.logging import get_logger

logger = get_logger("swift.trainers.rlhf")

IGNORE_INDEX = -100
PREFERENCE_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")
KTO_COLUMNS = ("prompt_ids", "completion_ids", "label")
# TrainingArguments fields whose defaults TRL's configs change (bf16 and gradient checkpointing on, lr 1e-6, logs
# every 10 steps): an unset one gets transformers' default, as in `swift sft`.
_TRL_DEFAULTS = ("bf16", "gradient_checkpointing", "learning_rate", "logging_steps")
_ENCODE_HINT = {
    "preference": "encode the rows with swift.data.encode_preference_rows(rows, template, kind='preference')",
    "kto": "encode the rows with swift.data.encode_preference_rows(rows, template, kind='kto')",
}


def trl_config(config_cls: type, args: dict[str, Any], *, template: Any = None, **fixed: Any) -> Any:
    """Build a TRL config (a `TrainingArguments` subclass) from the flat `args` of the trainer contract.

    Fields in `args` are used as given; `fixed` (already mapped algorithm settings) wins over them. TRL changes
    some TrainingArguments defaults (`_TRL_DEFAULTS`); such a field the caller did not set gets transformers'
    default instead, so an rlhf run behaves like an sft run (no bf16 on a CPU, for one). Keys that
    are not fields of `config_cls` (another algorithm's flags) are ignored. `max_length` defaults to the template's.
    """
    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(config_cls) if f.init}
    hf_defaults = {f.name: f.default for f in dataclasses.fields(TrainingArguments) if f.name in _TRL_DEFAULTS}
    kwargs: dict[str, Any] = {k: v for k, v in hf_defaults.items() if k in fields}
    if "max_length" in fields and getattr(template, "max_length", None):
        kwargs["max_length"] = template.max_length
    values = {**args, **fixed}
    kwargs.update({k: v for k, v in values.items() if k in fields})
    ignored = sorted(k for k in values if k not in fields)
    if ignored:
        logger.debug("%s ignores: %s", config_cls.__name__, ", ".join(ignored))
    try:
        return config_cls(**kwargs)
    except ValueError as e:  # TRL's own checks of a combination of settings
        raise ArgumentError(_flag_in(str(e), kwargs), str(e)) from e


def _flag_in(message: str, kwargs: dict[str, Any]) -> str:
    for name in kwargs:
        if f"`{name}`" in message:
            return name
    return "args"


def single(value: Any, flag: str, default: str) -> str:
    """A one-value flag that the CLI passes as a list (`--loss_type simpo` -> ["simpo"])."""
    if value is None:
        return default
    if isinstance(value, str):
        return value
    values = list(value)
    if len(values) != 1:
        raise ArgumentError(flag, f"this algorithm takes one value, got {values}")
    return str(values[0])


def unwrap_model(model: Any) -> Any:
    """A SwiftModel -> the transformers/peft model it wraps; anything else unchanged."""
    return model.unwrap() if callable(getattr(model, "unwrap", None)) else model


def as_dataset(data: Any) -> Any:
    """A `datasets.Dataset` (lists of row dicts are converted); dicts of them map; None stays None."""
    if data is None:
        return None
    if isinstance(data, dict) and not hasattr(data, "column_names"):
        return {name: as_dataset(d) for name, d in data.items()}
    if isinstance(data, (list, tuple)):
        from datasets import Dataset

        return Dataset.from_list(list(data))
    return data


def column_names(dataset: Any) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None:  # an IterableDataset without known features
        names = list(next(iter(dataset)).keys())
    return list(names)


def require_columns(dataset: Any, columns: Sequence[str], name: str, kind: str) -> None:
    """Raise a DataError naming the missing columns of an encoded dataset."""
    have = column_names(dataset)
    missing = [c for c in columns if c not in have]
    if missing:
        raise DataError(f"the {name} dataset has no column(s) {', '.join(missing)} (it has {', '.join(have)}): "
                        f"{_ENCODE_HINT[kind]}", field=missing[0])


def to_paired_features(example: dict[str, Any], max_length: int | None) -> dict[str, list[int]]:
    """One encoded pair -> TRL's paired columns (`prompt_input_ids`, `chosen_input_ids`, `chosen_labels`, ...).

    Sequences longer than `max_length` lose the end of the completion, as TRL's own tokenizer step does.
    """
    prompt = list(example["prompt_ids"])
    out = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        ids = list(example[f"{side}_ids"])
        if max_length is not None:
            ids = ids[: max(0, max_length - len(prompt))]
        out[f"{side}_input_ids"] = prompt + ids
        out[f"{side}_attention_mask"] = [1] * (len(prompt) + len(ids))
        out[f"{side}_labels"] = [IGNORE_INDEX] * len(prompt) + ids
    return out


def paired_dataset(dataset: Any, max_length: int | None, name: str) -> Any:
    """Our encoded pairs as TRL's paired columns (CPO, ORPO); pairs left without a completion are dropped."""
    require_columns(dataset, PREFERENCE_COLUMNS, name, "preference")
    converted = dataset.map(to_paired_features, fn_kwargs={"max_length": max_length},
                            remove_columns=column_names(dataset))
    kept = converted.filter(_has_completions)
    if hasattr(dataset, "__len__") and len(kept) < len(dataset):
        logger.warning("%s: %d pair(s) dropped: the prompt alone fills max_length=%s",
                       name, len(dataset) - len(kept), max_length)
    return kept


def paired_datasets(train_dataset: Any, eval_dataset: Any, max_length: int | None) -> tuple[Any, Any]:
    """`paired_dataset` over a trainer's train and eval datasets (eval: one, a dict of them, or None)."""
    train_dataset = paired_dataset(train_dataset, max_length, "train")
    if isinstance(eval_dataset, dict):
        eval_dataset = {k: paired_dataset(v, max_length, k) for k, v in eval_dataset.items()}
    elif eval_dataset is not None:
        eval_dataset = paired_dataset(eval_dataset, max_length, "eval")
    return train_dataset, eval_dataset


def _has_completions(ex: dict[str, Any]) -> bool:
    n = len(ex["prompt_input_ids"])
    return len(ex["chosen_input_ids"]) > n and len(ex["rejected_input_ids"]) > n


def drop_long_prompts(dataset: Any, max_length: int | None, name: str, column: str = "prompt_ids") -> Any:
    """Drop rows whose prompt alone fills `max_length` (nothing left to learn once truncated), with a warning."""
    if max_length is None:
        return dataset
    kept = dataset.filter(lambda ex: len(ex[column]) < max_length)
    if hasattr(dataset, "__len__") and len(kept) < len(dataset):
        logger.warning("%s: %d row(s) dropped: the prompt alone fills max_length=%d",
                       name, len(dataset) - len(kept), max_length)
    return kept


def adapter_is_noop(model: Any, adapter: str = "default") -> bool:
    """True when the peft `adapter` leaves the model unchanged (LoRA with every B matrix zero, the usual init)."""
    b_params = [p for n, p in model.named_parameters()
                if f".{adapter}." in n and ("lora_B" in n or "lora_embedding_B" in n)]
    return bool(b_params) and all(not p.detach().any() for p in b_params)


def reference_from_disabled_adapters(model: Any) -> None:
    """Make the reference of a peft policy its adapters-disabled self.

    TRL copies the trained adapter into a frozen "ref" adapter. While the adapter is still a no-op (fresh LoRA),
    disabling the adapters gives the same reference without a second adapter in memory, in every forward and
    in every checkpoint, so the copy is deleted. An adapter that already changes the model (PiSSA/OLoRA
    initialisation, a loaded adapter) keeps TRL's copy: the base alone would not be the starting policy.
    """
    peft_config = getattr(model, "peft_config", None)
    if not peft_config or "ref" not in peft_config:
        return
    if adapter_is_noop(model):
        model.delete_adapter("ref")
    else:
        logger.info("The adapter already changes the model at step 0 (PiSSA/OLoRA init or a loaded adapter): the "
                    "reference is a frozen copy of it, not the base model.")
