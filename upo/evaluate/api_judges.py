"""AlpacaEval's API annotators behind the verdict cache: only pairs never judged reach the API.

An ``eval.judge`` that is an AlpacaEval annotator config name (e.g. ``weighted_alpaca_eval_gpt4_turbo``)
is run by AlpacaEval's own ``PairwiseAnnotator`` (its prompt, decoder, parser, order switching and tie
rule), the object ``alpaca_eval.evaluate`` builds, but only for the pairs that
``upo.evaluate.verdict_cache`` lacks. Each verdict is stored as P(output_2 wins) = preference - 1 under
(judge identity, instruction, output_1, output_2), with the seconds, dollars and tokens of its API call,
so a fully cached evaluation or judge card makes no API call at all.

Cost, per verdict, from the annotation rows AlpacaEval returns:
    seconds  ``preference_time_per_example`` (the decoder's own timing), else our wall time / pairs;
    dollars  ``preference_price_per_example`` (AlpacaEval's decoders price the tokens they used), else None;
    tokens   ``total_tokens`` of the raw completion where the config's ``completion_key`` keeps the whole
             completion record (``completions_all``, e.g. the GPT-4-turbo logprob annotators with
             ``openai_completions``), divided by the config's ``batch_size``; else None: configs that
             keep only the completion text do not say how many tokens they used.
A pair with identical outputs is decided (1.5, a draw) by AlpacaEval without calling its annotator:
zero seconds, dollars and tokens.

The cache identity is the judge identity (``upo.evaluate.judges.judge_identity``, which keys the tables and
holds the annotator config file's hash) plus what else changes a verdict here: whether AlpacaEval switches the
presentation order at random (seeded on the instruction; on for win rates, as ``alpaca_eval.evaluate``
does, off for the judge card, which shows both orders itself) and the annotator seed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from upo.evaluate.verdict_cache import CachedPairJudge, VerdictCache

ANNOTATOR_SEED = 0  # alpaca_eval.evaluate's annotator seed: its order switch and its choice within a pool


class AnnotatorFailed(RuntimeError):
    """AlpacaEval's annotator gave no verdict for some pairs (API error or an unparsable completion)."""


