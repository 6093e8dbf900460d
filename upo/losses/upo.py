"""Unified Preference Optimization (Badrinath et al., arXiv 2405.17956, TMLR 2025).

L_UPO = L_pref + lambda * L_aux. The preference term is DPO's (or IPO's). The auxiliary term is the
advantage-weighted log-likelihood of both offline responses (AWR-style), with advantages from a value
function V(x) fitted by expectile regression (IQL). The paper prints neither constants nor the exact
forms; ``docs/method.md`` documents the objective as implemented, every open choice and its option.
(M1) ... (M5) below are its numbered steps; the expectile loss is the paper's v1 Eq. 12 (L2^tau).

The value head V(x) is this loss's side module (``SideModule`` in its registration): the trainer
builds it, warm-starts it with :func:`warm_start_value_head` and optimises it without knowing UPO.
"""

from __future__ import annotations

from typing import Annotated

import torch

from upo.losses.base import (
    LOSSES,
    NON_NEGATIVE,
    POSITIVE,
    SMOOTHING,
    Interval,
    LossInputs,
    LossOutput,
    SideModule,
    get_loss,
    register_loss,
    require,
)
from upo.models.heads import ValueHead

# A preference term is a pairwise loss of the policy alone: it may not own a side module (UPO owns the
# value head) nor turn the policy into a scorer. Whatever else it needs (KTO's mismatched pairs) becomes
# a need of UPO through ``preference_needs``.
FORBIDDEN_PREFERENCE_NEEDS = frozenset({"value", "sequence_scores"})


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """Asymmetric squared loss L2^tau(u) = |tau - 1{u < 0}| * u^2 (UPO v1 Eq. 12, IQL Eq. 5).

    Args: ``diff`` u = target - prediction, any shape. Returns: same shape.
    """
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return weight * diff.pow(2)


def advantage_weights(
    advantages: torch.Tensor, eta: float, weight_clip: float, normalise_weights: bool
) -> torch.Tensor:
    """omega = min(exp(A / eta), omega_max), or exp(A / eta) normalised to mean 1 (M3).

    Args: ``advantages`` (N,) detached. Returns: (N,) weights, no gradient.
    """
    weights = torch.exp(advantages / eta)
    if normalise_weights:
        return weights / weights.mean()
    return weights.clamp(max=weight_clip)


def warm_start_value_head(
    head: torch.nn.Module, states: torch.Tensor, targets: torch.Tensor, hyperparameters: dict, steps: int = 50
) -> None:
    """A few dozen full-batch expectile steps (M2) on the reference model's prompt states.

    Args: ``states`` (N, H) last-prompt-token states, ``targets`` (N, 2) r_aux of chosen and rejected,
    ``hyperparameters`` the bound UPO keywords (``tau`` is read here, nowhere else).
    """
    tau = hyperparameters["tau"]
    states, targets = states.repeat_interleave(2, 0), targets.reshape(-1)  # one row per response
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        expectile_loss(targets - head(states), tau).mean().backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # no warm-start gradient may leak into training step 0


def preference_term(preference: str, beta: float, label_smoothing: float):
    """The registered pairwise loss named ``preference``, bound to ``beta`` (and ``label_smoothing``)."""
    try:
        spec = LOSSES.get(preference)
    except KeyError as error:
        raise ValueError(f"loss 'upo': preference: {error.args[0]}") from None
    if spec.needs & FORBIDDEN_PREFERENCE_NEEDS or "rejected" not in spec.needs or spec.needs_of or spec.data_transform:
        raise ValueError(
            f"loss 'upo': preference {preference!r} must be a pairwise loss (needing 'rejected') with fixed "
            f"needs, no data transform and none of {sorted(FORBIDDEN_PREFERENCE_NEEDS)}; it needs {sorted(spec.needs)}"
        )
    accepted = spec.hyperparameters()
    kwargs = {"beta": beta} if "beta" in accepted else {}
    if label_smoothing:
        if "label_smoothing" not in accepted:
            raise ValueError(f"loss 'upo': preference {preference!r} takes no label_smoothing")
        kwargs["label_smoothing"] = label_smoothing
    return get_loss(preference, **kwargs)[1]


def preference_needs(*, preference: str, **_) -> frozenset[str]:
    """UPO's needs beyond its own: those of its preference term (e.g. KTO's ``kl_logps``)."""
    return LOSSES.get(preference).needs


def _validate_upo(*, preference: str, beta: float, label_smoothing: float, **_) -> None:
    preference_term(preference, beta, label_smoothing)


VALUE_HEAD = SideModule(build=ValueHead, warm_start=warm_start_value_head)


@register_loss(
    "upo",
    needs={"rejected", "reference", "aux_rewards", "value"},
    side_module=VALUE_HEAD,
    validate=_validate_upo,
    needs_of=preference_needs,
)
def upo_loss(
    inputs: LossInputs,
    *,
    beta: Annotated[float, POSITIVE] = 0.1,
    label_smoothing: Annotated[float, SMOOTHING] = 0.0,
    preference: str = "dpo",
    aux_weight: Annotated[float, NON_NEGATIVE] = 1.0,
    tau: Annotated[float, Interval(0.0, 1.0, low_open=True, high_open=True)] = 0.7,
    eta: Annotated[float, POSITIVE] = 1.0,
    weight_clip: Annotated[float, POSITIVE] = 20.0,
    normalise_weights: bool = False,
    token_mean: bool = True,
) -> LossOutput:
    """UPO loss per example (M5): L_pref + aux_weight * L_aux, plus the value side loss.

    L_aux (M4) = -(omega_w * logp(y_w|x) + omega_l * logp(y_l|x)) / 2, so its batch mean is the
    mean over all 2B offline responses; logp is the token mean (``token_mean``) or the sum.
    omega (M3) = min(exp((r_aux - V(x)) / eta), weight_clip) with V detached.
    Value side loss (M2) = mean over the two responses of L2^tau(r_aux - V(x)); its gradient
    reaches only the value head (the trainer feeds a head on a detached hidden state).
    With ``aux_weight == 0`` the policy loss is the preference loss itself, bit for bit.

    Args:
        inputs: policy/reference sequence log-probs (B,), ``chosen_lengths``/``rejected_lengths``
            (B,), ``aux_{chosen,rejected}_rewards`` (B,) = sum_k c_k norm_k(r_k) (M1), and
            ``prompt_values`` (B,) = V(x).
        preference: name of a registered pairwise loss ("dpo", with ``label_smoothing``; "ipo"; "kto",
            UPO-KTO, the paper's first version; any pairwise loss without a side module), bound to ``beta``
            with its other keywords at their defaults. Its needs join UPO's (``preference_needs``).
    Returns:
        ``LossOutput``: (B,) policy losses, ``side_losses["value"]`` (B,), detached metrics.
    """
    preference_output = preference_term(preference, beta, label_smoothing)(inputs)
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
