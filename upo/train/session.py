"""Everything a training run is built from, set up in one place: process group and device (accelerate),
seed, tokenizer, model (causal LM, or a scalar-head scorer for a loss that needs ``sequence_scores``,
LoRA through ``upo.models.loading``), the loss's data and side module, optimizers and schedule.

``open_session(cfg)`` is what ``upo.train.offline.train`` runs and what the throughput benchmark
times: both call ``train_step(session.core, session.micro_batches(ids), step)``.

Batching rule (every offline run, reward model included): an epoch is ``floor(N / batch_size)`` full
global batches of a seeded shuffle (``batch_order``); the last partial batch of each epoch is dropped
(each epoch's shuffle drops different pairs). ``train.max_steps`` set (0 included) is the number of
steps; unset, ``epochs * floor(N / batch_size)``. ``max_steps: 0`` trains nothing and saves the
starting model unchanged (the "no SFT" stage of an instruct model).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from upo.config import RunConfig
from upo.io import read_jsonl
from upo.losses import get_loss
from upo.losses.base import BoundLoss, LossSpec
from upo.models.pair_forward import PairForward, ScoreForward
from upo.strict import ConfigError, to_dict
from upo.train.folds import fold_training_records
from upo.train.inputs import PairData, build_pair_data, forward_sides, heldout_records, load_cache, needs_cache
from upo.train.optim import build_optimizer, lr_lambda, set_seed
from upo.train.step import MicroBatch, StepCore, micro_batch


def batch_order(num_pairs: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Full global batches of one epoch, shuffled by (seed, epoch) so a resumed run sees the same."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_pairs, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, num_pairs - batch_size + 1, batch_size)]


def total_steps(cfg: RunConfig, num_pairs: int) -> int:
    """``train.max_steps`` if set (0 means no step), else ``epochs`` full passes of whole batches."""
    if cfg.train.max_steps is not None:
        return cfg.train.max_steps
    return cfg.train.epochs * (num_pairs // cfg.train.batch_size)


@dataclass
class TrainingSession:
    cfg: RunConfig
    accelerator: object
    tokenizer: object
    spec: LossSpec
    loss_fn: BoundLoss
    train: PairData
    core: StepCore
    side_module: torch.nn.Module | None
    cache: dict | None
    total_steps: int
    steps_per_epoch: int

    @property
    def sides(self) -> dict[str, bool]:
        """Rows the forward stacks after the chosen ones (``collate_pairs`` keywords)."""
        return forward_sides(self.loss_fn.needs)

    @property
    def unwrapped(self):
        """The forward module without its DDP/FSDP wrapper (``.model``, ``.side_module``)."""
        return self.accelerator.unwrap_model(self.core.forward)

    def micro_batches(self, global_batch: list[int]) -> list[MicroBatch]:
        """This process's share of a global batch, split into ``train.grad_accum`` micro-batches."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        per_process = len(global_batch) // world
        mine = global_batch[rank * per_process : (rank + 1) * per_process]
        size = per_process // self.cfg.train.grad_accum
        return [
            micro_batch(
                self.train.pairs,
                self.train.tensors,
                mine[start : start + size],
                self.tokenizer.pad_token_id,
                device=self.accelerator.device,
                **self.sides,
            )
            for start in range(0, per_process, size)
        ]

    def heldout(self) -> PairData | None:
        """The held-out pairs with the same inputs as training (statistics fitted on the train split)."""
        if not (self.cfg.train.eval_pairs and self.cfg.data.test):
            return None
        records = heldout_records(self.cfg, self.cache)
        if not records:
            return None
        return build_pair_data(
            self.cfg,
            self.loss_fn.needs,
            self.tokenizer,
            "test",
            records,
            self.train.source_records,
            self.cache,
            self.spec.data_transform,
            self.accelerator.device,
        )


def check_trackers(cfg: RunConfig) -> None:
    for tracker in set(cfg.train.log_to) - {"csv"}:
        if importlib.util.find_spec(tracker) is None:
            raise ConfigError(f"train.log_to: {tracker!r} needs the {tracker} package (pip install {tracker})")


