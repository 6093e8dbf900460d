"""Judge cards: how far the judge behind every win rate can be trusted, measured on held-out labels.

``python -m upo judge-card --config CONFIG --dataset D --test TEST_JSONL --out CARD_JSON`` shows the
run's judge (the ``eval:`` section of CONFIG, an experiment config or a run.yaml; ``--model M`` takes
that model's overrides) ``judge_card.pairs`` held-out pairs of TEST_JSONL (a seeded subset stratified
over prompt clusters, as the evaluation prompts), each **in both orders**, and writes:

- ``agreement``: share of pairs where the judge prefers the dataset's ``chosen`` response, averaged over
  both orders (soft verdicts count as probabilities);
- ``position_bias``: share of verdicts that pick the response shown first (0.5 = none; 1.0 = always
  the first slot), and ``order_flip``: mean |P(chosen | shown first) - P(chosen | shown second)|;
- ``length_bias``: among pairs whose chosen response is the shorter one (words), the share where the
  judge prefers the longer (rejected) one; ``agreement_when_chosen_longer`` is its counterpart;
- ``cost``: seconds per 1,000 verdicts (one verdict = one ordered pair; measured, or as recorded in the
  verdict cache when the verdict was made earlier); for AlpacaEval API annotators (``upo.evaluate.api_judges``,
  same verdict cache, so a rerun makes no API call) also dollars per 1,000 from AlpacaEval's
  ``price_per_example`` and tokens per 1,000 from the completion's ``total_tokens``, each None unless every
  verdict has it (configs that keep only the completion text give no tokens);
- ``note``: what the numbers cannot say (e.g. the oracle on labels it made itself).

CIs are percentile intervals of a cluster bootstrap over pairs (``upo.report.stats``: whole prompt
clusters resampled; a record without a cluster is its own). The card carries the judge identity and its
12-character hash, the hash ``metrics.csv`` uses, so ``upo aggregate`` joins cards to win rates.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from upo.evaluate.api_judges import CachedAnnotator
from upo.evaluate.verdict_cache import DEFAULT_PATH as VERDICT_CACHE_PATH
from upo.evaluate.verdict_cache import CachedScorer, PairScorer, VerdictCache
from upo.io import read_yaml, sha256_file, write_json
from upo.report.stats import bootstrap_means, cluster_codes, percentile_ci
from upo.strict import ConfigError, from_dict, to_dict

CARD_SCHEMA_VERSION = 1


@dataclass
class JudgeCardConfig:
    """The experiment's ``judge_card:`` section. Not part of ``eval:``: every run.yaml carries ``eval``,
    and a setting of the card alone must not re-train or re-evaluate any run."""

    pairs: int = 200  # held-out pairs shown to the judge (each in both orders); all when fewer
    seed: int = 0  # seed of the stratified subset and of the bootstrap
    n_boot: int = 2000  # bootstrap replicates of the CIs
    level: float = 0.95  # CI level

    def __post_init__(self) -> None:
        if self.pairs < 1 or self.n_boot < 1:
            raise ConfigError("judge_card.pairs and judge_card.n_boot must be >= 1")
        if not 0 < self.level < 1:
            raise ConfigError("judge_card.level must be in (0, 1)")


def _interval(values: np.ndarray, clusters: list[str], n_boot: int, seed: int, level: float) -> dict[str, Any]:
    """Mean of per-pair values with a cluster-bootstrap percentile CI; ``None`` values when empty."""
    if len(values) == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    resampled = bootstrap_means([values.reshape(1, -1, 1)], cluster_codes(clusters), n_boot, seed)
    low, high = np.clip(percentile_ci(resampled.replicates[:, 0, 0], level), 0.0, 1.0)  # shares; drop float noise
    return {"value": float(resampled.estimate[0, 0]), "ci_low": float(low), "ci_high": float(high), "n": len(values)}


def card_statistics(
    p_chosen_first: list[float],
    p_chosen_second: list[float],
    words_chosen: list[int],
    words_rejected: list[int],
    clusters: list[str],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Agreement, position bias and length bias of a judge from its verdicts on N labelled pairs.

    Args:
        p_chosen_first: (N,) P(judge prefers chosen) when chosen is shown first (output_1).
        p_chosen_second: (N,) the same with the order swapped (chosen is output_2).
        words_chosen / words_rejected: (N,) response lengths in words.
        clusters: (N,) prompt cluster of each pair (the bootstrap resamples whole clusters).
    Returns:
        ``agreement``, ``position_bias``, ``order_flip``, ``length_bias`` and
        ``agreement_when_chosen_longer``, each ``{"value", "ci_low", "ci_high", "n"}``.
    """
    first = np.asarray(p_chosen_first, dtype=float)
    second = np.asarray(p_chosen_second, dtype=float)
    n = len(first)
    if n == 0 or not (len(second) == len(words_chosen) == len(words_rejected) == len(clusters) == n):
        raise ValueError(f"card_statistics: need N >= 1 equal-length inputs, got {n}, {len(second)}, {len(clusters)}")
    if ((first < 0) | (first > 1) | (second < 0) | (second > 1) | np.isnan(first) | np.isnan(second)).any():
        raise ValueError("card_statistics: verdicts must be probabilities in [0, 1]")
    agreement = 0.5 * (first + second)
    first_slot = 0.5 * (first + (1.0 - second))  # P(chosen | first) + P(rejected | first), halved
    flip = np.abs(first - second)
    chosen_w, rejected_w = np.asarray(words_chosen), np.asarray(words_rejected)
    shorter, longer = chosen_w < rejected_w, chosen_w > rejected_w

    def interval(values: np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
        keep = np.ones(n, dtype=bool) if mask is None else mask
        return _interval(values[keep], [c for c, k in zip(clusters, keep, strict=True) if k], n_boot, seed, level)

    return {
        "agreement": interval(agreement),
        "position_bias": interval(first_slot),
        "order_flip": interval(flip),
        "length_bias": interval(1.0 - agreement, shorter),
        "agreement_when_chosen_longer": interval(agreement, longer),
    }


def card_records(test_path: str | Path, pairs: int, seed: int) -> list[dict]:
    """The held-out records of the card: a seeded subset stratified over clusters (the evaluation's rule)."""
    from upo.config import EvalConfig
    from upo.evaluate.generation import eval_records

    run = SimpleNamespace(data=SimpleNamespace(test=str(test_path)))
    return eval_records(run, replace(EvalConfig(), max_prompts=pairs, seed=seed))


def _note(eval_config, records: list[dict]) -> str:
    if eval_config.judge == "oracle":
        base = (
            f"oracle judge: the gold score {eval_config.oracle_reward!r} "
            f"(temperature {eval_config.oracle_temperature:g}), not a model; it scores each response on its own, "
            "so its position bias is 0.5 by construction."
        )
        testbed = all(r.get("source") == "default" for r in records)
        if testbed and eval_config.oracle_reward == "sentiment":
            return (
                f"{base} The default testbed's labels ARE this oracle (chosen = the response with the higher VADER "
                "compound sentiment, ties dropped), so agreement is 1.0 by construction: it checks the plumbing, "
                "not the judge (and length bias is 0 for the same reason)."
            )
        return f"{base} Agreement says how often that score orders these labels as they do."
    if eval_config.judge == "local-llm":
        return (
            "local-llm judge as used for win rates: P('a') vs P('b') averaged over both presentation orders, so its "
            "position bias is 0.5 by construction (each verdict here is itself two forward passes)."
        )
    return (
        "AlpacaEval annotator: verdicts as its annotator returns them, each order shown as given (its own random "
        "order switching, used for win rates, off here), so position bias is the API judge's own. Dollars are "
        "AlpacaEval's price_per_example; tokens only where the config keeps the completion record (total_tokens)."
    )


def _api_costs(judge: CachedScorer | CachedAnnotator, what: str) -> list[float | None]:
    """Per verdict of the judge's last call: dollars or tokens (API annotators), None for our judges."""
    return list(getattr(judge, what)) if isinstance(judge, CachedAnnotator) else [None] * len(judge.seconds)


def _per_1000(values: list[float | None]) -> float | None:
    """1,000 x the mean over verdicts, or None unless every verdict has the number."""
    if not values or any(v is None for v in values):
        return None
    return 1000.0 * float(np.mean([float(v) for v in values if v is not None]))


def _price_table(judge: CachedScorer | CachedAnnotator) -> dict | None:
    if not isinstance(judge, CachedAnnotator):
        return None
    from upo.evaluate.judges import alpaca_eval_version

    return {
        "source": "AlpacaEval annotation rows' price_per_example (its decoders' prices)",
        "package": alpaca_eval_version(),
    }


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} torch threads)"


