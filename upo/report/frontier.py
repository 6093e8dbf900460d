"""Pure frontier maths: Pareto fronts and the 2-D hypervolume (also over bootstrap replicates).

No I/O and no pandas: ``upo.report.comparisons`` turns the tidy table and the per-prompt ``scores.jsonl``
files into the arrays these functions take (resampled by ``upo.report.stats``), and ``upo.report.plotting``
draws the result.

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
  point; points not strictly better than the reference in both coordinates add nothing. The report
  measures it from the SFT model's point: the area a method adds over where it started (from (0, 0)
  it is about the product of the best point's coordinates and rewards a single extreme point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def hypervolume_replicates(coords: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Hypervolume of each bootstrap replicate's points from that replicate's reference point.

    Args:
        coords: (B, K, 2) the K points' (x, y) in every replicate.
        references: (B, 2) the reference point in every replicate (e.g. the SFT model's point, which
            is resampled with the same prompt draw), or (2,) one fixed point.

    Returns:
        (B,) hypervolumes.
    """
    coords = np.asarray(coords, dtype=float)
    references = np.broadcast_to(np.asarray(references, dtype=float), (coords.shape[0], 2))
    return np.array([hypervolume_2d(c, r) for c, r in zip(coords, references, strict=True)])
