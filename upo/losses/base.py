"""Loss interface: inputs, outputs and the registry whose entries declare what they need.

A loss is a pure function ``fn(inputs: LossInputs, **hyperparameters) -> LossOutput``; its keyword
defaults are the single source of its hyperparameter defaults, and ``get_loss`` checks a config's
kwargs against the signature, so a typo fails when the config is validated, not mid-run.

Needs a loss can declare (the trainer loads only these):
    ``rejected``    the rejected response is forwarded too (every pairwise loss; not SFT)
    ``reference``   cached reference log-probs of the pair
    ``aux_rewards`` weighted, normalised auxiliary rewards of both responses
    ``value``       the value head's prediction V(x) at the last prompt token (UPO)
    ``token_logps`` per-token log-probs and masks (not only sequence sums)
    ``rewards``     scalar reward-model scores of both responses (Bradley-Terry)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from upo.registry import Registry

NEEDS = frozenset({"rejected", "reference", "aux_rewards", "value", "token_logps", "rewards"})


@dataclass(frozen=True)
class LossInputs:
    """Everything a pairwise loss may read; all (B,) unless noted. Unneeded fields stay None.

    ``*_logps`` are sequence sums of token log-probs; ``*_lengths`` count response tokens.
    """

    policy_chosen_logps: torch.Tensor | None = None
    policy_rejected_logps: torch.Tensor | None = None
    chosen_lengths: torch.Tensor | None = None
    rejected_lengths: torch.Tensor | None = None
    reference_chosen_logps: torch.Tensor | None = None
    reference_rejected_logps: torch.Tensor | None = None
    aux_chosen_rewards: torch.Tensor | None = None  # r_aux(x, y_w) = sum_k c_k norm_k(r_k)
    aux_rejected_rewards: torch.Tensor | None = None
    prompt_values: torch.Tensor | None = None  # V_psi(x), detached from the policy trunk
    chosen_rewards: torch.Tensor | None = None  # reward-model scores (Bradley-Terry)
    rejected_rewards: torch.Tensor | None = None


@dataclass
class LossOutput:
    """``loss``: (B,) per-example policy loss (the trainer averages it); ``metrics``: detached."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    # Losses of other parameter groups (UPO's value head): (B,) each, added to the objective by the
    # trainer. Their inputs are detached from the policy, so they never move the policy's weights.
    side_losses: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class LossSpec:
    name: str
    fn: Callable[..., LossOutput]
    needs: frozenset[str]

    def hyperparameters(self) -> dict[str, object]:
        """Keyword-only hyperparameters and their defaults, read from the signature."""
        return {
            name: parameter.default
            for name, parameter in inspect.signature(self.fn).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }


LOSSES: Registry[LossSpec] = Registry("loss")


def register_loss(name: str, needs: frozenset[str] | set[str] = frozenset()):
    """Decorator: register a pure loss function under ``name`` with the inputs it ``needs``."""
    unknown = set(needs) - NEEDS
    if unknown:
        raise ValueError(f"loss {name!r} declares unknown needs {sorted(unknown)}; known: {sorted(NEEDS)}")

    def wrap(fn: Callable[..., LossOutput]) -> Callable[..., LossOutput]:
        LOSSES.register(name, LossSpec(name, fn, frozenset(needs)))
        return fn

    return wrap


def get_loss(name: str, **kwargs) -> tuple[LossSpec, Callable[[LossInputs], LossOutput]]:
    """Look up a loss and bind its hyperparameters; unknown kwargs raise ``ValueError``."""
    spec = LOSSES.get(name)
    allowed = spec.hyperparameters()
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"loss {name!r} has no hyperparameter {unknown[0]!r}; it takes: {', '.join(allowed) or 'none'}"
        )

    def bound(inputs: LossInputs) -> LossOutput:
        return spec.fn(inputs, **kwargs)

    return spec, bound


def require(inputs: LossInputs, *names: str) -> list[torch.Tensor]:
    """Fetch fields a loss needs, failing clearly when the trainer did not provide one."""
    values = []
    for name in names:
        value = getattr(inputs, name)
        if value is None:
            raise ValueError(f"loss input {name!r} is missing; declare it in the loss's needs")
        values.append(value)
    return values
