"""From the experiment config (``config/*.yaml``) to the run table and each job's ``run.yaml``.

Sweeps are expanded per entry of ``sweeps:`` (method x its models x its grid x its seeds): there is no
accidental cross-product between one method's grid and another's. Every run of the table is resolved
and validated (``RunConfig`` + the loss signature + the eval/ppo sections) when the DAG is built, so a
bad hyperparameter fails in a second, before any job runs.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from upo import paths
from upo.config import LoraConfig, RunConfig
from upo.io import read_yaml, write_yaml
from upo.strict import ConfigError, from_dict, to_dict

GENERATED_PREFIX = "resources/default/"
LOCAL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet", ".csv")
METHODS_DIR = Path(__file__).resolve().parents[1] / "config" / "methods"


@dataclass
class StageConfig:
    """Training settings of one stage (SFT, preference, reward model) for one model size."""

    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1.0e-4
    optimizer: Literal["adamw", "rmsprop"] = "adamw"
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    max_train_pairs: int | None = None
    checkpoint_every: int = 0


@dataclass
class ModelEntry:
    sft: StageConfig = field(default_factory=StageConfig)
    preference: StageConfig = field(default_factory=StageConfig)
    reward_model: StageConfig = field(default_factory=StageConfig)
    lora: LoraConfig | None = None
    autocast_bf16: bool = False
    max_length: int = 192
    max_prompt_length: int = 128
    threads: int | None = None
    eval: dict[str, Any] = field(default_factory=dict)  # per-size overrides of the eval section
    ppo: dict[str, Any] = field(default_factory=dict)  # per-size overrides of the ppo section


@dataclass
class MethodFile:
    """``config/methods/<method>.yaml``: what a method is, independent of any experiment."""

    trainer: Literal["offline", "ppo"] = "offline"
    loss: str = "dpo"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: Literal["adamw", "rmsprop"] | None = None
    description: str = ""


def load_method(name: str) -> MethodFile:
    path = METHODS_DIR / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in METHODS_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown method {name!r}: no {path.name} in config/methods (known: {known})")
    try:
        return from_dict(MethodFile, read_yaml(path))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def run_table(config: dict) -> list[dict]:
    """One row per preference run: dataset, model, method, beta, aux_weight (canonical strings), seed."""
    rows = []
    for index, sweep in enumerate(config["sweeps"]):
        for dataset, model, beta, weight, seed in itertools.product(
            sweep.get("datasets", list(config["datasets"])),
            sweep["models"],
            sweep["beta"],
            sweep["aux_weight"],
            sweep.get("seeds", config.get("seeds", [0])),
        ):
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "method": sweep["method"],
                    "beta": paths.format_value(beta),
                    "aux_weight": paths.format_value(weight),
                    "seed": int(seed),
                    "sweep": index,
                }
            )
    keys = [tuple(r[k] for k in ("dataset", "model", "method", "beta", "aux_weight", "seed")) for r in rows]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise ConfigError(f"sweeps: run {sorted(duplicates)[0]} appears in more than one sweep entry")
    return rows


def model_entry(config: dict, model: str) -> ModelEntry:
    if model not in config["models"]:
        raise ConfigError(f"model {model!r} is used but not defined under models: ({', '.join(config['models'])})")
    return from_dict(ModelEntry, config["models"][model], f"models.{model}")


def _common(config: dict, dataset: str, model: str, stage: StageConfig, entry: ModelEntry) -> dict:
    data_dir = paths.data_dir(dataset)
    return {
        "data": {
            "train": f"{data_dir}/train.jsonl",
            "test": f"{data_dir}/test.jsonl",
            "max_length": entry.max_length,
            "max_prompt_length": entry.max_prompt_length,
            "aux_rewards": dict(config.get("aux_rewards", {})),
            "aux_normalisation": config.get("aux_normalisation", "zscore"),
            "max_train_pairs": stage.max_train_pairs,
        },
        "optim": {
            "optimizer": stage.optimizer,
            "lr": stage.lr,
            "warmup_steps": stage.warmup_steps,
            "schedule": stage.schedule,
        },
        "train": {
            "epochs": stage.epochs,
            "max_steps": stage.max_steps,
            "batch_size": stage.batch_size,
            "grad_accum": stage.grad_accum,
            "checkpoint_every": stage.checkpoint_every,
            "threads": entry.threads,
        },
        "eval": {**config.get("eval", {}), **entry.eval},
    }


def resolve_sft(config: dict, dataset: str, model: str) -> dict:
    """run.yaml of the SFT stage (its result is the reference model of every preference run)."""
    entry = model_entry(config, model)
    out = paths.sft_dir(dataset, model)
    run = {
        "method": "sft",
        "seed": int(config.get("sft_seed", 0)),
        "output_dir": out,
        "tags": {
            "dataset": dataset,
            "model": model,
            "method": "sft",
            "beta": None,
            "aux_weight": None,
            "seed": int(config.get("sft_seed", 0)),
        },
        "model": {
            "name": model,
            "path": paths.base_model_dir(model),
            "lora": to_dict(entry.lora),
            "autocast_bf16": entry.autocast_bf16,
        },
        "reference": {"path": f"{out}/model"},
        "loss": {"name": "sft", "kwargs": {}},
        **_common(config, dataset, model, entry.sft, entry),
    }
    return validated(run)


def resolve_reward_model(config: dict, dataset: str, model: str) -> dict:
    entry = model_entry(config, model)
    run = {
        "method": "reward-model",
        "seed": int(config.get("sft_seed", 0)),
        "output_dir": paths.reward_model_dir(dataset, model),
        "tags": {"dataset": dataset, "model": model, "method": "reward-model"},
        "model": {
            "name": model,
            "path": f"{paths.sft_dir(dataset, model)}/model",
            "autocast_bf16": entry.autocast_bf16,
        },
        "loss": {"name": "bradley_terry", "kwargs": {}},
        **_common(config, dataset, model, entry.reward_model, entry),
    }
    return validated(run)


def resolve_run(config: dict, dataset: str, model: str, method: str, beta: str, aux_weight: str, seed: int) -> dict:
    """run.yaml of one preference run (offline or PPO)."""
    entry = model_entry(config, model)
    spec = load_method(method)
    sft_model = f"{paths.sft_dir(dataset, model)}/model"
    beta_value, weight_value = float(beta), float(aux_weight)
    common = _common(config, dataset, model, entry.preference, entry)
    if spec.optimizer:
        common["optim"]["optimizer"] = spec.optimizer
    run = {
        "method": method,
        "seed": int(seed),
        "output_dir": paths.run_dir(dataset, model, method, beta, aux_weight, seed),
        "tags": {
            "dataset": dataset,
            "model": model,
            "method": method,
            "beta": beta_value,
            "aux_weight": weight_value,
            "seed": int(seed),
        },
        "model": {"name": model, "path": sft_model, "lora": to_dict(entry.lora), "autocast_bf16": entry.autocast_bf16},
        "reference": {"path": sft_model, "logps_cache": paths.ref_logps_path(dataset, model)},
        **common,
    }
    if spec.trainer == "ppo":
        run["loss"] = {"name": "ppo", "kwargs": {}}
        run["reward_model"] = f"{paths.reward_model_dir(dataset, model)}/model"
        run["ppo"] = {**config.get("ppo", {}), **entry.ppo}
        # aux_weight scales the designer weights: reward = RM score + aux_weight * sum_k c_k norm_k(r_k)
        run["data"]["aux_rewards"] = {k: weight_value * v for k, v in run["data"]["aux_rewards"].items()}
        run["reference"]["logps_cache"] = ""
    else:
        from upo.losses import LOSSES

        kwargs = dict(spec.loss_kwargs)
        hyper = LOSSES.get(spec.loss).hyperparameters()
        if "beta" in hyper:
            kwargs["beta"] = beta_value
        if "aux_weight" in hyper:
            kwargs["aux_weight"] = weight_value
        elif weight_value != 0:
            raise ConfigError(f"sweeps: method {method!r} (loss {spec.loss}) has no aux weight; use aux_weight: [0]")
        run["loss"] = {"name": spec.loss, "kwargs": kwargs}
    return validated(run)


def validated(run: dict) -> dict:
    """Type-check the run (RunConfig, loss kwargs, eval and ppo sections); return it as plain data."""
    from upo.evaluate.evaluation import EvalConfig
    from upo.losses import get_loss

    where = run.get("output_dir", "run")
    try:
        config = from_dict(RunConfig, run)
        if run["loss"]["name"] != "ppo":
            get_loss(config.loss.name, **config.loss.kwargs)
        from_dict(EvalConfig, config.eval, "eval")
        if config.ppo is not None:
            from upo.train.ppo import PPOConfig

            from_dict(PPOConfig, config.ppo, "ppo")
    except (ConfigError, ValueError, KeyError) as error:
        raise ConfigError(f"{where}: {error}") from None
    return to_dict(config)


def validate_experiment(config: dict) -> list[dict]:
    """Resolve every job of the experiment; the first bad value raises naming the key."""
    from upo.models.loading import MODEL_TABLE

    for model in config["models"]:
        paths.check_name("model", model)
        if model not in MODEL_TABLE:
            raise ConfigError(f"models.{model}: not in the model table (known: {', '.join(sorted(MODEL_TABLE))})")
    for dataset, entry in config["datasets"].items():
        paths.check_name("dataset", dataset)
        for key in ("source", "test_from"):
            source = entry.get(key, "")
            generated = source.startswith(GENERATED_PREFIX)  # made by rule generate_default_data
            if source.endswith(LOCAL_SUFFIXES) and not generated and not Path(source).exists():
                raise ConfigError(f"datasets.{dataset}.{key}: file {source!r} not found")
    table = run_table(config)
    for row in table:
        resolve_sft(config, row["dataset"], row["model"])
        resolve_run(config, **{k: row[k] for k in ("dataset", "model", "method", "beta", "aux_weight", "seed")})
        if load_method(row["method"]).trainer == "ppo":
            resolve_reward_model(config, row["dataset"], row["model"])
    return table


def main_write_run_config(argv: list[str]) -> int:
    """``python -m upo write-run-config --json RUN_JSON --out run.yaml``: write a resolved run.

    The workflow resolves the run when it builds the DAG (``resolve_*`` above, so a changed setting
    reruns the job) and passes it here; this re-validates it and writes it atomically.
    """
    parser = argparse.ArgumentParser(prog="python -m upo write-run-config")
    parser.add_argument("--json", required=True, help="the resolved run config as a JSON object")
    parser.add_argument("--out", required=True, help="path of run.yaml")
    args = parser.parse_args(argv)
    write_yaml(args.out, json.loads(args.json))
    return 0


def deep_copy(config: Any) -> Any:
    """A plain-data copy of Snakemake's config object (JSON round trip drops its wrappers)."""
    return json.loads(json.dumps(copy.deepcopy(dict(config))))
