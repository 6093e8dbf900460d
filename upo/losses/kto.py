"""Kahneman-Tversky Optimisation (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic
Optimization", arXiv 2402.01306), in the HALOs formulation with its reference point.

KTO learns from binary desirability, not from pairs. On our paired data every pair gives one desirable
example (the chosen response) and one undesirable example (the rejected one), as HALOs' and TRL's
"unpaired" views of paired datasets do.

Reference point. z_ref = KL(pi_theta(y'|x) || pi_ref(y'|x)) is estimated, as in HALOs and TRL, by
the batch mean of log pi_theta(y'|x) - log pi_ref(y'|x) over mismatched pairs (x_i, y'_i), where y'_i is
a response written for another prompt, clamped at 0 and detached (no gradient flows through it). The
loss therefore declares the ``kl_logps`` need: the trainer forwards each pair's mismatched sequence beside
it (policy) and computes the reference's log-probs of the same sequences once (``upo.train.inputs``).
The mismatch is fixed per split, as TRL fixes it when it builds its KL dataset (HALOs draws it per batch):
pair i takes the response of pair i+1 of the split file (chosen for even i, rejected for odd i, so the
y' are distributed like the data's responses), and the training shuffle then puts arbitrary mismatched
pairs in a batch. The mean is over the micro-batch on this process (HALOs and TRL gather it over
processes): with ``grad_accum`` 1 on one process the two coincide.
"""

from __future__ import annotations

from typing import Annotated

import torch

from upo.losses.base import NON_NEGATIVE, POSITIVE, LossInputs, LossOutput, register_loss, require


def kto_reference_point(policy_kl_logps: torch.Tensor, reference_kl_logps: torch.Tensor) -> torch.Tensor:
    """z_ref = max(0, mean_i (log pi(y'_i|x_i) - log pi_ref(y'_i|x_i))), detached. (B,), (B,) -> ()."""
    return (policy_kl_logps - reference_kl_logps).mean().clamp(min=0).detach()


@register_loss("kto", needs={"rejected", "reference", "kl_logps"})
def kto_loss(
    inputs: LossInputs,
    *,
    beta: Annotated[float, POSITIVE] = 0.1,
    desirable_weight: Annotated[float, NON_NEGATIVE] = 1.0,
    undesirable_weight: Annotated[float, NON_NEGATIVE] = 1.0,
) -> LossOutput:
    """KTO loss per pair: the mean of the desirable and the undesirable example's loss.

    With r(x, y) = log pi(y|x) - log pi_ref(y|x) and z_ref the reference point (module docstring), the
    paper's loss (§4, the KTO objective; Eq. 7 as TRL cites it) is E[lambda_y - v(x, y)] with
        v(x, y_w) = lambda_D sigmoid(beta (r(x, y_w) - z_ref))     (desirable: the chosen response)
        v(x, y_l) = lambda_U sigmoid(beta (z_ref - r(x, y_l)))     (undesirable: the rejected response)
    so per pair: loss = (lambda_D (1 - sigmoid(beta (r_w - z_ref))) + lambda_U (1 - sigmoid(beta (z_ref - r_l)))) / 2,
    whose batch mean is the mean over all 2B examples (TRL's ``losses.nanmean()`` on the same batch).
    ``desirable_weight`` = lambda_D, ``undesirable_weight`` = lambda_U: the paper recommends
    lambda_D n_D / (lambda_U n_U) in [1, 4/3]; paired data has n_D = n_U, so 1 and 1.

    Args:
        inputs: ``policy_{chosen,rejected}_logps`` and ``reference_{chosen,rejected}_logps`` (B,) sequence
            sums; ``policy_kl_logps`` and ``reference_kl_logps`` (B,) the same for the mismatched pairs.
    Returns:
        ``LossOutput``: (B,) losses; metrics: ``kl/reference_point`` z_ref (repeated over B), implicit
        rewards beta r of both responses.
    """
    (
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        policy_kl_logps,
        reference_kl_logps,
    ) = require(
        inputs,
        "policy_chosen_logps",
        "policy_rejected_logps",
        "reference_chosen_logps",
        "reference_rejected_logps",
        "policy_kl_logps",
        "reference_kl_logps",
    )
    reference_point = kto_reference_point(policy_kl_logps, reference_kl_logps)
    chosen_logratios = policy_chosen_logps - reference_chosen_logps
    rejected_logratios = policy_rejected_logps - reference_rejected_logps
    chosen_losses = desirable_weight * (1.0 - torch.sigmoid(beta * (chosen_logratios - reference_point)))
    rejected_losses = undesirable_weight * (1.0 - torch.sigmoid(beta * (reference_point - rejected_logratios)))
    losses = (chosen_losses + rejected_losses) / 2.0
    metrics = {
        "kl/reference_point": reference_point.expand_as(losses),
        "rewards/chosen": beta * chosen_logratios.detach(),
        "rewards/rejected": beta * rejected_logratios.detach(),
        "rewards/margin": beta * (chosen_logratios - rejected_logratios).detach(),
    }
    return LossOutput(losses, metrics)
