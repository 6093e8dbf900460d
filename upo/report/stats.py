"""Pure statistics of the report: mean ± SE, the paired cluster bootstrap, p-values and Holm's correction.

No I/O and no pandas (``upo.report.comparisons`` builds the arrays). Conventions in one place:

- ``mean_se`` is the one mean ± SE of the project (evaluation's per-prompt SEs and the report's
  per-seed SEs both use it). With one value the SE is **NaN**: one seed (or one prompt) says nothing
  about its own spread, and a 0 would read as certainty. Callers show "–" or another SE and say so.
- **Bootstrap design** (``bootstrap_means``). A comparison involves several *groups* (one sweep point
  of one method, averaged over its seeds), each with per-seed, per-prompt scores (S_g, P, M) on the
  same P prompts. One replicate
  1. draws C prompt clusters with replacement from the C clusters (whole clusters: prompts of one topic
     are not independent), **once**, shared by every group: the comparison stays paired by prompt;
  2. draws S_g seeds with replacement **independently for every group** (separate training runs);
  3. takes each group's mean over the drawn seeds and the drawn prompts (a prompt drawn twice counts
     twice). Statistics (matched-KL deltas, hypervolumes and their differences) are recomputed from
     these replicate means, so every step after the means (interpolation, fronts) is resampled too.
  A dataset without clusters passes one cluster per prompt: the ordinary paired prompt bootstrap.
- CIs are percentile intervals; a two-sided bootstrap p-value is the smaller tail's share of
  replicates on the far side of 0, doubled (with the +1 correction, so it is never 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def mean_se(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (sample SD with ddof=1, over sqrt(n)).

    Args:
        values: (n,) finite values, e.g. one metric over seeds or over prompts.

    Returns:
        (mean, se). With n == 1 the SE is NaN (undefined), never 0.
    """
    array = np.asarray(values, dtype=float).ravel()
    if array.size == 0:
        raise ValueError("mean_se: no values")
    if not np.isfinite(array).all():
        raise ValueError(f"mean_se: non-finite values {array.tolist()[:10]}")
    mean = float(array.mean())
    if array.size == 1:
        return mean, float("nan")
    return mean, float(array.std(ddof=1) / math.sqrt(array.size))


def cluster_codes(labels: Sequence[str]) -> np.ndarray:
    """(P,) integer codes 0..C-1 of cluster labels (first appearance order)."""
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(str(label), len(codes)) for label in labels], dtype=int)


def prompt_weights(clusters: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(B, P) weights of a cluster bootstrap: each row draws C whole clusters with replacement.

    A prompt's weight is the number of times its cluster was drawn, over the number of prompts drawn,
    so ``weights @ scores`` is the mean over the replicate's prompts (rows sum to 1).

    Args:
        clusters: (P,) cluster codes 0..C-1 (``cluster_codes``); every code must occur.
        n_boot: replicates B.
        rng: the bootstrap generator.
    """
    clusters = np.asarray(clusters, dtype=int)
    n_clusters = int(clusters.max()) + 1 if clusters.size else 0
    if clusters.size == 0 or np.bincount(clusters, minlength=n_clusters).min() == 0:
        raise ValueError("clusters must be codes 0..C-1 with every code used")
    counts = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot)  # (B, C)
    weights = counts[:, clusters].astype(float)  # (B, P)
    return weights / weights.sum(axis=1, keepdims=True)


def seed_weights(n_seeds: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(B, S) weights of drawing S seeds with replacement (counts / S; one seed: all ones)."""
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot) / n_seeds


@dataclass(frozen=True)
class Resampled:
    """Group means on the full data and in every bootstrap replicate.

    ``estimate``: (G, M) means over all seeds and prompts; ``replicates``: (B, G, M).
    """

    estimate: np.ndarray
    replicates: np.ndarray

    @property
    def n_boot(self) -> int:
        return self.replicates.shape[0]


def bootstrap_means(groups: Sequence[np.ndarray], clusters: np.ndarray, n_boot: int, seed: int) -> Resampled:
    """Paired cluster bootstrap of group means (see the module docstring for the design).

    Args:
        groups: G arrays of shape (S_g, P, M): per seed, per prompt, per metric scores; NaN allowed
            only where a metric is missing for a whole group (it stays NaN).
        clusters: (P,) cluster codes of the prompts (one cluster per prompt: plain prompt bootstrap).
        n_boot: replicates B (>= 1).
        seed: seed of the bootstrap generator (fixed: tables are reproducible).

    Returns:
        ``Resampled`` with estimate (G, M) and replicates (B, G, M).
    """
    if not groups:
        raise ValueError("bootstrap_means: no groups")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    arrays = [np.asarray(g, dtype=float) for g in groups]
    n_prompts, n_metrics = arrays[0].shape[1:]
    for index, array in enumerate(arrays):
        if array.ndim != 3 or array.shape[0] < 1 or array.shape[1:] != (n_prompts, n_metrics):
            raise ValueError(f"group {index}: shape {array.shape}, expected (S >= 1, {n_prompts}, {n_metrics})")
    if len(clusters) != n_prompts:
        raise ValueError(f"{len(clusters)} cluster codes for {n_prompts} prompts")
    rng = np.random.default_rng(seed)
    prompt_w = prompt_weights(clusters, n_boot, rng)  # (B, P), shared by every group: the pairing
    estimate = np.stack([a.mean(axis=(0, 1)) for a in arrays])  # (G, M)
    replicates = np.empty((n_boot, len(arrays), n_metrics))
    for index, array in enumerate(arrays):
        seed_w = seed_weights(array.shape[0], n_boot, rng)  # (B, S), independent per group
        replicates[:, index, :] = np.einsum("bs,spm,bp->bm", seed_w, array, prompt_w)
    return Resampled(estimate=estimate, replicates=replicates)


def percentile_ci(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the first axis (B, ...) -> (low, high), each of shape (...)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(np.asarray(replicates, dtype=float), [alpha, 1.0 - alpha], axis=0)
    return low, high


def bootstrap_pvalue(replicates: np.ndarray) -> np.ndarray:
    """Two-sided p-value of "the statistic is 0" from its replicates (B, ...) -> (...).

    p = min(1, 2 * min(1 + #{r <= 0}, 1 + #{r >= 0}) / (B + 1)): small when nearly every replicate
    lies on one side of 0. ``p < 1 - level`` agrees with the percentile CI excluding 0 up to the
    +1 correction (which makes p slightly conservative).
    """
    reps = np.asarray(replicates, dtype=float)
    n_boot = reps.shape[0]
    below = 1 + (reps <= 0).sum(axis=0)
    above = 1 + (reps >= 0).sum(axis=0)
    return np.minimum(1.0, 2.0 * np.minimum(below, above) / (n_boot + 1))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control over all given tests).

    Sorted ascending p_(1..m): adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)). NaN stays NaN
    and is not counted in m.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = finite.size
    if m == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def ci_side(low: float, high: float) -> int:
    """+1 when a CI lies above 0, -1 when below, 0 when it contains 0 (or is NaN)."""
    if low > 0:
        return 1
    if high < 0:
        return -1
    return 0


def rejection_side(pvalue: float, replicates: np.ndarray, alpha: float) -> int:
    """+1 / -1 when the test rejects 0 at ``alpha`` (the side the replicates lie on), else 0."""
    if not pvalue < alpha:
        return 0
    reps = np.asarray(replicates, dtype=float)
    return 1 if (reps > 0).sum() > (reps < 0).sum() else -1
