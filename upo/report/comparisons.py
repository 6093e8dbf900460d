"""Comparisons between methods from the tidy table and per-prompt scores: matched-KL claims and hypervolumes.

Per (dataset, model) *cell*, every sweep point (method, beta, aux_weight; its seeds averaged) is a
*group*. ``build_cells`` resamples all groups of a cell together (``upo.report.stats.bootstrap_means``:
whole prompt clusters drawn once and shared, seeds drawn independently per group), so every statistic
below is paired by prompt and uses the same replicates:

- ``claims_table``: each point of a tested method (UPO by default) against each comparator method's
  curve at the point's KL (``upo.report.matched``): deltas of win rate (percentage points) and of each
  aux metric, percentile CIs, bootstrap p-values, the verdict, and the verdict after Holm's
  adjustment over every test of the table (2 per row);
- ``frontier_table`` / ``hypervolume_table``: Pareto membership and the hypervolume of each method's
  points from the SFT model's point (resampled with the same draw), and the CI of the *difference*
  of hypervolumes between the tested method and each comparator.

Methods whose name ends in ``-oracle`` (e.g. ``relabel-dpo-oracle``, which reads the evaluation judge's
scores) are oracle upper bounds: shown in the tables and plots, but never a comparator, never in the
``all`` frontier and never in a verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from upo.report.frontier import hypervolume_2d, hypervolume_replicates, pareto_front
from upo.report.matched import matched_delta, verdict
from upo.report.stats import (
    Resampled,
    bootstrap_means,
    bootstrap_pvalue,
    ci_side,
    cluster_codes,
    holm,
    percentile_ci,
    rejection_side,
)

SFT_METHOD = "sft"
ALL_METHODS = "all"
ORACLE_SUFFIX = "-oracle"
POINT_COLUMNS = ["method", "beta", "aux_weight", "max_steps"]  # a sweep point within one (dataset, model)


def is_oracle(method: str) -> bool:
    """Oracle upper bounds (they read what no real method can): excluded from verdicts and ``all``."""
    return method.endswith(ORACLE_SUFFIX)


@dataclass(frozen=True)
class Cell:
    """One (dataset, model): its groups, the metric columns and the shared bootstrap replicates.

    ``points``: one row per group (method, beta, aux_weight, max_steps, n_seeds), row i = group i of ``resampled``.
    ``metrics``: column names of the last axis: ``win_rate`` (fraction, not %), ``aux_<name>``..., ``kl``.
    """

    dataset: str
    model: str
    points: pd.DataFrame
    metrics: list[str]
    resampled: Resampled
    n_prompts: int
    n_clusters: int
    resampling: str

    def column(self, name: str) -> int:
        return self.metrics.index(name)


def _same(series: pd.Series, value: float) -> pd.Series:
    """Equality that treats NaN == NaN (beta/aux_weight are NaN for methods without them)."""
    return series.isna() if isinstance(value, float) and math.isnan(value) else series == value


def _run_values(run_scores: dict, ids: list[str], aux: list[str], source: str) -> np.ndarray:
    """(P, M) per-prompt [preference, aux..., kl] of one run (KL NaN where not measured)."""
    rows = []
    for prompt_id in ids:
        row = run_scores[prompt_id]
        try:
            values = [float(row["preference"]), *(float(row["aux"][name]) for name in aux)]
        except KeyError as error:
            raise ValueError(f"{source}: scores.jsonl lacks aux {error} for prompt {prompt_id!r}") from None
        values.append(float("nan") if row.get("kl") is None else float(row["kl"]))
        rows.append(values)
    return np.array(rows)


def build_cells(
    table: pd.DataFrame,
    scores: dict[str, dict] | None,
    clusters: dict[str, dict[str, str]] | None,
    aux: list[str],
    n_boot: int,
    seed: int,
) -> list[Cell]:
    """Group arrays of every cell and their shared bootstrap replicates.

    Args:
        table: tidy table (``upo.report.aggregate.build_table``, with its ``source`` column).
        scores: ``{source: {prompt id: score row}}``, or None to resample seeds only (run-level means).
        clusters: ``{source: {prompt id: cluster}}`` (None: each prompt its own cluster).
        aux: aux metric names.
        n_boot, seed: bootstrap settings.
    """
    metrics = ["win_rate", *(f"aux_{a}" for a in aux), "kl"]
    cells = []
    for (dataset, model), cell in table.groupby(["dataset", "model"], sort=True):
        sources = list(cell["source"])
        if scores is None:
            ids, labels, resampling = ["all"], ["all"], "seeds"
        else:
            ids = sorted(scores[sources[0]])
            for source in sources:
                if sorted(scores[source]) != ids:
                    raise ValueError(f"runs are not paired: prompt ids of {sources[0]} and {source} differ")
            if clusters is None:
                labels, resampling = ids, "seeds+prompts"
            else:
                first = clusters[sources[0]]
                for source in sources:
                    if any(clusters[source].get(i) != first.get(i) for i in ids):
                        raise ValueError(f"prompt clusters of {sources[0]} and {source} differ")
                labels, resampling = [first[i] for i in ids], "seeds+clusters"
        groups, rows = [], []
        for key, runs in cell.groupby(POINT_COLUMNS, dropna=False, sort=True):
            if scores is None:
                run_level = runs[["win_rate", *metrics[1:]]].to_numpy(dtype=float, copy=True)
                run_level[:, 0] /= 100.0
                groups.append(run_level[:, None, :])  # (S, 1, M)
            else:
                groups.append(np.stack([_run_values(scores[s], ids, aux, s) for s in runs["source"]]))
            rows.append({**dict(zip(POINT_COLUMNS, key, strict=True)), "n_seeds": len(runs)})
        codes = cluster_codes(labels)
        resampled = bootstrap_means(groups, codes, n_boot, seed)
        points = pd.DataFrame(rows)
        cells.append(Cell(dataset, model, points, metrics, resampled, len(ids), int(codes.max()) + 1, resampling))
    return cells


def _label(row: pd.Series) -> str:
    parts = [f"β={row['beta']:g}" if not math.isnan(row["beta"]) else ""]
    parts.append(f"w={row['aux_weight']:g}" if not math.isnan(row["aux_weight"]) else "")
    parts.append(f"steps={row['max_steps']:g}" if not math.isnan(row.get("max_steps", math.nan)) else "")
    detail = ",".join(p for p in parts if p)
    return f"{row['method']}({detail})" if detail else row["method"]


def comparators(points: pd.DataFrame, method: str) -> list[str]:
    """Methods a tested method is compared with: every other method but SFT and the oracle bounds."""
    return sorted(m for m in points["method"].unique() if m not in (method, SFT_METHOD) and not is_oracle(m))


def claims_table(cells: list[Cell], tested: list[str], level: float = 0.95) -> pd.DataFrame:
    """Matched-KL claims: one row per (cell, aux, tested point, comparator); see the module docstring."""
    rows = []
    for cell in cells:
        est, reps = cell.resampled.estimate, cell.resampled.replicates
        kl = cell.column("kl")
        for name in (m[4:] for m in cell.metrics if m.startswith("aux_")):
            cols = [cell.column("win_rate"), cell.column(f"aux_{name}"), kl]
            for index, point in cell.points.iterrows():
                if point["method"] not in tested:
                    continue
                for comparator in comparators(cell.points, point["method"]):
                    curve = cell.points.index[cell.points["method"] == comparator].to_numpy()
                    if np.isnan(est[[index, *curve], kl]).any():
                        raise ValueError(
                            f"{cell.dataset}/{cell.model}: matched-KL claims need the KL of {_label(point)} and "
                            f"of every {comparator} point (eval.kl: true)"
                        )
                    delta, extrapolated = matched_delta(est[index, cols], est[np.ix_(curve, cols)], kl_column=2)
                    boot = np.array([matched_delta(r[index, cols], r[np.ix_(curve, cols)], 2)[0] for r in reps])
                    boot[:, 0] *= 100.0  # win rate in percentage points
                    low, high = percentile_ci(boot, level)
                    pvalues = bootstrap_pvalue(boot)
                    rows.append(
                        {
                            "dataset": cell.dataset, "model": cell.model, "aux": name,
                            "method": point["method"], "beta": point["beta"], "aux_weight": point["aux_weight"],
                            "max_steps": point["max_steps"], "comparator": comparator, "kl": est[index, kl],
                            "comparator_kl_min": est[curve, kl].min(), "comparator_kl_max": est[curve, kl].max(),
                            "extrapolated": extrapolated,
                            "delta_win": 100.0 * delta[0], "delta_win_lo": low[0], "delta_win_hi": high[0],
                            "delta_aux": delta[1], "delta_aux_lo": low[1], "delta_aux_hi": high[1],
                            "p_win": pvalues[0], "p_aux": pvalues[1],
                            "verdict": verdict(ci_side(low[0], high[0]), ci_side(low[1], high[1])),
                            "n_seeds": int(point["n_seeds"]),
                            "comparator_points": len(curve),
                            "comparator_min_seeds": int(cell.points.loc[curve, "n_seeds"].min()),
                            "n_prompts": cell.n_prompts, "n_clusters": cell.n_clusters,
                            "resampling": cell.resampling, "ci_level": level,
                            "n_boot": cell.resampled.n_boot,
                            "_boot": boot,
                        }
                    )  # fmt: skip
    if not rows:
        return pd.DataFrame()
    claims = pd.DataFrame(rows)
    # Holm over the whole table: two tests (win, aux) per row, one family
    adjusted = holm(np.concatenate([claims["p_win"], claims["p_aux"]])).reshape(2, -1)
    claims["p_win_holm"], claims["p_aux_holm"] = adjusted
    alpha = 1.0 - level
    claims["verdict_holm"] = [
        verdict(rejection_side(pw, boot[:, 0], alpha), rejection_side(pa, boot[:, 1], alpha))
        for pw, pa, boot in zip(claims["p_win_holm"], claims["p_aux_holm"], claims["_boot"], strict=True)
    ]
    claims["n_tests"] = 2 * len(claims)
    return claims.drop(columns="_boot")


def _reference(cell: Cell, x: int, y: int, reference: str | tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(2,) estimate and (B, 2) replicates of the hypervolume reference point of one aux plane."""
    if reference != "sft":
        fixed = np.asarray(reference, dtype=float)
        return fixed, np.broadcast_to(fixed, (cell.resampled.n_boot, 2))
    sft = cell.points.index[cell.points["method"] == SFT_METHOD].to_numpy()
    if sft.size != 1:
        raise ValueError(f"{cell.dataset}/{cell.model}: a hypervolume from the SFT point needs its one sft run")
    return cell.resampled.estimate[sft[0], [x, y]], cell.resampled.replicates[:, sft[0], [x, y]]


