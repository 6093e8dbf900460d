"""From the experiment config (``config/*.yaml``) to the run table and each job's ``run.yaml``.

Run settings are written with the names of ``RunConfig``'s sections (``model``, ``data``, ``optim``,
``train``, ``eval``, ``ppo``) at three levels, each a partial override of the one before:

    RunConfig defaults < experiment-wide sections < models.<size>.<section> < models.<size>.<stage>.<section>

where ``<stage>`` is ``sft``, ``preference`` or ``reward_model``. The workflow then fills in what it owns
(paths, identity tags, the loss from the method file, the sweep's beta and aux_weight) through one table
per trainer (:data:`TRAINERS`). Sweeps are expanded per entry of ``sweeps:`` (method x its models x its
grid x its seeds): there is no accidental cross-product between one method's grid and another's. Every
run is resolved and validated when the DAG is built (:func:`upo.checks.validate_experiment`), so a bad
value fails in a second, before any job.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

from upo import paths
from upo.config import RunConfig, package_file
from upo.io import read_yaml
from upo.preference_source import CROSS_FIT_FOLDS, apply_preference_source, resolved_source
from upo.strict import ConfigError, check_partial, dataclass_option, from_dict, to_dict

GENERATED_PREFIX = "resources/default/"  # files made by rule generate_default_data
LOCAL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet", ".csv")  # a source that is a file
METHODS_DIR = package_file("methods")
CONFIG_SCHEMA = str(package_file("schemas", "config.schema.yaml"))
SECTIONS = ("model", "data", "optim", "train", "eval", "ppo")  # RunConfig sections an experiment sets
STAGES = ("sft", "preference", "reward_model")
# Fields the workflow fills in for every run; setting them in an experiment config is an error.
WORKFLOW_OWNED = {
    "model": {"name": "the model's key under models:", "path": "the base model or the SFT model"},
    "data": {
        "train": "resources/data/<dataset>/train.jsonl",
        "test": "resources/data/<dataset>/test.jsonl",
        "fold": "the cross-fitting reward models' folds (relabel-dpo)",
        "preference_source": "the method file's preference_source",
        "preference_scores": "results/preference_scores/<dataset>/<model>.jsonl",
    },
    "ppo": {"kl_beta": "the sweep's beta"},
}


@dataclass
class MethodFile:
    """``upo/methods/<method>.yaml``: what a method is, independent of any experiment."""

    trainer: Literal["offline", "ppo"] = "offline"  # key of TRAINERS
    loss: str | None = None  # key of the loss registry (offline trainer); None for trainers with their own objective
    loss_kwargs: dict[str, Any] = field(default_factory=dict)  # checked against the loss signature
    # p(y) of relabelling losses (upo.preference_source): reward_model | binary | oracle
    preference_source: Literal["reward_model", "binary", "oracle"] | None = None
    description: str = ""


def load_method(name: str) -> MethodFile:
    path = METHODS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in METHODS_DIR.glob("*.yaml")))
        raise ConfigError(f"sweeps: unknown method {name!r} (no upo/methods/{name}.yaml); known: {known}")
    try:
        spec = from_dict(MethodFile, read_yaml(path))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    TRAINERS[spec.trainer].check_method(spec, path)
    return spec


# one run, as resolve_run takes it (max_steps None: the stage's own step budget)
RUN_KEYS = ("dataset", "model", "method", "beta", "aux_weight", "max_steps", "seed")


def run_table(config: dict) -> list[dict]:
    """One row per preference run: dataset, model, method, beta, aux_weight (canonical strings),
    max_steps (an int where the sweep entry sets the training budget per point, else None), seed."""
    rows = []
    for index, sweep in enumerate(config["sweeps"]):
        for dataset, model, beta, weight, max_steps, seed in itertools.product(
            sweep.get("datasets", list(config["datasets"])),
            sweep["models"],
            sweep["beta"],
            sweep["aux_weight"],
            sweep.get("max_steps", [None]),
            sweep.get("seeds", config.get("seeds", [0])),
        ):
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "method": sweep["method"],
                    "beta": paths.format_value(beta),
                    "aux_weight": paths.format_value(weight),
                    "max_steps": None if max_steps is None else int(max_steps),
                    "seed": int(seed),
                    "sweep": index,
                }
            )
    if not rows:
        raise ConfigError("sweeps: no run left (an empty seeds: list?); every sweep needs at least one seed")
    keys = [tuple(r[k] for k in RUN_KEYS) for r in rows]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise ConfigError(f"sweeps: run {sorted(duplicates, key=str)[0]} appears in more than one sweep entry")
    return rows


def run_key(row: dict) -> dict:
    """The keyword arguments of :func:`resolve_run` and :func:`upo.paths.run_dir` of a run-table row."""
    return {k: row[k] for k in RUN_KEYS}


# ---------------------------------------------------------------------------------------------------
# Run settings: partial overrides merged into RunConfig


def _section_type(cls: type, name: str) -> type | None:
    """The dataclass type of field ``name`` of ``cls`` (unwrapping ``X | None``), or None for a plain value."""
    return dataclass_option(get_type_hints(cls)[name])


def merge_settings(cls: type, base: dict, override: dict) -> dict:
    """``override`` merged into ``base`` (both partial ``cls`` dicts): dataclass sections merge key by key,
    values (numbers, lists, dicts such as ``aux_rewards``) and ``null`` replace."""
    merged = dict(base)
    for key, value in override.items():
        sub = _section_type(cls, key) if key in {f.name for f in dataclasses.fields(cls)} else None
        if sub is not None and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(sub, merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _level_settings(level: dict, where: str) -> dict:
    """The RunConfig sections of one level of the experiment config, checked key by key (partial)."""
    settings = {}
    for section in SECTIONS:
        if section not in level or level[section] is None:
            continue
        value = level[section]
        where_section = f"{where}.{section}" if where else section
        owned = WORKFLOW_OWNED.get(section, {})
        for key in value if isinstance(value, dict) else ():
            if key in owned:
                raise ConfigError(f"{where_section}.{key}: set by the workflow ({owned[key]}), not by the config")
        check_partial(_section_type(RunConfig, section), value, where_section)
        settings[section] = value
    return settings


def stage_settings(config: dict, model: str, stage: str) -> dict:
    """Merged run settings of one model size and stage: experiment-wide < models.<size> < its stage."""
    if model not in config["models"]:
        raise ConfigError(f"model {model!r} is used but not defined under models: ({', '.join(config['models'])})")
    entry = config["models"][model] or {}
    settings: dict = {}
    levels = ((config, ""), (entry, f"models.{model}"), (entry.get(stage) or {}, f"models.{model}.{stage}"))
    for level, where in levels:
        settings = merge_settings(RunConfig, settings, _level_settings(level, where))
    return settings


def stage_config(config: dict, model: str, stage: str) -> RunConfig:
    """The typed settings of a stage (no workflow paths): what helpers such as thread counts read."""
    settings = stage_settings(config, model, stage)
    try:
        return from_dict(RunConfig, settings)
    except ConfigError as error:
        raise ConfigError(f"models.{model}.{stage}: {error}") from None


def _resolved(config: dict, dataset: str, model: str, stage: str, owned: dict) -> dict:
    """Stage settings with the workflow-owned fields merged over them (plain data, not yet validated)."""
    data_dir = paths.data_dir(dataset)
    owned = merge_settings(
        RunConfig, {"data": {"train": f"{data_dir}/train.jsonl", "test": f"{data_dir}/test.jsonl"}}, owned
    )
    run = merge_settings(RunConfig, stage_settings(config, model, stage), owned)
    run["model"]["name"] = model
    run.setdefault("ppo", None)
    return run


def _check_trains(run: dict, model: str, stage: str) -> None:
    train = from_dict(RunConfig, {"train": run.get("train", {})}).train
    if not train.trains():
        raise ConfigError(
            f"models.{model}.{stage}: train.epochs is 0 and train.max_steps is not set, so the "
            f"{run['method']} run would not train; set epochs >= 1 or max_steps"
        )


def resolve_sft(config: dict, dataset: str, model: str) -> dict:
    """run.yaml of the SFT stage (its result is the reference model of every preference run)."""
    out = paths.sft_dir(dataset, model)
    seed = int(config.get("sft_seed", 0))
    owned = {
        "method": "sft",
        "seed": seed,
        "output_dir": out,
        "tags": {"dataset": dataset, "model": model, "method": "sft", "beta": None, "aux_weight": None, "seed": seed},
        "model": {"path": paths.base_model_dir(model)},
        "reference": {"path": f"{out}/model"},
        "loss": {"name": "sft", "kwargs": {}},
        "ppo": None,
    }
    return validated(_resolved(config, dataset, model, "sft", owned))


def resolve_reward_model(config: dict, dataset: str, model: str) -> dict:
    owned = {
        "method": "reward-model",
        "seed": int(config.get("sft_seed", 0)),
        "output_dir": paths.reward_model_dir(dataset, model),
        "tags": {"dataset": dataset, "model": model, "method": "reward-model"},
        "model": {"path": f"{paths.sft_dir(dataset, model)}/model"},
        "loss": {"name": "bradley_terry", "kwargs": {}},
        "ppo": None,
    }
    run = _resolved(config, dataset, model, "reward_model", owned)
    _check_trains(run, model, "reward_model")
    return validated(run)


# ---------------------------------------------------------------------------------------------------
# Trainers: where each puts the sweep's beta and aux_weight, and what else it needs


@dataclass(frozen=True)
class Trainer:
    """How a trainer family turns a method file and a sweep point into run sections."""

    command: str  # python -m upo <command> RUN.yaml
    uses_loss_registry: bool  # the method file names a registered loss (else the trainer has its own)
    place_sweep: Callable[[dict, MethodFile, float, float, str, str], None]  # fills the run in place
    budget: tuple[str, str]  # (section, key) the sweep's max_steps sets: the trainer's step budget

    def check_method(self, spec: MethodFile, path) -> None:
        if self.uses_loss_registry and not spec.loss:
            raise ConfigError(f"{path}: trainer {spec.trainer!r} needs loss: (a key of the loss registry)")
        if not self.uses_loss_registry and (spec.loss or spec.loss_kwargs):
            raise ConfigError(f"{path}: trainer {spec.trainer!r} has its own objective; remove loss and loss_kwargs")


def _offline_sweep(run: dict, spec: MethodFile, beta: float, weight: float, dataset: str, model: str) -> None:
    """beta and aux_weight become loss keywords (when the loss has them); reference log-probs are cached."""
    from upo.losses import LOSSES

    kwargs = dict(spec.loss_kwargs)
    hyper = LOSSES.get(spec.loss).hyperparameters()
    if "beta" in hyper:
        kwargs["beta"] = beta
    if "aux_weight" in hyper:
        kwargs["aux_weight"] = weight
    elif weight != 0:
        raise ConfigError(
            f"sweeps: method {run['method']!r} (loss {spec.loss}) has no aux weight; use aux_weight: [0]"
        )
    run["loss"] = {"name": spec.loss, "kwargs": kwargs}
    run["reference"]["logps_cache"] = paths.ref_logps_path(dataset, model)
    run["ppo"] = None
    _check_trains(run, model, "preference")


def _ppo_sweep(run: dict, spec: MethodFile, beta: float, weight: float, dataset: str, model: str) -> None:
    """beta is the per-token KL coefficient; aux_weight scales the designer weights:
    reward = rm_weight * RM score + aux_weight * sum_k c_k norm_k(r_k)."""
    run["loss"] = None
    run["reward_model"] = f"{paths.reward_model_dir(dataset, model)}/model"
    run["ppo"] = {**(run.get("ppo") or {}), "kl_beta": beta}
    aux = run.get("data", {}).get("aux_rewards", {})
    run["data"]["aux_rewards"] = {name: weight * value for name, value in aux.items()}


TRAINERS: dict[str, Trainer] = {
    "offline": Trainer(
        command="train", uses_loss_registry=True, place_sweep=_offline_sweep, budget=("train", "max_steps")
    ),
    "ppo": Trainer(
        command="train-ppo", uses_loss_registry=False, place_sweep=_ppo_sweep, budget=("ppo", "total_steps")
    ),
}


def resolve_run(
    config: dict,
    dataset: str,
    model: str,
    method: str,
    beta: str,
    aux_weight: str,
    seed: int,
    max_steps: int | None = None,
) -> dict:
    """run.yaml of one preference run (any trainer).

    ``max_steps`` (a sweep entry's ``max_steps:``) replaces the stage's step budget for this point: the
    offline trainer's ``train.max_steps``, PPO's ``ppo.total_steps``. It makes a method's curve reach
    KLs its beta alone cannot (DPO's KL on a small model is set by the steps once beta is large).
    """
    spec = load_method(method)
    sft_model = f"{paths.sft_dir(dataset, model)}/model"
    owned = {
        "method": method,
        "seed": int(seed),
        "output_dir": paths.run_dir(dataset, model, method, beta, aux_weight, seed, max_steps=max_steps),
        "tags": {
            "dataset": dataset,
            "model": model,
            "method": method,
            "beta": float(beta),
            "aux_weight": float(aux_weight),
            "seed": int(seed),
        },
        "model": {"path": sft_model},
        "reference": {"path": sft_model},
    }
    if max_steps is not None:
        owned["tags"]["max_steps"] = int(max_steps)
    run = _resolved(config, dataset, model, "preference", owned)
    trainer = TRAINERS[spec.trainer]
    if max_steps is not None:  # before place_sweep, whose checks see the point's own budget
        section, key = trainer.budget
        run[section] = {**(run.get(section) or {}), key: int(max_steps)}
    trainer.place_sweep(run, spec, float(beta), float(aux_weight), dataset, model)
    # a loss that needs p(y) (relabelled DPO) reads it from the method file's source; any other refuses one
    from upo.losses import LOSSES

    needs = set(LOSSES.get(spec.loss).needs) if spec.loss else set()
    apply_preference_source(run, config, method, spec.preference_source, needs)
    return validated(run)


def validated(run: dict, check_loss: bool = True) -> dict:
    """Type-check the run (RunConfig with every section, and the loss keywords against the loss unless
    ``check_loss`` is False: that check imports the loss registry, hence torch); return it as plain data."""
    where = run.get("output_dir", "run")
    try:
        config = from_dict(RunConfig, run)
        if check_loss and config.loss is not None:
            from upo.losses import get_loss

            get_loss(config.loss.name, **config.loss.kwargs)
    except (ConfigError, ValueError, KeyError) as error:
        raise ConfigError(f"{where}: {error}") from None
    return to_dict(config)


def deep_copy(config: Any) -> Any:
    """A plain-data copy of Snakemake's config object (JSON round trip drops its wrappers)."""
    return json.loads(json.dumps(copy.deepcopy(dict(config))))


# ------------------------------------------------------------ relabelling's cross-fitted reward models
def resolve_reward_model_fold(config: dict, dataset: str, model: str, fold: int) -> dict:
    """run.yaml of fold reward model ``fold``: the size's reward_model stage, on every other fold's pairs."""
    if not 0 <= int(fold) < CROSS_FIT_FOLDS:
        raise ConfigError(f"reward-model fold {fold}: must be in 0..{CROSS_FIT_FOLDS - 1}")
    run = resolve_reward_model(config, dataset, model)
    run["output_dir"] = paths.reward_model_fold_dir(dataset, model, fold)
    run["tags"]["fold"] = int(fold)
    run["data"]["fold"] = {"k": CROSS_FIT_FOLDS, "index": int(fold), "seed": int(config.get("sft_seed", 0))}
    return validated(run)


def cross_fit_pairs(config: dict, runs: list[dict]) -> list[tuple[str, str]]:
    """(dataset, model) pairs whose runs read cross-fitted scores (so need the fold models)."""
    from upo.losses import LOSSES

    needed = set()
    for row in runs:
        spec = load_method(row["method"])
        if spec.trainer != "offline":
            continue
        needs = set(LOSSES.get(spec.loss).needs)
        if resolved_source(config, row["model"], row["method"], spec.preference_source, needs) == "reward_model":
            needed.add((row["dataset"], row["model"]))
    return sorted(needed)


def scores_input(config: dict, **run: Any) -> list:
    """The cross-fitted scores file a preference run reads (relabel-dpo), else nothing: a workflow input.
    ``run``: :func:`resolve_run`'s keywords."""
    scores = resolve_run(config, **run)["data"].get("preference_scores")
    return [scores] if scores else []
