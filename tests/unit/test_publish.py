"""``python -m upo publish-reference``: tables, figures and the small per-run files, nothing else."""

from __future__ import annotations

import tarfile

import pandas as pd
import pytest

from upo.report.publish import publish


def make_experiment(root, runs=("results/runs/d/m/dpo/beta~0.1/w~0/seed~0", "results/sft/d/m")):
    pd.DataFrame({"dataset": ["d"] * len(runs), "model": ["m"] * len(runs), "run_dir": list(runs)}).to_csv(
        root / "x.csv", index=False
    )
    source = root / "results" / "exp"
    source.mkdir(parents=True)
    (root / "x.csv").rename(source / "metrics.csv")
    for name in ("summary.md", "frontier.png", "frontier.pdf", "reference_comparison.csv"):
        (source / name).write_text(name)
    (source / "judges" / "d").mkdir(parents=True)
    (source / "judges" / "d" / "oracle.json").write_text("{}")
    for run in runs:
        folder = root / run
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "model.safetensors").write_text("weights")
        for name in ("run.yaml", "metrics.json", "scores.jsonl", "generations.jsonl"):
            (folder / name).write_text(name)
    (root / "results" / "preference_scores" / "d").mkdir(parents=True)
    (root / "results" / "preference_scores" / "d" / "m.jsonl").write_text("{}")


def test_publish_copies_tables_and_packs_only_small_run_files(tmp_path):
    make_experiment(tmp_path)
    old = tmp_path / "results" / "reference" / "exp"
    old.mkdir(parents=True)
    (old / "stale.csv").write_text("old")
    target = publish("exp", tmp_path)
    assert sorted(p.name for p in target.iterdir()) == [
        "frontier.pdf",
        "frontier.png",
        "metrics.csv",
        "reference_comparison_with_previous.csv",
        "runs.tar.gz",
        "summary.md",
    ]  # the stale file of the previous reference is gone
    with tarfile.open(target / "runs.tar.gz") as archive:
        names = sorted(archive.getnames())
    assert "results/runs/d/m/dpo/beta~0.1/w~0/seed~0/scores.jsonl" in names
    assert "results/sft/d/m/run.yaml" in names
    assert "results/exp/judges/d/oracle.json" in names and "results/preference_scores/d/m.jsonl" in names
    assert not [n for n in names if "generations" in n or "safetensors" in n]


def test_publish_fails_before_writing_when_a_run_folder_is_missing(tmp_path):
    make_experiment(tmp_path, runs=("results/runs/d/m/dpo/beta~0.1/w~0/seed~0",))
    table = tmp_path / "results" / "exp" / "metrics.csv"
    pd.DataFrame({"dataset": ["d"], "model": ["m"], "run_dir": ["results/runs/gone"]}).to_csv(table, index=False)
    with pytest.raises(FileNotFoundError, match="results/runs/gone"):
        publish("exp", tmp_path)
    assert not (tmp_path / "results" / "reference" / "exp").exists()
    assert not list((tmp_path / "results" / "reference").iterdir())  # no staging debris
