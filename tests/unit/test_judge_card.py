"""Judge cards (statistics on hand-made judges, the CLI, judges.csv) and the judge verdict cache."""

from __future__ import annotations

import json
import multiprocessing

import pandas as pd
import pytest

from upo.evaluate import judges
from upo.evaluate.evaluation import EvalConfig
from upo.evaluate.judge_card import JudgeCardConfig, build_card, card_statistics, experiment_cards
from upo.evaluate.verdict_cache import CachedScorer, VerdictCache, verdict_key
from upo.io import write_yaml
from upo.strict import ConfigError


def records(n: int = 12) -> list[dict]:
    """Labelled pairs; the chosen response is the shorter one in the even rows, the longer in the odd."""
    out = []
    for i in range(n):
        short, long = f"good answer {i}", f"a much longer but worse answer number {i} with padding"
        chosen, rejected = (short, long) if i % 2 == 0 else (long + " best", short + " bad")
        out.append(
            {"id": f"r{i}", "prompt": [{"role": "user", "content": f"q{i}"}], "chosen": chosen, "rejected": rejected,
             "cluster": f"c{i % 4}"}
        )  # fmt: skip
    return out


def always_first(instructions, outputs_1, outputs_2):
    """Picks the first slot every time: P(output_2 wins) = 0."""
    return [0.0] * len(outputs_1)


def prefers_longer(instructions, outputs_1, outputs_2):
    return [
        judges.preference_from_scores(len(a.split()), len(b.split()), 0.0)
        for a, b in zip(outputs_1, outputs_2, strict=True)
    ]


def knows_labels(labels: dict[str, str]):
    """A perfect judge: the response that is some record's chosen wins."""
    chosen = set(labels.values())
    return lambda instructions, outputs_1, outputs_2: [float(b in chosen) for b in outputs_2]


def card(scorer, recs=None) -> dict:
    recs = recs or records()
    return build_card(EvalConfig(), recs, JudgeCardConfig(n_boot=200), dataset="toy", scorer=scorer)


def test_always_first_slot_has_position_bias_one():
    result = card(always_first)
    assert result["position_bias"]["value"] == pytest.approx(1.0)
    assert result["agreement"]["value"] == pytest.approx(0.5)  # right in one order, wrong in the other
    assert result["order_flip"]["value"] == pytest.approx(1.0)
    assert result["position_bias"]["n"] == 12


def test_longer_preferring_judge_has_length_bias_one():
    result = card(prefers_longer)
    assert result["length_bias"]["value"] == pytest.approx(1.0) and result["length_bias"]["n"] == 6
    assert result["agreement_when_chosen_longer"]["value"] == pytest.approx(1.0)
    assert result["agreement"]["value"] == pytest.approx(0.5)
    assert result["position_bias"]["value"] == pytest.approx(0.5)


