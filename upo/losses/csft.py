"""Conditional SFT (CSFT), the control-token baseline of HALOs (Ethayarajh et al. 2024, after Korbak et
al. 2023, "Pretraining Language Models with Human Preferences", conditional training).

Every response of the data is a supervised example, conditioned on control tokens that say how good it
is: ``<|good|>`` for the chosen response and ``<|bad|>`` for the rejected one, then one token per designer
objective k with a non-zero weight c_k, ``<|k:good|>`` when the response is on the designer's side of the
objective's training median (score >= median for c_k > 0, <= for c_k < 0) and ``<|k:bad|>`` otherwise.
The evaluation samples with all the "good" tokens (:func:`csft_generation_prefix`).

As in HALOs the control tokens end the prompt (after the chat template's assistant header), so they
condition the response and are never a target. Unlike HALOs they are plain text, not new special tokens:
the vocabulary, the reference model and every tokenizer stay unchanged, and the model learns what the
few sub-word tokens of ``<|good|>`` mean from the data alone.

The pair's two responses become two records (``csft_records``), so ``batch_size`` counts responses and an
epoch visits every response once.
"""

from __future__ import annotations

import statistics

from upo.losses.base import LossInputs, LossOutput, register_loss, require
from upo.rewards.normalise import aux_score

GOOD, BAD = "<|good|>", "<|bad|>"


def objective_token(name: str, good: bool) -> str:
    return f"<|{name}:{'good' if good else 'bad'}|>"


def designer_objectives(aux_weights: dict[str, float]) -> list[str]:
    """The objectives that get a control token: those with a non-zero designer weight, in name order."""
    return sorted(name for name, weight in aux_weights.items() if weight != 0)


def csft_generation_prefix(aux_weights: dict[str, float]) -> str:
    """What the evaluation appends after the assistant header: every "good" control token."""
    return GOOD + "".join(objective_token(name, True) for name in designer_objectives(aux_weights))


def csft_records(records: list[dict], fit_records: list[dict], aux_weights: dict[str, float]) -> list[dict]:
    """One record per response, its control tokens in ``response_prefix``.

    Medians are fitted on both responses of every ``fit_records`` pair (the raw training split), so held-out
    records are labelled on the training scale. A record's ``chosen`` is its response; ``rejected`` repeats
    it so the pair tokeniser truncates it alone.
    """
    objectives = designer_objectives(aux_weights)
    medians = {
        name: statistics.median(aux_score(r, side, name) for r in fit_records for side in ("chosen", "rejected"))
        for name in objectives
    }
    out = []
    for record in records:
        for side, label in (("chosen", GOOD), ("rejected", BAD)):
            tokens = [label]
            for name in objectives:
                offset = aux_score(record, side, name) - medians[name]
                tokens.append(objective_token(name, offset * aux_weights[name] >= 0))
            out.append(
                {
                    "id": f"{record['id']}#{side}",
                    "prompt": record["prompt"],
                    "chosen": record[side],
                    "rejected": record[side],
                    "response_prefix": "".join(tokens),
                }
            )
    return out


@register_loss("csft", data_transform=csft_records, generation_prefix=csft_generation_prefix)
def csft_loss(inputs: LossInputs, *, token_mean: bool = True) -> LossOutput:
    """CSFT loss per response: -log pi(y | x, c(y)), c(y) the response's control tokens (module docstring).

    The records are already conditioned (``csft_records`` puts c(y) at the end of the prompt), so the loss
    is the SFT negative log-likelihood of each record's response: the sequence sum, divided by the response
    length with ``token_mean``. Args: ``policy_chosen_logps`` (B,) sums, ``chosen_lengths`` (B,).
    Returns: (B,) losses.
    """
    (policy_chosen_logps,) = require(inputs, "policy_chosen_logps")
    nll = -policy_chosen_logps
    if token_mean:
        (chosen_lengths,) = require(inputs, "chosen_lengths")
        nll = nll / chosen_lengths.clamp(min=1)
    return LossOutput(nll, {"nll": nll.detach()})
