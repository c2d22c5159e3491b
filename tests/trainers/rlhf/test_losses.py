"""The pure preference losses against numbers worked out by hand (closed forms with small round inputs)."""
from __future__ import annotations

import math

import pytest
import torch

from swift.trainers.rlhf.losses import (
    DPO_LOSSES,
    completion_logps,
    cpo_loss,
    cpo_objective,
    dpo_loss,
    kto_kl,
    kto_loss,
    orpo_log_odds_ratio,
    orpo_loss,
    pairwise_reward_loss,
    simpo_loss,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def softplus(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x)."""
    return math.log1p(math.exp(x))


# Two pairs. Pair 1: chosen log-ratio -1 - (-2) = +1, rejected -3 - (-2) = -1, margin +2.
# Pair 2: chosen -4 - (-3) = -1, rejected -2 - (-3) = +1, margin -2.
POLICY_C, POLICY_R, REF_C, REF_R = t(-1, -4), t(-3, -2), t(-2, -3), t(-2, -3)


def test_dpo_sigmoid_by_hand():
    # beta * margin = +1 and -1: -log sigmoid(1) = log(1 + e^-1), -log sigmoid(-1) = log(1 + e)
    got = dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, beta=0.5)
    assert got.tolist() == pytest.approx([softplus(-1), softplus(1)], abs=1e-6)
    assert got.tolist() == pytest.approx([0.3132617, 1.3132617], abs=1e-6)


def test_dpo_sigmoid_label_smoothing_by_hand():
    # conservative DPO, eps = 0.1: 0.9 * log(1 + e^-x) + 0.1 * log(1 + e^x) at x = +1 and -1
    got = dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, beta=0.5, label_smoothing=0.1)
    assert got.tolist() == pytest.approx([0.9 * 0.3132617 + 0.1 * 1.3132617, 0.9 * 1.3132617 + 0.1 * 0.3132617],
                                         abs=1e-6)


def test_dpo_hinge_by_hand():
    # relu(1 - beta * margin): relu(1 - 1) = 0 and relu(1 + 1) = 2
    got = dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, beta=0.5, loss_type="hinge")
    assert got.tolist() == pytest.approx([0.0, 2.0], abs=1e-6)


def test_dpo_ipo_by_hand():
    # (margin - 1 / (2 beta))^2 with 1/(2*0.5) = 1: (2 - 1)^2 = 1, (-2 - 1)^2 = 9
    got = dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, beta=0.5, loss_type="ipo")
    assert got.tolist() == pytest.approx([1.0, 9.0], abs=1e-6)
    # length-normalised log-ratios, chosen 2 tokens and rejected 4: pair 1: 1/2 - (-1/4) = 0.75 -> (0.75 - 1)^2
    # pair 2: -1/2 - 1/4 = -0.75 -> (-1.75)^2
    got = dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, beta=0.5, loss_type="ipo",
                   chosen_lengths=t(2, 2), rejected_lengths=t(4, 4))
    assert got.tolist() == pytest.approx([0.0625, 3.0625], abs=1e-6)


def test_dpo_unknown_loss_type():
    with pytest.raises(ValueError, match="unknown DPO loss_type"):
        dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, loss_type="nope")
    assert set(DPO_LOSSES) == {"sigmoid", "hinge", "ipo"}


def test_simpo_by_hand():
    # beta (avg_c - avg_r) - gamma with beta 2, gamma 1: 2 * 0.5 - 1 = 0 -> log 2; 2 * 1 - 1 = 1 -> log(1 + e^-1)
    got = simpo_loss(t(-0.5, -0.2), t(-1.0, -1.2), beta=2.0, gamma=1.0)
    assert got.tolist() == pytest.approx([math.log(2), 0.3132617], abs=1e-6)


def test_cpo_by_hand():
    # no reference: beta (c - r) = 0.1 * 5 = 0.5 -> log(1 + e^-0.5)
    got = cpo_loss(t(-3.0), t(-8.0), beta=0.1)
    assert got.item() == pytest.approx(softplus(-0.5), abs=1e-6)
    assert got.item() == pytest.approx(0.4740770, abs=1e-6)
    # plus cpo_alpha * NLL: 0.4740770 + 0.5 * 2
    assert cpo_objective(got, torch.tensor(2.0), 0.5).item() == pytest.approx(1.4740770, abs=1e-6)
    assert cpo_loss(t(-3.0), t(-8.0), beta=0.1, loss_type="hinge").item() == pytest.approx(0.5, abs=1e-6)


def test_orpo_by_hand():
    # avg log-probs log 0.5 and log 0.2: odds 1 and 0.25, log odds ratio ln 4;
    # log sigmoid(ln 4) = log(4/5)
    c, r = t(math.log(0.5)), t(math.log(0.2))
    assert orpo_log_odds_ratio(c, r).item() == pytest.approx(math.log(0.8), abs=1e-6)
    # NLL 2.0 - beta 0.1 * log(0.8) = 2.0 + 0.0223144
    assert orpo_loss(c, r, torch.tensor(2.0), beta=0.1).item() == pytest.approx(2.0223144, abs=1e-6)


def test_orpo_stable_near_zero_and_very_negative():
    # P close to 1 (log-prob -1e-6) and tiny P: log1mexp must not produce inf/nan
    got = orpo_log_odds_ratio(t(-1e-6), t(-50.0))
    assert torch.isfinite(got).all() and got.item() == pytest.approx(0.0, abs=1e-5)


def test_kto_by_hand():
    # rewards r = logps - ref = 5 (desirable) and -3 (undesirable), kl 0.5, beta 0.1:
    # desirable 1 - sigmoid(0.1 * (5 - 0.5)) = 1 - sigmoid(0.45); undesirable w_u * (1 - sigmoid(0.1 * (0.5 + 3)))
    got = kto_loss(t(-5, -5), t(-10, -2), torch.tensor([True, False]), 0.5, beta=0.1,
                   desirable_weight=1.0, undesirable_weight=2.0)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert got.tolist() == pytest.approx([1 - sig(0.45), 2 * (1 - sig(0.35))], abs=1e-6)
    assert got.tolist() == pytest.approx([0.3893608, 0.8267645], abs=1e-6)


def test_kto_kl_by_hand():
    assert kto_kl(t(-3, -3), t(-4, -4)).item() == pytest.approx(1.0)
    assert kto_kl(t(-3, -5), t(-4, -4)).item() == 0.0  # mean 0
    assert kto_kl(t(-6, -6), t(-4, -4)).item() == 0.0  # negative estimates are clamped


def test_pairwise_reward_by_hand():
    chosen, rejected = t(2.0, 0.0), t(0.0, 1.0)
    # -log sigmoid(2) = log(1 + e^-2), -log sigmoid(-1) = log(1 + e)
    assert pairwise_reward_loss(chosen, rejected).item() == pytest.approx((0.1269280 + 1.3132617) / 2, abs=1e-6)
    # margins 1 and 0: -log sigmoid(1), -log sigmoid(-1)
    got = pairwise_reward_loss(chosen, rejected, margin=t(1.0, 0.0))
    assert got.item() == pytest.approx((0.3132617 + 1.3132617) / 2, abs=1e-6)
    # centring: + 0.01 * mean((2 + 0)^2, (0 + 1)^2) = + 0.025
    got = pairwise_reward_loss(chosen, rejected, center_rewards_coefficient=0.01)
    assert got.item() == pytest.approx((0.1269280 + 1.3132617) / 2 + 0.025, abs=1e-6)


def test_completion_logps_by_hand():
    # vocabulary 4; uniform logits give log(1/4) per scored token; position 0 predicts token 1 with
    # probability 3 / (3 + 1 + 1 + 1) = 1/2
    logits = torch.zeros(1, 3, 4)
    labels = torch.tensor([[-100, 1, 2]])
    assert completion_logps(logits, labels).item() == pytest.approx(2 * math.log(0.25), abs=1e-6)
    assert completion_logps(logits, labels, average=True).item() == pytest.approx(math.log(0.25), abs=1e-6)
    logits[0, 0, 1] = math.log(3)
    assert completion_logps(logits, labels).item() == pytest.approx(math.log(0.5) + math.log(0.25), abs=1e-6)
