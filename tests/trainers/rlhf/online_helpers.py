"""Builders shared by the online trainer tests (ppo, grpo): prompt rows and the biased toy policy.

Prompt rows follow the data contract's "prompt" kind: `prompt_ids` = `template.encode_prompt(history)`,
`messages` = the history as a JSON string, plus extra columns (e.g. `solution`).
"""
from __future__ import annotations

import json
from typing import Any

import torch
from datasets import Dataset

# The toy task of the quality tests: the policy mostly samples among CANDIDATES; the reward is the share of
# TARGET in the completion, about 1/8 at the start.
CANDIDATES = list(range(100, 108))
TARGET = 100


def prompt_dataset(template: Any, n: int = 8, offset: int = 0) -> Dataset:
    """Arithmetic questions with their `solution`."""
    rows = []
    for i in range(offset, offset + n):
        history = [{"role": "user", "content": f"What is {i} plus {i}?"}]
        rows.append({"prompt_ids": template.encode_prompt(history), "messages": json.dumps(history),
                     "solution": str(2 * i)})
    return Dataset.from_list(rows)


def target_rate(completions: list[str], completion_ids: list[list[int]], **kwargs: Any) -> list[float]:
    """The toy reward: the share of TARGET among the completion's tokens."""
    return [sum(t == TARGET for t in ids) / max(len(ids), 1) for ids in completion_ids]


def biased_policy(model_dir: str, lora: bool = True, candidates: list[int] | None = None) -> tuple[Any, Any, Any]:
    """(model, tokenizer, template): a tiny untied model whose next token is almost always one of `candidates`
    (default CANDIDATES).

    Every token embedding gets a large constant in hidden dimension 0, so the final hidden state always points
    that way; only the CANDIDATES' output rows read that dimension (the others are zero), which gives them most
    of the probability. Their random remaining weights let the adapters shift the mass between them.
    """
    from swift.models.loader import load_model_and_tokenizer
    from swift.templates import get_template

    model, tokenizer, _ = load_model_and_tokenizer(model_dir)
    candidates = CANDIDATES if candidates is None else candidates
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        model.model.embed_tokens.weight[:, 0] = 10.0
        head = model.lm_head.weight
        head.zero_()
        head[candidates, 0] = 1.4
        head[candidates, 1:] = torch.randn(len(candidates), head.size(1) - 1, generator=g) * 0.5
    if lora:
        from swift.tuners import LoRAConfig, prepare_model

        torch.manual_seed(0)
        model = prepare_model(model, tuner_type="lora", lora=LoRAConfig(r=8, alpha=16, dropout=0.0))
    return model, tokenizer, get_template(tokenizer)


def rewards_logged(trainer: Any) -> list[float]:
    """The mean reward of each logged rollout, in order."""
    return [r["reward"] for r in trainer.state.log_history if "reward" in r]
