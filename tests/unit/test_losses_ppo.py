"""Hand-computed float64 values and gradchecks for the PPO pieces and the Bradley-Terry loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import upo.losses.ppo as ppo_losses
from upo.losses.base import LOSSES, LossInputs, get_loss

f64 = torch.float64


def t(values):
    return torch.tensor(values, dtype=f64)


# ---------------------------------------------------------------- Bradley-Terry


def test_bradley_terry_registered_with_needs():
    spec = LOSSES.get("bradley_terry")
    assert spec.needs == frozenset({"rejected", "sequence_scores"})
    assert spec.hyperparameters() == {"margin": 0.0, "label_smoothing": 0.0}


def test_bradley_terry_hand_values():
    chosen = t([1.0, 0.0]).requires_grad_()
    rejected = t([0.0, 1.0])
    _, loss_fn = get_loss("bradley_terry")
    out = loss_fn(LossInputs(chosen_scores=chosen, rejected_scores=rejected))
    # -log sigmoid(1) = log(1 + e^-1) = 0.313262; -log sigmoid(-1) = 1.313262
    assert_close(out.loss, t([0.31326168751822286, 1.3132616875182228]))
    assert_close(out.metrics["accuracy"], t([1.0, 0.0]))
    assert_close(out.metrics["margin"], t([1.0, -1.0]))
    out.loss[0].backward()
    # d/dr_w = -sigmoid(-(r_w - r_l)) = -sigmoid(-1) = -0.268941
    assert_close(chosen.grad, t([-0.2689414213699951, 0.0]))
    assert not out.metrics["margin"].requires_grad


def test_bradley_terry_margin_and_smoothing():
    inputs = LossInputs(chosen_scores=t([1.0]), rejected_scores=t([0.0]))
    # margin 0.5: z = 0.5, loss = log(1 + e^-0.5) = 0.474077
    assert_close(get_loss("bradley_terry", margin=0.5)[1](inputs).loss, t([0.47407698418010663]))
    # eps 0.1, z = 1: 0.9 * 0.313262 + 0.1 * 1.313262 = 0.413262
    assert_close(get_loss("bradley_terry", label_smoothing=0.1)[1](inputs).loss, t([0.41326168751822286]))
    # z = 0 gives log 2 whatever the smoothing
    tie = LossInputs(chosen_scores=t([0.3]), rejected_scores=t([0.3]))
    assert_close(get_loss("bradley_terry", label_smoothing=0.2)[1](tie).loss, t([math.log(2)]))
    with pytest.raises(ValueError, match="loss 'bradley_terry': label_smoothing"):
        get_loss("bradley_terry", label_smoothing=0.7)


def test_bradley_terry_gradcheck():
    chosen = torch.randn(4, dtype=f64, requires_grad=True)
    rejected = torch.randn(4, dtype=f64, requires_grad=True)
    _, loss_fn = get_loss("bradley_terry", margin=0.1, label_smoothing=0.05)

    def f(c, r):
        return loss_fn(LossInputs(chosen_scores=c, rejected_scores=r)).loss

    assert torch.autograd.gradcheck(f, (chosen, rejected))


# ---------------------------------------------------------------- PPO policy loss


def test_ppo_policy_loss_hand_values():
    logprobs = t([[math.log(1.5), math.log(0.5), 0.0], [math.log(1.1), 0.0, 0.0]])
    old = torch.zeros(2, 3, dtype=f64)
    advantages = t([[1.0, -1.0, 2.0], [0.5, 3.0, 3.0]])
    mask = t([[1, 1, 0], [1, 0, 0]])
    out = ppo_losses.ppo_policy_loss(logprobs, old, advantages, mask, clip_range=0.2)
    # token (0,0): ratio 1.5, A 1 -> max(-1.5, -1.2) = -1.2 (clipped)
    # token (0,1): ratio 0.5, A -1 -> max(0.5, 0.8) = 0.8 (clipped)
    # token (1,0): ratio 1.1, A 0.5 -> max(-0.55, -0.55) = -0.55 (inside the clip range)
    assert_close(out.token_loss[0, :2], t([-1.2, 0.8]))
    assert_close(out.token_loss[1, 0], t(-0.55))
    assert_close(out.loss, t((-1.2 + 0.8 - 0.55) / 3))
    assert_close(out.metrics["clipfrac"], t(2 / 3))
    expected_kl = 0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2 + math.log(1.1) ** 2) / 3
    assert_close(out.metrics["approx_kl"], t(expected_kl))


def test_ppo_policy_loss_on_policy_gradient_is_minus_advantage():
    # At ratio 1 the gradient of the token loss w.r.t. log pi is -A (the policy-gradient estimator).
    logprobs = t([[-1.0, -2.0]]).requires_grad_()
    out = ppo_losses.ppo_policy_loss(logprobs, logprobs.detach(), t([[2.0, -1.0]]), t([[1, 1]]))
    out.loss.backward()
    assert_close(logprobs.grad, t([[-1.0, 0.5]]))


def test_ppo_policy_loss_gradcheck():
    torch.manual_seed(0)
    old = torch.randn(2, 5, dtype=f64)
    logprobs = (old + 0.5 * torch.randn(2, 5, dtype=f64)).requires_grad_()
    advantages = torch.randn(2, 5, dtype=f64)
    mask = t([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.autograd.gradcheck(lambda lp: ppo_losses.ppo_policy_loss(lp, old, advantages, mask).loss, (logprobs,))


# ---------------------------------------------------------------- value loss


def test_ppo_value_loss_hand_values():
    values = t([[1.0, 0.0]])
    old = t([[0.5, 0.0]])
    returns = t([[2.0, 1.0]])
    out = ppo_losses.ppo_value_loss(values, old, returns, t([[1, 1]]), clip_range_value=0.2)
    # token 0: V_clip = 0.7; 0.5 * max((1-2)^2, (0.7-2)^2) = 0.5 * 1.69 = 0.845
    # token 1: V = V_old = 0; 0.5 * (0 - 1)^2 = 0.5
    assert_close(out.token_loss, t([[0.845, 0.5]]))
    assert_close(out.loss, t(0.6725))
    assert_close(out.metrics["clipfrac"], t(0.5))


def test_ppo_value_loss_gradcheck():
    torch.manual_seed(1)
    old = torch.randn(2, 4, dtype=f64)
    values = (old + 0.5 * torch.randn(2, 4, dtype=f64)).requires_grad_()
    returns = torch.randn(2, 4, dtype=f64)
    mask = t([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert torch.autograd.gradcheck(lambda v: ppo_losses.ppo_value_loss(v, old, returns, mask).loss, (values,))


# ---------------------------------------------------------------- GAE


def test_gae_hand_values():
    advantages, returns = ppo_losses.gae_advantages(
        t([[0.0, 0.0, 1.0]]), t([[0.5, 0.5, 0.5]]), t([[1, 1, 1]]), gamma=1.0, lam=0.5
    )
    # delta = [0, 0, 0.5]; A2 = 0.5, A1 = 0 + 0.5 * 0.5 = 0.25, A0 = 0.5 * 0.25 = 0.125
    assert_close(advantages, t([[0.125, 0.25, 0.5]]))
    assert_close(returns, t([[0.625, 0.75, 1.0]]))


def test_gae_stops_at_the_last_valid_token():
    advantages, returns = ppo_losses.gae_advantages(
        t([[0.0, 2.0, 9.0]]), t([[1.0, 1.0, 7.0]]), t([[1, 1, 0]]), gamma=0.9, lam=1.0
    )
    # t=1 is terminal: delta1 = 2 - 1 = 1; t=0: delta0 = 0 + 0.9 * 1 - 1 = -0.1, A0 = -0.1 + 0.9 * 1
    assert_close(advantages, t([[0.8, 1.0, 0.0]]))
    assert_close(returns, t([[1.8, 2.0, 0.0]]))


def test_gae_lambda_one_gamma_one_is_reward_to_go_minus_value():
    torch.manual_seed(2)
    rewards, values = torch.randn(3, 6, dtype=f64), torch.randn(3, 6, dtype=f64)
    mask = torch.ones(3, 6, dtype=f64)
    advantages, _ = ppo_losses.gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    reward_to_go = rewards.flip(-1).cumsum(-1).flip(-1)
    assert_close(advantages, reward_to_go - values)


def test_gae_gradcheck():
    torch.manual_seed(3)
    rewards = torch.randn(2, 4, dtype=f64, requires_grad=True)
    values = torch.randn(2, 4, dtype=f64, requires_grad=True)
    mask = t([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert torch.autograd.gradcheck(
        lambda r, v: ppo_losses.gae_advantages(r, v, mask, gamma=0.9, lam=0.8), (rewards, values)
    )


# ---------------------------------------------------------------- KL-penalised rewards


def test_kl_penalty_rewards_hand_values():
    rewards, kl = ppo_losses.kl_penalty_rewards(
        t([1.0, 2.0]),
        t([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]]),
        t([[-1.5, -2.0, -1.0], [-2.0, -3.0, 0.0]]),
        t([[1, 1, 1], [1, 0, 0]]),
        beta=0.1,
    )
    # row 0: kl = [0.5, 0, -2] -> -0.1 kl = [-0.05, 0, 0.2], score 1 on the last token
    # row 1: only token 0 is valid: kl = 1 -> -0.1 + 2 = 1.9
    assert_close(kl, t([[0.5, 0.0, -2.0], [1.0, 0.0, 0.0]]))
    assert_close(rewards, t([[-0.05, 0.0, 1.2], [1.9, 0.0, 0.0]]))


def test_kl_penalty_rewards_gradcheck():
    torch.manual_seed(4)
    score = torch.randn(2, dtype=f64, requires_grad=True)
    logprobs = torch.randn(2, 3, dtype=f64, requires_grad=True)
    ref = torch.randn(2, 3, dtype=f64)
    mask = t([[1, 1, 0], [1, 1, 1]])
    assert torch.autograd.gradcheck(
        lambda s, lp: ppo_losses.kl_penalty_rewards(s, lp, ref, mask, beta=0.3), (score, logprobs)
    )


# ---------------------------------------------------------------- whitening


def test_whiten_hand_values():
    x = t([[1.0, 2.0, 3.0, 100.0]])
    mask = t([[1, 1, 1, 0]])
    # masked mean 2, unbiased variance (1 + 0 + 1) / 2 = 1
    assert_close(ppo_losses.whiten(x, mask), t([[-1.0, 0.0, 1.0, 0.0]]))
    assert_close(ppo_losses.whiten(x, mask, shift_mean=False), t([[1.0, 2.0, 3.0, 0.0]]))


def test_whiten_gradcheck():
    torch.manual_seed(5)
    x = torch.randn(2, 4, dtype=f64, requires_grad=True)
    mask = t([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert torch.autograd.gradcheck(lambda v: ppo_losses.whiten(v, mask), (x,))
