"""``summary.md``: the tidy table, the claims, the hypervolumes and the budgets in words (no new numbers).

Everything here is formatting of what ``upo.report.aggregate`` and ``upo.report.comparisons`` computed,
so the summary, the CSV files and the plots cannot disagree.
"""

from __future__ import annotations

import math

import pandas as pd

from upo.report.comparisons import is_oracle
from upo.report.judge_table import judges_section
from upo.report.table import SFT_METHOD, aux_names, seed_means


def _fmt_g(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:g}"


def _fmt(mean: float, se: float, digits: int, marker: str = "") -> str:
    if math.isnan(mean):
        return "–"
    if math.isnan(se):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}{marker}"


def _ci(value: float, low: float, high: float, digits: int) -> str:
    return f"{value:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def _point(row: pd.Series) -> str:
    parts = [f"β={row['beta']:g}" if not math.isnan(row["beta"]) else ""]
    parts.append(f"w={row['aux_weight']:g}" if not math.isnan(row["aux_weight"]) else "")
    parts.append(f"steps={row['max_steps']:g}" if not math.isnan(row.get("max_steps", math.nan)) else "")
    detail = ",".join(p for p in parts if p)
    return f"{row['method']}({detail})" if detail else row["method"]


def _method_name(method: str) -> str:
    return f"{method} (oracle upper bound)" if is_oracle(method) else method


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def results_section(table: pd.DataFrame) -> list[str]:
    """Mean ± SE per sweep point, the number of sweep points of its method, and the SFT parity line."""
    aux = aux_names(table)
    columns = ["win_rate", "kl", *(f"aux_{a}" for a in aux), "length_tokens", "train_wall_s"]
    means = seed_means(table, columns).sort_values(["dataset", "model"], kind="stable")
    means = pd.concat([means[means["method"] == SFT_METHOD], means[means["method"] != SFT_METHOD]])
    means = means.sort_values(["dataset", "model"], kind="stable")
    n_points = means.groupby(["dataset", "model", "method"])["method"].transform("size")
    judge = f"`{table['judge_name'].iloc[0]}` (identity hash `{table['judge'].iloc[0]}`)"
    lines = [
        f"Judge: {judge}; win rate (%) of each run's samples against the reference "
        f"`{table['win_reference'].iloc[0]}`. Aux metrics in [0, 1], higher is better; KL in nats per response.",
        "",
        "**Parity is the SFT model's own win rate, not 50**: the reference responses are not a fair coin "
        "against the policy (in the default testbed the chosen response is the better of two samples of the "
        "same model), so a method gains what it adds over the SFT row of its model:",
        "",
    ]
    sft = means[means["method"] == SFT_METHOD]
    lines += [f"- {r['dataset']} / {r['model']}: parity = {r['win_rate']:.1f}% (SFT)" for _, r in sft.iterrows()]
    if sft.empty:
        lines.append("- no SFT run in this table: parity unknown")
    lines += ["", "Mean ± SE over seeds; † one seed: SE over prompts instead. `points`: sweep points the method ran "
              "in this cell (its tuning effort). `steps`: a point's own step budget (– the stage's budget).",
              ""]  # fmt: skip
    header = ["dataset", "model", "method", "points", "beta", "w", "steps", "seeds", "win rate %", "KL"]
    header += list(aux) + ["length (tokens)", "train wall s"]
    rows = []
    for (_, row), points in zip(means.iterrows(), n_points, strict=True):
        mark = "†" if row["se_over"] == "prompts" else ""
        cells = [row["dataset"], row["model"], _method_name(row["method"]), points, _fmt_g(row["beta"])]
        cells += [_fmt_g(row["aux_weight"]), _fmt_g(row["max_steps"]), row["n_seeds"]]
        cells += [_fmt(row["win_rate"], row["win_rate_se"], 1, mark), _fmt(row["kl"], row["kl_se"], 2, mark)]
        cells += [_fmt(row[f"aux_{a}"], row[f"aux_{a}_se"], 3, mark) for a in aux]
        cells += [_fmt(row["length_tokens"], row["length_tokens_se"], 1, mark), _fmt_g(round(row["train_wall_s"]))]
        rows.append(cells)
    return lines + _table(header, rows)


