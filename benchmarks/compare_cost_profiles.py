"""Per-job cost before and after a change, from two ``cost_profile.csv`` files (``python -m upo aggregate``).

    python benchmarks/compare_cost_profiles.py BEFORE.csv AFTER.csv [--out TABLE.md]

Experiments change their sweep between two runs, so totals are not comparable; the mean wall time of one
job of each (rule kind, model) is: the table lists it side by side with the job counts and the ratio.
A committed earlier profile is read with ``git show REV:results/reference/default/cost_profile.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

KEYS = ["kind", "model"]


def compare(before: pd.DataFrame, after: pd.DataFrame, names: tuple[str, str] = ("before", "after")) -> pd.DataFrame:
    """One row per (kind, model) in either profile: jobs and mean wall s before and after, after / before.

    ``names`` name the two profiles in errors (``main`` passes their file paths).
    """
    for name, table in zip(names, (before, after), strict=True):
        missing = [c for c in [*KEYS, "jobs", "mean_wall_s"] if c not in table.columns]
        if missing:
            raise ValueError(f"{name}: profile lacks column(s) {missing}")
    merged = pd.merge(
        before[[*KEYS, "jobs", "mean_wall_s"]],
        after[[*KEYS, "jobs", "mean_wall_s"]],
        on=KEYS,
        how="outer",
        suffixes=("_before", "_after"),
    )
    merged["ratio"] = merged["mean_wall_s_after"] / merged["mean_wall_s_before"]
    return merged.sort_values(KEYS).reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    def cell(value, fmt: str) -> str:
        return "–" if pd.isna(value) else format(value, fmt)

    lines = [
        "| kind | model | jobs before | mean s before | jobs after | mean s after | after / before |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['kind']} | {r['model']} | {cell(r['jobs_before'], '.0f')} | {cell(r['mean_wall_s_before'], '.1f')} "
            f"| {cell(r['jobs_after'], '.0f')} | {cell(r['mean_wall_s_after'], '.1f')} | {cell(r['ratio'], '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path, help="write the markdown table here (default: stdout)")
    args = parser.parse_args(argv)
    profiles = []
    for path in (args.before, args.after):
        try:
            profiles.append(pd.read_csv(path))
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            parser.error(f"{path}: cannot read the cost profile: {error}")
    try:
        table = markdown(compare(*profiles, names=(str(args.before), str(args.after))))
    except ValueError as error:
        parser.error(str(error))
    if args.out:
        args.out.write_text(table, encoding="utf-8")
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
