"""PPO's value warm start and the per-step rollout diagnostics (docs/method.md, RLHF-PPO).

A random value head makes the first PPO updates' advantages noise: A_t = r_t + V(s_{t+1}) - V(s_t) is
dominated by the random V and the clipped value loss moves V by at most ``clip_range_value`` per
epoch. :func:`fit_value_head` therefore fits the linear head V(s_t) = w . h_t + b on the first
rollout batch before any policy update, by ridge regression of the Monte-Carlo returns on the
policy's last hidden states (the policy does not move; only w and b are set). It is a closed form:
no learning rate, no extra rollouts, deterministic.
"""

from __future__ import annotations

import torch

from upo.losses.ppo import gae_advantages, masked_mean
from upo.models.heads import ValueHead


def monte_carlo_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Discounted reward-to-go G_t = sum_{k >= t} gamma^(k - t) r_k, 0 on padding. (B, R) x2 -> (B, R).

    GAE with lambda = 1 (Schulman et al. 2016, Eq. 18) whose returns A_t + V(s_t) do not depend on V.
    """
    return gae_advantages(rewards, torch.zeros_like(rewards), mask, gamma=gamma, lam=1.0)[1]


@torch.no_grad()
def fit_value_head(
    value_head: ValueHead, hidden: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, ridge: float
) -> dict[str, float]:
    """Set ``value_head`` (a plain linear head) to the ridge fit of ``returns`` on ``hidden``.

    Over the N valid tokens, with centred features X (N, H) and targets y (N,):
        w = (X^T X + lambda I)^-1 X^T y,   b = mean(y) - mean(h) . w,
        lambda = ridge * trace(X^T X) / H   (ridge relative to the mean eigenvalue, scale-free).

    Args:
        value_head: :class:`ValueHead` without LayerNorm (PPO's), modified in place.
        hidden: (B, R, H) the policy's last hidden state at the position predicting token t.
        returns: (B, R) targets (Monte-Carlo returns of the first rollout batch).
        mask: (B, R) 1 on valid response tokens.
        ridge: relative L2 penalty (> 0).

    Returns:
        ``value_warmup_mse_before`` / ``_after``: masked mean squared error of the head on the batch.
    """
    if not isinstance(value_head.norm, torch.nn.Identity):
        raise ValueError("fit_value_head: the closed-form fit needs a value head without LayerNorm")
    if ridge <= 0:
        raise ValueError("fit_value_head: ridge must be > 0")
    valid = mask.bool()
    if int(valid.sum()) < 2:
        raise ValueError("fit_value_head: need at least 2 valid response tokens")

    def mse() -> float:
        return float(masked_mean((value_head(hidden) - returns) ** 2, mask))

    before = mse()
    features = hidden[valid].double()  # (N, H)
    targets = returns[valid].double()  # (N,)
    feature_mean, target_mean = features.mean(0), targets.mean()
    centred = features - feature_mean
    gram = centred.T @ centred  # (H, H)
    size = gram.shape[0]
    penalty = ridge * float(gram.trace()) / size + 1e-12
    eye = torch.eye(size, dtype=gram.dtype, device=gram.device)
    weight = torch.linalg.solve(gram + penalty * eye, centred.T @ (targets - target_mean))
    linear = value_head.linear
    linear.weight.copy_(weight.to(linear.weight.dtype).view_as(linear.weight))
    linear.bias.fill_(float(target_mean - feature_mean @ weight))
    return {"value_warmup_mse_before": before, "value_warmup_mse_after": mse()}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) over valid tokens: 1 is a perfect value head, <= 0 useless.

    The standard PPO diagnostic (OpenAI baselines, Stable-Baselines3); NaN when the returns are constant.
    """
    residual = returns - values
    residual_var = masked_mean((residual - masked_mean(residual, mask)) ** 2, mask)
    spread = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    return float(1.0 - residual_var / spread) if float(spread) > 0 else float("nan")


def rollout_shape(response_ids: torch.Tensor, mask: torch.Tensor, eos_token_id: int) -> dict[str, float]:
    """Length diagnostics of a rollout batch (the collapse guard of the train log).

    Args:
        response_ids: (B, R) sampled response tokens (anything after the first EOS is ignored).
        mask: (B, R) 1 on tokens up to and including the first EOS.
        eos_token_id: the tokenizer's EOS id.

    Returns:
        ``response_length``: mean response tokens (EOS included); ``eos_share``: share of responses
        that ended with EOS within ``max_new_tokens`` (the rest were cut at the cap).
    """
    lengths = mask.long().sum(-1)  # (B,)
    last = response_ids.gather(1, (lengths - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1)
    ended = (last == eos_token_id) & (lengths > 0)
    return {"response_length": float(lengths.float().mean()), "eos_share": float(ended.float().mean())}
