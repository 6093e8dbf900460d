"""Per-response preference scores p(y) for losses that need one (relabelled DPO), by source.

- ``reward_model``: cross-fitted Bradley-Terry scores from ``python -m upo score-preferences``
  (``data.preference_scores``), built from the binary labels only: what UPO also gets.
- ``binary``: +0.5 for the chosen and -0.5 for the rejected response (the label as a margin).
- ``oracle``: the data's gold ``oracle`` field, z-scored with the training responses' statistics:
  information no real preference dataset has (the evaluation judge itself); the
  ``relabel-dpo-oracle`` upper bound.

Only the ``oracle`` source reads a record's ``oracle`` field.
"""

from __future__ import annotations

import torch

from upo.config import DataConfig
from upo.io import read_jsonl
from upo.rewards.normalise import zscore_stats
from upo.strict import ConfigError

SOURCES = ("reward_model", "binary", "oracle")


def preference_score_tensors(
    data: DataConfig, split: str, fit_records: list[dict], records: list[dict]
) -> dict[str, torch.Tensor]:
    """``{chosen,rejected}_preference_scores``, (N,) each, for ``records`` of ``split`` (train | test)."""
    if data.preference_source is None:
        raise ConfigError(f"data.preference_source: this loss needs per-response preference scores; one of {SOURCES}")
    if data.preference_source == "binary":
        chosen, rejected = torch.full((len(records),), 0.5), torch.full((len(records),), -0.5)
    elif data.preference_source == "oracle":
        chosen, rejected = oracle_scores(fit_records, records, data.train)
    else:
        chosen, rejected = reward_model_scores(records, split, data.preference_scores)
    return {"chosen_preference_scores": chosen, "rejected_preference_scores": rejected}


def reward_model_scores(records: list[dict], split: str, scores_path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Look up each pair's cross-fitted scores by (split, id); a missing file or pair fails naming it."""
    if not scores_path:
        raise ConfigError("data.preference_scores: required when data.preference_source is reward_model")
    try:
        rows = read_jsonl(scores_path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{scores_path}: preference scores not found; run python -m upo score-preferences"
        ) from None
    by_id = {row["id"]: row for row in rows if row.get("split", "train") == split}
    chosen, rejected = [], []
    for record in records:
        row = by_id.get(record["id"])
        if row is None:
            raise ValueError(f"{scores_path}: no preference score for {split} pair {record['id']!r}")
        chosen.append(float(row["chosen"]))
        rejected.append(float(row["rejected"]))
    return torch.tensor(chosen), torch.tensor(rejected)


def oracle_scores(fit_records: list[dict], records: list[dict], where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The gold oracle's scores, z-scored with the mean and SD of all 2N training responses."""
    for record in [*fit_records, *records]:
        if "oracle" not in record:
            raise ValueError(f"{where}: pair {record['id']!r} has no 'oracle' field (preference_source: oracle)")
    mean, std = zscore_stats([r["oracle"][side] for r in fit_records for side in ("chosen", "rejected")])
    chosen = [(r["oracle"]["chosen"] - mean) / std for r in records]
    rejected = [(r["oracle"]["rejected"] - mean) / std for r in records]
    return torch.tensor(chosen), torch.tensor(rejected)
