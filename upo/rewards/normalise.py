"""Combined auxiliary reward r_aux(x, y) = sum_k c_k * norm_k(r_k(x, y)) (docs/method.md, M1).

Scores are read from the records' ``aux`` field (scored once when data is prepared); the
normalisation statistics are fitted once on the training responses (both sides of every pair).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Normalisation = Literal["zscore", "minmax", "none"]


def zscore_stats(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) for z = (v - mean) / std: the one z-scoring rule of the project.

    The standard deviation is Bessel-corrected (n - 1; n = 1 gives 0) and a zero spread becomes 1.0,
    so constant values map to 0 rather than to NaN. Used by the auxiliary normaliser (UPO, relabelled
    DPO, PPO's rewards) and by the relabelling baseline's preference scores.
    """
    if not values:
        raise ValueError("cannot z-score an empty list of values")
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))
    return mean, (std if std > 0 else 1.0)


@dataclass(frozen=True)
class AuxNormaliser:
    """Per-reward affine normalisation plus the designer weights c_k."""

    weights: dict[str, float]
    shift: dict[str, float]
    scale: dict[str, float]
    method: Normalisation

    @classmethod
    def fit(cls, records: list[dict], weights: dict[str, float], method: Normalisation = "zscore"):
        """Fit statistics on every chosen and rejected response of ``records``."""
        shift, scale = {}, {}
        for name in weights:
            values = [aux_score(r, side, name) for r in records for side in ("chosen", "rejected")]
            if not values:
                raise ValueError("cannot fit auxiliary normalisation on an empty dataset")
            if method == "zscore":
                shift[name], scale[name] = zscore_stats(values)
            elif method == "minmax":
                low, high = min(values), max(values)
                shift[name], scale[name] = low, (high - low if high > low else 1.0)
            else:
                shift[name], scale[name] = 0.0, 1.0
        return cls(dict(weights), shift, scale, method)

    def combine(self, record: dict, side: str) -> float:
        """r_aux of one response: weighted sum of normalised scores."""
        return sum(
            weight * (aux_score(record, side, name) - self.shift[name]) / self.scale[name]
            for name, weight in self.weights.items()
        )

    def pair_tensors(self, records: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) chosen and (B,) rejected combined rewards, float32."""
        chosen = torch.tensor([self.combine(r, "chosen") for r in records], dtype=torch.float32)
        rejected = torch.tensor([self.combine(r, "rejected") for r in records], dtype=torch.float32)
        return chosen, rejected

    def to_dict(self) -> dict:
        return {"weights": self.weights, "shift": self.shift, "scale": self.scale, "method": self.method}


def aux_score(record: dict, side: str, name: str) -> float:
    """The stored score ``record['aux'][side][name]``; a missing score names the record and reward."""
    try:
        return float(record["aux"][side][name])
    except (KeyError, TypeError):
        raise KeyError(
            f"record {record.get('id', '?')!r} has no aux score {name!r} for {side!r}; "
            "prepare the data with this reward (python -m upo prepare-data --aux ...)"
        ) from None
