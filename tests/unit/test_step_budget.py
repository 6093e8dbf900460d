"""A sweep point's own step budget (a sweep entry's ``max_steps:``): run table, run.yaml, paths and tables.

DPO's KL on a small model stops moving with beta once the step budget binds, so a curve that must
reach the KLs of other methods sweeps the steps too; each budget is its own sweep point everywhere.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from upo.report.comparisons import build_cells, claims_table
from upo.report.plotting import method_curves
from upo.report.summary import results_section
from upo.report.table import AggregateError, seed_means, with_point_columns
from upo.strict import ConfigError
from upo.sweeps import resolve_run, run_key, run_table

ROOT = Path(__file__).resolve().parents[2]


def config_with(*sweeps: dict) -> dict:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["sweeps"] = list(sweeps)
    return config


def test_run_table_expands_the_budgets_and_keeps_points_apart():
    config = config_with(
        {"method": "dpo", "models": ["pico"], "beta": [3.0], "aux_weight": [0], "seeds": [0, 1]},
        {"method": "dpo", "models": ["pico"], "beta": [3.0], "aux_weight": [0], "max_steps": [10, 20], "seeds": [0]},
    )
    table = run_table(config)
    assert [(r["max_steps"], r["seed"]) for r in table] == [(None, 0), (None, 1), (10, 0), (20, 0)]
    # the same beta at another budget is another point, not a duplicate run; the same budget twice is
    config["sweeps"].append({"method": "dpo", "models": ["pico"], "beta": [3.0], "aux_weight": [0], "max_steps": [10]})
    with pytest.raises(ConfigError, match="more than one sweep entry"):
        run_table(config)


def test_offline_budget_sets_train_max_steps_path_and_tags():
    config = config_with({"method": "dpo", "models": ["pico"], "beta": [3.0], "aux_weight": [0], "max_steps": [25]})
    row = run_table(config)[0]
    run = resolve_run(config, **run_key(row))
    assert run["train"]["max_steps"] == 25
    assert run["output_dir"] == "results/runs/default/pico/dpo/beta~3/w~0/steps~25/seed~0"
    assert run["tags"]["max_steps"] == 25
    plain = resolve_run(config, **{**run_key(row), "max_steps": None})
    assert plain["train"]["max_steps"] is None and "max_steps" not in plain["tags"]
    assert plain["output_dir"] == "results/runs/default/pico/dpo/beta~3/w~0/seed~0"


def test_ppo_budget_sets_its_total_steps():
    config = config_with({"method": "ppo", "models": ["pico"], "beta": [0.1], "aux_weight": [1], "max_steps": [7]})
    run = resolve_run(config, **run_key(run_table(config)[0]))
    assert run["ppo"]["total_steps"] == 7 and run["ppo"]["kl_beta"] == 0.1
    assert run["train"]["max_steps"] is None  # PPO's budget is its own section's


def test_budget_lets_a_stage_without_epochs_train():
    config = config_with({"method": "dpo", "models": ["pico"], "beta": [3.0], "aux_weight": [0]})
    config["models"]["pico"]["preference"]["train"]["epochs"] = 0
    with pytest.raises(ConfigError, match="would not train"):
        resolve_run(config, **run_key(run_table(config)[0]))
    assert resolve_run(config, **{**run_key(run_table(config)[0]), "max_steps": 5})["train"]["max_steps"] == 5


def tidy(points: list[tuple]) -> tuple[pd.DataFrame, dict]:
    """points: (method, beta, max_steps, seed, win, aux, kl), six prompts each with these values."""
    rows, scores = [], {}
    for method, beta, steps, seed, win, aux, kl in points:
        source = f"{method}/{beta}/{steps}/{seed}"
        rows.append({"dataset": "d", "model": "m", "method": method, "beta": beta, "aux_weight": 0.0,
                     "max_steps": steps, "seed": seed, "win_rate": 100 * win, "win_rate_se": 1.0,
                     "aux_readability": aux, "aux_readability_se": 0.01, "kl": kl, "kl_se": 0.1,
                     "length_tokens": 10.0, "length_tokens_se": 1.0, "train_wall_s": 1.0, "source": source,
                     "judge": "j", "judge_name": "oracle", "win_reference": "dataset_chosen"})  # fmt: skip
        scores[source] = {f"p{i}": {"preference": win, "aux": {"readability": aux}, "kl": kl} for i in range(6)}
    return pd.DataFrame(rows), scores


NAN = float("nan")
# DPO at beta 3: the stage's budget (KL 10) and a quarter of it (KL 2); UPO at KL 2 between nothing else
POINTS = [("dpo", 3.0, NAN, s, 0.40, 0.50, 10.0) for s in (0, 1)]
POINTS += [("dpo", 3.0, 25.0, s, 0.30, 0.55, 2.0) for s in (0, 1)]
POINTS += [("upo", 0.1, NAN, s, 0.30, 0.60, 2.0) for s in (0, 1)]


def test_budgets_are_separate_points_in_means_claims_summary_and_curves():
    table, scores = tidy(POINTS)
    means = seed_means(table, ["win_rate", "kl"])
    assert len(means[means["method"] == "dpo"]) == 2  # not averaged into one point
    cells = build_cells(table, scores, None, ["readability"], n_boot=50, seed=0)
    assert len(cells[0].points) == 3
    claims = claims_table(cells, ["upo"])
    row = claims.iloc[0]
    # matched at KL 2 exactly by the short-budget DPO point: deltas are UPO minus that point, not extrapolated
    assert not row["extrapolated"] and math.isclose(row["delta_aux"], 0.05) and abs(row["delta_win"]) < 1e-9
    assert row["comparator_points"] == 2
    text = "\n".join(results_section(table))
    assert "| d | m | dpo | 2 | 3 | 0 | 25 | 2 |" in text and "| d | m | dpo | 2 | 3 | 0 | – | 2 |" in text
    labels = [label for method, label, *_ in method_curves(means) if method == "dpo"]
    assert labels == ["dpo", "dpo (steps=25)"]


def test_tables_written_before_budgets_read_as_stage_budget_points():
    old = pd.DataFrame({"dataset": ["d"], "model": ["m"], "method": ["dpo"], "beta": [0.1], "aux_weight": [0.0]})
    new = with_point_columns(old)
    assert list(new.columns) == ["dataset", "model", "method", "beta", "aux_weight", "max_steps"]
    assert np.isnan(new["max_steps"].iloc[0]) and "max_steps" not in old.columns


def test_old_csv_tables_gain_the_column_where_they_are_read(tmp_path):
    """The committed real-smoke reference predates step budgets: its CSV is read by the reference
    comparison and the figures, which add the column; the in-memory consumers require it."""
    from upo.report.plotting import read_table
    from upo.report.reference import load_reference

    reference = Path(__file__).resolve().parents[2] / "results" / "reference" / "real-smoke"
    old = pd.read_csv(reference / "metrics.csv")
    assert "max_steps" not in old.columns
    assert load_reference(reference)["max_steps"].isna().all()
    old.to_csv(tmp_path / "metrics.csv", index=False)
    assert read_table(tmp_path / "metrics.csv")["max_steps"].isna().all()
    with pytest.raises(AggregateError, match="max_steps"):
        seed_means(old, ["win_rate"])
