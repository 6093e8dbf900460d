"""Where a workflow run's time goes: Snakemake's per-job benchmark records and its own log.

Every rule has a ``benchmark:`` directive writing ``benchmarks/<output path>.tsv`` (README path
scheme): one row per job with ``s`` (wall seconds) and ``max_rss`` (peak resident set, MB; ``NA``
for a job faster than Snakemake's first sample). :func:`cost_profile` groups the records of an
experiment's jobs by rule kind and model: jobs, total and mean wall s, peak memory and the share of
all job-seconds. :func:`run_wall_time` reads the run's wall time from Snakemake's log
(``.snakemake/log/*.snakemake.log``): the first job's start to the last job's end, the timestamps
Snakemake writes before each ``rule``/``localrule`` block and each ``Finished jobid`` line. Job-seconds
add up parallel jobs, so their sum exceeds the wall time whenever jobs overlap.

``python -m upo aggregate`` writes ``cost_profile.csv`` and a line of ``summary.md`` from these (its
own job and the plot job have no record yet while it runs, nor does a job rerun after it).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd

COLUMNS = ["kind", "model", "jobs", "total_wall_s", "mean_wall_s", "peak_rss_mb", "share_of_job_s"]
# (pattern of a record's path under benchmarks/, rule kind; None takes the file's stem: train, generate, ...)
KINDS: list[tuple[re.Pattern, str | None]] = [
    (re.compile(r"resources/models/(?P<model>[^/]+)\.tsv"), "prepare-model"),
    (re.compile(r"resources/data/(?P<dataset>[^/]+)\.tsv"), "prepare-data"),
    (re.compile(r"resources/default/(?P<stem>[^/]+)\.tsv"), None),
    (re.compile(r"results/ref_logps/(?P<dataset>[^/]+)/(?P<model>[^/]+)\.tsv"), "ref-logps"),
    (re.compile(r"results/sft/(?P<dataset>[^/]+)/(?P<model>[^/]+)/train\.tsv"), "sft"),
    (re.compile(r"results/reward_model/(?P<dataset>[^/]+)/(?P<model>[^/]+)/train\.tsv"), "reward-model"),
    (re.compile(r"results/reward_model/(?P<dataset>[^/]+)/(?P<model>[^/]+)/fold~\d+/train\.tsv"), "reward-model-fold"),
    (re.compile(r"results/preference_scores/(?P<dataset>[^/]+)/(?P<model>[^/]+)\.tsv"), "score-preferences"),
    (re.compile(r"results/[^/]+/judges/(?P<dataset>[^/]+)/[^/]+\.tsv"), "judge-card"),
    (re.compile(r"results/(?:sft|runs)/(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?:.+/)?(?P<stem>[^/]+)\.tsv"), None),
]
TIMESTAMP = re.compile(r"^\[(?P<when>\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
JOB_START = re.compile(r"^(?:local)?(?:rule|checkpoint) (?P<rule>[\w-]+):$")
REPORT_RULES = {"aggregate", "plot", "all"}  # rules a re-aggregation reruns
JOB_END = re.compile(r"^Finished jobid: (?P<jobid>\d+)")


def classify(relative: str) -> tuple[str, str]:
    """(rule kind, model) of a record path relative to the benchmarks folder; model "–" when none."""
    for pattern, kind in KINDS:
        match = pattern.fullmatch(relative)
        if match:
            return kind or match["stem"], match.groupdict().get("model") or "–"
    return Path(relative).stem, "–"  # e.g. results/<name>/aggregate.tsv


def read_record(path: Path) -> dict:
    """One job's record: wall s (mean over ``repeat`` rows) and peak RSS in MB (NaN when not sampled)."""
    table = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
    for column in ("s", "max_rss"):
        if column not in table:
            raise ValueError(f"{path}: not a Snakemake benchmark record (no {column!r} column)")
    if table.empty:
        raise ValueError(f"{path}: benchmark record has no rows")
    return {"wall_s": float(table["s"].mean()), "max_rss_mb": float(table["max_rss"].max())}


