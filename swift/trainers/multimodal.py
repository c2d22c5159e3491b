"""`MultiModalTrainer`: `SwiftTrainer` for image, video and audio chat data.

    model = SwiftModel.from_pretrained("qwen-vl")
    trainer = MultiModalTrainer(model=model, args=TrainingArguments(output_dir="out", remove_unused_columns=False),
                                train_dataset=[{"messages": [...], "images": ["cat.jpg"]}, ...])
    trainer.train()

Raw rows (canonical multimodal rows, or a `datasets.Dataset` of them) are checked once and then encoded lazily by
`swift.data.mm_dataset` with the model's processor; the collator batches media tensors with the tokens. For
packed / padding-free batches of a multimodal-RoPE model (Qwen2-VL), the 3-D positions are computed per row here,
so packed rows equal separate rows.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from swift.trainers.sft import SwiftTrainer, _pad_token_id
from swift.utils.errors import SwiftError


def _is_raw_rows(dataset: Any) -> bool:
    if dataset is None or isinstance(dataset, torch.utils.data.Dataset) and hasattr(dataset, "encoder"):
        return False
    try:
        first = dataset[0]
    except (IndexError, KeyError, TypeError):
        return False
    if not isinstance(first, Mapping) or "input_ids" in first:
        return False
    from swift.data.formats import detect_format

    return detect_format(first.keys()) not in (None, "text")


def _rope_owner(model: nn.Module) -> nn.Module | None:
    for module in model.modules():
        if callable(getattr(module, "get_rope_index", None)):
            return module
    return None


def packed_mrope_position_ids(model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    """(4, 1, L) position ids of a padding-free row for a multimodal-RoPE model: row 0 the text positions (which
    tell attention where rows start), rows 1-3 each packed row's own 3-D positions."""
    owner = _rope_owner(model)
    pos = inputs["position_ids"]
    if owner is None or pos.dim() != 2 or pos.shape[0] != 1:
        return pos
    ids, types = inputs["input_ids"][0], inputs["mm_token_type_ids"][0]
    starts = (pos[0] == 0).nonzero().flatten().tolist() + [ids.shape[0]]
    spans = list(zip(starts, starts[1:]))
    width = max(b - a for a, b in spans)
    ids_b = ids.new_zeros((len(spans), width))
    types_b = types.new_zeros((len(spans), width))
    mask = ids.new_zeros((len(spans), width))
    for k, (a, b) in enumerate(spans):
        ids_b[k, :b - a], types_b[k, :b - a], mask[k, :b - a] = ids[a:b], types[a:b], 1
    extra = {k: inputs[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts") if k in inputs}
    rope, _ = owner.get_rope_index(ids_b, types_b, attention_mask=mask, **extra)
    flat = torch.cat([rope[:, k, :b - a] for k, (a, b) in enumerate(spans)], dim=1)  # (3, L)
    return torch.cat([pos[None], flat[:, None, :].to(pos.dtype)], dim=0)


class MultiModalTrainer(SwiftTrainer):
    """Train on multimodal chat rows (see the module docstring).

    Args:
        model: A transformers multimodal model, or a `SwiftModel` (its processor is used).
        args: `transformers.TrainingArguments` (keep `remove_unused_columns=False`; it is forced off).
        train_dataset: Canonical rows ({"messages", "images"/"videos"/"audios"}), a `datasets.Dataset` of them,
            or a dataset from `swift.data.prepare_mm_dataset`.
        eval_dataset: As train_dataset.
        processing_class: The model's processor; defaults to the SwiftModel's.
        template: The text template; defaults to the tokenizer's own chat template.
        encoder: A ready `MultiModalEncoder` (overrides template and the pixel options).
        packing: Pack rows into sequences of template max_length tokens. padding_free: one row per batch.
        strict: A bad row or media file stops (False: dropped and counted).
        max_pixels, min_pixels, video_max_pixels, fps, max_frames: Media budget (see `MultiModalEncoder`).
        **kwargs: As `SwiftTrainer`.
    """

    def __init__(self, model: nn.Module, args: Any, train_dataset: Any = None, eval_dataset: Any = None, *,
                 data_collator: Any = None, processing_class: Any = None, template: Any = None, encoder: Any = None,
                 packing: bool = False, padding_free: bool = False, strict: bool = True,
                 max_pixels: int | None = None, min_pixels: int | None = None, video_max_pixels: int | None = None,
                 fps: float = 2.0, max_frames: int = 16, num_proc: int = 1, **kwargs: Any) -> None:
        if processing_class is None and callable(getattr(model, "unwrap", None)):
            processing_class = getattr(model, "tokenizer", None)
        if getattr(args, "remove_unused_columns", False):
            args.remove_unused_columns = False  # the media columns are model inputs
        inner = model.unwrap() if callable(getattr(model, "unwrap", None)) else model
        self._mm = dict(model_type=getattr(inner.config, "model_type", None), encoder=encoder, packing=packing,
                        padding_free=padding_free, strict=strict, num_proc=num_proc,
                        media=dict(max_pixels=max_pixels, min_pixels=min_pixels, video_max_pixels=video_max_pixels,
                                   fps=fps, max_frames=max_frames))
        self.mm_encoder = encoder
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         data_collator=data_collator, processing_class=processing_class, template=template, **kwargs)
        self._mrope = bool(getattr(self.mm_encoder, "plugin", None) and self.mm_encoder.plugin.mrope)

    def _prepare_data(self, train_dataset: Any, eval_dataset: Any, data_collator: Any, processing_class: Any
                      ) -> tuple[Any, Any, Any]:
        from swift.data.mm_dataset import MultiModalCollator, normalize_mm_rows, prepare_mm_dataset
        from swift.data.mm_encode import MultiModalEncoder

        opts = self._mm
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        evals = eval_dataset if isinstance(eval_dataset, dict) else {None: eval_dataset}
        if _is_raw_rows(train_dataset) or any(_is_raw_rows(d) for d in evals.values()):
            if self.mm_encoder is None:
                if processing_class is None:
                    raise SwiftError("multimodal rows need the model's processor: pass processing_class= or load "
                                     "the model with SwiftModel.from_pretrained")
                if self.template is None:
                    from swift.templates import get_template

                    self.template = get_template(tokenizer)
                self.mm_encoder = MultiModalEncoder(self.template, processing_class, opts["model_type"],
                                                    **opts["media"])

            def prepare(ds: Any, desc: str) -> Any:
                if not _is_raw_rows(ds):
                    return ds
                rows = normalize_mm_rows(list(ds), desc if desc.startswith("val") else "train_dataset")
                return prepare_mm_dataset(rows, self.mm_encoder, strict=opts["strict"], desc=desc,
                                          num_proc=opts["num_proc"], packing=opts["packing"])

            train_dataset = prepare(train_dataset, "train")
            evals = {k: prepare(v, "val" if k is None else f"val:{k}") for k, v in evals.items()}
            eval_dataset = evals if isinstance(eval_dataset, dict) else evals[None]
        if self.mm_encoder is None:
            self.mm_encoder = getattr(train_dataset, "encoder", None) or getattr(
                getattr(train_dataset, "base", None), "encoder", None)
        if data_collator is None:
            data_collator = MultiModalCollator(_pad_token_id(tokenizer), padding_free=opts["padding_free"])
        return train_dataset, eval_dataset, data_collator

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        if self._mrope and "position_ids" in inputs and "mm_token_type_ids" in inputs:
            inputs = {**inputs, "position_ids": packed_mrope_position_ids(model, inputs)}
        if "position_ids" in inputs:
            inputs = {**inputs, "use_cache": False}  # with a cache, packed rows would attend to each other
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)