def build_card(
    eval_config,
    records: list[dict],
    card_config: JudgeCardConfig,
    *,
    dataset: str,
    scorer: PairScorer | None = None,
    cache: VerdictCache | None = None,
) -> dict[str, Any]:
    """Show the judge every record's (chosen, rejected) pair in both orders and summarise its verdicts.

    Args:
        eval_config: the ``eval:`` section (judge name and options).
        records: held-out records with ``prompt``, ``chosen``, ``rejected`` (and ``cluster``).
        scorer: override the judge's pair scorer (tests); never cached.
        cache: verdict store shared with the evaluation (verdicts made before cost no call).
    """
    from upo.evaluate import judges
    from upo.evaluate.generation import prompt_to_instruction
    from upo.report.aggregate import judge_hash

    if not records:
        raise ValueError("judge card: no held-out records")
    judges.check_judge_available(eval_config)
    identity = judges.judge_identity(eval_config)
    judge: CachedScorer | CachedAnnotator
    if scorer is not None:
        judge = CachedScorer(lambda: scorer, identity, None)
    elif eval_config.judge in judges.JUDGES:
        entry = judges.JUDGES.get(eval_config.judge)
        judge = CachedScorer(lambda: entry.scorer(eval_config), identity, cache)
    else:  # an AlpacaEval API annotator, each order shown as given (its own random switching off)
        config_path = judges.alpaca_config_path(eval_config.judge)
        judge = CachedAnnotator(config_path, identity, cache, randomize_order=False)
    instructions = [prompt_to_instruction(r["prompt"]) for r in records]
    chosen, rejected = [r["chosen"] for r in records], [r["rejected"] for r in records]
    seconds: list[float] = []
    usd: list[float | None] = []
    tokens: list[float | None] = []
    verdicts = []
    for output_1, output_2 in ((chosen, rejected), (rejected, chosen)):
        verdicts.append(list(judge(instructions, output_1, output_2)))
        seconds += judge.seconds
        usd += _api_costs(judge, "usd")
        tokens += _api_costs(judge, "tokens")
    # P(output_2 wins): with chosen as output_1, P(chosen) = 1 - p; with chosen as output_2, P(chosen) = p
    p_first, p_second = [1.0 - p for p in verdicts[0]], verdicts[1]
    stats = card_statistics(
        p_first,
        p_second,
        [len(t.split()) for t in chosen],
        [len(t.split()) for t in rejected],
        [str(r.get("cluster", r.get("id"))) for r in records],
        card_config.n_boot,
        card_config.seed,
        card_config.level,
    )
    return {
        "schema_version": CARD_SCHEMA_VERSION,
        "dataset": dataset,
        "judge": identity,
        "judge_hash": judge_hash(identity),
        "pairs": len(records),
        "clusters": len({str(r.get("cluster", r.get("id"))) for r in records}),
        "length_unit": "words",
        **stats,
        "cost": {
            "verdicts": len(seconds),
            "judged_now": judge.judged,
            "from_cache": judge.cached,
            "seconds_per_1000": 1000.0 * float(np.mean(seconds)),
            "tokens_per_1000": _per_1000(tokens),  # None: an offline judge, or an API that did not say
            "usd_per_1000": _per_1000(usd),
            "price_table": _price_table(judge),
            "device": _device() if isinstance(judge, CachedScorer) else f"API ({eval_config.judge})",
        },
        "note": _note(eval_config, records),
        "card_config": to_dict(card_config),
        "eval_config": to_dict(eval_config),
    }


