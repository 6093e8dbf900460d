"""The pieces of RLHF-PPO as pure tensor functions (used by ``upo.train.ppo``).

They are per-token, not pairwise, so they are plain functions rather than entries of the pairwise
loss registry. Conventions follow InstructGPT (Ouyang et al. 2022) and Huang et al., "The N
implementation details of RLHF with PPO" (2024) / TRL's former PPOTrainer:

- every tensor is (B, R) over the **response** tokens only, left-aligned: column 0 is the first
  generated token and ``mask`` is 1 on the tokens up to and including the first EOS, 0 on padding
  after it (so valid tokens of a row are contiguous from column 0);
- ``logprobs[b, t]`` is log pi(a_t | s_t), ``values[b, t]`` is V(s_t), the value of the state just
  before token t is emitted;
- masked means are over all valid tokens of the batch (not per sequence).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class PPOTerm(NamedTuple):
    """A PPO loss term: ``loss`` scalar masked mean, ``token_loss`` (B, R), detached diagnostics."""

    loss: torch.Tensor
    token_loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over positions where ``mask`` is 1. (B, R) x2 -> scalar."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over masked positions (Bessel-corrected when ``unbiased``). (B, R) x2 -> scalar."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = mask.to(values.dtype).sum()
        if count < 2:
            raise ValueError("masked_var: need at least 2 unmasked values for an unbiased variance")
        variance = variance * count / (count - 1)
    return variance


def whiten(values: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Standardise over the masked positions of the batch: (x - mean) / sqrt(var + eps).

    Advantage whitening (PPO implementation detail, Huang et al. 2022 "37 details", #7); with
    ``shift_mean=False`` the mean is added back, which only rescales (used to whiten rewards
    without changing their sign). Masked positions are set to 0.

    Args:
        values: (B, R) e.g. advantages.
        mask: (B, R) 1 on valid tokens.

    Returns:
        (B, R) whitened values, 0 where ``mask`` is 0.
    """
    mean = masked_mean(values, mask)
    variance = masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(variance + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def kl_penalty_rewards(
    score: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: a KL penalty on every token, the sequence score on the last one.

    InstructGPT (Ouyang et al. 2022) Eq. 2 maximises r(x, y) - beta log(pi(y|x) / pi_ref(y|x)); as
    in Ziegler et al. (2019) and "The N implementation details of RLHF with PPO", the log-ratio is
    split per token with the k1 estimator:
        r_t = -beta (log pi(a_t|s_t) - log pi_ref(a_t|s_t))        for every valid token t,
        r_T += score                                                 at the last valid token T.

    Args:
        score: (B,) sequence-level reward (reward model + weighted auxiliaries).
        logprobs: (B, R) policy log-probs of the sampled tokens (at rollout time).
        ref_logprobs: (B, R) reference log-probs of the same tokens.
        mask: (B, R) 1 on valid response tokens, contiguous from column 0.
        beta: KL coefficient (>= 0).

    Returns:
        (rewards, kl): both (B, R), 0 on padding; ``kl`` is the per-token log-ratio.
    """
    maskf = mask.to(logprobs.dtype)
    kl = (logprobs - ref_logprobs) * maskf
    rewards = -beta * kl
    lengths = mask.long().sum(-1)  # (B,)
    # A row with no valid token (possible only with max_new_tokens=0) gets no score at all.
    last = (lengths - 1).clamp(min=0).unsqueeze(-1)  # (B, 1)
    placed = (score * (lengths > 0).to(score.dtype)).unsqueeze(-1).to(rewards.dtype)
    rewards = rewards.scatter_add(1, last, placed)
    return rewards, kl


def gae_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, "High-dimensional continuous control
    using GAE", Eq. 16), truncated at the end of each response:
        delta_t = r_t + gamma V(s_{t+1}) m_{t+1} - V(s_t)
        A_t = delta_t + gamma lam m_{t+1} A_{t+1}
        returns_t = A_t + V(s_t)
    where m_{t+1} = 0 past the last valid token (the episode ends there, V(terminal) = 0).

    Args:
        rewards: (B, R) per-token rewards (see :func:`kl_penalty_rewards`).
        values: (B, R) V(s_t) at rollout time.
        mask: (B, R) 1 on valid tokens, contiguous from column 0.
        gamma: discount (1.0: undiscounted, the RLHF convention).
        lam: GAE lambda.

    Returns:
        (advantages, returns): both (B, R), 0 on padding.
    """
    maskf = mask.to(values.dtype)
    steps = rewards.shape[-1]
    last_advantage = torch.zeros_like(values[:, 0])
    advantages = []
    for t in reversed(range(steps)):
        next_mask = maskf[:, t + 1] if t + 1 < steps else torch.zeros_like(maskf[:, 0])
        next_value = values[:, t + 1] * next_mask if t + 1 < steps else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_advantage = delta + gamma * lam * next_mask * last_advantage
        advantages.append(last_advantage)
    advantage = torch.stack(advantages[::-1], dim=-1) * maskf
    returns = (advantage + values) * maskf
    return advantage, returns


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_range: float = 0.2,
) -> PPOTerm:
    """Clipped surrogate objective (Schulman et al. 2017, "Proximal Policy Optimization", Eq. 7),
    as a loss to minimise, per token:
        rho_t = exp(log pi(a_t|s_t) - log pi_old(a_t|s_t))
        loss_t = max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps))
    (the max of negatives is Eq. 7's min of the objectives).

    Args:
        logprobs: (B, R) current policy log-probs (with gradient).
        old_logprobs: (B, R) log-probs at rollout time (no gradient).
        advantages: (B, R) (no gradient; usually whitened).
        mask: (B, R) 1 on valid tokens.
        clip_range: eps.

    Returns:
        :class:`PPOTerm` with the masked-mean loss, (B, R) token losses and metrics ``clipfrac``
        (share of tokens where the clipped branch is active) and ``approx_kl`` (0.5 mean of squared
        log-ratio, the k2 estimator of KL(pi_old || pi)).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    token_loss = torch.maximum(unclipped, clipped)
    loss = masked_mean(token_loss, mask)
    metrics = {
        "clipfrac": masked_mean((clipped > unclipped).to(logprobs.dtype), mask).detach(),
        "approx_kl": masked_mean(0.5 * log_ratio**2, mask).detach(),
    }
    return PPOTerm(loss, token_loss, metrics)


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_range_value: float = 0.2,
) -> PPOTerm:
    """Clipped value loss (PPO's reference implementation, as in OpenAI baselines / TRL), per token:
        V_clip = V_old + clip(V - V_old, -eps_v, eps_v)
        loss_t = 0.5 max((V - R_t)^2, (V_clip - R_t)^2)

    Args:
        values: (B, R) current value predictions (with gradient).
        old_values: (B, R) predictions at rollout time.
        returns: (B, R) GAE returns (targets).
        mask: (B, R) 1 on valid tokens.
        clip_range_value: eps_v.

    Returns:
        :class:`PPOTerm` with the masked-mean loss, (B, R) token losses and metric ``clipfrac``.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped_values - returns) ** 2
    token_loss = 0.5 * torch.maximum(unclipped_loss, clipped_loss)
    loss = masked_mean(token_loss, mask)
    metrics = {"clipfrac": masked_mean((clipped_loss > unclipped_loss).to(values.dtype), mask).detach()}
    return PPOTerm(loss, token_loss, metrics)
