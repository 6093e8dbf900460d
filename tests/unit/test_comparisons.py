"""Matched-KL claims and hypervolume differences on hand-made cells whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from upo.report.comparisons import build_cells, claims_table, hypervolume_table

N_PROMPTS = 6


def cell_table(points: list[tuple]) -> tuple[pd.DataFrame, dict]:
    """points: (method, beta, w, seed, win, aux, kl): every prompt of a run gets these values."""
    rows, scores = [], {}
    for method, beta, weight, seed, win, aux, kl in points:
        source = f"{method}/{beta}/{weight}/{seed}"
        rows.append({"dataset": "d", "model": "m", "method": method, "beta": beta, "aux_weight": weight,
                     "max_steps": float("nan"), "seed": seed, "win_rate": 100 * win, "aux_readability": aux, "kl": kl,
                     "source": source})  # fmt: skip
        scores[source] = {
            f"p{i}": {"preference": win, "aux": {"readability": aux}, "kl": kl} for i in range(N_PROMPTS)
        }
    return pd.DataFrame(rows), scores


DPO = [("dpo", 0.5, float("nan"), s, 0.4, 0.6, 2.0) for s in (0, 1)]
DPO += [("dpo", 0.1, float("nan"), s, 0.6, 0.4, 4.0) for s in (0, 1)]
SFT = [("sft", float("nan"), float("nan"), 0, 0.3, 0.5, 0.0)]


def run(points, **kwargs):
    table, scores = cell_table(points)
    clusters = {s: {f"p{i}": f"c{i // 2}" for i in range(N_PROMPTS)} for s in scores}
    cells = build_cells(table, scores, clusters, ["readability"], n_boot=200, seed=0)
    return cells, claims_table(cells, ["upo"], **kwargs)


@pytest.mark.parametrize(
    "upo_win,upo_aux,expected",
    [(0.55, 0.6, "dominates"), (0.45, 0.6, "trade-off"), (0.45, 0.4, "dominated"), (0.5, 0.5, "unresolved")],
)
def test_deltas_and_verdicts_at_matched_kl(upo_win, upo_aux, expected):
    # UPO at KL 3: halfway along DPO's curve, where DPO reaches win 0.5 and aux 0.5. No noise at all,
    # so every CI collapses onto the delta (and an exact 0 delta is unresolved).
    upo = [("upo", 0.1, 1.0, s, upo_win, upo_aux, 3.0) for s in (0, 1)]
    cells, claims = run(SFT + DPO + upo)
    row = claims.iloc[0]
    assert len(claims) == 1 and row["comparator"] == "dpo" and not row["extrapolated"]
    assert row["delta_win"] == pytest.approx(100 * (upo_win - 0.5))
    assert row["delta_aux"] == pytest.approx(upo_aux - 0.5)
    assert row["delta_win_lo"] == pytest.approx(row["delta_win"]) and row["delta_win_hi"] == pytest.approx(
        row["delta_win"]
    )
    assert row["verdict"] == expected and row["verdict_holm"] == expected
    assert (row["n_clusters"], row["n_prompts"], row["n_seeds"], row["comparator_points"]) == (3, N_PROMPTS, 2, 2)


def test_outside_the_comparator_range_is_flagged():
    upo = [("upo", 0.1, 1.0, 0, 0.7, 0.3, 9.0)]
    _, claims = run(SFT + DPO + upo)
    assert bool(claims.iloc[0]["extrapolated"])
    assert claims.iloc[0]["delta_win"] == pytest.approx(10.0)  # against DPO's KL-4 point


def test_missing_kl_fails_naming_the_point():
    upo = [("upo", 0.1, 1.0, 0, 0.7, 0.3, float("nan"))]
    with pytest.raises(ValueError, match=r"KL of upo\(β=0.1,w=1\)"):
        run(SFT + DPO + upo)


def test_hypervolume_difference_from_the_sft_point():
    # from SFT (0.3, 0.5): DPO's (0.4, 0.6) adds 0.1 * 0.1, its (0.6, 0.4) nothing; UPO's (0.5, 0.7) adds 0.2 * 0.2
    upo = [("upo", 0.1, 1.0, 0, 0.5, 0.7, 3.0)]
    cells, _ = run(SFT + DPO + upo)
    frontier, hv = hypervolume_table(cells, ["upo"])
    groups = hv[hv["minus"] == ""].set_index("group")
    assert groups.loc["dpo", "hypervolume"] == pytest.approx(0.01)
    assert groups.loc["upo", "hypervolume"] == pytest.approx(0.04)
    assert groups.loc["dpo", "n_points"] == 2 and groups.loc["upo", "n_points"] == 1
    diff = hv[hv["minus"] == "dpo"].iloc[0]
    assert diff["hypervolume"] == pytest.approx(0.03)
    assert diff["hv_ci_low"] == pytest.approx(0.03) and diff["hv_ci_high"] == pytest.approx(0.03)  # no noise
    assert (hv["hv_ref_win_frac"] == 0.3).all() and (hv["hv_reference"] == "sft").all()
    assert frontier[(frontier["front_group"] == "all")]["on_front"].sum() == 2  # UPO's point and DPO's (0.6, 0.4)


def test_noisy_clusters_give_wider_claims_cis_than_independent_prompts():
    rng = np.random.default_rng(0)
    table, scores = cell_table(SFT + DPO + [("upo", 0.1, 1.0, 0, 0.5, 0.5, 3.0)])
    topic_effect = np.repeat(rng.normal(0, 0.2, 3), 2)  # prompts of a topic move together
    for source in scores:
        for i in range(N_PROMPTS):
            scores[source][f"p{i}"]["preference"] += topic_effect[i] * (source.startswith("upo") * 2 - 1)
    by_topic = {s: {f"p{i}": f"c{i // 2}" for i in range(N_PROMPTS)} for s in scores}
    widths = []
    for clusters in (by_topic, None):
        cells = build_cells(table, scores, clusters, ["readability"], n_boot=400, seed=1)
        row = claims_table(cells, ["upo"]).iloc[0]
        widths.append(row["delta_win_hi"] - row["delta_win_lo"])
    assert widths[0] > widths[1]
