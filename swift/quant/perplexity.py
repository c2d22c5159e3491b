"""Perplexity on held-out token sequences: the check every quantized export is measured by."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


@torch.no_grad()
def perplexity(model: nn.Module, samples: Sequence[torch.Tensor], *, progress: bool = False,
               desc: str = "perplexity") -> float:
    """exp(mean negative log-likelihood per predicted token) over `samples`.

    Every token after the first of each sample is predicted; the mean is over all those tokens together (a long
    sample weighs more than a short one), which is how perplexity over a corpus is usually reported.

    Args:
        model: A causal LM returning `.logits`.
        samples: Token id tensors, 1-D or [1, L]; each needs at least two tokens.
        progress: Show a progress bar.
        desc: Its label.

    Raises:
        ValueError: no sample has two tokens.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    device = _input_device(model)
    total_nll, total_tokens = 0.0, 0
    try:
        for ids in tqdm(samples, desc=desc, disable=not progress, leave=False):
            ids = ids.reshape(1, -1).to(device)
            if ids.shape[1] < 2:
                continue
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
            nll = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                              reduction="sum")
            total_nll += float(nll)
            total_tokens += ids.shape[1] - 1
    finally:
        model.train(was_training)
    if total_tokens == 0:
        raise ValueError("perplexity needs at least one sample of two or more tokens")
    return math.exp(total_nll / total_tokens)


def _input_device(model: nn.Module) -> torch.device:
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embed, "weight", None)
    if weight is not None and weight.device.type != "meta":
        return weight.device
    return next(model.parameters()).device
