"""AlpacaEval API annotators behind the verdict cache: win rates and judge cards, offline.

The fake "API" annotator is a real AlpacaEval annotator config in a temporary configs folder, shaped as
``weighted_alpaca_eval_gpt4_turbo`` (``completion_key: completions_all``, ``logprob_parser`` over the
tokens m / M). AlpacaEval reads ``fn_completions`` from a config only as the name of one of its
registered decoders (a callable is accepted as a keyword argument, which would bypass the config), so
the config names the registered ``test_completions`` decoder and the tests replace that one function
(``alpaca_eval.decoders.test.test_completions``) by a deterministic fake that counts the prompts it is
sent and returns logprobs, ``total_tokens``, ``price_per_example`` and ``time_per_example`` as
``openai_completions`` does. Everything between (prompt template, order switching, parsing, the metric)
is AlpacaEval's own code. No length-controlled win rate is reported for our prompt sets (see
``upo.evaluate.api_judges.api_win_rate``), so nothing reaches the hub.
"""

from __future__ import annotations

import math
import re
import sqlite3

import pytest

from upo.evaluate import api_judges, judges
from upo.evaluate.evaluation import EvalConfig
from upo.evaluate.judge_card import JudgeCardConfig, build_card
from upo.evaluate.verdict_cache import VerdictCache
from upo.report.aggregate import judge_hash

NAME = "fake_api_judge"
PRICE, TOKENS, SECONDS = 0.002, 120, 0.25  # what the fake API reports per prompt
TEMPLATE = "<instruction>{instruction}</instruction><first>{output_1}</first><second>{output_2}</second>"
CONFIG = f"""{NAME}:
  prompt_template: "{NAME}/prompt.txt"
  fn_completions: "test_completions"
  completions_kwargs:
    model_name: "fake-judge"
    first_slot_bonus: {{bonus}}
  fn_completion_parser: "logprob_parser"
  completion_parser_kwargs:
    numerator_token: "m"
    denominator_tokens: ["m", "M"]
    is_binarize: false
  completion_key: "completions_all"
  batch_size: 1
"""


def p_second_wins(first: str, second: str, bonus: float) -> float:
    """The fake judge: the longer output wins with probability 0.8; ``bonus`` moves mass to the first slot."""
    base = 0.5 if len(first) == len(second) else (0.8 if len(second) > len(first) else 0.2)
    return base - bonus


@pytest.fixture
def fake_api(tmp_path, monkeypatch):
    """The annotator config ``fake_api_judge`` (first-slot bonus 0); returns the list of prompt batches sent."""
    from alpaca_eval import constants
    from alpaca_eval.decoders import test as test_decoder

    calls: list[int] = []

    def fake_completions(prompts, model_name="test", first_slot_bonus=0.0, **_):
        calls.append(len(prompts))
        records = []
        for prompt in prompts:
            first, second = re.search(r"<first>(.*)</first><second>(.*)</second>", prompt, re.DOTALL).groups()
            p2 = p_second_wins(first, second, float(first_slot_bonus))
            top = [{"token": "m", "logprob": math.log(1.0 - p2)}, {"token": "M", "logprob": math.log(p2)}]
            records.append({"text": "M", "total_tokens": TOKENS, "logprobs": {"content": [{"top_logprobs": top}]}})
        n = len(prompts)
        return {
            "completions": [r["text"] for r in records],
            "completions_all": records,
            "price_per_example": [PRICE] * n,
            "time_per_example": [SECONDS] * n,
        }

    configs = tmp_path / "configs"
    write_config(configs, 0.0)
    monkeypatch.setattr(constants, "EVALUATORS_CONFIG_DIR", configs)
    monkeypatch.setattr(test_decoder, "test_completions", fake_completions)
    return calls


def write_config(configs, bonus: float) -> None:
    (configs / NAME).mkdir(parents=True, exist_ok=True)
    (configs / NAME / "prompt.txt").write_text(TEMPLATE, encoding="utf-8")
    (configs / NAME / "configs.yaml").write_text(CONFIG.replace("{bonus}", str(bonus)), encoding="utf-8")


def rows(outputs: list[str], generator: str) -> list[dict]:
    return [{"instruction": f"prompt {i}", "output": o, "generator": generator} for i, o in enumerate(outputs)]


