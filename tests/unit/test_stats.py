"""The report's statistics: mean ± SE, the paired cluster bootstrap on toy tables with known answers,
bootstrap p-values and Holm's adjustment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from upo.report.stats import (
    bootstrap_means,
    bootstrap_pvalue,
    ci_side,
    cluster_codes,
    holm,
    mean_se,
    percentile_ci,
    prompt_weights,
    rejection_side,
)


def test_mean_se_hand_computed_and_one_value_is_nan():
    mean, se = mean_se([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and se == pytest.approx(1.0 / math.sqrt(3))
    mean, se = mean_se([4.0])
    assert mean == 4.0 and math.isnan(se)
    with pytest.raises(ValueError):
        mean_se([])
    with pytest.raises(ValueError, match="non-finite"):
        mean_se([1.0, float("nan")])


def test_evaluation_uses_the_same_mean_se():
    from upo.evaluate import evaluation

    assert evaluation.mean_se is mean_se


def test_cluster_codes_and_prompt_weights_rows_sum_to_one():
    codes = cluster_codes(["b", "a", "b", "c"])
    assert codes.tolist() == [0, 1, 0, 2]
    weights = prompt_weights(codes, 50, np.random.default_rng(0))
    assert weights.shape == (50, 4)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    # prompts of one cluster always get the same weight (drawn together)
    np.testing.assert_array_equal(weights[:, 0], weights[:, 2])
    with pytest.raises(ValueError, match="every code"):
        prompt_weights(np.array([0, 2]), 5, np.random.default_rng(0))


def toy_clustered(n_clusters: int = 10, size: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One group, one seed: ``size`` identical prompts per cluster; cluster values 0..C-1."""
    values = np.repeat(np.arange(n_clusters, dtype=float), size)  # (P,)
    return values[None, :, None], np.repeat(np.arange(n_clusters), size)  # (1, P, 1), (P,)


def test_clusters_of_identical_prompts_widen_the_ci_by_the_known_factor():
    scores, clusters = toy_clustered()
    as_clusters = bootstrap_means([scores], clusters, n_boot=4000, seed=0).replicates[:, 0, 0]
    independent = bootstrap_means([scores], np.arange(100), n_boot=4000, seed=0).replicates[:, 0, 0]
    # known answers: the bootstrap SD of a mean of C equally sized clusters is sd_pop(cluster values) / sqrt(C);
    # treating the 100 prompts as independent divides by sqrt(100) instead
    sd_pop = np.arange(10.0).std()
    assert as_clusters.std() == pytest.approx(sd_pop / math.sqrt(10), rel=0.06)
    assert independent.std() == pytest.approx(sd_pop / math.sqrt(100), rel=0.06)
    width = lambda reps: np.subtract(*percentile_ci(reps)[::-1])  # noqa: E731
    assert width(as_clusters) / width(independent) == pytest.approx(math.sqrt(10), rel=0.15)


def test_the_prompt_draw_is_shared_so_paired_differences_cancel_prompt_noise():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (1, 40, 1))
    b = a + 0.25  # the same prompts, shifted: the paired difference is exactly 0.25
    res = bootstrap_means([a, b], np.arange(40), n_boot=500, seed=3)
    np.testing.assert_allclose(res.replicates[:, 1, 0] - res.replicates[:, 0, 0], 0.25)
    assert res.replicates[:, 0, 0].std() > 0.05  # each mean alone does vary


def test_seeds_are_resampled_independently_per_group():
    prompts = np.zeros((1, 5, 1))
    a = np.concatenate([prompts, prompts + 1.0])  # two seeds: 0 and 1 at every prompt
    res = bootstrap_means([a, a.copy()], np.arange(5), n_boot=2000, seed=0)
    first, second = res.replicates[:, 0, 0], res.replicates[:, 1, 0]
    assert set(np.round(first, 6)) == {0.0, 0.5, 1.0}  # mean of 2 seeds drawn with replacement
    assert abs(np.corrcoef(first, second)[0, 1]) < 0.1  # independent draws, not the same one
    np.testing.assert_allclose(res.estimate, [[0.5], [0.5]])


def test_bootstrap_is_reproducible_and_checks_shapes():
    rng = np.random.default_rng(0)
    groups = [rng.uniform(size=(2, 8, 3)), rng.uniform(size=(3, 8, 3))]
    first = bootstrap_means(groups, np.arange(8) // 2, n_boot=100, seed=7)
    second = bootstrap_means(groups, np.arange(8) // 2, n_boot=100, seed=7)
    np.testing.assert_array_equal(first.replicates, second.replicates)
    with pytest.raises(ValueError, match="group 1"):
        bootstrap_means([groups[0], rng.uniform(size=(2, 7, 3))], np.arange(8), n_boot=10, seed=0)


def test_bootstrap_pvalue_and_sides():
    reps = np.concatenate([np.full(990, 1.0), np.full(10, -1.0)])
    assert bootstrap_pvalue(reps) == pytest.approx(2 * 11 / 1001)
    assert bootstrap_pvalue(np.ones(99)) == pytest.approx(2 / 100)
    assert bootstrap_pvalue(np.zeros(10)) == 1.0
    assert rejection_side(0.01, reps, 0.05) == 1 and rejection_side(0.01, -reps, 0.05) == -1
    assert rejection_side(0.2, reps, 0.05) == 0
    assert (ci_side(0.1, 0.2), ci_side(-0.2, -0.1), ci_side(-0.1, 0.1), ci_side(0.0, 0.2)) == (1, -1, 0, 0)


def test_holm_hand_computed():
    # sorted p: 0.01, 0.02, 0.03, 0.5 -> 4 * 0.01, 3 * 0.02, max(0.06, 2 * 0.03), max(0.06, 0.5)
    adjusted = holm([0.03, 0.01, 0.5, 0.02, float("nan")])
    np.testing.assert_allclose(adjusted[:4], [0.06, 0.04, 0.5, 0.06])
    assert math.isnan(adjusted[4])
    np.testing.assert_allclose(holm([0.4, 0.6]), [0.8, 0.8])
