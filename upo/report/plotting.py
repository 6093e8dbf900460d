"""Figures from the tidy table (``metrics.csv`` of ``upo.report.aggregate``); drawing only, no new numbers.

``python -m upo plot METRICS_CSV --out-dir DIR`` writes, each as PNG and PDF:
- ``frontier_<aux>``: per (dataset, model) subplot, x = preference win rate (%) against the reference
  under the judge, y = the aux metric; one curve per method traced along its sweep (points labelled
  with the sweep value), the Pareto front of all points as a dashed staircase (oracle upper bounds,
  ``*-oracle`` methods, drawn faint and left out of it), SFT as a star with dotted lines through it:
  the vertical one is **parity** (the SFT model's own win rate, not 50) and both bound the quadrant
  the hypervolume of ``summary.md`` is measured in;
- ``reward_vs_kl``: win rate and every aux metric against KL(policy || reference), per method, with
  the SFT model's value as a dotted parity line;
- ``cost``: win rate and every aux metric against training wall time, per method;
- ``judges`` (with ``--judges judges.csv``): each judge card's agreement, position and length bias with CIs;
- ``ppo_curves`` (with ``--ppo-logs``): the PPO runs' per-step reward, KL and length (``upo.report.ppo_curves``).
Points are seed means; error bars are the SE over seeds, or the SE over prompts for single-seed
points (same rule as ``summary.md``). Seed means come from ``upo.report.table.seed_means`` and the
front from ``upo.frontier.pareto_front``, so plots and tables cannot disagree.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from upo.report.comparisons import is_oracle
from upo.report.figures import PlotError, _save, _subplots, plt
from upo.report.frontier import pareto_front
from upo.report.table import SFT_METHOD, aux_names, seed_means, with_point_columns

REQUIRED_COLUMNS = [
    "dataset", "model", "method", "beta", "aux_weight", "seed", "win_rate", "win_rate_se",
    "kl", "kl_se", "train_wall_s", "judge", "judge_name", "win_reference",
]  # fmt: skip
MARKERS = ["o", "s", "^", "D", "v"]
LINESTYLES = ["-", ":", "-.", (0, (5, 1, 1, 1))]  # "--" is reserved for the Pareto front
SWEEP_SYMBOL = {"aux_weight": "w", "beta": "β"}
ERROR_NOTE = "error bars: SE over seeds (over prompts for single-seed points)"


def read_table(path: str | Path) -> pd.DataFrame:
    """Read the tidy table and check the columns every figure needs."""
    try:
        table = with_point_columns(pd.read_csv(path))
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise PlotError(f"{path}: cannot read the tidy table: {error}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise PlotError(f"{path}: missing column(s) {', '.join(missing)}")
    if not aux_names(table):
        raise PlotError(f"{path}: no aux metric columns (aux_<name> with aux_<name>_se)")
    if table.empty:
        raise PlotError(f"{path}: no rows")
    return table


def sweep_variable(points: pd.DataFrame) -> str | None:
    """The column a method sweeps: ``aux_weight`` if it varies, else ``beta`` if it varies."""
    for column in ("aux_weight", "beta"):
        if points[column].dropna().nunique() > 1:
            return column
    return None


def method_curves(points: pd.DataFrame) -> list[tuple[str, str, str | None, pd.DataFrame]]:
    """Split seed-mean points into curves: (method, label, sweep column, points sorted by the sweep).

    A method sweeping one variable gives one curve; when the other variable also takes several
    values (e.g. UPO over beta and w), each of its values gives its own curve, and so does each step
    budget of a method whose sweep sets ``max_steps`` for some points (labelled ``steps=N``).
    """
    curves = []
    for method in sorted(points["method"].unique()):
        if method == SFT_METHOD:
            continue
        sub = points[points["method"] == method]
        steps = sub["max_steps"]
        budgets = [(None, sub)] if steps.nunique(dropna=False) <= 1 else [
            (value, sub[steps.isna()] if np.isnan(value) else sub[steps == value])
            for value in sorted(steps.unique(), key=lambda v: (not np.isnan(v), v))
        ]  # fmt: skip
        for budget, part_budget in budgets:
            suffix = "" if budget is None else f", steps={budget:g}" if not np.isnan(budget) else ""
            curves += _sweep_curves(method, part_budget, suffix)
    return curves


def _sweep_curves(method: str, sub: pd.DataFrame, suffix: str) -> list[tuple[str, str, str | None, pd.DataFrame]]:
    var = sweep_variable(sub)
    other = "beta" if var == "aux_weight" else "aux_weight"
    if var is not None and sub[other].dropna().nunique() > 1:
        return [
            (method, f"{method} ({SWEEP_SYMBOL[other]}={value:g}{suffix})", var, part.sort_values(var))
            for value, part in sub.groupby(other, sort=True)
        ]
    label = f"{method} ({suffix.removeprefix(', ')})" if suffix else method
    return [(method, label, var, sub.sort_values(var) if var else sub)]


def _colours(table: pd.DataFrame) -> dict[str, tuple]:
    """One colour per method, the same in every figure."""
    cmap = plt.get_cmap("tab10")
    methods = sorted(m for m in table["method"].unique() if m != SFT_METHOD)
    return {m: cmap(i % 10) for i, m in enumerate(methods)} | {SFT_METHOD: (0.0, 0.0, 0.0, 1.0)}


def _err(values: pd.Series) -> np.ndarray:
    # NaN SE (e.g. one seed and no per-run SE) draws no bar rather than a made-up one
    return np.nan_to_num(values.to_numpy(dtype=float), nan=0.0)


def _label(row: pd.Series, var: str | None) -> str:
    return "" if var is None or math.isnan(row[var]) else f"{SWEEP_SYMBOL[var]}={row[var]:g}"


def _draw_methods(ax, points: pd.DataFrame, x: str, y: str, colours: dict, annotate: bool = True) -> None:
    """Curves per method along its sweep, plus the SFT star, with SE error bars on both axes."""
    seen: dict[str, int] = {}
    for method, label, var, curve in method_curves(points):
        curve = curve[curve[x].notna() & curve[y].notna()]
        if curve.empty:
            continue
        # several curves of one method (e.g. UPO per beta) share its colour: tell them apart by style
        style = seen[method] = seen.get(method, -1) + 1
        oracle = is_oracle(method)  # an upper bound that reads the judge: faint, named as such
        ax.errorbar(
            curve[x], curve[y], xerr=_err(curve[f"{x}_se"]), yerr=_err(curve[f"{y}_se"]),
            marker=MARKERS[style % len(MARKERS)], ls=":" if oracle else LINESTYLES[style % len(LINESTYLES)],
            ms=5, lw=1.5, capsize=2, color=colours[method], alpha=0.45 if oracle else 1.0,
            label=f"{label} (oracle upper bound)" if oracle else label,
        )  # fmt: skip
        if annotate:
            for _, row in curve.iterrows():
                ax.annotate(_label(row, var), (row[x], row[y]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7, color=colours[method])  # fmt: skip
    sft = points[(points["method"] == SFT_METHOD) & points[x].notna() & points[y].notna()]
    if not sft.empty:
        ax.errorbar(
            sft[x], sft[y], xerr=_err(sft[f"{x}_se"]), yerr=_err(sft[f"{y}_se"]), marker="*", ms=14,
            ls="none", color="black", capsize=2, label="SFT reference", zorder=5,
        )  # fmt: skip


def _draw_parity(ax, points: pd.DataFrame, vertical: str | None, horizontal: str | None) -> None:
    """Dotted lines at the SFT point's ``vertical`` (x) and ``horizontal`` (y) values; on the win-rate
    axis that line is parity (the SFT model's own win rate)."""
    sft = points[points["method"] == SFT_METHOD]
    for column, draw in ((vertical, ax.axvline), (horizontal, ax.axhline)):
        if column is None or sft.empty or sft[column].isna().all():
            continue
        label = "parity: SFT win rate" if column == "win_rate" else None
        draw(float(sft[column].iloc[0]), ls=":", lw=1.0, color="0.3", label=label, zorder=0)


def _draw_front(ax, points: pd.DataFrame, x: str, y: str) -> None:
    """Dashed staircase through the non-dominated points of all methods but the oracle upper bounds."""
    points = points[points[x].notna() & points[y].notna() & ~points["method"].map(is_oracle)]
    if points.empty:
        return
    front = points[pareto_front(points[[x, y]].to_numpy(dtype=float))].sort_values(x)
    # x ascending means y descending on a front; 'pre' steps trace the dominated region's edge
    ax.step(front[x], front[y], where="pre", ls="--", lw=1.5, color="0.4", label="Pareto front (all)", zorder=1)


def _cells(table: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted({(d, m) for d, m in zip(table["dataset"], table["model"], strict=True)})


def _means(table: pd.DataFrame) -> pd.DataFrame:
    columns = ["win_rate", "kl", "train_wall_s", *(f"aux_{a}" for a in aux_names(table))]
    return seed_means(table, columns)


def _judge(table: pd.DataFrame) -> str:
    first = table.iloc[0]
    return f"judge: {first['judge_name']} [{first['judge']}], reference: {first['win_reference']}"


def plot_frontiers(table: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """``frontier_<aux>.{png,pdf}`` for every aux metric; one subplot per (dataset, model)."""
    means, colours, cells, paths = _means(table), _colours(table), _cells(table), []
    for name in aux_names(table):
        y = f"aux_{name}"
        fig, axes = _subplots(1, len(cells))
        for ax, (dataset, model) in zip(axes[0], cells, strict=True):
            points = means[(means["dataset"] == dataset) & (means["model"] == model)]
            _draw_front(ax, points, "win_rate", y)
            _draw_parity(ax, points, "win_rate", y)
            _draw_methods(ax, points, "win_rate", y, colours)
            ax.set(title=f"{dataset} / {model}", xlabel="preference win rate vs reference (%)",
                   ylabel=f"{name} (normalised, higher is better)")  # fmt: skip
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
        fig.suptitle(
            f"Frontier: win rate vs {name} ({_judge(table)})\n{ERROR_NOTE}; dotted: the SFT point (parity), "
            "from which summary.md measures the hypervolume",
            fontsize=9,
        )
        paths += _save(fig, Path(out_dir), f"frontier_{name}")
    return paths


def _metric_grid(table: pd.DataFrame, x: str, xlabel: str, stem: str, title: str, out_dir) -> list[Path]:
    """Rows = (dataset, model); columns = win rate then each aux metric, all against ``x``."""
    means, colours, cells = _means(table), _colours(table), _cells(table)
    ys = [("win_rate", "preference win rate vs reference (%)")]
    ys += [(f"aux_{a}", f"{a} (normalised, higher is better)") for a in aux_names(table)]
    fig, axes = _subplots(len(cells), len(ys))
    for row_axes, (dataset, model) in zip(axes, cells, strict=True):
        points = means[(means["dataset"] == dataset) & (means["model"] == model)]
        for ax, (y, ylabel) in zip(row_axes, ys, strict=True):
            if points[x].notna().any():
                if y == "win_rate":  # parity: the SFT model's own win rate
                    _draw_parity(ax, points, None, y)
                _draw_methods(ax, points, x, y, colours)
                ax.legend(fontsize=7, loc="best")
            else:  # say so on the figure rather than leave an unexplained blank
                ax.text(0.5, 0.5, f"no {x} recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set(title=f"{dataset} / {model}", xlabel=xlabel, ylabel=ylabel)
            ax.grid(alpha=0.3)
    fig.suptitle(f"{title} ({_judge(table)})\n{ERROR_NOTE}", fontsize=9)
    return _save(fig, Path(out_dir), stem)


def plot_reward_vs_kl(table: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """``reward_vs_kl.{png,pdf}``: win rate and aux metrics against KL to the reference."""
    return _metric_grid(table, "kl", "KL(policy || reference), nats", "reward_vs_kl", "Reward vs KL", out_dir)


def plot_cost(table: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """``cost.{png,pdf}``: win rate and aux metrics reached against training wall time."""
    return _metric_grid(table, "train_wall_s", "training wall time (s)", "cost", "Cost", out_dir)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m upo plot", description=__doc__.split("\n")[0])
    parser.add_argument("metrics_csv", help="tidy table written by `python -m upo aggregate`")
    parser.add_argument("--out-dir", required=True, help="folder for the PNG and PDF figures")
    parser.add_argument("--judges", default=None, help="judges.csv of `upo aggregate` -> judges.png/.pdf")
    parser.add_argument("--ppo-logs", nargs="*", default=[], help="PPO runs' train_log.csv files (ppo_curves)")
    args = parser.parse_args(argv)
    from upo.report.ppo_curves import plot_ppo_curves, read_ppo_logs  # imports this module: not at the top

    try:
        table = read_table(args.metrics_csv)
        ppo_logs = read_ppo_logs(args.ppo_logs) if args.ppo_logs else None
    except PlotError as error:
        print(f"plot: {error}", file=sys.stderr)
        return 1
    paths = plot_ppo_curves(ppo_logs, args.out_dir) if ppo_logs is not None else []
    paths += plot_frontiers(table, args.out_dir)
    paths += plot_reward_vs_kl(table, args.out_dir)
    paths += plot_cost(table, args.out_dir)
    if args.judges:
        from upo.report.judge_table import plot_judges

        paths += plot_judges(args.judges, args.out_dir)
    print(f"plot: wrote {len(paths)} files to {args.out_dir}")
    return 0
