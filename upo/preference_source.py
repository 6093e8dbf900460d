"""Where a relabelling method's preference score p(y) comes from, resolved per run, and the cross-fit jobs.

A method file names its source (``preference_source:`` in ``upo/methods/<method>.yaml``):
``reward_model`` (cross-fitted Bradley-Terry models on the binary labels, the default of
``relabel-dpo``), ``binary`` (+-0.5 from the label) or ``oracle`` (the gold judge's score: the
``relabel-dpo-oracle`` upper bound). A model size without a ``reward_model:`` stage in the experiment
config falls back from ``reward_model`` to ``binary``; the run's tags (and so metrics.json and the
tidy table) record the source actually used.
"""

from __future__ import annotations

from upo import paths
from upo.strict import ConfigError

CROSS_FIT_FOLDS = 2  # reward models per (dataset, model): each trains on one half, scores the other


def has_reward_model_stage(config: dict, model: str) -> bool:
    return "reward_model" in (config["models"].get(model) or {})


def resolved_source(config: dict, model: str, method: str, source: str | None, needs: set[str]) -> str | None:
    """The source a run of ``method`` on ``model`` uses (None when its loss needs no preference score)."""
    if "preference_scores" not in needs:
        if source is not None:
            raise ConfigError(f"upo/methods/{method}.yaml: preference_source is set but its loss uses no p(y)")
        return None
    if source is None:
        raise ConfigError(
            f"upo/methods/{method}.yaml: its loss needs a preference score; set preference_source "
            "(reward_model | binary | oracle)"
        )
    if source == "reward_model" and not has_reward_model_stage(config, model):
        return "binary"  # the documented fallback: this size trains no reward model
    return source


def apply_preference_source(run: dict, config: dict, method: str, source: str | None, needs: set[str]) -> dict:
    """Fill ``data.preference_source`` / ``data.preference_scores`` and the ``preference_source`` tag."""
    dataset, model = run["tags"]["dataset"], run["tags"]["model"]
    used = resolved_source(config, model, method, source, needs)
    if used is None:
        return run
    run["data"]["preference_source"] = used
    run["tags"]["preference_source"] = used
    if used == "reward_model":
        run["data"]["preference_scores"] = paths.preference_scores_path(dataset, model)
    return run


def fold_files(dataset: str, model: str, name: str) -> list[str]:
    """``name`` (run.yaml, model, fold.json) in each fold reward model's folder: the scoring job's inputs."""
    return [f"{paths.reward_model_fold_dir(dataset, model, fold)}/{name}" for fold in range(CROSS_FIT_FOLDS)]