def eval_section(config: dict, where: str, model: str | None = None) -> dict:
    """The ``eval:`` section of an experiment config or run.yaml, with ``models.<model>.eval`` on top."""
    section = dict(config.get("eval") or {})
    if model is not None:
        models = config.get("models") or {}
        if model not in models:
            raise ConfigError(f"{where}: --model {model!r} is not in models ({', '.join(models)})")
        section.update((models[model] or {}).get("eval") or {})
    return section


JUDGE_KEYS = ("judge", "oracle_reward", "oracle_temperature", "judge_model")  # what a judge identity reads


def experiment_cards(config: dict, runs: list[dict]) -> list[dict]:
    """The judge cards an experiment needs: one per (dataset, judge) its runs are judged by.

    Args:
        config: the experiment config (``eval:`` and ``models.<m>.eval`` overrides, ``judge_card:``).
        runs: its resolved run table (``upo.sweeps.validate_experiment``): ``dataset`` and ``model`` each.
    Returns:
        Sorted ``{"dataset", "judge", "model", "config"}``: ``config`` is the ``{"eval", "judge_card"}``
        the card is made with (``model`` is the first model judged that way).
    Raises:
        ConfigError: two models judged by the same judge name with different judge settings.
    """
    from upo.sweeps import stage_config

    card_config = to_dict(from_dict(JudgeCardConfig, config.get("judge_card") or {}, where="judge_card"))
    cards: dict[tuple[str, str], dict] = {}
    for dataset, model in sorted({(str(r["dataset"]), str(r["model"])) for r in runs}):
        # the evaluation settings of the model's preference runs, every config level merged
        typed = to_dict(stage_config(config, model, "preference").eval)
        section = typed
        key = (dataset, typed["judge"])
        settings = {k: typed[k] for k in JUDGE_KEYS}
        if key in cards:
            seen = cards[key]
            if seen["settings"] != settings:
                raise ConfigError(
                    f"models {seen['model']!r} and {model!r} configure judge {typed['judge']!r} differently "
                    f"({', '.join(JUDGE_KEYS)}); one judge name, one setting per experiment"
                )
            continue
        cards[key] = {
            "dataset": dataset,
            "judge": typed["judge"],
            "model": model,
            "config": {"eval": section, "judge_card": card_config},
            "settings": settings,
        }
    return [{k: v for k, v in cards[key].items() if k != "settings"} for key in sorted(cards)]