def make_accelerator(cfg: RunConfig):
    """The process group and device. Mixed precision is not delegated: ``upo.models.heads.autocast``
    wraps forward and loss in :func:`upo.train.step.train_step`, the one place bf16 is switched on."""
    from accelerate import Accelerator

    check_trackers(cfg)
    accelerator = Accelerator(
        mixed_precision="no",
        log_with=[t for t in cfg.train.log_to if t != "csv"] or None,
        project_dir=cfg.output_dir or None,
    )
    world = accelerator.num_processes
    per_process = cfg.train.batch_size // world
    if per_process * world != cfg.train.batch_size or per_process % cfg.train.grad_accum:
        raise ConfigError(
            f"train.batch_size {cfg.train.batch_size} must divide by processes ({world}) x "
            f"train.grad_accum ({cfg.train.grad_accum})"
        )
    return accelerator


def build_side_module(spec: LossSpec, loss_fn: BoundLoss, model, train: PairData):
    """The loss's side module (UPO's value head), warm-started by the loss's own hook."""
    if spec.side_module is None:
        return None
    module = spec.side_module.build(model.config.get_text_config().hidden_size)
    if spec.side_module.warm_start is not None:
        targets = torch.stack([train.tensors[name] for name in spec.side_module.targets], 1)  # (N, 2)
        spec.side_module.warm_start(module, train.prompt_states, targets, loss_fn.hyperparameters)
    return module


def open_session(cfg: RunConfig) -> TrainingSession:
    """Build a run from ``cfg`` (see the module docstring); nothing is written."""
    from upo.models.loading import load_model, load_tokenizer

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    spec, loss_fn = get_loss(cfg.loss.name, **cfg.loss.kwargs)
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    needs = loss_fn.needs  # declared needs plus those of the bound hyperparameters (UPO's preference term)
    scorer = "sequence_scores" in needs
    model = load_model(
        cfg.model.path, cfg.model.dtype, cfg.model.lora, cfg.model.trust_remote_code, "score" if scorer else "lm"
    )
    if scorer:
        model.config.pad_token_id = tokenizer.pad_token_id
    records = read_jsonl(cfg.data.train)[: cfg.data.max_train_pairs]
    records = fold_training_records(records, cfg.data.fold)  # data.fold: cross-fitting reward models
    cache = load_cache(cfg) if needs_cache(needs) else None
    train = build_pair_data(
        cfg, needs, tokenizer, "train", records, records, cache, spec.data_transform, accelerator.device
    )
    records = train.records  # after the loss's data transform (CSFT: one record per response)
    if len(records) < cfg.train.batch_size:
        raise ConfigError(f"{cfg.data.train}: {len(records)} pairs < train.batch_size {cfg.train.batch_size}")
    side_module = build_side_module(spec, loss_fn, model, train)

    forward = ScoreForward(model) if scorer else PairForward(model, side_module)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    side_optimizer = (
        torch.optim.AdamW(side_module.parameters(), lr=cfg.optim.value_lr) if side_module is not None else None
    )
    steps = total_steps(cfg, len(records))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.optim.warmup_steps, steps, cfg.optim.schedule)
    )
    forward, optimizer = accelerator.prepare(forward, optimizer)  # moves the side module with the model
    core = StepCore(
        forward=forward,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=scheduler,
        accelerator=accelerator,
        clipped=[p for p in accelerator.unwrap_model(forward).model.parameters() if p.requires_grad],
        max_grad_norm=cfg.optim.max_grad_norm,
        autocast_bf16=cfg.model.autocast_bf16,
        side_optimizer=side_optimizer,
    )
    if cfg.train.log_to != ["csv"]:
        accelerator.init_trackers("upo", config=to_dict(cfg))
    return TrainingSession(
        cfg, accelerator, tokenizer, spec, loss_fn, train, core, side_module, cache, steps,
        len(records) // cfg.train.batch_size,
    )  # fmt: skip