def _front_groups(points: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    groups = [(m, points.index[points["method"] == m].to_numpy()) for m in sorted(points["method"].unique())]
    groups.append((ALL_METHODS, points.index[~points["method"].map(is_oracle)].to_numpy()))
    return groups


def hypervolume_table(
    cells: list[Cell], tested: list[str], reference: str | tuple[float, float] = "sft", level: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frontier, hypervolume): per-point Pareto membership, and per-group hypervolumes with CIs plus
    the paired CI of ``tested - comparator`` differences (rows with ``minus`` set)."""
    point_rows, group_rows = [], []
    for cell in cells:
        est, reps = cell.resampled.estimate, cell.resampled.replicates
        x = cell.column("win_rate")
        for name in (m[4:] for m in cell.metrics if m.startswith("aux_")):
            y = cell.column(f"aux_{name}")
            ref, ref_reps = _reference(cell, x, y, reference)
            common = {"dataset": cell.dataset, "model": cell.model, "aux_name": name,
                      "hv_reference": reference if reference == "sft" else "fixed",
                      "hv_ref_win_frac": ref[0], "hv_ref_aux": ref[1], "hv_ci_level": level,
                      "n_boot": cell.resampled.n_boot, "ci_resampling": cell.resampling,
                      "n_prompts": cell.n_prompts, "n_clusters": cell.n_clusters}  # fmt: skip
            hv_values, hv_reps = {}, {}
            for group, index in _front_groups(cell.points):
                xy = est[np.ix_(index, [x, y])]
                value = hv_values[group] = hypervolume_2d(xy, ref)
                hv_reps[group] = hypervolume_replicates(reps[:, index][:, :, [x, y]], ref_reps)
                low, high = percentile_ci(hv_reps[group], level)
                group_rows.append({**common, "group": group, "minus": "", "n_points": len(index),
                                   "hypervolume": value, "hv_ci_low": low, "hv_ci_high": high,
                                   "p_value": float("nan")})  # fmt: skip
                on_front = pareto_front(xy)
                for (_, point), front, (px, py) in zip(cell.points.loc[index].iterrows(), on_front, xy, strict=True):
                    point_rows.append({**common, "front_group": group, "method": point["method"],
                                       "beta": point["beta"], "aux_weight": point["aux_weight"],
                                       "max_steps": point["max_steps"], "n_seeds": point["n_seeds"],
                                       "win_rate": 100.0 * px, "aux": py,
                                       "on_front": bool(front), "n_points": len(index), "hypervolume": value,
                                       "hv_ci_low": low, "hv_ci_high": high})  # fmt: skip
            for method in (m for m in tested if m in hv_reps):
                for comparator in comparators(cell.points, method):
                    diff = hv_reps[method] - hv_reps[comparator]
                    low, high = percentile_ci(diff, level)
                    value = hv_values[method] - hv_values[comparator]
                    n_points = int((cell.points["method"] == method).sum())
                    group_rows.append({**common, "group": method, "minus": comparator, "n_points": n_points,
                                       "hypervolume": value, "hv_ci_low": low, "hv_ci_high": high,
                                       "p_value": float(bootstrap_pvalue(diff))})  # fmt: skip
    return pd.DataFrame(point_rows), pd.DataFrame(group_rows)
