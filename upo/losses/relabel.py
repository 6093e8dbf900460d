"""The naive baseline a user tries first: DPO on pairs re-labelled by a combined reward."""

from __future__ import annotations

from typing import Annotated

import torch

from upo.losses.base import NON_NEGATIVE, POSITIVE, SMOOTHING, LossInputs, LossOutput, register_loss, require
from upo.losses.dpo import implicit_reward_metrics, preference_logits, sigmoid_preference_loss


@register_loss("relabel_dpo", needs={"rejected", "reference", "aux_rewards", "preference_scores"})
def relabel_dpo_loss(
    inputs: LossInputs,
    *,
    beta: Annotated[float, POSITIVE] = 0.1,
    label_smoothing: Annotated[float, SMOOTHING] = 0.0,
    aux_weight: Annotated[float, NON_NEGATIVE] = 1.0,
) -> LossOutput:
    """DPO (Rafailov et al. 2023, Eq. 7) on labels re-decided by s(y) = p(y) + aux_weight * r_aux(y).

    p(y) is the per-response preference score (``upo.train.preference_scores``: cross-fitted
    Bradley-Terry reward models z-scored on the training responses, +-0.5 from the binary label, or
    the gold oracle for the upper-bound method); r_aux the weighted, normalised auxiliary reward.
    Where s(y_l) > s(y_w) the pair is flipped: the loss is -log sigmoid(-beta z). Ties keep the
    original label.

    Args: policy/reference logps (B,), ``{chosen,rejected}_preference_scores`` (B,) p(y),
        ``aux_{chosen,rejected}_rewards`` (B,).
    Returns: (B,) losses; metrics include ``relabel/flipped`` (1 where the label was flipped).
    """
    chosen_scores, rejected_scores, aux_chosen, aux_rejected = require(
        inputs,
        "chosen_preference_scores",
        "rejected_preference_scores",
        "aux_chosen_rewards",
        "aux_rejected_rewards",
    )
    combined_chosen = chosen_scores + aux_weight * aux_chosen
    combined_rejected = rejected_scores + aux_weight * aux_rejected
    flipped = combined_rejected > combined_chosen  # (B,) bool
    sign = torch.where(flipped, -1.0, 1.0).to(combined_chosen.dtype)
    logits = sign * preference_logits(inputs)
    losses = sigmoid_preference_loss(logits, beta, label_smoothing)
    metrics = implicit_reward_metrics(inputs, beta)
    metrics["relabel/flipped"] = flipped.to(losses.dtype)
    return LossOutput(losses, metrics)
