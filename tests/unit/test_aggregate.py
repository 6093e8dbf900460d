"""upo.report.aggregate on small synthetic runs: tidy table, judge checks, schema, summary, frontier."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from upo.report.aggregate import SCHEMA_PATH, build_table, main, run_budget
from upo.report.table import AggregateError, seed_means

JUDGE = {"name": "vader_oracle", "config": {"threshold": 0.0}, "prompt_sha256": None,
         "model_sha256": None, "package": "alpaca_eval==0.6.6"}  # fmt: skip
RUNS = [("sft", None, None, 0)]
RUNS += [("dpo", b, None, s) for b in (0.1, 0.5) for s in (0, 1)]
RUNS += [("upo", 0.1, w, s) for w in (0.5, 2.0) for s in (0, 1)]
N_PROMPTS = 12
SHA = "0" * 64


def write_test_file(root: Path) -> Path:
    """The test split the runs were evaluated on: 12 prompts in 4 topic clusters of 3."""
    path = root / "test.jsonl"
    if not path.is_file():
        root.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"id": f"p{i}", "cluster": f"topic{i // 3}"}) + "\n"
                                for i in range(N_PROMPTS)))  # fmt: skip
    return path


def write_run(root: Path, method, beta, weight, seed, judge=JUDGE, scores=True) -> Path:
    """One run dir with metrics.json, scores.jsonl (means agree; deterministic values) and run.yaml."""
    run_dir = root / f"{method}/beta~{beta}/w~{weight}/seed~{seed}"
    run_dir.mkdir(parents=True)
    test = write_test_file(root)
    (run_dir / "run.yaml").write_text(yaml.safe_dump({"method": method, "data": {"test": str(test)},
                                                      "train": {"batch_size": 8}}))  # fmt: skip
    (run_dir / "train_summary.json").write_text(json.dumps({"steps": 10, "wall_s": 10.0, "tokens": 1000}))
    rng = np.random.default_rng(zlib.crc32(repr((method, beta, weight, seed)).encode()))
    shift = {"sft": 0.0, "dpo": 0.2, "upo": 0.15, "relabel-dpo-oracle": 0.3}[method]
    pref = np.clip(0.5 + shift + rng.normal(0, 0.2, N_PROMPTS), 0, 1)
    read = np.clip(0.4 + 0.1 * (weight or 0) + rng.normal(0, 0.1, N_PROMPTS), 0, 1)
    kl = np.abs(1.0 + (weight or 0) + 4 * (beta or 0) + rng.normal(0, 0.3, N_PROMPTS)) * (method != "sft")
    rows = [
        {"id": f"p{i}", "preference": float(pref[i]), "aux": {"readability": float(read[i])}, "kl": float(kl[i])}
        for i in range(N_PROMPTS)
    ]
    if scores:
        (run_dir / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    se = float(pref.std(ddof=1) / np.sqrt(N_PROMPTS))
    metrics = {
        "schema_version": 1,
        "run": {"dataset": "default", "model": "pico", "method": method, "beta": beta,
                "aux_weight": weight, "seed": seed, "run_dir": str(run_dir.relative_to(root))},
        "win_rate": {"value": 100 * float(pref.mean()), "se": 100 * se, "n": N_PROMPTS,
                     "reference": "dataset_chosen", "judge": judge, "length_controlled": None},
        "aux": {"readability": {"mean": float(read.mean()), "se": 0.01, "raw_mean": 60.0}},
        "length": {"mean_tokens": 40.0 + seed, "se": 1.0, "mean_words": 30.0},
        "kl": None if method == "sft" else {"value": float(kl.mean()), "se": 0.1, "n": N_PROMPTS},
        "lm_eval": {"tiny": {"acc": 0.5, "version": 1}},
        "cost": {"train_wall_s": 10.0, "tokens": 1000, "peak_mem_mb": None},
        "manifest": {"packages": {"upo": "0"}, "task_versions": {"tiny": 1}, "data_sha256": {"test": SHA},
                     "model_sha256": SHA, "run_config_sha256": SHA,
                     "generation": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 48, "seed": 0,
                                    "n": 1}},
    }  # fmt: skip
    path = run_dir / "metrics.json"
    path.write_text(json.dumps(metrics))
    return path


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return [write_run(tmp_path / "runs", *run) for run in RUNS]


def test_tidy_table_columns_and_rows(runs):
    table = build_table(runs, schema_path=None)
    assert len(table) == len(RUNS)
    for column in ["dataset", "model", "method", "beta", "aux_weight", "seed", "win_rate", "win_rate_se",
                   "kl", "kl_se", "aux_readability", "aux_readability_se", "length_tokens", "train_wall_s",
                   "train_tokens", "peak_mem_mb", "judge", "run_dir"]:  # fmt: skip
        assert column in table.columns, column
    sft = table[table["method"] == "sft"].iloc[0]
    assert np.isnan(sft["kl"]) and np.isnan(sft["beta"])
    assert table["win_rate"].between(0, 100).all()
    assert table["judge"].nunique() == 1 and len(table["judge"].iloc[0]) == 12


def test_refuses_mixed_judges_naming_both_runs(tmp_path, runs):
    other = write_run(tmp_path / "other", "dpo", 1.0, None, 0, judge={**JUDGE, "name": "gpt4"})
    with pytest.raises(AggregateError, match="different judge") as error:
        build_table([runs[0], other], schema_path=None)
    assert str(runs[0]) in str(error.value) and str(other) in str(error.value)


def test_refuses_duplicate_runs(runs):
    with pytest.raises(AggregateError, match="twice"):
        build_table([runs[0], runs[0]], schema_path=None)


def test_missing_key_names_file_and_key(tmp_path, runs):
    data = json.loads(runs[1].read_text())
    del data["length"]["mean_tokens"]
    runs[1].write_text(json.dumps(data))
    with pytest.raises(AggregateError, match=r"metrics.json: missing key 'mean_tokens'"):
        build_table(runs, schema_path=None)


@pytest.mark.skipif(not SCHEMA_PATH.is_file(), reason="metrics schema not written yet")
def test_synthetic_runs_satisfy_the_project_schema(runs):
    assert len(build_table(runs)) == len(RUNS)  # validates every file against SCHEMA_PATH


def test_schema_violation_names_the_file(tmp_path, runs):
    schema = {"type": "object", "required": ["run"],
              "properties": {"schema_version": {"const": 2}}}  # fmt: skip
    schema_path = tmp_path / "metrics.schema.yaml"
    schema_path.write_text(yaml.safe_dump(schema))
    with pytest.raises(AggregateError, match=rf"{runs[0]}: does not match .*schema_version"):
        build_table(runs, schema_path=schema_path)


def test_seed_means_use_seed_se_or_prompt_se(runs):
    table = build_table(runs, schema_path=None)
    means = seed_means(table, ["win_rate"])
    dpo = means[(means["method"] == "dpo") & (means["beta"] == 0.1)].iloc[0]
    values = table[(table["method"] == "dpo") & (table["beta"] == 0.1)]["win_rate"].to_numpy()
    assert dpo["n_seeds"] == 2 and dpo["se_over"] == "seeds"
    assert dpo["win_rate_se"] == pytest.approx(abs(values[0] - values[1]) / 2)
    sft = means[means["method"] == "sft"].iloc[0]
    assert sft["se_over"] == "prompts"
    assert sft["win_rate_se"] == table[table["method"] == "sft"]["win_rate_se"].iloc[0]


def test_cli_writes_table_claims_frontier_and_summary(tmp_path, runs):
    out = tmp_path / "out"
    argv = [*map(str, runs), "--out-dir", str(out), "--n-boot", "200", "--schema", str(tmp_path / "none")]
    assert main(argv) == 0
    table = pd.read_csv(out / "metrics.csv")
    assert len(table) == len(RUNS) and "source" not in table.columns
    assert (table["train_examples"] == 80).all() and (table["optimizer_updates"] == 10).all()  # 10 steps x 8
    frontier = pd.read_csv(out / "frontier.csv")
    assert set(frontier["front_group"]) == {"sft", "dpo", "upo", "all"}
    union = frontier[frontier["front_group"] == "all"]
    assert len(union) == 5 and (union["n_points"] == 5).all()  # 1 sft + 2 dpo + 2 upo sweep points
    assert (union["hv_ci_low"] <= union["hypervolume"] + 1e-12).all()
    assert (union["hypervolume"] <= union["hv_ci_high"] + 1e-12).all()
    # the union's hypervolume is at least every method's
    per_method = frontier[frontier["front_group"] != "all"].groupby("front_group")["hypervolume"].first()
    assert (per_method <= union["hypervolume"].iloc[0] + 1e-12).all()
    # measured from the SFT model's point, resampled over seeds and whole topic clusters
    sft = table[table["method"] == "sft"].iloc[0]
    assert np.allclose(frontier["hv_ref_win_frac"], sft["win_rate"] / 100)
    assert np.allclose(frontier["hv_ref_aux"], sft["aux_readability"])
    assert (frontier["ci_resampling"] == "seeds+clusters").all() and (frontier["n_clusters"] == 4).all()
    hypervolume = pd.read_csv(out / "hypervolume.csv", keep_default_na=False)
    diff = hypervolume[hypervolume["minus"] == "dpo"].iloc[0]
    groups = hypervolume[hypervolume["minus"] == ""].set_index("group")["hypervolume"]
    assert diff["group"] == "upo" and diff["hypervolume"] == pytest.approx(groups["upo"] - groups["dpo"])
    claims = pd.read_csv(out / "claims.csv")
    required = ["dataset", "model", "aux", "method", "beta", "aux_weight", "comparator", "kl", "delta_win",
                "delta_win_lo", "delta_win_hi", "delta_aux", "delta_aux_lo", "delta_aux_hi", "n_seeds", "n_prompts",
                "n_clusters", "verdict", "verdict_holm", "p_win_holm", "extrapolated"]  # fmt: skip
    assert not set(required) - set(claims.columns)
    assert len(claims) == 2 and set(claims["comparator"]) == {"dpo"}  # 2 UPO points x 1 comparator x 1 aux
    assert (claims["n_clusters"] == 4).all() and (claims["n_prompts"] == N_PROMPTS).all()
    assert (claims["delta_win_lo"] <= claims["delta_win_hi"]).all()
    assert set(claims["verdict"]) <= {"dominates", "dominated", "trade-off", "unresolved"}
    assert (claims["p_win_holm"] >= claims["p_win"]).all()
    summary = (out / "summary.md").read_text()
    assert "vader_oracle" in summary and "dataset_chosen" in summary and "| upo |" in summary
    assert f"parity = {sft['win_rate']:.1f}% (SFT)" in summary and "not 50" in summary
    assert "measured from the SFT model's point" in summary and "## Budget" in summary
    assert "2 comparisons = 4 tests" in summary
    # deterministic: a second run writes identical files
    first = (out / "claims.csv").read_text(), (out / "frontier.csv").read_text()
    assert main(argv) == 0 and ((out / "claims.csv").read_text(), (out / "frontier.csv").read_text()) == first


def test_cli_fixed_reference_point_and_seed_only_bootstrap(tmp_path, runs):
    out = tmp_path / "out"
    argv = [*map(str, runs), "--out-dir", str(out), "--n-boot", "50", "--no-prompt-bootstrap",
            "--reference-point", "0.5", "0.3", "--schema", str(tmp_path / "none")]  # fmt: skip
    assert main(argv) == 0
    frontier = pd.read_csv(out / "frontier.csv")
    assert (frontier["hv_ref_win_frac"] == 0.5).all() and (frontier["hv_ref_aux"] == 0.3).all()
    assert (frontier["ci_resampling"] == "seeds").all()
    assert (pd.read_csv(out / "claims.csv")["resampling"] == "seeds").all()


def test_cli_rejects_a_bad_reference_point(tmp_path, runs, capsys):
    assert main([*map(str, runs), "--out-dir", str(tmp_path / "o"), "--reference-point", "origin"]) == 1
    assert "--reference-point" in capsys.readouterr().err


def test_oracle_methods_are_shown_but_never_compared(tmp_path, runs):
    runs = runs + [write_run(tmp_path / "runs", "relabel-dpo-oracle", 0.1, 1.0, s) for s in (0, 1)]
    out = tmp_path / "out"
    assert main([*map(str, runs), "--out-dir", str(out), "--n-boot", "50", "--schema", str(tmp_path / "x")]) == 0
    claims = pd.read_csv(out / "claims.csv")
    assert "relabel-dpo-oracle" not in set(claims["comparator"])
    frontier = pd.read_csv(out / "frontier.csv")
    assert "relabel-dpo-oracle" in set(frontier["front_group"])  # its own group is shown
    assert "relabel-dpo-oracle" not in set(frontier[frontier["front_group"] == "all"]["method"])
    assert "relabel-dpo-oracle (oracle upper bound)" in (out / "summary.md").read_text()


def test_cli_fails_clearly_without_run_yaml(tmp_path, runs, capsys):
    (runs[3].parent / "run.yaml").unlink()
    assert main([*map(str, runs), "--out-dir", str(tmp_path / "out"), "--n-boot", "10"]) == 1
    assert f"{runs[3].parent / 'run.yaml'}: missing" in capsys.readouterr().err


def test_prompts_without_a_cluster_field_are_their_own_clusters(tmp_path, runs):
    test = tmp_path / "runs" / "test.jsonl"
    test.write_text("".join(json.dumps({"id": f"p{i}"}) + "\n" for i in range(N_PROMPTS)))
    out = tmp_path / "out"
    assert main([*map(str, runs), "--out-dir", str(out), "--n-boot", "20", "--schema", str(tmp_path / "x")]) == 0
    assert (pd.read_csv(out / "claims.csv")["n_clusters"] == N_PROMPTS).all()


def test_run_budget_of_a_ppo_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train_summary.json").write_text(json.dumps({"steps": 20, "wall_s": 5.0, "tokens": 10}))
    ppo = {"rollouts_per_step": 16, "mini_batch_size": 6, "ppo_epochs": 4}
    (run_dir / "run.yaml").write_text(yaml.safe_dump({"method": "ppo", "ppo": ppo}))
    budget = run_budget(run_dir / "metrics.json")
    # 20 steps x 16 rollouts; 20 x 4 epochs x ceil(16 / 6) = 3 mini-batches
    assert budget == {"example_unit": "episodes", "train_examples": 320.0, "optimizer_updates": 240.0}
    assert math.isnan(run_budget(tmp_path / "nowhere" / "metrics.json")["train_examples"])


def test_cli_fails_clearly_without_scores(tmp_path, runs, capsys):
    (runs[0].parent / "scores.jsonl").unlink()
    assert main([*map(str, runs), "--out-dir", str(tmp_path / "out"), "--n-boot", "10"]) == 1
    assert "scores.jsonl: missing" in capsys.readouterr().err


def test_cli_fails_when_scores_disagree_with_metrics(tmp_path, runs, capsys):
    scores = runs[2].parent / "scores.jsonl"
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    for row in rows:
        row["preference"] = 0.0
    scores.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([*map(str, runs), "--out-dir", str(tmp_path / "out"), "--n-boot", "10"]) == 1
    assert "scores.jsonl averages" in capsys.readouterr().err
