"""The workflow against a fresh clone, edited settings and hostile config values.

- a fresh clone plans the whole experiment (committed reference results are not where it writes);
- config values with shell syntax or spaces reach the job as one literal argument each;
- after a finished run, an edit to one sweep value (or one training setting) reruns exactly the jobs
  it affects, and the aggregate step compares the numbers with committed reference results.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.workflow.test_workflow import ROOT, job_counts, prepare_tree, snakemake


def tracked_files() -> list[str]:
    result = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip("not a git checkout")
    return [p for p in result.stdout.split("\0") if p and (ROOT / p).is_file()]


def test_fresh_clone_plans_the_whole_experiment(tmp_path):
    from upo.sweeps import run_table

    clone = tmp_path / "clone"
    files = tracked_files()
    for path in files:
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, clone / path)
    # nothing committed lies where an experiment writes its tables and figures
    for configfile in (ROOT / "config").glob("*.yaml"):
        name = yaml.safe_load(configfile.read_text())["name"]
        assert not [p for p in files if p.startswith(f"results/{name}/")], configfile.name
    assert any(p.startswith("results/reference/default/") for p in files)
    result = snakemake("-n", cwd=clone)
    counts = job_counts(result.stdout)
    runs = run_table(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    ppo = sum(r["method"] == "ppo" for r in runs)
    assert counts["train_offline"] == len(runs) - ppo and counts["train_ppo"] == ppo
    assert counts["train_sft"] == len({(r["dataset"], r["model"]) for r in runs})
    assert counts["evaluate"] == len(runs) + counts["train_sft"] and counts["aggregate"] == 1
    assert "--reference-dir results/reference/default" in snakemake("-n", "-p", cwd=clone).stdout


def test_config_values_reach_the_shell_quoted(tmp_path):
    """Shell syntax in a file name, a split, a data_dir and a test split runs nothing, and a path
    with a space stays one argument: the prepared data and its report name the literal values."""
    work = prepare_tree(tmp_path)
    folder = work / "my data"
    folder.mkdir()
    source = "my data/x$(touch MARKER_SOURCE).jsonl"
    test_from = "my data/test `touch MARKER_TEST`.jsonl"
    shutil.copy(work / "resources/default/train.jsonl", work / source)
    shutil.copy(work / "resources/default/test.jsonl", work / test_from)
    config = yaml.safe_load((ROOT / "config/quick.yaml").read_text())
    config["datasets"]["default"].update(
        source=source,
        test_from=test_from,
        split="train$(touch MARKER_SPLIT)",
        test_split="test; touch MARKER_TEST_SPLIT",
        data_dir="d' && touch MARKER_DIR && echo '",
        limit=24,
    )
    (work / "config/hostile.yaml").write_text(yaml.safe_dump(config))
    snakemake("resources/data/default/report.json", "--cores", "1", "--configfile", "config/hostile.yaml", cwd=work)
    assert not list(work.rglob("MARKER*")) and not list(tmp_path.rglob("MARKER*"))
    report = json.loads((work / "resources/data/default/report.json").read_text())
    assert report["source"] == source and report["test_from"] == test_from
    assert (
        report["split"] == "train$(touch MARKER_SPLIT)"
        and report["data_dir"] == config["datasets"]["default"]["data_dir"]
    )
    assert report["n_train"] > 0 and report["n_test"] > 0


def tiny_config(edit=None) -> dict:
    """The quick config cut down to one DPO and one UPO run of 2 steps (a few minutes end to end)."""
    config = yaml.safe_load((ROOT / "config/quick.yaml").read_text())
    config["name"] = "tiny"
    config["datasets"]["default"].update(limit=32, aux=["readability"])
    pico = config["models"]["pico"]
    pico.update(data={"max_length": 64, "max_prompt_length": 32}, eval={"max_prompts": 4})
    pico["sft"] = {"optim": {"lr": 3.0e-3}, "train": {"max_steps": 2, "batch_size": 8}}
    pico["preference"] = {"optim": {"lr": 5.0e-4}, "train": {"max_steps": 2, "batch_size": 8}}
    config["sweeps"] = [
        {"method": "dpo", "models": ["pico"], "beta": [0.1], "aux_weight": [0], "seeds": [0]},
        {"method": "upo", "models": ["pico"], "beta": [0.1], "aux_weight": [1.0], "seeds": [0]},
    ]
    config["eval"].update(max_new_tokens=8, batch_size=4, aux_rewards=["readability"], lm_eval_tasks=[])
    config["frontier"]["n_boot"] = 20
    config["judge_card"].update(pairs=16, n_boot=100)
    if edit is not None:
        edit(config)
    return config


def planned(work: Path, config: dict, name: str) -> dict[str, int]:
    (work / f"config/{name}.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", f"config/{name}.yaml", cwd=work)
    if "Nothing to be done" in result.stdout + result.stderr:
        return {}
    counts = job_counts(result.stdout)
    counts.pop("total")
    return counts


@pytest.mark.slow
def test_edit_of_one_sweep_value_reruns_exactly_the_affected_jobs(tmp_path):
    work = prepare_tree(tmp_path)
    (work / "config/tiny.yaml").write_text(yaml.safe_dump(tiny_config()))
    snakemake("--cores", "2", "--configfile", "config/tiny.yaml", cwd=work)
    assert not list((work / "results").rglob("checkpoint"))
    assert planned(work, tiny_config(), "tiny") == {}

    # committed reference results of this experiment: only the aggregate step (and what reads it) reruns
    reference = work / "results/reference/tiny"
    reference.mkdir(parents=True)
    shutil.copy(work / "results/tiny/metrics.csv", reference / "metrics.csv")
    assert planned(work, tiny_config(), "tiny") == {"aggregate": 1, "plot": 1, "all": 1}
    snakemake("--cores", "2", "--configfile", "config/tiny.yaml", cwd=work)
    comparison = pd.read_csv(work / "results/tiny/reference_comparison.csv")
    assert set(comparison["metric"]) == {"win_rate", "aux_readability", "kl"} and len(comparison) == 9
    assert comparison["within_95ci"].all() and (comparison["difference"] == 0).all()
    assert "9 of 9 comparisons" in (work / "results/tiny/summary.md").read_text()

    def new_weight(config):
        config["sweeps"][1]["aux_weight"] = [2.0]

    def new_lr(config):
        config["models"]["pico"]["preference"]["optim"]["lr"] = 1.0e-3

    one_run = {"write_run_config": 1, "train_offline": 1, "generate": 1, "evaluate": 1}
    assert planned(work, tiny_config(new_weight), "weight") == {**one_run, "aggregate": 1, "plot": 1, "all": 1}
    both_runs = {job: 2 for job in one_run}  # SFT, data and reference log-probs are untouched
    assert planned(work, tiny_config(new_lr), "lr") == {**both_runs, "aggregate": 1, "plot": 1, "all": 1}
