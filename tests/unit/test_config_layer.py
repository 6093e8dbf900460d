"""One config layer: every run setting reachable from an experiment config, and bad input rejected in one line."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest
import yaml

from upo import checks, paths, sweeps
from upo.config import RunConfig, package_file
from upo.strict import ConfigError, dataclass_option, from_dict

ROOT = Path(__file__).resolve().parents[2]
# RunConfig fields outside the experiment's sections, each filled in by the workflow (upo.sweeps).
WORKFLOW_FIELDS = {"method", "seed", "output_dir", "tags", "reference", "loss", "reward_model", "overridden"}


def quick() -> dict:
    return yaml.safe_load((ROOT / "config/quick.yaml").read_text())


def leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted name, type, default) of every leaf field of ``cls``, nested dataclasses walked."""
    leaves = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        section = dataclass_option(hints[f.name])
        if section is not None:
            leaves += leaf_fields(section, f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            leaves.append((f"{prefix}{f.name}", hints[f.name], default))
    return leaves


def candidates(tp: Any, default: Any) -> list[Any]:
    """Valid-looking values other than ``default`` for a field of type ``tp``."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return [a for a in args if a != default]
    if origin in (typing.Union, types.UnionType):
        return [c for a in args if a is not type(None) for c in candidates(a, default)]
    if tp is bool:
        return [not default]
    if tp is int:
        return [v for v in (3, 2, 5, 193, (default or 0) + 1) if v != default]
    if tp is float:
        return [v for v in (0.5, 0.25, 0.75, 2.0) if v != default]
    if tp is str:
        return ["brevity", "local-llm", "custom/folder"]
    if origin is list:
        return [[c] for c in candidates(args[0], None)][:3]
    if origin is dict:
        return [{"brevity": 0.5}]
    raise AssertionError(f"no candidate values for {tp}")


def set_path(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def get_path(tree: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def test_run_config_sections_are_the_experiment_sections_of_the_schema():
    """Every RunConfig field is either an experiment section or filled in by the workflow; the schema
    allows each section at the experiment, model and stage levels."""
    names = {f.name for f in dataclasses.fields(RunConfig)}
    assert names == set(sweeps.SECTIONS) | WORKFLOW_FIELDS
    schema = yaml.safe_load(package_file("schemas", "config.schema.yaml").read_text())
    model_level = schema["properties"]["models"]["additionalProperties"]["properties"]
    stage_level = schema["definitions"]["stage"]["properties"]
    for section in sweeps.SECTIONS:
        assert section in schema["properties"] and section in model_level and section in stage_level
    assert set(sweeps.STAGES) <= set(model_level)


@pytest.mark.parametrize(
    "section,field_name,tp,default",
    [
        (s, name, tp, default)
        for s in sweeps.SECTIONS
        for name, tp, default in leaf_fields(dataclass_option(get_type_hints(RunConfig)[s]))
    ],
)
def test_every_run_field_is_settable_from_an_experiment_config(section, field_name, tp, default):
    """Set the field at models.pico.<stage>.<section>; the resolved run.yaml carries the value."""
    owned = field_name.split(".")[0]
    if owned in sweeps.WORKFLOW_OWNED.get(section, {}):
        config = quick()
        set_path(config, f"models.pico.preference.{section}.{field_name}", default or "x")
        # a nested workflow-owned section (data.fold) is refused as a whole, naming its top key
        with pytest.raises(ConfigError, match=rf"{section}\.{owned}: set by the workflow"):
            sweeps.stage_settings(config, "pico", "preference")
        return
    method = "ppo" if section == "ppo" else "dpo"
    accepted = []
    for value in candidates(tp, default):
        config = quick()
        set_path(config, f"models.pico.preference.{section}.{field_name}", copy.deepcopy(value))
        try:
            run = sweeps.resolve_run(config, "default", "pico", method, "0.1", "0", 0)
        except ConfigError:
            continue
        assert get_path(run, f"{section}.{field_name}") == value
        accepted.append(value)
    assert accepted, f"{section}.{field_name}: no value could be set from an experiment config"


def test_levels_override_in_order_and_values_replace():
    config = quick()
    config["optim"] = {"lr": 1.0e-2, "weight_decay": 0.1}
    config["models"]["pico"]["optim"] = {"lr": 2.0e-2}
    config["models"]["pico"]["data"]["aux_rewards"] = {"brevity": 1.0}
    run = sweeps.resolve_run(config, "default", "pico", "upo", "0.1", "1", 0)
    assert run["optim"]["lr"] == 5.0e-4  # the stage level wins
    assert run["optim"]["weight_decay"] == 0.1  # the experiment level reaches runs the lower levels leave alone
    assert run["data"]["aux_rewards"] == {"brevity": 1.0}  # a dict value replaces, it is not merged
    assert sweeps.resolve_sft(config, "default", "pico")["optim"]["lr"] == 3.0e-3


def test_stage_level_typo_names_the_experiment_key():
    config = quick()
    config["models"]["pico"]["preference"]["optim"]["lrr"] = 1.0
    with pytest.raises(ConfigError, match=r"unknown key models.pico.preference.optim.'lrr'"):
        sweeps.stage_settings(config, "pico", "preference")


NON_FINITE = {
    "lr": "models: {pico: {preference: {optim: {lr: .nan}}}}",
    "aux-weight": "data: {aux_rewards: {readability: .nan}}",
    "temperature": "eval: {temperature: .nan}",
    "reference-point": "frontier: {reference_point: [.nan, 0.0]}",
    "beta": "sweeps: [{method: dpo, models: [pico], beta: [.inf], aux_weight: [0]}]",
}


def merge_yaml(config: dict, text: str) -> dict:
    """``config`` with the YAML ``text`` merged in (mappings merge, other values replace)."""

    def merge(base, extra):
        if not (isinstance(base, dict) and isinstance(extra, dict)):
            return extra
        return {**base, **{k: merge(base.get(k), v) for k, v in extra.items()}}

    return merge(config, yaml.safe_load(text))


@pytest.mark.parametrize("name", sorted(NON_FINITE))
def test_non_finite_numbers_are_rejected_naming_the_key(name):
    config = merge_yaml(quick(), NON_FINITE[name])
    with pytest.raises(ConfigError, match=r"is not a finite number"):
        checks.validate_experiment(config)


def test_non_finite_numbers_are_rejected_in_run_files_too():
    with pytest.raises(ConfigError, match=r"optim.lr: nan is not a finite number"):
        from_dict(RunConfig, {"optim": {"lr": float("nan")}})
    with pytest.raises(ConfigError, match=r"loss.kwargs.beta: inf is not a finite number"):
        from_dict(RunConfig, {"loss": {"name": "dpo", "kwargs": {"beta": float("inf")}}})


ACCEPTED_BEFORE = {
    "empty-seeds": ("seeds: []\nsweeps: [{method: dpo, models: [pico], beta: [0.1], aux_weight: [0]}]", "no run left"),
    "prompt-longer-than-max": ("models: {pico: {data: {max_prompt_length: 128}}}", "max_prompt_length"),
    "grad-accum": ("models: {pico: {preference: {train: {grad_accum: 3}}}}", "grad_accum"),
    "untrained-dpo": ("models: {pico: {preference: {train: {epochs: 0, max_steps: null}}}}", "would not train"),
    "untrained-rm": ("models: {pico: {reward_model: {train: {epochs: 0, max_steps: null}}}}", "would not train"),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED_BEFORE))
def test_settings_that_cannot_run_are_rejected(name):
    text, message = ACCEPTED_BEFORE[name]
    with pytest.raises(ConfigError, match=message):
        checks.validate_experiment(merge_yaml(quick(), text))


def test_sft_may_skip_training_on_purpose():
    config = merge_yaml(quick(), "models: {pico: {sft: {train: {max_steps: 0}}}}")
    assert sweeps.resolve_sft(config, "default", "pico")["train"]["max_steps"] == 0


BAD_NAMES = {
    "judge": ("eval: {judge: oracel}", "eval.judge: unknown name 'oracel'; known: local-llm, oracle"),
    "aux-rewards": ("data: {aux_rewards: {readabilty: 1.0}}", "data.aux_rewards: unknown name 'readabilty'"),
    "dataset-aux": (
        "datasets: {default: {aux: [readability, brevty]}}",
        r"datasets.default.aux: unknown name 'brevty'",
    ),
    "eval-aux": ("eval: {aux_rewards: [readability, safty]}", "eval.aux_rewards: unknown name 'safty'"),
    "oracle-reward": ("eval: {oracle_reward: sentimnet}", "eval.oracle_reward: unknown name 'sentimnet'"),
    "loader": (
        "datasets: {default: {loader: jsnol}}",
        r"datasets.default.loader: unknown name 'jsnol'; known: .*jsonl",
    ),
    "our-task": ("eval: {lm_eval_tasks: [upo_pref_acc, upo_pref_ac]}", r"lm_eval_tasks.*'upo_pref_ac'.*upo_pref_acc"),
    "hub-task": ("eval: {lm_eval_tasks: [hellaswagg]}", "eval.lm_eval_tasks: unknown task 'hellaswagg'"),
    "unscored-aux": ("data: {aux_rewards: {safety: 1.0}}", r"data.aux_rewards.safety: dataset 'default' does not"),
}


@pytest.mark.parametrize("name", sorted(BAD_NAMES))
def test_every_name_is_checked_against_its_registry(name):
    text, message = BAD_NAMES[name]
    config = merge_yaml(quick(), text)
    with pytest.raises(ConfigError, match=message):
        checks.check_names(config)


def test_unknown_model_and_method_are_named():
    config = quick()
    config["models"]["tinyy"] = config["models"]["pico"]
    with pytest.raises(ConfigError, match="models: unknown name 'tinyy'; known: .*pico"):
        checks.check_names(config)
    config = merge_yaml(quick(), "sweeps: [{method: dpoo, models: [pico], beta: [0.1], aux_weight: [0]}]")
    with pytest.raises(ConfigError, match=r"unknown method 'dpoo'.*known: .*\bdpo\b"):
        checks.check_names(config)


def test_folders_the_workflow_writes_under_results_are_reserved():
    from upo.evaluate.verdict_cache import DEFAULT_PATH

    written = [
        paths.run_dir("d", "m", "dpo", 0.1, 0, 0),
        paths.sft_dir("d", "m"),
        paths.reward_model_dir("d", "m"),
        paths.ref_logps_path("d", "m"),
        paths.preference_scores_path("d", "m"),
        DEFAULT_PATH,
        "results/reference/default/metrics.csv",
        "results/benchmarks/train_throughput.csv",
    ]
    for path in written:
        assert path.split("/")[1] in paths.RESULT_FOLDERS, path


@pytest.mark.parametrize("name", sorted(paths.RESULT_FOLDERS))
def test_experiment_name_cannot_be_a_folder_under_results(name):
    config = quick()
    config["name"] = name
    with pytest.raises(ConfigError, match=rf"^name: '{name}' is a folder the workflow keeps under results/"):
        checks.validate_experiment(config)


def test_other_experiment_names_pass():
    config = quick()
    config["name"] = "runs-2"
    checks.validate_experiment(config)


def test_outside_world_checks_wait_for_a_real_run(monkeypatch):
    """An API judge without its key and an unknown hub dataset pass the DAG build and fail before any job."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = merge_yaml(quick(), "eval: {judge: weighted_alpaca_eval_gpt4_turbo}")
    checks.validate_experiment(config)  # the dry-run path: nothing needs the key
    with pytest.raises(ConfigError, match="eval.judge: .*OPENAI_API_KEY"):
        checks.check_before_run(config)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    config = merge_yaml(quick(), "datasets: {default: {source: nobody/no-such-dataset-xyz}}")
    with pytest.raises(ConfigError, match=r"datasets.default.source: hub dataset 'nobody/no-such-dataset-xyz'"):
        checks.check_before_run(config)


def test_ppo_method_file_is_an_ordinary_method_file():
    spec = sweeps.load_method("ppo")
    assert spec.trainer == "ppo" and spec.loss is None
    assert set(sweeps.TRAINERS) == {"offline", "ppo"}
    text = yaml.safe_load((package_file("methods", "ppo.yaml")).read_text())
    assert "loss" not in text


def test_sweeps_does_not_import_trainers_or_evaluation():
    import subprocess
    import sys

    code = (
        "import sys, yaml; from upo import checks; "
        "checks.validate_experiment(yaml.safe_load(open('config/quick.yaml'))); "
        "print(sorted(m for m in sys.modules if m.startswith(('upo.train', 'upo.evaluate.evaluation', "
        "'upo.evaluate.generation'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_local_judge_the_workflow_builds_needs_its_source_not_its_folder(monkeypatch, tmp_path):
    """resources/models/smollm2-135m is made by prepare_model: before the first job only the GGUF package it
    is built from must be there; an arbitrary folder must exist already."""
    from upo.models import loading

    monkeypatch.chdir(tmp_path)  # no resources/models/ here
    config = merge_yaml(quick(), "eval: {judge: local-llm, judge_model: resources/models/smollm2-135m}")
    monkeypatch.setattr(loading, "smollm2_gguf_path", lambda: tmp_path / "model.gguf")
    checks.check_before_run(config)

    def missing():
        raise FileNotFoundError(f"install it: {loading.SMOLLM2_PIP}")

    monkeypatch.setattr(loading, "smollm2_gguf_path", missing)
    with pytest.raises(ConfigError, match=r"eval.judge_model 'resources/models/smollm2-135m': .*pip install"):
        checks.check_before_run(config)
    config = merge_yaml(quick(), "eval: {judge: local-llm, judge_model: elsewhere/my-judge}")
    with pytest.raises(ConfigError, match="eval.judge: .*needs eval.judge_model"):
        checks.check_before_run(config)
