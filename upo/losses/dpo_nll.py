"""DPO + lambda x likelihood of both offline responses: the ablation that isolates UPO's advantage weighting.

UPO's auxiliary term (``upo.losses.upo``) is a likelihood on the offline responses weighted by
omega = min(exp(A / eta), omega_max). A likelihood on the data also regularises the policy toward the
data, whatever its weights. ``dpo_nll`` keeps the likelihood and drops the weighting (omega = 1 for
every response, no value head), so a gap between UPO and ``dpo-nll`` at matched KL is what the
advantage weighting adds, and a gap between ``dpo-nll`` and DPO is plain regularisation.
"""

from __future__ import annotations

from typing import Annotated

import torch

from upo.losses.base import NON_NEGATIVE, POSITIVE, SMOOTHING, LossInputs, LossOutput, register_loss, require
from upo.losses.dpo import dpo_loss


@register_loss("dpo_nll", needs={"rejected", "reference"})
def dpo_nll_loss(
    inputs: LossInputs,
    *,
    beta: Annotated[float, POSITIVE] = 0.1,
    label_smoothing: Annotated[float, SMOOTHING] = 0.0,
    aux_weight: Annotated[float, NON_NEGATIVE] = 1.0,
    token_mean: bool = True,
) -> LossOutput:
    """L = L_DPO + lambda * L_NLL per example, with lambda = ``aux_weight`` (UPO with omega = 1).

    L_DPO = -log sigmoid(beta * z) (Rafailov et al. 2023, Eq. 7; cDPO with ``label_smoothing``),
    z = (log pi(y_w) - log pi(y_l)) - (log pi_ref(y_w) - log pi_ref(y_l)).
    L_NLL = -(log pi(y_w | x) / |y_w| + log pi(y_l | x) / |y_l|) / 2: the token-mean log-likelihood of
    both offline responses with uniform weights (``token_mean=False``: sequence sums), i.e. UPO's
    auxiliary term (docs/method.md, M4) with every omega = 1; its batch mean is the mean over all 2B
    responses, as in UPO. With ``aux_weight == 0`` the loss is DPO's, bit for bit.

    Args:
        inputs: ``policy_{chosen,rejected}_logps`` and ``reference_{chosen,rejected}_logps`` (B,)
            sequence sums of response-token log-probs; ``chosen_lengths``/``rejected_lengths`` (B,)
            response token counts (for the token mean).
        beta: DPO's KL-regularisation strength.
        label_smoothing: cDPO's epsilon.
        aux_weight: lambda, weight of the likelihood term (the ``w~`` sweep value).
        token_mean: divide each response's log-likelihood by its length.
    Returns:
        ``LossOutput``: (B,) losses; metrics ``loss/preference`` and ``loss/nll`` (B,, detached)
        beside DPO's implicit rewards.
    """
    preference_output = dpo_loss(inputs, beta=beta, label_smoothing=label_smoothing)
    policy_chosen_logps, policy_rejected_logps = require(inputs, "policy_chosen_logps", "policy_rejected_logps")
    if token_mean:
        chosen_lengths, rejected_lengths = require(inputs, "chosen_lengths", "rejected_lengths")
        policy_chosen_logps = policy_chosen_logps / chosen_lengths.clamp(min=1)
        policy_rejected_logps = policy_rejected_logps / rejected_lengths.clamp(min=1)
    nll_losses = -(policy_chosen_logps + policy_rejected_logps) / 2.0  # (B,)
    if aux_weight == 0.0:
        losses = preference_output.loss  # exactly DPO: no 0 * x term that could carry NaN
    else:
        losses = preference_output.loss + aux_weight * nll_losses
    metrics: dict[str, torch.Tensor] = dict(preference_output.metrics)
    metrics["loss/preference"] = preference_output.loss.detach()
    metrics["loss/nll"] = nll_losses.detach()
    return LossOutput(losses, metrics)
