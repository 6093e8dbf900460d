"""PPO value warm start and rollout diagnostics (upo.train.ppo_value): hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from upo.models.heads import ValueHead
from upo.train.ppo_value import explained_variance, fit_value_head, monte_carlo_returns, rollout_shape


def test_monte_carlo_returns_are_the_reward_to_go():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 9.0], [0.5, -1.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    expected = torch.tensor([[6.0, 5.0, 3.0, 0.0], [-0.5, -1.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(monte_carlo_returns(rewards, mask), expected)
    # gamma = 0.5: G_0 = 1 + 0.5 * 2 + 0.25 * 3
    assert float(monte_carlo_returns(rewards, mask, gamma=0.5)[0, 0]) == pytest.approx(2.75)


def test_fit_value_head_recovers_a_linear_target_and_lowers_the_error():
    torch.manual_seed(0)
    hidden = torch.randn(6, 5, 4)
    mask = torch.ones(6, 5)
    mask[0, 3:] = 0
    true_weight, true_bias = torch.tensor([0.5, -1.0, 2.0, 0.25]), 0.7
    returns = hidden @ true_weight + true_bias
    returns[0, 3:] = 123.0  # padding: must not influence the fit
    head = ValueHead(4, layer_norm=False, zero_init=False)
    stats = fit_value_head(head, hidden, returns, mask, ridge=1e-8)
    torch.testing.assert_close(head.linear.weight.detach().view(-1), true_weight, atol=1e-4, rtol=1e-4)
    assert float(head.linear.bias.detach()) == pytest.approx(true_bias, abs=1e-4)
    assert stats["value_warmup_mse_after"] < 1e-8 < stats["value_warmup_mse_before"]


def test_fit_value_head_ridge_shrinks_towards_the_mean_return():
    torch.manual_seed(1)
    hidden, mask = torch.randn(4, 6, 3), torch.ones(4, 6)
    returns = hidden[..., 0] * 3.0 + 1.0
    head = ValueHead(3, layer_norm=False, zero_init=False)
    fit_value_head(head, hidden, returns, mask, ridge=1e6)
    assert float(head.linear.weight.detach().abs().max()) < 1e-4  # all shrunk: V is the mean return
    assert float(head.linear.bias.detach()) == pytest.approx(float(returns.mean()), abs=1e-2)


def test_fit_value_head_rejects_a_layer_norm_head_and_bad_ridge():
    hidden, mask, returns = torch.randn(2, 3, 4), torch.ones(2, 3), torch.randn(2, 3)
    with pytest.raises(ValueError, match="LayerNorm"):
        fit_value_head(ValueHead(4, layer_norm=True), hidden, returns, mask, ridge=0.1)
    with pytest.raises(ValueError, match="ridge"):
        fit_value_head(ValueHead(4, layer_norm=False), hidden, returns, mask, ridge=0.0)


def test_explained_variance_hand_values():
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.ones(1, 4)
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.zeros(1, 4), returns, mask) == pytest.approx(0.0)
    # residual (1, 2, 3, 4) - (1, 1, 1, 1) -> (0, 1, 2, 3): same variance as the returns -> 0
    assert explained_variance(torch.ones(1, 4), returns, mask) == pytest.approx(0.0)
    # residual (0, 0, 0, 2): variance 0.75 against 1.25 -> 1 - 0.6
    assert explained_variance(torch.tensor([[1.0, 2.0, 3.0, 2.0]]), returns, mask) == pytest.approx(0.4)
    assert math.isnan(explained_variance(torch.zeros(1, 4), torch.ones(1, 4), mask))


def test_rollout_shape_counts_eos_endings_and_lengths():
    eos, pad = 1, 1  # pad == EOS, as in many chat tokenizers
    response = torch.tensor([[5, 6, eos, pad], [5, 5, 5, 5], [eos, pad, pad, pad]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    shape = rollout_shape(response, mask, eos)
    assert shape["response_length"] == pytest.approx(8 / 3)
    assert shape["eos_share"] == pytest.approx(2 / 3)  # the second was cut at the cap
