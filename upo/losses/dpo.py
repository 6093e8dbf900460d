"""Direct preference losses on sequence log-probabilities: DPO (with cDPO smoothing) and IPO."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F

from upo.losses.base import POSITIVE, SMOOTHING, LossInputs, LossOutput, register_loss, require


def preference_logits(inputs: LossInputs, reference_free: bool = False) -> torch.Tensor:
    """z = (log pi(y_w) - log pi(y_l)) - (log pi_ref(y_w) - log pi_ref(y_l)), shape (B,)."""
    policy_chosen_logps, policy_rejected_logps = require(inputs, "policy_chosen_logps", "policy_rejected_logps")
    policy_logratios = policy_chosen_logps - policy_rejected_logps
    if reference_free:
        return policy_logratios
    reference_chosen_logps, reference_rejected_logps = require(
        inputs, "reference_chosen_logps", "reference_rejected_logps"
    )
    return policy_logratios - (reference_chosen_logps - reference_rejected_logps)


def implicit_reward_metrics(inputs: LossInputs, beta: float) -> dict[str, torch.Tensor]:
    """DPO's implicit rewards beta * log(pi / pi_ref) of both responses, detached, (B,) each."""
    with torch.no_grad():
        chosen_rewards = beta * (inputs.policy_chosen_logps - inputs.reference_chosen_logps)
        rejected_rewards = beta * (inputs.policy_rejected_logps - inputs.reference_rejected_logps)
    return {
        "rewards/chosen": chosen_rewards,
        "rewards/rejected": rejected_rewards,
        "rewards/margin": chosen_rewards - rejected_rewards,
        "rewards/accuracy": (chosen_rewards > rejected_rewards).to(chosen_rewards.dtype),
    }


def sigmoid_preference_loss(logits: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """-(1 - eps) log sigmoid(beta z) - eps log sigmoid(-beta z), (B,) -> (B,)."""
    return -(1.0 - label_smoothing) * F.logsigmoid(beta * logits) - label_smoothing * F.logsigmoid(-beta * logits)


@register_loss("dpo", needs={"rejected", "reference"})
def dpo_loss(
    inputs: LossInputs,
    *,
    beta: Annotated[float, POSITIVE] = 0.1,
    label_smoothing: Annotated[float, SMOOTHING] = 0.0,
    reference_free: bool = False,
) -> LossOutput:
    """DPO loss, Rafailov et al. 2023, Eq. 7: -log sigmoid(beta * z), z as in ``preference_logits``.

    ``label_smoothing`` eps > 0 gives conservative DPO (cDPO, Mitchell 2023): the label is assumed
    flipped with probability eps. ``reference_free`` drops the reference log-ratio (pi_ref uniform).

    Args:
        inputs: ``policy_{chosen,rejected}_logps`` and ``reference_{chosen,rejected}_logps``, (B,)
            sequence sums of response-token log-probs.
    Returns:
        ``LossOutput`` with (B,) losses; metrics are the implicit rewards (detached).
    """
    logits = preference_logits(inputs, reference_free)
    losses = sigmoid_preference_loss(logits, beta, label_smoothing)
    metrics = {} if reference_free else implicit_reward_metrics(inputs, beta)
    return LossOutput(losses, metrics)


@register_loss("ipo", needs={"rejected", "reference"})
def ipo_loss(inputs: LossInputs, *, beta: Annotated[float, POSITIVE] = 0.1) -> LossOutput:
    """IPO loss, Azar et al. 2023, Eq. 17: (z - 1 / (2 beta))^2 with z the DPO log-ratio margin.

    ``beta`` plays the role of IPO's tau. Unlike TRL, we use sequence sums (the paper's definition),
    not token means; pass token-mean log-probs to get TRL's variant.
    """
    logits = preference_logits(inputs)
    losses = (logits - 1.0 / (2.0 * beta)) ** 2
    return LossOutput(losses, implicit_reward_metrics(inputs, beta))
