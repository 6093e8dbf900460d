"""The run configuration: one visible block of typed defaults, loaded strictly from ``run.yaml``.

A run file is fully resolved (the workflow writes it before the job starts), so one command
reproduces one run outside Snakemake: ``python -m upo train RUN_DIR/run.yaml``. Every section,
``eval`` and ``ppo`` included, is typed here: the experiment config's settings are partial
overrides of these dataclasses (``upo.sweeps``), so each field has one name and one default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from upo.io import read_yaml, write_yaml
from upo.strict import ConfigError, from_dict, to_dict


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass
class LoraConfig:
    r: int = 16  # adapter rank
    alpha: int = 32  # scaling numerator (scale = alpha / r)
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"  # peft's shorthand: every linear layer but the head

    def __post_init__(self) -> None:
        _require(self.r >= 1 and self.alpha >= 1, "model.lora.r and model.lora.alpha: must be >= 1")
        _require(0 <= self.dropout < 1, "model.lora.dropout: must be in [0, 1)")


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
class FoldConfig:
    """Cross-fitting: pairs fall in ``k`` folds by a hash of (seed, pair id); train on all but ``index``."""

    k: int = 2  # number of folds
    index: int = 0  # the held-out fold (scored by this run's model, never trained on)
    seed: int = 0  # salt of the pair-id hash (upo.train.folds.pair_fold)

    def __post_init__(self) -> None:
        _require(
            self.k >= 2 and 0 <= self.index < self.k,
            f"data.fold: need k >= 2 and 0 <= index < k, got k={self.k} index={self.index}",
        )


@dataclass
class DataConfig:
    train: str = ""  # prepared train split (record-schema JSONL)
    test: str = ""  # prepared held-out split
    max_length: int = 192  # prompt + response tokens
    max_prompt_length: int = 128  # prompt tokens kept (from the end) when a pair is too long
    aux_rewards: dict[str, float] = field(default_factory=dict)  # designer weights c_k per reward
    aux_normalisation: Literal["zscore", "minmax", "none"] = "zscore"  # norm_k, fit on train split
    max_train_pairs: int | None = None  # cap on training pairs (None: all)
    fold: FoldConfig | None = None  # reward models: train on every fold but fold.index (cross-fitting)
    # per-response preference score p(y) for losses that need one (relabelled DPO), see
    # upo.train.preference_scores: cross-fitted reward model | +-0.5 from the label | the gold oracle
    preference_source: Literal["reward_model", "binary", "oracle"] | None = None
    preference_scores: str = ""  # score-preferences output (JSONL) when preference_source is reward_model

    def __post_init__(self) -> None:
        _require(self.max_prompt_length >= 1, "data.max_prompt_length: must be >= 1")
        _require(
            self.max_prompt_length < self.max_length,
            f"data.max_prompt_length ({self.max_prompt_length}) must be < data.max_length ({self.max_length}): "
            "the response needs room",
        )
        for name, weight in self.aux_rewards.items():
            _require(weight >= 0, f"data.aux_rewards.{name}: must be >= 0")
        _require(self.max_train_pairs is None or self.max_train_pairs >= 1, "data.max_train_pairs: must be >= 1")


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
    max_grad_norm: float = 10.0  # gradient clipping (global L2 norm)
    value_lr: float = 1.0e-3  # UPO value head's own optimizer

    def __post_init__(self) -> None:
        _require(self.lr > 0 and self.value_lr > 0, "optim.lr and optim.value_lr: must be > 0")
        _require(self.weight_decay >= 0, "optim.weight_decay: must be >= 0")
        _require(self.warmup_steps >= 0, "optim.warmup_steps: must be >= 0")
        _require(self.max_grad_norm > 0, "optim.max_grad_norm: must be > 0")


@dataclass
class TrainConfig:
    epochs: int = 1  # passes over the training pairs (max_steps wins when set)
    max_steps: int | None = None
    batch_size: int = 8  # pairs per optimizer step (global, across processes)
    grad_accum: int = 1  # micro-batches per step; batch_size must divide by grad_accum * processes
    eval_every: int = 0  # steps between held-out preference-accuracy evals (0: only at the end)
    eval_pairs: int = 64  # held-out pairs used by the periodic eval (0: no held-out eval)
    checkpoint_every: int = 0  # steps between resumable checkpoints (0: none)
    log_to: list[Literal["csv", "tensorboard", "wandb"]] = field(default_factory=lambda: ["csv"])
    threads: int | None = None  # torch CPU threads (None: torch's default)

    def __post_init__(self) -> None:
        _require(self.epochs >= 0, "train.epochs: must be >= 0")
        _require(self.max_steps is None or self.max_steps >= 0, "train.max_steps: must be >= 0 or null")
        _require(self.batch_size >= 1, "train.batch_size: must be >= 1")
        _require(self.grad_accum >= 1, "train.grad_accum: must be >= 1")
        _require(
            self.batch_size % self.grad_accum == 0,
            f"train.grad_accum ({self.grad_accum}) must divide train.batch_size ({self.batch_size})",
        )
        for name in ("eval_every", "checkpoint_every"):
            _require(getattr(self, name) >= 0, f"train.{name}: must be >= 0")
        _require(self.eval_pairs >= 0, "train.eval_pairs: must be >= 0")
        _require(self.threads is None or self.threads >= 1, "train.threads: must be >= 1 or null")

    def trains(self) -> bool:
        """Whether the settings ask for at least one optimizer step (max_steps wins over epochs)."""
        return self.max_steps > 0 if self.max_steps is not None else self.epochs > 0


@dataclass
class EvalConfig:
    """The ``eval:`` section of run.yaml; shared by all runs of a table so results are paired."""

    max_prompts: int | None = None  # seeded subset of data.test stratified over clusters (None: all)
    temperature: float = 1.0  # sampling temperature (0: greedy)
    top_p: float = 1.0  # nucleus sampling mass
    max_new_tokens: int = 48  # cap on sampled response tokens
    batch_size: int = 32  # prompts per generate call; also the KL forward batch
    seed: int = 0  # evaluation seed, the same for every run so differences are paired
    judge: str = "oracle"  # "oracle" | "local-llm" | an AlpacaEval annotator config name
    oracle_reward: str = "sentiment"  # upo.rewards.scorers name the oracle judge scores with
    oracle_temperature: float = 0.0  # soft preference sigmoid(gap / T) on [0, 1] scores; 0 = hard
    judge_model: str = ""  # HF folder of the local-llm judge
    reference: Literal["dataset_chosen", "sft_samples"] = "dataset_chosen"  # what outputs are compared with
    aux_rewards: list[str] = field(default_factory=lambda: ["readability"])  # upo.rewards.scorers names to report
    kl: bool = True  # sequence KL(policy || reference model) on the policy's own samples
    lm_eval_tasks: list[str] = field(default_factory=list)  # lm-eval task names (e.g. upo_pref_acc)
    lm_eval_limit: int | None = None  # documents per lm-eval task (None: all)
    lm_eval_include_path: str = "evaluations/tasks"  # folder of our task YAMLs (relative: repo root)

    def __post_init__(self) -> None:
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ConfigError("eval.max_prompts: must be >= 1 or null")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("eval.temperature must be >= 0 and eval.top_p in (0, 1]")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError("eval.max_new_tokens and eval.batch_size must be >= 1")
        if self.oracle_temperature < 0:
            raise ConfigError("eval.oracle_temperature: must be >= 0")
        _require(self.lm_eval_limit is None or self.lm_eval_limit >= 1, "eval.lm_eval_limit: must be >= 1 or null")


@dataclass
class PPOConfig:
    """The ``ppo:`` section of a PPO run.yaml (every other setting comes from the shared sections)."""

    rollouts_per_step: int = 16  # prompts sampled per PPO step, one response each (the rollout batch)
    max_new_tokens: int = 48  # cap on sampled response tokens
    temperature: float = 1.0  # sampling temperature; log-probs are computed at the same temperature
    ppo_epochs: int = 4  # optimisation passes over each rollout batch
    mini_batch_size: int = 8  # rollouts per gradient step inside an epoch
    clip_range: float = 0.2  # eps of the clipped surrogate (PPO, Schulman et al. 2017, Eq. 7)
    clip_range_value: float = 0.2  # eps_v of the clipped value loss
    vf_coef: float = 0.1  # weight of the value loss in the total loss
    gamma: float = 1.0  # discount; 1 = undiscounted, the RLHF convention
    lam: float = 0.95  # GAE lambda (Schulman et al. 2016, Eq. 16)
    kl_beta: float = 0.1  # per-token KL penalty to the reference (the workflow sets it from the sweep's beta)
    whiten_rewards: bool = False  # rescale per-token rewards by their batch std (mean kept) before GAE
    whiten_advantages: bool = True  # standardise advantages over the rollout batch
    total_steps: int = 100  # PPO steps (rollout batches) in the run
    rm_weight: float = 1.0  # weight of the reward-model score in the sequence reward (0: aux only)
    rm_normalisation: Literal["zscore", "none"] = "zscore"  # RM scores z-scored on the training responses
    value_warmup: Literal["rollouts", "none"] = "rollouts"  # fit V on the first rollout batch before updates
    value_warmup_ridge: float = 0.1  # ridge penalty of that fit, relative to the mean eigenvalue

    def __post_init__(self) -> None:
        for name in ("rollouts_per_step", "max_new_tokens", "ppo_epochs", "mini_batch_size", "total_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ppo.{name}: must be >= 1")
        if self.temperature <= 0:
            raise ConfigError("ppo.temperature: must be > 0")
        if self.kl_beta < 0:
            raise ConfigError("ppo.kl_beta: must be >= 0")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ConfigError("ppo.gamma and ppo.lam: must be in [0, 1]")
        if self.value_warmup_ridge <= 0:
            raise ConfigError("ppo.value_warmup_ridge: must be > 0")


@dataclass
class OverrideRecord:
    """Where an overridden run came from (``python -m upo train RUN.yaml key=value --out DIR``)."""

    source: str  # the run.yaml the overrides were applied to
    overrides: list[str] = field(default_factory=list)  # key=value as given on the command line


@dataclass
class RunConfig:
    method: str = "dpo"  # method name as it appears in the tidy table
    seed: int = 0  # fixes data order, init of new heads, dropout and sampling
    output_dir: str = ""  # run directory: model/, train_log.csv, train_summary.json
    tags: dict[str, Any] = field(default_factory=dict)  # identity for tables only: dataset, beta, w...
    model: ModelConfig = field(default_factory=ModelConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig | None = field(default_factory=LossConfig)  # None: the trainer has its own objective (PPO)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ppo: PPOConfig | None = None  # online runs only
    reward_model: str = ""  # reward-model folder (PPO only)
    overridden: OverrideRecord | None = None  # set when CLI overrides made this run from another run.yaml


def load_eval_config(run_config: Any, where: str | Path = "run.yaml") -> EvalConfig:
    """The run config's typed ``eval`` section (a plain dict is typed here); errors name the file and key."""
    if isinstance(run_config.eval, EvalConfig):
        return run_config.eval
    try:
        return from_dict(EvalConfig, run_config.eval, where="eval")
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def read_run_yaml(path: str | os.PathLike) -> dict:
    """The raw mapping of a run.yaml; a missing file or broken YAML is a one-line error naming the line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: run config not found (every run directory holds its run.yaml)")
    try:
        data = read_yaml(path)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}:{line}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of run settings, got {type(data).__name__}")
    return data


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate ``run.yaml``; errors name the file and the key."""
    data = read_run_yaml(path)
    try:
        return from_dict(RunConfig, data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def save_run_config(config: RunConfig, path: str | os.PathLike) -> None:
    write_yaml(path, to_dict(config))


def check_training_inputs(config: RunConfig, where: str | os.PathLike = "run.yaml") -> None:
    """Fail in one line, naming the key, when a folder or file a training job starts from is missing."""
    needed = {
        "model.path": config.model.path,
        "data.train": config.data.train,
        "data.preference_scores": config.data.preference_scores,
        "reward_model": config.reward_model,
    }
    for key, value in needed.items():
        if value and not os.path.exists(value):
            raise FileNotFoundError(f"{where}: {key} {value!r} does not exist")
    if not config.model.path:
        raise ConfigError(f"{where}: model.path is empty (the HF folder the policy starts from)")
