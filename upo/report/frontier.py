"""Pure frontier maths: Pareto fronts, 2-D hypervolume, its bootstrap CI, and mean ± SE.

No I/O and no pandas: ``upo.report.aggregate`` turns the tidy table and the per-prompt ``scores.jsonl``
files into the arrays these functions take, and ``upo.report.plotting`` draws the result.

Conventions (one place, so the table, the plots and the tests agree):
- Both objectives are **maximised** (preference win rate and a [0, 1] auxiliary metric).
- Point a *dominates* b when a >= b in both coordinates and a > b in at least one.
- A point is on the Pareto front when no other point dominates it. Consequences, by design:
  exact duplicates do not dominate each other, so **every copy of a non-dominated duplicate is on
  the front** (the mask never depends on row order); a tie in one coordinate is broken by the other
  (of (0.5, 0.2) and (0.5, 0.3) only the second is on the front).
- NaN coordinates are an error, not silently dropped: a sweep point without a value must be
  removed (or fixed) by the caller, who knows why it is missing.
- Hypervolume is the area of the region dominated by the set and bounded below by the reference
  point; points not strictly better than the reference in both coordinates add nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _as_points(points: Sequence[Sequence[float]] | np.ndarray, name: str = "points") -> np.ndarray:
    """Validate and return points as a float array of shape (N, 2)."""
    array = np.asarray(points, dtype=float)
    if array.size == 0:
        return array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name}: expected shape (N, 2), got {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise ValueError(f"{name}: non-finite coordinates at row(s) {bad.tolist()}: {array[bad].tolist()}")
    return array


def pareto_front(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Mask of the non-dominated points, maximising both coordinates.

    Args:
        points: (N, 2) array-like of finite (x, y) values, e.g. (win rate, aux metric).

    Returns:
        (N,) bool array; True where no other point is >= in both coordinates and > in one.
        Exact duplicates of a front point are all True; an empty input gives an empty mask.
    """
    array = _as_points(points)
    # (N, N) pairwise comparison: row j dominates column i. N is a sweep (tens of points), so the
    # quadratic form is clearer than a sort-based sweep and never the bottleneck.
    ge = (array[:, None, :] >= array[None, :, :]).all(axis=2)
    gt = (array[:, None, :] > array[None, :, :]).any(axis=2)
    dominated = (ge & gt).any(axis=0)
    return ~dominated


def hypervolume_2d(points: Sequence[Sequence[float]] | np.ndarray, reference_point: Sequence[float]) -> float:
    """Area dominated by ``points`` and dominating ``reference_point`` (both coordinates maximised).

    Sorting by x descending and keeping the running maximum of y traces the staircase; each step
    contributes (x_i - x_{i+1}) * (max_{j<=i} y_j - ref_y), with x_{n} = ref_x.

    Args:
        points: (N, 2) array-like of finite points.
        reference_point: (ref_x, ref_y); should be dominated by the points of interest.

    Returns:
        The hypervolume (>= 0; 0.0 for an empty set or when no point beats the reference).
    """
    array = _as_points(points)
    ref_x, ref_y = (float(v) for v in reference_point)
    if not (math.isfinite(ref_x) and math.isfinite(ref_y)):
        raise ValueError(f"reference_point must be finite, got {reference_point}")
    array = array[(array[:, 0] > ref_x) & (array[:, 1] > ref_y)]
    if len(array) == 0:
        return 0.0
    array = array[np.argsort(-array[:, 0], kind="stable")]  # x descending
    xs = np.append(array[:, 0], ref_x)
    best_y = np.maximum.accumulate(array[:, 1])
    return float(np.sum((xs[:-1] - xs[1:]) * (best_y - ref_y)))


def mean_se(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (sample SD with ddof=1, over sqrt(n)).

    Args:
        values: (n,) finite values, e.g. one metric over seeds.

    Returns:
        (mean, se). With n == 1 the SE is NaN (undefined: one seed says nothing about seed noise);
        callers decide what to show instead and say so.
    """
    array = np.asarray(values, dtype=float).ravel()
    if array.size == 0:
        raise ValueError("mean_se: no values")
    if not np.isfinite(array).all():
        raise ValueError(f"mean_se: non-finite values {array.tolist()}")
    mean = float(array.mean())
    if array.size == 1:
        return mean, float("nan")
    return mean, float(array.std(ddof=1) / math.sqrt(array.size))


@dataclass(frozen=True)
class HypervolumeCI:
    """Hypervolume point estimate with a percentile bootstrap interval."""

    value: float
    low: float
    high: float
    n_boot: int
    level: float


def bootstrap_hypervolume(
    x_scores: Sequence[np.ndarray],
    y_scores: Sequence[np.ndarray],
    reference_point: Sequence[float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> HypervolumeCI:
    """Percentile bootstrap CI of the hypervolume, resampling seeds per point and shared prompts.

    Each sweep point k has per-seed, per-prompt scores (S_k, P). The prompts are the same P prompts
    (same order) for every point, because the evaluation seed is shared: one replicate draws P
    prompt indices **once** and applies them to every point (paired), and draws S_k seeds with
    replacement independently for each point. A point's coordinate in a replicate is the mean over
    its drawn seeds and prompts; the replicate's statistic is the hypervolume of those points.
    With only seed-level values available, pass (S_k, 1) arrays: prompt resampling is then a no-op.

    Args:
        x_scores: K arrays, the k-th of shape (S_k, P): x values (e.g. preference in [0, 1]).
        y_scores: K arrays, shapes equal to ``x_scores``: y values (e.g. an aux metric).
        reference_point: (ref_x, ref_y) in the same units.
        n_boot: number of bootstrap replicates B.
        seed: seed of the bootstrap generator (fixed, so tables are reproducible).
        level: central interval coverage, e.g. 0.95.

    Returns:
        HypervolumeCI; ``value`` is the hypervolume of the full-data means (not a bootstrap mean).
    """
    if len(x_scores) != len(y_scores) or not x_scores:
        raise ValueError(f"need the same, non-zero number of x and y arrays ({len(x_scores)}, {len(y_scores)})")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    xs = [np.atleast_2d(np.asarray(a, dtype=float)) for a in x_scores]
    ys = [np.atleast_2d(np.asarray(a, dtype=float)) for a in y_scores]
    n_prompts = xs[0].shape[1]
    for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if x.shape != y.shape or x.shape[1] != n_prompts or x.shape[0] < 1:
            raise ValueError(f"point {k}: x {x.shape} and y {y.shape} must both be (S_k >= 1, {n_prompts})")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError(f"point {k}: non-finite scores")
    value = hypervolume_2d([(x.mean(), y.mean()) for x, y in zip(xs, ys, strict=True)], reference_point)

    rng = np.random.default_rng(seed)
    # (B, P) prompt weights: counts of each prompt in the replicate's draw, divided by P.
    prompt_w = rng.multinomial(n_prompts, np.full(n_prompts, 1.0 / n_prompts), size=n_boot) / n_prompts
    coords = np.empty((n_boot, len(xs), 2))  # (B, K, 2)
    for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
        n_seeds = x.shape[0]
        seed_w = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot) / n_seeds
        # mean over drawn seeds and prompts = seed_w (B, S) . scores (S, P) . prompt_w (B, P)
        coords[:, k, 0] = np.einsum("bs,sp,bp->b", seed_w, x, prompt_w)
        coords[:, k, 1] = np.einsum("bs,sp,bp->b", seed_w, y, prompt_w)
    replicates = np.array([hypervolume_2d(c, reference_point) for c in coords])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return HypervolumeCI(value=value, low=float(low), high=float(high), n_boot=n_boot, level=level)
