"""Bradley-Terry reward-model loss: the pairwise logistic loss on scalar reward-model scores.

Trains the reward model that RLHF-PPO maximises (InstructGPT, Ouyang et al. 2022, Eq. 1): an ordinary
run of the offline trainer, whose ``sequence_scores`` need makes the model a scalar-head scorer.
"""

from __future__ import annotations

from typing import Annotated

import torch.nn.functional as F

from upo.losses.base import SMOOTHING, LossInputs, LossOutput, register_loss, require


@register_loss("bradley_terry", needs={"rejected", "sequence_scores"})
def bradley_terry_loss(
    inputs: LossInputs, *, margin: float = 0.0, label_smoothing: Annotated[float, SMOOTHING] = 0.0
) -> LossOutput:
    """Pairwise Bradley-Terry loss on reward-model scores.

    InstructGPT (Ouyang et al. 2022) Eq. 1, per pair:
        loss = -log sigmoid(r(x, y_w) - r(x, y_l) - m)
    with an optional margin ``m`` (Llama 2's margin loss, Touvron et al. 2023, Eq. 2) and optional
    label smoothing eps (the conservative form, as cDPO): loss = -(1 - eps) log sigmoid(z)
    - eps log sigmoid(-z), z = r_w - r_l - m. With m = 0 and eps = 0 it is the paper's loss.

    Args:
        inputs: ``chosen_scores`` (B,) and ``rejected_scores`` (B,) scalar scores r(x, y).
        margin: m, subtracted from the score difference (0 disables it).
        label_smoothing: eps in [0, 0.5), the assumed probability that a label is flipped.

    Returns:
        ``loss`` (B,); metrics (detached, (B,)): ``accuracy`` (1 where r_w > r_l), ``margin``
        (r_w - r_l), ``chosen`` and ``rejected`` scores.
    """
    chosen, rejected = require(inputs, "chosen_scores", "rejected_scores")
    difference = chosen - rejected  # (B,)
    z = difference - margin
    loss = -(1.0 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    metrics = {
        "accuracy": (difference > 0).to(chosen.dtype).detach(),
        "margin": difference.detach(),
        "chosen": chosen.detach(),
        "rejected": rejected.detach(),
    }
    return LossOutput(loss=loss, metrics=metrics)
