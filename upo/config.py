"""The run configuration: one visible block of typed defaults, loaded strictly from ``run.yaml``.

A run file is fully resolved (the workflow writes it before the job starts), so one command
reproduces one run outside Snakemake: ``python -m upo train RUN_DIR/run.yaml``.
Sections owned by other modules (``eval``, ``ppo``) are typed there and composed here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from upo.io import read_yaml, write_yaml
from upo.strict import ConfigError, from_dict, to_dict


@dataclass
class LoraConfig:
    r: int = 16  # adapter rank
    alpha: int = 32  # scaling numerator (scale = alpha / r)
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"  # peft's shorthand: every linear layer but the head


@dataclass
class ModelConfig:
    name: str = "pico"  # key of upo.models.MODEL_TABLE (for the tidy table and provenance)
    path: str = ""  # HF folder the policy starts from (the SFT model for preference runs)
    dtype: Literal["float32", "bfloat16"] = "float32"  # weights dtype in memory
    autocast_bf16: bool = False  # bf16 autocast of the forward on CPU/GPU (weights stay float32)
    lora: LoraConfig | None = None  # parameter-efficient fine-tuning; None trains all weights
    trust_remote_code: bool = False  # never on unless a user says so for a hub model


@dataclass
class ReferenceConfig:
    path: str = ""  # reference (frozen SFT) model folder; "" means the policy's starting point
    logps_cache: str = ""  # precomputed reference log-probs (.pt) for the training pairs


@dataclass
class DataConfig:
    train: str = ""  # prepared train split (record-schema JSONL)
    test: str = ""  # prepared held-out split
    max_length: int = 192  # prompt + response tokens
    max_prompt_length: int = 128  # prompt tokens kept (from the end) when a pair is too long
    aux_rewards: dict[str, float] = field(default_factory=dict)  # designer weights c_k per reward
    aux_normalisation: Literal["zscore", "minmax", "none"] = "zscore"  # norm_k, fit on train split
    max_train_pairs: int | None = None  # cap on training pairs (None: all)


@dataclass
class LossConfig:
    name: str = "dpo"  # key of upo.losses registry
    kwargs: dict[str, Any] = field(default_factory=dict)  # checked against the loss signature


@dataclass
class OptimConfig:
    optimizer: Literal["adamw", "rmsprop"] = "adamw"
    lr: float = 1.0e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    max_grad_norm: float = 10.0
    value_lr: float = 1.0e-3  # UPO value head's own optimizer


@dataclass
class TrainConfig:
    epochs: int = 1  # passes over the training pairs (max_steps wins when set)
    max_steps: int | None = None
    batch_size: int = 8  # pairs per optimizer step (global, across processes)
    grad_accum: int = 1  # micro-batches per step; batch_size must divide by grad_accum * processes
    eval_every: int = 0  # steps between held-out preference-accuracy evals (0: only at the end)
    eval_pairs: int = 64  # held-out pairs used by the periodic eval
    checkpoint_every: int = 0  # steps between resumable checkpoints (0: none)
    log_to: list[Literal["csv", "tensorboard", "wandb"]] = field(default_factory=lambda: ["csv"])
    threads: int | None = None  # torch CPU threads (None: torch's default)


@dataclass
class RunConfig:
    method: str = "dpo"  # method name as it appears in the tidy table
    seed: int = 0  # fixes data order, init of new heads, dropout and sampling
    output_dir: str = ""  # run directory: model/, train_log.csv, train_summary.json
    tags: dict[str, Any] = field(default_factory=dict)  # identity for tables: dataset, beta, w...
    model: ModelConfig = field(default_factory=ModelConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: dict[str, Any] = field(default_factory=dict)  # typed by upo.evaluate.EvalConfig
    ppo: dict[str, Any] | None = None  # typed by upo.ppo.PPOConfig (online runs only)
    reward_model: str = ""  # reward-model folder (PPO only)

    def __post_init__(self) -> None:
        if self.train.batch_size < 1:
            raise ConfigError("train.batch_size: must be >= 1")
        if self.optim.lr <= 0:
            raise ConfigError("optim.lr: must be > 0")


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate ``run.yaml``; errors name the file and the key."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: run config not found (every run directory holds its run.yaml)")
    try:
        return from_dict(RunConfig, read_yaml(path))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def save_run_config(config: RunConfig, path: str | os.PathLike) -> None:
    write_yaml(path, to_dict(config))
