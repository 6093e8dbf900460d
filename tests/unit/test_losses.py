"""Golden values (hand-computed, float64), limits and gradient checks for every registered loss.

Worked numbers: with policy logps (-1, -2), reference logps (-1.5, -1.5) and beta = 0.5 the DPO
margin is z = 1, so loss = log(1 + e^-0.5) = 0.474077 and dloss/dpolicy_chosen = -beta sigmoid(-0.5)
= -0.188770. For UPO take token lengths (2, 4) (token-mean logps -0.5, -0.5), aux rewards (1, -1),
V = 0, eta = 1: advantages (1, -1), weights (e, 1/e), L_aux = (e + 1/e) * 0.5 / 2 = 0.771540;
expectile tau = 0.7 gives value loss (0.7 * 1 + 0.3 * 1) / 2 = 0.5.

Baselines on the same numbers: KTO's reference point from mismatched log-probs (-1.2, -1.4) is
z = 0.2, the log-ratios are r_w = 0.5, r_l = -0.5, so at beta 0.5 the loss is
((1 - sigmoid(0.15)) + (1 - sigmoid(0.35))) / 2 = 0.437976. MODPO at beta 0.5 with aux margin
r_aux(y_w) - r_aux(y_l) = 2: logit 0.5 - 2 aux_weight (0 at aux_weight 0.25: log 2). A-LoL with preference
scores (1, 0) and aux rewards (1, -1) at aux_weight 1: R = (2, -1), V = 0.5, A = (1.5, 0 after the cut),
ratio e^0.5 inside [0.1, 1.9]: loss = 1.5 e^0.5 * 1 / 2 = 1.236541. CSFT: -(-1) / 2 tokens = 0.5.
"""

from __future__ import annotations

import math

import pytest
import torch

import upo.losses as losses
from upo.losses import LossInputs, get_loss
from upo.losses.upo import expectile_loss

T = lambda *values: torch.tensor(values, dtype=torch.float64)  # noqa: E731


def base_inputs(**overrides) -> LossInputs:
    fields = dict(
        policy_chosen_logps=T(-1.0),
        policy_rejected_logps=T(-2.0),
        reference_chosen_logps=T(-1.5),
        reference_rejected_logps=T(-1.5),
        chosen_lengths=T(2.0),
        rejected_lengths=T(4.0),
        aux_chosen_rewards=T(1.0),
        aux_rejected_rewards=T(-1.0),
        prompt_values=T(0.0),
        chosen_preference_scores=T(1.0),
        rejected_preference_scores=T(0.0),
        chosen_scores=T(1.0),
        rejected_scores=T(0.0),
        policy_kl_logps=T(-1.2),
        reference_kl_logps=T(-1.4),
    )
    fields.update(overrides)
    return LossInputs(**fields)


FLIP = {
    "chosen_preference_scores": T(0.5),
    "rejected_preference_scores": T(-0.5),
    "aux_chosen_rewards": T(-1.0),
    "aux_rejected_rewards": T(1.0),
}

