"""The Snakemake workflow: lint, dry-runs of the three configs, bad input, and the quick run end to end."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# Paper DAG: 3 datasets x 4 sizes; 450 offline (252 DPO/UPO/relabel + 198 baselines) + 18 PPO
# preference runs, 12 SFT references, one judge card per dataset (3), 60 cross-fitting jobs (fold reward
# models, their run.yaml files, score files) for relabel-dpo and A-LoL, etc.
PAPER_JOB_COUNT = 2017


def snakemake(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=1800)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_lint_is_clean():
    result = snakemake("--lint")
    assert "Congratulations" in result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "configfile", ["config/config.yaml", "config/quick.yaml", "config/paper.yaml", "config/baselines.yaml"]
)
def test_dry_run_builds_the_dag(configfile, tmp_path):
    from upo.sweeps import run_table

    result = snakemake(
        "-n",
        "--configfile",
        configfile,
        "--directory",
        str(prepare_tree(tmp_path)),
        "--snakefile",
        str(ROOT / "Snakefile"),
    )
    counts = job_counts(result.stdout)
    config = yaml.safe_load((ROOT / configfile).read_text())
    runs = run_table(config)
    ppo_runs = sum(r["method"] == "ppo" for r in runs)
    assert counts.get("train_offline", 0) == len(runs) - ppo_runs
    assert counts.get("train_ppo", 0) == ppo_runs
    if configfile.endswith("paper.yaml"):
        assert counts["total"] == PAPER_JOB_COUNT


def write_config(tmp_path: Path, edit) -> Path:
    config = yaml.safe_load((ROOT / "config/quick.yaml").read_text())
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda c: c["eval"].update(judgee="oracle"), "judgee"),
        (lambda c: c["sweeps"][0].update(beta=[-0.1]), "beta"),
        (
            lambda c: c["models"].update({"tinyy": c["models"]["pico"]}) or c["sweeps"][0].update(models=["tinyy"]),
            "tinyy",
        ),
        (lambda c: c["models"]["pico"]["preference"]["optim"].update(lr="1e-5"), "lr"),
        (lambda c: c["datasets"]["default"].update(source="missing/file.jsonl"), "missing/file.jsonl"),
    ],
    ids=["misspelled-key", "negative-beta", "unknown-model", "string-number", "missing-dataset-file"],
)
def test_bad_config_fails_before_any_job(tmp_path, edit, message):
    path = write_config(tmp_path, edit)
    result = snakemake("-n", "--configfile", str(path), check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def prepare_tree(tmp_path: Path) -> Path:
    """A working directory holding what a clean checkout has (committed inputs only)."""
    work = tmp_path / "work"
    work.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config", "evaluations"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, work / name)
    for name in ("resources/default", "resources/tokenizer"):
        shutil.copytree(ROOT / name, work / name)
    return work


@pytest.mark.slow
def test_quick_workflow_end_to_end_and_idempotent(tmp_path):
    work = prepare_tree(tmp_path)
    snakemake("--cores", "2", "--configfile", "config/quick.yaml", cwd=work)
    out = work / "results" / "quick"
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    config = yaml.safe_load((ROOT / "config/quick.yaml").read_text())
    from upo.sweeps import run_table

    assert len(rows) == len(run_table(config)) + 1  # + the SFT reference
    for column in (
        "method",
        "model",
        "beta",
        "aux_weight",
        "seed",
        "win_rate",
        "win_rate_se",
        "kl",
        "aux_readability",
        "aux_readability_se",
    ):
        assert column in rows[0]
    for row in rows:
        assert 0 <= float(row["win_rate"]) <= 100
        assert 0 <= float(row["aux_readability"]) <= 1
    for name in ("frontier_readability", "reward_vs_kl", "cost", "ppo_curves"):  # quick.yaml has a PPO run
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000
    from upo.evaluate.evaluation import validate_metrics

    for path in (work / "results").glob("**/metrics.json"):
        metrics = json.loads(path.read_text())
        validate_metrics(metrics)
        if metrics["run"]["method"] == "ppo":  # the reward model's held-out accuracy beside every PPO result
            assert 0 <= metrics["reward_model"]["heldout_accuracy"] <= 1, path
    assert (out / "frontier.csv").exists() and (out / "summary.md").exists()
    run_yaml = next((work / "results/runs").glob("**/run.yaml"))
    assert yaml.safe_load(run_yaml.read_text())["output_dir"].startswith("results/runs/")
    rerun = snakemake("-n", "--configfile", "config/quick.yaml", cwd=work)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


SLURM_SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


def slurm_env() -> dict[str, str]:
    """The submitting shell's environment with this interpreter's bin/ first on PATH.

    sbatch exports the submitter's environment (--export=ALL), so each job's `python -m upo` resolves
    to this virtualenv even when pytest was started without activating it.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.mark.slow
