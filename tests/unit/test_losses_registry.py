"""The loss registry: hyperparameters converted and range-checked against the loss's signature,
UPO's preference term and value head come from the registry, loss modules are discovered."""

from __future__ import annotations

import math

import pytest
import torch

import upo.losses as losses
from upo.losses import LossInputs, get_loss
from upo.losses.base import LOSSES, Interval


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("upo", {"tau": 1.5}, r"loss 'upo': tau must be in \(0, 1\), got 1.5"),
        ("upo", {"tau": 0.0}, r"loss 'upo': tau must be in \(0, 1\)"),
        ("upo", {"eta": -1.0}, r"loss 'upo': eta must be in \(0, inf\), got -1.0"),
        ("upo", {"weight_clip": 0.0}, r"loss 'upo': weight_clip must be in \(0, inf\)"),
        ("upo", {"token_mean": "no"}, r"loss 'upo': token_mean must be true or false, got 'no'"),
        ("sft", {"token_mean": 0}, r"loss 'sft': token_mean must be true or false, got 0"),
        ("dpo", {"label_smoothing": "0.1"}, r"loss 'dpo': label_smoothing must be a number .*got '0.1'"),
        ("dpo", {"label_smoothing": 0.5}, r"loss 'dpo': label_smoothing must be in \[0, 0.5\)"),
        ("dpo", {"beta": 0.0}, r"loss 'dpo': beta must be in \(0, inf\)"),
        ("dpo", {"beta": float("nan")}, r"loss 'dpo': beta must be finite"),
        ("ipo", {"beta": float("inf")}, r"loss 'ipo': beta must be finite"),
        ("dpo", {"beta": True}, r"loss 'dpo': beta must be a number"),
        ("bradley_terry", {"margin": "1"}, r"loss 'bradley_terry': margin must be a number"),
        ("upo", {"preference": "sft"}, r"loss 'upo': preference 'sft' must be a pairwise loss"),
        ("upo", {"preference": "dpoo"}, r"loss 'upo': preference: unknown loss 'dpoo'"),
        ("upo", {"preference": "ipo", "label_smoothing": 0.1}, r"preference 'ipo' takes no label_smoothing"),
    ],
)
def test_bad_hyperparameters_name_the_loss_and_key(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_loss(name, **kwargs)


def test_an_int_is_converted_for_a_float_and_defaults_are_bound():
    _, bound = get_loss("upo", beta=1)
    assert bound.hyperparameters["beta"] == 1.0 and isinstance(bound.hyperparameters["beta"], float)
    assert bound.hyperparameters["tau"] == 0.7  # the default, read from the signature only


def test_interval_bounds():
    assert Interval(0.0, 1.0, low_open=True, high_open=True).contains(0.5)
    assert not Interval(0.0, 1.0, low_open=True).contains(0.0)
    assert Interval(0.0, 1.0).contains(1.0) and str(Interval(0.0)) == "[0, inf)"
    assert not Interval(0.0, low_open=True).contains(-math.inf)


def test_upo_picks_its_preference_term_from_the_registry():
    inputs = LossInputs(
        policy_chosen_logps=torch.tensor([-1.0], dtype=torch.float64),
        policy_rejected_logps=torch.tensor([-2.0], dtype=torch.float64),
        reference_chosen_logps=torch.tensor([-1.5], dtype=torch.float64),
        reference_rejected_logps=torch.tensor([-1.5], dtype=torch.float64),
        chosen_lengths=torch.tensor([2.0], dtype=torch.float64),
        rejected_lengths=torch.tensor([4.0], dtype=torch.float64),
        aux_chosen_rewards=torch.tensor([1.0], dtype=torch.float64),
        aux_rejected_rewards=torch.tensor([-1.0], dtype=torch.float64),
        prompt_values=torch.tensor([0.0], dtype=torch.float64),
    )
    upo_ipo = get_loss("upo", preference="ipo", beta=0.25, aux_weight=0.0)[1](inputs)
    ipo = get_loss("ipo", beta=0.25)[1](inputs)
    assert torch.equal(upo_ipo.loss, ipo.loss)


def test_upo_owns_its_value_head():
    spec = LOSSES.get("upo")
    assert "value" in spec.needs and spec.side_module is not None
    head = spec.side_module.build(8)
    states, targets = torch.randn(6, 8), torch.tensor([[1.0, -1.0]] * 6)
    spec.side_module.warm_start(head, states, targets, get_loss("upo", tau=0.9)[1].hyperparameters)
    # an expectile above the median of {1, -1} (tau 0.9) lies above 0
    assert head(states).mean() > 0
    for name in LOSSES:
        if name != "upo":
            assert LOSSES.get(name).side_module is None


def test_every_loss_module_is_discovered():
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(losses.__path__) if not m.name.startswith("_")}
    assert set(losses.discover()) == modules
    assert {"dpo", "upo", "sft", "relabel_dpo", "bradley_terry", "ipo"} <= set(losses.available())
