"""upo.report.plotting on a small synthetic tidy table: every figure exists, bad tables fail clearly."""

from __future__ import annotations

import pandas as pd
import pytest

from upo.report.plotting import main, method_curves, read_table, sweep_variable

FIGURES = ["frontier_readability", "frontier_safety", "reward_vs_kl", "cost"]


def synthetic_table() -> pd.DataFrame:
    rows = []
    points = [("sft", None, None)] + [("dpo", b, None) for b in (0.1, 0.5)]
    points += [("upo", b, w) for b in (0.1, 0.3) for w in (0.5, 2.0)]
    for model in ("pico", "nano"):
        for method, beta, weight in points:
            for seed in (0, 1) if method != "sft" else (0,):
                rows.append(
                    {
                        "dataset": "default", "model": model, "method": method, "beta": beta,
                        "aux_weight": weight, "max_steps": None, "seed": seed,
                        "win_rate": 50 + 10 * (method != "sft") - 2 * (weight or 0) + 10 * (beta or 0) + seed,
                        "win_rate_se": 2.0, "kl": None if method == "sft" else 1 + (weight or 0),
                        "kl_se": 0.1, "aux_readability": 0.4 + 0.1 * (weight or 0) + 0.01 * seed,
                        "aux_readability_se": 0.01, "aux_safety": 0.9, "aux_safety_se": 0.01,
                        "length_tokens": 40.0, "train_wall_s": 10.0 * (1 + (weight or 0)),
                        "train_tokens": 1000, "peak_mem_mb": None, "judge": "abc123def456",
                        "judge_name": "vader_oracle", "win_reference": "dataset_chosen",
                        "run_dir": f"runs/{model}/{method}/{beta}/{weight}/{seed}",
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_every_figure_is_written_as_png_and_pdf(tmp_path):
    csv = tmp_path / "metrics.csv"
    synthetic_table().to_csv(csv, index=False)
    assert main([str(csv), "--out-dir", str(tmp_path / "plots")]) == 0
    for stem in FIGURES:
        for fmt in ("png", "pdf"):
            path = tmp_path / "plots" / f"{stem}.{fmt}"
            assert path.is_file() and path.stat().st_size > 1000, path


def test_missing_column_fails_naming_it(tmp_path, capsys):
    csv = tmp_path / "metrics.csv"
    synthetic_table().drop(columns=["kl_se"]).to_csv(csv, index=False)
    assert main([str(csv), "--out-dir", str(tmp_path / "plots")]) == 1
    err = capsys.readouterr().err
    assert str(csv) in err and "kl_se" in err
    assert not (tmp_path / "plots").exists()


def test_table_without_aux_metrics_fails(tmp_path):
    csv = tmp_path / "metrics.csv"
    table = synthetic_table()
    table.drop(columns=[c for c in table.columns if c.startswith("aux_") and c != "aux_weight"]).to_csv(csv)
    with pytest.raises(ValueError, match="no aux metric"):
        read_table(csv)


def test_sweep_variable_and_curves():
    table = synthetic_table()
    table = table[(table["model"] == "pico") & (table["seed"] == 0)]
    assert sweep_variable(table[table["method"] == "dpo"]) == "beta"
    assert sweep_variable(table[table["method"] == "upo"]) == "aux_weight"
    curves = method_curves(table)
    labels = [label for _, label, _, _ in curves]
    assert labels == ["dpo", "upo (β=0.1)", "upo (β=0.3)"]  # SFT is drawn as a star, not a curve
    for _, _, var, points in curves:
        assert points[var].is_monotonic_increasing


def test_frontier_draws_parity_and_keeps_oracle_bounds_off_the_front(tmp_path, monkeypatch):
    import matplotlib.axes

    from upo.report import plotting

    table = synthetic_table()
    oracle = table[table["method"] == "upo"].assign(method="relabel-dpo-oracle", win_rate=99.0, aux_readability=0.99)
    table = pd.concat([table, oracle], ignore_index=True)
    fronts, labels = [], []
    monkeypatch.setattr(plotting, "pareto_front", lambda xy: fronts.append(xy.copy()) or [True] * len(xy))
    original = matplotlib.axes.Axes.axvline
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline", lambda ax, x, **k: labels.append((k.get("label"), x))
                        or original(ax, x, **k))  # fmt: skip
    plotting.plot_frontiers(table, tmp_path)
    assert fronts and all((xy[:, 0] < 99.0).all() for xy in fronts)  # oracle points never on the front
    sft = table[(table["method"] == "sft") & (table["model"] == "pico")]["win_rate"].iloc[0]
    assert ("parity: SFT win rate", sft) in labels


def write_ppo_log(run_dir, beta: float, seed: int, columns: dict | None = None):
    """A PPO run folder: train_log.csv (per-step rows as train_ppo writes them) and run.yaml's tags."""
    from upo.io import write_yaml

    run_dir.mkdir(parents=True)
    steps = range(1, 6)
    log = pd.DataFrame(
        columns
        or {
            "step": list(steps), "score": [0.1 * s for s in steps], "rm": [0.05 * s for s in steps],
            "aux": [0.05 * s for s in steps], "kl": [beta * s for s in steps],
            "response_length": [40 - s for s in steps], "eos_share": [0.5 + 0.1 * s for s in steps],
        }
    )  # fmt: skip
    log.to_csv(run_dir / "train_log.csv", index=False)
    tags = {"dataset": "default", "model": "pico", "method": "ppo", "beta": beta, "aux_weight": 1.0, "seed": seed}
    write_yaml(run_dir / "run.yaml", {"method": "ppo", "tags": tags})
    return run_dir / "train_log.csv"


def test_ppo_curves_written_as_png_and_pdf(tmp_path):
    from upo.report.ppo_curves import PANELS, read_ppo_logs

    csv = tmp_path / "metrics.csv"
    synthetic_table().to_csv(csv, index=False)
    logs = [write_ppo_log(tmp_path / f"ppo{b}-{s}", b, s) for b in (0.05, 0.2) for s in (0, 1)]
    assert main([str(csv), "--out-dir", str(tmp_path / "plots"), "--ppo-logs", *map(str, logs)]) == 0
    for fmt in ("png", "pdf"):
        path = tmp_path / "plots" / f"ppo_curves.{fmt}"
        assert path.is_file() and path.stat().st_size > 1000, path
    table = read_ppo_logs(logs)
    assert len(table) == 20 and set(table["beta"]) == {0.05, 0.2}
    assert {c for c, _ in PANELS} <= set(table.columns)  # reward parts, KL, length and EOS share


def test_ppo_log_without_kl_fails_naming_file(tmp_path, capsys):
    csv = tmp_path / "metrics.csv"
    synthetic_table().to_csv(csv, index=False)
    log = write_ppo_log(tmp_path / "ppo", 0.1, 0, {"step": [1], "score": [0.1], "response_length": [3.0]})
    assert main([str(csv), "--out-dir", str(tmp_path / "plots"), "--ppo-logs", str(log)]) == 1
    err = capsys.readouterr().err
    assert str(log) in err and "kl" in err
    assert not (tmp_path / "plots").exists()
