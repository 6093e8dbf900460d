"""dpo_nll: hand-computed float64 values, gradient check, and equality with UPO at omega = 1.

Worked numbers (as in test_losses.py): policy logps (-1, -2), reference logps (-1.5, -1.5), beta = 0.5
give DPO margin z = 1 and L_DPO = log(1 + e^-0.5) = 0.474077, dL_DPO/dlogp_w = -beta sigmoid(-0.5) =
-0.188770. Lengths (2, 4): token means (-0.5, -0.5), L_NLL = 0.5 and dL_NLL/dlogp_w = -1 / (2 * 2).
"""

from __future__ import annotations

import math

import pytest
import torch

from upo.losses import LossInputs, get_loss

T = lambda *values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
DPO_AT_Z1 = math.log(1.0 + math.exp(-0.5))


def inputs(**overrides) -> LossInputs:
    fields = dict(
        policy_chosen_logps=T(-1.0, -3.0),
        policy_rejected_logps=T(-2.0, -1.0),
        reference_chosen_logps=T(-1.5, -2.0),
        reference_rejected_logps=T(-1.5, -2.0),
        chosen_lengths=T(2.0, 3.0),
        rejected_lengths=T(4.0, 1.0),
        aux_chosen_rewards=T(1.0, 0.3),
        aux_rejected_rewards=T(-1.0, 2.0),
        prompt_values=T(0.0, 0.5),
    )
    fields.update(overrides)
    return LossInputs(**fields)


def test_golden_values_two_examples():
    # example 2: z = (-3 + 1) - 0 = -2, L_DPO = log(1 + e^1); NLL = -(-3/3 + -1/1) / 2 = 1
    _, loss_fn = get_loss("dpo_nll", beta=0.5, aux_weight=0.5)
    out = loss_fn(inputs())
    expected = T(DPO_AT_Z1 + 0.5 * 0.5, math.log(1.0 + math.e) + 0.5 * 1.0)
    torch.testing.assert_close(out.loss, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.metrics["loss/nll"], T(0.5, 1.0), rtol=0, atol=1e-12)


def test_hand_computed_gradient():
    policy_chosen = T(-1.0).requires_grad_()
    _, loss_fn = get_loss("dpo_nll", beta=0.5, aux_weight=2.0)
    single = {k: v[:1] for k, v in vars(inputs()).items() if v is not None}
    out = loss_fn(LossInputs(**{**single, "policy_chosen_logps": policy_chosen}))
    out.loss.sum().backward()
    # -beta sigmoid(-0.5) + aux_weight * (-1 / (2 * 2))
    torch.testing.assert_close(policy_chosen.grad, T(-0.1887703343990727 - 0.5), rtol=0, atol=1e-12)


def test_gradcheck():
    _, loss_fn = get_loss("dpo_nll", beta=0.7, aux_weight=1.3)
    base = inputs()
    policy = (base.policy_chosen_logps.clone().requires_grad_(), base.policy_rejected_logps.clone().requires_grad_())

    def fn(chosen, rejected):
        fields = {**vars(base), "policy_chosen_logps": chosen, "policy_rejected_logps": rejected}
        return loss_fn(LossInputs(**fields)).loss

    assert torch.autograd.gradcheck(fn, policy)


def random_inputs(n: int = 32, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    names = ("policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps",
             "aux_chosen_rewards", "aux_rejected_rewards", "prompt_values")  # fmt: skip
    fields = {name: torch.randn(n, generator=generator, dtype=torch.float64) for name in names}
    fields["chosen_lengths"] = torch.randint(1, 20, (n,), generator=generator).to(torch.float64)
    fields["rejected_lengths"] = torch.randint(1, 20, (n,), generator=generator).to(torch.float64)
    return fields


@pytest.mark.parametrize("token_mean", [True, False])
def test_equals_upo_policy_loss_with_unit_weights(token_mean):
    """UPO with A = r_aux - V(x) = 0 everywhere has omega = exp(0) = 1: its policy loss is dpo_nll's."""
    fields = random_inputs()
    fields["aux_rejected_rewards"] = fields["aux_chosen_rewards"].clone()
    fields["prompt_values"] = fields["aux_chosen_rewards"].clone()  # advantages exactly 0
    kwargs = {"beta": 0.3, "aux_weight": 1.7, "token_mean": token_mean}
    _, upo = get_loss("upo", **kwargs)
    _, dpo_nll = get_loss("dpo_nll", **kwargs)
    upo_out, nll_out = upo(LossInputs(**fields)), dpo_nll(LossInputs(**fields))
    assert torch.equal(upo_out.metrics["aux/weight_mean"], torch.ones(32, dtype=torch.float64))
    torch.testing.assert_close(nll_out.loss, upo_out.loss, rtol=0, atol=1e-12)


def test_equals_upo_in_the_uniform_weight_limit():
    """eta -> infinity: omega = exp(A / eta) -> 1 for any advantages (no value head needed)."""
    fields = random_inputs(seed=3)
    _, upo = get_loss("upo", beta=0.2, aux_weight=0.8, eta=1e300)
    _, dpo_nll = get_loss("dpo_nll", beta=0.2, aux_weight=0.8)
    torch.testing.assert_close(dpo_nll(LossInputs(**fields)).loss, upo(LossInputs(**fields)).loss, rtol=0, atol=1e-12)
    _, sharp = get_loss("upo", beta=0.2, aux_weight=0.8, eta=1.0)  # a real weighting differs
    assert not torch.allclose(dpo_nll(LossInputs(**fields)).loss, sharp(LossInputs(**fields)).loss)


def test_zero_weight_is_dpo_bit_for_bit():
    fields = random_inputs(seed=5)
    _, dpo = get_loss("dpo", beta=0.4)
    _, dpo_nll = get_loss("dpo_nll", beta=0.4, aux_weight=0.0)
    assert torch.equal(dpo(LossInputs(**fields)).loss, dpo_nll(LossInputs(**fields)).loss)


def test_needs_no_value_head_nor_aux_rewards():
    spec, loss_fn = get_loss("dpo_nll")
    assert spec.needs == frozenset({"rejected", "reference"})
    fields = {k: v for k, v in random_inputs().items() if k not in ("aux_chosen_rewards", "aux_rejected_rewards",
                                                                      "prompt_values")}  # fmt: skip
    assert torch.isfinite(loss_fn(LossInputs(**fields)).loss).all()