def _number(value: Any) -> float | None:
    """A finite float, or None for AlpacaEval's missing values (None, NaN, absent)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def completion_tokens(raw_completion: Any, batch_size: int) -> float | None:
    """Tokens per example from a raw completion record (``{"total_tokens": ...}``, or its JSON text)."""
    if isinstance(raw_completion, str):
        try:
            raw_completion = json.loads(raw_completion)
        except ValueError:
            return None
    if not isinstance(raw_completion, dict):
        return None
    total = _number(raw_completion.get("total_tokens"))
    return None if total is None else total / batch_size


class CachedAnnotator(CachedPairJudge):
    """An AlpacaEval annotator config as a pair scorer that asks the API only for uncached pairs.

    Args:
        config_path: the annotator config (``<configs dir>/<name>/configs.yaml``).
        identity: the judge identity (``upo.evaluate.judges.judge_identity``).
        cache: the verdict store; ``None`` annotates every pair every time.
        randomize_order: ``None`` keeps AlpacaEval's setting (random order switching unless the config
            says otherwise), as ``alpaca_eval.evaluate``; ``False`` shows output_1 first (judge cards).

    Attributes: as :class:`upo.evaluate.verdict_cache.CachedPairJudge` (``judge_calls`` counts the runs of
    AlpacaEval's annotator), with dollars and tokens per pair.
    """

    records_costs = True

    def __init__(
        self,
        config_path: str | Path,
        identity: dict,
        cache: VerdictCache | None,
        *,
        randomize_order: bool | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        configs = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        if not isinstance(configs, dict) or not all(isinstance(c, dict) for c in configs.values()) or not configs:
            raise ValueError(f"{self.config_path}: not an AlpacaEval annotator config (name: settings mapping)")
        fixed = {
            name: bool(c["is_randomize_output_order"])
            for name, c in configs.items()
            if "is_randomize_output_order" in c
        }
        self._annotator_kwargs: dict[str, Any] = {}
        if randomize_order is None:
            orders = {name: fixed.get(name, True) for name in configs}
        elif not fixed:
            self._annotator_kwargs["is_randomize_output_order"] = randomize_order
            orders = dict.fromkeys(configs, randomize_order)
        elif len(fixed) == len(configs) and set(fixed.values()) == {randomize_order}:
            orders = fixed  # the config already says so (passing it again is an error in AlpacaEval)
        else:
            raise ValueError(
                f"{self.config_path}: its annotators fix is_randomize_output_order ({fixed}); "
                f"cannot run them with is_randomize_output_order={randomize_order}"
            )
        self.batch_sizes = {name: int(c.get("batch_size", 1)) for name, c in configs.items()}
        self.cache_identity = {
            **identity,  # its config names the annotator config's hash (``judges.judge_identity``)
            "randomize_output_order": orders,
            "annotator_seed": ANNOTATOR_SEED,
        }
        super().__init__(self.cache_identity, cache)

    def _judge_missing(self, instructions, outputs_1, outputs_2):
        """Run AlpacaEval's annotator on these pairs; a pair without a usable verdict gets ``None`` and
        an :class:`AnnotatorFailed` to raise once the others are stored."""
        from alpaca_eval.annotators import PairwiseAnnotator

        rows = [
            {"instruction": i, "output_1": a, "output_2": b}
            for i, a, b in zip(instructions, outputs_1, outputs_2, strict=True)
        ]
        start = time.perf_counter()
        annotator = PairwiseAnnotator(
            annotators_config=str(self.config_path),
            caching_path=None,  # our cache is the store; AlpacaEval would write beside its configs
            seed=ANNOTATOR_SEED,
            **self._annotator_kwargs,
        )
        annotated = annotator.annotate_pairs(rows)
        wall_per_pair = (time.perf_counter() - start) / len(rows)
        by_pair = {(a["instruction"], a["output_1"], a["output_2"]): a for a in annotated}
        verdicts, costs = [], []
        for row in rows:
            result = by_pair.get((row["instruction"], row["output_1"], row["output_2"]), {})
            preference = _number(result.get("preference"))  # 1: output_1 wins, 2: output_2, 1.5 (or 0): draw
            if preference is None or not (preference == 0 or 1 <= preference <= 2):
                verdicts.append(None)
                costs.append((None, None))
                continue
            if row["output_1"] == row["output_2"]:  # AlpacaEval decides these itself: no annotator call
                seconds, usd, tokens = 0.0, 0.0, 0.0
            else:
                timed = _number(result.get("preference_time_per_example"))
                seconds = wall_per_pair if timed is None else timed
                usd = _number(result.get("preference_price_per_example"))
                batch_size = self.batch_sizes.get(str(result.get("annotator")), 1)
                tokens = completion_tokens(result.get("preference_raw_completion"), batch_size)
            verdicts.append((0.5 if preference == 0 else preference - 1.0, seconds))
            costs.append((usd, tokens))
        failed = sum(v is None for v in verdicts)
        error = None
        if failed:
            kept = "cached" if self.cache is not None else "cached (no cache here)"
            error = AnnotatorFailed(
                f"AlpacaEval annotator {self.judge_name!r} ({self.config_path}) gave no verdict for {failed} of "
                f"{len(rows)} pairs (API error or unparsable completion; AlpacaEval logs why). The "
                f"{len(rows) - failed} verdicts it gave are {kept}; a rerun asks only for the rest."
            )
        return verdicts, costs, error


def api_win_rate(
    annotator: CachedAnnotator, model_rows: list[dict], reference_rows: list[dict]
) -> tuple[dict[str, Any], list[float]]:
    """Win rate of the model rows over the reference rows by an AlpacaEval annotator, through the cache.

    Pair i is (reference_rows[i], model_rows[i]) with the reference as output_1, as
    ``alpaca_eval.evaluate(..., annotation_kwargs={"is_ordered": True})`` pairs them. The metric is
    AlpacaEval's ``get_winrate`` on the annotations of **all** pairs, cached or not, so ``win_rate``,
    ``standard_error`` and ``n_total`` do not depend on what was cached. No length-controlled win rate:
    AlpacaEval's length control looks up the difficulty of *its own* 805 instructions by row position,
    which means nothing for another prompt set (and fails past 805 rows), so it is not reported.

    Returns:
        (AlpacaEval's metric dict, P(model output i beats its reference) per pair).
    """
    from alpaca_eval import metrics

    if not model_rows:
        raise ValueError("api_win_rate: no outputs to judge")
    mismatched = [
        n
        for n, (m, r) in enumerate(zip(model_rows, reference_rows, strict=True))
        if m["instruction"] != r["instruction"]
    ]
    if mismatched:
        raise ValueError(
            f"model and reference rows {mismatched[:5]} have different instructions; pairs must share one"
        )
    instructions = [r["instruction"] for r in model_rows]
    outputs_1, outputs_2 = [r["output"] for r in reference_rows], [r["output"] for r in model_rows]
    p_model = annotator(instructions, outputs_1, outputs_2)
    annotations = pd.DataFrame(
        {
            "instruction": instructions,
            "output_1": outputs_1,
            "output_2": outputs_2,
            "generator_1": reference_rows[0].get("generator", "reference"),
            "generator_2": model_rows[0].get("generator", "model"),
            "annotator": annotator.judge_name,
            "preference": [1.0 + p for p in p_model],  # AlpacaEval's encoding: 1 reference, 2 model, 1.5 draw
        }
    )
    return metrics.get_winrate(annotations), p_model
