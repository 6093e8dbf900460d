"""Hand-computed cases for upo.report.frontier (Pareto front, hypervolume from any reference point)."""

from __future__ import annotations

import numpy as np
import pytest

from upo.report.frontier import hypervolume_2d, hypervolume_replicates, pareto_front


def test_front_drops_dominated_points():
    points = [(0.6, 0.2), (0.5, 0.5), (0.2, 0.6), (0.4, 0.4), (0.1, 0.1)]
    assert pareto_front(points).tolist() == [True, True, True, False, False]


def test_front_tie_in_one_coordinate_is_broken_by_the_other():
    # same x: the higher y dominates; same y: the higher x dominates
    assert pareto_front([(0.5, 0.2), (0.5, 0.3)]).tolist() == [False, True]
    assert pareto_front([(0.4, 0.3), (0.5, 0.3)]).tolist() == [False, True]


def test_front_keeps_every_copy_of_a_duplicate():
    points = [(0.5, 0.5), (0.5, 0.5), (0.4, 0.4), (0.4, 0.4)]
    assert pareto_front(points).tolist() == [True, True, False, False]
    # order-independent
    assert pareto_front(points[::-1]).tolist() == [False, False, True, True]


def test_front_one_point_and_empty():
    assert pareto_front([(0.3, 0.7)]).tolist() == [True]
    assert pareto_front(np.zeros((0, 2))).tolist() == []


def test_front_rejects_nan_naming_the_row():
    with pytest.raises(ValueError, match=r"row\(s\) \[1\]"):
        pareto_front([(0.1, 0.2), (float("nan"), 0.3)])


def test_hypervolume_single_point_is_a_rectangle():
    assert hypervolume_2d([(0.5, 0.4)], (0.0, 0.0)) == pytest.approx(0.2)
    assert hypervolume_2d([(0.5, 0.4)], (0.1, 0.2)) == pytest.approx(0.4 * 0.2)


def test_hypervolume_staircase():
    # staircase (1,1) (2,0.5) (0.5,2) over (0,0): 0.5*2 + 0.5*1 + 1*0.5 = 2.0
    assert hypervolume_2d([(1, 1), (2, 0.5), (0.5, 2)], (0, 0)) == pytest.approx(2.0)
    # a dominated point and a duplicate change nothing
    assert hypervolume_2d([(1, 1), (2, 0.5), (0.5, 2), (0.9, 0.9), (1, 1)], (0, 0)) == pytest.approx(2.0)


def test_hypervolume_ignores_points_not_beating_reference():
    assert hypervolume_2d([(0.5, 0.5), (0.9, 0.1)], (0.2, 0.2)) == pytest.approx(0.09)
    assert hypervolume_2d([(0.1, 0.9)], (0.2, 0.2)) == 0.0
    assert hypervolume_2d([], (0, 0)) == 0.0


def test_hypervolume_from_a_non_zero_reference_point():
    # staircase (0.6, 0.5), (0.4, 0.7), (0.3, 0.2) from the SFT-like point (0.35, 0.4):
    # (0.3, 0.2) adds nothing; (0.6 - 0.4) * (0.5 - 0.4) + (0.4 - 0.35) * (0.7 - 0.4) = 0.02 + 0.015
    points = [(0.6, 0.5), (0.4, 0.7), (0.3, 0.2)]
    assert hypervolume_2d(points, (0.35, 0.4)) == pytest.approx(0.035)
    # from (0, 0) the same set is dominated by its extreme points' products instead
    assert hypervolume_2d(points, (0.0, 0.0)) == pytest.approx(0.6 * 0.5 + 0.4 * 0.2)


def test_hypervolume_replicates_use_each_replicate_reference():
    coords = np.array([[[0.5, 0.5]], [[0.5, 0.5]], [[0.5, 0.5]]])  # (B=3, K=1, 2)
    refs = np.array([[0.0, 0.0], [0.25, 0.25], [0.6, 0.0]])
    np.testing.assert_allclose(hypervolume_replicates(coords, refs), [0.25, 0.0625, 0.0])
    np.testing.assert_allclose(hypervolume_replicates(coords, (0.1, 0.1)), [0.16] * 3)  # one fixed point
