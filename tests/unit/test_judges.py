"""Judges: oracle win rates through AlpacaEval, position-debiased local judge, availability checks."""

from __future__ import annotations

import pytest

from upo.config import EvalConfig
from upo.evaluate import judges, local_judge


def rows(outputs: list[str], generator: str = "model") -> list[dict]:
    return [{"instruction": f"prompt {i}", "output": o, "generator": generator} for i, o in enumerate(outputs)]


def length_scorer(instructions, outputs_1, outputs_2):
    """Toy gold judge: the longer output wins (ties 0.5)."""
    return [judges.preference_from_scores(len(a), len(b), 0.0) for a, b in zip(outputs_1, outputs_2, strict=False)]


def test_oracle_all_wins_gives_100():
    model = rows(["a much longer answer"] * 6)
    reference = rows(["short"] * 6, "reference")
    result, prefs = judges.win_rate(EvalConfig(judge="oracle"), model, reference, scorer=length_scorer)
    assert result["value"] == pytest.approx(100.0)
    assert result["n"] == 6 and prefs == [1.0] * 6
    assert result["judge"]["name"] == "oracle" and result["judge"]["package"].startswith("alpaca_eval==")


def test_oracle_identical_outputs_give_50():
    texts = [f"same answer {i}" for i in range(5)]
    result, prefs = judges.win_rate(EvalConfig(), rows(texts), rows(texts, "reference"), scorer=length_scorer)
    assert result["value"] == pytest.approx(50.0)
    assert prefs == [0.5] * 5


def test_oracle_mixed_and_duplicate_instructions_stay_paired():
    # Two samples share an instruction: pairing must follow row order, not a join on instruction.
    model = [{"instruction": "same", "output": "long output here"}, {"instruction": "same", "output": "s"}]
    reference = [{"instruction": "same", "output": "mid"}, {"instruction": "same", "output": "mid"}]
    result, prefs = judges.win_rate(EvalConfig(), model, reference, scorer=length_scorer)
    assert prefs == [1.0, 0.0]
    assert result["value"] == pytest.approx(50.0)


def test_oracle_with_real_sentiment_reward():
    model = rows(["I love this, it is wonderful and great!"] * 3)
    reference = rows(["I hate this, it is awful and terrible."] * 3, "reference")
    result, _ = judges.win_rate(EvalConfig(judge="oracle", oracle_reward="sentiment"), model, reference)
    assert result["value"] == pytest.approx(100.0)


def test_soft_preferences():
    assert judges.preference_from_scores(0.2, 0.2, 0.1) == pytest.approx(0.5)
    assert judges.preference_from_scores(0.2, 0.3, 0.1) == pytest.approx(1 / (1 + 2.718281828**-1), rel=1e-6)
    assert judges.preference_from_scores(0.3, 0.2, 0.0) == 0.0


def test_local_judge_position_bias_cancels():
    always_a = local_judge.position_debiased_scorer(lambda prompts: [1.0] * len(prompts))
    result, prefs = judges.win_rate(
        EvalConfig(), rows(["x1", "x2", "x3", "x4"]), rows(["y1", "y2", "y3", "y4"], "reference"), scorer=always_a
    )
    assert prefs == [0.5] * 4
    assert result["value"] == pytest.approx(50.0)


def test_local_judge_on_tiny_model(tiny_model_dir):
    from upo.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(tiny_model_dir, device="cpu")
    probs = local_judge.letter_probability_fn(model, tokenizer)(["which is better?", "another question"])
    assert len(probs) == 2 and all(0.0 < p < 1.0 for p in probs)
    scorer = local_judge.position_debiased_scorer(local_judge.letter_probability_fn(model, tokenizer))
    assert all(0.0 <= p <= 1.0 for p in scorer(["q"], ["a reply"], ["b reply"]))
    identity = judges.judge_identity(EvalConfig(judge="local-llm", judge_model=str(tiny_model_dir)))
    assert len(identity["model_sha256"]) == 64 and len(identity["prompt_sha256"]) == 64


def test_unknown_judge_lists_known():
    with pytest.raises(KeyError, match="oracle"):
        judges.check_judge_available(EvalConfig(judge="no-such-judge"))


def test_api_judge_without_key_fails_at_once(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(judges.JudgeUnavailable, match="OPENAI_API_KEY"):
        judges.check_judge_available(EvalConfig(judge="weighted_alpaca_eval_gpt4_turbo"))
    identity = judges.judge_identity(EvalConfig(judge="weighted_alpaca_eval_gpt4_turbo"))
    assert len(identity["prompt_sha256"]) == 64


def test_local_judge_needs_model_folder(tmp_path):
    with pytest.raises(judges.JudgeUnavailable, match="judge_model"):
        judges.check_judge_available(EvalConfig(judge="local-llm", judge_model=str(tmp_path)))


def test_oracle_unknown_reward():
    with pytest.raises(judges.JudgeUnavailable, match="oracle_reward"):
        judges.check_judge_available(EvalConfig(oracle_reward="nope"))


def test_identity_is_stable():
    assert judges.judge_identity(EvalConfig()) == judges.judge_identity(EvalConfig(max_prompts=3))


def test_transport_round_trip():
    prompt = judges.TRANSPORT_TEMPLATE.format(instruction="i\nj", output_1="a {b}", output_2="c")
    assert judges.parse_transport_prompt(prompt) == ("i\nj", "a {b}", "c")
