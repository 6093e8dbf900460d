"""The tidy table's shared vocabulary: the columns that name a sweep point and a run, the SFT reference's
method name, the aux metrics a table carries and the mean +- SE over seeds per sweep point. Read by the
aggregate step, the summary and the figures (so none of them imports another)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from upo.report.stats import mean_se

# one sweep point; max_steps is NaN for a point at its stage's own step budget (no steps~ path segment)
POINT_COLUMNS = ["dataset", "model", "method", "beta", "aux_weight", "max_steps"]
KEY_COLUMNS = [*POINT_COLUMNS, "seed"]  # one run
SFT_METHOD = "sft"


def with_point_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a NaN ``max_steps`` column added when it lacks one: tables written before sweep
    points could set their own step budget read as points at the stage budget.

    Applied only where a tidy table is read from a file (``upo.report.plotting.read_table``,
    ``upo.report.reference.load_reference``); tables built by ``upo aggregate`` always carry the column.
    """
    if "max_steps" in table.columns:
        return table
    at = list(table.columns).index("aux_weight") + 1 if "aux_weight" in table.columns else len(table.columns)
    table = table.copy()
    table.insert(at, "max_steps", float("nan"))
    return table


class AggregateError(ValueError):
    """Inputs that cannot share one table; the message names the file(s) at fault."""


def aux_names(table: pd.DataFrame) -> list[str]:
    """Names of the aux metrics in a tidy table (columns ``aux_<name>`` with ``aux_<name>_se``)."""
    return sorted(c[4:-3] for c in table.columns if c.startswith("aux_") and c.endswith("_se"))


def seed_means(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean and SE over seeds per sweep point.

    For each column ``c`` the result has ``c`` (mean over seeds) and ``c_se``: the SE over seeds
    when the point has >= 2 seeds, otherwise the single run's own ``c_se`` (SE over prompts) when the
    table has one. ``se_over`` says which ("seeds" or "prompts"); ``n_seeds`` counts the seeds.
    """
    missing = [c for c in [*KEY_COLUMNS, *columns] if c not in table.columns]
    if missing:
        raise AggregateError(f"tidy table lacks column(s) {missing}")
    out = []
    for key, group in table.groupby(POINT_COLUMNS, dropna=False, sort=True):
        row = dict(zip(POINT_COLUMNS, key, strict=True))
        row["n_seeds"] = len(group)
        row["se_over"] = "seeds" if len(group) > 1 else "prompts"
        for column in columns:
            values = group[column].to_numpy(dtype=float)
            if np.isnan(values).all():
                row[column], row[f"{column}_se"] = float("nan"), float("nan")
                continue
            mean, se = mean_se(values[~np.isnan(values)])
            if len(group) == 1 and f"{column}_se" in group:
                se = float(group[f"{column}_se"].iloc[0])
            row[column], row[f"{column}_se"] = mean, se
        out.append(row)
    return pd.DataFrame(out)
