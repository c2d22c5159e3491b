"""The maths of PPO for language models, as small pure functions over tensors.

Following Ouyang et al. 2022 and "The N Implementation Details of RLHF with PPO" (Huang et al. 2024):
the reward of a completion is paid at its last token; every token also pays `-kl_coef * (log pi - log pi_ref)`
(the k1 estimate of the KL to the reference); advantages come from GAE (gamma, lam) over the value head's
estimates and are whitened over the batch's real tokens; the policy loss is the clipped surrogate and the
value loss the clipped squared error, both averaged over real tokens.

Shapes: `[batch, T]` over the completion tokens; `mask` is 1 on real tokens, 0 on right padding (every row's
real tokens come first).

The end of the file holds what the online trainers share besides the maths: dropout switched off, padding.
"""
from __future__ import annotations

import torch
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `x` where `mask` is 1 (over everything, or along `dim`)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries (unbiased variance, as TRL's PPO); with `shift_mean=False` the
    mean is added back (whitened scale, original centre). Entries outside the mask are returned as 0."""
    mask = mask.to(x.dtype)
    n = mask.sum()
    mean = (x * mask).sum() / n.clamp(min=1.0)
    var = (((x - mean) ** 2) * mask).sum() / (n - 1).clamp(min=1.0)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def logprobs_of(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(ids) under `logits / temperature`; logits [B, T, V], ids [B, T] -> [B, T] (float32)."""
    logits = logits.float() / temperature
    return torch.gather(logits.log_softmax(-1), -1, ids.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def entropy_of(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of `softmax(logits / temperature)` per position, [B, T, V] -> [B, T] (float32, no gradient),
    one row at a time so that no float32 copy of the whole batch's logits is made."""
    rows = []
    for row in logits:
        logp = (row.float() / temperature).log_softmax(-1)
        rows.append(-(logp.exp() * logp).sum(-1))
    return torch.stack(rows)


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from the sampled tokens' log-probabilities.

    k1 = log pi - log pi_ref (unbiased, the PPO reward penalty); k3 = (r - 1) - log r with r = pi_ref / pi
    (unbiased and never negative, GRPO's); abs = |k1|; mse = k1^2 / 2.
    """
    diff = logprobs - ref_logprobs
    if kind == "k1":
        return diff
    if kind == "k3":
        return torch.expm1(-diff) + diff
    if kind == "abs":
        return diff.abs()
    if kind == "mse":
        return 0.5 * diff.square()
    raise ValueError(f"unknown KL estimator {kind!r}; use k1, k3, abs or mse")


def token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
                  kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: `-kl_coef * k1` on every real token, plus the completion's score on its last one.

    Args:
        scores: [B] reward of each completion.
        logprobs, ref_logprobs: [B, T] log-probabilities of the sampled tokens under the policy and the reference.
        mask: [B, T] real completion tokens.
        kl_coef: weight of the KL penalty.

    Returns:
        (rewards [B, T], kl [B, T]), both 0 on padding.
    """
    mask = mask.to(logprobs.dtype)
    kl = kl_estimate(logprobs, ref_logprobs, "k1") * mask
    rewards = -kl_coef * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rows = torch.arange(rewards.size(0), device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype) * (mask.sum(1) > 0).to(rewards.dtype)
    return rewards, kl


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                   lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over each row's real tokens.

    delta_t = r_t + gamma * V_{t+1} - V_t (V after the last real token is 0: the episode ends there);
    A_t = delta_t + gamma * lam * A_{t+1}; returns = A + V.

    Returns:
        (advantages [B, T], returns [B, T]), 0 on padding.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    steps = rewards.size(1)
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                cliprange: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped surrogate: mean over real tokens of max(-A * ratio, -A * clip(ratio, 1 - c, 1 + c)).

    Returns:
        (loss, stats) with stats `clipfrac` (share of tokens where the clipped term won) and `approx_kl`
        (mean of (log ratio)^2 / 2), both detached.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped > unclipped).float(), mask),
                 "approx_kl": masked_mean(0.5 * log_ratio.square(), mask)}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped value loss: 0.5 * mean over real tokens of max((V - R)^2, (clip(V, V_old +- c) - R)^2).

    Returns:
        (loss, clipfrac) where clipfrac is the share of tokens where the clipped error was larger (detached).
    """
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    err = (values - returns).square()
    err_clipped = (clipped_values - returns).square()
    loss = 0.5 * masked_mean(torch.max(err, err_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((err_clipped > err).float(), mask)
    return loss, clipfrac


class ValueHead(nn.Module):
    """V(s_t) = w . h_t + b on the policy's last hidden state; starts at 0 (zero weights) so the first
    advantages are the rewards themselves."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """[B, T, H] -> [B, T] (float32)."""
        return self.summary(hidden_states.to(self.summary.weight.dtype)).squeeze(-1).float()


def truncate_at_stop(ids: list[int], stop_ids: list[int] | set[int]) -> list[int]:
    """The generated ids up to and including the first stop token (the rest, padding included, is dropped)."""
    stops = set(stop_ids)
    for i, t in enumerate(ids):
        if t in stops:
            return ids[:i + 1]
    return ids


def pad_sequences(seqs: list[list[int]], pad: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists to one width on the `side` ("left" or "right"): (ids [B, W], mask [B, W])."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), int(pad), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        cols = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[i, cols] = torch.tensor(s, dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask


# ---- shared by the online trainers -------------------------------------------------------------------------
def disable_dropout(model: nn.Module) -> None:
    """Set every dropout to 0: the rollout, the old log-probabilities and the update must see the same policy."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


__all__ = ["disable_dropout", "masked_mean", "masked_whiten", "logprobs_of", "entropy_of", "kl_estimate",
           "token_rewards", "gae_advantages", "policy_loss", "value_loss", "ValueHead", "truncate_at_stop",
           "pad_sequences"]
