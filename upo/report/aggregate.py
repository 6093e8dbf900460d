"""Collect per-run ``metrics.json`` files into the tidy table, the claims, the frontier and the summary.

``python -m upo aggregate METRICS_JSON... --out-dir DIR [--reference-point sft | X Y]`` writes
- ``DIR/metrics.csv``: one row per (run, seed); ``win_rate`` in percent, aux metrics in [0, 1], and the
  training budget (examples, optimizer updates, tokens, wall time) read beside each run;
- ``DIR/claims.csv``: each point of the tested methods (``--claims-methods``, UPO by default) against
  each comparator's curve at matched KL, with paired cluster-bootstrap CIs, verdicts and Holm's
  adjustment (``upo.report.comparisons``);
- ``DIR/frontier.csv``: per (dataset, model, method | ``all``) and aux metric, which seed-averaged sweep
  points are non-dominated, the number of points and the group's hypervolume with its CI;
- ``DIR/hypervolume.csv``: per group the hypervolume from the reference point (default: the SFT
  model's point) with its CI, and the paired CI of each tested-minus-comparator difference;
- ``DIR/judges.csv`` (with ``--judge-cards``): one row per judge card (``upo.report.judge_table``);
  every (dataset, judge) of the table needs its card;
- ``DIR/summary.md``: the tables in words (``upo.report.summary``), the judges beside the win rates;
- ``DIR/cost_profile.csv``: per rule kind and model the jobs, wall s, peak memory and share of the
  job-seconds from Snakemake's benchmark records, and the run's wall time from its log
  (``upo.report.cost_profile``).
Per-prompt scores come from ``scores.jsonl`` beside each ``metrics.json`` (evaluation writes both); prompt
clusters (the testbed's topics) from the ``cluster`` field of the test file named in the ``run.yaml``
beside it (a record without one is its own cluster).
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

from upo.config import package_file
from upo.io import read_jsonl, read_yaml, sha256_text, write_text
from upo.report.reference import compare_with_reference
from upo.report.table import KEY_COLUMNS, SFT_METHOD, AggregateError, aux_names

SCHEMA_PATH = package_file("schemas", "metrics.schema.yaml")


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
        "max_steps": _num(run.get("max_steps")),  # NaN: the stage's own budget
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
    row["rm_heldout_accuracy"] = _num((metrics.get("reward_model") or {}).get("heldout_accuracy"))
    for task, values in sorted((metrics.get("lm_eval") or {}).items()):
        for metric, value in sorted(values.items()):
            if metric != "version" and isinstance(value, int | float):
                row[f"lm_eval:{task}:{metric}"] = float(value)
    row["judge"] = judge_hash(judge)
    row["judge_name"] = str(_get(judge, "name", f"{where}: win_rate.judge"))
    row["win_reference"] = str(_get(win, "reference", where))
    row["run_dir"] = str(_get(run, "run_dir", where))
    row["preference_source"] = run.get("preference_source") or ""  # relabel-dpo: reward_model | binary | oracle
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


def load_clusters(metrics_path: str | Path, cache: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """``{prompt id: cluster}`` of a run's test prompts: the ``cluster`` field of each record of the test
    file named by ``data.test`` in the run.yaml beside ``metrics_path``; a record without one is its
    own cluster (datasets without topics). ``cache`` shares the read between runs of one test file."""
    run_yaml = Path(metrics_path).parent / "run.yaml"
    if not run_yaml.is_file():
        raise AggregateError(
            f"{run_yaml}: missing (its data.test names the prompts' clusters; or --no-prompt-bootstrap)"
        )
    test = str((read_yaml(run_yaml).get("data") or {}).get("test") or "")
    if not test:
        raise AggregateError(f"{run_yaml}: data.test is empty (needed for the prompts' clusters)")
    if cache is not None and test in cache:
        return cache[test]
    if not Path(test).is_file():
        raise AggregateError(f"{run_yaml}: data.test {test} not found (run from the repository root)")
    clusters: dict[str, str] = {}
    for line, record in enumerate(read_jsonl(test), start=1):
        cluster = record.get("cluster", record.get("id"))
        if not isinstance(cluster, str) or not cluster:
            raise AggregateError(f"{test}:{line}: 'cluster' (or 'id') must be a non-empty string")
        clusters[str(record.get("id"))] = cluster
    if cache is not None:
        cache[test] = clusters
    return clusters


def check_scores(table: pd.DataFrame, scores: dict[str, dict], clusters: dict[str, dict] | None) -> None:
    """Every run's per-prompt means equal its metrics.json means (win rate, aux, KL), and every scored
    prompt has a cluster; a mismatch names the file."""
    aux = aux_names(table)
    for _, run in table.iterrows():
        source, rows = run["source"], list(scores[run["source"]].values())
        checks = [("win_rate", [r["preference"] for r in rows], run["win_rate"] / 100.0)]
        for name in aux:
            values = [r.get("aux", {}).get(name) for r in rows]
            if any(v is None for v in values):
                raise AggregateError(f"{source}: scores.jsonl lacks aux {name!r} for some prompt")
            checks.append((f"aux_{name}", values, run[f"aux_{name}"]))
        if not math.isnan(run["kl"]) and all(r.get("kl") is not None for r in rows):
            checks.append(("kl", [r["kl"] for r in rows], run["kl"]))
        for column, values, expected in checks:
            mean = float(np.mean(np.asarray(values, dtype=float)))
            if abs(mean - expected) > 1e-3 * max(1.0, abs(expected)):
                raise AggregateError(
                    f"{source}: {column} is {expected:.4f} but scores.jsonl averages {mean:.4f} (win rate in [0, 1])"
                )
        if clusters is not None:
            lost = sorted(set(scores[source]) - set(clusters[source]))
            if lost:
                raise AggregateError(f"{source}: prompt {lost[0]!r} is not in the test file named by its run.yaml")


def _count(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def run_budget(metrics_path: str | Path) -> dict[str, Any]:
    """Training budget of one run from its ``train_summary.json`` and ``run.yaml`` (what exists).

    ``train_examples``: preference pairs (offline: steps x train.batch_size) or episodes (PPO: steps x
    ppo.rollouts_per_step) processed, unless the summary records ``pairs``/``episodes`` itself;
    ``optimizer_updates``: the summary's ``optimizer_updates``, else steps (offline) or steps x ppo_epochs
    x ceil(rollouts_per_step / mini_batch_size) (PPO). NaN (and an empty ``example_unit``) where the
    run has no train_summary.json (e.g. an SFT model not trained here).
    """
    run_dir = Path(metrics_path).parent
    summary_path, run_yaml = run_dir / "train_summary.json", run_dir / "run.yaml"
    if not summary_path.is_file():
        return {"example_unit": "", "train_examples": float("nan"), "optimizer_updates": float("nan")}
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    config = read_yaml(run_yaml) if run_yaml.is_file() else {}
    steps = _count(summary.get("steps"))
    ppo = config.get("ppo")
    if isinstance(ppo, dict):
        rollouts, mini_batch = _count(ppo.get("rollouts_per_step")), _count(ppo.get("mini_batch_size"))
        per_step = _count(ppo.get("ppo_epochs")) * (
            math.ceil(rollouts / mini_batch) if math.isfinite(rollouts / mini_batch) else float("nan")
        )
        return {
            "example_unit": "episodes",
            "train_examples": _count(summary.get("episodes", steps * rollouts)),
            "optimizer_updates": _count(summary.get("optimizer_updates", steps * per_step)),
        }
    batch = _count((config.get("train") or {}).get("batch_size"))
    return {
        "example_unit": "examples" if config.get("method") == SFT_METHOD else "pairs",
        "train_examples": _count(summary.get("pairs", steps * batch)),
        "optimizer_updates": _count(summary.get("optimizer_updates", steps)),
    }


def add_budget(table: pd.DataFrame) -> pd.DataFrame:
    """The tidy table with the budget columns of ``run_budget`` (read beside each row's source)."""
    budget = pd.DataFrame([run_budget(source) for source in table["source"]], index=table.index)
    at = list(table.columns).index("train_wall_s")
    columns = list(table.columns[:at]) + list(budget.columns) + list(table.columns[at:])
    return pd.concat([table, budget], axis=1)[columns]


def _reference_point(values: list[str]) -> str | tuple[float, float]:
    if values == ["sft"]:
        return "sft"
    try:
        x, y = (float(v) for v in values)
    except ValueError:
        raise AggregateError(f"--reference-point: give 'sft' or two numbers X Y, got {values}") from None
    return (x, y)


def experiment_cost(table: pd.DataFrame, out: Path, benchmarks_dir: Path, log_dir: Path) -> tuple[pd.DataFrame, str]:
    """Cost profile of the runs in ``table`` (their folders relative to the working folder, as the
    workflow passes them) and the run's wall time: the table and its ``summary.md`` line."""
    from upo.report.cost_profile import cost_profile, experiment_records, run_wall_time, summary_line

    cwd = Path.cwd().resolve()
    run_dirs = []
    for source in table["source"]:
        folder = Path(source).parent
        if folder.is_absolute():
            if not folder.resolve().is_relative_to(cwd):
                continue  # not under the workflow folder: no record of it
            folder = folder.resolve().relative_to(cwd)
        run_dirs.append(folder)
    pairs = sorted(set(zip(table["dataset"], table["model"], strict=True)))
    records = experiment_records(benchmarks_dir, run_dirs, pairs, out.name) if run_dirs else []
    cost = cost_profile(benchmarks_dir, records)
    return cost, summary_line(cost, run_wall_time(log_dir) if records else None)


def main(argv: list[str]) -> int:
    from upo.report.comparisons import build_cells, claims_table, hypervolume_table
    from upo.report.summary import summary_markdown

    parser = argparse.ArgumentParser(prog="python -m upo aggregate", description=__doc__.split("\n")[0])
    parser.add_argument("metrics", nargs="+", help="per-run metrics.json files")
    parser.add_argument("--out-dir", required=True, help="writes metrics.csv, claims.csv, frontier.csv, ...")
    parser.add_argument(
        "--reference-point",
        nargs="+",
        default=["sft"],
        metavar="sft|X Y",
        help="hypervolume reference: 'sft' (the SFT model's point, resampled with it; default) or a fixed "
        "point X Y in (win_rate/100, aux) units",
    )
    parser.add_argument("--claims-methods", nargs="+", default=["upo"], help="methods tested against the rest")
    parser.add_argument("--level", type=float, default=0.95, help="CI level (default 0.95)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default 1000)")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="bootstrap generator seed")
    parser.add_argument("--schema", default=str(SCHEMA_PATH), help="metrics JSON schema (YAML), if present")
    parser.add_argument("--benchmarks-dir", default="benchmarks", help="Snakemake's benchmark records")
    parser.add_argument("--snakemake-log-dir", default=".snakemake/log", help="Snakemake's run logs")
    parser.add_argument(
        "--no-prompt-bootstrap",
        action="store_true",
        help="resample seeds only (no scores.jsonl or clusters needed); the outputs say so in ci_resampling",
    )
    parser.add_argument(
        "--judge-cards", nargs="*", default=[], help="judge card JSON files (python -m upo judge-card) -> judges.csv"
    )
    parser.add_argument(
        "--reference-dir",
        default=None,
        help="committed reference results of this experiment: writes reference_comparison.csv and a summary section",
    )
    args = parser.parse_args(argv)
    from upo.report.judge_table import JudgeCardError, judges_table

    try:
        reference = _reference_point(args.reference_point)
        table = add_budget(build_table(args.metrics, args.schema))
        scores = clusters = None
        if not args.no_prompt_bootstrap:
            scores = {s: load_scores(s) for s in table["source"]}
            cache: dict[str, dict[str, str]] = {}
            clusters = {s: load_clusters(s, cache) for s in table["source"]}
            check_scores(table, scores, clusters)
        cells = build_cells(table, scores, clusters, aux_names(table), args.n_boot, args.bootstrap_seed)
        claims = claims_table(cells, args.claims_methods, args.level)
        frontier, hypervolume = hypervolume_table(cells, args.claims_methods, reference, args.level)
        judges = judges_table(args.judge_cards, table) if args.judge_cards else None
        compared = (
            compare_with_reference(table.drop(columns="source"), args.reference_dir) if args.reference_dir else None
        )
    except (AggregateError, JudgeCardError, ValueError) as error:  # ReferenceComparisonError is a ValueError
        print(f"aggregate: {error}", file=sys.stderr)
        return 1
    out = Path(args.out_dir)
    # `source` is this machine's path of the metrics file: kept out of the committed table
    write_text(out / "metrics.csv", table.drop(columns="source").to_csv(index=False))
    write_text(out / "claims.csv", claims.to_csv(index=False))
    write_text(out / "frontier.csv", frontier.to_csv(index=False))
    write_text(out / "hypervolume.csv", hypervolume.to_csv(index=False))
    if judges is not None:
        write_text(out / "judges.csv", judges.to_csv(index=False))
    cost, cost_line = experiment_cost(table, out, Path(args.benchmarks_dir), Path(args.snakemake_log_dir))
    write_text(out / "cost_profile.csv", cost.to_csv(index=False, float_format="%.4g"))
    summary = summary_markdown(table, claims, hypervolume, args.level, judges, [cost_line])
    if compared is not None:
        write_text(out / "reference_comparison.csv", compared[0].to_csv(index=False))
        summary += compared[1]
    write_text(out / "summary.md", summary)
    print(f"aggregate: {len(table)} runs, {len(claims)} claims -> {out}/")
    return 0