def test_perfect_judge_agrees_and_has_no_length_bias():
    recs = records()
    result = card(knows_labels({r["id"]: r["chosen"] for r in recs}), recs)
    assert result["agreement"] == pytest.approx({"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 12})
    assert result["length_bias"]["value"] == 0.0 and result["position_bias"]["value"] == pytest.approx(0.5)
    assert result["judge"]["name"] == "oracle" and len(result["judge_hash"]) == 12


def test_statistics_hand_computed_with_a_ci():
    # agreement per pair = (first + second) / 2 = 0.9, 0.5, 0.1, 0.7 -> 0.55; first slot = (f + 1 - s) / 2
    stats = card_statistics([1.0, 0.5, 0.2, 0.6], [0.8, 0.5, 0.0, 0.8], [1, 5, 2, 3], [4, 5, 1, 3],
                            ["a", "b", "c", "d"], n_boot=500)  # fmt: skip
    assert stats["agreement"]["value"] == pytest.approx(0.55)
    assert stats["position_bias"]["value"] == pytest.approx((0.6 + 0.5 + 0.6 + 0.4) / 4)
    assert stats["length_bias"] == pytest.approx({"value": 0.1, "ci_low": 0.1, "ci_high": 0.1, "n": 1})
    assert stats["agreement_when_chosen_longer"]["value"] == pytest.approx(0.1) and stats["order_flip"]["n"] == 4
    low, high = stats["agreement"]["ci_low"], stats["agreement"]["ci_high"]
    assert 0.1 <= low < 0.55 < high <= 0.9
    empty = card_statistics([1.0], [1.0], [2], [2], ["a"], n_boot=10)["length_bias"]
    assert empty == {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    with pytest.raises(ValueError, match="probabilities"):
        card_statistics([1.5], [1.0], [2], [2], ["a"])


def test_oracle_card_states_agreement_by_construction():
    recs = [dict(r, source="default") for r in records()]
    result = build_card(EvalConfig(judge="oracle"), recs, JudgeCardConfig(n_boot=50), dataset="default")
    assert "by construction" in result["note"]
    assert result["cost"]["verdicts"] == 24 and result["cost"]["seconds_per_1000"] > 0


# ------------------------------------------------------------------------------------ verdict cache
class Counting:
    def __init__(self, inner):
        self.inner, self.pairs, self.calls = inner, 0, 0

    def __call__(self, instructions, outputs_1, outputs_2):
        self.calls += 1
        self.pairs += len(outputs_1)
        return self.inner(instructions, outputs_1, outputs_2)


def test_cached_scorer_calls_the_judge_once_per_pair(tmp_path):
    cache, counter = VerdictCache(tmp_path / "j.sqlite"), Counting(prefers_longer)
    identity = {"name": "toy", "config": {}}
    first = CachedScorer(lambda: counter, identity, cache)
    assert first(["q", "q", "q"], ["a", "a b c", "a"], ["a b", "a", "a b"]) == [1.0, 0.0, 1.0]
    assert counter.pairs == 2 and first.cached == 1  # the repeated pair is judged once
    again = CachedScorer(lambda: pytest.fail("judge loaded although every verdict is cached"), identity, cache)
    assert again(["q"], ["a b c"], ["a"]) == [0.0] and again.judge_calls == 0
    other = CachedScorer(lambda: counter, {"name": "toy", "config": {"x": 1}}, cache)  # another identity
    other(["q"], ["a b c"], ["a"])
    assert counter.pairs == 3 and len(cache) == 3


def test_second_evaluation_costs_zero_judge_calls(tmp_path, tiny_model_dir, tiny_data, monkeypatch):
    from tests.unit.test_generation import write_run
    from upo.evaluate.evaluation import evaluate_run
    from upo.evaluate.generation import generate_run

    counter = Counting(prefers_longer)
    entry = judges.JudgeEntry(
        check=lambda cfg: None,
        identity=lambda cfg: {
            "name": "counting",
            "config": {},
            "prompt_sha256": None,
            "model_sha256": None,
            "package": judges.alpaca_eval_version(),
        },  # fmt: skip
        scorer=lambda cfg: counter,
    )
    monkeypatch.setitem(judges.JUDGES._entries, "counting", entry)
    section = {"judge": "counting", "max_prompts": 5, "max_new_tokens": 6, "batch_size": 4, "kl": False}
    run = write_run(tmp_path / "run", tiny_model_dir, tiny_data, section)
    generate_run(run)
    cache = tmp_path / "judges.sqlite"
    first = evaluate_run(run, judge_cache=cache)
    judged = counter.pairs
    assert judged >= 1  # identical outputs (AlpacaEval's tie rule) need no judge
    second = evaluate_run(run, judge_cache=cache)
    assert counter.pairs == judged  # second evaluation: zero judge calls
    assert second["win_rate"] == first["win_rate"]
    evaluate_run(run)  # no cache: the judge is asked again
    assert counter.pairs == 2 * judged


def _write_verdicts(path: str, worker: int, n: int) -> None:
    cache = VerdictCache(path)
    for i in range(n):  # one transaction per verdict: many interleaved writes
        key = verdict_key("judge", f"q{i}", "a", "b")
        cache.put_many(
            "judge", {key: (i / n, 0.001 * worker), verdict_key("judge", f"w{worker}-{i}", "a", "b"): (0.5, 0)}
        )


def test_two_processes_write_one_cache(tmp_path):
    path, n = str(tmp_path / "shared.sqlite"), 150
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_verdicts, args=(path, w, n)) for w in (1, 2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [p.exitcode for p in workers] == [0, 0]
    cache = VerdictCache(path)
    assert len(cache) == 3 * n  # n shared keys (first writer kept) + n per worker
    shared = cache.get_many([verdict_key("judge", f"q{i}", "a", "b") for i in range(n)])
    assert [v for v, _ in (shared[verdict_key("judge", f"q{i}", "a", "b")] for i in range(n))] == [
        pytest.approx(i / n) for i in range(n)
    ]


# ------------------------------------------------------------------------------- CLI and judges.csv
def test_cli_writes_card_and_reuses_verdicts(tmp_path, tiny_data):
    from upo.__main__ import main

    config = tmp_path / "exp.yaml"
    write_yaml(config, {"eval": {"judge": "oracle"}, "judge_card": {"pairs": 8, "n_boot": 100}})
    out, cache = tmp_path / "out" / "card.json", tmp_path / "j.sqlite"
    args = ["judge-card", "--config", str(config), "--dataset", "tiny", "--test", str(tiny_data["test"])]
    args += ["--out", str(out), "--judge-cache", str(cache)]
    assert main(args) == 0
    first = json.loads(out.read_text())
    assert first["pairs"] == 8 and first["cost"]["judged_now"] == 16 and first["cost"]["from_cache"] == 0
    assert first["card_config"]["pairs"] == 8 and first["test_sha256"]
    assert 0.0 <= first["agreement"]["ci_low"] <= first["agreement"]["value"] <= first["agreement"]["ci_high"] <= 1
    assert main(args) == 0
    second = json.loads(out.read_text())
    assert second["cost"]["judged_now"] == 0 and second["cost"]["from_cache"] == 16
    assert second["agreement"] == first["agreement"]
    assert second["cost"]["seconds_per_1000"] == pytest.approx(first["cost"]["seconds_per_1000"])
    write_yaml(config, {"eval": {"judge": "oracle"}, "judge_card": {"pairz": 8}})
    assert main(args) == 2  # unknown key: one clear line, nothing written
    assert main([*args[:-2], "--judge", "local-llm"]) == 2


def test_judges_table_joins_cards_to_the_win_rates(tmp_path, tiny_data):
    from upo.report.judge_table import JudgeCardError, judges_table, plot_judges
    from upo.report.summary import judges_section

    result = card(always_first)
    (tmp_path / "card.json").write_text(json.dumps(result))
    table = pd.DataFrame(
        {"dataset": ["toy", "toy"], "judge": [result["judge_hash"]] * 2, "judge_name": ["oracle"] * 2}
    )
    judges_csv = judges_table([tmp_path / "card.json"], table)
    assert judges_csv.loc[0, "position_bias"] == pytest.approx(1.0) and bool(judges_csv.loc[0, "in_table"])
    text = "\n".join(judges_section(judges_csv))
    assert "## Judges" in text and "1.000 [1.000, 1.000] (n=12)" in text
    other = table.assign(judge="000000000000")
    with pytest.raises(JudgeCardError, match="no judge card for dataset 'toy'"):
        judges_table([tmp_path / "card.json"], other)
    judges_csv.to_csv(tmp_path / "judges.csv", index=False)
    paths = plot_judges(tmp_path / "judges.csv", tmp_path / "fig")
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"] and all(p.stat().st_size > 0 for p in paths)


def test_experiment_cards_one_per_dataset_and_judge():
    config = {"eval": {"judge": "oracle"}, "models": {"a": {}, "b": {"eval": {"max_prompts": 3}}}}
    runs = [{"dataset": "d", "model": "a"}, {"dataset": "d", "model": "b"}, {"dataset": "e", "model": "a"}]
    cards = experiment_cards(config, runs)
    assert [(c["dataset"], c["judge"], c["model"]) for c in cards] == [("d", "oracle", "a"), ("e", "oracle", "a")]
    assert cards[0]["config"]["judge_card"]["pairs"] == 200
    config["models"]["b"]["eval"]["oracle_reward"] = "readability"
    with pytest.raises(ConfigError, match="configure judge 'oracle' differently"):
        experiment_cards(config, runs)


def test_aggregate_writes_judges_csv_beside_the_win_rates(tmp_path):
    from tests.unit.test_aggregate import JUDGE, RUNS, write_run
    from upo.report.aggregate import judge_hash, main

    metrics = [str(write_run(tmp_path / "runs", *run)) for run in RUNS]
    result = card(always_first) | {"dataset": "default", "judge": JUDGE, "judge_hash": judge_hash(JUDGE)}
    (tmp_path / "card.json").write_text(json.dumps(result))
    out = tmp_path / "out"
    assert main([*metrics, "--out-dir", str(out), "--n-boot", "20", "--judge-cards", str(tmp_path / "card.json")]) == 0
    judges_csv = pd.read_csv(out / "judges.csv")
    assert judges_csv[["dataset", "judge_name", "in_table"]].values.tolist() == [["default", "vader_oracle", True]]
    summary = (out / "summary.md").read_text()
    assert summary.index("| pico | sft") < summary.index("## Judges") < summary.index("## Claims at matched KL")
    stale = result | {"judge_hash": "000000000000"}
    (tmp_path / "stale.json").write_text(json.dumps(stale))
    assert main([*metrics, "--out-dir", str(tmp_path / "o2"), "--judge-cards", str(tmp_path / "stale.json")]) == 1
    assert not (tmp_path / "o2").exists()  # nothing partial written


def test_local_llm_card_on_the_tiny_model(tiny_model_dir, tmp_path):
    config = EvalConfig(judge="local-llm", judge_model=str(tiny_model_dir))
    cache = VerdictCache(tmp_path / "j.sqlite")
    result = build_card(config, records(6), JudgeCardConfig(n_boot=50), dataset="toy", cache=cache)
    assert result["position_bias"]["value"] == pytest.approx(0.5)  # both orders averaged inside the judge
    assert 0.0 <= result["agreement"]["value"] <= 1.0 and result["cost"]["judged_now"] == 12
    assert len(result["judge"]["model_sha256"]) == 64 and "position bias is 0.5 by construction" in result["note"]
