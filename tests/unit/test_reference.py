"""upo.report.reference: a new tidy table against committed reference results, by hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from upo.report.reference import (
    ReferenceComparisonError,
    compare_tables,
    compare_with_reference,
    compared_metrics,
)


def table(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (method, beta, aux_weight, seed, win_rate, win_rate_se, aux_readability, kl)."""
    frame = pd.DataFrame(
        rows, columns=["method", "beta", "aux_weight", "seed", "win_rate", "win_rate_se", "aux_readability", "kl"]
    )
    frame.insert(0, "model", "pico")
    frame.insert(0, "dataset", "default")
    frame["aux_readability_se"] = 0.01
    frame["aux_readability_raw"] = 60.0
    frame["kl_se"] = 0.5
    frame["judge"] = "abc"
    frame.insert(5, "max_steps", float("nan"))  # after aux_weight, as upo aggregate writes it
    return frame


NEW = table(
    [
        ("sft", None, None, 0, 30.0, 3.0, 0.60, 0.0),
        ("dpo", 0.1, 0.0, 0, 40.0, 3.0, 0.50, 10.0),
        ("dpo", 0.1, 0.0, 1, 44.0, 3.0, 0.54, 14.0),
        ("upo", 0.1, 2.0, 0, 35.0, 3.0, 0.70, 5.0),
    ]
)
REFERENCE = table(
    [
        ("sft", None, None, 0, 34.0, 4.0, 0.60, 0.0),
        ("dpo", 0.1, 0.0, 0, 30.0, 3.0, 0.52, 12.0),
        ("dpo", 0.1, 0.0, 1, 32.0, 3.0, 0.52, 12.0),
        ("upo", 0.1, 4.0, 0, 35.0, 3.0, 0.70, 5.0),
    ]
)


def row(comparison, method, metric, aux_weight=None):
    picked = comparison[(comparison["method"] == method) & (comparison["metric"] == metric)]
    if aux_weight is not None:
        picked = picked[picked["aux_weight"] == aux_weight]
    assert len(picked) == 1
    return picked.iloc[0]


def test_metrics_are_win_rate_aux_and_kl_not_sweep_columns():
    assert compared_metrics(NEW) == ["win_rate", "aux_readability", "kl"]


def test_seed_se_two_seeds_prompt_se_one_seed_and_the_95_interval():
    comparison = compare_tables(NEW, REFERENCE)
    # dpo, two seeds each side: means 42 vs 31; SEs std/sqrt(2) = 2.0 and 1.0
    dpo = row(comparison, "dpo", "win_rate")
    assert (dpo["new_mean"], dpo["reference_mean"], dpo["difference"]) == (42.0, 31.0, 11.0)
    assert dpo["new_se"] == pytest.approx(2.0) and dpo["reference_se"] == pytest.approx(1.0)
    assert dpo["combined_se"] == pytest.approx(math.sqrt(5.0))
    assert not dpo["within_95ci"]  # 11 > 1.96 * 2.236 = 4.38
    # sft, one seed each side: the run's SE over prompts, 3 and 4 -> combined 5; |30 - 34| <= 9.8
    sft = row(comparison, "sft", "win_rate")
    assert sft["new_se"] == 3.0 and sft["reference_se"] == 4.0 and sft["combined_se"] == pytest.approx(5.0)
    assert sft["within_95ci"] and sft["status"] == "both" and sft["new_seeds"] == 1
    # readability of dpo: means 0.52 vs 0.52 -> within; KL: 12 vs 12 -> within
    assert row(comparison, "dpo", "aux_readability")["within_95ci"]
    assert row(comparison, "dpo", "kl")["difference"] == pytest.approx(0.0)
    # the upo sweep point moved (w 2 -> 4): listed on one side each, never tested
    assert row(comparison, "upo", "win_rate", 2.0)["status"] == "new_only"
    assert row(comparison, "upo", "win_rate", 4.0)["status"] == "reference_only"
    assert comparison[comparison["status"] != "both"]["within_95ci"].isna().all()


def test_summary_section_counts_and_lists_what_does_not_reproduce(tmp_path):
    REFERENCE.to_csv(tmp_path / "metrics.csv", index=False)
    comparison, text = compare_with_reference(NEW, tmp_path)
    tested = comparison["within_95ci"].notna().sum()
    outside = (comparison["within_95ci"] == False).sum()  # noqa: E712 (None is neither)
    assert tested == 6 and outside == 1  # sft and dpo x 3 metrics; only dpo's win rate (11 > 4.38) is outside
    assert f"{tested - outside} of {tested} comparisons" in text
    assert "| default | pico | dpo | 0.1 | 0 | – | win_rate | 42 | 31 | 11 |" in text  # – : the stage budget
    assert "only in this run: 1; only in the reference: 1" in text
    assert "judges differ" not in text
    other = REFERENCE.assign(judge="xyz")
    other.to_csv(tmp_path / "metrics.csv", index=False)
    assert "**The judges differ**" in compare_with_reference(NEW, tmp_path)[1]


def test_missing_reference_table_is_named(tmp_path):
    with pytest.raises(ReferenceComparisonError, match="metrics.csv: reference table not found"):
        compare_with_reference(NEW, tmp_path / "nowhere")
