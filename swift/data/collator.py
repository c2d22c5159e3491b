"""`DataCollator`: encoded rows -> a model batch (padded, or padding-free).

- Padded (default): right padding with `pad_token_id`, an `attention_mask`, labels -100 on pads.
- Padding-free (`padding_free=True`, and always for packed rows, which carry `position_ids`): the whole batch
  becomes ONE row `[1, total_tokens]` with `position_ids` restarting at 0 per row and NO `attention_mask`.
  transformers (sdpa / eager / flash attention) then keeps rows from attending to each other, as long as the
  forward pass has no KV cache (`use_cache=False`, the default in training). The label of each row's first
  token is set to -100 so no loss term predicts one row from the previous one.

Only model inputs are returned (input_ids, labels, attention_mask or position_ids). The number of real
(non-padding) tokens of the batch is kept in `DataCollator.last_num_tokens`, and `count_tokens(batch)`
computes it from a collated batch: use either for tokens/s; neither reaches the model's forward.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

IGNORE_INDEX = -100


def count_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Real (non-padding) tokens of a batch made by `DataCollator`."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())


def _tensor(values: Any) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.long)


class DataCollator:
    """Batches encoded rows (dicts with input_ids, optional labels and position_ids).

    Args:
        pad_token_id: the token used for padding (padded mode only).
        padding_free: concatenate the batch into one row instead of padding.
        pad_to_multiple_of: round the padded length up to a multiple of this (padded mode only; a
            padding-free batch has no padding).

    Attributes:
        last_num_tokens: real tokens of the last batch built.
    """

    def __init__(self, pad_token_id: int, padding_free: bool = False, pad_to_multiple_of: int | None = None):
        if pad_token_id is None:
            raise ValueError("pad_token_id is None: set the tokenizer's pad token (or use its eos token)")
        if pad_to_multiple_of is not None and pad_to_multiple_of <= 0:
            raise ValueError(f"pad_to_multiple_of must be positive, got {pad_to_multiple_of}")
        self.pad_token_id = int(pad_token_id)
        self.padding_free = padding_free
        self.pad_to_multiple_of = pad_to_multiple_of
        self.last_num_tokens = 0

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        if self.padding_free or "position_ids" in features[0]:
            batch = self._padding_free(features)
        else:
            batch = self._padded(features)
        self.last_num_tokens = count_tokens(batch)
        return batch

    def _padded(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(f["input_ids"]) for f in features]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        has_labels = "labels" in features[0]
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long) if has_labels else None
        for i, (f, n) in enumerate(zip(features, lengths)):
            input_ids[i, :n] = _tensor(f["input_ids"])
            attention_mask[i, :n] = 1
            if labels is not None:
                labels[i, :n] = _tensor(f["labels"])
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if labels is not None:
            batch["labels"] = labels
        return batch

    def _padding_free(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids = torch.cat([_tensor(f["input_ids"]) for f in features])
        position_ids = torch.cat([_tensor(f["position_ids"]) if "position_ids" in f
                                  else torch.arange(len(f["input_ids"]), dtype=torch.long) for f in features])
        batch = {"input_ids": input_ids[None], "position_ids": position_ids[None]}
        if "labels" in features[0]:
            labels = torch.cat([_tensor(f["labels"]) for f in features])
            labels[position_ids == 0] = IGNORE_INDEX  # no loss across a row boundary
            batch["labels"] = labels[None]
        return batch
