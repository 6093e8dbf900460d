"""benchmarks/compare_cost_profiles.py: per-job means of two cost profiles side by side."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def module():
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module("compare_cost_profiles")


def profile(rows):
    return pd.DataFrame(rows, columns=["kind", "model", "jobs", "mean_wall_s"])


def test_ratio_per_kind_and_kinds_in_one_profile_only(module, tmp_path):
    before = profile([("evaluate", "pico", 40, 12.0), ("generate", "pico", 40, 6.0)])
    after = profile([("evaluate", "pico", 37, 9.0), ("judge-card", "–", 1, 2.0)])
    table = module.compare(before, after).set_index(["kind", "model"])
    assert table.loc[("evaluate", "pico"), "ratio"] == pytest.approx(0.75)
    assert pd.isna(table.loc[("generate", "pico"), "jobs_after"])
    assert pd.isna(table.loc[("judge-card", "–"), "ratio"])
    before.to_csv(tmp_path / "b.csv", index=False)
    after.to_csv(tmp_path / "a.csv", index=False)
    assert module.main([str(tmp_path / "b.csv"), str(tmp_path / "a.csv"), "--out", str(tmp_path / "t.md")]) == 0
    text = (tmp_path / "t.md").read_text()
    assert "| evaluate | pico | 40 | 12.0 | 37 | 9.0 | 0.75 |" in text
    assert "| generate | pico | 40 | 6.0 | – | – | – |" in text


def test_missing_column_and_bad_file_are_named(module, tmp_path, capsys):
    with pytest.raises(ValueError, match="before: profile lacks"):
        module.compare(pd.DataFrame({"kind": []}), profile([]))
    profile([]).to_csv(tmp_path / "good.csv", index=False)
    pd.DataFrame({"kind": ["x"]}).to_csv(tmp_path / "short.csv", index=False)
    for bad, message in ((tmp_path / "short.csv", "profile lacks column"), (tmp_path / "none.csv", "cannot read")):
        with pytest.raises(SystemExit):
            module.main([str(tmp_path / "good.csv"), str(bad)])
        assert f"{bad}: {message}" in capsys.readouterr().err
