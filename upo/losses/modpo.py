"""Multi-Objective DPO (Zhou et al. 2024, "Beyond One-Preference-Fits-All Alignment: Multi-Objective
Direct Preference Optimization", ACL Findings 2024, arXiv 2310.03708).

MODPO folds every objective but the one the preference data labels into DPO as a margin. For objective
weights w (w_0 on the labelled preference, w_aux on the others) the policy that maximises
w . r - beta KL(pi || pi_sft) satisfies beta log(pi / pi_sft) = w_0 r_0 + w_aux . r_aux + const, so the
labelled reward is r_0 = (beta / w_0) log(pi / pi_sft) - (1 / w_0) w_aux . r_aux, and its Bradley-Terry
likelihood on the labelled pairs is the MODPO loss (§3 of the paper; the authors' ``modpo_trainer``
computes the same margin).

Mapping onto this benchmark: the designer objectives' combined reward r_aux = sum_k c_k norm_k(r_k)
(the auxiliary reward functions play the role of MODPO's other objectives' reward models), w_0 = 1 and
w_aux = ``aux_weight``. MODPO then optimises r_pref + aux_weight * r_aux - beta KL: the same target as
PPO's reward (RM + aux_weight * r_aux, KL beta) and the relabelling baseline at the same (beta,
aux_weight). The paper's simplex weights (w_0, w_aux) = (1, aux_weight) / (1 + aux_weight) give the same
optimum at beta_paper = beta / (1 + aux_weight).
"""

from __future__ import annotations

from typing import Annotated

import torch.nn.functional as F

from upo.losses.base import NON_NEGATIVE, POSITIVE, LossInputs, LossOutput, register_loss, require
from upo.losses.dpo import implicit_reward_metrics, preference_logits


@register_loss("modpo", needs={"rejected", "reference", "aux_rewards"})
def modpo_loss(
    inputs: LossInputs,
    *,
    beta: Annotated[float, POSITIVE] = 0.1,
    aux_weight: Annotated[float, NON_NEGATIVE] = 1.0,
) -> LossOutput:
    """MODPO loss per pair: -log sigmoid((beta / w_0) z - (1 / w_0) w_aux (r_aux(y_w) - r_aux(y_l))).

    z = (log pi(y_w) - log pi(y_l)) - (log pi_ref(y_w) - log pi_ref(y_l)) is DPO's log-ratio margin, w_0 = 1
    and w_aux = ``aux_weight`` (module docstring), so the logit is beta z - aux_weight (r_aux(y_w) - r_aux(y_l)).
    Sign: a chosen response that already scores higher on the designer objectives must be preferred by an
    even larger margin, because part of its combined reward is explained by r_aux. ``aux_weight`` 0 is DPO.

    Args:
        inputs: policy/reference sequence log-probs (B,), ``aux_{chosen,rejected}_rewards`` (B,) r_aux.
    Returns:
        ``LossOutput``: (B,) losses; metrics: DPO's implicit rewards and ``modpo/margin`` the aux margin term.
    """
    aux_chosen, aux_rejected = require(inputs, "aux_chosen_rewards", "aux_rejected_rewards")
    margin = aux_weight * (aux_chosen - aux_rejected)  # (1 / w_0) w_aux . (r_aux(y_w) - r_aux(y_l))
    losses = -F.logsigmoid(beta * preference_logits(inputs) - margin)
    metrics = implicit_reward_metrics(inputs, beta)
    metrics["modpo/margin"] = margin.detach()
    return LossOutput(losses, metrics)
