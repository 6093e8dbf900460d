"""relabel-dpo in the workflow: the fold reward models and the scores are in the DAG, and a tiny run works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.workflow.test_workflow import ROOT, job_counts, prepare_tree, snakemake

RELABEL_SWEEPS = [
    {"method": "relabel-dpo", "models": ["pico"], "beta": [0.1], "aux_weight": [1.0], "seeds": [0]},
    {"method": "relabel-dpo-oracle", "models": ["pico"], "beta": [0.1], "aux_weight": [1.0], "seeds": [0]},
]


def relabel_config(work: Path, sweeps: list[dict]) -> Path:
    config = yaml.safe_load((ROOT / "config/quick.yaml").read_text())
    config["name"] = "relabel"
    config["sweeps"] = sweeps
    path = work / "relabel.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_dry_run_schedules_the_fold_models_and_the_scores_for_relabel_dpo_only(tmp_path):
    work = prepare_tree(tmp_path)
    config = str(relabel_config(work, RELABEL_SWEEPS))
    run = "results/runs/default/pico/{}/beta~0.1/w~1/seed~0/train_summary.json"
    relabel = job_counts(snakemake("-n", run.format("relabel-dpo"), "--configfile", config, cwd=work).stdout)
    oracle = job_counts(snakemake("-n", run.format("relabel-dpo-oracle"), "--configfile", config, cwd=work).stdout)
    # the relabel-dpo run waits for the cross-fitted scores of two fold models; the oracle bound does not
    assert relabel["score_preferences"] == 1 and relabel["train_reward_model_fold"] == 2
    assert "score_preferences" not in oracle and "train_reward_model_fold" not in oracle
    assert "train_reward_model" not in relabel  # the full-data (PPO) reward model is not needed


@pytest.mark.slow
def test_relabel_dpo_end_to_end_reads_cross_fitted_scores(tmp_path):
    work = prepare_tree(tmp_path)
    config = relabel_config(work, RELABEL_SWEEPS[:1])
    run = "results/runs/default/pico/relabel-dpo/beta~0.1/w~1/seed~0"
    snakemake("--cores", "2", f"{run}/metrics.json", "--configfile", str(config), cwd=work)
    report = json.loads((work / "results/preference_scores/default/pico.json").read_text())
    assert report["k"] == 2 and [f["index"] for f in report["folds"]] == [0, 1]
    assert all(0.0 <= f["heldout_accuracy"] <= 1.0 and f["heldout_pairs"] > 0 for f in report["folds"])
    assert sum(f["heldout_pairs"] for f in report["folds"]) == report["pairs"] == 96  # quick: 96 train pairs
    run_yaml = yaml.safe_load((work / run / "run.yaml").read_text())
    assert run_yaml["data"]["preference_source"] == "reward_model"
    assert run_yaml["data"]["preference_scores"] == "results/preference_scores/default/pico.jsonl"
    metrics = json.loads((work / run / "metrics.json").read_text())
    assert metrics["run"]["preference_source"] == "reward_model"
    for fold in (0, 1):
        summary = json.loads((work / f"results/reward_model/default/pico/fold~{fold}/train_summary.json").read_text())
        assert 0.0 <= summary["heldout_accuracy"] <= 1.0
    rerun = snakemake("-n", f"{run}/metrics.json", "--configfile", str(config), cwd=work)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