def experiment_records(benchmarks_dir: Path, run_dirs: list[Path], pairs: list[tuple[str, str]], name: str):
    """The record files of one experiment: each run folder's jobs, the shared jobs of its (dataset, model)
    pairs (model preparation, data, SFT, reference log-probs, reward models and cross-fitted scores), the
    testbed generator and the experiment's own aggregate, plot and judge cards. Run folders are paths
    relative to the workflow folder."""
    found: set[Path] = set()
    patterns = [f"{run_dir.as_posix()}/*.tsv" for run_dir in run_dirs]
    for dataset, model in pairs:
        patterns += [
            f"resources/models/{model}.tsv",
            f"resources/data/{dataset}.tsv",
            f"results/sft/{dataset}/{model}/*.tsv",
            f"results/ref_logps/{dataset}/{model}.tsv",
            f"results/reward_model/{dataset}/{model}/*.tsv",
            f"results/reward_model/{dataset}/{model}/fold~*/*.tsv",  # relabel-dpo's cross-fitted models
            f"results/preference_scores/{dataset}/{model}.tsv",
        ]
    patterns += ["resources/default/*.tsv", f"results/{name}/*.tsv", f"results/{name}/judges/*/*.tsv"] if pairs else []
    for pattern in patterns:
        found.update(p for p in benchmarks_dir.glob(pattern) if p.is_file())
    return sorted(found)


def cost_profile(benchmarks_dir: Path, records: list[Path]) -> pd.DataFrame:
    """Per (kind, model): jobs, total and mean wall s, peak RSS (MB, max over jobs), share of job-seconds."""
    rows = []
    for path in records:
        kind, model = classify(path.relative_to(benchmarks_dir).as_posix())
        rows.append({"kind": kind, "model": model, **read_record(path)})
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    jobs = pd.DataFrame(rows)
    grouped = jobs.groupby(["kind", "model"], sort=True)
    table = pd.DataFrame(
        {
            "jobs": grouped.size(),
            "total_wall_s": grouped["wall_s"].sum(),
            "mean_wall_s": grouped["wall_s"].mean(),
            "peak_rss_mb": grouped["max_rss_mb"].max(),
        }
    ).reset_index()
    table["share_of_job_s"] = table["total_wall_s"] / jobs["wall_s"].sum()
    return table.sort_values("total_wall_s", ascending=False, kind="stable").reset_index(drop=True)[COLUMNS]


def parse_log(path: Path) -> dict:
    """Job start and end times of one Snakemake log: first start, last end, counts."""
    starts, ends, rules, when = [], [], set(), None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        stamp = TIMESTAMP.match(line)
        job = JOB_START.match(line)
        if stamp:
            when = dt.datetime.strptime(" ".join(stamp["when"].split()), "%a %b %d %H:%M:%S %Y")
        elif when is not None and job:
            starts.append(when)
            rules.add(job["rule"])
        elif when is not None and JOB_END.match(line):
            ends.append(when)
    return {
        "log": path.name,
        "jobs_started": len(starts),
        "jobs_finished": len(ends),
        "first_start": min(starts).isoformat(sep=" ") if starts else None,
        "last_end": max(ends).isoformat(sep=" ") if ends else None,
        "wall_s": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
        "rules": sorted(rules),
    }


def run_wall_time(log_dir: Path) -> dict | None:
    """The newest Snakemake log that ran jobs other than the report's own; None if none.

    A no-op rerun writes a log without jobs, and a re-aggregation (``--forcerun aggregate``) one with only
    the reporting rules (aggregate, plot, all): neither is the run's wall time, so both are skipped.

    ``wall_s`` is second-resolved (Snakemake's timestamps); ``jobs_finished < jobs_started`` means the
    log was read while the run went on (from inside its own aggregate job) or the run was cut off.
    """
    for path in sorted(Path(log_dir).glob("*.snakemake.log"), reverse=True):  # names start with the date
        parsed = parse_log(path)
        if set(parsed["rules"]) - REPORT_RULES:
            return parsed
    return None


def summary_line(table: pd.DataFrame, wall: dict | None) -> str:
    """One sentence for ``summary.md``."""
    if table.empty:
        text = "no Snakemake benchmark records were found for these runs (run outside the workflow?)"
    else:
        top = table.iloc[0]
        text = (
            f"{int(table['jobs'].sum())} jobs, {table['total_wall_s'].sum():.0f} job-seconds; the largest share is "
            f"{top['kind']} ({top['model']}): {100 * top['share_of_job_s']:.0f}% in {int(top['jobs'])} job(s), "
            f"{top['mean_wall_s']:.0f} s each"
        )
    if wall and wall["wall_s"] is not None:
        text += (
            f"; wall time {wall['wall_s']:.0f} s from the first job's start to the last job's end "
            f"({wall['jobs_finished']} of {wall['jobs_started']} jobs finished at the time, "
            f"Snakemake log {wall['log']})"
        )
    return f"Cost profile (`cost_profile.csv`): {text}."
