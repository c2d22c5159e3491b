"""The offline preference losses as small pure functions (torch only).

The trainers run TRL's implementations; these functions are the reference the tests hold TRL's numbers to (and
the benchmark's naive baseline uses). Every function takes per-sequence log-probabilities (sums over the
completion tokens, or means where the algorithm is length-normalised) and returns per-example losses unless it
says otherwise; the trainers average them over the batch.

Variants live in dicts (`DPO_LOSSES`), so `loss_type` picks one by name.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def completion_logps(logits: torch.Tensor, labels: torch.Tensor, *, average: bool = False) -> torch.Tensor:
    """Log-probability of each sequence's labelled tokens (position t of `logits` predicts label t+1).

    Args:
        logits: [batch, seq, vocab] causal-LM outputs.
        labels: [batch, seq] token ids, `IGNORE_INDEX` where no token is scored (prompt, padding).
        average: Mean over the scored tokens instead of the sum.

    Returns:
        [batch] float32 log-probabilities.
    """
    labels = labels[:, 1:]
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    mask = labels != IGNORE_INDEX
    token_logps = logps.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    total = token_logps.sum(-1)
    return total / mask.sum(-1).clamp(min=1) if average else total


# ---- DPO family: functions of the margin delta = chosen log-ratio - rejected log-ratio ---------------------------
def _sigmoid(delta: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """DPO (Rafailov et al. 2023); with label_smoothing eps, conservative DPO: the label is flipped with prob eps."""
    return (-(1 - label_smoothing) * F.logsigmoid(beta * delta)
            - label_smoothing * F.logsigmoid(-beta * delta))


def _hinge(delta: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """SLiC's hinge: zero once beta * delta reaches 1."""
    return torch.relu(1 - beta * delta)


