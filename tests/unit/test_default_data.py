"""Default testbed: prompt lists, the generator on a tiny injected model, and the shipped files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from upo.data import testbed as default_data
from upo.data import testbed_prompts as prompts
from upo.data import testbed_report

SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "default"
RECORD_KEYS = {"id", "prompt", "chosen", "rejected", "source", "cluster", "aux", "oracle"}


def topic_of(prompt_id: str) -> str:
    """Prompt ids are ``default-<topic slug>-<style key>``."""
    return prompt_id[len("default-") :].rsplit("-", 1)[0]


def check_record(record: dict, reward_names: list[str] | None = None) -> None:
    assert set(record) == RECORD_KEYS, record["id"]
    assert record["source"] == "default"
    assert record["cluster"] == topic_of(record["id"])  # the topic: the report's bootstrap unit
    assert record["prompt"][-1]["role"] == "user" and record["prompt"][-1]["content"]
    assert record["chosen"] and record["rejected"]
    assert record["chosen"] == record["chosen"].strip()
    assert record["oracle"]["chosen"] > record["oracle"]["rejected"]
    for side in ("chosen", "rejected"):
        assert -1.0 <= record["oracle"][side] <= 1.0
        scores = record["aux"][side]
        if reward_names is not None:
            assert sorted(scores) == sorted(reward_names)
        assert all(0.0 <= v <= 1.0 for v in scores.values()), (record["id"], side, scores)


# ------------------------------------------------------------------------------------------ prompts


def test_prompt_lists_size_and_distinctness():
    assert len(set(prompts.TOPICS)) == len(prompts.TOPICS) == 125
    assert len({k for k, _ in prompts.STYLES}) == len(prompts.STYLES) == 8
    assert len({prompts.slug(t) for t in prompts.TOPICS}) == 125  # ids stay unique
    built = prompts.build_prompts(seed=0)
    assert len(built) == 1000
    assert len({p["text"] for p in built}) == len({p["id"] for p in built}) == 1000


def test_split_by_topic_is_deterministic():
    a, b, c = prompts.build_prompts(0), prompts.build_prompts(0), prompts.build_prompts(1)
    assert a == b
    test_topics = {p["topic"] for p in a if p["split"] == "test"}
    train_topics = {p["topic"] for p in a if p["split"] == "train"}
    assert len(test_topics) == 25 and sum(p["split"] == "test" for p in a) == 200
    assert not test_topics & train_topics
    assert all(topic_of(p["id"]) == prompts.slug(p["topic"]) for p in a)
    assert test_topics != {p["topic"] for p in c if p["split"] == "test"}


def test_small_prompt_counts():
    small = prompts.build_prompts(0, 16)
    assert len(small) == 16 and {p["split"] for p in small} == {"train", "test"}
    with pytest.raises(ValueError, match="n_prompts"):
        prompts.build_prompts(0, 1001)


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    x = [0.1, 0.5, 0.5, 0.9, -0.2, 0.3]
    y = [1.0, 2.0, 0.0, 3.0, 3.0, -1.0]
    assert testbed_report.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert testbed_report.spearman([1, 1, 1], [1, 2, 3]) is None


# ---------------------------------------------------------------------------------------- generator


def sentiment_llama(tokenizer_dir, scale: float = 8.0):
    """The shared tiny Llama (``tests/unit/tiny.py``) with an LM head that mostly says " love"/" smiled" or " hate".

    A purely random tiny model samples byte soup with no sentiment, so most pairs tie on the oracle and
    the test would hinge on a lucky seed. Here the LM head scores the pieces of the positive words by
    +scale * (h . v) and those of " hate" by -scale * (h . v) for one random direction v (every other
    token 0): each step picks a polarity from the hidden state, so responses carry varied sentiment.
    """
    from tests.unit.tiny import tiny_llama
    from upo.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    model = tiny_llama(tokenizer, 0, num_attention_heads=2, max_position_embeddings=128, tie_word_embeddings=False)
    hidden = model.config.hidden_size
    direction = torch.nn.functional.normalize(torch.randn(hidden, generator=torch.Generator().manual_seed(0)), dim=0)
    weight = torch.zeros(model.config.vocab_size, hidden)
    for word, sign in ((" love", 1.0), (" smiled", 1.0), (" hate", -1.0)):
        for token in tokenizer.encode(word, add_special_tokens=False):
            weight[token] = sign * scale * direction
    with torch.no_grad():
        model.lm_head.weight.copy_(weight)
    return model.eval(), tokenizer


def test_tiny_generation_run(tmp_path, tiny_tokenizer_dir):
    from upo.rewards.scorers import available_rewards

    torch.set_num_threads(1)
    model, tokenizer = sentiment_llama(tiny_tokenizer_dir)
    out = tmp_path / "default"
    provenance = default_data.generate_default_data(
        out,
        seed=0,
        n_prompts=16,
        samples=2,
        max_new_tokens=8,
        batch_size=16,
        model=model,
        tokenizer=tokenizer,
        tokenizer_out=tmp_path / "tok",
        vocab_size=300,
        samples_cache=tmp_path / "samples.json",
    )
    shipped = default_data.read_shipped(out)
    counts = provenance["counts"]
    assert counts["prompts"] == 16 and counts["responses"] == 32
    assert len(shipped["train"]) == counts["pairs_train"] and len(shipped["test"]) == counts["pairs_test"]
    assert (
        counts["pairs_train"]
        + counts["pairs_test"]
        + counts["dropped_equal_oracle"]
        + counts["dropped_empty_response"]
        == 16
    )
    for record in shipped["train"] + shipped["test"]:
        check_record(record, available_rewards())
    assert not {topic_of(r["id"]) for r in shipped["train"]} & {topic_of(r["id"]) for r in shipped["test"]}
    assert provenance["facts"] == testbed_report.problem_facts(shipped["train"] + shipped["test"])
    assert (tmp_path / "tok" / "tokenizer.json").is_file() and (out / "README.md").is_file()
    # reusing the cached samples reproduces the files without sampling
    again = default_data.generate_default_data(
        tmp_path / "again",
        seed=0,
        n_prompts=16,
        samples=2,
        max_new_tokens=8,
        batch_size=16,
        model=model,
        tokenizer=tokenizer,
        samples_cache=tmp_path / "samples.json",
        reuse_samples=True,
    )
    assert again["facts"] == provenance["facts"]
    assert provenance["generator_version"] == again["generator_version"] == default_data.GENERATOR_VERSION
    assert (tmp_path / "again" / "train.jsonl").read_text() == (out / "train.jsonl").read_text()
    with pytest.raises(ValueError, match="settings"):
        default_data.generate_default_data(
            tmp_path / "x",
            seed=0,
            n_prompts=16,
            samples=2,
            max_new_tokens=9,
            batch_size=16,
            model=model,
            tokenizer=tokenizer,
            samples_cache=tmp_path / "samples.json",
            reuse_samples=True,
        )


# ------------------------------------------------------------------------------------ shipped files


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "provenance.json").is_file():
        pytest.fail(f"the shipped default dataset is missing at {SHIPPED}")
    return default_data.read_shipped(SHIPPED), json.loads((SHIPPED / "provenance.json").read_text())


def test_shipped_records_validate(shipped):
    splits, provenance = shipped
    names = provenance["aux_rewards"]
    for split in ("train", "test"):
        for record in splits[split]:
            check_record(record, names)
    ids = [r["id"] for s in splits.values() for r in s]
    assert len(ids) == len(set(ids))
    total_bytes = sum((SHIPPED / f"{s}.jsonl").stat().st_size for s in ("train", "test"))
    assert total_bytes < 5_000_000


def test_shipped_split_is_by_topic(shipped):
    splits, provenance = shipped
    train_prompts = {r["prompt"][-1]["content"] for r in splits["train"]}
    test_prompts = {r["prompt"][-1]["content"] for r in splits["test"]}
    assert not train_prompts & test_prompts
    assert not {topic_of(r["id"]) for r in splits["train"]} & {topic_of(r["id"]) for r in splits["test"]}
    expected = {
        p["id"]: p["split"] for p in prompts.build_prompts(provenance["seed"], provenance["counts"]["prompts"])
    }
    for split, records in splits.items():
        assert all(expected[r["id"]] == split for r in records)


def test_shipped_provenance_matches_files(shipped):
    splits, provenance = shipped
    counts = provenance["counts"]
    assert counts["pairs_train"] == len(splits["train"]) and counts["pairs_test"] == len(splits["test"])
    assert counts["prompts"] >= 1000 and counts["prompts_test"] == 200
    assert (
        counts["pairs_train"]
        + counts["pairs_test"]
        + counts["dropped_equal_oracle"]
        + counts["dropped_empty_response"]
    ) == counts["prompts"]
    assert provenance["facts"] == testbed_report.problem_facts(splits["train"] + splits["test"])
    assert len(provenance["model"]["gguf_sha256"]) == 64
    # the shipped samples predate the shared sampler: the provenance names the generator that drew them
    assert provenance["generator_version"] == "1" and "1" in default_data.GENERATOR_VERSIONS
    assert not any(part.startswith("/") for part in provenance["command"].split())
    readme = (SHIPPED / "README.md").read_text()
    for name, facts in provenance["facts"].items():
        assert f"| {name} | {facts['spearman_oracle']} |" in readme
