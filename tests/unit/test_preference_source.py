"""Which p(y) a relabelling run gets, the fold reward models it needs, and the source in the tidy table."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from upo.checks import validate_experiment
from upo.preference_source import CROSS_FIT_FOLDS
from upo.strict import ConfigError
from upo.sweeps import cross_fit_pairs, resolve_reward_model_fold, resolve_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> dict:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["sweeps"] = [
        {"method": "relabel-dpo", "models": ["pico", "smollm2-135m"], "beta": [0.1], "aux_weight": [1.0]},
        {"method": "relabel-dpo-oracle", "models": ["pico"], "beta": [0.1], "aux_weight": [1.0]},
        {"method": "dpo", "models": ["pico"], "beta": [0.1], "aux_weight": [0]},
    ]
    return config


def run(config, model, method, weight="1"):
    return resolve_run(config, "default", model, method, "0.1", weight, 0)


def test_relabel_dpo_reads_cross_fitted_scores_and_the_oracle_variant_the_oracle(config):
    relabel = run(config, "pico", "relabel-dpo")
    assert relabel["data"]["preference_source"] == relabel["tags"]["preference_source"] == "reward_model"
    assert relabel["data"]["preference_scores"] == "results/preference_scores/default/pico.jsonl"
    oracle = run(config, "pico", "relabel-dpo-oracle")
    assert oracle["data"]["preference_source"] == oracle["tags"]["preference_source"] == "oracle"
    assert oracle["data"]["preference_scores"] == ""
    dpo = run(config, "pico", "dpo", "0")
    assert dpo["data"]["preference_source"] is None and "preference_source" not in dpo["tags"]


def test_a_size_without_a_reward_model_stage_falls_back_to_the_binary_margin(config):
    assert "reward_model" not in config["models"]["smollm2-135m"]
    fallback = run(config, "smollm2-135m", "relabel-dpo")
    assert fallback["data"]["preference_source"] == fallback["tags"]["preference_source"] == "binary"
    table = validate_experiment(config)
    assert cross_fit_pairs(config, table) == [("default", "pico")]  # fold models only where scores are read


def test_fold_reward_models_reuse_the_reward_model_stage_on_complementary_folds(config):
    folds = [resolve_reward_model_fold(config, "default", "pico", i) for i in range(CROSS_FIT_FOLDS)]
    assert [f["data"]["fold"]["index"] for f in folds] == [0, 1]
    assert {(f["data"]["fold"]["k"], f["data"]["fold"]["seed"]) for f in folds} == {(2, 0)}
    assert [f["output_dir"] for f in folds] == [f"results/reward_model/default/pico/fold~{i}" for i in (0, 1)]
    stage = config["models"]["pico"]["reward_model"]
    assert folds[0]["optim"]["lr"] == stage["optim"]["lr"]
    assert folds[0]["train"]["batch_size"] == stage["train"]["batch_size"]
    with pytest.raises(ConfigError, match="fold 2"):
        resolve_reward_model_fold(config, "default", "pico", 2)


def test_a_relabelling_method_file_must_name_its_source(config, monkeypatch):
    from upo import sweeps

    real = sweeps.load_method

    def without_source(name):
        spec = copy.deepcopy(real(name))
        spec.preference_source = None
        return spec

    monkeypatch.setattr(sweeps, "load_method", without_source)
    with pytest.raises(ConfigError, match="relabel-dpo.yaml: its loss needs a preference score"):
        run(config, "pico", "relabel-dpo")


@pytest.mark.parametrize("method,weight", [("dpo", "0"), ("ppo", "1")])
def test_a_method_whose_objective_uses_no_preference_score_refuses_a_source(config, monkeypatch, method, weight):
    from upo import sweeps

    real = sweeps.load_method

    def with_source(name):
        spec = copy.deepcopy(real(name))
        spec.preference_source = "binary"
        return spec

    monkeypatch.setattr(sweeps, "load_method", with_source)
    with pytest.raises(ConfigError, match=f"upo/methods/{method}.yaml: preference_source is set but its loss uses no"):
        run(config, "pico", method, weight)


def test_the_tidy_table_says_which_source(tmp_path):
    from tests.unit.test_aggregate import write_run
    from upo.evaluate.evaluation import validate_metrics
    from upo.report.aggregate import build_table

    dpo = write_run(tmp_path, "dpo", 0.1, None, 0)
    relabel = write_run(tmp_path, "upo", 0.1, 1.0, 0)  # any method: only the run block matters here
    metrics = json.loads(relabel.read_text())
    metrics["run"]["preference_source"] = "reward_model"
    relabel.write_text(json.dumps(metrics))
    table = build_table([dpo, relabel])
    assert table["preference_source"].tolist() == ["", "reward_model"]
    metrics["run"]["preference_source"] = "judge"
    with pytest.raises(ValueError, match="preference_source"):
        validate_metrics(metrics)
