"""Loss interface: inputs, outputs and the registry whose entries declare what they need.

A loss is a pure function ``fn(inputs: LossInputs, **hyperparameters) -> LossOutput``; its keyword
defaults are the single source of its hyperparameter defaults and its annotations are their schema:
``get_loss`` converts a config's values against the annotation (``float`` takes an int, never a
string; ``bool`` takes only true/false) and checks the range an ``Annotated[..., Interval(...)]``
declares, so ``tau: 1.5`` or ``token_mean: "no"`` fails when the config is validated, naming the
loss and the key. Non-finite floats are always rejected.

Needs a loss can declare (the trainer provides exactly these, see ``upo.train.inputs``):
    ``rejected``           the rejected response is forwarded too (every pairwise loss; not SFT)
    ``reference``          cached reference log-probs of the pair
    ``aux_rewards``        weighted, normalised auxiliary rewards of both responses
    ``preference_scores``  per-response preference scores p(y) (``upo.train.preference_scores``; relabelling, A-LoL)
    ``value``              V(x) of a side module the loss owns (``LossSpec.side_module``), e.g. UPO's
    ``sequence_scores``    the model is a scalar-head scorer (reward model): one score per response
    ``kl_logps``           log-probs of mismatched pairs (x_i, y'_i), y' another pair's response, under
                           the policy (forwarded with the pair) and the reference (KTO's reference point)

A loss whose needs depend on its hyperparameters (UPO's ``preference`` term) declares ``needs_of``; the
trainer reads ``BoundLoss.needs``, the union. A loss that changes the training records or the sampling
prompt (CSFT's control tokens) declares ``data_transform`` / ``generation_prefix``: the trainer and the
evaluator call these hooks and never name the loss.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import torch

from upo.registry import Registry

NEEDS = frozenset(
    {"rejected", "reference", "aux_rewards", "preference_scores", "value", "sequence_scores", "kl_logps"}
)


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
    chosen_preference_scores: torch.Tensor | None = None  # p(y_w): cross-fitted RM, +-0.5 label or oracle
    rejected_preference_scores: torch.Tensor | None = None
    chosen_scores: torch.Tensor | None = None  # a scalar-head model's score r(x, y_w) (reward model)
    rejected_scores: torch.Tensor | None = None
    policy_kl_logps: torch.Tensor | None = None  # log pi(y'_i | x_i), y'_i the response of another pair
    reference_kl_logps: torch.Tensor | None = None  # log pi_ref(y'_i | x_i)


@dataclass
class LossOutput:
    """``loss``: (B,) per-example policy loss (the trainer averages it); ``metrics``: detached."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    # Losses of a side module's parameters (UPO's value head): (B,) each, added to the objective by
    # the trainer. Their inputs are detached from the policy, so they never move the policy's weights.
    side_losses: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Interval:
    """Allowed range of a numeric hyperparameter, used as ``Annotated[float, Interval(...)]``."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        left = "(" if self.low_open or math.isinf(self.low) else "["
        right = ")" if self.high_open or math.isinf(self.high) else "]"
        return f"{left}{self.low:g}, {self.high:g}{right}"


POSITIVE = Interval(0.0, low_open=True)  # beta, eta, weight_clip
NON_NEGATIVE = Interval(0.0)
SMOOTHING = Interval(0.0, 0.5, high_open=True)  # label_smoothing: a flip probability below 1/2


@dataclass(frozen=True)
class SideModule:
    """A trainable module a loss owns besides the policy (UPO's value head V(x)).

    ``build(hidden_size)`` returns an ``nn.Module`` mapping the detached last-prompt-token hidden state
    (B, H) to (B,) values, which the trainer passes as ``LossInputs.prompt_values``. ``warm_start(module,
    prompt_states, targets, hyperparameters)`` fits it before training on the reference model's states
    ((N, H); ``targets`` (N, 2) the per-pair tensors it regresses on, chosen then rejected) with the
    loss's bound hyperparameters. The trainer gives it its own optimizer (``optim.value_lr``) and saves
    it as ``<run>/<file_name>``.
    """

    build: Callable[[int], torch.nn.Module]
    warm_start: Callable[..., None] | None = None
    targets: tuple[str, str] = ("aux_chosen_rewards", "aux_rejected_rewards")
    file_name: str = "value_head.safetensors"


@dataclass(frozen=True)
class LossSpec:
    name: str
    fn: Callable[..., LossOutput]
    needs: frozenset[str]
    side_module: SideModule | None = None
    validate: Callable[..., None] | None = None  # cross-field or registry checks of the bound values
    # Needs that depend on the bound hyperparameters (UPO's preference term): ``needs_of(**kwargs)``.
    needs_of: Callable[..., frozenset[str]] | None = None
    # ``data_transform(records, fit_records, aux_weights) -> records``: rewrites the training (and
    # held-out) records before tokenisation; statistics come from ``fit_records`` (the raw train split).
    data_transform: Callable[[list[dict], list[dict], dict[str, float]], list[dict]] | None = None
    # ``generation_prefix(aux_weights) -> str``: text placed after the chat template's assistant header
    # when the evaluation samples this run (CSFT's "good" control tokens).
    generation_prefix: Callable[[dict[str, float]], str] | None = None

    def parameters(self) -> dict[str, inspect.Parameter]:
        """Keyword-only parameters of the loss function (its hyperparameters)."""
        return {
            name: parameter
            for name, parameter in inspect.signature(self.fn).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def hyperparameters(self) -> dict[str, object]:
        """Keyword-only hyperparameters and their defaults, read from the signature."""
        return {name: parameter.default for name, parameter in self.parameters().items()}


LOSSES: Registry[LossSpec] = Registry("loss")


def register_loss(
    name: str,
    needs: frozenset[str] | set[str] = frozenset(),
    side_module: SideModule | None = None,
    validate: Callable[..., None] | None = None,
    needs_of: Callable[..., frozenset[str]] | None = None,
    data_transform: Callable[[list[dict], list[dict], dict[str, float]], list[dict]] | None = None,
    generation_prefix: Callable[[dict[str, float]], str] | None = None,
) -> Callable[[Callable[..., LossOutput]], Callable[..., LossOutput]]:
    """Decorator: register a pure loss function under ``name`` with the inputs it ``needs``, the side
    module it owns (if any), an optional ``validate(**hyperparameters)`` run by ``get_loss``, and the
    optional hooks of :class:`LossSpec` (``needs_of``, ``data_transform``, ``generation_prefix``)."""
    check_needs_declaration(name, frozenset(needs))
    if ("value" in needs) != (side_module is not None):
        raise ValueError(f"loss {name!r}: the 'value' need and a side_module go together")

    def wrap(fn: Callable[..., LossOutput]) -> Callable[..., LossOutput]:
        spec = LossSpec(name, fn, frozenset(needs), side_module, validate, needs_of, data_transform, generation_prefix)
        LOSSES.register(name, spec)
        return fn

    return wrap


def check_needs_declaration(name: str, needs: frozenset[str]) -> None:
    """Known needs only; mismatched pairs are forwarded beside a pair, so ``kl_logps`` needs ``rejected``."""
    unknown = set(needs) - NEEDS
    if unknown:
        raise ValueError(f"loss {name!r} declares unknown needs {sorted(unknown)}; known: {sorted(NEEDS)}")
    if "kl_logps" in needs and "rejected" not in needs:
        raise ValueError(f"loss {name!r}: the 'kl_logps' need is forwarded with a pair; declare 'rejected' too")


def convert_hyperparameter(loss: str, key: str, annotation: Any, value: Any) -> Any:
    """``value`` converted to the annotated type and range-checked; errors name the loss and key.

    Strings are never numbers here (``"0.1"`` is rejected, as the config layer rejects it: YAML reads
    ``1e-3`` as a string, and a silent conversion would hide that); an int is accepted for a float.
    """
    where = f"loss {loss!r}: {key}"
    interval = None
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        interval = next((extra for extra in extras if isinstance(extra, Interval)), None)
    else:
        base = annotation
    if base is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number (write 0.1, not '0.1'), got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value!r}")
    elif base is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
    else:
        raise TypeError(f"{where}: unsupported annotation {annotation!r} (use bool, int, float or str)")
    if interval is not None and not interval.contains(value):
        raise ValueError(f"{where} must be in {interval}, got {value!r}")
    return value


def annotation_of(fn: Callable, parameter: inspect.Parameter) -> Any:
    """A keyword's annotation, resolved in the loss module's namespace (string annotations under
    ``from __future__ import annotations``); unannotated keywords take their default's type."""
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return type(parameter.default)
    if isinstance(annotation, str):
        try:
            annotation = eval(annotation, fn.__globals__)  # noqa: S307  (the loss's own source text)
        except NameError as error:
            raise TypeError(f"{fn.__module__}.{fn.__name__}: annotation of {parameter.name!r}: {error}") from None
    return annotation


class BoundLoss:
    """A loss with its hyperparameters bound: ``bound(inputs) -> LossOutput``.

    ``hyperparameters`` holds every keyword the function receives (defaults filled in), which is what
    a side module's warm start reads (UPO's ``tau``): the trainer never names a hyperparameter.
    """

    def __init__(self, spec: LossSpec, hyperparameters: dict[str, Any]) -> None:
        self.spec = spec
        self.hyperparameters = hyperparameters

    def __call__(self, inputs: LossInputs) -> LossOutput:
        return self.spec.fn(inputs, **self.hyperparameters)

    @property
    def needs(self) -> frozenset[str]:
        """What the trainer must provide: the declared needs plus those of the bound hyperparameters."""
        if self.spec.needs_of is None:
            return self.spec.needs
        return self.spec.needs | frozenset(self.spec.needs_of(**self.hyperparameters))

    def __repr__(self) -> str:
        return f"BoundLoss({self.spec.name!r}, {self.hyperparameters})"


def get_loss(name: str, **kwargs) -> tuple[LossSpec, BoundLoss]:
    """Look up a loss and bind its hyperparameters, converted and range-checked (``ValueError``)."""
    spec = LOSSES.get(name)
    parameters = spec.parameters()
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        raise ValueError(
            f"loss {name!r} has no hyperparameter {unknown[0]!r}; it takes: {', '.join(parameters) or 'none'}"
        )
    bound = {}
    for key, parameter in parameters.items():
        value = kwargs.get(key, parameter.default)
        bound[key] = convert_hyperparameter(name, key, annotation_of(spec.fn, parameter), value)
    if spec.validate is not None:  # cross-field or registry checks a loss declares (UPO's preference term)
        spec.validate(**bound)
    return spec, BoundLoss(spec, bound)


def sampling_prefix(loss: str | None, aux_weights: dict[str, float]) -> str:
    """Text a run of ``loss`` is sampled with after the assistant header ("" for most losses).

    The evaluator calls this with the run's ``loss.name`` and ``data.aux_rewards`` (CSFT: its "good"
    control tokens), so sampling conditions the policy exactly as its training did. ``loss`` is None for
    a trainer with its own objective (PPO's run has no ``loss:``): no hooks.
    """
    if loss is None:
        return ""
    hook = LOSSES.get(loss).generation_prefix
    return "" if hook is None else hook(aux_weights)


def require(inputs: LossInputs, *names: str) -> list[torch.Tensor]:
    """Fetch fields a loss needs, failing clearly when the trainer did not provide one."""
    values = []
    for name in names:
        value = getattr(inputs, name)
        if value is None:
            raise ValueError(f"loss input {name!r} is missing; declare it in the loss's needs")
        values.append(value)
    return values
