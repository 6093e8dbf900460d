"""Supervised fine-tuning on the chosen response (the SFT stage that makes the reference model)."""

from __future__ import annotations

from upo.losses.base import LossInputs, LossOutput, register_loss, require


@register_loss("sft")
def sft_loss(inputs: LossInputs, *, token_mean: bool = True) -> LossOutput:
    """Negative log-likelihood of the chosen response: -log pi(y_w | x), per example (B,).

    ``token_mean`` divides by the response length (the usual LM loss per token); otherwise the
    sequence sum. Args: ``policy_chosen_logps`` (B,) sums, ``chosen_lengths`` (B,) token counts.
    """
    (policy_chosen_logps,) = require(inputs, "policy_chosen_logps")
    if token_mean:
        (chosen_lengths,) = require(inputs, "chosen_lengths")
        nll = -policy_chosen_logps / chosen_lengths.clamp(min=1)
    else:
        nll = -policy_chosen_logps
    return LossOutput(nll, {"nll": nll.detach()})