def claims_section(claims: pd.DataFrame, level: float) -> list[str]:
    """The matched-KL claims table with its CI level, number of comparisons and the Holm column."""
    lines = ["", "## Claims at matched KL", ""]
    if claims.empty:
        return lines + ["No claims: no tested method (`--claims-methods`) shares a cell with a comparator."]
    first = claims.iloc[0]
    lines += [
        f"Each point of a tested method against each comparator's curve at the point's KL (linear between the "
        f"two comparator points that bracket it; ⚠ = outside the comparator's KL range, its nearest point used). "
        f"Δ = point − comparator: win rate in percentage points, aux in [0, 1] units, mean of paired per-prompt "
        f"differences. {level:.0%} percentile CIs from {first['n_boot']} bootstrap replicates resampling "
        f"{first['resampling']} (whole prompt clusters drawn once and shared by the methods; each method's seeds "
        f"drawn independently). {len(claims)} comparisons = {int(first['n_tests'])} tests; `Holm` is the verdict "
        f"after Holm's adjustment of all {int(first['n_tests'])} bootstrap p-values (family-wise {1 - level:.0%}).",
        "",
    ]
    n_tests, n_boot = int(first["n_tests"]), int(first["n_boot"])
    if 2.0 / (n_boot + 1) >= (1.0 - level) / n_tests:
        lines += [
            f"⚠ With B = {n_boot} the smallest bootstrap p-value is 2/(B+1) = {2.0 / (n_boot + 1):.4f}, not below "
            f"Holm's first threshold {(1.0 - level) / n_tests:.5f}: the Holm column cannot reject anything; "
            f"raise --n-boot above {math.ceil(2.0 * n_tests / (1.0 - level))}.",
            "",
        ]
    lines += [
        "Verdict: `dominates` when one Δ's CI lies above 0 and the other's does not lie below 0; `dominated` the "
        "mirror image (one below, the other not above); `trade-off` when one lies above and the other below; "
        "`unresolved` when both contain 0. Oracle upper bounds (`*-oracle`) are never compared.",
        "",
    ]
    header = ["dataset", "model", "aux", "point", "vs", "KL", "Δ win (pp)", "Δ aux", "seeds", "clusters",
              "verdict", "Holm"]  # fmt: skip
    rows = []
    for _, row in claims.iterrows():
        flag = " ⚠" if row["extrapolated"] else ""
        rows.append([
            row["dataset"], row["model"], row["aux"], _point(row),
            f"{row['comparator']} ({row['comparator_points']} pts)", f"{row['kl']:.2f}{flag}",
            _ci(row["delta_win"], row["delta_win_lo"], row["delta_win_hi"], 1),
            _ci(row["delta_aux"], row["delta_aux_lo"], row["delta_aux_hi"], 3),
            f"{row['n_seeds']} vs ≥{row['comparator_min_seeds']}", f"{row['n_clusters']} ({row['n_prompts']} prompts)",
            row["verdict"], row["verdict_holm"],
        ])  # fmt: skip
    return lines + _table(header, rows)


