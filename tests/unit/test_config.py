"""Configs: strict run-config dataclasses, run-path round trips, per-method sweeps, shipped files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from upo import paths
from upo.config import RunConfig
from upo.strict import ConfigError, from_dict
from upo.sweeps import METHODS_DIR, load_method, resolve_run, run_table

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_key_names_the_path():
    with pytest.raises(ConfigError, match=r"unknown key optim.'lrr'"):
        from_dict(RunConfig, {"optim": {"lrr": 1.0}})


def test_string_number_is_rejected_with_a_hint():
    with pytest.raises(ConfigError, match=r"optim.lr: expected a number.*1.0e-5"):
        from_dict(RunConfig, {"optim": {"lr": "1e-5"}})


def test_wrong_type_and_literal():
    with pytest.raises(ConfigError, match="train.batch_size: expected an integer"):
        from_dict(RunConfig, {"train": {"batch_size": 2.5}})
    with pytest.raises(ConfigError, match="optim.optimizer: 'sgd' is not one of"):
        from_dict(RunConfig, {"optim": {"optimizer": "sgd"}})


@pytest.mark.parametrize(
    "value,text", [(0.1, "0.1"), (0.10, "0.1"), ("1e-1", "0.1"), (1.0, "1"), (2, "2"), (0.05, "0.05"), (1e-5, "1e-05")]
)
def test_format_value_is_canonical(value, text):
    assert paths.format_value(value) == text


def test_run_dir_round_trip():
    row = {
        "dataset": "default",
        "model": "smollm2-135m",
        "method": "relabel-dpo",
        "beta": "0.1",
        "aux_weight": "0.3",
        "max_steps": None,
        "seed": 1,
    }
    path = paths.run_dir(**row)
    assert path == "results/runs/default/smollm2-135m/relabel-dpo/beta~0.1/w~0.3/seed~1"
    assert paths.parse_run_dir(path) == row
    # a sweep point with its own step budget gets a steps~ segment, and only then
    budget = {**row, "max_steps": 25}
    path = paths.run_dir(**budget)
    assert path == "results/runs/default/smollm2-135m/relabel-dpo/beta~0.1/w~0.3/steps~25/seed~1"
    assert paths.parse_run_dir(path) == budget
    assert paths.parse_budget_segment(paths.budget_segment(25)) == 25
    assert paths.parse_budget_segment(paths.budget_segment(None)) is None
    with pytest.raises(ValueError, match="not a run directory"):
        paths.parse_run_dir("results/sft/default/pico")


def test_names_cannot_hold_separators():
    for bad in ("a_b", "a~b", "a/b", "A"):
        with pytest.raises(ValueError):
            paths.check_name("model", bad)


def sweep_config() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_sweeps_expand_per_method_without_cross_products():
    config = sweep_config()
    config["sweeps"] = [
        {"method": "dpo", "models": ["pico"], "beta": [0.1, 0.5], "aux_weight": [0], "seeds": [0, 1]},
        {"method": "upo", "models": ["pico", "smollm2-135m"], "beta": [0.1], "aux_weight": [1, 2, 4], "seeds": [0]},
    ]
    table = run_table(config)
    assert len(table) == 2 * 2 + 2 * 3
    assert all(row["aux_weight"] == "0" for row in table if row["method"] == "dpo")
    assert {row["beta"] for row in table if row["method"] == "upo"} == {"0.1"}


def test_duplicate_runs_across_sweeps_fail():
    config = sweep_config()
    config["sweeps"] = [{"method": "dpo", "models": ["pico"], "beta": [0.1], "aux_weight": [0]}] * 2
    with pytest.raises(ConfigError, match="more than one sweep entry"):
        run_table(config)


def test_resolved_run_carries_sweep_values_into_the_loss():
    run = resolve_run(sweep_config(), "default", "pico", "upo", "0.1", "2", 1)
    assert run["loss"]["name"] == "upo"
    assert run["loss"]["kwargs"]["beta"] == 0.1 and run["loss"]["kwargs"]["aux_weight"] == 2.0
    assert run["loss"]["kwargs"]["tau"] == 0.7  # from upo/methods/upo.yaml
    assert run["reference"]["logps_cache"] == "results/ref_logps/default/pico.pt"
    assert run["output_dir"] == "results/runs/default/pico/upo/beta~0.1/w~2/seed~1"
    assert run["tags"] == {
        "dataset": "default",
        "model": "pico",
        "method": "upo",
        "beta": 0.1,
        "aux_weight": 2.0,
        "seed": 1,
    }


def test_dpo_with_an_aux_weight_is_refused():
    with pytest.raises(ConfigError, match="has no aux weight"):
        resolve_run(sweep_config(), "default", "pico", "dpo", "0.1", "1", 0)


def test_ppo_run_scales_designer_weights_and_puts_beta_in_its_ppo_section():
    run = resolve_run(sweep_config(), "default", "pico", "ppo", "0.05", "2", 0)
    assert run["data"]["aux_rewards"] == {"readability": 2.0}
    assert run["reward_model"] == "results/reward_model/default/pico/model"
    assert run["ppo"]["kl_beta"] == 0.05  # an ordinary field; the tags are identity only
    assert run["loss"] is None  # PPO's objective is its own, not a registry loss
    assert run["ppo"]["total_steps"] == 20  # models.pico.ppo over the experiment's ppo section


@pytest.mark.parametrize("method", sorted(p.stem for p in METHODS_DIR.glob("*.yaml")))
def test_every_method_file_loads(method):
    from upo.losses import LOSSES

    spec = load_method(method)
    assert (spec.loss in LOSSES) if spec.trainer == "offline" else spec.loss is None


def test_unknown_method_lists_known():
    with pytest.raises(ConfigError, match=r"known: .*\bdpo\b"):
        load_method("dpoo")


@pytest.mark.parametrize("name", ["config.yaml", "quick.yaml", "paper.yaml", "baselines.yaml"])
def test_every_config_key_is_commented(name):
    """Every key line of a shipped config has a comment on it or on the line above (the style rule)."""
    lines = (ROOT / "config" / name).read_text().splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        above = lines[number - 1].strip() if number else ""
        is_section = stripped.endswith(":") or stripped.endswith("&paper_size")
        if is_section and ("#" in line or above.startswith("#")):
            continue
        assert "#" in line or above.startswith("#") or is_section, f"{name}:{number + 1}: no comment: {line}"


def test_cli_reports_a_missing_run_config_in_one_line(tmp_path, capsys):
    from upo.__main__ import main

    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "run.yaml: run config not found" in err and "Traceback" not in err


def test_model_of_a_run_or_sft_folder():
    assert paths.model_of("results/runs/default/smollm2-135m/dpo/beta~3/w~0/steps~3/seed~0") == "smollm2-135m"
    assert paths.model_of("results/sft/default/pico") == "pico"
    with pytest.raises(ValueError, match="not an SFT or run folder"):
        paths.model_of("results/reward_model/default/pico")


def test_larger_models_are_scheduled_first():
    from upo.models.table import scheduling_priority

    assert scheduling_priority("smollm2-135m") > scheduling_priority("nano") > scheduling_priority("pico") > 0
    assert scheduling_priority("not-a-model") == 0
    # a gate (SFT, reference log-probs, reward model) of the smallest size before any size's runs
    assert scheduling_priority("pico", gate=True) > scheduling_priority("llama-13b")
