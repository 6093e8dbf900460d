"""Cost profile of a workflow run from hand-made Snakemake benchmark records and logs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from upo.report.cost_profile import classify, cost_profile, experiment_records, parse_log, read_record, run_wall_time

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
RUN = "results/runs/default/pico/upo/beta~0.1/w~1.0/seed~0"


def record(root: Path, relative: str, seconds: float, rss: float | str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t{rss}\t1.0\t1.0\t1.0\t0.00\t0.00\t50.0\t1.0\n")
    return path


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("resources/models/smollm2-135m.tsv", ("prepare-model", "smollm2-135m")),
        ("resources/data/default.tsv", ("prepare-data", "–")),
        ("resources/default/generate_default_data.tsv", ("generate_default_data", "–")),
        ("results/ref_logps/default/smollm2-135m.tsv", ("ref-logps", "smollm2-135m")),
        ("results/sft/default/pico/train.tsv", ("sft", "pico")),
        ("results/sft/default/pico/evaluate.tsv", ("evaluate", "pico")),
        ("results/reward_model/default/pico/train.tsv", ("reward-model", "pico")),
        ("results/reward_model/default/pico/fold~1/train.tsv", ("reward-model-fold", "pico")),
        ("results/preference_scores/default/pico.tsv", ("score-preferences", "pico")),
        ("results/default/judges/default/oracle.tsv", ("judge-card", "–")),
        (f"{RUN}/train.tsv", ("train", "pico")),
        (f"{RUN}/generate.tsv", ("generate", "pico")),
        ("results/default/aggregate.tsv", ("aggregate", "–")),
    ],
)
def test_classify_follows_the_path_scheme(relative, expected):
    assert classify(relative) == expected


def test_profile_sums_jobs_per_kind_and_model(tmp_path):
    records = [
        record(tmp_path, f"{RUN}/train.tsv", 10.0, 100.0),
        record(tmp_path, RUN.replace("seed~0", "seed~1") + "/train.tsv", 30.0, 300.5),
        record(tmp_path, f"{RUN}/evaluate.tsv", 15.0, "NA"),  # too fast to sample: no memory
        record(tmp_path, "results/ref_logps/default/smollm2-135m.tsv", 45.0, 900.0),
    ]
    table = cost_profile(tmp_path, records)
    assert list(table["kind"]) == ["ref-logps", "train", "evaluate"]  # by total wall s
    train = table.set_index("kind").loc["train"]
    assert (train["model"], train["jobs"], train["total_wall_s"], train["mean_wall_s"]) == ("pico", 2, 40.0, 20.0)
    assert train["peak_rss_mb"] == 300.5 and train["share_of_job_s"] == pytest.approx(40 / 100)
    assert pd.isna(table.set_index("kind").loc["evaluate", "peak_rss_mb"])
    assert table["share_of_job_s"].sum() == pytest.approx(1.0)


def test_repeated_rows_are_one_job(tmp_path):
    path = record(tmp_path, "results/default/plot.tsv", 2.0, 50.0)
    with open(path, "a") as handle:
        handle.write("4.0\t0:00:04\t70.0\t1\t1\t1\t0\t0\t0\t1\n")
    assert read_record(path) == {"wall_s": 3.0, "max_rss_mb": 70.0}


def test_a_file_that_is_not_a_record_is_named(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="x.tsv.*'s'"):
        read_record(path)


def test_only_the_experiments_records_are_read(tmp_path):
    mine = [
        record(tmp_path, f"{RUN}/train.tsv", 1, 1),
        record(tmp_path, "results/sft/default/pico/train.tsv", 1, 1),
        record(tmp_path, "resources/models/pico.tsv", 1, 1),
        record(tmp_path, "results/default/plot.tsv", 1, 1),
        record(tmp_path, "results/reward_model/default/pico/fold~0/train.tsv", 1, 1),
        record(tmp_path, "results/preference_scores/default/pico.tsv", 1, 1),
        record(tmp_path, "results/default/judges/default/oracle.tsv", 1, 1),
    ]
    record(tmp_path, "results/runs/default/pico/dpo/beta~0.1/w~0.0/seed~9/train.tsv", 1, 1)  # another config's run
    record(tmp_path, "results/sft/default/smollm2-135m/train.tsv", 1, 1)  # a model the table lacks
    record(tmp_path, "results/quick/plot.tsv", 1, 1)  # another experiment
    record(tmp_path, "results/quick/judges/default/oracle.tsv", 1, 1)  # another experiment's judge card
    found = experiment_records(tmp_path, [Path(RUN)], [("default", "pico")], "default")
    assert found == sorted(mine)


LOG = """Building DAG of jobs...
Select jobs to execute...
Execute 1 jobs...
[Fri Nov 27 14:58:44 2026]
localrule prepare_data:
    output: resources/data/default/train.jsonl
    jobid: 2
