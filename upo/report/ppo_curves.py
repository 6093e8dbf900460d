"""Training curves of the PPO runs: ``ppo_curves.{png,pdf}`` from their ``train_log.csv`` files.

``python -m upo plot METRICS_CSV --out-dir DIR --ppo-logs LOG...`` draws, per (dataset, model) row,
the per-step reward (total, reward-model part in training-response standard deviations, auxiliary
part), the KL to the reference, the mean response length and the share of responses that ended with
EOS before ``max_new_tokens`` (a fall in length with EOS share near 1 is the collapse to short
answers that a reward can drive). One line per run, labelled with its method, KL coefficient beta,
aux weight w and seed (from the run.yaml beside each log). Drawing only, no new numbers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from upo.io import read_yaml
from upo.report.figures import PlotError, _save, _subplots, plt

# (train_log.csv column, y-axis label); the first four are required, the rest drawn when logged
PANELS = [
    ("score", "reward: RM part + aux part"),
    ("kl", "KL to reference (nats)"),
    ("response_length", "response length (tokens)"),
    ("rm", "RM part (SD of train responses)"),
    ("aux", "aux part (weighted, normalised)"),
    ("eos_share", "share ended by EOS"),
]
REQUIRED = ["step", "score", "kl", "response_length"]


def read_ppo_logs(paths: list[str | Path]) -> pd.DataFrame:
    """All PPO train logs in one long table with the run's dataset, model, method, beta, aux_weight, seed."""
    frames = []
    for path in map(Path, paths):
        try:
            log = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise PlotError(f"{path}: cannot read the PPO train log: {error}") from None
        missing = [c for c in REQUIRED if c not in log.columns]
        if missing or log.empty:
            raise PlotError(f"{path}: {'no rows' if log.empty else 'missing column(s) ' + ', '.join(missing)}")
        run_yaml = path.parent / "run.yaml"
        if not run_yaml.is_file():
            raise PlotError(f"{run_yaml}: missing (the PPO log's run identity comes from its tags)")
        tags = read_yaml(run_yaml).get("tags") or {}
        for key in ("dataset", "model", "method", "beta", "aux_weight", "seed"):
            if key not in tags:
                raise PlotError(f"{run_yaml}: tags.{key} is missing")
            log[key] = tags[key]
        log["max_steps"] = tags.get("max_steps", 0)  # 0: the stage's budget (groupby drops NaN keys)
        frames.append(log)
    if not frames:
        raise PlotError("no PPO train logs given")
    return pd.concat(frames, ignore_index=True)


def plot_ppo_curves(logs: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """``ppo_curves.{png,pdf}``: rows = (dataset, model), columns = :data:`PANELS`, x = PPO step."""
    cells = sorted({(d, m) for d, m in zip(logs["dataset"], logs["model"], strict=True)})
    fig, axes = _subplots(len(cells), len(PANELS), width=3.9, height=3.0)
    cmap = plt.get_cmap("tab10")
    for row_axes, (dataset, model) in zip(axes, cells, strict=True):
        cell = logs[(logs["dataset"] == dataset) & (logs["model"] == model)]
        runs = sorted(cell.groupby(["method", "beta", "aux_weight", "max_steps", "seed"]), key=lambda item: item[0])
        for ax, (column, ylabel) in zip(row_axes, PANELS, strict=True):
            for index, ((method, beta, weight, steps, seed), run) in enumerate(runs):
                if column in run and run[column].notna().any():
                    budget = f" steps={steps:g}" if steps else ""
                    ax.plot(run["step"], run[column], color=cmap(index % 10), lw=1.2,
                            label=f"{method} β={beta:g} w={weight:g}{budget} seed {seed}")  # fmt: skip
            if not ax.lines:  # say so rather than leave an unexplained blank
                ax.text(0.5, 0.5, f"{column} not logged", ha="center", va="center", transform=ax.transAxes)
            ax.set(title=f"{dataset} / {model}", xlabel="PPO step", ylabel=ylabel)
            ax.grid(alpha=0.3)
        row_axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("PPO training curves (per-step means over the rollout batch)", fontsize=9)
    return _save(fig, Path(out_dir), "ppo_curves")
