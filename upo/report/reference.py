"""Does a new run of an experiment reproduce its committed reference results?

The workflow writes ``results/<name>/``; committed reference results of the same experiment sit in
``results/reference/<name>/`` (never written by the workflow). For every sweep point (dataset, model,
method, beta, aux_weight) and metric (win rate, each auxiliary metric, KL) this compares the mean over
seeds of the new tidy table with the reference's:

    difference = new_mean - reference_mean,   combined_se = sqrt(new_se^2 + reference_se^2),
    within_95ci = |difference| <= 1.96 * combined_se

where a side's SE is the SE of its mean over seeds (std / sqrt(n), ddof 1) with two seeds or more,
and the run's own SE over prompts (``<metric>_se`` column) with one. The two runs are independent
reproductions, so the unpaired difference is the right test here; about 5% of comparisons fall
outside by chance even when everything reproduces. Points present on one side only are listed too.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from upo.report.table import POINT_COLUMNS, with_point_columns

Z_95 = 1.959963984540054  # two-sided 95% normal quantile
COLUMNS = [
    *POINT_COLUMNS,
    "metric",
    "new_mean",
    "new_se",
    "new_seeds",
    "reference_mean",
    "reference_se",
    "reference_seeds",
    "difference",
    "combined_se",
    "within_95ci",
    "status",
]


class ReferenceComparisonError(ValueError):
    """The reference results cannot be compared (missing file or columns); names the file."""


def compared_metrics(table: pd.DataFrame) -> list[str]:
    """Win rate, KL and every normalised auxiliary metric (``aux_<name>``: the ones with an ``_se`` column)."""
    aux = sorted(c for c in table.columns if c.startswith("aux_") and f"{c}_se" in table.columns)
    return [c for c in ("win_rate", *aux, "kl") if c in table.columns]


def _normalised(table: pd.DataFrame) -> pd.DataFrame:
    """The table as read back from CSV, so a fresh table and a committed file have the same dtypes."""
    return pd.read_csv(io.StringIO(table.to_csv(index=False)))


def point_stats(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per sweep point: mean over seeds, its SE, and the number of seeds of ``metric``."""
    rows = []
    for key, group in table.groupby(POINT_COLUMNS, dropna=False, sort=True):
        values = group[metric].dropna().to_numpy(dtype=float)
        n = len(values)
        if n >= 2:
            se = float(np.std(values, ddof=1) / math.sqrt(n))
        elif n == 1 and f"{metric}_se" in group.columns:
            se = float(group[f"{metric}_se"].dropna().iloc[0]) if group[f"{metric}_se"].notna().any() else math.nan
        else:
            se = math.nan
        mean = float(values.mean()) if n else math.nan
        rows.append({**dict(zip(POINT_COLUMNS, key, strict=True)), "mean": mean, "se": se, "seeds": n})
    return pd.DataFrame(rows, columns=[*POINT_COLUMNS, "mean", "se", "seeds"])


def compare_tables(new: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per (sweep point, metric) present in either table; see the module docstring."""
    new, reference = _normalised(new), _normalised(reference)
    for name, table in (("new", new), ("reference", reference)):
        missing = [c for c in POINT_COLUMNS if c not in table.columns]
        if missing:
            raise ReferenceComparisonError(f"{name} table lacks column {missing[0]!r}")
    metrics = [m for m in compared_metrics(new) if m in reference.columns]
    rows = []
    for metric in metrics:
        merged = pd.merge(
            point_stats(new, metric),
            point_stats(reference, metric),
            on=POINT_COLUMNS,
            how="outer",
            suffixes=("_new", "_ref"),
            indicator=True,
        )
        for _, row in merged.iterrows():
            difference = row["mean_new"] - row["mean_ref"]
            combined = math.hypot(row["se_new"], row["se_ref"])
            status = {"both": "both", "left_only": "new_only", "right_only": "reference_only"}[row["_merge"]]
            within = bool(abs(difference) <= Z_95 * combined) if status == "both" and combined == combined else None
            rows.append(
                {
                    **{c: row[c] for c in POINT_COLUMNS},
                    "metric": metric,
                    "new_mean": row["mean_new"],
                    "new_se": row["se_new"],
                    "new_seeds": row["seeds_new"],
                    "reference_mean": row["mean_ref"],
                    "reference_se": row["se_ref"],
                    "reference_seeds": row["seeds_ref"],
                    "difference": difference,
                    "combined_se": combined,
                    "within_95ci": within,
                    "status": status,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def load_reference(reference_dir: str | Path) -> pd.DataFrame:
    path = Path(reference_dir) / "metrics.csv"
    if not path.is_file():
        raise ReferenceComparisonError(f"{path}: reference table not found")
    return with_point_columns(pd.read_csv(path))


def judges(table: pd.DataFrame) -> set[str]:
    return set(table["judge"].dropna().astype(str)) if "judge" in table.columns else set()


def _fmt(value: float) -> str:
    return "–" if value != value else f"{value:.4g}"


def comparison_markdown(comparison: pd.DataFrame, reference_dir: str | Path, judge_note: str = "") -> str:
    """The summary section: how many comparisons reproduce, and the ones that do not."""
    both = comparison[comparison["status"] == "both"]
    tested = both[both["within_95ci"].notna()]
    outside = tested[~tested["within_95ci"].astype(bool)]
    one_side = comparison[comparison["status"] != "both"].drop_duplicates(POINT_COLUMNS + ["status"])
    lines = [
        "",
        f"## Against the committed reference results (`{reference_dir}`)",
        "",
        f"{len(tested) - len(outside)} of {len(tested)} comparisons (sweep point × metric) lie within the 95% "
        "interval of the difference of means (|new − reference| ≤ 1.96 × combined SE; about 5% fall outside "
        "by chance when a run reproduces). Details: `reference_comparison.csv`.",
    ]
    if judge_note:
        lines += ["", judge_note]
    if len(one_side):
        counts = one_side["status"].value_counts().to_dict()
        lines += [
            "",
            f"Sweep points only in this run: {counts.get('new_only', 0)}; "
            f"only in the reference: {counts.get('reference_only', 0)}.",
        ]
    if len(outside):
        lines += [
            "",
            "| dataset | model | method | beta | w | steps | metric | new | reference | difference | combined SE |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for _, r in outside.iterrows():
            point = " | ".join("–" if r[c] != r[c] else f"{r[c]:g}" if isinstance(r[c], float) else str(r[c])
                               for c in POINT_COLUMNS)  # fmt: skip
            lines.append(
                f"| {point} | {r['metric']} | {_fmt(r['new_mean'])} | {_fmt(r['reference_mean'])} | "
                f"{_fmt(r['difference'])} | {_fmt(r['combined_se'])} |"
            )
    return "\n".join(lines) + "\n"


def compare_with_reference(table: pd.DataFrame, reference_dir: str | Path) -> tuple[pd.DataFrame, str]:
    """The comparison table of a new tidy table with ``reference_dir/metrics.csv`` and its summary section."""
    reference = load_reference(reference_dir)
    comparison = compare_tables(table, reference)
    note = ""
    if judges(table) != judges(reference):
        note = (
            f"**The judges differ** (this run: {', '.join(sorted(judges(table))) or 'none'}; reference: "
            f"{', '.join(sorted(judges(reference))) or 'none'}): win rates are not comparable."
        )
    return comparison, comparison_markdown(comparison, reference_dir, note)
