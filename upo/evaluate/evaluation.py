"""Evaluation of one run: win rate, auxiliary rewards, length, KL, lm-eval tasks -> metrics.json.

``python -m upo evaluate RUN_DIR`` (or :func:`evaluate_run`) needs ``RUN_DIR/generations.jsonl``
from ``python -m upo generate RUN_DIR``. It writes two files atomically:

- ``metrics.json``: one object validating against ``upo/schemas/metrics.schema.yaml`` (the
  contract with ``upo.report.aggregate``): win rate (AlpacaEval, ``upo.evaluate.judges``), auxiliary reward means
  in [0, 1] (``upo.rewards.scorers``), response length, sequence KL(policy || reference) on the policy's own
  samples, lm-eval task scores (``upo.evaluate.lmeval``), training cost, a provenance manifest, and for
  runs trained against a reward model (PPO) that model's held-out pairwise accuracy (``reward_model``).
- ``scores.jsonl``: per prompt ``{"id", "preference", "aux", "kl"}``, for paired bootstraps.

The ``eval:`` section of run.yaml is typed by :class:`EvalConfig`.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

import torch
from tqdm.auto import tqdm

from upo.config import EvalConfig, load_eval_config, package_file
from upo.evaluate.verdict_cache import DEFAULT_PATH as VERDICT_CACHE_PATH
from upo.evaluate.verdict_cache import VerdictCache
from upo.io import read_jsonl, read_yaml, sha256_dir, sha256_file, write_json, write_jsonl
from upo.losses.base import sampling_prefix
from upo.report.stats import mean_se  # the project's one mean ± SE (n = 1: SE NaN)
from upo.startup import TRANSFORMERS_MODULES, libraries_outside_gc
from upo.strict import ConfigError, to_dict

SCHEMA_VERSION = 1
SCHEMA_PATH = package_file("schemas", "metrics.schema.yaml")
# Packages whose versions go into every manifest (those installed).
MANIFEST_PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "trl",
    "accelerate",
    "alpaca_eval",
    "lm_eval",
    "datasets",
    "textstat",
    "vaderSentiment",
    "alt-profanity-check",
    "numpy",
    "pandas",
)
# The large libraries every evaluation imports (lm-eval: every shipped config lists lm-eval tasks), imported up
# front by the command line with the garbage collector paused: on a pico run user time 6.6-7.1 s -> 5.4-5.7 s.
HEAVY_LIBRARIES = (
    "alpaca_eval.main",
    *TRANSFORMERS_MODULES,
    "lm_eval.evaluator",
    "lm_eval.tasks",
    "lm_eval.models.huggingface",
)


@torch.no_grad()
def sequence_kl(
    policy,
    reference,
    tokenizer,
    prompts: list[list[dict]],
    response_ids: list[list[int]],
    batch_size: int = 16,
    policy_prefix: str = "",
) -> list[float]:
    """Per-sample sum_t [log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)] on given responses.

    With responses sampled from the policy this is the usual Monte-Carlo estimate of the sequence
    KL(policy || reference); its mean over samples is what ``metrics.json`` reports.

    ``policy_prefix`` is the text the policy was sampled with after the assistant header (CSFT's "good"
    control tokens, ``upo.losses.base.sampling_prefix``): the policy scores y given x + prefix, as it was
    sampled, and the reference y given x alone, so the estimate is the KL of the deployed conditional
    policy from the reference (the control tokens are the policy's input, not part of y).

    Args:
        policy, reference: causal LMs sharing ``tokenizer``.
        prompts: N message lists (rendered with the chat template, as at generation).
        response_ids: N token id lists (what was sampled, EOS included when generated).
        batch_size: sequences per forward; batches are formed by length (longest first), which in float32
            gives the same numbers bit for bit as batches in prompt order (tested).
    Returns:
        N floats (0 for an empty response), in prompt order.

    Always float32, also for runs trained under bf16 autocast: the KL is a small difference of two large
    log-probs, and bf16 rounding does not cancel between the two models (on SmolLM2-135M against a
    perturbed copy, 32 samples, the mean KL went from 0.50 to 0.27 nats under autocast).
    """
    from upo.data.batching import format_prompt
    from upo.models.logps import IGNORE_INDEX, pad_right
    from upo.models.pair_forward import length_order, response_token_logps

    if len(prompts) != len(response_ids):
        raise ValueError(f"{len(prompts)} prompts but {len(response_ids)} responses")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(policy.parameters()).device

    def encode(prefix: str) -> tuple[list[list[int]], list[list[int]]]:
        seqs, labels = [], []
        for messages, ids in zip(prompts, response_ids, strict=True):
            prompt_ids = tokenizer(format_prompt(tokenizer, messages, prefix), add_special_tokens=False)["input_ids"]
            seqs.append(prompt_ids + list(ids))
            labels.append([IGNORE_INDEX] * len(prompt_ids) + list(ids))
        return seqs, labels

    ref_seqs, ref_labels = encode("")
    pol_seqs, pol_labels = encode(policy_prefix) if policy_prefix else (ref_seqs, ref_labels)

    def logps(model, seqs, labels, rows):  # per-token log-probs (B, T) and the response mask (B, T)
        input_ids = pad_right([seqs[i] for i in rows], pad_id).to(device)  # (B, T), right padding keeps positions
        attention = pad_right([[1] * len(seqs[i]) for i in rows], 0).to(device)
        label_t = pad_right([labels[i] for i in rows], IGNORE_INDEX).to(device)
        lp, mask, _ = response_token_logps(model, input_ids, attention, label_t)
        return lp, mask

    order = length_order([len(s) for s in pol_seqs])
    out: list[float] = [0.0] * len(ref_seqs)
    for start in tqdm(range(0, len(ref_seqs), batch_size), desc="kl", unit="batch"):
        rows = order[start : start + batch_size]
        lp, mask = logps(policy, pol_seqs, pol_labels, rows)
        lr, ref_mask = logps(reference, ref_seqs, ref_labels, rows)
        if policy_prefix:  # the two sides' responses sit at different positions: sum each side first
            kl = (lp * mask).sum(-1) - (lr * ref_mask).sum(-1)  # (B,)
        else:  # token by token (the float32 numbers of the former loop, bit for bit)
            kl = ((lp - lr) * mask).sum(-1)  # (B,)
        for row, value in zip(rows, kl.tolist(), strict=True):
            out[row] = value
    return out


def _response_ids(rows: list[dict], tokenizer, path: Path) -> list[list[int]]:
    """Sampled ids from generations.jsonl (written by ``upo generate``)."""
    missing = [i for i, r in enumerate(rows, start=1) if "token_ids" not in r]
    if missing:
        raise ValueError(
            f"{path}:{missing[0]}: no 'token_ids' (needed for length and KL); regenerate with "
            "`python -m upo generate RUN_DIR`"
        )
    return [list(r["token_ids"]) for r in rows]


def _reference_outputs(run_config, eval_config: EvalConfig, rows: list[dict]) -> list[dict]:
    """Rows the judge compares with: the dataset's chosen reply or the SFT model's sample."""
    if eval_config.reference == "dataset_chosen":
        return [
            {"instruction": r["instruction"], "output": r["reference"], "generator": "dataset_chosen"} for r in rows
        ]
    if not run_config.reference.path:
        raise ValueError("eval.reference = sft_samples needs reference.path (the SFT model folder)")
    path = Path(run_config.reference.path).parent / "generations.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: SFT samples missing (eval.reference = sft_samples); run "
            f"`python -m upo generate {path.parent}` first"
        )
    by_id = {str(r["id"]): r for r in read_jsonl(path)}
    lost = [r["id"] for r in rows if r["id"] not in by_id]
    if lost:
        raise ValueError(f"{path}: no SFT sample for prompt id {lost[0]!r}")
    return [
        {"instruction": r["instruction"], "output": by_id[r["id"]]["output"], "generator": "sft_samples"} for r in rows
    ]


def _aux_metrics(names: list[str], texts: list[str], prompts: list[str]) -> tuple[dict, dict[str, list[float]]]:
    from upo.rewards import scorers as rewards

    summary, per_text = {}, {}
    for name in names:
        values = [float(v) for v in rewards.score_texts(name, texts, prompts=prompts)]
        bad = [v for v in values if not 0.0 <= v <= 1.0]
        if bad:
            raise ValueError(f"reward {name!r} returned {bad[0]} outside its documented range [0, 1]")
        mean, se = mean_se(values)
        raw_mean = mean_se([float(v) for v in rewards.raw_scores(name, texts, prompts)])[0]
        summary[name] = {"mean": mean, "se": se, "raw_mean": raw_mean}
        per_text[name] = values
    return summary, per_text


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in MANIFEST_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    from upo import __version__

    versions["upo"] = __version__
    return versions


def _cost(run_dir: Path) -> dict:
    path = run_dir / "train_summary.json"
    if not path.is_file():
        return {"train_wall_s": None, "tokens": None, "peak_mem_mb": None}
    summary = json.loads(path.read_text(encoding="utf-8"))
    return {
        "train_wall_s": summary.get("wall_s"),
        "tokens": summary.get("tokens"),
        "peak_mem_mb": summary.get("peak_mem_mb"),
    }


def validate_metrics(metrics: dict, schema_path: str | Path = SCHEMA_PATH) -> None:
    """Raise ``ValueError`` naming the failing key path if ``metrics`` breaks the schema."""
    import jsonschema

    schema = read_yaml(schema_path)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(metrics), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "<root>"
        raise ValueError(f"metrics break {schema_path} at {where}: {first.message}")


def evaluate_run(run_dir: str | Path, *, judge_scorer=None, judge_cache: str | Path | None = None) -> dict:
    """Evaluate a run directory and write ``metrics.json`` and ``scores.jsonl`` into it.

    Args:
        run_dir: holds run.yaml, model/, generations.jsonl (and train_summary.json if trained).
        judge_scorer: optional pair scorer replacing the configured judge's (tests).
        judge_cache: sqlite verdict cache (``upo.evaluate.verdict_cache``) shared by runs and jobs;
            None calls the judge for every pair.
    Returns:
        The metrics dict (as written).
    """
    from upo.config import load_run_config
    from upo.evaluate import judges, lmeval
    from upo.models.loading import load_model_and_tokenizer

    run_dir = Path(run_dir)
    run_config = load_run_config(run_dir / "run.yaml")
    eval_config = load_eval_config(run_config, where=run_dir / "run.yaml")
    judges.check_judge_available(eval_config)
    gen_path = run_dir / "generations.jsonl"
    if not gen_path.is_file():
        raise FileNotFoundError(f"{gen_path}: missing; run `python -m upo generate {run_dir}` first")
    rows = read_jsonl(gen_path)
    if not rows:
        raise ValueError(f"{gen_path}: empty")
    tags = run_config.tags
    if "dataset" not in tags:
        raise ConfigError(f"{run_dir / 'run.yaml'}: tags.dataset is missing")

    cache = VerdictCache(judge_cache) if judge_cache else None
    result, preferences = judges.win_rate(
        eval_config, rows, _reference_outputs(run_config, eval_config, rows), scorer=judge_scorer, cache=cache
    )
    texts = [r["output"] for r in rows]
    aux, aux_per_text = _aux_metrics(eval_config.aux_rewards, texts, [r["instruction"] for r in rows])

    policy, tokenizer = load_model_and_tokenizer(run_dir / "model")
    ids = _response_ids(rows, tokenizer, gen_path)
    eos = tokenizer.eos_token_id
    n_tokens = [len(x) - (1 if x and x[-1] == eos else 0) for x in ids]  # content tokens, EOS excluded
    mean_tokens, se_tokens = mean_se([float(n) for n in n_tokens])
    length = {
        "mean_tokens": mean_tokens,
        "se": se_tokens,
        "mean_words": mean_se([float(len(t.split())) for t in texts])[0],
    }

    kl_values: list[float] | None = None
    kl = None
    if eval_config.kl:
        reference_path = run_config.reference.path or run_config.model.path
        if not reference_path:
            raise ConfigError(f"{run_dir / 'run.yaml'}: eval.kl needs reference.path or model.path")
        reference, _ = load_model_and_tokenizer(reference_path, device=str(next(policy.parameters()).device))
        loss_name = run_config.loss.name if run_config.loss is not None else None  # None: PPO's own objective
        policy.eval()
        reference.eval()
        kl_values = sequence_kl(
            policy,
            reference,
            tokenizer,
            [r["prompt"] for r in rows],
            ids,
            eval_config.batch_size,
            policy_prefix=sampling_prefix(loss_name, run_config.data.aux_rewards),  # CSFT's control tokens
        )
        value, se = mean_se(kl_values)
        kl = {"value": value, "se": se, "n": len(kl_values)}
        del reference
    del policy

    lm_results, task_versions = {}, {}
    if eval_config.lm_eval_tasks:
        lm_results, task_versions = lmeval.run_tasks(
            run_dir / "model",
            eval_config.lm_eval_tasks,
            include_path=eval_config.lm_eval_include_path,
            limit=eval_config.lm_eval_limit,
            pref_data=run_config.data.test or None,
        )

    data_sha = {
        k: sha256_file(p)
        for k, p in (("train", run_config.data.train), ("test", run_config.data.test))
        if p and Path(p).is_file()
    }
    generation = {
        k: getattr(eval_config, k)
        for k in ("temperature", "top_p", "max_new_tokens", "batch_size", "seed", "max_prompts")
    }
    generation["n"] = len(rows)
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "dataset": str(tags["dataset"]),
            "model": str(tags.get("model", run_config.model.name)),
            "method": str(tags.get("method", run_config.method)),
            "beta": tags.get("beta"),
            "aux_weight": tags.get("aux_weight"),
            "seed": int(tags.get("seed", run_config.seed)),
            # a sweep point with its own step budget (paths' steps~ segment); absent at the stage's budget
            **({"max_steps": int(tags["max_steps"])} if tags.get("max_steps") is not None else {}),
            "run_dir": str(run_dir),
            # relabelling methods only: where p(y) came from (reward_model | binary | oracle)
            **({"preference_source": tags["preference_source"]} if tags.get("preference_source") else {}),
        },
        "win_rate": result,
        "aux": aux,
        "length": length,
        "kl": kl,
        "lm_eval": lm_results,
        "cost": _cost(run_dir),
        "manifest": {
            "packages": _package_versions(),
            "task_versions": task_versions,
            "data_sha256": data_sha,
            "model_sha256": sha256_dir(run_dir / "model"),
            "run_config_sha256": sha256_file(run_dir / "run.yaml"),
            "generation": generation,
            "eval_config": to_dict(eval_config),
        },
    }
    if run_config.reward_model:  # PPO: how well the reward it optimised ranks held-out pairs
        from upo.train.reward_model import heldout_accuracy

        metrics["reward_model"] = heldout_accuracy(run_config.reward_model)
    validate_metrics(metrics)
    scores = [
        {
            "id": str(r["id"]),
            "preference": preferences[i],
            "aux": {name: values[i] for name, values in aux_per_text.items()},
            "kl": kl_values[i] if kl_values is not None else None,
        }
        for i, r in enumerate(rows)
    ]
    write_jsonl(run_dir / "scores.jsonl", scores)
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m upo evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="run directory holding run.yaml, model/ and generations.jsonl")
    parser.add_argument(
        "--judge-cache",
        default=VERDICT_CACHE_PATH,
        help=f"sqlite cache of judge verdicts, shared by runs (default {VERDICT_CACHE_PATH}; '' for none)",
    )
    args = parser.parse_args(argv)
    with libraries_outside_gc(HEAVY_LIBRARIES):
        metrics = evaluate_run(args.run_dir, judge_cache=args.judge_cache or None)
    wr = metrics["win_rate"]
    print(
        f"win rate {wr['value']:.1f} +- {wr['se']:.1f} (n={wr['n']}); wrote {Path(args.run_dir) / 'metrics.json'}",
        file=sys.stderr,
    )
    return 0