# name -> list of (kwargs, input overrides, expected per-example loss)
GOLDEN_CASES = {
    "dpo": [
        ({"beta": 0.5}, {}, 0.47407698418010663),
        ({"beta": 0.5, "label_smoothing": 0.1}, {}, 0.5240769841801066),  # cDPO
    ],
    "ipo": [({"beta": 0.25}, {}, 1.0)],
    "sft": [
        ({}, {"policy_chosen_logps": T(-3.0)}, 1.5),
        ({"token_mean": False}, {"policy_chosen_logps": T(-3.0)}, 3.0),
    ],
    "upo": [
        ({"beta": 0.5, "aux_weight": 2.0}, {}, 2.01715761899535),
        ({"beta": 0.5, "aux_weight": 1.0, "normalise_weights": True}, {}, 0.47407698418010663 + 0.5),
        ({"beta": 0.5, "aux_weight": 1.0, "eta": 0.25}, {}, 0.47407698418010663 + 5.004578909722183),
    ],
    "dpo_nll": [
        # DPO 0.474077 + 2 * NLL, NLL = -(-1/2 + -2/4) / 2 = 0.5 (token means of both responses)
        ({"beta": 0.5, "aux_weight": 2.0}, {}, 0.47407698418010663 + 1.0),
        ({"beta": 0.5, "aux_weight": 1.0, "token_mean": False}, {}, 0.47407698418010663 + 1.5),  # sums
    ],
    "relabel_dpo": [
        # s_w = 0.5 + (-1) < s_l = -0.5 + 1: flipped, loss = log(1 + e^0.5)
        ({"beta": 0.5}, FLIP, 0.9740769841801068),
        # s_w = 0.5 - 0.1 > s_l = -0.5 + 0.1: label kept, plain DPO
        ({"beta": 0.5, "aux_weight": 0.1}, FLIP, 0.47407698418010663),
    ],
    "bradley_terry": [({}, {}, 0.3132616875182228)],
    "kto": [
        ({"beta": 0.5}, {}, 0.43797628786946013),
        # z = max(0, -2 + 1.4) = 0: (1 - sigmoid(0.25)) * (lambda_D + lambda_U) / 2 with lambdas (1, 2)
        ({"beta": 0.5, "undesirable_weight": 2.0}, {"policy_kl_logps": T(-2.0)}, 0.656735248671303),
    ],
    "modpo": [
        ({"beta": 0.5, "aux_weight": 0.25}, {}, math.log(2.0)),
        ({"beta": 0.5, "aux_weight": 1.0}, {}, 1.7014132779827524),  # log(1 + e^1.5)
        ({"beta": 0.5, "aux_weight": 0.0}, {}, 0.47407698418010663),  # DPO
    ],
    "alol": [
        # First: ratio e^0.5 clipped to 1.2, where the stop-gradient weight is locally constant, so the
        # generic gradcheck below applies (the unclipped case is checked in test_losses_baselines.py).
        ({"aux_weight": 1.0, "clip": 0.2}, {}, 0.75 * 1.2),
        ({"aux_weight": 1.0}, {}, 1.2365409530250961),  # 0.75 e^0.5
        ({"aux_weight": 1.0, "ratio": "ref_free"}, {}, 0.75),
        ({"aux_weight": 1.0, "token_mean": True}, {}, 1.2365409530250961 / 2),  # log pi / 2 tokens
    ],
    "csft": [({}, {}, 0.5), ({"token_mean": False}, {}, 1.0)],
}
# UPO-KTO: KTO's loss plus UPO's auxiliary term of the case above, 2 * (e + 1/e) / 4
GOLDEN_CASES["upo"].append(
    ({"beta": 0.5, "aux_weight": 2.0, "preference": "kto"}, {}, 0.43797628786946013 + (math.e + 1 / math.e) / 2)
)


def test_every_registered_loss_has_a_golden_case():
    missing = sorted(set(losses.available()) - set(GOLDEN_CASES))
    assert not missing, f"registered losses without a golden case: {missing}"


@pytest.mark.parametrize(
    "name,kwargs,overrides,expected",
    [(name, *case) for name, cases in GOLDEN_CASES.items() for case in cases],
)
def test_golden_value(name, kwargs, overrides, expected):
    _, loss_fn = get_loss(name, **kwargs)
    output = loss_fn(base_inputs(**overrides))
    torch.testing.assert_close(output.loss, T(expected), rtol=0, atol=1e-12)


def test_dpo_gradient_and_implicit_rewards():
    policy_chosen = T(-1.0).requires_grad_()
    _, loss_fn = get_loss("dpo", beta=0.5)
    output = loss_fn(base_inputs(policy_chosen_logps=policy_chosen))
    output.loss.sum().backward()
    torch.testing.assert_close(policy_chosen.grad, T(-0.1887703343990727), rtol=0, atol=1e-12)
    torch.testing.assert_close(output.metrics["rewards/chosen"], T(0.25))
    torch.testing.assert_close(output.metrics["rewards/rejected"], T(-0.25))


def test_sigmoid_losses_equal_log2_at_zero_margin():
    for beta in (0.1, 1.0, 7.0):
        for name in ("dpo", "upo"):
            _, loss_fn = get_loss(name, beta=beta, **({"aux_weight": 0.0} if name == "upo" else {}))
            out = loss_fn(base_inputs(policy_rejected_logps=T(-1.0)))
            torch.testing.assert_close(out.loss, T(math.log(2.0)), rtol=0, atol=1e-12)


def test_swapping_chosen_and_rejected_flips_the_sign():
    _, loss_fn = get_loss("dpo", beta=0.5)
    swapped = base_inputs(policy_chosen_logps=T(-2.0), policy_rejected_logps=T(-1.0))
    torch.testing.assert_close(loss_fn(swapped).loss, T(-math.log(1 / (1 + math.exp(0.5)))))


