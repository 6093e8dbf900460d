"""Hand-computed cases for upo.report.frontier (Pareto front, hypervolume, bootstrap CI, mean ± SE)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from upo.report.frontier import bootstrap_hypervolume, hypervolume_2d, mean_se, pareto_front


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


def test_mean_se_hand_computed():
    mean, se = mean_se([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert se == pytest.approx(1.0 / math.sqrt(3))  # sd 1 over sqrt(3)
    mean, se = mean_se([4.0])
    assert mean == 4.0 and math.isnan(se)
    with pytest.raises(ValueError):
        mean_se([])


def test_bootstrap_ci_collapses_for_a_deterministic_case():
    # every seed and prompt of a point has the same value: no sampling variation at all
    xs = [np.full((3, 20), 0.5), np.full((2, 20), 0.8)]
    ys = [np.full((3, 20), 0.6), np.full((2, 20), 0.3)]
    ci = bootstrap_hypervolume(xs, ys, (0, 0), n_boot=200, seed=1)
    expected = 0.5 * 0.6 + 0.3 * 0.3  # staircase: (0.8-0.5)*0.3 + 0.5*0.6
    assert ci.value == pytest.approx(expected)
    assert ci.low == pytest.approx(expected) and ci.high == pytest.approx(expected)


def test_bootstrap_ci_is_reproducible_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    xs = [rng.uniform(0, 1, (3, 50)) for _ in range(3)]
    ys = [rng.uniform(0, 1, (3, 50)) for _ in range(3)]
    first = bootstrap_hypervolume(xs, ys, (0, 0), n_boot=300, seed=7)
    second = bootstrap_hypervolume(xs, ys, (0, 0), n_boot=300, seed=7)
    assert first == second
    assert first.low < first.value < first.high


def test_bootstrap_with_seed_level_values_only():
    # (S, 1) arrays: only seeds are resampled; one seed per point -> no variation
    ci = bootstrap_hypervolume([np.array([[0.5]])], [np.array([[0.5]])], (0, 0), n_boot=50)
    assert ci.low == pytest.approx(0.25) and ci.high == pytest.approx(0.25)


def test_bootstrap_rejects_unpaired_prompt_counts():
    with pytest.raises(ValueError, match="point 1"):
        bootstrap_hypervolume([np.ones((2, 5)), np.ones((2, 4))], [np.ones((2, 5)), np.ones((2, 4))], (0, 0))