def test_killed_workflow_resumes_without_redoing_finished_runs(tmp_path):
    """Kill -9 mid-training, unlock, rerun with --rerun-incomplete: finished runs are not retrained."""
    import signal
    import time

    work = prepare_tree(tmp_path)
    process = subprocess.Popen(
        [*SNAKEMAKE, "--cores", "2", "--configfile", "config/quick.yaml"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 900
    finished: list[Path] = []
    while time.time() < deadline and process.poll() is None:
        # a run's training job is complete once its generation job (which needs it) has written
        finished = [p.parent / "train_summary.json" for p in (work / "results/runs").glob("**/generations.jsonl")]
        if finished:
            break
        time.sleep(0.5)
    assert finished and process.poll() is None, "the workflow ended before a run could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)  # the workflow and every job it started
    process.wait()
    before = {path: path.stat().st_mtime_ns for path in finished}
    snakemake("--unlock", "--configfile", "config/quick.yaml", cwd=work)  # a hard kill leaves the lock
    rerun = snakemake("--cores", "2", "--configfile", "config/quick.yaml", "--rerun-incomplete", cwd=work)
    assert {path: path.stat().st_mtime_ns for path in finished} == before
    for path in finished:  # no training job of a finished run was scheduled again
        assert f"output: {path.parent.relative_to(work)}/model," not in rerun.stdout + rerun.stderr
    assert (work / "results/quick/metrics.csv").exists()


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs a SLURM cluster (sbatch on PATH)")
def test_quick_workflow_through_slurm(tmp_path):
    work = prepare_tree(tmp_path)
    # A loopback cluster without slurmdbd: no accounts, squeue for status; status checks after 5 s
    # instead of 40 (toy jobs); no retries so each job is submitted exactly once; keep every job's
    # SLURM log as evidence that slurmd ran it.
    args = [
        "--profile",
        str(ROOT / "profiles/slurm"),
        "--configfile",
        "config/quick.yaml",
        "--slurm-status-command",
        "squeue",
        "--slurm-no-account",
        "--slurm-keep-successful-logs",
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--jobs",
        "4",
        "--retries",
        "0",
        "--latency-wait",
        "5",
        "--local-cores",
        "1",
    ]
    result = subprocess.run(
        [*SNAKEMAKE, *args], cwd=work, capture_output=True, text=True, timeout=1800, env=slurm_env()
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"snakemake through SLURM failed:\n{log[-6000:]}"
    assert (work / "results/quick/metrics.csv").exists()

    # Every job outside localrules went through sbatch: one submission line per job, distinct ids.
    submitted = dict(SLURM_SUBMITTED.findall(log))
    local_rules = {"write_sft_config", "write_rm_config", "write_rm_fold_config", "write_run_config", "all"}
    counts = {k: v for k, v in job_counts(log).items() if k not in local_rules and k != "total"}
    assert sum(counts.values()) > 0
    assert len(submitted) == sum(counts.values()), log[-3000:]
    assert len(set(submitted.values())) == len(submitted)
    # ... and slurmd ran each one: its --output file (.snakemake/slurm_logs/rule_*/**/<jobid>.log).
    slurm_logs = {p.stem: p for p in (work / ".snakemake/slurm_logs").glob("rule_*/**/*.log")}
    assert set(submitted.values()) <= set(slurm_logs), sorted(set(submitted.values()) - set(slurm_logs))
    per_rule = {}
    for slurm_id in submitted.values():
        rule = next(part for part in slurm_logs[slurm_id].relative_to(work).parts if part.startswith("rule_"))
        per_rule[rule.removeprefix("rule_")] = per_rule.get(rule.removeprefix("rule_"), 0) + 1
    assert per_rule == counts
