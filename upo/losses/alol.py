"""Advantage-Leftover-Lunch RL (Baheti et al. 2024, "Leftover Lunch: Advantage-based Offline
Reinforcement Learning for Language Models", ICLR 2024, arXiv 2305.14718): A-LoL, the variant with the
sequence-level importance weight.

A-LoL treats a whole response as one action and takes an offline policy-gradient step on the data:
    grad J = E_{(x, y) in D}[ A_ref(x, y) * clip(pi(y|x) / pi_ref(y|x), 1 - eps, 1 + eps) * grad log pi(y|x) ]
with A_ref = R(x, y) - V_ref(x) and only positive advantages kept ("leftover" data; negative ones get
weight 0). The importance weight is computed without gradient, so the surrogate whose gradient this is
reads loss = -max(A, 0) * sg(clip(ratio)) * log pi(y|x) (the authors' code multiplies the summed token NLL
by the detached clamped ratio and the clamped advantage; their default eps is 0.9).

What differs here, and why:
- Reward R(x, y) = p(y) + aux_weight * r_aux(y): p is the per-response preference score of the
  ``preference_scores`` need, from the method file's source (``upo.train.preference_scores``: the
  cross-fitted Bradley-Terry reward models trained on the binary labels, A-LoL's default, so it gets no
  information UPO lacks; +0.5 / -0.5 from the label where a size trains no reward model) and r_aux the
  weighted normalised designer rewards, as in PPO's reward.
- V_ref(x): A-LoL fits a value head on the reference's own samples; the offline trainer does not sample,
  so the baseline is the mean reward of the prompt's two dataset responses (a two-sample Monte Carlo
  estimate of the data's value at x). The advantages are then +-(R_w - R_l) / 2: exactly the response with
  the higher reward of each pair is trained, weighted by half the reward gap.
- No priority sampling (the paper's "good priority" draws examples in proportion to A); every pair is
  visited once per epoch and a zero advantage gives a zero loss.
- ``ratio: ref_free`` is A-LoL (ref. free): importance weight 1. A-LoL seq. (per-token ratios) needs
  per-token log-probs, which ``LossInputs`` does not carry; it is not implemented.
"""

from __future__ import annotations

from typing import Annotated

import torch

from upo.losses.base import NON_NEGATIVE, Interval, LossInputs, LossOutput, register_loss, require


def alol_validate(*, ratio: str, **_) -> None:
    if ratio not in ("sequence", "ref_free"):
        raise ValueError(f"loss 'alol': ratio must be 'sequence' or 'ref_free', got {ratio!r}")


@register_loss("alol", needs={"rejected", "reference", "preference_scores", "aux_rewards"}, validate=alol_validate)
def alol_loss(
    inputs: LossInputs,
    *,
    aux_weight: Annotated[float, NON_NEGATIVE] = 1.0,
    clip: Annotated[float, Interval(0.0, 1.0, low_open=True, high_open=True)] = 0.9,
    ratio: str = "sequence",
    token_mean: bool = False,
) -> LossOutput:
    """A-LoL loss per pair: the mean over its two responses of -max(A, 0) * sg(clip(pi / pi_ref)) * log pi.

    A = R - V with R = p + aux_weight * r_aux and V = (R_w + R_l) / 2 (module docstring); the ratio
    pi(y|x) / pi_ref(y|x) = exp(log pi - log pi_ref) of sequence sums, clamped to [1 - clip, 1 + clip] and
    detached (``ratio: ref_free`` uses 1). log pi is the sequence sum (the authors found sums better than
    token means); ``token_mean`` divides by the response length.

    Args:
        inputs: policy/reference sequence log-probs (B,), ``{chosen,rejected}_lengths`` (B,),
            ``{chosen,rejected}_preference_scores`` (B,) p(y), ``aux_{chosen,rejected}_rewards`` (B,).
    Returns:
        ``LossOutput``: (B,) losses; metrics: the chosen response's advantage (R_w - R_l) / 2, mean weight,
        share of clipped ratios.
    """
    (
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        chosen_scores,
        rejected_scores,
        aux_chosen,
        aux_rejected,
    ) = require(
        inputs,
        "policy_chosen_logps",
        "policy_rejected_logps",
        "reference_chosen_logps",
        "reference_rejected_logps",
        "chosen_preference_scores",
        "rejected_preference_scores",
        "aux_chosen_rewards",
        "aux_rejected_rewards",
    )
    batch = policy_chosen_logps.shape[0]
    chosen_rewards = chosen_scores + aux_weight * aux_chosen  # R(x, y_w)
    rejected_rewards = rejected_scores + aux_weight * aux_rejected
    prompt_values = (chosen_rewards + rejected_rewards) / 2  # V(x): the pair's mean reward
    rewards = torch.cat([chosen_rewards, rejected_rewards])  # (2B,)
    values = torch.cat([prompt_values, prompt_values])
    # (2B,) only positive advantages train. R and V are functions of the data alone (no policy
    # parameter reaches them), so no detach is needed; the importance weight is the stop-gradient term.
    advantages = (rewards - values).clamp(min=0.0)
    policy_logps = torch.cat([policy_chosen_logps, policy_rejected_logps])
    with torch.no_grad():
        logratios = policy_logps - torch.cat([reference_chosen_logps, reference_rejected_logps])
        raw_ratios = torch.exp(logratios)
        weights = raw_ratios.clamp(1.0 - clip, 1.0 + clip) if ratio == "sequence" else torch.ones_like(raw_ratios)
    if token_mean:
        chosen_lengths, rejected_lengths = require(inputs, "chosen_lengths", "rejected_lengths")
        policy_logps = policy_logps / torch.cat([chosen_lengths, rejected_lengths]).clamp(min=1)
    losses = -(advantages * weights * policy_logps).view(2, batch).mean(0)  # (B,)
    clipped = ((raw_ratios < 1.0 - clip) | (raw_ratios > 1.0 + clip)).to(losses.dtype)
    metrics = {
        "alol/advantage_gap": (chosen_rewards - rejected_rewards).detach() / 2,  # A(y_w) - V = (R_w - R_l) / 2
        "alol/weight_mean": weights.view(2, batch).mean(0),
        "alol/ratio_clipped": clipped.view(2, batch).mean(0),
    }
    return LossOutput(losses, metrics)
