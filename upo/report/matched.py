"""Matched-KL comparison of a point with a comparator's curve, and the verdict truth table (pure).

A method's win rate and auxiliary metric both move with how far it strays from the reference model,
so a point is only compared with what a comparator reaches **at the same KL(policy || reference)**:

- the comparator's curve is its sweep points sorted by KL; the value at the point's KL is the linear
  interpolation between the two comparator points whose KLs bracket it (``interpolate_at_kl``);
- outside the comparator's KL range the nearest comparator point is used and the comparison is
  flagged ``extrapolated`` (the comparator was never run at that KL: its sweep is too narrow);
- comparator points with equal KL are averaged into one curve point.

Deltas are point minus comparator; with means of per-prompt scores on the same prompts, a delta is
the mean of paired per-prompt differences (the interpolation is linear in the means).

Verdict (both objectives maximised), from the side of each delta's CI (+1 above 0, 0 contains 0,
-1 below 0; ``upo.report.stats.ci_side``), win rate first:

=========  =========  ============
win        aux        verdict
=========  =========  ============
+1         +1 or 0    dominates
0          +1         dominates
-1         -1 or 0    dominated
0          -1         dominated
+1         -1         trade-off
-1         +1         trade-off
0          0          unresolved
=========  =========  ============
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VERDICTS = ("dominates", "dominated", "trade-off", "unresolved")


def _curve(curve_kl: Sequence[float] | np.ndarray, curve_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Comparator curve sorted by KL, equal KLs averaged: (K',) KLs and (K', M) values."""
    kl = np.asarray(curve_kl, dtype=float)
    values = np.asarray(curve_values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    if kl.ndim != 1 or kl.size == 0 or values.shape[0] != kl.size:
        raise ValueError(f"need K >= 1 KLs and (K, M) values, got {kl.shape} and {values.shape}")
    if not np.isfinite(kl).all():
        raise ValueError(f"comparator KLs must be finite, got {kl.tolist()}")
    unique, inverse = np.unique(kl, return_inverse=True)
    if unique.size == kl.size:
        order = np.argsort(kl, kind="stable")
        return kl[order], values[order]
    merged = np.zeros((unique.size, values.shape[1]))
    np.add.at(merged, inverse, values)
    return unique, merged / np.bincount(inverse)[:, None]


def interpolate_at_kl(
    kl: float, curve_kl: Sequence[float] | np.ndarray, curve_values: np.ndarray
) -> tuple[np.ndarray, bool]:
    """The comparator curve's values at ``kl``.

    Args:
        kl: the compared point's KL.
        curve_kl: (K,) KLs of the comparator's points (any order, ties allowed).
        curve_values: (K, M) (or (K,)) values of the comparator's points, e.g. (win, aux).

    Returns:
        ((M,) values, extrapolated): linear in KL between the bracketing points inside the range;
        the nearest end point, with ``extrapolated = True``, outside it. A one-point curve gives that
        point, extrapolated unless its KL equals ``kl``.
    """
    if not np.isfinite(kl):
        raise ValueError(f"the compared point's KL must be finite, got {kl}")
    xs, ys = _curve(curve_kl, curve_values)
    if kl < xs[0] or kl > xs[-1]:
        return (ys[0] if kl < xs[0] else ys[-1]).copy(), True
    upper = int(np.searchsorted(xs, kl, side="left"))
    if xs[upper] == kl:
        return ys[upper].copy(), False
    lower = upper - 1
    t = (kl - xs[lower]) / (xs[upper] - xs[lower])
    return (1.0 - t) * ys[lower] + t * ys[upper], False


def matched_delta(point: np.ndarray, curve: np.ndarray, kl_column: int) -> tuple[np.ndarray, bool]:
    """Point minus the comparator curve at the point's KL, for every column except the KL.

    Args:
        point: (M,) the compared point's means (one column is its KL).
        curve: (K, M) the comparator's points, same columns.
        kl_column: index of the KL column.

    Returns:
        ((M - 1,) deltas in column order without the KL, extrapolated flag).
    """
    point = np.asarray(point, dtype=float)
    curve = np.asarray(curve, dtype=float)
    keep = [i for i in range(point.size) if i != kl_column]
    values, extrapolated = interpolate_at_kl(point[kl_column], curve[:, kl_column], curve[:, keep])
    return point[keep] - values, extrapolated


def verdict(win_side: int, aux_side: int) -> str:
    """The truth table of the module docstring; sides are +1 (above 0), 0 (contains 0), -1 (below)."""
    if {win_side, aux_side} - {-1, 0, 1}:
        raise ValueError(f"sides must be -1, 0 or 1, got {win_side}, {aux_side}")
    if win_side == aux_side == 0:
        return "unresolved"
    if 1 in (win_side, aux_side):
        return "trade-off" if -1 in (win_side, aux_side) else "dominates"
    return "dominated"
