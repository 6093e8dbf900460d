"""Pairwise judges and the win rate, computed by AlpacaEval's own annotator and metric code.

A run's outputs are compared with reference outputs (the dataset's chosen response or the SFT
model's sample) by ``alpaca_eval.evaluate(..., fn_metric="get_winrate")``, so the win rate and its
standard error are AlpacaEval's. Our judges plug in as a Python callable ``fn_completions``: the
annotator fills a machine-readable prompt template with ``instruction``, ``output_1`` (reference)
and ``output_2`` (model), our callable parses it back, scores the pair and returns the preference
as text in AlpacaEval's encoding (1 = output_1 wins, 2 = output_2 wins, 1.5 = tie, floats allowed).
AlpacaEval's random order switching and tie handling (identical outputs -> 1.5) still apply.

Judges (registry ``JUDGES``):
    ``oracle``     a gold scoring function from ``upo.rewards.scorers`` (default VADER ``sentiment``, the
                   default testbed's user preference); hard or soft (sigmoid of the score gap / T).
    ``local-llm``  a local causal LM asked which response is better; P("a") vs P("b") as the next
                   token, averaged over both presentation orders to cancel position bias
                   (``upo.evaluate.local_judge``).
    any AlpacaEval annotator config name (e.g. ``weighted_alpaca_eval_gpt4_turbo``): AlpacaEval's
                   own API judges, which need ``OPENAI_API_KEY`` (checked up front); run by AlpacaEval's
                   annotator on the pairs the verdict cache lacks only (``upo.evaluate.api_judges``).

Every judge's verdicts go through ``upo.evaluate.verdict_cache`` when a cache is given, so
re-evaluating a finished study costs no judge call.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from upo.evaluate.local_judge import LOCAL_JUDGE_PROMPT, local_llm_scorer
from upo.evaluate.verdict_cache import CachedScorer, VerdictCache
from upo.io import sha256_dir, sha256_file, sha256_text
from upo.registry import Registry

if TYPE_CHECKING:
    from upo.config import EvalConfig

# Prompt template given to AlpacaEval for our in-process judges. It is a transport format, not a
# judging prompt: the callable splits it back into its three fields.
_MARKERS = ("<|upo-instruction|>\n", "\n<|upo-output-1|>\n", "\n<|upo-output-2|>\n", "\n<|upo-end|>")
TRANSPORT_TEMPLATE = "".join(
    m + f for m, f in zip(_MARKERS, ("{instruction}", "{output_1}", "{output_2}", ""), strict=True)
)

# Environment variables each AlpacaEval decoder needs; checked before any generation work.
_API_KEYS = {
    "openai_completions": "OPENAI_API_KEY",
    "anthropic_completions": "ANTHROPIC_API_KEY",
    "google_completions": "GOOGLE_API_KEY",
    "cohere_completions": "COHERE_API_KEY",
}

# A pairwise scorer: (instructions, outputs_1, outputs_2) -> P(output_2 beats output_1), each in [0, 1].
PairScorer = Callable[[list[str], list[str], list[str]], list[float]]


class JudgeUnavailable(RuntimeError):
    """The configured judge cannot run here (missing API key, model folder or reward)."""


@dataclass(frozen=True)
class JudgeEntry:
    """A registered judge: how to check it, describe it and build its pair scorer."""

    check: Callable[[EvalConfig], None]
    identity: Callable[[EvalConfig], dict]
    scorer: Callable[[EvalConfig], PairScorer]


JUDGES: Registry[JudgeEntry] = Registry("judge")


def alpaca_eval_version() -> str:
    return f"alpaca_eval=={metadata.version('alpaca_eval')}"


def _alpaca_configs_dir() -> Path:
    from alpaca_eval import constants

    return Path(constants.EVALUATORS_CONFIG_DIR)


def alpaca_config_path(name: str) -> Path:
    """The ``configs.yaml`` of an AlpacaEval annotator name (it may not exist)."""
    return _alpaca_configs_dir() / name / "configs.yaml"


def _alpaca_config(name: str) -> dict | None:
    """The annotator config of an AlpacaEval annotator name, or None when it is not one."""
    path = alpaca_config_path(name)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def available_judges() -> list[str]:
    """Our registered judges (AlpacaEval annotator config names are accepted as well)."""
    return JUDGES.available()


def _unknown_judge(name: str) -> KeyError:
    return KeyError(
        f"unknown judge {name!r}; known: {', '.join(JUDGES.available())}, or an AlpacaEval annotator "
        f"config name (a folder of {_alpaca_configs_dir()}, e.g. weighted_alpaca_eval_gpt4_turbo)"
    )


def check_judge_available(eval_config: EvalConfig) -> None:
    """Raise at once if the judge cannot run: unknown name, missing API key, model or reward.

    Raises:
        KeyError: unknown judge (the message lists the known judges).
        JudgeUnavailable: the judge is known but unusable here.
    """
    name = eval_config.judge
    if name in JUDGES:
        JUDGES.get(name).check(eval_config)
        return
    config = _alpaca_config(name)
    if config is None:
        raise _unknown_judge(name)
    for annotator in config.values():
        decoder = annotator.get("fn_completions", "openai_completions")
        key = _API_KEYS.get(decoder)
        if key and not os.environ.get(key):
            raise JudgeUnavailable(
                f"judge {name!r} calls {decoder} and needs the environment variable {key}; it is not "
                f"set. Set it, or use an offline judge: {', '.join(JUDGES.available())}"
            )


def judge_identity(eval_config: EvalConfig) -> dict:
    """Who judged: name, options, judging-prompt and judge-weights hashes, AlpacaEval version.

    Identical for every run judged the same way, so results can share one table. For an AlpacaEval
    annotator the options are its ``configs.yaml`` (API model, temperature, decoding): its hash is part
    of the identity, so editing the file gives a new judge hash instead of merging two judges' win rates.
    """
    name = eval_config.judge
    if name in JUDGES:
        return JUDGES.get(name).identity(eval_config)
    config = _alpaca_config(name)
    if config is None:
        raise _unknown_judge(name)
    templates = sorted(
        str(_alpaca_configs_dir() / a["prompt_template"]) for a in config.values() if "prompt_template" in a
    )
    prompt_sha = sha256_text("".join(sha256_file(t) for t in templates if Path(t).is_file())) if templates else None
    return {
        "name": name,
        "config": {"annotators_config": name, "annotators_config_sha256": sha256_file(alpaca_config_path(name))},
        "prompt_sha256": prompt_sha,
        "model_sha256": None,
        "package": alpaca_eval_version(),
    }


# ----------------------------------------------------------------------------------- oracle judge
def _oracle_check(cfg: EvalConfig) -> None:
    from upo.rewards import scorers as rewards

    if cfg.oracle_reward not in rewards.available_rewards():
        raise JudgeUnavailable(
            f"eval.oracle_reward {cfg.oracle_reward!r} is not a reward; known: "
            f"{', '.join(rewards.available_rewards())}"
        )
    if cfg.oracle_temperature < 0:
        raise JudgeUnavailable("eval.oracle_temperature must be >= 0 (0 = hard preferences)")


def _oracle_identity(cfg: EvalConfig) -> dict:
    return {
        "name": "oracle",
        "config": {"oracle_reward": cfg.oracle_reward, "oracle_temperature": cfg.oracle_temperature},
        "prompt_sha256": None,
        "model_sha256": None,
        "package": alpaca_eval_version(),
    }


def preference_from_scores(score_1: float, score_2: float, temperature: float) -> float:
    """P(output 2 beats output 1) from gold scores: sigmoid((s2 - s1) / T); T = 0 gives 0, 0.5 or 1."""
    gap = score_2 - score_1
    if temperature == 0:
        return 0.5 if gap == 0 else float(gap > 0)
    return 1.0 / (1.0 + math.exp(-gap / temperature))


def oracle_scorer(score_texts: Callable[[list[str], list[str]], list[float]], temperature: float) -> PairScorer:
    """Pair scorer from a gold score function ``score_texts(texts, prompts) -> [0, 1] scores``."""

    def score(instructions: list[str], outputs_1: list[str], outputs_2: list[str]) -> list[float]:
        s1 = score_texts(outputs_1, instructions)
        s2 = score_texts(outputs_2, instructions)
        return [preference_from_scores(a, b, temperature) for a, b in zip(s1, s2, strict=True)]

    return score


def _oracle_scorer(cfg: EvalConfig) -> PairScorer:
    from upo.rewards import scorers as rewards

    return oracle_scorer(
        lambda texts, prompts: rewards.score_texts(cfg.oracle_reward, texts, prompts=prompts),
        cfg.oracle_temperature,
    )


JUDGES.register("oracle", JudgeEntry(_oracle_check, _oracle_identity, _oracle_scorer))


# ---------------------------------------------------------------------------------- local LLM judge
# The judge itself (its prompt, letter probabilities, position debiasing) is upo.evaluate.local_judge.
def _local_check(cfg: EvalConfig) -> None:
    if not cfg.judge_model or not (Path(cfg.judge_model) / "config.json").is_file():
        raise JudgeUnavailable(
            f"judge 'local-llm' needs eval.judge_model = an HF model folder; got {cfg.judge_model!r}"
        )


def _local_identity(cfg: EvalConfig) -> dict:
    _local_check(cfg)
    return {
        "name": "local-llm",
        "config": {"judge_model": Path(cfg.judge_model).name},
        "prompt_sha256": sha256_text(LOCAL_JUDGE_PROMPT),
        "model_sha256": sha256_dir(cfg.judge_model),
        "package": alpaca_eval_version(),
    }


def _local_scorer(cfg: EvalConfig) -> PairScorer:
    return local_llm_scorer(cfg.judge_model)


JUDGES.register("local-llm", JudgeEntry(_local_check, _local_identity, _local_scorer))


# ------------------------------------------------------------------------------ AlpacaEval bridge
def parse_transport_prompt(prompt: str) -> tuple[str, str, str]:
    """Split a filled :data:`TRANSPORT_TEMPLATE` back into (instruction, output_1, output_2)."""
    if not prompt.startswith(_MARKERS[0]) or not prompt.endswith(_MARKERS[3]):
        raise ValueError("judge prompt does not follow the upo transport template")
    body = prompt[len(_MARKERS[0]) : -len(_MARKERS[3])]
    parts = body.split(_MARKERS[1])
    if len(parts) != 2 or parts[1].count(_MARKERS[2]) != 1:
        raise ValueError("a response or instruction contains a upo transport marker; cannot judge it")
    output_1, output_2 = parts[1].split(_MARKERS[2])
    return parts[0], output_1, output_2


def completions_callable(scorer: PairScorer) -> Callable[..., dict[str, Any]]:
    """An AlpacaEval ``fn_completions``: prompts -> {"completions": ["<preference in [1, 2]>"]}."""

    def fn_completions(prompts: list[str], **_: Any) -> dict[str, Any]:
        fields = [parse_transport_prompt(p) for p in prompts]
        p2 = scorer([f[0] for f in fields], [f[1] for f in fields], [f[2] for f in fields]) if fields else []
        for p in p2:
            if not 0.0 <= p <= 1.0 or math.isnan(p):
                raise ValueError(f"judge returned a preference probability outside [0, 1]: {p}")
        return {"completions": [repr(1.0 + p) for p in p2]}

    return fn_completions


def _parse_preference(completion: str) -> list[float]:
    return [float(completion)]


def win_rate(
    eval_config: EvalConfig,
    model_outputs: list[dict],
    reference_outputs: list[dict],
    scorer: PairScorer | None = None,
    cache: VerdictCache | None = None,
) -> tuple[dict, list[float]]:
    """Win rate of ``model_outputs`` over ``reference_outputs`` (paired by position).

    Args:
        eval_config: judge name and options.
        model_outputs / reference_outputs: N rows each with ``instruction`` and ``output``
            (and ``generator``); row i of one is compared with row i of the other.
        scorer: override the judge's pair scorer (tests; an already loaded judge); never cached.
        cache: verdict store (``upo.evaluate.verdict_cache``): pairs judged before by the same judge
            identity are read back, and the judge is loaded (an API annotator run) only if some pair is new.
            For an AlpacaEval annotator the metric is computed on all pairs, cached or not
            (``upo.evaluate.api_judges.api_win_rate``), so the result does not depend on the cache.
    Returns:
        (result, preferences): result has ``value`` (percent), ``se``, ``n``, ``judge``,
        ``length_controlled``; preferences[i] = P(model output i beats its reference).
    """
    from alpaca_eval import evaluate

    if len(model_outputs) != len(reference_outputs):
        raise ValueError(f"{len(model_outputs)} model outputs but {len(reference_outputs)} references")
    check_judge_available(eval_config)
    identity = judge_identity(eval_config)
    keep = ("instruction", "output", "generator")
    model_rows = [{k: row[k] for k in keep if k in row} for row in model_outputs]
    ref_rows = [{k: row[k] for k in keep if k in row} for row in reference_outputs]
    ref_rows = [{"generator": "reference", **row} for row in ref_rows]
    if eval_config.judge not in JUDGES:
        from upo.evaluate.api_judges import CachedAnnotator, api_win_rate

        if scorer is not None:
            raise ValueError(
                f"judge {eval_config.judge!r} is an AlpacaEval annotator; a scorer override is for our judges"
            )
        annotator = CachedAnnotator(alpaca_config_path(eval_config.judge), identity, cache)
        scores, preferences = api_win_rate(annotator, model_rows, ref_rows)
        return _result(scores, eval_config, identity), preferences
    # Caching off and every AlpacaEval file in a throw-away folder: nothing lands in site-packages.
    with tempfile.TemporaryDirectory(prefix="upo-judge-") as tmp:
        folder = Path(tmp) / f"upo_{eval_config.judge.replace('-', '_')}"
        folder.mkdir()
        (folder / "template.txt").write_text(TRANSPORT_TEMPLATE, encoding="utf-8")
        config = {folder.name: {"prompt_template": f"{folder.name}/template.txt", "batch_size": 1}}
        (folder / "configs.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        if scorer is None:
            entry = JUDGES.get(eval_config.judge)
            scorer = CachedScorer(lambda: entry.scorer(eval_config), identity, cache)
        leaderboard, annotations = evaluate(
            model_outputs=model_rows,
            reference_outputs=ref_rows,
            annotators_config=str(folder / "configs.yaml"),
            name=model_rows[0].get("generator", "model") if model_rows else "model",
            output_path=None,
            precomputed_leaderboard=None,
            is_return_instead_of_print=True,
            is_cache_leaderboard=False,
            fn_metric="get_winrate",
            sort_by="win_rate",
            caching_path=None,
            annotation_kwargs={"is_ordered": True},
            fn_completions=completions_callable(scorer),
            fn_completion_parser=_parse_preference,
        )
    # AlpacaEval's preference: 1 = reference (output_1) wins, 2 = model (output_2) wins, and a draw
    # is 1.5 or 0 (its metric functions accept both encodings); P(model wins) is then 0.5.
    preferences = [0.5 if float(a["preference"]) == 0 else float(a["preference"]) - 1.0 for a in annotations]
    return _result(leaderboard.iloc[0], eval_config, identity), preferences


def _result(scores: Any, eval_config: EvalConfig, identity: dict) -> dict:
    """The ``win_rate`` entry of metrics.json from AlpacaEval's ``get_winrate`` (a leaderboard row or metric dict).

    ``length_controlled`` is always None: every judge here reports the plain win rate (AlpacaEval's length
    control is fitted to its own 805 instructions, see ``upo.evaluate.api_judges.api_win_rate``).
    """
    se = float(scores["standard_error"])
    return {
        "value": float(scores["win_rate"]),
        "se": se if se == se else 0.0,  # NaN for a single pair
        "n": int(scores["n_total"]),
        "reference": eval_config.reference,
        "judge": identity,
        "length_controlled": None,
    }