MODEL = ["a much longer answer", "s", "same", "another long answer here", "x", "a long reply"]
REFERENCE = ["short", "a longer reference", "same", "ref", "a longer reference", "tiny"]
EXPECTED = [0.8, 0.2, 0.5, 0.8, 0.2, 0.8]  # P(model wins) per pair; "same" is AlpacaEval's draw


def test_second_win_rate_makes_zero_api_calls(fake_api, tmp_path):
    cache = VerdictCache(tmp_path / "judges.sqlite")
    config = EvalConfig(judge=NAME)
    first, prefs = judges.win_rate(config, rows(MODEL, "model"), rows(REFERENCE, "reference"), cache=cache)
    assert prefs == pytest.approx(EXPECTED)
    assert sum(fake_api) == 5  # the identical pair is AlpacaEval's draw without a call
    assert first["value"] == pytest.approx(100 * sum(EXPECTED) / 6)
    assert first["n"] == 6 and first["judge"]["name"] == NAME and first["length_controlled"] is None
    calls_before = len(fake_api)
    second, prefs_again = judges.win_rate(config, rows(MODEL, "model"), rows(REFERENCE, "reference"), cache=cache)
    assert len(fake_api) == calls_before  # not one API call
    assert prefs_again == prefs and second == first  # length-controlled too: computed on all pairs either way


def test_partially_cached_set_sends_only_the_misses(fake_api, tmp_path):
    cache = VerdictCache(tmp_path / "judges.sqlite")
    config = EvalConfig(judge=NAME)
    judges.win_rate(config, rows(MODEL[:3], "model"), rows(REFERENCE[:3], "reference"), cache=cache)
    assert sum(fake_api) == 2
    fake_api.clear()
    result, prefs = judges.win_rate(config, rows(MODEL, "model"), rows(REFERENCE, "reference"), cache=cache)
    assert sum(fake_api) == 3  # pairs 3, 4, 5 only
    assert prefs == pytest.approx(EXPECTED)
    uncached, _ = judges.win_rate(config, rows(MODEL, "model"), rows(REFERENCE, "reference"), cache=None)
    assert uncached == result


def test_without_cache_every_call_reaches_the_api(fake_api):
    config = EvalConfig(judge=NAME)
    for _ in range(2):
        result, prefs = judges.win_rate(config, rows(MODEL, "model"), rows(REFERENCE, "reference"))
        assert prefs == pytest.approx(EXPECTED)
        assert result["se"] == pytest.approx(100 * statistics_sem(EXPECTED))
    assert sum(fake_api) == 10


def statistics_sem(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))


def card_records(n: int = 8) -> list[dict]:
    """Labelled pairs; chosen is the longer response in even rows, the shorter in odd ones."""
    out = []
    for i in range(n):
        short, long = f"ok {i}", f"a much longer response number {i}"
        chosen, rejected = (long, short) if i % 2 == 0 else (short, long)
        prompt = [{"role": "user", "content": f"question {i}"}]
        out.append({"id": f"r{i}", "prompt": prompt, "chosen": chosen, "rejected": rejected, "cluster": f"c{i % 4}"})
    return out


def test_judge_card_for_an_api_annotator_reports_dollars_and_reruns_free(fake_api, tmp_path):
    from alpaca_eval import constants

    write_config(constants.EVALUATORS_CONFIG_DIR, 0.1)  # the fake favours the first slot by 0.1
    cache = VerdictCache(tmp_path / "judges.sqlite")
    config = EvalConfig(judge=NAME)
    card = build_card(config, card_records(), JudgeCardConfig(n_boot=200), dataset="toy", cache=cache)
    assert sum(fake_api) == 16  # 8 pairs in both orders
    # In each order P(first slot) = 1 - (base - 0.1), with base 0.8 and 0.2 over the two orders: 0.6.
    assert card["position_bias"]["value"] == pytest.approx(0.6)
    # chosen longer (even rows): P(chosen) 0.9 shown first, 0.7 shown second -> 0.8; shorter: 0.3 and 0.1 -> 0.2
    assert card["agreement"]["value"] == pytest.approx(0.5)
    assert card["length_bias"]["value"] == pytest.approx(0.8)
    cost = card["cost"]
    assert cost["usd_per_1000"] == pytest.approx(1000 * PRICE)
    assert cost["tokens_per_1000"] == pytest.approx(1000 * TOKENS)
    assert cost["seconds_per_1000"] == pytest.approx(1000 * SECONDS)
    assert cost["judged_now"] == 16 and cost["from_cache"] == 0 and cost["device"] == f"API ({NAME})"
    assert "price_per_example" in cost["price_table"]["source"]
    again = build_card(config, card_records(), JudgeCardConfig(n_boot=200), dataset="toy", cache=cache)
    assert sum(fake_api) == 16  # the rerun costs zero API calls
    assert again["cost"]["from_cache"] == 16 and again["cost"]["judged_now"] == 0
    assert again["cost"]["usd_per_1000"] == cost["usd_per_1000"]  # the cost as recorded with the verdicts
    assert again["agreement"] == card["agreement"] and again["judge_hash"] == card["judge_hash"]


