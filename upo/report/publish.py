"""Publish a finished experiment as committed reference results: ``python -m upo publish-reference NAME``.

Copies ``results/<NAME>/``'s tables, ``summary.md`` and figures into ``results/reference/<NAME>/`` (the
folder the workflow never writes, see ``upo.report.reference``) and packs ``runs.tar.gz`` beside them:
for every run of the tidy table (``metrics.csv``'s ``run_dir``) its ``run.yaml``, ``metrics.json``,
per-prompt ``scores.jsonl``, ``train_log.csv`` and ``train_summary.json``, plus the experiment's
cross-fitted preference scores, reward-model summaries and judge cards. Untarred at the repository root,
these let ``python -m upo aggregate`` re-analyse every claim without retraining. Model weights and
samples are never packed (they are large and rebuilt by the workflow).

The new run's ``reference_comparison.csv`` (against the previous reference) is kept under the name
``reference_comparison_with_previous.csv``. Everything is written to a temporary folder first and moved
into place at the end, so an error leaves the previous reference untouched.
"""

from __future__ import annotations

import argparse
import shutil
import tarfile
import tempfile
from pathlib import Path

import pandas as pd

RUN_FILES = ("run.yaml", "metrics.json", "scores.jsonl", "train_log.csv", "train_summary.json")
PUBLISHED_SUFFIXES = (".csv", ".md", ".png", ".pdf")
RENAMED = {"reference_comparison.csv": "reference_comparison_with_previous.csv"}


def run_files(root: Path, metrics: pd.DataFrame) -> list[Path]:
    """The small per-run files of every run in the tidy table (paths relative to ``root``), sorted."""
    found: list[Path] = []
    for run_dir in sorted(set(metrics["run_dir"].dropna().astype(str))):
        folder = root / run_dir
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: run folder of metrics.csv missing (was the run cleaned up?)")
        found += [folder / name for name in RUN_FILES if (folder / name).is_file()]
    return [path.relative_to(root) for path in found]


def side_files(root: Path, name: str, metrics: pd.DataFrame) -> list[Path]:
    """Cross-fitted scores, reward-model summaries and judge cards of the table's datasets and models."""
    patterns = []
    for dataset, model in sorted(set(zip(metrics["dataset"], metrics["model"], strict=True))):
        patterns += [f"results/preference_scores/{dataset}/{model}.json*"]
        patterns += [f"results/reward_model/{dataset}/{model}/**/train_summary.json"]
    patterns += [f"results/{name}/judges/**/*.json"]
    return sorted({path.relative_to(root) for pattern in patterns for path in root.glob(pattern) if path.is_file()})


def publish(name: str, root: Path = Path(".")) -> Path:
    """Write ``results/reference/<name>/`` from ``results/<name>/`` and the run folders; returns it."""
    source = root / "results" / name
    table = source / "metrics.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{table}: no tidy table; run the experiment (and its aggregate step) first")
    metrics = pd.read_csv(table)
    target = root / "results" / "reference" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the published folder is an ordinary one
    try:
        for path in sorted(source.iterdir()):
            if path.is_file() and path.suffix in PUBLISHED_SUFFIXES:
                shutil.copy2(path, staging / RENAMED.get(path.name, path.name))
        members = run_files(root, metrics) + side_files(root, name, metrics)
        with tarfile.open(staging / "runs.tar.gz", "w:gz") as archive:
            for member in members:
                archive.add(root / member, arcname=str(member))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    print(f"published {target}: {len(list(target.iterdir()))} files, runs.tar.gz with {len(members)} members")
    return target


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m upo publish-reference", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="experiment name (results/<name>/ must hold its aggregated tables)")
    parser.add_argument("--root", default=".", help="repository root (default: the current folder)")
    args = parser.parse_args(argv)
    publish(args.name, Path(args.root))
    return 0
