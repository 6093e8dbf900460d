"""Bad experiment configs fail when the DAG is built, in one line naming the key; outside-world checks
(API keys, hub ids) wait for a real run and then fail before any job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflow.test_workflow import prepare_tree

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


def quick_with(tmp_path: Path, replacements: dict[str, str]) -> Path:
    """config/quick.yaml with whole lines replaced (the bad input stays readable YAML text)."""
    text = (ROOT / "config/quick.yaml").read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


BAD = {
    "nan-lr": (
        {"DPO stage\n      optim: {lr: 5.0e-4}": "DPO stage\n      optim: {lr: .nan}"},
        "models.pico.preference.optim.lr: nan is not a finite number",
    ),
    "unknown-judge": (
        {"  judge: oracle  #": "  judge: oracel  #"},
        "eval.judge: unknown name 'oracel'; known: local-llm, oracle",
    ),
    "empty-seeds": (
        {"sft_seed: 0  #": "seeds: []\nsft_seed: 0  #", ", seeds: [0]}": "}"},
        "seeds",
    ),
    "unknown-task": (
        {"  lm_eval_tasks: [upo_pref_acc]": "  lm_eval_tasks: [upo_pref_accc]"},
        "unknown name 'upo_pref_accc'; known: upo_capability, upo_pref_acc",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_config_fails_at_dag_build_naming_the_key(tmp_path, name):
    replacements, message = BAD[name]
    result = run_snakemake("-n", "--configfile", str(quick_with(tmp_path, replacements)))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output, output[-2000:]
    assert "Job stats" not in output  # no DAG was planned


def test_paper_config_builds_its_dag_without_api_key_or_network():
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["HF_HUB_OFFLINE"] = "1"
    result = run_snakemake("-n", "--configfile", "config/paper.yaml", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train_offline" in result.stdout


def test_api_judge_without_key_fails_before_any_job(tmp_path):
    work = prepare_tree(tmp_path)
    config = quick_with(tmp_path, {"  judge: oracle  #": "  judge: weighted_alpaca_eval_gpt4_turbo  #"})
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    dry = run_snakemake("-n", "--configfile", str(config), cwd=work, env=env)
    assert dry.returncode == 0, dry.stderr[-2000:]  # a dry run never needs the key
    real = run_snakemake("--cores", "1", "--configfile", str(config), cwd=work, env=env)
    assert real.returncode != 0
    assert "eval.judge: judge 'weighted_alpaca_eval_gpt4_turbo'" in real.stderr and "OPENAI_API_KEY" in real.stderr
    assert not (work / "logs").exists() and not (work / "resources" / "models").exists()  # no job started