def hypervolume_section(hypervolume: pd.DataFrame) -> list[str]:
    """Hypervolume per group from the stated reference, its points, and the CIs of the differences."""
    lines = ["", "## Hypervolume", ""]
    if hypervolume.empty:
        return lines + ["No hypervolume: no aux metric."]
    first = hypervolume.iloc[0]
    where = (
        "the SFT model's point of its dataset and model (resampled with it)"
        if first["hv_reference"] == "sft"
        else f"the fixed point ({first['hv_ref_win_frac']:g}, {first['hv_ref_aux']:g})"
    )
    lines += [
        f"Area of the (win rate/100 × aux) plane that a group's points dominate, measured from {where}: only "
        f"what a method adds over where it started counts. `points` is the group's number of sweep points (a "
        f"group with more points can only gain area). {first['hv_ci_level']:.0%} percentile CIs, "
        f"{first['n_boot']} replicates over {first['ci_resampling']}; differences are paired (same replicates). "
        f"`all` excludes oracle upper bounds.",
        "",
    ]
    groups = hypervolume[hypervolume["minus"].fillna("") == ""]
    header = ["dataset", "model", "aux", "reference (win %, aux)", "group", "points", "hypervolume", "CI"]
    rows = [
        [r["dataset"], r["model"], r["aux_name"], f"({100 * r['hv_ref_win_frac']:.1f}, {r['hv_ref_aux']:.3f})",
         _method_name(r["group"]), r["n_points"], f"{r['hypervolume']:.4f}",
         f"[{r['hv_ci_low']:.4f}, {r['hv_ci_high']:.4f}]"]
        for _, r in groups.iterrows()
    ]  # fmt: skip
    lines += _table(header, rows)
    diffs = hypervolume[hypervolume["minus"].fillna("") != ""]
    if not diffs.empty:
        lines += ["", "Differences (tested − comparator):", ""]
        header = ["dataset", "model", "aux", "difference", "points", "Δ hypervolume [CI]", "p"]
        rows = [
            [r["dataset"], r["model"], r["aux_name"], f"{r['group']} − {r['minus']}", r["n_points"],
             _ci(r["hypervolume"], r["hv_ci_low"], r["hv_ci_high"], 4), f"{r['p_value']:.3f}"]
            for _, r in diffs.iterrows()
        ]  # fmt: skip
        lines += _table(header, rows)
    return lines


def _per_run(runs: pd.DataFrame, column: str) -> str:
    """Mean over a method's runs of a budget column, rounded; "–" where not recorded."""
    if column not in runs or runs[column].isna().all():
        return "–"
    return f"{runs[column].mean():.0f}"


def budget_section(table: pd.DataFrame) -> list[str]:
    """What each method spent: per run means of examples, updates, tokens and wall time, and totals."""
    lines = [
        "",
        "## Budget",
        "",
        "Per method and cell: sweep points and runs, and per run the training examples processed (preference "
        "pairs, PPO episodes, or SFT examples), optimizer updates, tokens and wall time (from each run's "
        "train_summary.json and run.yaml; – where not recorded). PPO's reward model is not included.",
        "",
    ]
    header = ["dataset", "model", "method", "points", "runs", "unit", "examples/run", "updates/run",
              "tokens/run", "wall s/run", "total wall s"]  # fmt: skip
    rows = []
    for (dataset, model, method), runs in table.groupby(["dataset", "model", "method"], sort=True):
        points = len(runs.groupby(["beta", "aux_weight", "max_steps"], dropna=False))
        units = sorted({u for u in runs.get("example_unit", pd.Series(dtype=str)).fillna("") if u})
        total = runs["train_wall_s"].sum(min_count=1)
        per_run = [_per_run(runs, c) for c in ("train_examples", "optimizer_updates", "train_tokens", "train_wall_s")]
        rows.append([dataset, model, _method_name(method), points, len(runs), "/".join(units) or "–", *per_run,
                     "–" if math.isnan(total) else f"{total:.0f}"])  # fmt: skip
    return lines + _table(header, rows)


def summary_markdown(
    table: pd.DataFrame,
    claims: pd.DataFrame,
    hypervolume: pd.DataFrame,
    level: float,
    judges: pd.DataFrame | None = None,
    notes: list[str] = (),
) -> str:
    """The whole ``summary.md``; ``judges`` (``judges.csv``) goes right after the win rates; ``notes`` (e.g. the
    cost profile's line) close it, one paragraph each."""
    lines = ["# Summary", "", "Generated by `python -m upo aggregate` from `metrics.csv`, `claims.csv` and "
             "`hypervolume.csv`; do not edit.", ""]  # fmt: skip
    lines += results_section(table)
    if judges is not None:
        lines += judges_section(judges)
    lines += claims_section(claims, level)
    lines += hypervolume_section(hypervolume)
    lines += budget_section(table)
    for note in notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"