def _ipo(delta: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """IPO (Azar et al. 2023, eq. 17): regress the margin onto 1 / (2 beta); beta is the paper's tau."""
    return (delta - 1 / (2 * beta)) ** 2


DPO_LOSSES: dict[str, Callable[[torch.Tensor, float, float], torch.Tensor]] = {
    "sigmoid": _sigmoid,
    "hinge": _hinge,
    "ipo": _ipo,
}


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair DPO loss of summed completion log-probs under the policy and the reference.

    Args:
        chosen_logps, rejected_logps: [batch] policy log-probs of the chosen / rejected completions.
        ref_chosen_logps, ref_rejected_logps: [batch] the same under the reference model.
        beta: Strength of the KL constraint (IPO's tau).
        loss_type: A key of `DPO_LOSSES`.
        label_smoothing: Flip probability of a preference label (sigmoid only; conservative DPO).
        chosen_lengths, rejected_lengths: Completion token counts; IPO divides each log-ratio by its length
            (TRL's normalisation, confirmed with the IPO authors). Without them IPO uses the sums.

    Returns:
        [batch] losses.
    """
    if loss_type not in DPO_LOSSES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; expected one of {sorted(DPO_LOSSES)}")
    chosen_ratio = chosen_logps - ref_chosen_logps
    rejected_ratio = rejected_logps - ref_rejected_logps
    if loss_type == "ipo" and chosen_lengths is not None and rejected_lengths is not None:
        chosen_ratio = chosen_ratio / chosen_lengths.clamp(min=1)
        rejected_ratio = rejected_ratio / rejected_lengths.clamp(min=1)
    return DPO_LOSSES[loss_type](chosen_ratio - rejected_ratio, beta, label_smoothing)


# ---- reference-free pairs ----------------------------------------------------------------------------------------
def cpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-pair CPO preference loss (Xu et al. 2024): DPO's losses with the policy alone (no reference).

    The full CPO objective adds `cpo_alpha` times the NLL of the chosen replies (see `cpo_objective`).
    IPO here takes length-averaged log-probs, as TRL's CPO does.
    """
    if loss_type not in DPO_LOSSES:
        raise ValueError(f"unknown CPO loss_type {loss_type!r}; expected one of {sorted(DPO_LOSSES)} or 'simpo'")
    return DPO_LOSSES[loss_type](chosen_logps - rejected_logps, beta, label_smoothing)


def simpo_loss(
    chosen_avg_logps: torch.Tensor,
    rejected_avg_logps: torch.Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 1.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-pair SimPO loss (Meng et al. 2024): -log sigmoid(beta * (avg_chosen - avg_rejected) - gamma).

    Args:
        chosen_avg_logps, rejected_avg_logps: [batch] log-probs averaged over each completion's tokens.
        beta: Reward scale.
        gamma: Target reward margin (ms-swift's `simpo_gamma`).
        label_smoothing: Flip probability of a preference label.
    """
    return _sigmoid(chosen_avg_logps - rejected_avg_logps - gamma / beta, beta, label_smoothing)


def cpo_objective(preference_losses: torch.Tensor, chosen_nll: torch.Tensor, cpo_alpha: float) -> torch.Tensor:
    """CPO / SimPO total: mean preference loss + cpo_alpha * NLL of the chosen completions (a scalar)."""
    return preference_losses.mean() + cpo_alpha * chosen_nll


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, without cancellation on either side of -log 2."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_log_odds_ratio(chosen_avg_logps: torch.Tensor, rejected_avg_logps: torch.Tensor) -> torch.Tensor:
    """log sigmoid(log odds(chosen) - log odds(rejected)) per pair, odds(y) = P / (1 - P) of the per-token
    average log-prob (ORPO, Hong et al. 2024, eqs. 4 and 7)."""
    c, r = chosen_avg_logps.float(), rejected_avg_logps.float()
    log_odds = (c - r) - (_log1mexp(c) - _log1mexp(r))
    return F.logsigmoid(log_odds)


def orpo_loss(
    chosen_avg_logps: torch.Tensor, rejected_avg_logps: torch.Tensor, chosen_nll: torch.Tensor, *, beta: float = 0.1
) -> torch.Tensor:
    """ORPO total (a scalar): NLL of the chosen sequences - beta * mean log-odds-ratio term.

    Args:
        chosen_avg_logps, rejected_avg_logps: [batch] per-token average completion log-probs.
        chosen_nll: The SFT loss on the chosen sequences (TRL takes it over prompt and reply).
        beta: Weight of the odds-ratio term (the paper's lambda).
    """
    return chosen_nll - beta * orpo_log_odds_ratio(chosen_avg_logps, rejected_avg_logps).mean()


# ---- unpaired ----------------------------------------------------------------------------------------------------
def kto_kl(kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z0: the batch-mean log-ratio of mismatched (prompt, completion) pairs, >= 0, detached."""
    return (kl_logps - ref_kl_logps).mean().detach().clamp(min=0)


def kto_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    kl: torch.Tensor | float,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """Per-example KTO loss (Ethayarajh et al. 2024, eq. 7).

    desirable: w_d * (1 - sigmoid(beta * (r - kl))); undesirable: w_u * (1 - sigmoid(beta * (kl - r))), where
    r = logps - ref_logps.

    Args:
        logps, ref_logps: [batch] summed completion log-probs under the policy and the reference.
        labels: [batch] bools, True for a desirable completion.
        kl: The reference point (`kto_kl`).
    """
    reward = logps - ref_logps
    labels = labels.to(torch.bool)
    desirable = desirable_weight * (1 - torch.sigmoid(beta * (reward - kl)))
    undesirable = undesirable_weight * (1 - torch.sigmoid(beta * (kl - reward)))
    return torch.where(labels, desirable, undesirable)


# ---- reward model ------------------------------------------------------------------------------------------------
def pairwise_reward_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    margin: torch.Tensor | None = None,
    center_rewards_coefficient: float | None = None,
) -> torch.Tensor:
    """Bradley-Terry loss of a reward model (a scalar): -mean log sigmoid(r_chosen - r_rejected - margin), plus
    `center_rewards_coefficient * mean((r_chosen + r_rejected)^2)` to keep rewards near zero (Eisenstein et al.)."""
    diff = chosen_rewards - rejected_rewards
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    if center_rewards_coefficient:
        loss = loss + center_rewards_coefficient * torch.mean((chosen_rewards + rejected_rewards) ** 2)
    return loss
