"""The one training step: forward, the registry's loss, backward, clip, optimizer and scheduler step.

Used by every offline run (SFT, DPO, UPO, relabelled DPO, the Bradley-Terry reward model: any loss
of the registry) and timed as is by ``benchmarks/train_throughput.py``. PPO keeps its own loss over
rollouts but takes its optimizer step through :func:`optimizer_step`.

The step never names a loss: the loss's needs decide what the forward returns and what
:func:`make_inputs` attaches, and a loss's ``side_losses`` (UPO's value regression) are added to the
objective; their gradients reach only the side module, which has its own optimizer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from upo.data.batching import TokenizedPair, collate_pairs
from upo.losses.base import BoundLoss, LossInputs, LossOutput
from upo.models.heads import autocast


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


@dataclass
class MicroBatch:
    """Model inputs (collated [chosen; rejected], on the device) and the pairs' loss-input tensors."""

    batch: dict[str, torch.Tensor]
    tensors: dict[str, torch.Tensor]
    size: int  # pairs

    @property
    def tokens(self) -> int:
        return int(self.batch["attention_mask"].sum())


def micro_batch(
    pairs: list[TokenizedPair],
    tensors: dict[str, torch.Tensor],
    ids: list[int],
    pad_token_id: int,
    include_rejected: bool,
    device: torch.device,
    include_kl: bool = False,
) -> MicroBatch:
    """Collate pairs ``ids`` and index their per-pair tensors (each (N,) over the split)."""
    index = torch.tensor(ids, dtype=torch.long)
    batch = collate_pairs([pairs[i] for i in ids], pad_token_id, include_rejected, include_kl)
    return MicroBatch(
        {k: v.to(device) for k, v in batch.items()},
        {name: value[index].to(device) for name, value in tensors.items()},
        len(ids),
    )


def make_inputs(out: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], size: int) -> LossInputs:
    """Split the concatenated forward's rows into LossInputs: [0, size) chosen, [size, 2 size) rejected,
    [2 size, 3 size) the mismatched sequences of the ``kl_logps`` need (``collate_pairs``' order)."""
    fields = dict(tensors)
    if "logps" in out:
        logps, lengths = out["logps"], out["lengths"]
        fields["policy_chosen_logps"], fields["chosen_lengths"] = logps[:size], lengths[:size]
        if logps.shape[0] > size:
            fields["policy_rejected_logps"] = logps[size : 2 * size]
            fields["rejected_lengths"] = lengths[size : 2 * size]
        if logps.shape[0] > 2 * size:
            fields["policy_kl_logps"] = logps[2 * size :]
    if "scores" in out:
        fields["chosen_scores"], fields["rejected_scores"] = out["scores"][:size], out["scores"][size:]
    if "values" in out:
        fields["prompt_values"] = out["values"][:size]
    return LossInputs(**fields)


def forward_loss(forward: nn.Module, loss_fn: BoundLoss, micro: MicroBatch) -> tuple[torch.Tensor, LossOutput]:
    """The objective of one micro-batch: mean policy loss plus the mean of every side loss."""
    out = forward(**micro.batch)
    result = loss_fn(make_inputs(out, micro.tensors, micro.size))
    objective = result.loss.mean() + sum(value.mean() for value in result.side_losses.values())
    return objective, result


def optimizer_step(
    parameters: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler,
    max_grad_norm: float,
    accelerator=None,
) -> float:
    """Clip the gradient norm of ``parameters`` to ``max_grad_norm``, step, schedule, zero. Returns the norm."""
    clip = accelerator.clip_grad_norm_ if accelerator is not None else torch.nn.utils.clip_grad_norm_
    grad_norm = clip(parameters, max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


@dataclass
class StepCore:
    """Everything one step touches. ``forward`` may be wrapped by ``accelerator.prepare`` (DDP/FSDP)."""

    forward: nn.Module
    loss_fn: BoundLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    accelerator: object  # accelerate.Accelerator: backward, no_sync, clip_grad_norm_
    clipped: list[nn.Parameter]  # the model's trainable parameters (the side module is not clipped)
    max_grad_norm: float
    autocast_bf16: bool
    side_optimizer: torch.optim.Optimizer | None = None


@dataclass
class StepResult:
    """This process's numbers of one step: mean loss and metrics over its micro-batches, grad norm, tokens."""

    loss: float
    grad_norm: float
    tokens: int
    metrics: dict[str, float] = field(default_factory=dict)


def train_step(core: StepCore, micro_batches: list[MicroBatch], step: int = 0) -> StepResult:
    """One optimizer step over ``micro_batches`` (gradient accumulation; DDP syncs on the last one).

    Raises :class:`NonFiniteLossError` before the backward of a NaN/inf objective.
    """
    accelerator, count = core.accelerator, len(micro_batches)
    loss, tokens, metrics = 0.0, 0, {}
    for index, micro in enumerate(micro_batches):
        sync = index == count - 1
        context = contextlib.nullcontext() if sync else accelerator.no_sync(core.forward)
        with context, autocast(core.autocast_bf16, accelerator.device):
            objective, result = forward_loss(core.forward, core.loss_fn, micro)
            if not torch.isfinite(objective):
                raise NonFiniteLossError(f"loss is {objective.item()} at step {step}")
            accelerator.backward(objective / count)
        loss += result.loss.mean().detach().float().item() / count
        tokens += micro.tokens
        for name, value in result.metrics.items():
            metrics[name] = metrics.get(name, 0.0) + value.float().mean().item() / count
    grad_norm = optimizer_step(core.clipped, core.optimizer, core.scheduler, core.max_grad_norm, accelerator)
    if core.side_optimizer is not None:
        core.side_optimizer.step()
        core.side_optimizer.zero_grad(set_to_none=True)
    return StepResult(loss, grad_norm, tokens, metrics)