def test_card_and_win_rate_verdicts_do_not_mix(fake_api, tmp_path):
    """Win rates use AlpacaEval's random order switching, the card shows each order as given: two cache keys."""
    cache = VerdictCache(tmp_path / "judges.sqlite")
    identity = judges.judge_identity(EvalConfig(judge=NAME))
    path = judges.alpaca_config_path(NAME)
    switched = api_judges.CachedAnnotator(path, identity, cache)
    as_shown = api_judges.CachedAnnotator(path, identity, cache, randomize_order=False)
    assert switched.identity_sha != as_shown.identity_sha
    assert switched.cache_identity["randomize_output_order"] == {NAME: True}


def test_editing_the_annotator_config_changes_the_judge(fake_api):
    """Another API model or temperature in configs.yaml is another judge: tables must not merge them."""
    from alpaca_eval import constants

    before = judges.judge_identity(EvalConfig(judge=NAME))
    write_config(constants.EVALUATORS_CONFIG_DIR, 0.3)
    after = judges.judge_identity(EvalConfig(judge=NAME))
    assert before["config"]["annotators_config_sha256"] != after["config"]["annotators_config_sha256"]
    assert judge_hash(before) != judge_hash(after)


def test_failed_annotations_raise_and_keep_the_rest(fake_api, tmp_path, monkeypatch):
    from alpaca_eval.decoders import test as test_decoder

    working = test_decoder.test_completions

    def flaky(prompts, **kwargs):
        out = working(prompts, **kwargs)
        for record, prompt in zip(out["completions_all"], prompts, strict=True):
            if "BROKEN" in prompt:
                record["logprobs"]["content"][0]["top_logprobs"] = [{"token": "x", "logprob": 0.0}]  # unparsable
        return out

    monkeypatch.setattr(test_decoder, "test_completions", flaky)
    cache = VerdictCache(tmp_path / "judges.sqlite")
    model = ["a much longer answer", "BROKEN answer", "long enough answer"]
    with pytest.raises(api_judges.AnnotatorFailed, match="no verdict for 1 of 3"):
        judges.win_rate(EvalConfig(judge=NAME), rows(model, "model"), rows(["a", "b", "c"], "reference"), cache=cache)
    assert len(cache) == 2  # the two verdicts it gave are kept; a rerun asks only for the third


def test_cache_file_from_before_costs_gains_the_cost_table(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE verdicts (key TEXT PRIMARY KEY, judge TEXT NOT NULL, verdict REAL NOT NULL, "
        "seconds REAL NOT NULL, created REAL NOT NULL)"
    )
    db.execute("INSERT INTO verdicts VALUES ('k0', 'oracle', 1.0, 0.1, 0.0)")
    db.commit()
    db.close()
    cache = VerdictCache(path)
    cache.put_many("api", {"k1": (0.3, 0.2)}, {"k1": (0.002, None)})
    assert cache.get_many(["k0", "k1"]) == {"k0": (1.0, 0.1), "k1": (0.3, 0.2)}
    assert cache.get_costs(["k0", "k1"]) == {"k1": (0.002, None)}
    with pytest.raises(ValueError, match="without a verdict"):
        cache.put_many("api", {"k2": (0.5, 0.0)}, {"k3": (0.0, 0.0)})


def test_tokens_from_completion_records():
    assert api_judges.completion_tokens({"text": "M", "total_tokens": 390.0}, 1) == 390.0
    assert api_judges.completion_tokens('{"total_tokens": 100}', 4) == 25.0
    assert api_judges.completion_tokens("M", 1) is None  # configs that keep only the text
    assert api_judges.completion_tokens(None, 1) is None
