"""Unified Preference Optimization (Badrinath et al., arXiv 2405.17956, TMLR 2025).

L_UPO = L_pref + lambda * L_aux. The preference term is DPO's (or IPO's). The auxiliary term is the
advantage-weighted log-likelihood of both offline responses (AWR-style), with advantages from a value
function V(x) fitted by expectile regression (IQL). The paper prints neither constants nor the exact
forms; ``shared/design/upo-method.md`` ("The objective") fixes the defaults used here and every choice
is a keyword option. Equation numbers below refer to that note's numbered steps; the expectile loss
is the paper's v1 Eq. 12 (L2^tau).
"""

from __future__ import annotations

import torch

from upo.losses.base import LossInputs, LossOutput, register_loss, require
from upo.losses.dpo import dpo_loss, ipo_loss


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """Asymmetric squared loss L2^tau(u) = |tau - 1{u < 0}| * u^2 (UPO v1 Eq. 12, IQL Eq. 5).

    Args: ``diff`` u = target - prediction, any shape. Returns: same shape.
    """
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return weight * diff.pow(2)


def advantage_weights(
    advantages: torch.Tensor, eta: float, weight_clip: float, normalise_weights: bool
) -> torch.Tensor:
    """omega = min(exp(A / eta), omega_max), or exp(A / eta) normalised to mean 1 (note, step 3).

    Args: ``advantages`` (N,) detached. Returns: (N,) weights, no gradient.
    """
    weights = torch.exp(advantages / eta)
    if normalise_weights:
        return weights / weights.mean()
    return weights.clamp(max=weight_clip)


@register_loss("upo", needs={"rejected", "reference", "aux_rewards", "value"})
def upo_loss(
    inputs: LossInputs,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    preference: str = "dpo",
    aux_weight: float = 1.0,
    tau: float = 0.7,
    eta: float = 1.0,
    weight_clip: float = 20.0,
    normalise_weights: bool = False,
    token_mean: bool = True,
) -> LossOutput:
    """UPO loss per example (note, step 5): L_pref + aux_weight * L_aux, plus the value side loss.

    L_aux (step 4) = -(omega_w * logp(y_w|x) + omega_l * logp(y_l|x)) / 2, so its batch mean is the
    mean over all 2B offline responses; logp is the token mean (``token_mean``) or the sum.
    omega (step 3) = min(exp((r_aux - V(x)) / eta), weight_clip) with V detached.
    Value side loss (step 2) = mean over the two responses of L2^tau(r_aux - V(x)); its gradient
    reaches only the value head (the trainer feeds a head on a detached hidden state).
    With ``aux_weight == 0`` the policy loss is the preference loss itself, bit for bit.

    Args:
        inputs: policy/reference sequence log-probs (B,), ``chosen_lengths``/``rejected_lengths``
            (B,), ``aux_{chosen,rejected}_rewards`` (B,) = sum_k c_k norm_k(r_k) (step 1), and
            ``prompt_values`` (B,) = V(x).
        preference: "dpo" (with ``label_smoothing``) or "ipo".
    Returns:
        ``LossOutput``: (B,) policy losses, ``side_losses["value"]`` (B,), detached metrics.
    """
    if preference == "dpo":
        preference_output = dpo_loss(inputs, beta=beta, label_smoothing=label_smoothing)
    elif preference == "ipo":
        preference_output = ipo_loss(inputs, beta=beta)
    else:
        raise ValueError(f"upo preference must be 'dpo' or 'ipo', got {preference!r}")
    (
        aux_chosen_rewards,
        aux_rejected_rewards,
        prompt_values,
        policy_chosen_logps,
        policy_rejected_logps,
    ) = require(
        inputs,
        "aux_chosen_rewards",
        "aux_rejected_rewards",
        "prompt_values",
        "policy_chosen_logps",
        "policy_rejected_logps",
    )
    batch = aux_chosen_rewards.shape[0]
    rewards = torch.cat([aux_chosen_rewards, aux_rejected_rewards])  # (2B,)
    values = torch.cat([prompt_values, prompt_values])  # (2B,) one V(x) per prompt
    value_losses = expectile_loss(rewards - values, tau).view(2, batch).mean(0)  # (B,)

    advantages = (rewards - values).detach()
    weights = advantage_weights(advantages, eta, weight_clip, normalise_weights)  # (2B,)
    policy_logps = torch.cat([policy_chosen_logps, policy_rejected_logps])
    if token_mean:
        chosen_lengths, rejected_lengths = require(inputs, "chosen_lengths", "rejected_lengths")
        policy_logps = policy_logps / torch.cat([chosen_lengths, rejected_lengths]).clamp(min=1)
    aux_losses = -(weights * policy_logps).view(2, batch).mean(0)  # (B,)

    if aux_weight == 0.0:
        # Exactly DPO's loss and gradient: no 0 * x term that could carry NaN or rounding.
        losses = preference_output.loss
    else:
        losses = preference_output.loss + aux_weight * aux_losses
    metrics = dict(preference_output.metrics)
    metrics.update(
        {
            "loss/preference": preference_output.loss.detach(),
            "loss/aux": aux_losses.detach(),
            "value/loss": value_losses.detach(),
            "value/mean": prompt_values.detach(),
            "aux/advantage_mean": advantages.view(2, batch).mean(0),
            "aux/weight_mean": weights.view(2, batch).mean(0),
            "aux/weight_clipped": (weights >= weight_clip).to(weights.dtype).view(2, batch).mean(0),
        }
    )
    return LossOutput(losses, metrics, side_losses={"value": value_losses})