def test_reference_free_equals_zero_reference():
    _, free = get_loss("dpo", beta=0.5, reference_free=True)
    _, zero = get_loss("dpo", beta=0.5)
    zero_ref = base_inputs(reference_chosen_logps=T(0.0), reference_rejected_logps=T(0.0))
    torch.testing.assert_close(free(base_inputs()).loss, zero(zero_ref).loss, rtol=0, atol=0)


def test_upo_with_zero_aux_weight_is_dpo_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    fields = {
        name: torch.randn(16, generator=generator, dtype=torch.float32)
        for name in (
            "policy_chosen_logps",
            "policy_rejected_logps",
            "reference_chosen_logps",
            "reference_rejected_logps",
            "aux_chosen_rewards",
            "aux_rejected_rewards",
            "prompt_values",
        )
    }
    fields["chosen_lengths"] = torch.full((16,), 7.0)
    fields["rejected_lengths"] = torch.full((16,), 9.0)
    grads = []
    for name, kwargs in (("dpo", {"beta": 0.3}), ("upo", {"beta": 0.3, "aux_weight": 0.0})):
        policy = fields["policy_chosen_logps"].clone().requires_grad_()
        _, loss_fn = get_loss(name, **kwargs)
        out = loss_fn(LossInputs(**{**fields, "policy_chosen_logps": policy}))
        out.loss.mean().backward()
        grads.append((out.loss.detach(), policy.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1])


def test_upo_value_side_loss_is_the_expectile():
    _, loss_fn = get_loss("upo", beta=0.5, tau=0.7)
    out = loss_fn(base_inputs())
    torch.testing.assert_close(out.side_losses["value"], T(0.5), rtol=0, atol=1e-12)
    torch.testing.assert_close(expectile_loss(T(2.0, -2.0), 0.9), T(3.6, 0.4))


def test_upo_advantages_do_not_backpropagate_into_policy_through_value():
    values = T(0.3).requires_grad_()
    _, loss_fn = get_loss("upo", beta=0.5, aux_weight=1.0)
    out = loss_fn(base_inputs(prompt_values=values))
    assert not out.loss.requires_grad  # V enters the policy loss only through detached advantages
    (value_grad,) = torch.autograd.grad(out.side_losses["value"].sum(), values)
    assert value_grad.abs().item() > 0


def test_metrics_are_detached():
    for name, cases in GOLDEN_CASES.items():
        kwargs, overrides, _ = cases[0]
        policy = T(-1.0).requires_grad_()
        _, loss_fn = get_loss(name, **kwargs)
        out = loss_fn(base_inputs(**{**overrides, "policy_chosen_logps": policy}))
        assert all(not value.requires_grad for value in out.metrics.values()), name


DIFFERENTIABLE = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "chosen_preference_scores",
    "rejected_preference_scores",
    "chosen_scores",
    "rejected_scores",
)


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_gradcheck(name):
    kwargs, overrides, _ = GOLDEN_CASES[name][0]
    _, loss_fn = get_loss(name, **kwargs)
    generator = torch.Generator().manual_seed(1)
    base = base_inputs(**overrides)
    tensors = tuple(
        (getattr(base, field) + 0.1 * torch.randn(3, generator=generator, dtype=torch.float64)).requires_grad_()
        for field in DIFFERENTIABLE
    )

    def fn(*args):
        fields = {
            f: getattr(base, f).expand(3).clone()
            for f in LossInputs.__dataclass_fields__
            if getattr(base, f) is not None
        }
        fields.update(dict(zip(DIFFERENTIABLE, args, strict=True)))
        return loss_fn(LossInputs(**fields)).loss

    assert torch.autograd.gradcheck(fn, tensors)


def test_unknown_hyperparameter_is_rejected():
    with pytest.raises(ValueError, match="has no hyperparameter 'betta'"):
        get_loss("dpo", betta=0.1)
    with pytest.raises(KeyError, match="unknown loss 'dpoo'"):
        get_loss("dpoo")


def test_label_smoothing_out_of_range():
    with pytest.raises(ValueError, match=r"loss 'dpo': label_smoothing must be in \[0, 0.5\)"):
        get_loss("dpo", label_smoothing=0.7)
