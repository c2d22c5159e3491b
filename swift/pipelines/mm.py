"""Multimodal glue for the pipelines: the encoder of a model, and its datasets."""
from __future__ import annotations

from typing import Any

from swift.pipelines.arguments import ParsedArgs
from swift.pipelines.common import rows_fingerprint
from swift.utils.errors import ArgumentError


def model_type_of(model: Any) -> str | None:
    """config.json's model_type of a (possibly peft-wrapped) model."""
    inner = model.unwrap() if callable(getattr(model, "unwrap", None)) else model
    return getattr(getattr(inner, "config", None), "model_type", None)


def make_mm_encoder(args: ParsedArgs, template: Any, processor: Any, model: Any) -> Any:
    """A `MultiModalEncoder` for a multimodal model (None for a text model), with the --max_pixels etc. flags."""
    from swift.templates.mm_plugins import get_plugin

    model_type = model_type_of(model)
    if get_plugin(model_type) is None:
        return None
    from swift.data.mm_encode import MultiModalEncoder

    t = args.groups["TemplateArguments"]
    return MultiModalEncoder(template, processor, model_type, max_pixels=t.max_pixels, min_pixels=t.min_pixels,
                             video_max_pixels=t.video_max_pixels, fps=t.fps or 2.0, max_frames=t.max_frames or 16)


def load_mm_data(args: ParsedArgs, encoder: Any, mode: str) -> tuple[Any, Any, dict[str, Any]]:
    """(train dataset, val dataset or None, fingerprints) of --dataset / --val_dataset for a multimodal model."""
    from swift.data.mm_dataset import prepare_mm_dataset
    from swift.pipelines.sft import load_rows

    if mode != "sft":
        raise ArgumentError("model", f"`swift {mode}` trains text only; use `swift sft` for a multimodal model")
    d = args.groups["DataArguments"]
    train_rows, val_rows = load_rows(args, mode, example="coco-en")
    opts = dict(strict=d.strict, num_proc=d.dataset_num_proc, packing=d.packing)
    train_ds = prepare_mm_dataset(train_rows, encoder, desc="train", **opts)
    val_ds = prepare_mm_dataset(val_rows, encoder, desc="val", **opts) if val_rows else None
    return train_ds, val_ds, {"train": rows_fingerprint(train_rows), "val": rows_fingerprint(val_rows)}
