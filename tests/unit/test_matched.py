"""Matched-KL interpolation on hand-made curves and the verdict truth table."""

from __future__ import annotations

import numpy as np
import pytest

from upo.report.matched import interpolate_at_kl, matched_delta, verdict

# comparator points (KL, win, aux), deliberately out of KL order
CURVE_KL = [8.0, 2.0, 4.0]
CURVE = np.array([[0.60, 0.30], [0.40, 0.70], [0.50, 0.50]])


def test_interpolates_linearly_between_the_bracketing_points():
    values, extrapolated = interpolate_at_kl(3.0, CURVE_KL, CURVE)  # halfway between KL 2 and 4
    np.testing.assert_allclose(values, [0.45, 0.60])
    assert not extrapolated
    values, _ = interpolate_at_kl(7.0, CURVE_KL, CURVE)  # 3/4 of the way from KL 4 to 8
    np.testing.assert_allclose(values, [0.5 + 0.75 * 0.1, 0.5 - 0.75 * 0.2])


def test_exact_comparator_kl_gives_that_point():
    values, extrapolated = interpolate_at_kl(4.0, CURVE_KL, CURVE)
    np.testing.assert_allclose(values, [0.50, 0.50])
    assert not extrapolated
    values, extrapolated = interpolate_at_kl(8.0, CURVE_KL, CURVE)  # the range's end is inside
    np.testing.assert_allclose(values, [0.60, 0.30])
    assert not extrapolated


@pytest.mark.parametrize("kl,expected", [(0.5, [0.40, 0.70]), (20.0, [0.60, 0.30])])
def test_outside_the_range_the_nearest_point_is_used_and_flagged(kl, expected):
    values, extrapolated = interpolate_at_kl(kl, CURVE_KL, CURVE)
    np.testing.assert_allclose(values, expected)
    assert extrapolated


def test_one_point_curve_and_tied_kls():
    values, extrapolated = interpolate_at_kl(1.0, [3.0], np.array([[0.2, 0.4]]))
    np.testing.assert_allclose(values, [0.2, 0.4])
    assert extrapolated
    assert not interpolate_at_kl(3.0, [3.0], np.array([[0.2, 0.4]]))[1]
    # two comparator points at KL 2 are averaged into one curve point
    values, _ = interpolate_at_kl(3.0, [2.0, 2.0, 4.0], np.array([[0.2, 0.0], [0.4, 1.0], [0.5, 0.5]]))
    np.testing.assert_allclose(values, [(0.3 + 0.5) / 2, (0.5 + 0.5) / 2])


def test_matched_delta_drops_the_kl_column():
    point = np.array([0.55, 0.65, 3.0])  # (win, aux, kl)
    curve = np.column_stack([CURVE, CURVE_KL])
    delta, extrapolated = matched_delta(point, curve, kl_column=2)
    np.testing.assert_allclose(delta, [0.55 - 0.45, 0.65 - 0.60])
    assert not extrapolated


def test_bad_inputs_fail():
    with pytest.raises(ValueError, match="finite"):
        interpolate_at_kl(float("nan"), CURVE_KL, CURVE)
    with pytest.raises(ValueError, match="K >= 1"):
        interpolate_at_kl(1.0, [], np.empty((0, 2)))


@pytest.mark.parametrize(
    "win,aux,expected",
    [
        (1, 1, "dominates"), (1, 0, "dominates"), (0, 1, "dominates"),
        (-1, -1, "dominated"), (-1, 0, "dominated"), (0, -1, "dominated"),
        (1, -1, "trade-off"), (-1, 1, "trade-off"), (0, 0, "unresolved"),
    ],
)  # fmt: skip
def test_verdict_truth_table_covers_all_nine_cases(win, aux, expected):
    assert verdict(win, aux) == expected
    assert verdict(aux, win) == expected  # symmetric in the two objectives


def test_verdict_rejects_other_sides():
    with pytest.raises(ValueError):
        verdict(2, 0)
