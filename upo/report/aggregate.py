"""Collect per-run ``metrics.json`` files into the tidy table, the summary and the frontier table.

``python -m upo aggregate METRICS_JSON... --out-dir DIR [--reference-point X Y]`` writes
- ``DIR/metrics.csv``: one row per (run, seed); ``win_rate`` in percent, aux metrics in [0, 1];
- ``DIR/summary.md``: mean ± SE over seeds per sweep point, with the judge and the reference named;
- ``DIR/frontier.csv``: per (dataset, model, method) and per aux metric, which seed-averaged sweep
  points are non-dominated and the hypervolume in (win_rate/100, aux) units against a stated
  reference point, with a paired bootstrap CI over seeds and prompts (``upo.report.frontier``), plus the
  same for the union of all methods (``front_group == "all"``).
Per-prompt scores come from ``scores.jsonl`` beside each ``metrics.json`` (evaluation writes both).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from upo.io import read_jsonl, read_yaml, sha256_text, write_text
from upo.report.frontier import bootstrap_hypervolume, hypervolume_2d, mean_se, pareto_front

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "metrics.schema.yaml"
POINT_COLUMNS = ["dataset", "model", "method", "beta", "aux_weight"]  # one sweep point
KEY_COLUMNS = [*POINT_COLUMNS, "seed"]  # one run
SFT_METHOD = "sft"
ALL_METHODS = "all"


class AggregateError(ValueError):
    """Inputs that cannot share one table; the message names the file(s) at fault."""


def judge_hash(judge: dict) -> str:
    """Short, stable hash of a judge identity object (key order does not matter)."""
    return sha256_text(json.dumps(judge, sort_keys=True, separators=(",", ":")))[:12]


def _get(obj: dict, path: str, where: str) -> Any:
    """``obj['a']['b']`` for ``path='a.b'``; a missing key raises naming the file and key path."""
    value: Any = obj
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise AggregateError(f"{where}: missing key {path!r}")
        value = value[key]
    return value


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def load_metrics(path: str | Path, schema_path: str | Path | None = SCHEMA_PATH) -> dict:
    """Read one metrics.json and validate it against the schema when the schema file exists."""
    try:
        metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise AggregateError(f"{path}: cannot read metrics JSON: {error}") from None
    if schema_path is not None and Path(schema_path).is_file():
        import jsonschema

        schema = read_yaml(schema_path)
        validator = jsonschema.validators.validator_for(schema)(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(metrics))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "<root>"
            raise AggregateError(f"{path}: does not match {schema_path} at {where}: {error.message}")
    return metrics


def metrics_row(metrics: dict, where: str) -> dict:
    """Flatten one metrics.json (the evaluation contract) into one tidy row."""
    run = _get(metrics, "run", where)
    win = _get(metrics, "win_rate", where)
    judge = _get(win, "judge", f"{where}: win_rate")
    row: dict[str, Any] = {
        "dataset": str(_get(run, "dataset", where)),
        "model": str(_get(run, "model", where)),
        "method": str(_get(run, "method", where)),
        "beta": _num(run.get("beta")),
        "aux_weight": _num(run.get("aux_weight")),
        "seed": int(_get(run, "seed", where)),
        "win_rate": float(_get(win, "value", where)),
        "win_rate_se": float(_get(win, "se", where)),
        "win_rate_n": int(_get(win, "n", where)),
        "win_rate_lc": _num(win.get("length_controlled")),
    }
    kl = _get(metrics, "kl", where)
    row["kl"] = _num(kl["value"]) if kl else float("nan")
    row["kl_se"] = _num(kl["se"]) if kl else float("nan")
    for name, value in sorted(_get(metrics, "aux", where).items()):
        if name == "weight":  # aux_weight is the sweep column
            raise AggregateError(f"{where}: an aux metric may not be named 'weight'")
        row[f"aux_{name}"] = float(_get(value, "mean", f"{where}: aux.{name}"))
        row[f"aux_{name}_se"] = float(_get(value, "se", f"{where}: aux.{name}"))
        row[f"aux_{name}_raw"] = _num(value.get("raw_mean"))
    length = _get(metrics, "length", where)
    row["length_tokens"] = float(_get(length, "mean_tokens", where))
    row["length_tokens_se"] = float(_get(length, "se", where))
    row["length_words"] = float(_get(length, "mean_words", where))
    cost = _get(metrics, "cost", where)
    row["train_wall_s"] = _num(cost.get("train_wall_s"))
    row["train_tokens"] = _num(cost.get("tokens"))
    row["peak_mem_mb"] = _num(cost.get("peak_mem_mb"))
    for task, values in sorted((metrics.get("lm_eval") or {}).items()):
        for metric, value in sorted(values.items()):
            if metric != "version" and isinstance(value, int | float):
                row[f"lm_eval:{task}:{metric}"] = float(value)
    row["judge"] = judge_hash(judge)
    row["judge_name"] = str(_get(judge, "name", f"{where}: win_rate.judge"))
    row["win_reference"] = str(_get(win, "reference", where))
    row["run_dir"] = str(_get(run, "run_dir", where))
    return row


def build_table(paths: list[str | Path], schema_path: str | Path | None = SCHEMA_PATH) -> pd.DataFrame:
    """Tidy table of many runs; refuses mixed judges or references and duplicate runs."""
    if not paths:
        raise AggregateError("no metrics.json files given")
    rows, sources = [], []
    for path in paths:
        rows.append(metrics_row(load_metrics(path, schema_path), str(path)))
        sources.append(str(path))
    first = rows[0]
    for row, source in zip(rows, sources, strict=True):
        for column, what in (("judge", "judge identities"), ("win_reference", "win-rate references")):
            if row[column] != first[column]:
                raise AggregateError(
                    f"cannot mix runs with different {what}: {sources[0]} has {first[column]!r} "
                    f"({first['judge_name']}), {source} has {row[column]!r} ({row['judge_name']})"
                )
    table = pd.DataFrame(rows)
    table["source"] = sources
    duplicated = table[table.duplicated(KEY_COLUMNS, keep=False)]
    if len(duplicated):
        raise AggregateError(f"the same run appears twice: {', '.join(duplicated['source'][:2])}")
    table = table.sort_values(KEY_COLUMNS, na_position="first", kind="stable").reset_index(drop=True)
    # aux/lm_eval columns that some runs lack stay NaN; keep a stable column order
    base = [c for c in rows[0] if not c.startswith(("aux_", "lm_eval:")) or c == "aux_weight"]
    aux = sorted(c for c in table.columns if c.startswith("aux_") and c != "aux_weight")
    lm = sorted(c for c in table.columns if c.startswith("lm_eval:"))
    at = base.index("kl_se") + 1
    return table[base[:at] + aux + base[at:] + lm + ["source"]]


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


def load_scores(metrics_path: str | Path) -> dict[str, dict]:
    """Per-prompt scores beside a metrics.json: ``{prompt id: {"preference", "aux", "kl"}}``."""
    path = Path(metrics_path).parent / "scores.jsonl"
    if not path.is_file():
        raise AggregateError(f"{path}: missing (needed for the prompt bootstrap; or --no-prompt-bootstrap)")
    scores = {}
    for line, row in enumerate(read_jsonl(path), start=1):
        if "id" not in row or "preference" not in row:
            raise AggregateError(f"{path}:{line}: needs 'id' and 'preference'")
        if row["id"] in scores:
            raise AggregateError(f"{path}:{line}: duplicate prompt id {row['id']!r}")
        scores[row["id"]] = row
    return scores


def _score_matrix(table: pd.DataFrame, scores: dict[str, dict], ids: list[str], column: str) -> np.ndarray:
    """(S, P) per-seed, per-prompt values of ``column`` ('win_rate' -> preference, 'aux_x' -> aux x)."""
    rows = []
    for source in table["source"]:
        run_scores = scores[source]
        if column == "win_rate":
            rows.append([float(run_scores[i]["preference"]) for i in ids])
        else:
            name = column[4:]
            try:
                rows.append([float(run_scores[i]["aux"][name]) for i in ids])
            except KeyError:
                raise AggregateError(f"{source}: scores.jsonl lacks aux {name!r} for some prompt") from None
    return np.array(rows)


def _check_scores(table: pd.DataFrame, scores: dict[str, dict], aux: list[str]) -> list[str]:
    """Same prompt ids in every run (paired), and per-prompt means equal to the metrics.json means."""
    first_source, ids = table["source"].iloc[0], sorted(scores[table["source"].iloc[0]])
    for _, run in table.iterrows():
        if sorted(scores[run["source"]]) != ids:
            raise AggregateError(f"runs are not paired: prompt ids of {first_source} and {run['source']} differ")
    for column in ["win_rate", *(f"aux_{a}" for a in aux)]:
        matrix = _score_matrix(table, scores, ids, column)
        expected = table[column].to_numpy(dtype=float) / (100.0 if column == "win_rate" else 1.0)
        bad = np.flatnonzero(np.abs(matrix.mean(axis=1) - expected) > 1e-3)
        if bad.size:
            source = table["source"].iloc[bad[0]]
            raise AggregateError(
                f"{source}: {column} is {expected[bad[0]]:.4f} but scores.jsonl averages "
                f"{matrix.mean(axis=1)[bad[0]]:.4f} (win rate in [0, 1] units)"
            )
    return ids


def frontier_table(
    table: pd.DataFrame,
    scores: dict[str, dict] | None,
    reference_point: tuple[float, float] = (0.0, 0.0),
    n_boot: int = 1000,
    bootstrap_seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Non-dominated sweep points and hypervolume (with bootstrap CI) per group and aux metric.

    Args:
        table: tidy table from ``build_table`` (needs its ``source`` column to find the scores).
        scores: ``{source: load_scores(source)}``, or None to resample seeds only (seed-level values).
        reference_point: (win_rate/100, aux) reference of the hypervolume.
        n_boot, bootstrap_seed, level: bootstrap settings (fixed seed: reproducible tables).

    Returns:
        One row per (dataset, model, front_group, aux_name, sweep point); group-level columns repeat.
    """
    aux = aux_names(table)
    means = seed_means(table, ["win_rate", *(f"aux_{a}" for a in aux)])
    out = []
    for (dataset, model), cell in table.groupby(["dataset", "model"], sort=True):
        ids = _check_scores(cell, scores, aux) if scores is not None else None
        cell_means = means[(means["dataset"] == dataset) & (means["model"] == model)]
        groups = [(m, cell_means[cell_means["method"] == m]) for m in sorted(cell_means["method"].unique())]
        groups.append((ALL_METHODS, cell_means))
        for group_name, points in groups:
            for name in aux:
                column = f"aux_{name}"
                pts = points[points[column].notna()]
                if pts.empty:
                    continue
                xy = np.column_stack([pts["win_rate"] / 100.0, pts[column]])
                xs, ys = [], []
                for _, point in pts.iterrows():
                    runs = cell[
                        (cell["method"] == point["method"])
                        & _same(cell["beta"], point["beta"])
                        & _same(cell["aux_weight"], point["aux_weight"])
                    ]
                    if ids is None:  # seed-level values as (S, 1) arrays
                        xs.append(runs[["win_rate"]].to_numpy(dtype=float) / 100.0)
                        ys.append(runs[[column]].to_numpy(dtype=float))
                    else:
                        xs.append(_score_matrix(runs, scores, ids, "win_rate"))
                        ys.append(_score_matrix(runs, scores, ids, column))
                ci = bootstrap_hypervolume(xs, ys, reference_point, n_boot, bootstrap_seed, level)
                on_front = pareto_front(xy)
                for (_, point), front in zip(pts.iterrows(), on_front, strict=True):
                    out.append(
                        {
                            "dataset": dataset,
                            "model": model,
                            "front_group": group_name,
                            "aux_name": name,
                            "method": point["method"],
                            "beta": point["beta"],
                            "aux_weight": point["aux_weight"],
                            "n_seeds": point["n_seeds"],
                            "win_rate": point["win_rate"],
                            "aux": point[column],
                            "on_front": bool(front),
                            "hypervolume": hypervolume_2d(xy, reference_point),
                            "hv_ci_low": ci.low,
                            "hv_ci_high": ci.high,
                            "hv_ci_level": level,
                            "hv_ref_win_frac": reference_point[0],
                            "hv_ref_aux": reference_point[1],
                            "n_boot": n_boot,
                            "bootstrap_seed": bootstrap_seed,
                            "ci_resampling": "seeds" if ids is None else "seeds+prompts",
                            "n_prompts": 1 if ids is None else len(ids),
                        }
                    )
    return pd.DataFrame(out)