[Fri Nov 27 14:58:45 2026]
Finished jobid: 2 (Rule: prepare_data)
1 of 3 steps (33%) done
Execute 2 jobs...
[Fri Nov 27 14:58:45 2026]
rule train:
    jobid: 3
[Fri Nov 27 14:58:45 2026]
rule evaluate:
    jobid: 1
[Fri Nov 27 15:01:02 2026]
Finished jobid: 1 (Rule: evaluate)
[Fri Nov  7 15:00:50 2026]
Finished jobid: 3 (Rule: train)
3 of 3 steps (100%) done
Complete log(s): .snakemake/log/x.snakemake.log
"""


def test_wall_time_is_first_start_to_last_end(tmp_path):
    (tmp_path / "2026-11-27T145841.598237.snakemake.log").write_text(LOG.replace("Nov  7", "Nov 27"))
    (tmp_path / "2026-11-27T160000.000000.snakemake.log").write_text("Building DAG of jobs...\nNothing to be done.\n")
    reaggregate = "[Fri Nov 27 16:10:00 2026]\nlocalrule aggregate:\n[Fri Nov 27 16:10:05 2026]\nlocalrule plot:\n"
    (tmp_path / "2026-11-27T161000.000000.snakemake.log").write_text(reaggregate)
    wall = run_wall_time(tmp_path)  # the newer logs ran nothing, or only the report: the oldest is the run
    assert wall["log"] == "2026-11-27T145841.598237.snakemake.log"
    assert wall["wall_s"] == 2 * 60 + 18 and (wall["jobs_started"], wall["jobs_finished"]) == (3, 3)
    assert wall["first_start"] == "2026-11-27 14:58:44" and wall["last_end"] == "2026-11-27 15:01:02"


def test_single_digit_days_parse(tmp_path):
    path = tmp_path / "a.snakemake.log"
    path.write_text(LOG.replace("Nov 27", "Nov  7").replace("Nov  7 15:01:02", "Nov  7 14:58:50"))
    parsed = parse_log(path)
    assert parsed["first_start"] == "2026-11-07 14:58:44" and parsed["wall_s"] == 126.0


def test_no_logs_give_no_wall_time(tmp_path):
    assert run_wall_time(tmp_path) is None


def test_aggregate_writes_the_profile_and_a_summary_line(tmp_path, monkeypatch):
    from tests.unit.test_aggregate import RUNS, write_run
    from upo.report.aggregate import main

    root = tmp_path / "results" / "runs" / "default" / "pico"  # the workflow's path scheme
    metrics = [write_run(root, *run) for run in RUNS[:4]]
    monkeypatch.chdir(tmp_path)
    for path in metrics:
        record(tmp_path / "benchmarks", f"{path.parent.relative_to(tmp_path).as_posix()}/train.tsv", 20.0, 10.0)
    record(tmp_path / "benchmarks", "resources/models/pico.tsv", 20.0, 10.0)
    (tmp_path / ".snakemake" / "log").mkdir(parents=True)
    (tmp_path / ".snakemake" / "log" / "2026-11-27T145841.598237.snakemake.log").write_text(LOG)
    out = tmp_path / "results" / "default"
    argv = [*map(str, metrics), "--out-dir", str(out), "--n-boot", "20", "--schema", str(tmp_path / "none")]
    assert main(argv) == 0
    cost = pd.read_csv(out / "cost_profile.csv")
    assert cost.set_index("kind").loc["train", "jobs"] == 4
    assert cost.set_index("kind").loc["train", "share_of_job_s"] == pytest.approx(0.8)
    summary = (out / "summary.md").read_text()
    assert "Cost profile (`cost_profile.csv`): 5 jobs, 100 job-seconds" in summary
    assert "largest share is train (pico): 80%" in summary


def test_aggregate_outside_the_workflow_says_there_are_no_records(tmp_path, monkeypatch):
    from tests.unit.test_aggregate import RUNS, write_run
    from upo.report.aggregate import main

    metrics = [write_run(tmp_path / "runs", *run) for run in RUNS[:4]]
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main([*map(str, metrics), "--out-dir", str(out), "--n-boot", "20", "--schema", str(tmp_path / "x")]) == 0
    assert pd.read_csv(out / "cost_profile.csv").empty
    assert "no Snakemake benchmark records were found" in (out / "summary.md").read_text()