def main(argv: list[str]) -> int:
    from upo.config import EvalConfig

    parser = argparse.ArgumentParser(prog="python -m upo judge-card", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="experiment config or run.yaml (its eval: and judge_card: sections)")
    source.add_argument("--config-json", help='the same as a JSON object {"eval": ..., "judge_card": ...} (workflow)')
    parser.add_argument("--dataset", required=True, help="dataset name (recorded in the card)")
    parser.add_argument("--test", required=True, help="held-out split with chosen/rejected labels (record JSONL)")
    parser.add_argument("--out", required=True, help="card JSON to write")
    parser.add_argument("--model", default=None, help="take this model's eval overrides (experiment configs)")
    parser.add_argument("--judge", default=None, help="fail unless the eval section's judge is this one")
    parser.add_argument(
        "--judge-cache",
        default=VERDICT_CACHE_PATH,
        help=f"sqlite cache of judge verdicts (default {VERDICT_CACHE_PATH}; '' for none)",
    )
    args = parser.parse_args(argv)
    if args.config is not None and not Path(args.config).is_file():
        raise FileNotFoundError(f"{args.config}: config not found")
    if not Path(args.test).is_file():
        raise FileNotFoundError(f"{args.test}: held-out split not found")
    where = args.config or "--config-json"
    config = (read_yaml(args.config) if args.config else json.loads(args.config_json)) or {}
    eval_config = from_dict(EvalConfig, eval_section(config, where, args.model), where=f"{where}: eval")
    card_config = from_dict(JudgeCardConfig, config.get("judge_card") or {}, where=f"{where}: judge_card")
    if args.judge is not None and args.judge != eval_config.judge:
        raise ConfigError(f"{where}: eval.judge is {eval_config.judge!r}, not --judge {args.judge!r}")
    records = card_records(args.test, card_config.pairs, card_config.seed)
    cache = VerdictCache(args.judge_cache) if args.judge_cache else None
    card = build_card(eval_config, records, card_config, dataset=args.dataset, cache=cache)
    card["test_file"] = str(args.test)
    card["test_sha256"] = sha256_file(args.test)
    write_json(args.out, card)
    agreement, position = card["agreement"], card["position_bias"]
    print(
        f"judge-card: {eval_config.judge} on {args.dataset}: agreement {agreement['value']:.3f} "
        f"[{agreement['ci_low']:.3f}, {agreement['ci_high']:.3f}], first slot {position['value']:.3f}, "
        f"{card['cost']['judged_now']} verdicts judged, {card['cost']['from_cache']} cached -> {args.out}",
        file=sys.stderr,
    )
    return 0