def _same(series: pd.Series, value: float) -> pd.Series:
    """Equality that treats NaN == NaN (beta/aux_weight are NaN for methods without them)."""
    return series.isna() if isinstance(value, float) and math.isnan(value) else series == value


def _fmt_g(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:g}"


def _fmt(mean: float, se: float, digits: int, marker: str = "") -> str:
    if math.isnan(mean):
        return "–"
    if math.isnan(se):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}{marker}"


def summary_markdown(table: pd.DataFrame, frontier: pd.DataFrame) -> str:
    """Markdown summary: mean ± SE over seeds per sweep point, then hypervolumes with CIs."""
    aux = aux_names(table)
    columns = ["win_rate", "kl", *(f"aux_{a}" for a in aux), "length_tokens", "train_wall_s"]
    means = seed_means(table, columns)
    # the SFT reference first, then methods alphabetically (seed_means sorts by the point columns)
    means = means.sort_values(["dataset", "model"], kind="stable")
    means = pd.concat([means[means["method"] == SFT_METHOD], means[means["method"] != SFT_METHOD]])
    judge = f"`{table['judge_name'].iloc[0]}` (identity hash `{table['judge'].iloc[0]}`)"
    lines = [
        "# Summary",
        "",
        "Generated by `python -m upo aggregate` from the tidy table `metrics.csv`; do not edit.",
        "",
        f"Judge: {judge}; win rate (%) of each run's samples against the reference "
        f"`{table['win_reference'].iloc[0]}` (50 = tie). Aux metrics in [0, 1], higher is better.",
        "Mean ± SE over seeds; † one seed: SE over prompts instead.",
        "",
    ]
    header = ["dataset", "model", "method", "beta", "w", "seeds", "win rate %", "KL"]
    header += [f"{a}" for a in aux] + ["length (tokens)", "train wall s"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in means.iterrows():
        mark = "†" if row["se_over"] == "prompts" else ""
        cells = [row["dataset"], row["model"], row["method"], _fmt_g(row["beta"])]
        cells += [_fmt_g(row["aux_weight"]), str(row["n_seeds"])]
        cells += [_fmt(row["win_rate"], row["win_rate_se"], 1, mark), _fmt(row["kl"], row["kl_se"], 2, mark)]
        cells += [_fmt(row[f"aux_{a}"], row[f"aux_{a}_se"], 3, mark) for a in aux]
        cells += [_fmt(row["length_tokens"], row["length_tokens_se"], 1, mark)]
        cells += [_fmt(row["train_wall_s"], float("nan"), 0)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if not frontier.empty:
        first = frontier.iloc[0]
        lines += [
            "",
            f"## Hypervolume (win rate/100 × aux, reference point ({first['hv_ref_win_frac']:g}, "
            f"{first['hv_ref_aux']:g}); {first['hv_ci_level']:.0%} bootstrap CI over "
            f"{first['ci_resampling']}, B={first['n_boot']}, seed {first['bootstrap_seed']})",
            "",
            "| dataset | model | methods | aux | hypervolume | CI | front points |",
            "|---|---|---|---|---|---|---|",
        ]
        keys = ["dataset", "model", "front_group", "aux_name"]
        for key, group in frontier.groupby(keys, sort=True):
            head = group.iloc[0]
            front = group[group["on_front"]]
            labels = ", ".join(_point_label(r) for _, r in front.iterrows())
            ci = f"[{head['hv_ci_low']:.4f}, {head['hv_ci_high']:.4f}]"
            lines.append(f"| {' | '.join(map(str, key))} | {head['hypervolume']:.4f} | {ci} | {labels} |")
    return "\n".join(lines) + "\n"


def _point_label(row: pd.Series) -> str:
    parts = [f"β={row['beta']:g}" if not math.isnan(row["beta"]) else ""]
    parts.append(f"w={row['aux_weight']:g}" if not math.isnan(row["aux_weight"]) else "")
    detail = ",".join(p for p in parts if p)
    return f"{row['method']}({detail})" if detail else row["method"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m upo aggregate", description=__doc__.split("\n")[0])
    parser.add_argument("metrics", nargs="+", help="per-run metrics.json files")
    parser.add_argument("--out-dir", required=True, help="writes metrics.csv, summary.md, frontier.csv")
    parser.add_argument(
        "--reference-point",
        nargs=2,
        type=float,
        default=(0.0, 0.0),
        metavar=("X", "Y"),
        help="hypervolume reference point in (win_rate/100, aux) units (default: 0 0)",
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default 1000)")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="bootstrap generator seed")
    parser.add_argument("--schema", default=str(SCHEMA_PATH), help="metrics JSON schema (YAML), if present")
    parser.add_argument(
        "--no-prompt-bootstrap",
        action="store_true",
        help="resample seeds only (no scores.jsonl needed); frontier.csv says so in ci_resampling",
    )
    args = parser.parse_args(argv)
    try:
        table = build_table(args.metrics, args.schema)
        scores = None if args.no_prompt_bootstrap else {s: load_scores(s) for s in table["source"]}
        frontier = frontier_table(table, scores, tuple(args.reference_point), args.n_boot, args.bootstrap_seed)
    except AggregateError as error:
        print(f"aggregate: {error}", file=sys.stderr)
        return 1
    out = Path(args.out_dir)
    # `source` is this machine's path of the metrics file: kept out of the committed table
    write_text(out / "metrics.csv", table.drop(columns="source").to_csv(index=False))
    write_text(out / "frontier.csv", frontier.to_csv(index=False))
    write_text(out / "summary.md", summary_markdown(table, frontier))
    print(f"aggregate: {len(table)} runs -> {out}/metrics.csv, frontier.csv, summary.md")
    return 0
